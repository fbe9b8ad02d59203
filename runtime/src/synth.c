/* synth.c — synthetic GGUF models: real shapes and metadata, random weights, a real tokenizer.
 * Weights are drawn per tensor from a generator seeded by (seed, tensor name), so a file is the
 * same on every machine, and written one row at a time through the GGUF writer's fill callback:
 * a 4.9 GB model never sits in memory. */
#include <errno.h>
#include <math.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "gguf.h"
#include "hf_tokenizer.h"
#include "quant.h"
#include "synth.h"
#include "tokenizer.h"
#include "errmsg.h"

static const struct synth_shape shapes[] = {
        /* name               arch     n_embd  n_ff  layers heads kv  hd   vocab   ctx      rope_base  eps   freqs tied */
        { "tiny-llama",       "llama",    256,   512,   2,    4,  2,  64,      0,    2048,    10000.0f, 1e-5f, 0, 0 },
        { "tiny-qwen2",       "qwen2",    256,   512,   2,    4,  2,  64,      0,    2048,  1000000.0f, 1e-6f, 0, 1 },
        { "llama3.2-1b",      "llama",   2048,  8192,  16,   32,  8,  64, 128256,  131072,   500000.0f, 1e-5f, 1, 1 },
        { "llama3-8b",        "llama",   4096, 14336,  32,   32,  8, 128, 128256,  131072,   500000.0f, 1e-5f, 1, 0 },
        { "mistral-nemo-12b", "llama",   5120, 14336,  40,   32,  8, 128, 131072, 1024000,  1000000.0f, 1e-5f, 0, 0 },
        { "qwen2.5-32b",      "qwen2",   5120, 27648,  64,   40,  8, 128, 152064,   32768,  1000000.0f, 1e-6f, 0, 0 },
        { "llama3-70b",       "llama",   8192, 28672,  80,   64,  8, 128, 128256,  131072,   500000.0f, 1e-5f, 1, 0 },
        { "qwen2.5-72b",      "qwen2",   8192, 29568,  80,   64,  8, 128, 152064,   32768,  1000000.0f, 1e-6f, 0, 0 },
        { "llama3.1-405b",    "llama",  16384, 53248, 126,  128,  8, 128, 128256,  131072,   500000.0f, 1e-5f, 1, 0 },
};

const struct synth_shape *synth_find_shape(const char *name)
{
        for (size_t i = 0; i < sizeof(shapes) / sizeof(shapes[0]); i++)
                if (strcmp(shapes[i].name, name) == 0)
                        return &shapes[i];
        return NULL;
}

const char *const *synth_shape_names(void)
{
        static const char *names[sizeof(shapes) / sizeof(shapes[0]) + 1];
        for (size_t i = 0; i < sizeof(shapes) / sizeof(shapes[0]); i++)
                names[i] = shapes[i].name;
        return names;
}

/* ---- file types: one weight type for everything, or llama.cpp-style mixes ---- */

enum tensor_role { ROLE_EMBED, ROLE_OUTPUT, ROLE_ATTN_QKO, ROLE_ATTN_V, ROLE_FFN_GATE_UP, ROLE_FFN_DOWN };

struct synth_type {
        const char *name;
        enum rig_type base;
        int is_k_mix;                   /* Q4_K_M / Q4_K_S: some tensors get more bits */
        int is_medium;                  /* _M: attn_v and ffn_down in Q6_K on the layers that matter most */
};

static const struct synth_type types[] = {
        { "F32", RIG_TYPE_F32, 0, 0 },   { "F16", RIG_TYPE_F16, 0, 0 },   { "BF16", RIG_TYPE_BF16, 0, 0 },
        { "Q8_0", RIG_TYPE_Q8_0, 0, 0 }, { "Q4_0", RIG_TYPE_Q4_0, 0, 0 }, { "Q4_K", RIG_TYPE_Q4_K, 0, 0 },
        { "Q5_K", RIG_TYPE_Q5_K, 0, 0 }, { "Q6_K", RIG_TYPE_Q6_K, 0, 0 },
        { "Q4_K_M", RIG_TYPE_Q4_K, 1, 1 }, { "Q4_K_S", RIG_TYPE_Q4_K, 1, 0 },
};

