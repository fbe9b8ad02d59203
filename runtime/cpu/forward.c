/* forward.c — the llama / qwen2 decoder on the CPU:
 *   x = embed(token)
 *   per layer: h = x + Wo·attn(rope(Wq·n1(x) [+bq]), rope(Wk·n1(x) [+bk]), Wv·n1(x) [+bv])
 *              x = h + Wdown·(silu(Wgate·n2(h)) * Wup·n2(h))
 *   logits = Wout·norm(x)
 * with n = RMSNorm, grouped-query attention over the KV cache, matrix-vector products split by
 * rows across the thread pool. */
#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "forward.h"
#include "pool.h"
#include "vec_dot.h"

static uint32_t q_dim(const struct rig_config *c) { return c->n_head * c->head_dim; }
static uint32_t kv_dim(const struct rig_config *c) { return c->n_head_kv * c->head_dim; }

static uint32_t max3(uint32_t a, uint32_t b, uint32_t c)
{
        uint32_t m = a > b ? a : b;
        return m > c ? m : c;
}

int session_new(const struct rig_model *m, uint32_t n_ctx, enum rig_type kv_type, int n_threads,
                struct rig_session **out)
{
        const struct rig_config *c = &m->cfg;
        struct rig_session *s = calloc(1, sizeof(*s));
        if (!s)
                return -ENOMEM;
        s->model = m;
        s->n_ctx = n_ctx;
        int r = -EINVAL;
        const struct rig_type_info *kt = rig_type_get(kv_type);
        if (!kt || c->head_dim % kt->block_elems != 0)
                goto fail;      /* attention reads one head's slice: whole blocks only */
        r = kv_init(&s->kv, kv_type, c->n_layer, n_ctx, kv_dim(c));
        if (r < 0)
                goto fail;
        r = cpu_pool_new(n_threads, &s->pool);
        if (r < 0)
                goto fail;

        uint32_t widest = max3(c->n_embd, q_dim(c), c->n_ff);
        uint32_t group = c->n_head / c->n_head_kv;
        s->thread_scratch_floats = (size_t)group * n_ctx + 2 * c->head_dim;
        s->x = malloc(c->n_embd * sizeof(float));
        s->xn = malloc(widest * sizeof(float));
        s->q = malloc(q_dim(c) * sizeof(float));
        s->k = malloc(kv_dim(c) * sizeof(float));
        s->v = malloc(kv_dim(c) * sizeof(float));
        s->att = malloc(q_dim(c) * sizeof(float));
        s->gate = malloc(c->n_ff * sizeof(float));
        s->up = malloc(c->n_ff * sizeof(float));
        s->proj = malloc(c->n_embd * sizeof(float));
        s->logits = malloc((size_t)c->n_vocab * sizeof(float));
        /* F32 is the widest dot type; 64-byte alignment keeps every 32-byte load of a
         * quantized activation block inside one cache line */
        s->xq = aligned_alloc(64, ((size_t)widest * sizeof(float) + 1024 + 63) / 64 * 64);
        s->thread_scratch = malloc((size_t)n_threads * s->thread_scratch_floats * sizeof(float));
        if (!s->x || !s->xn || !s->q || !s->k || !s->v || !s->att || !s->gate || !s->up || !s->proj || !s->logits || !s->xq ||
            !s->thread_scratch) {
                r = -ENOMEM;
                goto fail;
        }
        *out = s;
        return 0;
fail:
        session_free(s);
        return r;
}

void session_free(struct rig_session *s)
{
        if (!s)
                return;
        kv_free(&s->kv);
        cpu_pool_free(s->pool);
        free(s->x);
        free(s->xn);
        free(s->q);
        free(s->k);
        free(s->v);
        free(s->att);
        free(s->gate);
        free(s->up);
        free(s->proj);
        free(s->logits);
        free(s->xq);
        free(s->thread_scratch);
        free(s);
}

static void rmsnorm(float *out, const float *x, const float *w, uint32_t n, float eps)
{
        double ss = 0.0;
        for (uint32_t i = 0; i < n; i++)
                ss += (double)x[i] * x[i];
        float scale = (float)(1.0 / sqrt(ss / n + eps));
        for (uint32_t i = 0; i < n; i++)
                out[i] = x[i] * scale * w[i];
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

/* Converts x once to the weight's activation type (Q8_0, Q8_K or F32). */
static const void *prepare_input(struct rig_session *s, enum rig_type wtype, const float *x, uint32_t n)
{
        enum rig_type t = rig_vec_dot_type(wtype);
        if (t == RIG_TYPE_F32)
                return x;
        rig_quantize_row(t, x, s->xq, n);
        return s->xq;
}

static void matvec(struct rig_session *s, const struct rig_weight *w, const void *xq, const float *bias, float *y)
{
        struct matvec_job j = { w, xq, bias, y };
        cpu_pool_run(s->pool, matvec_rows, &j);
}

/* ---- RoPE ---- */

static void rope(const struct rig_model *m, float *vec, uint32_t n_heads, uint32_t pos)
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
                        uint32_t b = c->rope_type == RIG_ROPE_NEOX ? i + half : 2 * i + 1;
                        float x0 = head[a], x1 = head[b];
                        head[a] = x0 * cs - x1 * sn;
                        head[b] = x0 * sn + x1 * cs;
                }
        }
}

/* ---- attention: one job per KV head, serving its group of query heads ---- */

struct attention_job {
        struct rig_session *s;
        uint32_t layer, pos;
};

