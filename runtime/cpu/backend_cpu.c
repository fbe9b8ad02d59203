/* backend_cpu.c — the ops of backend.h on the CPU: matrix-vector products split by rows across
 * the thread pool (each input converted once to the weight's dot-product type), attention one
 * (token, KV head) per job over the KV cache, the rest plain loops. */
#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "backend_cpu.h"
#include "kv.h"
#include "pool.h"
#include "vec_dot.h"

struct cpu_backend {
        struct rig_backend base;
        struct rig_kv kv;
        struct cpu_pool *pool;
        struct rig_batch batch;         /* the step's, valid until end_batch */
        void *xq;               /* an input converted to a weight's dot-product type */
        float *thread_scratch;  /* per thread: scores [group][n_ctx], k and v rows [head_dim] */
        size_t thread_scratch_floats;
        float **buffers;        /* from alloc(), freed with the backend */
        size_t n_buffers;
};

static struct cpu_backend *cpu(struct rig_backend *b)
{
        return (struct cpu_backend *)b;
}

static const struct rig_config *cfg(struct rig_backend *b)
{
        return &b->model->cfg;
}

static void cpu_free(struct rig_backend *b)
{
        struct cpu_backend *c = cpu(b);
        if (!c)
                return;
        kv_free(&c->kv);
        cpu_pool_free(c->pool);
        free(c->xq);
        free(c->thread_scratch);
        for (size_t i = 0; i < c->n_buffers; i++)
                free(c->buffers[i]);
        free(c->buffers);
        free(c);
}

static float *cpu_alloc(struct rig_backend *b, size_t n)
{
        struct cpu_backend *c = cpu(b);
        float **grown = realloc(c->buffers, (c->n_buffers + 1) * sizeof(*grown));
        if (!grown)
                return NULL;
        c->buffers = grown;
        float *p = calloc(n ? n : 1, sizeof(float));
        if (p)
                c->buffers[c->n_buffers++] = p;
        return p;
}

static int cpu_read(struct rig_backend *b, float *dst, const float *src, size_t n)
{
        (void)b;
        memcpy(dst, src, n * sizeof(float));
        return 0;
}

static void cpu_begin_batch(struct rig_backend *b, const struct rig_batch *batch)
{
        cpu(b)->batch = *batch;
}

static void cpu_end_batch(struct rig_backend *b)
{
        memset(&cpu(b)->batch, 0, sizeof(cpu(b)->batch));
}

static void cpu_embed(struct rig_backend *b, float *x)
{
        const struct rig_weight *e = &b->model->tok_embd;
        const struct rig_batch *batch = &cpu(b)->batch;
        uint32_t n_embd = cfg(b)->n_embd;
        for (uint32_t i = 0; i < batch->n; i++) {
                const uint8_t *row = (const uint8_t *)e->data + (size_t)batch->tokens[i] * e->row_bytes;
                rig_dequantize_row(e->type, row, x + (size_t)i * n_embd, n_embd);
        }
}

/* The sum of squares in double: the reference for every GPU norm kernel. */
static void rmsnorm_row(float *out, const float *x, const float *w, uint32_t n, float eps)
{
        double ss = 0.0;
        for (uint32_t i = 0; i < n; i++)
                ss += (double)x[i] * x[i];
        float scale = (float)(1.0 / sqrt(ss / n + eps));
        for (uint32_t i = 0; i < n; i++)
                out[i] = x[i] * scale * w[i];
}

static void cpu_rmsnorm(struct rig_backend *b, float *out, const float *x, const float *w, uint32_t n,
                        uint32_t n_rows)
{
        for (uint32_t r = 0; r < n_rows; r++)
                rmsnorm_row(out + (size_t)r * n, x + (size_t)r * n, w, n, cfg(b)->rms_eps);
}

/* ---- y = W x (+ b), rows split across threads ---- */

