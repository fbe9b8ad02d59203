/* forward.c — the llama / qwen2 decoder over the backend ops, for every token of a batch (one
 * row of each activation per token; the products take all rows at once):
 *   x = embed(token)
 *   per layer: h = x + Wo·attn(rope(Wq·n1(x) [+bq]), rope(Wk·n1(x) [+bk]), Wv·n1(x) [+bv])
 *              x = h + Wdown·(silu(Wgate·n2(h)) * Wup·n2(h))
 *   logits = Wout·norm(x)
 * with n = RMSNorm and grouped-query attention over the backend's KV cache. Each residual add
 * and the norm that follows it are one op (add_rmsnorm): xn always holds the normed input of
 * the next products. */
#include <errno.h>
#include <stdlib.h>

#include "forward.h"

static uint32_t q_dim(const struct rig_config *c) { return c->n_head * c->head_dim; }
static uint32_t kv_dim(const struct rig_config *c) { return c->n_head_kv * c->head_dim; }

static uint32_t max3(uint32_t a, uint32_t b, uint32_t c)
{
        uint32_t m = a > b ? a : b;
        return m > c ? m : c;
}

int session_new(struct rig_backend *b, uint32_t n_batch, struct rig_session **out)
{
        struct rig_session *s = n_batch ? calloc(1, sizeof(*s)) : NULL;
        if (!s) {
                b->ops->free(b);
                return n_batch ? -ENOMEM : -EINVAL;
        }
        const struct rig_config *c = &b->model->cfg;
        const struct rig_backend_ops *o = b->ops;
        size_t rows = n_batch;
        s->backend = b;
        s->model = b->model;
        s->n_ctx = b->n_ctx;
        s->n_seq = b->n_seq;
        s->n_batch = n_batch;
        s->x = o->alloc(b, rows * c->n_embd);
        s->xn = o->alloc(b, rows * max3(c->n_embd, q_dim(c), c->n_ff));
        s->q = o->alloc(b, rows * q_dim(c));
        s->k = o->alloc(b, rows * kv_dim(c));
        s->v = o->alloc(b, rows * kv_dim(c));
        s->att = o->alloc(b, rows * q_dim(c));
        s->gate = o->alloc(b, rows * c->n_ff);
        s->up = o->alloc(b, rows * c->n_ff);
        s->proj = o->alloc(b, rows * c->n_embd);
        s->out = o->alloc(b, rows * c->n_vocab);
        s->logits = malloc(rows * c->n_vocab * sizeof(float));
        if (!s->x || !s->xn || !s->q || !s->k || !s->v || !s->att || !s->gate || !s->up || !s->proj || !s->out ||
            !s->logits) {
                session_free(s);
                return -ENOMEM;
        }
        *out = s;
        return 0;
}

void session_free(struct rig_session *s)
{
        if (!s)
                return;
        if (s->backend)
                s->backend->ops->free(s->backend);      /* and every buffer it allocated */
        free(s->logits);
        free(s);
}

/* From xn = n1(x); leaves x = h and xn = n2(h). */
static void attention_block(struct rig_session *s, const struct rig_layer *l, uint32_t layer, uint32_t n)
{
        struct rig_backend *b = s->backend;
        const struct rig_backend_ops *o = b->ops;
        const struct rig_config *c = &s->model->cfg;

        o->matmul(b, &l->wq, s->xn, n, l->bq, s->q);
        o->matmul(b, &l->wk, s->xn, n, l->bk, s->k);
        o->matmul(b, &l->wv, s->xn, n, l->bv, s->v);
        o->rope(b, s->q, c->n_head);
        o->rope(b, s->k, c->n_head_kv);
        o->attention(b, layer, s->q, s->k, s->v, s->att);
        o->matmul(b, &l->wo, s->att, n, NULL, s->proj);
        o->add_rmsnorm(b, s->x, s->proj, s->xn, l->ffn_norm, c->n_embd, n);
}

/* From xn = n2(h); leaves x the layer's output and xn = next_norm(x) (the next layer's n1, or
 * the output norm). */
static void ffn_block(struct rig_session *s, const struct rig_layer *l, const float *next_norm, uint32_t n)
{
        struct rig_backend *b = s->backend;
        const struct rig_backend_ops *o = b->ops;
        const struct rig_config *c = &s->model->cfg;

        o->matmul(b, &l->w_gate, s->xn, n, NULL, s->gate);
        o->matmul(b, &l->w_up, s->xn, n, NULL, s->up);
        o->swiglu(b, s->xn, s->gate, s->up, n * c->n_ff);
        o->matmul(b, &l->w_down, s->xn, n, NULL, s->proj);
        o->add_rmsnorm(b, s->x, s->proj, s->xn, next_norm, c->n_embd, n);
}

