/* The decoder over batches (forward.c) on the CPU backend: a prompt run several tokens a step,
 * and several sequences decoded together, give bit for bit the logits of running each sequence
 * alone one token at a time (the CPU does the same arithmetic per row either way); batches the
 * session cannot run are refused and leave it usable. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "backend_cpu.h"
#include "forward.h"
#include "gguf.h"
#include "model.h"
#include "synth.h"

enum { N_CTX = 16, N_SEQ = 3, N_BATCH = 8, MAX_TOKENS = 16 };

struct fixture {
        char path[64];
        struct rig_model *model;
        uint32_t n_vocab;
};

static int setup(void **state, const char *shape, const char *type)
{
        struct fixture *f = calloc(1, sizeof(*f));
        /* mkstemp replaces the six X of its template with a unique name */
        snprintf(f->path, sizeof(f->path), "/tmp/rig-test-forward-XXXXXX");
        int fd = mkstemp(f->path);
        if (fd < 0)
                return -1;
        close(fd);
        struct synth_options o = { synth_find_shape(shape), synth_find_type(type), NULL, 3, f->path, 0 };
        char err[256] = "";
        struct gguf_file *g;
        if (synth_write(&o, err, sizeof(err)) < 0 || gguf_open(f->path, &g, err, sizeof(err)) < 0 ||
            model_load(g, &f->model, err, sizeof(err)) < 0) {
                fprintf(stderr, "fixture: %s\n", err);
                return -1;
        }
        f->n_vocab = f->model->cfg.n_vocab;
        *state = f;
        return 0;
}

static int setup_llama(void **state) { return setup(state, "tiny-llama", "Q8_0"); }
static int setup_qwen2(void **state) { return setup(state, "tiny-qwen2", "F16"); }

static int teardown(void **state)
{
        struct fixture *f = *state;
        model_free(f->model);
        unlink(f->path);
        free(f);
        return 0;
}

static struct rig_session *new_session(const struct fixture *f, uint32_t n_seq, uint32_t n_batch)
{
        struct rig_backend *b = NULL;
        assert_int_equal(cpu_backend_new(f->model, N_CTX, n_seq, RIG_TYPE_F16, 2, &b), 0);
        struct rig_session *s = NULL;
        assert_int_equal(session_new(b, n_batch, &s), 0);
        return s;
}

/* logits[i] after each of tokens[0..n) run alone, one token a step, in a fresh session. */
static float *alone(const struct fixture *f, const int32_t *tokens, uint32_t n)
{
        struct rig_session *s = new_session(f, 1, 1);
        float *logits = malloc((size_t)n * f->n_vocab * sizeof(float));
        for (uint32_t i = 0; i < n; i++) {
                assert_int_equal(session_eval(s, tokens[i], i), 0);
                memcpy(logits + (size_t)i * f->n_vocab, s->logits, f->n_vocab * sizeof(float));
        }
        session_free(s);
        return logits;
}

static void assert_same_logits(const float *got, const float *want, uint32_t n_vocab)
{
        assert_memory_equal(got, want, n_vocab * sizeof(float));
}

static int32_t token(const struct fixture *f, uint32_t seq, uint32_t pos)
{
        return (int32_t)((seq * 97 + pos * 31 + 5) % f->n_vocab);
}

static void test_prompt_in_steps_of_8_equals_token_by_token(void **state)
{
        const struct fixture *f = *state;
        enum { N = 11 };                /* a full step and a partial one */
        int32_t tokens[N];
        uint32_t pos[N], seq[N] = { 0 };
        for (uint32_t i = 0; i < N; i++) {
                tokens[i] = token(f, 0, i);
                pos[i] = i;
        }
        float *want = alone(f, tokens, N);
        struct rig_session *s = new_session(f, 1, N_BATCH);
        for (uint32_t first = 0; first < N; first += N_BATCH) {
                uint32_t k = N - first < N_BATCH ? N - first : N_BATCH;
                struct rig_batch b = { k, tokens + first, pos + first, seq };
                assert_int_equal(session_eval_batch(s, &b, true), 0);
                assert_int_equal(s->n_logits, k);
                for (uint32_t i = 0; i < k; i++)
                        assert_same_logits(s->logits + (size_t)i * f->n_vocab, want + (size_t)(first + i) * f->n_vocab,
                                           f->n_vocab);
        }
        /* session_eval_prompt leaves the last token's logits only */
        assert_int_equal(session_eval_prompt(s, tokens, N, 0, false), 0);
        assert_int_equal(s->n_logits, 1);
        assert_same_logits(s->logits, want + (size_t)(N - 1) * f->n_vocab, f->n_vocab);
        session_free(s);
        free(want);
}