struct matvec_job {
        const struct rig_weight *w;
        const void *xq;
        const float *bias;
        float *y;
};

static void matvec_rows(void *ctx, int ith, int nth)
{
        const struct matvec_job *j = ctx;
        const struct rig_weight *w = j->w;
        int begin, end;
        cpu_split((int)w->n_out, ith, nth, &begin, &end);
        rig_matvec_rows(w->type, w->data, w->row_bytes, begin, end, j->xq, w->n_in, j->y);
        if (j->bias)
                for (int r = begin; r < end; r++)
                        j->y[r] += j->bias[r];
}

/* x is converted once, on the calling thread, to the weight's activation type (Q8_0, Q8_K or
 * F32): a few microseconds against the product's milliseconds. */
static void cpu_matvec(struct rig_backend *b, const struct rig_weight *w, const float *x, const float *bias,
                       float *y)
{
        struct cpu_backend *c = cpu(b);
        const void *xq = x;
        enum rig_type t = rig_vec_dot_type(w->type);
        if (t != RIG_TYPE_F32) {
                rig_quantize_row(t, x, c->xq, w->n_in);
                xq = c->xq;
        }
        struct matvec_job j = { w, xq, bias, y };
        cpu_pool_run(c->pool, matvec_rows, &j);
}

/* One vector after another: the CPU has no kernels that share weight loads between vectors. */
static void cpu_matmul(struct rig_backend *b, const struct rig_weight *w, const float *x, uint32_t n,
                       const float *bias, float *y)
{
        for (uint32_t j = 0; j < n; j++)
                cpu_matvec(b, w, x + (size_t)j * w->n_in, bias, y + (size_t)j * w->n_out);
}

/* ---- RoPE ---- */

static void rope_row(const struct rig_model *m, float *vec, uint32_t n_heads, uint32_t pos)
{
        const struct rig_config *c = &m->cfg;
        uint32_t d = c->head_dim, half = d / 2;
        for (uint32_t i = 0; i < half; i++) {
                double freq = pow(c->rope_freq_base, -2.0 * i / d);
                if (m->rope_freqs)
                        freq /= m->rope_freqs[i];       /* Llama 3.1 long-context scaling */
                double angle = pos * freq;
                float cs = (float)cos(angle), sn = (float)sin(angle);
                for (uint32_t h = 0; h < n_heads; h++) {
                        float *head = vec + h * d;
                        uint32_t a = c->rope_type == RIG_ROPE_NEOX ? i : 2 * i;
                        uint32_t e = c->rope_type == RIG_ROPE_NEOX ? i + half : 2 * i + 1;
                        float x0 = head[a], x1 = head[e];
                        head[a] = x0 * cs - x1 * sn;
                        head[e] = x0 * sn + x1 * cs;
                }
        }
}

static void cpu_rope(struct rig_backend *b, float *vec, uint32_t n_heads)
{
        const struct rig_batch *batch = &cpu(b)->batch;
        size_t row = (size_t)n_heads * cfg(b)->head_dim;
        for (uint32_t i = 0; i < batch->n; i++)
                rope_row(b->model, vec + i * row, n_heads, batch->pos[i]);
}

/* ---- attention: one job per token and KV head, serving its group of query heads ---- */

struct attention_job {
        struct cpu_backend *c;
        uint32_t layer;
        const float *q;
        float *out;
};

