/* backend.h — the interface every compute backend implements (the CPU in runtime/cpu, CUDA/HIP
 * in runtime/gpu): the decoder (forward.c) is written once against these ops. Activation
 * pointers passed to the ops are the backend's own memory (host memory for the CPU, device
 * memory for a GPU), from alloc(); ops may run asynchronously, in order, until read(). */
#pragma once

#include <stddef.h>
#include <stdint.h>

#include "model.h"

struct rig_backend;

struct rig_backend_ops {
        const char *name;                       /* "cpu", "cuda", "hip" */
        void (*free)(struct rig_backend *b);

        /* n floats of activation memory, freed with the backend; NULL when out of memory. */
        float *(*alloc)(struct rig_backend *b, size_t n);
        /* n floats of backend memory to host memory, after every op before it has run. The ops
         * return nothing (a GPU learns of a failed launch later): read says whether all of them
         * ran, 0 or -EIO (a GPU backend keeps the message, see backend_gpu.h). */
        int (*read)(struct rig_backend *b, float *dst, const float *src, size_t n);

        /* Bracket the ops of one token at position pos (0 <= pos < n_ctx, earlier positions
         * already run): embed, rope and attention act at that token and position. */
        void (*begin_token)(struct rig_backend *b, int32_t token, uint32_t pos);
        void (*end_token)(struct rig_backend *b);

        /* x[n_embd] = the token's row of the embedding. */
        void (*embed)(struct rig_backend *b, float *x);
        /* out[n] = x * w / rms(x) (eps from the model). */
        void (*rmsnorm)(struct rig_backend *b, float *out, const float *x, const float *w, uint32_t n);
        /* y[j][n_out] = W x[j][n_in] (+ bias[n_out] when not NULL) for the n vectors j < n, x and
         * y contiguous: decode passes one; a batch passes several, and a backend reads each
         * weight byte once for as many of them as it can. */
        void (*matmul)(struct rig_backend *b, const struct rig_weight *w, const float *x, uint32_t n,
                       const float *bias, float *y);
        /* Rotates n_heads heads of head_dim in place by the position (the model's RoPE). */
        void (*rope)(struct rig_backend *b, float *vec, uint32_t n_heads);
        /* Stores k, v [kv_dim] at the position of this layer's cache, then out[q_dim] =
         * softmax(q K^T / sqrt(head_dim)) V over positions 0..pos, grouped-query. */
        void (*attention)(struct rig_backend *b, uint32_t layer, const float *q, const float *k, const float *v,
                          float *out);
        /* out[n] = silu(gate) * up. */
        void (*swiglu)(struct rig_backend *b, float *out, const float *gate, const float *up, uint32_t n);
        /* x[n] += y[n]. */
        void (*add)(struct rig_backend *b, float *x, const float *y, uint32_t n);

        /* The memory's copy bandwidth in bytes/s (bytes read + bytes written), measured now: the
         * ceiling of a decoder that streams every weight byte once per token (rig bench). 0 when
         * it could not be measured. */
        double (*copy_bandwidth)(struct rig_backend *b);
};

struct rig_backend {
        const struct rig_backend_ops *ops;
        /* Hyperparameters, and the weights as this backend holds them: the CPU uses the loaded
         * model itself (pointers into the mapped file), a GPU a copy whose pointers are in
         * device memory. */
        const struct rig_model *model;
        uint32_t n_ctx;
};
