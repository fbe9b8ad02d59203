/* forward.c — the llama / qwen2 decoder over the backend ops:
 *   x = embed(token)
 *   per layer: h = x + Wo·attn(rope(Wq·n1(x) [+bq]), rope(Wk·n1(x) [+bk]), Wv·n1(x) [+bv])
 *              x = h + Wdown·(silu(Wgate·n2(h)) * Wup·n2(h))
 *   logits = Wout·norm(x)
 * with n = RMSNorm and grouped-query attention over the backend's KV cache. */
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

int session_new(struct rig_backend *b, struct rig_session **out)
{
        struct rig_session *s = calloc(1, sizeof(*s));
        if (!s) {
                b->ops->free(b);
                return -ENOMEM;
        }
        const struct rig_config *c = &b->model->cfg;
        const struct rig_backend_ops *o = b->ops;
        s->backend = b;
        s->model = b->model;
        s->n_ctx = b->n_ctx;
        s->x = o->alloc(b, c->n_embd);
        s->xn = o->alloc(b, max3(c->n_embd, q_dim(c), c->n_ff));
        s->q = o->alloc(b, q_dim(c));
        s->k = o->alloc(b, kv_dim(c));
        s->v = o->alloc(b, kv_dim(c));
        s->att = o->alloc(b, q_dim(c));
        s->gate = o->alloc(b, c->n_ff);
        s->up = o->alloc(b, c->n_ff);
        s->proj = o->alloc(b, c->n_embd);
        s->out = o->alloc(b, c->n_vocab);
        s->logits = malloc((size_t)c->n_vocab * sizeof(float));
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

static void attention_block(struct rig_session *s, const struct rig_layer *l, uint32_t layer)
{
        struct rig_backend *b = s->backend;
        const struct rig_backend_ops *o = b->ops;
        const struct rig_config *c = &s->model->cfg;

        o->rmsnorm(b, s->xn, s->x, l->attn_norm, c->n_embd);
        o->matmul(b, &l->wq, s->xn, 1, l->bq, s->q);
        o->matmul(b, &l->wk, s->xn, 1, l->bk, s->k);
        o->matmul(b, &l->wv, s->xn, 1, l->bv, s->v);
        o->rope(b, s->q, c->n_head);
        o->rope(b, s->k, c->n_head_kv);
        o->attention(b, layer, s->q, s->k, s->v, s->att);
        o->matmul(b, &l->wo, s->att, 1, NULL, s->proj);
        o->add(b, s->x, s->proj, c->n_embd);
}

static void ffn_block(struct rig_session *s, const struct rig_layer *l)
{
        struct rig_backend *b = s->backend;
        const struct rig_backend_ops *o = b->ops;
        const struct rig_config *c = &s->model->cfg;

        o->rmsnorm(b, s->xn, s->x, l->ffn_norm, c->n_embd);
        o->matmul(b, &l->w_gate, s->xn, 1, NULL, s->gate);
        o->matmul(b, &l->w_up, s->xn, 1, NULL, s->up);
        o->swiglu(b, s->xn, s->gate, s->up, c->n_ff);
        o->matmul(b, &l->w_down, s->xn, 1, NULL, s->proj);
        o->add(b, s->x, s->proj, c->n_embd);
}

int session_eval(struct rig_session *s, int32_t token, uint32_t pos)
{
        const struct rig_model *m = s->model;
        const struct rig_config *c = &m->cfg;
        struct rig_backend *b = s->backend;
        const struct rig_backend_ops *o = b->ops;
        if (token < 0 || (uint32_t)token >= c->n_vocab || pos >= s->n_ctx)
                return -EINVAL;

        o->begin_token(b, token, pos);
        o->embed(b, s->x);
        for (uint32_t i = 0; i < c->n_layer; i++) {
                attention_block(s, &m->layers[i], i);
                ffn_block(s, &m->layers[i]);
        }
        o->rmsnorm(b, s->xn, s->x, m->output_norm, c->n_embd);
        o->matmul(b, &m->output, s->xn, 1, NULL, s->out);
        o->end_token(b);
        return o->read(b, s->logits, s->out, c->n_vocab);
}