/* Three sequences of different lengths: first a step mixing two prompts, then steps of one
 * token of every sequence, as a server's slots would run. */
static void test_sequences_decoded_together_equal_each_alone(void **state)
{
        const struct fixture *f = *state;
        static const uint32_t length[N_SEQ] = { 7, 4, 5 };
        float *want[N_SEQ];
        for (uint32_t j = 0; j < N_SEQ; j++) {
                int32_t tokens[MAX_TOKENS];
                for (uint32_t p = 0; p < length[j]; p++)
                        tokens[p] = token(f, j, p);
                want[j] = alone(f, tokens, length[j]);
        }
        struct rig_session *s = new_session(f, N_SEQ, N_BATCH);
        uint32_t next[N_SEQ] = { 0 };
        /* step 1: three tokens of sequence 0 and two of sequence 2 */
        int32_t tokens[N_BATCH];
        uint32_t pos[N_BATCH], seq[N_BATCH];
        uint32_t n = 0;
        for (uint32_t j = 0; j < N_SEQ; j += 2)
                for (uint32_t k = 0; k < 3 - j / 2; k++, n++) {
                        seq[n] = j;
                        pos[n] = next[j]++;
                        tokens[n] = token(f, j, pos[n]);
                }
        for (;;) {
                struct rig_batch b = { n, tokens, pos, seq };
                assert_int_equal(session_eval_batch(s, &b, true), 0);
                for (uint32_t i = 0; i < n; i++)
                        assert_same_logits(s->logits + (size_t)i * f->n_vocab,
                                           want[seq[i]] + (size_t)pos[i] * f->n_vocab, f->n_vocab);
                n = 0;
                for (uint32_t j = 0; j < N_SEQ; j++)
                        if (next[j] < length[j]) {
                                seq[n] = j;
                                pos[n] = next[j]++;
                                tokens[n] = token(f, j, pos[n]);
                                n++;
                        }
                if (n == 0)
                        break;
        }
        session_free(s);
        for (uint32_t j = 0; j < N_SEQ; j++)
                free(want[j]);
}

static void test_batches_it_cannot_run_are_refused(void **state)
{
        const struct fixture *f = *state;
        struct rig_session *s = new_session(f, 2, 4);
        int32_t tokens[5] = { 1, 2, 3, 4, 5 };
        uint32_t pos[5] = { 0, 1, 2, 3, 4 }, seq[5] = { 0 };
        struct rig_batch empty = { 0, tokens, pos, seq }, too_many = { 5, tokens, pos, seq };
        assert_int_equal(session_eval_batch(s, &empty, false), -EINVAL);
        assert_int_equal(session_eval_batch(s, &too_many, false), -EINVAL);
        uint32_t bad_seq = 2, bad_pos = N_CTX;
        int32_t bad_token = (int32_t)f->n_vocab, negative = -1;
        struct rig_batch b1 = { 1, tokens, pos, &bad_seq }, b2 = { 1, tokens, &bad_pos, seq };
        struct rig_batch b3 = { 1, &bad_token, pos, seq }, b4 = { 1, &negative, pos, seq };
        assert_int_equal(session_eval_batch(s, &b1, false), -EINVAL);
        assert_int_equal(session_eval_batch(s, &b2, false), -EINVAL);
        assert_int_equal(session_eval_batch(s, &b3, false), -EINVAL);
        assert_int_equal(session_eval_batch(s, &b4, false), -EINVAL);
        assert_int_equal(session_eval_prompt(s, tokens, 0, 0, false), -EINVAL);
        assert_int_equal(session_eval_prompt(s, tokens, 2, N_CTX - 1, false), -EINVAL);   /* runs past the context */
        /* still usable, and right */
        float *want = alone(f, tokens, 3);
        assert_int_equal(session_eval_prompt(s, tokens, 3, 0, false), 0);
        assert_same_logits(s->logits, want + 2 * (size_t)f->n_vocab, f->n_vocab);
        free(want);
        session_free(s);
        struct rig_backend *b = NULL;
        assert_int_equal(cpu_backend_new(f->model, N_CTX, 1, RIG_TYPE_F16, 1, &b), 0);
        struct rig_session *none = NULL;
        assert_int_equal(session_new(b, 0, &none), -EINVAL);                      /* and b is freed */
        assert_int_equal(cpu_backend_new(f->model, N_CTX, 0, RIG_TYPE_F16, 1, &b), -EINVAL);
}

