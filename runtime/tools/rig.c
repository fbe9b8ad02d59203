/* rig.c — the runtime's command line: run, bench, logits, tokenize, synth (serve and plan come
 * with the server and the planner). */
#include <errno.h>
#include <math.h>
#include <getopt.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "backend_cpu.h"
#ifdef RIG_HAVE_GPU
#include "backend_gpu.h"
#endif
#include "forward.h"
#include "gguf.h"
#include "kv.h"
#include "model.h"
#include "sampler.h"
#include "synth.h"
#include "tokenizer.h"

#define ERR_LEN 512
/* Most tokens per step the CLI takes (-b): the logits of a step are n_batch x n_vocab floats. */
#define MAX_BATCH 4096

static double now_s(void)
{
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

static int default_threads(void)
{
        long n = sysconf(_SC_NPROCESSORS_ONLN);
        return n > 0 ? (int)n : 1;
}

/* Reads a whole model into the page cache with a progress bar when stderr is a terminal and
 * the file is large: otherwise the first token would silently take as long as the disk. */
static void prefault(const struct gguf_file *f)
{
        if (!isatty(STDERR_FILENO) || f->size < (256u << 20))
                return;
        const size_t step = 4096, chunk = 64u << 20;
        volatile unsigned char sink = 0;
        for (size_t off = 0; off < f->size; off += step) {
                sink ^= f->base[off];
                if (off % chunk == 0 || off + step >= f->size) {
                        int pct = (int)((off + step >= f->size ? f->size : off) * 100 / f->size);
                        int bar = pct / 4;
                        fprintf(stderr, "\rloading [%-25.*s] %3d%% of %.1f GiB", bar, "#########################", pct,
                                (double)f->size / (1u << 30));
                }
        }
        fputc('\n', stderr);
        (void)sink;
}

static int open_model(const char *path, struct rig_model **out)
{
        char err[ERR_LEN] = "";
        struct gguf_file *f;
        int r = gguf_open(path, &f, err, sizeof(err));
        if (r < 0) {
                fprintf(stderr, "rig: %s\n", err[0] ? err : strerror(-r));
                return r;
        }
        prefault(f);
        r = model_load(f, out, err, sizeof(err));
        if (r < 0) {
                fprintf(stderr, "rig: %s: %s\n", path, err);
                gguf_close(f);
        }
        return r;
}

/* Tokens of a prompt run in one step, unless -b says otherwise (llama.cpp's default micro-batch). */
#define DEFAULT_BATCH 512

/* What a session is made of: its caches and the most tokens a step runs. */
struct session_shape {
        uint32_t n_ctx;                 /* positions per sequence */
        uint32_t n_seq;                 /* sequences */
        uint32_t n_batch;               /* tokens per step */
        enum rig_type kv_type;
};

/* A session of that shape: on GPU 0 where this build has a GPU backend and a GPU is there
 * (unless use_cpu), else on the CPU, saying why on stderr. */
static int open_session(const struct rig_model *m, const struct session_shape *shape, int n_threads, bool use_cpu,
                        struct rig_session **out)
{
        uint32_t n_ctx = shape->n_ctx, n_seq = shape->n_seq;
        enum rig_type kv_type = shape->kv_type;
        struct rig_backend *b = NULL;
        int r;
#ifdef RIG_HAVE_GPU
        if (!use_cpu && gpu_device_count() > 0) {
                char err[ERR_LEN] = "";
                r = gpu_backend_new(m, n_ctx, n_seq, kv_type, 0, &b, err, sizeof(err));
                if (r < 0) {
                        fprintf(stderr, "rig: GPU 0: %s; running on the CPU (--cpu to ask for it)\n",
                                err[0] ? err : strerror(-r));
                        b = NULL;
                }
        } else if (!use_cpu) {
                fprintf(stderr, "rig: no GPU found; running on the CPU\n");
        }
#else
        (void)use_cpu;
#endif
        if (!b && (r = cpu_backend_new(m, n_ctx, n_seq, kv_type, n_threads, &b)) < 0)
                return r;
        return session_new(b, shape->n_batch, out);
}

/* false, saying on stderr which token the model has no row for (source gave it; hint: what that
 * means, or ""). */
static bool tokens_fit_vocabulary(const struct rig_model *m, const int32_t *ids, size_t n, const char *source,
                                  const char *hint)
{
        for (size_t i = 0; i < n; i++)
                if (ids[i] < 0 || (uint32_t)ids[i] >= m->cfg.n_vocab) {
                        fprintf(stderr, "rig: %s gave token %d (position %zu), but the model has %u rows of embeddings%s\n",
                                source, ids[i], i, m->cfg.n_vocab, hint);
                        return false;
                }
        return true;
}

/* Why a step failed, on stderr (its tokens were checked before: this is a backend fault). */
static void report_eval_error(const struct rig_session *s, int r, size_t first_pos, size_t n)
{
        char err[ERR_LEN] = "";
#ifdef RIG_HAVE_GPU
        if (strcmp(s->backend->ops->name, "cpu") != 0)
                gpu_backend_error(s->backend, err, sizeof(err));
#endif
        fprintf(stderr, "rig: running %zu token%s from position %zu: %s (try --cpu)\n", n, n == 1 ? "" : "s", first_pos,
                err[0] ? err : strerror(-r));
}

static int open_tokenizer(const struct rig_model *m, const char *path, struct rig_tokenizer **out)
{
        char err[ERR_LEN] = "";
        int r = tokenizer_load(m->file, out, err, sizeof(err));
        if (r < 0)
                fprintf(stderr, "rig: %s: tokenizer: %s\n", path, err[0] ? err : strerror(-r));
        return r;
}

/* Numeric options: the whole argument must be a number in range, else a usage error that
 * names the option ("--top-p takes a number from 0 to 1, not 'high'"). */
static bool opt_long(const char *arg, const char *name, long min, long max, long *out)
{
        char *end;
        errno = 0;
        long v = strtol(arg, &end, 10);
        if (errno || end == arg || *end || v < min || v > max) {
                fprintf(stderr, "rig: %s takes a whole number from %ld to %ld, not '%s'\n", name, min, max, arg);
                return false;
        }
        *out = v;
        return true;
}

static bool opt_float(const char *arg, const char *name, float min, float max, float *out)
{
        char *end;
        errno = 0;
        float v = strtof(arg, &end);
        if (errno || end == arg || *end || !(v >= min && v <= max)) {
                fprintf(stderr, "rig: %s takes a number from %g to %g, not '%s'\n", name, min, max, arg);
                return false;
        }
        *out = v;
        return true;
}

static bool opt_int(const char *arg, const char *name, int min, int max, int *out)
{
        long v;
        if (!opt_long(arg, name, min, max, &v))
                return false;
        *out = (int)v;
        return true;
}

static bool opt_u64(const char *arg, const char *name, uint64_t *out)
{
        char *end;
        errno = 0;
        unsigned long long v = strtoull(arg, &end, 10);
        if (errno || end == arg || *end || arg[0] == '-') {
                fprintf(stderr, "rig: %s takes a whole number, not '%s'\n", name, arg);
                return false;
        }
        *out = v;
        return true;
}

/* ---- rig tokenize ---- */

static void print_json_string(const char *s, size_t len)
{
        putchar('"');
        for (size_t i = 0; i < len; i++) {
                unsigned char c = (unsigned char)s[i];
                if (c == '"' || c == '\\')
                        printf("\\%c", c);
                else if (c < 0x20)
                        printf("\\u%04x", c);
                else
                        putchar(c);
        }
        putchar('"');
}

static int cmd_tokenize(int argc, char **argv)
{
        const char *model_path = NULL, *text = NULL;
        bool add_special = false, is_plain = false, is_json = false;
        static const struct option opts[] = {
                { "model", required_argument, NULL, 'm' }, { "text", required_argument, NULL, 't' },
                { "add-special", no_argument, NULL, 'a' }, { "plain", no_argument, NULL, 'p' },
                { "json", no_argument, NULL, 'j' }, { 0 },
        };
        for (int c; (c = getopt_long(argc, argv, "m:t:", opts, NULL)) != -1; ) {
                switch (c) {
                case 'm': model_path = optarg; break;
                case 't': text = optarg; break;
                case 'a': add_special = true; break;
                case 'p': is_plain = true; break;
                case 'j': is_json = true; break;
                default: return 2;
                }
        }
        if (!model_path || !text) {
                fprintf(stderr, "usage: rig tokenize -m FILE --text T [--add-special] [--plain] [--json]\n");
                return 2;
        }
        struct rig_model *m;
        struct rig_tokenizer *tok;
        if (open_model(model_path, &m) < 0)
                return 1;
        if (open_tokenizer(m, model_path, &tok) < 0) {
                model_free(m);
                return 1;
        }
        int32_t *ids = NULL;
        size_t n = 0;
        int r = tokenizer_encode(tok, text, strlen(text), add_special, !is_plain, &ids, &n);
        if (r < 0) {
                fprintf(stderr, "rig: tokenizing: %s\n", strerror(-r));
        } else if (is_json) {
                printf("{\"ids\":[");
                for (size_t i = 0; i < n; i++)
                        printf("%s%d", i ? "," : "", ids[i]);
                printf("],\"pieces\":[");
                for (size_t i = 0; i < n; i++) {
                        size_t len;
                        const char *piece = tokenizer_token_text(tok, ids[i], &len);
                        if (i)
                                putchar(',');
                        print_json_string(piece, len);
                }
                printf("]}\n");
        } else {
                for (size_t i = 0; i < n; i++) {
                        size_t len;
                        const char *piece = tokenizer_token_text(tok, ids[i], &len);
                        printf("%6d  %.*s\n", ids[i], (int)len, piece);
                }
        }
        free(ids);
        tokenizer_free(tok);
        model_free(m);
        return r < 0 ? 1 : 0;
}

/* ---- rig logits ---- */

static int parse_tokens(const char *list, int32_t **out, size_t *n)
{
        size_t cap = 16;
        int32_t *ids = malloc(cap * sizeof(*ids));
        if (!ids)
                return -ENOMEM;
        *n = 0;
        for (const char *p = list; *p; ) {
                char *end;
                errno = 0;
                long v = strtol(p, &end, 10);
                if (end == p || errno || v < 0 || v > INT32_MAX || (*end && *end != ',')) {
                        free(ids);
                        return -EINVAL;
                }
                if (*n == cap) {
                        int32_t *more = realloc(ids, (cap *= 2) * sizeof(*ids));
                        if (!more) {
                                free(ids);
                                return -ENOMEM;
                        }
                        ids = more;
                }
                ids[(*n)++] = (int32_t)v;
                p = *end ? end + 1 : end;
        }
        if (*n == 0) {
                free(ids);
                return -EINVAL;
        }
        *out = ids;
        return 0;
}

/* Tokens [first, first + n_batch) of ids (of n) as one step of sequence 0, every token's logits
 * to out. */
static int write_logits(struct rig_session *s, const int32_t *ids, size_t n, size_t first, FILE *out)
{
        uint32_t k = n - first < s->n_batch ? (uint32_t)(n - first) : s->n_batch;
        int r = session_eval_prompt(s, ids + first, k, (uint32_t)first, true);
        if (r < 0) {
                report_eval_error(s, r, first, k);
                return r;
        }
        size_t n_floats = (size_t)k * s->model->cfg.n_vocab;
        if (fwrite(s->logits, sizeof(float), n_floats, out) != n_floats) {
                fprintf(stderr, "rig: writing the logits: %s\n", strerror(errno));
                return -EIO;
        }
        return 0;
}

static int cmd_logits(int argc, char **argv)
{
        const char *model_path = NULL, *tokens = NULL, *out_path = NULL, *kv_name = "f32";
        int n_threads = default_threads(), n_batch = DEFAULT_BATCH;
        bool use_cpu = false;
        static const struct option opts[] = {
                { "model", required_argument, NULL, 'm' }, { "tokens", required_argument, NULL, 't' },
                { "out", required_argument, NULL, 'o' }, { "kv", required_argument, NULL, 'k' },
                { "batch-size", required_argument, NULL, 'b' }, { "threads", required_argument, NULL, 'T' },
                { "cpu", no_argument, NULL, 'C' }, { 0 },
        };
        for (int c; (c = getopt_long(argc, argv, "m:o:b:", opts, NULL)) != -1; ) {
                switch (c) {
                case 'm': model_path = optarg; break;
                case 't': tokens = optarg; break;
                case 'o': out_path = optarg; break;
                case 'k': kv_name = optarg; break;
                case 'b': if (!opt_int(optarg, "-b", 1, MAX_BATCH, &n_batch)) return 2; break;
                case 'T': if (!opt_int(optarg, "--threads", 1, 1024, &n_threads)) return 2; break;
                case 'C': use_cpu = true; break;
                default: return 2;
                }
        }
        enum rig_type kv_type;
        int32_t *ids;
        size_t n;
        if (!model_path || !tokens || !out_path || kv_type_from_name(kv_name, &kv_type) < 0 ||
            parse_tokens(tokens, &ids, &n) < 0) {
                fprintf(stderr, "usage: rig logits -m FILE --tokens 1,2,3 --out FILE.f32 [--kv f32|f16|q8_0] [-b N] [--threads N] [--cpu]\n");
                return 2;
        }
        struct rig_model *m;
        if (open_model(model_path, &m) < 0) {
                free(ids);
                return 1;
        }
        if (!tokens_fit_vocabulary(m, ids, n, "--tokens", "")) {
                model_free(m);
                free(ids);
                return 1;
        }
        struct rig_session *s = NULL;
        struct session_shape shape = { (uint32_t)n, 1, n < (size_t)n_batch ? (uint32_t)n : (uint32_t)n_batch, kv_type };
        int r = open_session(m, &shape, n_threads, use_cpu, &s);
        FILE *out = r == 0 ? fopen(out_path, "wb") : NULL;
        if (r < 0)
                fprintf(stderr, "rig: creating a session: %s\n", strerror(-r));
        else if (!out)
                fprintf(stderr, "rig: %s: %s\n", out_path, strerror(errno));
        for (size_t i = 0; out && i < n; i += shape.n_batch)
                if ((r = write_logits(s, ids, n, i, out)) < 0)
                        break;
        if (out && fclose(out) != 0 && r == 0)
                r = -EIO;
        session_free(s);
        model_free(m);
        free(ids);
        return r < 0 || !out ? 1 : 0;
}

/* ---- rig run ---- */

struct run_options {
        const char *model_path, *prompt;
        int n_predict, n_threads, n_batch;
        uint32_t n_ctx;
        enum rig_type kv_type;
        struct sampler_params sp;
        bool use_cpu;
};

static int generate(struct rig_model *m, struct rig_tokenizer *tok, const struct run_options *o)
{
        int32_t *ids = NULL;
        size_t n = 0;
        int r = tokenizer_encode(tok, o->prompt, strlen(o->prompt), true, true, &ids, &n);
        if (r < 0 || n == 0) {
                fprintf(stderr, "rig: %s\n", r < 0 ? "tokenizing the prompt: out of memory" : "the prompt gives no tokens");
                free(ids);
                return 1;
        }
        uint32_t n_ctx = o->n_ctx ? o->n_ctx : (uint32_t)(n + (size_t)o->n_predict);
        if (n + (size_t)o->n_predict > n_ctx) {
                fprintf(stderr, "rig: prompt (%zu tokens) + %d to generate do not fit a context of %u (-c)\n", n,
                        o->n_predict, n_ctx);
                free(ids);
                return 1;
        }
        if (!tokens_fit_vocabulary(m, ids, n, "the tokenizer", ": tokenizer and weights do not belong together")) {
                free(ids);
                return 1;
        }
        struct rig_session *s = NULL;
        struct sampler smp;
        struct session_shape shape = { n_ctx, 1, (uint32_t)o->n_batch, o->kv_type };
        if ((r = open_session(m, &shape, o->n_threads, o->use_cpu, &s)) < 0) {
                if (r == -EINVAL)
                        fprintf(stderr, "rig: a KV cache in this type needs a head size that is a multiple of its "
                                "block (head size %u): use --kv f16\n", m->cfg.head_dim);
                else
                        fprintf(stderr, "rig: a session of %u tokens: %s\n", n_ctx, strerror(-r));
                free(ids);
                return 1;
        }
        if ((r = sampler_init(&smp, &o->sp, m->cfg.n_vocab)) < 0) {
                session_free(s);
                free(ids);
                return 1;
        }

        fputs(o->prompt, stdout);
        fflush(stdout);
        double t0 = now_s();
        if ((r = session_eval_prompt(s, ids, n, 0, false)) < 0)
                report_eval_error(s, r, 0, n);
        for (size_t i = 0; i < n; i++)
                sampler_accept(&smp, ids[i]);
        double t_prompt = now_s() - t0;

        struct tokenizer_stream ts = { .n_pending = 0 };
        /* A token prints at most its text's bytes (plus held-back UTF-8): size the buffer to it. */
        size_t cap = 256;
        char *buf = malloc(cap);
        int n_gen = 0;
        double t1 = now_s();
        uint32_t pos = (uint32_t)n;
        int32_t next = r == 0 ? sampler_sample(&smp, s->logits) : 0;
        while (r == 0 && n_gen < o->n_predict) {
                sampler_accept(&smp, next);
                n_gen++;
                if (tokenizer_is_eog(tok, next))
                        break;
                size_t len;
                tokenizer_token_text(tok, next, &len);
                if (len + 16 > cap) {
                        char *bigger = realloc(buf, len + 16);
                        if (bigger) {
                                buf = bigger;
                                cap = len + 16;
                        }
                }
                int k = buf ? tokenizer_stream_push(tok, &ts, next, buf, cap) : -1;
                if (k > 0) {
                        fwrite(buf, 1, (size_t)k, stdout);
                        fflush(stdout);
                }
                /* the next token's draw: on a GPU only the few logits it needs come back */
                if (n_gen < o->n_predict && (r = session_eval_sample(s, next, pos, &smp, &next)) < 0)
                        report_eval_error(s, r, pos, 1);
                pos++;
        }
        int k = buf ? tokenizer_stream_flush(&ts, buf, cap) : -1;
        if (k > 0)
                fwrite(buf, 1, (size_t)k, stdout);
        free(buf);
        putchar('\n');
        double t_gen = now_s() - t1;
        fprintf(stderr, "prompt: %zu tokens in %.2f s (%.2f t/s); generation: %d tokens in %.2f s (%.2f t/s)\n", n,
                t_prompt, n / t_prompt, n_gen, t_gen, n_gen / (t_gen > 0 ? t_gen : 1));
        sampler_free(&smp);
        session_free(s);
        free(ids);
        return r < 0 ? 1 : 0;
}

static int cmd_run(int argc, char **argv)
{
        struct run_options o = { .prompt = "", .n_predict = 128, .n_threads = default_threads(), .n_batch = DEFAULT_BATCH,
                                 .kv_type = RIG_TYPE_F16 };
        long ctx;
        sampler_defaults(&o.sp);
        static const struct option opts[] = {
                { "model", required_argument, NULL, 'm' }, { "prompt", required_argument, NULL, 'p' },
                { "n-predict", required_argument, NULL, 'n' }, { "ctx-size", required_argument, NULL, 'c' },
                { "temp", required_argument, NULL, 'T' }, { "top-k", required_argument, NULL, 'K' },
                { "top-p", required_argument, NULL, 'P' }, { "min-p", required_argument, NULL, 'M' },
                { "repeat-penalty", required_argument, NULL, 'R' }, { "seed", required_argument, NULL, 'S' },
                { "kv", required_argument, NULL, 'k' }, { "threads", required_argument, NULL, 't' },
                { "batch-size", required_argument, NULL, 'b' }, { "cpu", no_argument, NULL, 'C' }, { 0 },
        };
        for (int c; (c = getopt_long(argc, argv, "m:p:n:c:t:b:", opts, NULL)) != -1; ) {
                switch (c) {
                case 'm': o.model_path = optarg; break;
                case 'p': o.prompt = optarg; break;
                case 'b': if (!opt_int(optarg, "-b", 1, MAX_BATCH, &o.n_batch)) return 2; break;
                case 'n': if (!opt_int(optarg, "-n", 0, 1 << 24, &o.n_predict)) return 2; break;
                case 'c': if (!opt_long(optarg, "-c", 1, 1 << 24, &ctx)) return 2; o.n_ctx = (uint32_t)ctx; break;
                case 'T': if (!opt_float(optarg, "--temp", 0.0f, 100.0f, &o.sp.temperature)) return 2; break;
                case 'K': if (!opt_int(optarg, "--top-k", 0, 1 << 24, &o.sp.top_k)) return 2; break;
                case 'P': if (!opt_float(optarg, "--top-p", 0.0f, 1.0f, &o.sp.top_p)) return 2; break;
                case 'M': if (!opt_float(optarg, "--min-p", 0.0f, 1.0f, &o.sp.min_p)) return 2; break;
                case 'R': if (!opt_float(optarg, "--repeat-penalty", 0.01f, 100.0f, &o.sp.repeat_penalty)) return 2; break;
                case 'S': if (!opt_u64(optarg, "--seed", &o.sp.seed)) return 2; break;
                case 'k':
                        if (kv_type_from_name(optarg, &o.kv_type) < 0) {
                                fprintf(stderr, "rig run: --kv takes f16, q8_0 or f32\n");
                                return 2;
                        }
                        break;
                case 't': if (!opt_int(optarg, "--threads", 1, 1024, &o.n_threads)) return 2; break;
                case 'C': o.use_cpu = true; break;
                default: return 2;
                }
        }
        if (!o.model_path || o.n_predict < 0) {
                fprintf(stderr, "usage: rig run -m FILE [-p PROMPT] [-n N] [-c CTX] [--temp T] [--top-k K] [--top-p P]\n"
                                "               [--min-p P] [--repeat-penalty R] [--seed S] [--kv f16|q8_0] [-b N] [--threads N]\n"
                                "               [--cpu]\n");
                return 2;
        }
        struct rig_model *m;
        struct rig_tokenizer *tok;
        if (open_model(o.model_path, &m) < 0)
                return 1;
        if (open_tokenizer(m, o.model_path, &tok) < 0) {
                model_free(m);
                return 1;
        }
        int r = generate(m, tok, &o);
        tokenizer_free(tok);
        model_free(m);
        return r;
}

/* ---- rig bench ---- */

/* Most batch sizes one -B takes, and the largest. */
#define MAX_BENCH_BATCHES 16
#define MAX_BENCH_BATCH_SEQ 256

struct bench_options {
        const char *model_path;
        int n_prompt, n_gen, reps, n_threads, n_batch;
        uint32_t batches[MAX_BENCH_BATCHES];    /* -B: sequences decoded together in tg */
        int n_batches;
        enum rig_type kv_type;
        bool is_json, use_cpu;
};

struct bench_result {
        char test[32];                  /* "pp512", "tg128", "tg128 B=4" */
        bool is_gen;
        int n_tokens;                   /* per sequence */
        uint32_t batch;                 /* sequences (1 for pp) */
        double mean_tps, stddev_tps;    /* tokens of all sequences per second */
};

/* Token ids for a benchmark: any valid ids do, the speed does not depend on them. */
static int32_t bench_token(const struct rig_model *m, uint32_t i)
{
        return (int32_t)((i * 7919u + 13u) % m->cfg.n_vocab);
}

/* A prompt of n tokens from position 0 on a fresh cache, n_batch tokens a step (what
 * llama-bench's pp does); seconds. */
static int bench_prompt(struct rig_session *s, int n, double *seconds)
{
        int32_t *ids = malloc((size_t)n * sizeof(int32_t));
        if (!ids)
                return -ENOMEM;
        for (int i = 0; i < n; i++)
                ids[i] = bench_token(s->model, (uint32_t)i);
        double t0 = now_s();
        int r = session_eval_prompt(s, ids, (size_t)n, 0, false);
        *seconds = now_s() - t0;
        free(ids);
        return r;
}

/* n steps of one token for each of n_seq sequences from position 0 (llama-bench's tg for one,
 * llama-batched-bench's decode for more); seconds. */
static int bench_generate(struct rig_session *s, int n, uint32_t n_seq, double *seconds)
{
        int32_t tokens[MAX_BENCH_BATCH_SEQ];
        uint32_t pos[MAX_BENCH_BATCH_SEQ], seq[MAX_BENCH_BATCH_SEQ];
        double t0 = now_s();
        for (int t = 0; t < n; t++) {
                for (uint32_t j = 0; j < n_seq; j++) {
                        tokens[j] = bench_token(s->model, (uint32_t)t * n_seq + j);
                        pos[j] = (uint32_t)t;
                        seq[j] = j;
                }
                struct rig_batch batch = { n_seq, tokens, pos, seq };
                int r = session_eval_batch(s, &batch, true);
                if (r < 0)
                        return r;
        }
        *seconds = now_s() - t0;
        return 0;
}

static int bench_once(struct rig_session *s, const struct bench_result *test, int n, double *seconds)
{
        return test->is_gen ? bench_generate(s, n, test->batch, seconds) : bench_prompt(s, n, seconds);
}

/* One warm-up run (it also records the step's graph on a GPU), then reps timed runs: mean and
 * sample stddev of tokens per second. */
static int bench_test(struct rig_session *s, int reps, struct bench_result *test)
{
        double sum = 0, sum2 = 0, t;
        int n = test->n_tokens;
        int r = bench_once(s, test, test->is_gen && n > 16 ? 16 : n, &t);
        for (int k = 0; r == 0 && k < reps; k++) {
                r = bench_once(s, test, n, &t);
                double tps = (double)n * test->batch / t;
                sum += tps;
                sum2 += tps * tps;
        }
        if (r < 0)
                return r;
        test->mean_tps = sum / reps;
        double var = reps > 1 ? (sum2 - sum * sum / reps) / (reps - 1) : 0;
        test->stddev_tps = var > 0 ? sqrt(var) : 0;
        return 0;
}

/* Weight bytes read per second: each step streams the weights once for all its sequences. */
static double bench_weight_bandwidth(const struct rig_model *m, const struct bench_result *t)
{
        return (double)m->token_bytes * t->mean_tps / t->batch;
}

static void bench_print_json(const struct bench_options *o, const struct rig_model *m, const char *name,
                             const char *backend, const struct bench_result *res, int n_res, double copy_bw)
{
        printf("{\"model\":\"%s\",\"size_bytes\":%zu,\"params\":%.0f,\"backend\":\"%s\",\"split\":\"none\","
               "\"threads\":%d,\"n_batch\":%d,\"copy_bandwidth_bytes_per_s\":%.0f,\"results\":[",
               name, m->weights_bytes, (double)m->n_params, backend, o->n_threads, o->n_batch, copy_bw);
        for (int i = 0; i < n_res; i++) {
                printf("%s{\"test\":\"%s\",\"n_tokens\":%d,\"batch\":%u,\"reps\":%d,\"tokens_per_s\":%.3f,\"stddev\":%.3f",
                       i ? "," : "", res[i].test, res[i].n_tokens, res[i].batch, o->reps, res[i].mean_tps,
                       res[i].stddev_tps);
                if (res[i].is_gen) {
                        double bw = bench_weight_bandwidth(m, &res[i]);
                        printf(",\"weight_bytes_per_s\":%.0f,\"fraction_of_copy_bandwidth\":%.4f", bw,
                               copy_bw > 0 ? bw / copy_bw : 0);
                }
                printf("}");
        }
        printf("]}\n");
}

static void bench_print(const struct bench_options *o, const struct rig_model *m, const char *backend,
                        const struct bench_result *res, int n_res, double copy_bw)
{
        const char *name = strrchr(o->model_path, '/') ? strrchr(o->model_path, '/') + 1 : o->model_path;
        if (o->is_json) {
                bench_print_json(o, m, name, backend, res, n_res, copy_bw);
                return;
        }
        /* llama-bench's units: GiB and billions, with MiB and millions for small models */
        double params = (double)m->n_params;
        bool is_big = m->weights_bytes >= (1u << 30);
        double size = (double)m->weights_bytes / (is_big ? 1u << 30 : 1u << 20);
        bool is_billions = params >= 1e9;
        printf("| model | size | params | backend | split | test | t/s |\n");
        printf("| --- | ---: | ---: | --- | --- | ---: | ---: |\n");
        for (int i = 0; i < n_res; i++)
                printf("| %s | %.2f %s | %.2f %s | %s | none | %s | %.2f ± %.2f |\n", name, size, is_big ? "GiB" : "MiB",
                       params / (is_billions ? 1e9 : 1e6), is_billions ? "B" : "M", backend, res[i].test,
                       res[i].mean_tps, res[i].stddev_tps);
        for (int i = 0; i < n_res; i++) {
                if (!res[i].is_gen)
                        continue;
                double bw = bench_weight_bandwidth(m, &res[i]);
                printf("%s%s: %.1f GB/s of weights streamed, %.0f%% of the measured copy bandwidth (%.1f GB/s)\n",
                       i == 0 || !res[i - 1].is_gen ? "\n" : "", res[i].test, bw / 1e9, copy_bw > 0 ? 100 * bw / copy_bw : 0,
                       copy_bw / 1e9);
        }
}

/* "1,2,4,8" → batches; false (with the message) for anything else. */
static bool parse_batches(const char *arg, struct bench_options *o)
{
        o->n_batches = 0;
        const char *p = arg;
        for (;;) {
                char *end;
                errno = 0;
                long v = strtol(p, &end, 10);
                if (errno || end == p || v < 1 || v > MAX_BENCH_BATCH_SEQ || o->n_batches == MAX_BENCH_BATCHES ||
                    (*end != ',' && *end != '\0')) {
                        fprintf(stderr, "rig bench: -B takes up to %d batch sizes from 1 to %d, as 1,2,4,8, not '%s'\n",
                                MAX_BENCH_BATCHES, MAX_BENCH_BATCH_SEQ, arg);
                        return false;
                }
                o->batches[o->n_batches++] = (uint32_t)v;
                if (*end == '\0')
                        return true;
                p = end + 1;
        }
}

/* The tests, in llama-bench's order: pp, then tg at each batch size. */
static int bench_plan(const struct bench_options *o, struct bench_result *res)
{
        int n = 0;
        if (o->n_prompt > 0) {
                memset(&res[n], 0, sizeof(res[n]));
                snprintf(res[n].test, sizeof(res[n].test), "pp%d", o->n_prompt);
                res[n].n_tokens = o->n_prompt;
                res[n].batch = 1;
                n++;
        }
        for (int i = 0; o->n_gen > 0 && i < o->n_batches; i++, n++) {
                memset(&res[n], 0, sizeof(res[n]));
                if (o->batches[i] == 1)
                        snprintf(res[n].test, sizeof(res[n].test), "tg%d", o->n_gen);
                else
                        snprintf(res[n].test, sizeof(res[n].test), "tg%d B=%u", o->n_gen, o->batches[i]);
                res[n].is_gen = true;
                res[n].n_tokens = o->n_gen;
                res[n].batch = o->batches[i];
        }
        return n;
}

static int cmd_bench(int argc, char **argv)
{
        struct bench_options o = { .n_prompt = 512, .n_gen = 128, .reps = 5, .n_threads = default_threads(),
                                   .n_batch = DEFAULT_BATCH, .batches = { 1 }, .n_batches = 1, .kv_type = RIG_TYPE_F16 };
        static const struct option opts[] = {
                { "model", required_argument, NULL, 'm' }, { "n-prompt", required_argument, NULL, 'p' },
                { "n-gen", required_argument, NULL, 'n' }, { "repetitions", required_argument, NULL, 'r' },
                { "batch-size", required_argument, NULL, 'b' }, { "batches", required_argument, NULL, 'B' },
                { "threads", required_argument, NULL, 't' }, { "kv", required_argument, NULL, 'k' },
                { "json", no_argument, NULL, 'j' }, { "cpu", no_argument, NULL, 'C' }, { 0 },
        };
        for (int c; (c = getopt_long(argc, argv, "m:p:n:r:t:b:B:", opts, NULL)) != -1; ) {
                switch (c) {
                case 'm': o.model_path = optarg; break;
                case 'p': if (!opt_int(optarg, "-p", 0, 1 << 20, &o.n_prompt)) return 2; break;
                case 'n': if (!opt_int(optarg, "-n", 0, 1 << 20, &o.n_gen)) return 2; break;
                case 'r': if (!opt_int(optarg, "-r", 1, 1000, &o.reps)) return 2; break;
                case 'b': if (!opt_int(optarg, "-b", 1, MAX_BATCH, &o.n_batch)) return 2; break;
                case 'B': if (!parse_batches(optarg, &o)) return 2; break;
                case 't': if (!opt_int(optarg, "--threads", 1, 1024, &o.n_threads)) return 2; break;
                case 'k':
                        if (kv_type_from_name(optarg, &o.kv_type) < 0) {
                                fprintf(stderr, "rig bench: --kv takes f16, q8_0 or f32\n");
                                return 2;
                        }
                        break;
                case 'j': o.is_json = true; break;
                case 'C': o.use_cpu = true; break;
                default: return 2;
                }
        }
        if (!o.model_path || (o.n_prompt == 0 && o.n_gen == 0)) {
                fprintf(stderr, "usage: rig bench -m FILE [-p 512] [-n 128] [-B 1,2,4,8] [-b 512] [-r 5] [--kv f16|q8_0|f32]\n"
                                "                 [--threads N] [--cpu] [--json]\n");
                return 2;
        }
        struct rig_model *m;
        if (open_model(o.model_path, &m) < 0)
                return 1;
        struct session_shape shape = { (uint32_t)(o.n_prompt > o.n_gen ? o.n_prompt : o.n_gen), 1, (uint32_t)o.n_batch,
                                       o.kv_type };
        for (int i = 0; i < o.n_batches; i++)
                if (o.batches[i] > shape.n_seq)
                        shape.n_seq = o.batches[i];
        if (shape.n_seq > shape.n_batch)
                shape.n_batch = shape.n_seq;
        struct rig_session *s;
        int r = open_session(m, &shape, o.n_threads, o.use_cpu, &s);
        if (r < 0) {
                fprintf(stderr, "rig bench: a session of %u tokens for %u sequences: %s\n", shape.n_ctx, shape.n_seq,
                        strerror(-r));
                model_free(m);
                return 1;
        }
        struct bench_result res[1 + MAX_BENCH_BATCHES];
        int n_res = bench_plan(&o, res);
        for (int i = 0; r == 0 && i < n_res; i++)
                if ((r = bench_test(s, o.reps, &res[i])) < 0)
                        report_eval_error(s, r, 0, (size_t)res[i].n_tokens);
        if (r == 0)
                bench_print(&o, m, s->backend->ops->name, res, n_res, s->backend->ops->copy_bandwidth(s->backend));
        session_free(s);
        model_free(m);
        return r < 0 ? 1 : 0;
}

/* ---- rig synth ---- */

static int cmd_synth(int argc, char **argv)
{
        struct synth_options o = { .seed = 1, .is_progress = isatty(STDERR_FILENO) };
        const char *shape = NULL, *type = NULL;
        static const struct option opts[] = {
                { "shape", required_argument, NULL, 's' }, { "type", required_argument, NULL, 't' },
                { "tokenizer", required_argument, NULL, 'k' }, { "seed", required_argument, NULL, 'S' },
                { "out", required_argument, NULL, 'o' }, { 0 },
        };
        for (int c; (c = getopt_long(argc, argv, "o:", opts, NULL)) != -1; ) {
                switch (c) {
                case 's': shape = optarg; break;
                case 't': type = optarg; break;
                case 'k': o.tokenizer_json = optarg; break;
                case 'S': if (!opt_u64(optarg, "--seed", &o.seed)) return 2; break;
                case 'o': o.out_path = optarg; break;
                default: return 2;
                }
        }
        o.shape = shape ? synth_find_shape(shape) : NULL;
        o.type = type ? synth_find_type(type) : NULL;
        if (!o.shape || !o.type || !o.out_path) {
                fprintf(stderr, "usage: rig synth --shape NAME --type F32|F16|BF16|Q8_0|Q4_0|Q4_K|Q5_K|Q6_K|Q4_K_M|Q4_K_S\n"
                                "                 [--tokenizer tokenizer.json] [--seed S] -o FILE\nshapes:");
                for (const char *const *n = synth_shape_names(); *n; n++)
                        fprintf(stderr, " %s", *n);
                fputc('\n', stderr);
                return 2;
        }
        char err[ERR_LEN] = "";
        int r = synth_write(&o, err, sizeof(err));
        if (r < 0) {
                fprintf(stderr, "rig synth: %s\n", err[0] ? err : strerror(-r));
                return 1;
        }
        return 0;
}

static void usage(FILE *f)
{
        fprintf(f, "Usage: rig COMMAND ...\n\n"
                   "  run       generate text from a prompt\n"
                   "  bench     prompt (pp) and generation (tg) speed, llama-bench style\n"
                   "  logits    write the logits of a token sequence (float32, n_tokens x n_vocab)\n"
                   "  tokenize  show how a model's tokenizer splits text\n"
                   "  synth     write a GGUF model of a real shape with random weights\n");
}

int main(int argc, char **argv)
{
        if (argc < 2) {
                usage(stderr);
                return 2;
        }
        static const struct { const char *name; int (*run)(int, char **); } commands[] = {
                { "run", cmd_run }, { "bench", cmd_bench }, { "logits", cmd_logits }, { "tokenize", cmd_tokenize }, { "synth", cmd_synth },
        };
        if (strcmp(argv[1], "-h") == 0 || strcmp(argv[1], "--help") == 0) {
                usage(stdout);
                return 0;
        }
        for (size_t i = 0; i < sizeof(commands) / sizeof(commands[0]); i++)
                if (strcmp(argv[1], commands[i].name) == 0)
                        return commands[i].run(argc - 1, argv + 1);
        fprintf(stderr, "rig: unknown command '%s'\n\n", argv[1]);
        usage(stderr);
        return 2;
}
