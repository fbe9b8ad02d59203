/* backend_gpu.h — the GPU backend (CUDA, or HIP from the same source): struct rig_backend_ops on
 * one device with every weight and the KV cache in device memory. C entry points. */
#pragma once

#include <stddef.h>
#include <stdint.h>

#include "backend.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Usable devices; 0 without a GPU, a driver or a runtime (never fails otherwise). */
int gpu_device_count(void);

/* Uploads every weight of m to device `device`, allocates KV caches of n_ctx positions for
 * n_seq sequences of kv_type (F32, F16, Q8_0) there and one stream. (*out)->model is a copy of m whose weight
 * pointers are device memory; m must outlive the backend only for its gguf file handle.
 * 0, or a negative errno with a sentence in err: -ENODEV (no device, no driver), -ENOMEM (device
 * memory), -EINVAL (a weight type or shape the kernels do not take). */
int gpu_backend_new(const struct rig_model *m, uint32_t n_ctx, uint32_t n_seq, enum rig_type kv_type, int device,
                    struct rig_backend **out, char *err, size_t err_size);

/* bytes of host memory into backend memory (from alloc(), or any device pointer), in stream
 * order with the ops. The interface has no upload op yet; tests and later split modes need one. */
void gpu_backend_write(struct rig_backend *b, void *dst, const void *src, size_t bytes);

/* A weight of host memory (GGUF layout) into backend memory in the device layout (layout.h), as
 * the backend holds the model's: *out is w with data and row_bytes of the device copy, freed
 * with the backend. 0, -ENOMEM, or -EIO (see gpu_backend_error). */
int gpu_backend_upload_weight(struct rig_backend *b, const struct rig_weight *w, struct rig_weight *out);

/* The shapes of the one-column quantized matvec (matvec.cu), for the tests and the benchmark that
 * go through each (RIG_GPU_MV=rows,unroll,warps,prefetch): shape i (0, 1, ...), false past the
 * last. */
bool gpu_matvec_shape(size_t i, uint32_t *rows, uint32_t *unroll, uint32_t *warps, uint32_t *prefetch);

/* What the last step recorded, for the tests of its joins. */
struct gpu_step_summary {
        size_t n_ops;                   /* matmuls joined into one launch count once, as do joined ropes */
        size_t n_self_quantizing;       /* matmuls that quantize their x themselves (not the norm or
                                         * swiglu that wrote it) */
        size_t n_adding_apart;          /* norms that add their residual themselves (not the product
                                         * that made what is added) */
};
void gpu_backend_last_step(struct rig_backend *b, struct gpu_step_summary *out);

/* NULL while the backend's steps run as graphs (or graphs are off by RIG_GPU_GRAPHS=0), else why
 * a step's capture failed: from then on its ops launch one by one, correct but slower, so the
 * tests ask. */
const char *gpu_backend_graph_failure(struct rig_backend *b);

/* 0 while every op so far launched and ran, else -EIO with the first failure in err. The ops
 * themselves return nothing; call this after read(). */
int gpu_backend_error(struct rig_backend *b, char *err, size_t err_size);

#ifdef __cplusplus
}
#endif