/* Generation with the draw made from the backend's few best logits (session_eval_sample) picks
 * the tokens session_eval and sampler_sample on the whole row pick — greedy, the default chain
 * with a repetition penalty, a chain that needs the whole row — and so it does where the backend
 * has no top_k (the row read back, its best found on the host). */
static void test_draws_from_the_best_few_equal_draws_from_the_row(void **state)
{
        const struct fixture *f = *state;
        struct sampler_params sets[3];
        for (int k = 0; k < 3; k++) {
                sampler_defaults(&sets[k]);
                sets[k].seed = 11 + k;
                sets[k].repeat_penalty = 1.3f;
                sets[k].repeat_last_n = 4;
        }
        sets[0].temperature = 0.0f;
        sets[1].temperature = 1.5f;     /* the synth model's logits are flat: cut-offs matter */
        sets[2].top_k = 0;
        for (int set = 0; set < 3; set++) {
                for (int has_top_k = 0; has_top_k < 2; has_top_k++) {
                        struct rig_session *sa = new_session(f, 1, 1), *sb = new_session(f, 1, 1);
                        struct rig_backend_ops no_top_k = *sb->backend->ops;
                        no_top_k.top_k = NULL;
                        if (!has_top_k)
                                sb->backend->ops = &no_top_k;
                        struct sampler a, b;
                        assert_int_equal(sampler_init(&a, &sets[set], f->n_vocab), 0);
                        assert_int_equal(sampler_init(&b, &sets[set], f->n_vocab), 0);
                        int32_t ta = 1, tb = 1, distinct = 0, first = -1;
                        for (uint32_t pos = 0; pos < N_CTX; pos++) {
                                assert_int_equal(session_eval(sa, ta, pos), 0);
                                ta = sampler_sample(&a, sa->logits);
                                assert_int_equal(session_eval_sample(sb, tb, pos, &b, &tb), 0);
                                assert_int_equal(tb, ta);
                                sampler_accept(&a, ta);
                                sampler_accept(&b, tb);
                                distinct += first != ta;
                                first = pos == 0 ? ta : first;
                        }
                        assert_true(set == 0 || distinct > 1);  /* the draws did vary */
                        sampler_free(&a);
                        sampler_free(&b);
                        session_free(sa);
                        session_free(sb);
                }
        }
}

int main(void)
{
        const struct CMUnitTest tests[] = {
                cmocka_unit_test_setup_teardown(test_prompt_in_steps_of_8_equals_token_by_token, setup_llama, teardown),
                cmocka_unit_test_setup_teardown(test_sequences_decoded_together_equal_each_alone, setup_llama, teardown),
                cmocka_unit_test_setup_teardown(test_sequences_decoded_together_equal_each_alone, setup_qwen2, teardown),
                cmocka_unit_test_setup_teardown(test_batches_it_cannot_run_are_refused, setup_llama, teardown),
                cmocka_unit_test_setup_teardown(test_draws_from_the_best_few_equal_draws_from_the_row, setup_llama,
                                                teardown),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
