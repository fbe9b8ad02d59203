/* kernels.h — host-side launchers of the GPU kernels (one .cu file per concept), used by
 * backend_gpu.cu and the benchmarks. All enqueue on g->stream and return at once; pointers are
 * device memory; shapes are checked with RIG_ASSERT (only a programmer can break them). */
#pragma once

#include "vendor.h"
#include "layout.h"
#include "top_k.h"

struct gpu_launch {
        cudaStream_t stream;
        int warp_size;                  /* of the device: 32, or 64 on AMD gfx9 */
        int cc_major;                   /* compute capability major (NVIDIA: 8 = sm_80, tensor core mma.sync) */
        int n_sm;                       /* multiprocessors (compute units): how many blocks fill the device */
        uint32_t mv_rows, mv_unroll, mv_warps, mv_prefetch;     /* quantized matvec of one column: rows
                                         * a group of warps, chunks a step, warps a group, loads a step
                                         * ahead (matvec.cu; 0: its default) */
        uint32_t mmv_warps;             /* warps a block of the tensor-core matvec (matvec_mma.cu; 0: its choice) */
        uint32_t tiles_min_cols;        /* quantized products of this many columns or more take the
                                         * tile kernel (0: GPU_TILES_MIN_COLS) */
        bool launches_early;            /* gpu_launch_kernel launches each kernel while the one before ends */
        float *split_ws;                /* device scratch of split_ws_floats for the tile kernel's K slices */
        size_t split_ws_floats;         /* 0: no scratch, the tile kernel does not split K */
};

/* Whether kernels on a device of compute capability cc_major launch early (gpu_launch_kernel):
 * where the vendor has it, from 9.0 on, unless the environment has RIG_GPU_PDL=0. */
bool gpu_can_launch_early(int cc_major);

/* Every kernel is launched through this (with shared_bytes of dynamic shared memory), on
 * g->stream. Where g->launches_early (programmatic dependent launch: NVIDIA compute capability
 * 9.0 and later; RIG_GPU_PDL=0 turns it off) the kernel is launched once every block of the one
 * before it has exited, before that one's end has been signalled and its writes flushed; its
 * blocks wait in gpu_grid_begin until they are. So the launch of each kernel overlaps the end of
 * the one before. Captured into a step's graph, the same holds there (step_graph.h). */
template <typename... Params, typename... Args>
static inline void gpu_launch_kernel_shared(const struct gpu_launch *g, void (*kernel)(Params...), dim3 grid, dim3 block,
                                            size_t shared_bytes, Args... args)
{
#if GPU_HAS_PDL
        if (g->launches_early) {
                cudaLaunchAttribute early[1];
                early[0].id = cudaLaunchAttributeProgrammaticStreamSerialization;
                early[0].val.programmaticStreamSerializationAllowed = 1;
                cudaLaunchConfig_t config = {};
                config.gridDim = grid;
                config.blockDim = block;
                config.dynamicSmemBytes = shared_bytes;
                config.stream = g->stream;
                config.attrs = early;
                config.numAttrs = 1;
                cudaLaunchKernelEx(&config, kernel, args...);   /* a failure shows in cudaGetLastError */
                return;
        }
#endif
        kernel<<<grid, block, shared_bytes, g->stream>>>(args...);
}

/* gpu_launch_kernel_shared for a kernel of static shared memory only. */
template <typename... Params, typename... Args>
static inline void gpu_launch_kernel(const struct gpu_launch *g, void (*kernel)(Params...), dim3 grid, dim3 block,
                                     Args... args)
{
        gpu_launch_kernel_shared(g, kernel, grid, block, 0, args...);
}

/* The tokens of the step being computed (struct rig_batch), their arrays in device memory: the
 * kernels that depend on them read them there, so one captured graph of a step's kernels serves
 * every step of the same size (backend_gpu.cu writes the arrays before each). Passed by value. */
struct gpu_batch {
        uint32_t n;
        const int32_t *tokens;          /* [n] */
        const uint32_t *pos;            /* [n] */
        const uint32_t *seq;            /* [n] */
};

