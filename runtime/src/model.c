/* model.c — reading hyperparameters and weights of llama / qwen2 models out of GGUF. */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "model.h"
#include "errmsg.h"

const char *rig_arch_name(enum rig_arch a)
{
        return a == RIG_ARCH_QWEN2 ? "qwen2" : "llama";
}

/* "<arch>.<suffix>" */
static int arch_u32(const struct gguf_file *f, const char *arch, const char *suffix, uint32_t *out, bool is_required,
                    char *err, size_t size)
{
        char key[128];
        snprintf(key, sizeof(key), "%s.%s", arch, suffix);
        int r = gguf_get_u32(f, key, out);
        if (r == -ENOENT && !is_required)
                return 0;
        if (r < 0)
                return errmsg(err, size, -EINVAL, "metadata %s is %s", key, r == -ENOENT ? "missing" : "not an unsigned integer");
        return 0;
}

static int arch_f32(const struct gguf_file *f, const char *arch, const char *suffix, float *out, bool is_required,
                    char *err, size_t size)
{
        char key[128];
        snprintf(key, sizeof(key), "%s.%s", arch, suffix);
        int r = gguf_get_f32(f, key, out);
        if (r == -ENOENT && !is_required)
                return 0;
        if (r < 0)
                return errmsg(err, size, -EINVAL, "metadata %s is %s", key, r == -ENOENT ? "missing" : "not a number");
        return 0;
}

static int read_config(const struct gguf_file *f, struct rig_config *c, char *err, size_t size)
{
        struct gguf_str arch;
        if (gguf_get_str(f, "general.architecture", &arch) < 0)
                return errmsg(err, size, -EINVAL, "metadata general.architecture is missing");
        char name[32];
        snprintf(name, sizeof(name), "%.*s", (int)(arch.len < 31 ? arch.len : 31), arch.ptr);
        if (strcmp(name, "llama") == 0) {
                c->arch = RIG_ARCH_LLAMA;
                c->rope_type = RIG_ROPE_NORMAL;
        } else if (strcmp(name, "qwen2") == 0) {
                c->arch = RIG_ARCH_QWEN2;
                c->rope_type = RIG_ROPE_NEOX;
        } else {
                return errmsg(err, size, -ENOTSUP, "architecture '%s' is not supported (llama and qwen2 are)", name);
        }

        c->rms_eps = 1e-5f;
        c->rope_freq_base = 10000.0f;
        c->n_ctx_train = 4096;
        int r;
        if ((r = arch_u32(f, name, "embedding_length", &c->n_embd, true, err, size)) < 0 ||
            (r = arch_u32(f, name, "block_count", &c->n_layer, true, err, size)) < 0 ||
            (r = arch_u32(f, name, "feed_forward_length", &c->n_ff, true, err, size)) < 0 ||
            (r = arch_u32(f, name, "attention.head_count", &c->n_head, true, err, size)) < 0 ||
            (r = arch_u32(f, name, "context_length", &c->n_ctx_train, false, err, size)) < 0 ||
            (r = arch_f32(f, name, "attention.layer_norm_rms_epsilon", &c->rms_eps, true, err, size)) < 0 ||
            (r = arch_f32(f, name, "rope.freq_base", &c->rope_freq_base, false, err, size)) < 0)
                return r;
        c->n_head_kv = c->n_head;
        if ((r = arch_u32(f, name, "attention.head_count_kv", &c->n_head_kv, false, err, size)) < 0)
                return r;
        if (c->n_head == 0 || c->n_head_kv == 0 || c->n_head % c->n_head_kv != 0)
                return errmsg(err, size, -EINVAL, "%u attention heads cannot share %u KV heads", c->n_head, c->n_head_kv);
        c->head_dim = c->n_embd / c->n_head;
        if ((r = arch_u32(f, name, "attention.key_length", &c->head_dim, false, err, size)) < 0)
                return r;
        if (c->head_dim == 0 || c->head_dim % 2 != 0 || c->head_dim > 1024)
                return errmsg(err, size, -EINVAL, "head dimension %u is not usable (even, 2..1024)", c->head_dim);
        /* q and kv widths are products of file values: keep them far from 32-bit wrap-around */
        uint64_t q_width = (uint64_t)c->n_head * c->head_dim, kv_width = (uint64_t)c->n_head_kv * c->head_dim;
        if (q_width > (1u << 20) || kv_width > (1u << 20))
                return errmsg(err, size, -EINVAL, "%u heads of %u do not make a usable attention width", c->n_head, c->head_dim);
        if (c->n_layer == 0 || c->n_layer > 1024 || c->n_embd == 0 || c->n_embd > (1u << 20) || c->n_ff == 0 ||
            c->n_ff > (1u << 22))
                return errmsg(err, size, -EINVAL, "absurd shape: %u layers, n_embd %u, n_ff %u", c->n_layer, c->n_embd, c->n_ff);
        return 0;
}