static void attend_kv_head(struct rig_session *s, uint32_t layer, uint32_t pos, uint32_t kvh, float *scratch)
{
        const struct rig_config *c = &s->model->cfg;
        uint32_t d = c->head_dim, group = c->n_head / c->n_head_kv, n = pos + 1;
        float *scores = scratch;                        /* [group][n_ctx] */
        float *krow = scratch + (size_t)group * s->n_ctx;
        float *vrow = krow + d;
        float inv_sqrt_d = 1.0f / sqrtf((float)d);

        for (uint32_t t = 0; t < n; t++) {
                kv_load_k(&s->kv, layer, t, kvh * d, d, krow);
                for (uint32_t g = 0; g < group; g++) {
                        const float *q = s->q + (size_t)(kvh * group + g) * d;
                        float dot = 0.0f;
                        for (uint32_t i = 0; i < d; i++)
                                dot += q[i] * krow[i];
                        scores[(size_t)g * s->n_ctx + t] = dot * inv_sqrt_d;
                }
        }
        for (uint32_t g = 0; g < group; g++) {
                float *sc = scores + (size_t)g * s->n_ctx;
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
                memset(s->att + (size_t)(kvh * group + g) * d, 0, d * sizeof(float));
        }
        for (uint32_t t = 0; t < n; t++) {
                kv_load_v(&s->kv, layer, t, kvh * d, d, vrow);
                for (uint32_t g = 0; g < group; g++) {
                        float p = scores[(size_t)g * s->n_ctx + t];
                        float *out = s->att + (size_t)(kvh * group + g) * d;
                        for (uint32_t i = 0; i < d; i++)
                                out[i] += p * vrow[i];
                }
        }
}

static void attention_heads(void *ctx, int ith, int nth)
{
        struct attention_job *j = ctx;
        struct rig_session *s = j->s;
        float *scratch = s->thread_scratch + (size_t)ith * s->thread_scratch_floats;
        int begin, end;
        cpu_split((int)s->model->cfg.n_head_kv, ith, nth, &begin, &end);
        for (int h = begin; h < end; h++)
                attend_kv_head(s, j->layer, j->pos, (uint32_t)h, scratch);
}

/* ---- one layer ---- */

static void attention_block(struct rig_session *s, const struct rig_layer *l, uint32_t layer, uint32_t pos)
{
        const struct rig_model *m = s->model;
        const struct rig_config *c = &m->cfg;

        rmsnorm(s->xn, s->x, l->attn_norm, c->n_embd, c->rms_eps);
        const void *xq = prepare_input(s, l->wq.type, s->xn, c->n_embd);
        matvec(s, &l->wq, xq, l->bq, s->q);
        if (rig_vec_dot_type(l->wk.type) != rig_vec_dot_type(l->wq.type))
                xq = prepare_input(s, l->wk.type, s->xn, c->n_embd);
        matvec(s, &l->wk, xq, l->bk, s->k);
        if (rig_vec_dot_type(l->wv.type) != rig_vec_dot_type(l->wk.type))
                xq = prepare_input(s, l->wv.type, s->xn, c->n_embd);
        matvec(s, &l->wv, xq, l->bv, s->v);

        rope(m, s->q, c->n_head, pos);
        rope(m, s->k, c->n_head_kv, pos);
        kv_store(&s->kv, layer, pos, s->k, s->v);

        struct attention_job j = { s, layer, pos };
        cpu_pool_run(s->pool, attention_heads, &j);

        memcpy(s->xn, s->att, q_dim(c) * sizeof(float));
        xq = prepare_input(s, l->wo.type, s->xn, q_dim(c));
        matvec(s, &l->wo, xq, NULL, s->proj);
        for (uint32_t i = 0; i < c->n_embd; i++)
                s->x[i] += s->proj[i];
}

static float silu(float v)
{
        return v / (1.0f + expf(-v));
}

static void ffn_block(struct rig_session *s, const struct rig_layer *l)
{
        const struct rig_config *c = &s->model->cfg;
        rmsnorm(s->xn, s->x, l->ffn_norm, c->n_embd, c->rms_eps);
        const void *xq = prepare_input(s, l->w_gate.type, s->xn, c->n_embd);
        matvec(s, &l->w_gate, xq, NULL, s->gate);
        if (rig_vec_dot_type(l->w_up.type) != rig_vec_dot_type(l->w_gate.type))
                xq = prepare_input(s, l->w_up.type, s->xn, c->n_embd);
        matvec(s, &l->w_up, xq, NULL, s->up);
        for (uint32_t i = 0; i < c->n_ff; i++)
                s->xn[i] = silu(s->gate[i]) * s->up[i];
        xq = prepare_input(s, l->w_down.type, s->xn, c->n_ff);
        matvec(s, &l->w_down, xq, NULL, s->proj);
        for (uint32_t i = 0; i < c->n_embd; i++)
                s->x[i] += s->proj[i];
}

int session_eval(struct rig_session *s, int32_t token, uint32_t pos)
{
        const struct rig_model *m = s->model;
        const struct rig_config *c = &m->cfg;
        if (token < 0 || (uint32_t)token >= c->n_vocab || pos >= s->n_ctx)
                return -EINVAL;

        const uint8_t *emb = (const uint8_t *)m->tok_embd.data + (size_t)token * m->tok_embd.row_bytes;
        if (m->tok_embd.type == RIG_TYPE_F32)
                memcpy(s->x, emb, c->n_embd * sizeof(float));
        else
                rig_dequantize_row(m->tok_embd.type, emb, s->x, c->n_embd);

        for (uint32_t i = 0; i < c->n_layer; i++) {
                attention_block(s, &m->layers[i], i, pos);
                ffn_block(s, &m->layers[i]);
        }

        rmsnorm(s->xn, s->x, m->output_norm, c->n_embd, c->rms_eps);
        const void *xq = prepare_input(s, m->output.type, s->xn, c->n_embd);
        matvec(s, &m->output, xq, NULL, s->logits);
        return 0;
}
