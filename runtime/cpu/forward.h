/* forward.h — running a model on the CPU, one token at a time: the reference every GPU kernel is
 * checked against, and the fallback where no GPU is. */
#pragma once

#include <stddef.h>
#include <stdint.h>

#include "kv.h"
#include "model.h"

struct cpu_pool;

struct rig_session {
        const struct rig_model *model;
        struct rig_kv kv;
        struct cpu_pool *pool;
        uint32_t n_ctx;

        /* activations of the token being run; shapes in the names' comments */
        float *x;               /* [n_embd] residual stream */
        float *xn;              /* [max(n_embd, q_dim, n_ff)] normed input of the next product */
        float *q, *k, *v;       /* [q_dim], [kv_dim], [kv_dim] */
        float *att;             /* [q_dim] attention output, heads side by side */
        float *gate, *up;       /* [n_ff] */
        float *proj;            /* [n_embd] output of Wo and Wdown, added to x */
        float *logits;          /* [n_vocab] */
        void *xq;               /* xn converted to the weight's dot-product type */
        float *thread_scratch;  /* per thread: scores [group][n_ctx], k and v rows [head_dim] */
        size_t thread_scratch_floats;
};

int session_new(const struct rig_model *m, uint32_t n_ctx, enum rig_type kv_type, int n_threads,
                struct rig_session **out);
void session_free(struct rig_session *s);

/* Runs token at position pos (0 <= pos < n_ctx, earlier positions already run) and leaves its
 * logits in s->logits. -EINVAL for a token outside the vocabulary or a full context. */
int session_eval(struct rig_session *s, int32_t token, uint32_t pos);