/* Finds a tensor and checks its shape [ne0, ne1] (ne1 = 1 for vectors). */
static const struct gguf_tensor *find_shaped(const struct gguf_file *f, const char *name, uint64_t ne0, uint64_t ne1,
                                             bool is_required, int *r, char *err, size_t size)
{
        const struct gguf_tensor *t = gguf_find_tensor(f, name);
        if (!t) {
                if (is_required)
                        *r = errmsg(err, size, -EINVAL, "tensor %s is missing", name);
                return NULL;
        }
        if (t->ne[0] != ne0 || t->ne[1] != ne1 || t->ne[2] != 1 || t->ne[3] != 1) {
                *r = errmsg(err, size, -EINVAL, "tensor %s has shape [%llu, %llu], expected [%llu, %llu]", name,
                          (unsigned long long)t->ne[0], (unsigned long long)t->ne[1], (unsigned long long)ne0,
                          (unsigned long long)ne1);
                return NULL;
        }
        return t;
}

static int get_vector(const struct gguf_file *f, const char *name, uint64_t n, bool is_required, const float **out,
                      char *err, size_t size)
{
        int r = 0;
        const struct gguf_tensor *t = find_shaped(f, name, n, 1, is_required, &r, err, size);
        if (!t)
                return r;
        if (t->type != RIG_TYPE_F32)
                return errmsg(err, size, -EINVAL, "tensor %s must be F32 (norms and biases are), it is %s", name,
                            rig_type_get(t->type) ? rig_type_get(t->type)->name : "?");
        *out = t->data;
        return 0;
}

static int get_matrix(const struct gguf_file *f, const char *name, uint64_t n_in, uint64_t n_out, bool is_required,
                      struct rig_weight *w, char *err, size_t size)
{
        int r = 0;
        const struct gguf_tensor *t = find_shaped(f, name, n_in, n_out, is_required, &r, err, size);
        if (!t)
                return r;
        if (n_out > INT32_MAX)
                return errmsg(err, size, -EINVAL, "tensor %s has %llu rows, more than rig handles", name,
                              (unsigned long long)n_out);
        const struct rig_type_info *ti = rig_type_get(t->type);
        if (!ti || !ti->is_weight)
                return errmsg(err, size, -ENOTSUP, "tensor %s has type %s, which rig cannot compute with", name,
                            ti ? ti->name : "unknown");
        w->data = t->data;
        w->type = t->type;
        w->n_in = (uint32_t)n_in;
        w->n_out = (uint32_t)n_out;
        w->row_bytes = rig_row_bytes(t->type, n_in);
        return 0;
}