/* Most tokens of one step: the batched kernels take a token per grid row (y or z). */
#define GPU_MAX_BATCH 65535

/* Most head_dim the attention kernel holds in registers. */
#define GPU_MAX_HEAD_DIM 256

/* Columns one matvec launch takes; gpu_matmul loops over more. */
#define GPU_MAX_COLS 8

/* From this many columns on, gpu_matmul of a quantized type takes the tile kernel
 * (gpu_matmul_tiles) instead of matvec launches of GPU_MAX_COLS columns. Measured on an H200
 * (llama3-8b Q4_K_M, rig bench -B): 16 sequences 1435 t/s by matvec against 1150 by tiles, 24
 * sequences 1494 against 1704 (docs/perf.md). */
#define GPU_TILES_MIN_COLS 24

/* true when matvec and embed have a kernel for rows of this type. */
bool gpu_type_supported(enum rig_type type);

/* Activations quantized to 8 bits for the kernels of the quantized types: per 32 elements a
 * scale d and d * (sum of the 32 levels); levels and scales as rig_quantize_row's Q8_0, the
 * levels in the chunk order of the weight type (layout.h). */
struct gpu_act {
        int8_t *q;                      /* [n_cols][n_in] levels */
        float2 *ds;                     /* [n_cols][n_in / 32], in element order */
};

/* 8-bit activations that a kernel producing x (rmsnorm, add_rmsnorm, swiglu) writes beside x, for
 * the quantized matmul that reads x next (backend_gpu.cu moves the quantization there: one
 * launch fewer). x holds columns of n_in elements (n_in a multiple of 32). */
struct gpu_act_out {
        enum gpu_act_order order;
        uint32_t n_in;
        struct gpu_act act;
};

/* act = x[n_cols][n_in] quantized, in the order the kernels of one weight type read (a type
 * for which gpu_act_order_of is not GPU_ACT_NONE; n_in a multiple of its block). */
void gpu_quantize_act(const struct gpu_launch *g, const float *x, uint32_t n_in, uint32_t n_cols, enum gpu_act_order order,
                      const struct gpu_act *a);

/* y[j][n_out] = W x[j][n_in] (+ bias[n_out] when not NULL) for j < n_cols. W in the device
 * layout (layout.h); x 16-byte aligned for the float types; for the quantized types act holds x
 * quantized (x itself is not read, may be NULL). Each weight byte is read once per GPU_MAX_COLS
 * columns, or, for a quantized type from GPU_TILES_MIN_COLS columns on, once per tile of 64
 * (gpu_matmul_tiles). */
void gpu_matmul(const struct gpu_launch *g, const struct rig_weight *w, const float *x, const struct gpu_act *act,
                uint32_t n_cols, const float *bias, float *y);

/* Most weights one matmul launch takes on the same activations (Q, K and V; gate and up). */
#define GPU_MAX_PARTS 3

/* One weight of several multiplied by the same x in one launch: y[j][n_out] = W x[j] (+ bias),
 * or with accumulate y[j] += that (a residual add joined into the product that makes what is
 * added: each output is read and written by the one thread that sums it, so x must not be y). */
struct gpu_matmul_part {
        struct rig_weight w;
        const float *bias;              /* [n_out] or NULL */
        float *y;                       /* [n_cols][n_out] */
        bool accumulate;
};

/* gpu_matmul of n_parts (1..GPU_MAX_PARTS) weights of one type, n_in and row stride on the same
 * x, as one launch over all their rows: a small weight (K, V of 1024 rows) alone leaves most
 * multiprocessors idle, and each launch costs its ramp-up and tail. */
void gpu_matmul_parts(const struct gpu_launch *g, const struct gpu_matmul_part *parts, uint32_t n_parts, const float *x,
                      const struct gpu_act *act, uint32_t n_cols);

/* Whether the quantized products take tensor cores (mma.sync): on NVIDIA devices of compute
 * capability 8.0 and later, unless the environment has RIG_GPU_MMA=0 (read at each call, so a
 * test or a benchmark takes both paths on one device). */