const struct synth_type *synth_find_type(const char *name)
{
        for (size_t i = 0; i < sizeof(types) / sizeof(types[0]); i++)
                if (strcasecmp(types[i].name, name) == 0)
                        return &types[i];
        return NULL;
}

/* llama.cpp's rule for the K mixes: the first and last eighth of the layers, and every third in
 * between, matter most. */
static int uses_more_bits(uint32_t layer, uint32_t n_layer)
{
        return layer < n_layer / 8 || layer >= 7 * n_layer / 8 || (layer - n_layer / 8) % 3 == 2;
}

static enum rig_type pick_type(const struct synth_type *t, enum tensor_role role, uint32_t layer, uint32_t n_layer)
{
        if (!t->is_k_mix)
                return t->base;
        switch (role) {
        case ROLE_OUTPUT:
                return RIG_TYPE_Q6_K;
        case ROLE_ATTN_V:
        case ROLE_FFN_DOWN:
                if (t->is_medium && uses_more_bits(layer, n_layer))
                        return RIG_TYPE_Q6_K;
                if (!t->is_medium && role == ROLE_FFN_DOWN && layer < n_layer / 8)
                        return RIG_TYPE_Q5_K;
                return RIG_TYPE_Q4_K;
        default:
                return RIG_TYPE_Q4_K;
        }
}

/* ---- random weights ---- */

struct fill_ctx {
        enum rig_type type;
        uint64_t n_in, n_rows;
        uint64_t seed;
        float scale;                    /* uniform in [-scale, scale] ... */
        float offset;                   /* ... plus offset (norm weights sit around 1) */
        const struct synth_options *o;
};

static uint64_t mix64(uint64_t z)
{
        z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
        z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
        return z ^ (z >> 31);
}

static uint64_t name_seed(uint64_t seed, const char *name)
{
        uint64_t h = 1469598103934665603ull;    /* FNV-1a */
        for (const char *p = name; *p; p++)
                h = (h ^ (unsigned char)*p) * 1099511628211ull;
        return mix64(seed ^ h);
}

static void random_row(uint64_t *state, float *row, uint64_t n, float scale, float offset)
{
        for (uint64_t i = 0; i < n; i++) {
                *state += 0x9e3779b97f4a7c15ull;
                uint64_t bits = mix64(*state);
                float u = (float)((bits >> 40) * 0x1.0p-24) * 2.0f - 1.0f;     /* [-1, 1) */
                row[i] = offset + scale * u;
        }
}

/* Rows are independent: row r starts the generator where row r-1 would have left it, so any
 * thread can make any row and the file does not depend on the thread count. */
struct fill_job {
        const struct fill_ctx *f;
        uint8_t *dst;
        size_t row_bytes;
        uint64_t row_begin, row_end;
        int r;
};

static void *fill_rows(void *arg)
{
        struct fill_job *j = arg;
        const struct fill_ctx *f = j->f;
        float *row = malloc(f->n_in * sizeof(float));
        if (!row) {
                j->r = -ENOMEM;
                return NULL;
        }
        for (uint64_t r = j->row_begin; r < j->row_end; r++) {
                uint64_t state = f->seed + r * f->n_in * 0x9e3779b97f4a7c15ull;
                random_row(&state, row, f->n_in, f->scale, f->offset);
                uint8_t *out = j->dst + r * j->row_bytes;
                if (f->type == RIG_TYPE_F32)
                        memcpy(out, row, j->row_bytes);
                else
                        rig_quantize_row(f->type, row, out, f->n_in);
        }
        free(row);
        j->r = 0;
        return NULL;
}

static int fill_tensor(void *ctx, void *dst, size_t size)
{
        enum { MAX_THREADS = 64 };
        const struct fill_ctx *f = ctx;
        size_t row_bytes = f->type == RIG_TYPE_F32 ? f->n_in * sizeof(float) : rig_row_bytes(f->type, f->n_in);
        if (row_bytes * f->n_rows != size)
                return -EINVAL;
        long online = sysconf(_SC_NPROCESSORS_ONLN);
        uint64_t n_threads = online < 1 ? 1 : online > MAX_THREADS ? MAX_THREADS : (uint64_t)online;
        if (n_threads > f->n_rows)
                n_threads = f->n_rows;
        struct fill_job jobs[MAX_THREADS];
        pthread_t threads[MAX_THREADS];
        bool started[MAX_THREADS] = { false };
        for (uint64_t t = 0; t < n_threads; t++) {
                jobs[t] = (struct fill_job){ f, dst, row_bytes, f->n_rows * t / n_threads,
                                             f->n_rows * (t + 1) / n_threads, 0 };
                started[t] = t > 0 && pthread_create(&threads[t], NULL, fill_rows, &jobs[t]) == 0;
                if (t > 0 && !started[t])
                        fill_rows(&jobs[t]);    /* no thread: do it here */
        }
        fill_rows(&jobs[0]);
        int r = 0;
        for (uint64_t t = 0; t < n_threads; t++) {
                if (started[t])
                        pthread_join(threads[t], NULL);
                if (jobs[t].r < 0)
                        r = jobs[t].r;
        }
        return r;
}