/* Batch token `row`'s query heads of KV head kvh over positions 0..pos[row] of its sequence. */
static void attend_kv_head(const struct attention_job *j, uint32_t row, uint32_t kvh, float *scratch)
{
        struct cpu_backend *c = j->c;
        const struct rig_config *cf = &c->base.model->cfg;
        uint32_t d = cf->head_dim, group = cf->n_head / cf->n_head_kv, n_ctx = c->base.n_ctx;
        uint32_t n = c->batch.pos[row] + 1, seq = c->batch.seq[row];
        size_t q_dim = (size_t)cf->n_head * d;
        const float *q_row = j->q + row * q_dim;
        float *out_row = j->out + row * q_dim;
        float *scores = scratch;                        /* [group][n_ctx] */
        float *krow = scratch + (size_t)group * n_ctx;
        float *vrow = krow + d;
        float inv_sqrt_d = 1.0f / sqrtf((float)d);

        for (uint32_t t = 0; t < n; t++) {
                kv_load_k(&c->kv, j->layer, seq, t, kvh * d, d, krow);
                for (uint32_t g = 0; g < group; g++) {
                        const float *q = q_row + (size_t)(kvh * group + g) * d;
                        float dot = 0.0f;
                        for (uint32_t i = 0; i < d; i++)
                                dot += q[i] * krow[i];
                        scores[(size_t)g * n_ctx + t] = dot * inv_sqrt_d;
                }
        }
        for (uint32_t g = 0; g < group; g++) {
                float *sc = scores + (size_t)g * n_ctx;
                float mx = sc[0];
                for (uint32_t t = 1; t < n; t++)
                        mx = sc[t] > mx ? sc[t] : mx;
                float sum = 0.0f;
                for (uint32_t t = 0; t < n; t++) {
                        sc[t] = expf(sc[t] - mx);
                        sum += sc[t];
                }
                for (uint32_t t = 0; t < n; t++)
                        sc[t] /= sum;
                memset(out_row + (size_t)(kvh * group + g) * d, 0, d * sizeof(float));
        }
        for (uint32_t t = 0; t < n; t++) {
                kv_load_v(&c->kv, j->layer, seq, t, kvh * d, d, vrow);
                for (uint32_t g = 0; g < group; g++) {
                        float p = scores[(size_t)g * n_ctx + t];
                        float *out = out_row + (size_t)(kvh * group + g) * d;
                        for (uint32_t i = 0; i < d; i++)
                                out[i] += p * vrow[i];
                }
        }
}

static void attention_heads(void *ctx, int ith, int nth)
{
        const struct attention_job *j = ctx;
        float *scratch = j->c->thread_scratch + (size_t)ith * j->c->thread_scratch_floats;
        uint32_t n_head_kv = j->c->base.model->cfg.n_head_kv;
        int begin, end;
        cpu_split((int)(j->c->batch.n * n_head_kv), ith, nth, &begin, &end);
        for (int h = begin; h < end; h++)
                attend_kv_head(j, (uint32_t)h / n_head_kv, (uint32_t)h % n_head_kv, scratch);
}

/* Every token's k and v are stored first: a prompt's later tokens attend to its earlier ones. */
static void cpu_attention(struct rig_backend *b, uint32_t layer, const float *q, const float *k, const float *v,
                          float *out)
{
        struct cpu_backend *c = cpu(b);
        const struct rig_batch *batch = &c->batch;
        size_t kv_dim = c->kv.kv_dim;
        for (uint32_t i = 0; i < batch->n; i++)
                kv_store(&c->kv, layer, batch->seq[i], batch->pos[i], k + i * kv_dim, v + i * kv_dim);
        struct attention_job j = { c, layer, q, out };
        cpu_pool_run(c->pool, attention_heads, &j);
}

static void cpu_swiglu(struct rig_backend *b, float *out, const float *gate, const float *up, uint32_t n)
{
        (void)b;
        for (uint32_t i = 0; i < n; i++)
                out[i] = gate[i] / (1.0f + expf(-gate[i])) * up[i];
}

static void cpu_add_rmsnorm(struct rig_backend *b, float *x, const float *y, float *out, const float *w, uint32_t n,
                            uint32_t n_rows)
{
        for (uint32_t r = 0; r < n_rows; r++) {
                float *xr = x + (size_t)r * n;
                const float *yr = y + (size_t)r * n;
                for (uint32_t i = 0; i < n; i++)
                        xr[i] += yr[i];
                rmsnorm_row(out + (size_t)r * n, xr, w, n, cfg(b)->rms_eps);
        }
}

