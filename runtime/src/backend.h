/* backend.h — the interface every compute backend implements (the CPU in runtime/cpu, CUDA/HIP
 * in runtime/gpu): the decoder (forward.c) is written once against these ops. Activation
 * pointers passed to the ops are the backend's own memory (host memory for the CPU, device
 * memory for a GPU), from alloc(); ops may run asynchronously, in order, until read(). */
#pragma once

#include <stddef.h>
#include <stdint.h>

#include "model.h"
#include "top_k.h"

struct rig_backend;

/* The tokens of one step, run together: token i at position pos[i] of sequence seq[i] (seq[i] <
 * the backend's n_seq; each sequence has its own KV cache rows). A prompt is one sequence at
 * consecutive positions; batched decode is one token of each of several sequences. Positions
 * of a sequence before pos[i] have run, in earlier steps or earlier in this batch. */
struct rig_batch {
        uint32_t n;
        const int32_t *tokens;
        const uint32_t *pos;
        const uint32_t *seq;
};

struct rig_backend_ops {
        const char *name;                       /* "cpu", "cuda", "hip" */
        void (*free)(struct rig_backend *b);

        /* n floats of activation memory, freed with the backend; NULL when out of memory. */
        float *(*alloc)(struct rig_backend *b, size_t n);
        /* n floats of backend memory to host memory, after every op before it has run. The ops
         * return nothing (a GPU learns of a failed launch later): read says whether all of them
         * ran, 0 or -EIO (a GPU backend keeps the message, see backend_gpu.h). */
        int (*read)(struct rig_backend *b, float *dst, const float *src, size_t n);

        /* Bracket the ops of one step (a batch, valid until end_batch): embed, rope and attention
         * act on its tokens, one row of their input and output per token. */
        void (*begin_batch)(struct rig_backend *b, const struct rig_batch *batch);
        void (*end_batch)(struct rig_backend *b);

        /* x[i][n_embd] = the embedding row of token i of the batch. */
        void (*embed)(struct rig_backend *b, float *x);
        /* out[r][n] = x[r] * w / rms(x[r]) for the n_rows rows r (eps from the model). */
        void (*rmsnorm)(struct rig_backend *b, float *out, const float *x, const float *w, uint32_t n,
                        uint32_t n_rows);
        /* y[j][n_out] = W x[j][n_in] (+ bias[n_out] when not NULL) for the n vectors j < n, x and
         * y contiguous: decode passes one; a batch passes several, and a backend reads each
         * weight byte once for as many of them as it can. */
        void (*matmul)(struct rig_backend *b, const struct rig_weight *w, const float *x, uint32_t n,
                       const float *bias, float *y);
        /* Rotates the n_heads heads of head_dim of row i (token i of the batch) in place by its
         * position (the model's RoPE). */
        void (*rope)(struct rig_backend *b, float *vec, uint32_t n_heads);
        /* For each token i of the batch: stores k[i], v[i] [kv_dim] at its sequence and position
         * in this layer's cache; then out[i][q_dim] = softmax(q[i] K^T / sqrt(head_dim)) V over
         * positions 0..pos[i] of its sequence, grouped-query (causal within the batch). */
        void (*attention)(struct rig_backend *b, uint32_t layer, const float *q, const float *k, const float *v,
                          float *out);
        /* out[n] = silu(gate) * up. */
        void (*swiglu)(struct rig_backend *b, float *out, const float *gate, const float *up, uint32_t n);
        /* x[r] += y[r], then out[r] = x[r] * w / rms(x[r]) for the n_rows rows of n: the residual
         * add and the norm after it in one pass over x. y is consumed: inside a step, a backend
         * may have the product that made y add it to x directly and leave y unwritten. */
        void (*add_rmsnorm)(struct rig_backend *b, float *x, const float *y, float *out, const float *w, uint32_t n,
                            uint32_t n_rows);

        /* The memory's copy bandwidth in bytes/s (bytes read + bytes written), measured now: the
         * ceiling of a decoder that streams every weight byte once per token (rig bench). 0 when
         * it could not be measured. */
        double (*copy_bandwidth)(struct rig_backend *b);

        /* The k best logits of the row x[n] (backend memory) after the repetition penalty
         * (rig_penalize of the n_ids ids, on x in place), best first (rig_top_k's order), into out
         * (host memory), after every op before it has run: what a draw needs, without the whole
         * row coming back. 0, -EIO (as read), or -ENOTSUP where the backend does not find this
         * many (the caller reads the row and finds them itself). NULL: never. */
        int (*top_k)(struct rig_backend *b, float *x, uint32_t n, uint32_t k, const int32_t *ids, uint32_t n_ids,
                     float penalty, struct rig_candidate *out);
};

struct rig_backend {
        const struct rig_backend_ops *ops;
        /* Hyperparameters, and the weights as this backend holds them: the CPU uses the loaded
         * model itself (pointers into the mapped file), a GPU a copy whose pointers are in
         * device memory. */
        const struct rig_model *model;
        uint32_t n_ctx;                 /* positions of each sequence's cache */
        uint32_t n_seq;                 /* sequences (KV caches) */
};