static bool batch_is_valid(const struct rig_session *s, const struct rig_batch *batch)
{
        if (batch->n == 0 || batch->n > s->n_batch)
                return false;
        for (uint32_t i = 0; i < batch->n; i++)
                if (batch->tokens[i] < 0 || (uint32_t)batch->tokens[i] >= s->model->cfg.n_vocab ||
                    batch->pos[i] >= s->n_ctx || batch->seq[i] >= s->n_seq)
                        return false;
        return true;
}

/* session_eval_batch up to its logits, which stay in s->out (backend memory). */
static int run_batch(struct rig_session *s, const struct rig_batch *batch, bool all_logits)
{
        const struct rig_model *m = s->model;
        const struct rig_config *c = &m->cfg;
        struct rig_backend *b = s->backend;
        const struct rig_backend_ops *o = b->ops;
        if (!batch_is_valid(s, batch))
                return -EINVAL;
        uint32_t n = batch->n;
        /* the last token's logits only: its row alone goes through the output product */
        uint32_t first_out = all_logits ? 0 : n - 1;
        s->n_logits = n - first_out;

        o->begin_batch(b, batch);
        o->embed(b, s->x);
        o->rmsnorm(b, s->xn, s->x, c->n_layer ? m->layers[0].attn_norm : m->output_norm, c->n_embd, n);
        for (uint32_t i = 0; i < c->n_layer; i++) {
                const float *next_norm = i + 1 < c->n_layer ? m->layers[i + 1].attn_norm : m->output_norm;
                attention_block(s, &m->layers[i], i, n);
                ffn_block(s, &m->layers[i], next_norm, n);
        }
        o->matmul(b, &m->output, s->xn + (size_t)first_out * c->n_embd, s->n_logits, NULL, s->out);
        o->end_batch(b);
        return 0;
}

int session_eval_batch(struct rig_session *s, const struct rig_batch *batch, bool all_logits)
{
        int r = run_batch(s, batch, all_logits);
        if (r < 0)
                return r;
        return s->backend->ops->read(s->backend, s->logits, s->out, (size_t)s->n_logits * s->model->cfg.n_vocab);
}

int session_eval_top_k(struct rig_session *s, const struct rig_batch *batch, uint32_t k, const int32_t *ids,
                       uint32_t n_ids, float penalty, struct rig_candidate *cand)
{
        struct rig_backend *b = s->backend;
        uint32_t n_vocab = s->model->cfg.n_vocab;
        if (k == 0 || k > n_vocab)
                return -EINVAL;
        int r = run_batch(s, batch, false);
        if (r < 0)
                return r;
        r = b->ops->top_k ? b->ops->top_k(b, s->out, n_vocab, k, ids, n_ids, penalty, cand) : -ENOTSUP;
        if (r != -ENOTSUP)
                return r;
        if ((r = b->ops->read(b, s->logits, s->out, n_vocab)) < 0)
                return r;
        rig_penalize(s->logits, n_vocab, ids, n_ids, penalty);
        rig_top_k(s->logits, n_vocab, k, cand);
        return 0;
}

int session_eval_sample(struct rig_session *s, int32_t token, uint32_t pos, struct sampler *smp, int32_t *next)
{
        size_t k = sampler_top_needed(smp);
        uint32_t seq = 0;
        struct rig_batch batch = { 1, &token, &pos, &seq };
        int r;
        if (k == 0) {
                if ((r = session_eval_batch(s, &batch, false)) == 0)
                        *next = sampler_sample(smp, s->logits);
                return r;
        }
        float penalty;
        size_t n_ids;
        const int32_t *ids = sampler_penalized(smp, &n_ids, &penalty);
        r = session_eval_top_k(s, &batch, (uint32_t)k, ids, (uint32_t)n_ids, penalty, smp->cand);
        if (r == 0)
                *next = sampler_sample_top(smp, smp->cand, k);
        return r;
}

int session_eval(struct rig_session *s, int32_t token, uint32_t pos)
{
        uint32_t seq = 0;
        struct rig_batch batch = { 1, &token, &pos, &seq };
        return session_eval_batch(s, &batch, false);
}

int session_eval_prompt(struct rig_session *s, const int32_t *ids, size_t n, uint32_t start_pos, bool all_logits)
{
        if (n == 0 || start_pos >= s->n_ctx || n > s->n_ctx - start_pos)
                return -EINVAL;
        uint32_t *pos = malloc((size_t)s->n_batch * sizeof(uint32_t));
        uint32_t *seq = calloc(s->n_batch, sizeof(uint32_t));
        int r = pos && seq ? 0 : -ENOMEM;
        for (size_t done = 0; done < n && r == 0; done += s->n_batch) {
                uint32_t k = n - done < s->n_batch ? (uint32_t)(n - done) : s->n_batch;
                for (uint32_t i = 0; i < k; i++)
                        pos[i] = start_pos + (uint32_t)(done + i);
                struct rig_batch batch = { k, ids + done, pos, seq };
                r = session_eval_batch(s, &batch, all_logits);
        }
        free(pos);
        free(seq);
        return r;
}
