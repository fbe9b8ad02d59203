/* The sampling chain: greedy, the cut-offs, the repetition penalty, and seeds. */
#include <math.h>
#include <stdbool.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "sampler.h"

enum { N_VOCAB = 8 };

static struct sampler_params params(float temp, int top_k, float top_p, float min_p, uint64_t seed)
{
        struct sampler_params p;
        sampler_defaults(&p);
        p.temperature = temp;
        p.top_k = top_k;
        p.top_p = top_p;
        p.min_p = min_p;
        p.seed = seed;
        return p;
}

/* Draws n tokens from fixed logits; counts how often each id comes. */
static void histogram(const struct sampler_params *p, const float *logits, int n, int *counts)
{
        struct sampler s;
        assert_int_equal(sampler_init(&s, p, N_VOCAB), 0);
        memset(counts, 0, N_VOCAB * sizeof(*counts));
        for (int i = 0; i < n; i++) {
                float l[N_VOCAB];
                memcpy(l, logits, sizeof(l));
                int32_t id = sampler_sample(&s, l);
                assert_true(id >= 0 && id < N_VOCAB);
                counts[id]++;
        }
        sampler_free(&s);
}

static const float logits[N_VOCAB] = { 1.0f, 3.0f, 2.5f, 0.5f, -1.0f, 2.9f, 0.0f, -2.0f };

static void test_temperature_zero_is_argmax(void **state)
{
        struct sampler_params p = params(0.0f, 0, 1.0f, 0.0f, 1);
        int counts[N_VOCAB];
        histogram(&p, logits, 50, counts);
        assert_int_equal(counts[1], 50);
}

static void test_top_k_keeps_only_the_k_best(void **state)
{
        struct sampler_params p = params(1.0f, 2, 1.0f, 0.0f, 7);
        int counts[N_VOCAB];
        histogram(&p, logits, 2000, counts);
        assert_int_equal(counts[1] + counts[5], 2000);          /* 3.0 and 2.9 */
        assert_true(counts[1] > 800 && counts[5] > 800);        /* nearly even: e^0.1 apart */
}

static void test_top_p_cuts_the_tail(void **state)
{
        /* probabilities at T=1: id1 .33, id5 .30, id2 .20, ...: top-p 0.5 keeps ids 1 and 5 */
        struct sampler_params p = params(1.0f, 0, 0.5f, 0.0f, 3);
        int counts[N_VOCAB];
        histogram(&p, logits, 2000, counts);
        assert_int_equal(counts[1] + counts[5], 2000);
}

static void test_min_p_drops_tokens_far_below_the_best(void **state)
{
        /* min-p 0.5: keep p >= 0.5 * p(id1): ids 1 (3.0), 5 (2.9), 2 (2.5: e^-0.5 = 0.61) */
        struct sampler_params p = params(1.0f, 0, 1.0f, 0.5f, 3);
        int counts[N_VOCAB];
        histogram(&p, logits, 3000, counts);
        assert_int_equal(counts[1] + counts[5] + counts[2], 3000);
        assert_true(counts[2] > 300);
}

static void test_draws_follow_the_softmax(void **state)
{
        /* two tokens, logits 0 and ln 3: expect 1:3 */
        float two[N_VOCAB] = { 0.0f, logf(3.0f), -1e9f, -1e9f, -1e9f, -1e9f, -1e9f, -1e9f };
        struct sampler_params p = params(1.0f, 0, 1.0f, 0.0f, 11);
        int counts[N_VOCAB];
        histogram(&p, two, 8000, counts);
        double ratio = (double)counts[1] / counts[0];
        assert_true(ratio > 2.7 && ratio < 3.3);
}