/* ---- metadata ---- */

/* Without a tokenizer.json: <unk>, <s>, </s>, the 256 byte tokens and "▁" (SentencePiece's
 * space), so any text encodes (as bytes) and decodes back exactly. */
static int add_byte_vocab(struct gguf_writer *w, uint32_t *n_vocab)
{
        enum { N = 3 + 256 + 1 };
        static char texts[N][8];
        const char *tokens[N];
        size_t lens[N];
        float scores[N];
        int32_t kinds[N];
        snprintf(texts[0], sizeof(texts[0]), "<unk>");
        snprintf(texts[1], sizeof(texts[1]), "<s>");
        snprintf(texts[2], sizeof(texts[2]), "</s>");
        for (int i = 3; i < 3 + 256; i++)
                snprintf(texts[i], sizeof(texts[i]), "<0x%02X>", i - 3);
        snprintf(texts[N - 1], sizeof(texts[N - 1]), "\xe2\x96\x81");
        for (int i = 0; i < N; i++) {
                tokens[i] = texts[i];
                lens[i] = strlen(texts[i]);
                scores[i] = 0.0f;
                kinds[i] = i == 0 ? TT_UNKNOWN : i < 3 ? TT_CONTROL : i < N - 1 ? TT_BYTE : TT_NORMAL;
        }
        int r;
        if ((r = gguf_writer_add_str(w, "tokenizer.ggml.model", "llama")) < 0 ||
            (r = gguf_writer_add_arr_str(w, "tokenizer.ggml.tokens", tokens, lens, N)) < 0 ||
            (r = gguf_writer_add_arr_f32(w, "tokenizer.ggml.scores", scores, N)) < 0 ||
            (r = gguf_writer_add_arr_i32(w, "tokenizer.ggml.token_type", kinds, N)) < 0 ||
            (r = gguf_writer_add_u32(w, "tokenizer.ggml.unknown_token_id", 0)) < 0 ||
            (r = gguf_writer_add_u32(w, "tokenizer.ggml.bos_token_id", 1)) < 0 ||
            (r = gguf_writer_add_u32(w, "tokenizer.ggml.eos_token_id", 2)) < 0 ||
            (r = gguf_writer_add_bool(w, "tokenizer.ggml.add_bos_token", true)) < 0 ||
            (r = gguf_writer_add_bool(w, "tokenizer.ggml.add_space_prefix", false)) < 0)
                return r;
        *n_vocab = N;
        return 0;
}

static int add_model_metadata(struct gguf_writer *w, const struct synth_options *o)
{
        const struct synth_shape *s = o->shape;
        char key[128], name[160];
        int r;
        snprintf(name, sizeof(name), "rig synth %s %s seed %llu", s->name, o->type->name, (unsigned long long)o->seed);
#define KEY(suffix) (snprintf(key, sizeof(key), "%s." suffix, s->arch), key)
        if ((r = gguf_writer_add_str(w, "general.architecture", s->arch)) < 0 ||
            (r = gguf_writer_add_str(w, "general.name", name)) < 0 ||
            (r = gguf_writer_add_u32(w, "general.alignment", GGUF_DEFAULT_ALIGNMENT)) < 0 ||
            (r = gguf_writer_add_u32(w, KEY("context_length"), s->n_ctx)) < 0 ||
            (r = gguf_writer_add_u32(w, KEY("embedding_length"), s->n_embd)) < 0 ||
            (r = gguf_writer_add_u32(w, KEY("block_count"), s->n_layer)) < 0 ||
            (r = gguf_writer_add_u32(w, KEY("feed_forward_length"), s->n_ff)) < 0 ||
            (r = gguf_writer_add_u32(w, KEY("attention.head_count"), s->n_head)) < 0 ||
            (r = gguf_writer_add_u32(w, KEY("attention.head_count_kv"), s->n_head_kv)) < 0 ||
            (r = gguf_writer_add_u32(w, KEY("attention.key_length"), s->head_dim)) < 0 ||
            (r = gguf_writer_add_u32(w, KEY("attention.value_length"), s->head_dim)) < 0 ||
            (r = gguf_writer_add_u32(w, KEY("rope.dimension_count"), s->head_dim)) < 0 ||
            (r = gguf_writer_add_f32(w, KEY("rope.freq_base"), s->rope_base)) < 0 ||
            (r = gguf_writer_add_f32(w, KEY("attention.layer_norm_rms_epsilon"), s->rms_eps)) < 0)
                return r;
#undef KEY
        return 0;
}