bool gpu_takes_mma(const struct gpu_launch *g);

/* gpu_matmul for a quantized type (act holds x quantized) by tiles of rows x columns: each
 * weight byte is read once per 64 columns. Tensor cores (mma.sync) on NVIDIA devices of compute
 * capability 8.0 and later, dp4a elsewhere or when the environment has RIG_GPU_MMA=0 (read at
 * each call). gpu_matmul takes it from GPU_TILES_MIN_COLS columns on. */
void gpu_matmul_tiles(const struct gpu_launch *g, const struct gpu_matmul_part *part, const struct gpu_act *act,
                      uint32_t n_cols);

/* out[i][n_in] = row batch.tokens[i] of the embedding e (GGUF layout) as float, i < batch.n. */
void gpu_embed(const struct gpu_launch *g, const struct rig_weight *e, const struct gpu_batch *batch, float *out);

/* out[r][n] = x[r] * w / rms(x[r]) for r < n_rows, the sum of squares in double as on the CPU.
 * With q (else NULL), out also quantized into q->act. */
void gpu_rmsnorm(const struct gpu_launch *g, float *out, const float *x, const float *w, uint32_t n, uint32_t n_rows,
                 float eps, const struct gpu_act_out *q);

/* Rotates the n_heads heads of head_dim of row i of vec by angle batch.pos[i] * freqs[p] for
 * pair p (freqs: device [head_dim / 2], base^(-2p/d) already divided by any rope_freqs); in the
 * same launch the n_heads2 heads of vec2 (K after Q), when vec2 is not NULL. */
void gpu_rope(const struct gpu_launch *g, float *vec, uint32_t n_heads, float *vec2, uint32_t n_heads2, uint32_t head_dim,
              enum rig_rope_type type, const double *freqs, const struct gpu_batch *batch);

/* kv: a struct rig_kv whose k and v point to device memory (same layout as kv.c). Stores
 * k[i], v[i] [kv_dim] at (layer, batch.seq[i], batch.pos[i]). */
void gpu_kv_store(const struct gpu_launch *g, const struct rig_kv *kv, uint32_t layer, const struct gpu_batch *batch,
                  const float *k, const float *v);
/* out[i][n_head][head_dim] = softmax(q[i] K^T / sqrt(head_dim)) V over positions 0..batch.pos[i]
 * of sequence batch.seq[i] of layer (positions and sequences in range, checked by the caller). */
void gpu_attention(const struct gpu_launch *g, const struct rig_kv *kv, uint32_t layer, const struct gpu_batch *batch,
                   const float *q, float *out, uint32_t n_head, uint32_t n_head_kv, uint32_t head_dim);

/* x[r] += y[r], then out[r] = x[r] * w / rms(x[r]) for r < n_rows (gpu_rmsnorm's sums, and q). */
void gpu_add_rmsnorm(const struct gpu_launch *g, float *x, const float *y, float *out, const float *w, uint32_t n,
                     uint32_t n_rows, float eps, const struct gpu_act_out *q);

/* out[n] = silu(gate) * up; with q (else NULL), out also quantized into q->act. */
void gpu_swiglu(const struct gpu_launch *g, float *out, const float *gate, const float *up, uint32_t n,
                const struct gpu_act_out *q);

/* Most penalized ids gpu_top_k takes (a longer penalty window: the caller finds the best itself). */
#define GPU_TOPK_MAX_IDS 256

/* Whether gpu_top_k takes the best k of a row of n after n_ids penalized ids: k at most 4096
 * over the row's slices of 4096 (k <= 128 for a 128k vocabulary), and the scratch holds them. */
bool gpu_top_k_takes(const struct gpu_launch *g, uint32_t n, uint32_t k, uint32_t n_ids);

/* The repetition penalty on x[n] (rig_penalize of ids, in place), then its best k, best first
 * (top_k.h's order): where they will be, in g->split_ws (device memory), once the launches run. */
const struct rig_candidate *gpu_top_k(const struct gpu_launch *g, float *x, uint32_t n, uint32_t k, const int32_t *ids,
                                      uint32_t n_ids, float penalty);