static void test_same_seed_same_draws(void **state)
{
        struct sampler_params p = params(1.0f, 0, 1.0f, 0.0f, 42);
        struct sampler a, b, c;
        assert_int_equal(sampler_init(&a, &p, N_VOCAB), 0);
        assert_int_equal(sampler_init(&b, &p, N_VOCAB), 0);
        p.seed = 43;
        assert_int_equal(sampler_init(&c, &p, N_VOCAB), 0);
        int differs = 0;
        for (int i = 0; i < 64; i++) {
                float la[N_VOCAB], lb[N_VOCAB], lc[N_VOCAB];
                memcpy(la, logits, sizeof(la));
                memcpy(lb, logits, sizeof(lb));
                memcpy(lc, logits, sizeof(lc));
                int32_t x = sampler_sample(&a, la), y = sampler_sample(&b, lb), z = sampler_sample(&c, lc);
                assert_int_equal(x, y);
                differs += x != z;
        }
        assert_true(differs > 0);
        sampler_free(&a);
        sampler_free(&b);
        sampler_free(&c);
}

static void test_repetition_penalty_divides_positive_and_multiplies_negative(void **state)
{
        struct sampler_params p = params(0.0f, 0, 1.0f, 0.0f, 1);
        p.repeat_penalty = 2.0f;
        p.repeat_last_n = 4;
        struct sampler s;
        assert_int_equal(sampler_init(&s, &p, N_VOCAB), 0);
        sampler_accept(&s, 1);
        sampler_accept(&s, 1);          /* twice in the window: penalised once */
        sampler_accept(&s, 4);
        float l[N_VOCAB];
        memcpy(l, logits, sizeof(l));
        int32_t id = sampler_sample(&s, l);
        assert_float_equal(l[1], 1.5f, 1e-6);
        assert_float_equal(l[4], -2.0f, 1e-6);
        assert_int_equal(id, 5);        /* 2.9 now beats the penalised 1.5 */
        sampler_free(&s);
}

static void test_top_k_over_a_large_vocabulary_draws_only_the_k_best(void **state)
{
        enum { V = 5000, K = 50 };
        static float big[V], sorted[V];
        uint32_t x = 99;
        for (int i = 0; i < V; i++) {
                x = x * 1664525u + 1013904223u;
                big[i] = sorted[i] = (float)(x >> 8) / 65536.0f;
        }
        /* the K-th largest value, by selection on a copy */
        for (int i = 0; i < K; i++)
                for (int j = i + 1; j < V; j++)
                        if (sorted[j] > sorted[i]) {
                                float t = sorted[i];
                                sorted[i] = sorted[j];
                                sorted[j] = t;
                        }
        struct sampler_params p = params(50.0f, K, 1.0f, 0.0f, 5);     /* hot: spread over all K */
        struct sampler s;
        assert_int_equal(sampler_init(&s, &p, V), 0);
        int distinct = 0;
        static bool seen[V];
        for (int n = 0; n < 2000; n++) {
                static float l[V];
                memcpy(l, big, sizeof(l));
                int32_t id = sampler_sample(&s, l);
                assert_true(big[id] >= sorted[K - 1]);
                distinct += !seen[id];
                seen[id] = true;
        }
        assert_true(distinct > K / 2);
        sampler_free(&s);
}

/* Logits with many ties (quarters in [-8, 8)), from a fixed generator. */
static void tied_logits(uint32_t *state, float *x, size_t n)
{
        for (size_t i = 0; i < n; i++) {
                *state = *state * 1664525u + 1013904223u;
                x[i] = (float)((int)(*state >> 16) % 64 - 32) * 0.25f;
        }
}

static int by_rank(const void *a, const void *b)
{
        const struct rig_candidate *x = a, *y = b;
        if (x->logit != y->logit)
                return x->logit > y->logit ? -1 : 1;
        return x->id < y->id ? -1 : 1;
}