/* ---- tensors ---- */

struct synth_state {
        const struct synth_options *o;
        struct fill_ctx *fills;
        size_t n_fills, cap;
        float *rope_freqs;
};

static int add_tensor(struct gguf_writer *w, struct synth_state *st, const char *name, enum rig_type type,
                      uint64_t n_in, uint64_t n_rows, float scale, float offset)
{
        if (st->n_fills == st->cap)
                return -ENOSPC;
        struct fill_ctx *f = &st->fills[st->n_fills++];
        *f = (struct fill_ctx){ type, n_in, n_rows, name_seed(st->o->seed, name), scale, offset, st->o };
        uint64_t ne[2] = { n_in, n_rows };
        return gguf_writer_add_tensor(w, name, type, n_rows == 1 ? 1 : 2, ne, fill_tensor, f);
}

/* Llama 3.1's long-context factors: low frequencies slowed by `factor`, high ones kept, a smooth
 * ramp between (rope_scaling: factor 8, low_freq_factor 1, high_freq_factor 4, original 8192). */
static void llama31_rope_freqs(float *out, uint32_t head_dim, float base)
{
        const double factor = 8.0, low = 1.0, high = 4.0, original = 8192.0;
        double low_wavelen = original / low, high_wavelen = original / high;
        for (uint32_t i = 0; i < head_dim / 2; i++) {
                double freq = pow(base, -2.0 * i / head_dim);
                double wavelen = 2.0 * M_PI / freq;
                if (wavelen < high_wavelen) {
                        out[i] = 1.0f;
                } else if (wavelen > low_wavelen) {
                        out[i] = (float)factor;
                } else {
                        double smooth = (original / wavelen - low) / (high - low);
                        out[i] = (float)(1.0 / ((1.0 - smooth) / factor + smooth));
                }
        }
}

