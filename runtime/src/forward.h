/* forward.h — running a model one token at a time on any backend (backend.h): the llama / qwen2
 * decoder, written once. */
#pragma once

#include <stddef.h>
#include <stdint.h>

#include "backend.h"

struct rig_session {
        struct rig_backend *backend;
        const struct rig_model *model;  /* the backend's view of it */
        uint32_t n_ctx;

        /* activations of the token being run, in the backend's memory; shapes in the comments */
        float *x;               /* [n_embd] residual stream */
        float *xn;              /* [max(n_embd, q_dim, n_ff)] normed input of the next product */
        float *q, *k, *v;       /* [q_dim], [kv_dim], [kv_dim] */
        float *att;             /* [q_dim] attention output, heads side by side */
        float *gate, *up;       /* [n_ff] */
        float *proj;            /* [n_embd] output of Wo and Wdown, added to x */
        float *out;             /* [n_vocab] logits */

        float *logits;          /* [n_vocab] the last token's logits, in host memory */
};

/* A session over backend b, which it then owns (freed with it, also on failure). */
int session_new(struct rig_backend *b, struct rig_session **out);
void session_free(struct rig_session *s);

/* Runs token at position pos (0 <= pos < n_ctx, earlier positions already run) and leaves its
 * logits in s->logits. -EINVAL for a token outside the vocabulary or a full context; -EIO when
 * the backend failed to run an op (a GPU fault). */
int session_eval(struct rig_session *s, int32_t token, uint32_t pos);