static int load_layer(const struct gguf_file *f, const struct rig_config *c, uint32_t i, struct rig_layer *l,
                      char *err, size_t size)
{
        char name[96];
        uint32_t q_dim = c->n_head * c->head_dim, kv_dim = c->n_head_kv * c->head_dim;
        bool has_bias = c->arch == RIG_ARCH_QWEN2;
        int r;
#define NAME(s) (snprintf(name, sizeof(name), "blk.%u." s, i), name)
        if ((r = get_vector(f, NAME("attn_norm.weight"), c->n_embd, true, &l->attn_norm, err, size)) < 0 ||
            (r = get_matrix(f, NAME("attn_q.weight"), c->n_embd, q_dim, true, &l->wq, err, size)) < 0 ||
            (r = get_matrix(f, NAME("attn_k.weight"), c->n_embd, kv_dim, true, &l->wk, err, size)) < 0 ||
            (r = get_matrix(f, NAME("attn_v.weight"), c->n_embd, kv_dim, true, &l->wv, err, size)) < 0 ||
            (r = get_matrix(f, NAME("attn_output.weight"), q_dim, c->n_embd, true, &l->wo, err, size)) < 0 ||
            (r = get_vector(f, NAME("attn_q.bias"), q_dim, has_bias, &l->bq, err, size)) < 0 ||
            (r = get_vector(f, NAME("attn_k.bias"), kv_dim, has_bias, &l->bk, err, size)) < 0 ||
            (r = get_vector(f, NAME("attn_v.bias"), kv_dim, has_bias, &l->bv, err, size)) < 0 ||
            (r = get_vector(f, NAME("ffn_norm.weight"), c->n_embd, true, &l->ffn_norm, err, size)) < 0 ||
            (r = get_matrix(f, NAME("ffn_gate.weight"), c->n_embd, c->n_ff, true, &l->w_gate, err, size)) < 0 ||
            (r = get_matrix(f, NAME("ffn_up.weight"), c->n_embd, c->n_ff, true, &l->w_up, err, size)) < 0 ||
            (r = get_matrix(f, NAME("ffn_down.weight"), c->n_ff, c->n_embd, true, &l->w_down, err, size)) < 0)
                return r;
#undef NAME
        return 0;
}

int model_load(struct gguf_file *f, struct rig_model **out, char *err, size_t size)
{
        struct rig_model *m = calloc(1, sizeof(*m));
        if (!m)
                return -ENOMEM;
        m->file = f;
        struct rig_config *c = &m->cfg;
        int r = read_config(f, c, err, size);
        if (r < 0)
                goto fail;

        const struct gguf_tensor *emb = gguf_find_tensor(f, "token_embd.weight");
        if (!emb) {
                r = errmsg(err, size, -EINVAL, "tensor token_embd.weight is missing");
                goto fail;
        }
        if (emb->ne[1] == 0 || emb->ne[1] > INT32_MAX) {
                r = errmsg(err, size, -EINVAL, "tensor token_embd.weight has %llu rows, not a vocabulary rig handles",
                           (unsigned long long)emb->ne[1]);
                goto fail;
        }
        c->n_vocab = (uint32_t)emb->ne[1];
        if ((r = get_matrix(f, "token_embd.weight", c->n_embd, c->n_vocab, true, &m->tok_embd, err, size)) < 0 ||
            (r = get_vector(f, "output_norm.weight", c->n_embd, true, &m->output_norm, err, size)) < 0 ||
            (r = get_vector(f, "rope_freqs.weight", c->head_dim / 2, false, &m->rope_freqs, err, size)) < 0)
                goto fail;
        if (gguf_find_tensor(f, "output.weight")) {
                if ((r = get_matrix(f, "output.weight", c->n_embd, c->n_vocab, true, &m->output, err, size)) < 0)
                        goto fail;
        } else {
                m->output = m->tok_embd;        /* tied embeddings */
        }

        m->layers = calloc(c->n_layer, sizeof(*m->layers));
        if (!m->layers) {
                r = -ENOMEM;
                goto fail;
        }
        for (uint32_t i = 0; i < c->n_layer; i++)
                if ((r = load_layer(f, c, i, &m->layers[i], err, size)) < 0)
                        goto fail;
        for (size_t i = 0; i < f->n_tensors; i++) {
                const struct gguf_tensor *t = &f->tensors[i];
                m->weights_bytes += t->size_bytes;
                m->n_params += t->ne[0] * t->ne[1] * t->ne[2] * t->ne[3];
        }
        /* a decode step reads one row of the embedding, unless it is also the output matrix */
        m->token_bytes = m->weights_bytes;
        if (m->output.data != m->tok_embd.data)
                m->token_bytes -= (size_t)m->tok_embd.n_out * m->tok_embd.row_bytes;
        *out = m;
        return 0;
fail:
        m->file = NULL;         /* the caller still owns f on failure */
        model_free(m);
        return r;
}

void model_free(struct rig_model *m)
{
        if (!m)
                return;
        gguf_close(m->file);
        free(m->layers);
        free(m);
}