static int add_layer(struct gguf_writer *w, struct synth_state *st, uint32_t i)
{
        const struct synth_shape *s = st->o->shape;
        const struct synth_type *t = st->o->type;
        uint64_t q_dim = (uint64_t)s->n_head * s->head_dim, kv_dim = (uint64_t)s->n_head_kv * s->head_dim;
        float in_scale = 1.0f / sqrtf((float)s->n_embd), ff_scale = 1.0f / sqrtf((float)s->n_ff);
        float q_scale = 1.0f / sqrtf((float)q_dim);
        char name[96];
        int r;
#define NAME(x) (snprintf(name, sizeof(name), "blk.%u." x, i), name)
        if ((r = add_tensor(w, st, NAME("attn_norm.weight"), RIG_TYPE_F32, s->n_embd, 1, 0.1f, 1.0f)) < 0 ||
            (r = add_tensor(w, st, NAME("attn_q.weight"), pick_type(t, ROLE_ATTN_QKO, i, s->n_layer), s->n_embd, q_dim, in_scale, 0)) < 0 ||
            (r = add_tensor(w, st, NAME("attn_k.weight"), pick_type(t, ROLE_ATTN_QKO, i, s->n_layer), s->n_embd, kv_dim, in_scale, 0)) < 0 ||
            (r = add_tensor(w, st, NAME("attn_v.weight"), pick_type(t, ROLE_ATTN_V, i, s->n_layer), s->n_embd, kv_dim, in_scale, 0)) < 0 ||
            (r = add_tensor(w, st, NAME("attn_output.weight"), pick_type(t, ROLE_ATTN_QKO, i, s->n_layer), q_dim, s->n_embd, q_scale, 0)) < 0)
                return r;
        if (strcmp(s->arch, "qwen2") == 0 &&
            ((r = add_tensor(w, st, NAME("attn_q.bias"), RIG_TYPE_F32, q_dim, 1, 0.1f, 0)) < 0 ||
             (r = add_tensor(w, st, NAME("attn_k.bias"), RIG_TYPE_F32, kv_dim, 1, 0.1f, 0)) < 0 ||
             (r = add_tensor(w, st, NAME("attn_v.bias"), RIG_TYPE_F32, kv_dim, 1, 0.1f, 0)) < 0))
                return r;
        if ((r = add_tensor(w, st, NAME("ffn_norm.weight"), RIG_TYPE_F32, s->n_embd, 1, 0.1f, 1.0f)) < 0 ||
            (r = add_tensor(w, st, NAME("ffn_gate.weight"), pick_type(t, ROLE_FFN_GATE_UP, i, s->n_layer), s->n_embd, s->n_ff, in_scale, 0)) < 0 ||
            (r = add_tensor(w, st, NAME("ffn_up.weight"), pick_type(t, ROLE_FFN_GATE_UP, i, s->n_layer), s->n_embd, s->n_ff, in_scale, 0)) < 0 ||
            (r = add_tensor(w, st, NAME("ffn_down.weight"), pick_type(t, ROLE_FFN_DOWN, i, s->n_layer), s->n_ff, s->n_embd, ff_scale, 0)) < 0)
                return r;
#undef NAME
        return 0;
}

int synth_write(const struct synth_options *o, char *err, size_t err_size)
{
        const struct synth_shape *s = o->shape;
        err[0] = '\0';
        struct gguf_writer *w = gguf_writer_new();
        if (!w)
                return -ENOMEM;
        struct synth_state st = { .o = o, .cap = 16 + 16 * (size_t)s->n_layer };
        st.fills = calloc(st.cap, sizeof(*st.fills));
        int r = st.fills ? add_model_metadata(w, o) : -ENOMEM;
        if (r < 0)
                goto out;

        size_t n_vocab = s->n_vocab;
        uint32_t byte_vocab = 0;
        if (o->tokenizer_json) {
                r = hf_tokenizer_to_gguf(o->tokenizer_json, w, &n_vocab, err, err_size);
                if (r < 0)
                        goto out;
        } else {
                r = add_byte_vocab(w, &byte_vocab);
                if (r < 0)
                        goto out;
                n_vocab = byte_vocab;
        }

        const struct synth_type *t = o->type;
        if ((r = add_tensor(w, &st, "token_embd.weight", pick_type(t, ROLE_EMBED, 0, s->n_layer), s->n_embd, n_vocab, 1.0f, 0)) < 0)
                goto out;
        if (s->has_rope_freqs) {
                st.rope_freqs = malloc(s->head_dim / 2 * sizeof(float));
                if (!st.rope_freqs) {
                        r = -ENOMEM;
                        goto out;
                }
                llama31_rope_freqs(st.rope_freqs, s->head_dim, s->rope_base);
                uint64_t ne[1] = { s->head_dim / 2 };
                if ((r = gguf_writer_add_tensor_data(w, "rope_freqs.weight", RIG_TYPE_F32, 1, ne, st.rope_freqs)) < 0)
                        goto out;
        }
        for (uint32_t i = 0; i < s->n_layer; i++)
                if ((r = add_layer(w, &st, i)) < 0)
                        goto out;
        if ((r = add_tensor(w, &st, "output_norm.weight", RIG_TYPE_F32, s->n_embd, 1, 0.1f, 1.0f)) < 0)
                goto out;
        if (!s->is_tied &&
            (r = add_tensor(w, &st, "output.weight", pick_type(t, ROLE_OUTPUT, 0, s->n_layer), s->n_embd, n_vocab,
                            1.0f / sqrtf((float)s->n_embd), 0)) < 0)
                goto out;

        r = gguf_writer_write(w, o->out_path, err, err_size);
out:
        if (r < 0 && !err[0])
                errmsg(err, err_size, r, "writing %s: %s", o->out_path, strerror(-r));
        gguf_writer_free(w);
        free(st.fills);
        free(st.rope_freqs);
        return r;
}