static double now_s(void)
{
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

/* The best of three 256 MiB memcpy: one thread, as a decode step's streaming is limited by the
 * memory more than by the cores on the machines this runs on. */
static double cpu_copy_bandwidth(struct rig_backend *b)
{
        (void)b;
        const size_t n = 256u << 20;
        char *src = malloc(n), *dst = malloc(n);
        double best = 0;
        if (src && dst) {
                memset(src, 1, n);
                memset(dst, 2, n);
                for (int k = 0; k < 3; k++) {
                        double t0 = now_s();
                        memcpy(dst, src, n);
                        double t = now_s() - t0;
                        if (t > 0 && 2.0 * n / t > best)
                                best = 2.0 * n / t;
                }
        }
        free(src);
        free(dst);
        return best;
}

/* x is host memory here: the sampler's own functions on it. */
static int cpu_top_k(struct rig_backend *b, float *x, uint32_t n, uint32_t k, const int32_t *ids, uint32_t n_ids,
                     float penalty, struct rig_candidate *out)
{
        rig_penalize(x, n, ids, n_ids, penalty);
        rig_top_k(x, n, k, out);
        return 0;
}

static const struct rig_backend_ops cpu_ops = {
        .name = "cpu",
        .free = cpu_free,
        .alloc = cpu_alloc,
        .read = cpu_read,
        .begin_batch = cpu_begin_batch,
        .end_batch = cpu_end_batch,
        .embed = cpu_embed,
        .rmsnorm = cpu_rmsnorm,
        .matmul = cpu_matmul,
        .rope = cpu_rope,
        .attention = cpu_attention,
        .swiglu = cpu_swiglu,
        .add_rmsnorm = cpu_add_rmsnorm,
        .copy_bandwidth = cpu_copy_bandwidth,
        .top_k = cpu_top_k,
};

static uint32_t max3(uint32_t a, uint32_t b, uint32_t c)
{
        uint32_t m = a > b ? a : b;
        return m > c ? m : c;
}

int cpu_backend_new(const struct rig_model *m, uint32_t n_ctx, uint32_t n_seq, enum rig_type kv_type, int n_threads,
                    struct rig_backend **out)
{
        const struct rig_config *c = &m->cfg;
        const struct rig_type_info *kt = rig_type_get(kv_type);
        if (!kt || c->head_dim % kt->block_elems != 0)
                return -EINVAL;         /* attention reads one head's slice: whole blocks only */
        struct cpu_backend *be = calloc(1, sizeof(*be));
        if (!be)
                return -ENOMEM;
        be->base.ops = &cpu_ops;
        be->base.model = m;
        be->base.n_ctx = n_ctx;
        be->base.n_seq = n_seq;
        int r = kv_init(&be->kv, kv_type, c->n_layer, n_seq, n_ctx, c->n_head_kv * c->head_dim);
        if (r < 0)
                goto fail;
        r = cpu_pool_new(n_threads, &be->pool);
        if (r < 0)
                goto fail;
        uint32_t widest = max3(c->n_embd, c->n_head * c->head_dim, c->n_ff);
        be->thread_scratch_floats = (size_t)(c->n_head / c->n_head_kv) * n_ctx + 2 * c->head_dim;
        /* F32 is the widest dot type; 64-byte alignment keeps every 32-byte load of a
         * quantized activation block inside one cache line */
        be->xq = aligned_alloc(64, ((size_t)widest * sizeof(float) + 1024 + 63) / 64 * 64);
        be->thread_scratch = malloc((size_t)n_threads * be->thread_scratch_floats * sizeof(float));
        r = -ENOMEM;
        if (!be->xq || !be->thread_scratch)
                goto fail;
        *out = &be->base;
        return 0;
fail:
        cpu_free(&be->base);
        return r;
}
