/* top_k.cu — the best k of a row of logits on the device (top_k.h's order: a higher logit first,
 * of equal ones the lower id), after the repetition penalty, so that a draw brings back k
 * candidates instead of a 128k-float row. Blocks sort slices of TOPK_SLICE elements in shared
 * memory (bitonic: the same comparisons whatever the data, ties settled by id, so the result is
 * exactly the host's), each keeps its best k, and one block sorts those and keeps the best k. */
#include <math.h>
#include <string.h>

#include "kernels.h"
#include "rig_assert.h"

#define TOPK_SLICE 4096
#define TOPK_THREADS 512

struct topk_ids {
        uint32_t n;
        int32_t id[GPU_TOPK_MAX_IDS];
};

/* x[id] for each id in range: divided by the penalty where positive, multiplied where not (the
 * host's float operations). */
__global__ void penalize_kernel(float *x, uint32_t n, topk_ids ids, float penalty)
{
        gpu_grid_begin();
        uint32_t i = threadIdx.x;
        if (i >= ids.n || ids.id[i] < 0 || (uint32_t)ids.id[i] >= n)
                return;
        float *l = &x[ids.id[i]];
        *l = *l > 0 ? __fdiv_rn(*l, penalty) : __fmul_rn(*l, penalty);
}

/* rig_candidate_better (top_k.h) on the device. */
static __device__ __forceinline__ bool is_better(float va, int32_t ia, float vb, int32_t ib)
{
        return va > vb || (va == vb && ia < ib);
}

/* v, id: TOPK_SLICE entries in shared memory, sorted best first; every thread of the block calls. */
static __device__ void sort_best_first(float *v, int32_t *id)
{
        for (uint32_t size = 2; size <= TOPK_SLICE; size <<= 1) {
                for (uint32_t stride = size / 2; stride > 0; stride >>= 1) {
                        for (uint32_t t = threadIdx.x; t < TOPK_SLICE / 2; t += blockDim.x) {
                                uint32_t i = 2 * t - (t & (stride - 1)), j = i + stride;
                                bool j_first = is_better(v[j], id[j], v[i], id[i]);
                                if ((i & size) == 0 ? j_first : !j_first) {
                                        float tv = v[i];
                                        int32_t ti = id[i];
                                        v[i] = v[j];
                                        id[i] = id[j];
                                        v[j] = tv;
                                        id[j] = ti;
                                }
                        }
                        __syncthreads();
                }
        }
}

/* Block b: elements b TOPK_SLICE .. of x[n]; its best k into best_v, best_id [b k ..]. Past
 * the row: -inf with the largest id, after every real element. */
__global__ void __launch_bounds__(TOPK_THREADS) topk_slice_kernel(const float *x, uint32_t n, uint32_t k, float *best_v,
                                                                  int32_t *best_id)
{
        gpu_grid_begin();
        __shared__ float v[TOPK_SLICE];
        __shared__ int32_t id[TOPK_SLICE];
        uint32_t first = blockIdx.x * TOPK_SLICE;
        for (uint32_t t = threadIdx.x; t < TOPK_SLICE; t += blockDim.x) {
                bool is_live = first + t < n;
                v[t] = is_live ? x[first + t] : -INFINITY;
                id[t] = is_live ? (int32_t)(first + t) : INT32_MAX;
        }
        __syncthreads();
        sort_best_first(v, id);
        for (uint32_t t = threadIdx.x; t < k; t += blockDim.x) {
                best_v[(size_t)blockIdx.x * k + t] = v[t];
                best_id[(size_t)blockIdx.x * k + t] = id[t];
        }
}

/* One block: the n_best slices' candidates sorted, the best k into out. */
__global__ void __launch_bounds__(TOPK_THREADS) topk_merge_kernel(const float *best_v, const int32_t *best_id,
                                                                  uint32_t n_best, uint32_t k, struct rig_candidate *out)
{
        gpu_grid_begin();
        __shared__ float v[TOPK_SLICE];
        __shared__ int32_t id[TOPK_SLICE];
        for (uint32_t t = threadIdx.x; t < TOPK_SLICE; t += blockDim.x) {
                v[t] = t < n_best ? best_v[t] : -INFINITY;
                id[t] = t < n_best ? best_id[t] : INT32_MAX;
        }
        __syncthreads();
        sort_best_first(v, id);
        for (uint32_t t = threadIdx.x; t < k; t += blockDim.x) {
                out[t].id = id[t];
                out[t].logit = v[t];
        }
}

static uint32_t slices_of(uint32_t n)
{
        return (n + TOPK_SLICE - 1) / TOPK_SLICE;
}

bool gpu_top_k_takes(const struct gpu_launch *g, uint32_t n, uint32_t k, uint32_t n_ids)
{
        uint64_t n_best = (uint64_t)slices_of(n) * k;
        return k >= 1 && k <= n && n_ids <= GPU_TOPK_MAX_IDS && n_best <= TOPK_SLICE &&
               2 * n_best + 2 * (uint64_t)k <= g->split_ws_floats;     /* the slices' best, then the k */
}

const struct rig_candidate *gpu_top_k(const struct gpu_launch *g, float *x, uint32_t n, uint32_t k, const int32_t *ids,
                                      uint32_t n_ids, float penalty)
{
        RIG_ASSERT(gpu_top_k_takes(g, n, k, n_ids), "top %u of %u after %u penalized ids", k, n, n_ids);
        if (n_ids > 0) {
                topk_ids list;
                memset(&list, 0, sizeof(list));
                list.n = n_ids;
                memcpy(list.id, ids, n_ids * sizeof(*ids));
                gpu_launch_kernel(g, penalize_kernel, dim3(1), dim3(GPU_TOPK_MAX_IDS), x, n, list, penalty);
        }
        uint32_t slices = slices_of(n);
        float *best_v = g->split_ws;
        int32_t *best_id = (int32_t *)(g->split_ws + (size_t)slices * k);
        struct rig_candidate *out = (struct rig_candidate *)(g->split_ws + 2 * (size_t)slices * k);
        gpu_launch_kernel(g, topk_slice_kernel, dim3(slices), dim3(TOPK_THREADS), (const float *)x, n, k, best_v, best_id);
        gpu_launch_kernel(g, topk_merge_kernel, dim3(1), dim3(TOPK_THREADS), (const float *)best_v,
                          (const int32_t *)best_id, slices * k, k, out);
        return out;
}