/* rig_top_k is the head of the whole row sorted (ties: the lower id first), for every k. */
static void test_top_k_is_the_head_of_the_sorted_row(void **state)
{
        enum { N = 1000 };
        static float x[N];
        static struct rig_candidate sorted[N], got[N];
        uint32_t seed = 9;
        tied_logits(&seed, x, N);
        for (int i = 0; i < N; i++)
                sorted[i] = (struct rig_candidate){ i, x[i] };
        qsort(sorted, N, sizeof(sorted[0]), by_rank);
        static const size_t ks[] = { 1, 2, 40, 999, 1000, 1500 };
        for (size_t t = 0; t < sizeof(ks) / sizeof(ks[0]); t++) {
                size_t n = rig_top_k(x, N, ks[t], got);
                assert_int_equal(n, ks[t] < N ? ks[t] : N);
                for (size_t i = 0; i < n; i++) {
                        assert_int_equal(got[i].id, sorted[i].id);
                        assert_true(got[i].logit == sorted[i].logit);
                }
        }
}

/* The draw in two halves (the caller penalizes and finds the best, as a GPU backend does on the
 * device; sampler_sample_top picks) is sampler_sample's draw, token for token, for greedy and
 * cut-off chains, with a penalty window that fills and wraps. */
static void test_split_draw_is_the_same_draw(void **state)
{
        enum { V = 500, STEPS = 300 };
        struct sampler_params sets[5];
        sets[0] = params(0.0f, 40, 0.95f, 0.05f, 1);
        sets[1] = params(0.8f, 40, 0.95f, 0.05f, 2);
        sets[2] = params(1.0f, 1, 1.0f, 0.0f, 3);
        sets[3] = params(1.5f, 5, 0.5f, 0.0f, 4);
        sets[4] = params(1.0f, 700, 1.0f, 0.02f, 5);    /* top_k past the vocabulary: all of it */
        for (int k = 0; k < 5; k++) {
                sets[k].repeat_penalty = 1.3f;
                sets[k].repeat_last_n = 8;
        }
        for (int set = 0; set < 5; set++) {
                struct sampler a, b;
                assert_int_equal(sampler_init(&a, &sets[set], V), 0);
                assert_int_equal(sampler_init(&b, &sets[set], V), 0);
                uint32_t seed = 77 + set;
                for (int step = 0; step < STEPS; step++) {
                        static float x[V], la[V], lb[V];
                        static struct rig_candidate cand[V];
                        float penalty;
                        tied_logits(&seed, x, V);
                        memcpy(la, x, sizeof(x));
                        memcpy(lb, x, sizeof(x));
                        int32_t want = sampler_sample(&a, la);
                        size_t k = sampler_top_needed(&b);
                        assert_true(k >= 1);
                        size_t n_ids;
                        const int32_t *ids = sampler_penalized(&b, &n_ids, &penalty);
                        rig_penalize(lb, V, ids, n_ids, penalty);
                        size_t n = rig_top_k(lb, V, k, cand);
                        assert_int_equal(sampler_sample_top(&b, cand, n), want);
                        sampler_accept(&a, want);
                        sampler_accept(&b, want);
                }
                sampler_free(&a);
                sampler_free(&b);
        }
        /* a temperature without top-k needs the whole row */
        struct sampler c;
        struct sampler_params p = params(1.0f, 0, 0.9f, 0.0f, 1);
        assert_int_equal(sampler_init(&c, &p, V), 0);
        assert_int_equal(sampler_top_needed(&c), 0);
        sampler_free(&c);
}

int main(void)
{
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_temperature_zero_is_argmax),
                cmocka_unit_test(test_top_k_keeps_only_the_k_best),
                cmocka_unit_test(test_top_p_cuts_the_tail),
                cmocka_unit_test(test_min_p_drops_tokens_far_below_the_best),
                cmocka_unit_test(test_draws_follow_the_softmax),
                cmocka_unit_test(test_same_seed_same_draws),
                cmocka_unit_test(test_repetition_penalty_divides_positive_and_multiplies_negative),
                cmocka_unit_test(test_top_k_over_a_large_vocabulary_draws_only_the_k_best),
                cmocka_unit_test(test_top_k_is_the_head_of_the_sorted_row),
                cmocka_unit_test(test_split_draw_is_the_same_draw),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
