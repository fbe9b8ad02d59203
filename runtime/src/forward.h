/* forward.h — running a model on any backend (backend.h), a batch of tokens per step: the llama /
 * qwen2 decoder, written once. */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "backend.h"
#include "sampler.h"

struct rig_session {
        struct rig_backend *backend;
        const struct rig_model *model;  /* the backend's view of it */
        uint32_t n_ctx;                 /* positions per sequence */
        uint32_t n_seq;                 /* sequences */
        uint32_t n_batch;               /* most tokens one step runs */

        /* activations of the tokens being run, one row per token, in the backend's memory */
        float *x;               /* [n_batch][n_embd] residual stream */
        float *xn;              /* [n_batch][max(n_embd, q_dim, n_ff)] normed input of the next product */
        float *q, *k, *v;       /* [n_batch][q_dim], [n_batch][kv_dim], [n_batch][kv_dim] */
        float *att;             /* [n_batch][q_dim] attention output, heads side by side */
        float *gate, *up;       /* [n_batch][n_ff] */
        float *proj;            /* [n_batch][n_embd] output of Wo and Wdown, added to x */
        float *out;             /* [n_batch][n_vocab] logits */

        float *logits;          /* [n_logits][n_vocab] the last step's logits, in host memory */
        uint32_t n_logits;
};

/* A session over backend b (its n_ctx and n_seq), running up to n_batch tokens per step; it
 * then owns b (freed with it, also on failure). -EINVAL for n_batch 0; -ENOMEM. */
int session_new(struct rig_backend *b, uint32_t n_batch, struct rig_session **out);
void session_free(struct rig_session *s);

/* Runs the batch's tokens (backend.h: token i at pos[i] of sequence seq[i]; earlier positions
 * of each sequence already run, or earlier in the batch). Leaves in s->logits the logits of
 * every token of the batch, in its order, when all_logits, else of its last token only.
 * -EINVAL for an empty or too large batch, a token outside the vocabulary, a position past the
 * context or a sequence past n_seq; -EIO when the backend failed to run an op (a GPU fault). */
int session_eval_batch(struct rig_session *s, const struct rig_batch *batch, bool all_logits);

/* One token of sequence 0: session_eval_batch of a batch of one. */
int session_eval(struct rig_session *s, int32_t token, uint32_t pos);

/* session_eval_batch of the batch's last token, but instead of its logits the k best of them
 * (k <= n_vocab) after the repetition penalty of ids (rig_penalize), best first, in cand: found
 * by the backend (a GPU sends back only those) or, where it does not, on the host. s->logits
 * is not written. Errors as session_eval_batch. */
int session_eval_top_k(struct rig_session *s, const struct rig_batch *batch, uint32_t k, const int32_t *ids,
                       uint32_t n_ids, float penalty, struct rig_candidate *cand);

/* session_eval of token, then the next token drawn by smp into *next: from the best few logits
 * where the draw needs only those (sampler_top_needed: session_eval_top_k), else from the whole
 * row. The same token as session_eval and sampler_sample on s->logits. */
int session_eval_sample(struct rig_session *s, int32_t token, uint32_t pos, struct sampler *smp, int32_t *next);

/* Tokens [0, n) of ids at positions start_pos.. of sequence 0, n_batch at a time; in s->logits
 * the last step's as session_eval_batch leaves them (all its tokens', or the last one's). Errors
 * as session_eval_batch. */
int session_eval_prompt(struct rig_session *s, const int32_t *ids, size_t n, uint32_t start_pos, bool all_logits);
