/* model.h — a transformer loaded from GGUF: hyperparameters from metadata, weights pointing into
 * the mapped file. Architectures: llama (Llama 2/3.x, Mistral) and qwen2 (QKV bias). */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "gguf.h"

enum rig_arch { RIG_ARCH_LLAMA, RIG_ARCH_QWEN2 };

/* How RoPE pairs dimensions: llama's converter permutes Q/K so adjacent pairs (2i, 2i+1) rotate
 * ("normal"); qwen2 keeps Hugging Face's layout, halves (i, i + d/2) ("neox"). */
enum rig_rope_type { RIG_ROPE_NORMAL, RIG_ROPE_NEOX };

struct rig_config {
        enum rig_arch arch;
        uint32_t n_vocab;
        uint32_t n_embd;
        uint32_t n_layer;
        uint32_t n_head;
        uint32_t n_head_kv;
        uint32_t head_dim;              /* attention.key_length, default n_embd / n_head */
        uint32_t n_ff;
        uint32_t n_ctx_train;
        float rms_eps;
        float rope_freq_base;
        enum rig_rope_type rope_type;
};

/* A weight matrix: rows of n_in elements (ne[0]), n_out rows (ne[1]); y = W x. */
struct rig_weight {
        const void *data;
        enum rig_type type;
        uint32_t n_in, n_out;
        size_t row_bytes;
};

struct rig_layer {
        const float *attn_norm;         /* [n_embd] */
        struct rig_weight wq, wk, wv, wo;
        const float *bq, *bk, *bv;      /* qwen2 only, else NULL */
        const float *ffn_norm;          /* [n_embd] */
        struct rig_weight w_gate, w_up, w_down;
};

struct rig_model {
        struct gguf_file *file;
        struct rig_config cfg;
        struct rig_weight tok_embd;     /* [n_vocab][n_embd] */
        const float *output_norm;       /* [n_embd] */
        struct rig_weight output;       /* [n_vocab][n_embd]; the embedding when tied */
        const float *rope_freqs;        /* Llama 3.1 scaling: per-pair divisors [head_dim/2], or NULL */
        struct rig_layer *layers;
        size_t weights_bytes;           /* every tensor of the file */
        size_t token_bytes;             /* the weight bytes one decode step streams */
        uint64_t n_params;
};

/* Loads a model from an open GGUF file (which it then owns). err says which key or tensor is
 * missing or has the wrong shape or type. */
int model_load(struct gguf_file *f, struct rig_model **out, char *err, size_t err_size);
void model_free(struct rig_model *m);

const char *rig_arch_name(enum rig_arch a);
