/* attention.cu — the KV cache on the device (rows laid out as kv.c: [n_layer][n_seq][n_ctx]
 * [row_bytes] for K and for V, F32, F16 or Q8_0 with the same roundings as rig_quantize_row) and
 * decode-time grouped-query attention: one block per (query head, token of the batch), its warps
 * taking positions in turn, each with a running max and sum (one pass over K and V, no score
 * buffer), merged at the end. */
#include <math.h>

#include "dequant.cuh"
#include "kernels.h"
#include "reduce.cuh"
#include "rig_assert.h"

#define KV_STORE_BLOCK_THREADS 256
#define ATTN_BLOCK_THREADS 128
#define ATTN_MAX_WARPS (ATTN_BLOCK_THREADS / 32)

/* As quantize_q8_0 in quant.c: d = amax / 127 rounded to f16, then each level the nearest
 * integer (ties to even) to x / d, clamped to -127..127. x: [32]; dst: one 34-byte block. */
static __device__ void quantize_block_q8_0(const float *x, uint8_t *dst)
{
        float amax = 0.0f;
        for (int i = 0; i < QK8_0; i++) {
                float a = fabsf(x[i]);
                amax = a > amax ? a : amax;
        }
        __half dh = __float2half_rn(__fdiv_rn(amax, 127.0f));
        *(uint16_t *)dst = __half_as_ushort(dh);
        float d = __half2float(dh);
        int8_t *qs = (int8_t *)(dst + 2);
        for (int i = 0; i < QK8_0; i++) {
                float v = d == 0.0f ? 0.0f : __fdiv_rn(x[i], d);
                v = v < -127.0f ? -127.0f : v > 127.0f ? 127.0f : v;
                qs[i] = (int8_t)__float2int_rn(v);
        }
}

/* The row of (layer, seq, pos) counted from kv.k or kv.v: kv_row_index of kv.c. */
static __device__ __forceinline__ size_t kv_row(const struct rig_kv &kv, uint32_t layer, uint32_t seq, uint32_t pos)
{
        return ((size_t)layer * kv.n_seq + seq) * kv.n_ctx + pos;
}

/* blockIdx.y: 0 stores k, 1 stores v ([kv_dim] each) of batch token blockIdx.z at (layer, its
 * sequence, its position). One thread per element, or per 32-element block for Q8_0. */
__global__ void kv_store_kernel(struct rig_kv kv, uint32_t layer, struct gpu_batch batch, const float *k,
                                const float *v)
{
        uint32_t i = blockIdx.z;
        const float *src = (blockIdx.y ? v : k) + (size_t)i * kv.kv_dim;
        uint8_t *dst = (blockIdx.y ? kv.v : kv.k) + kv_row(kv, layer, batch.seq[i], batch.pos[i]) * kv.row_bytes;
        uint32_t t = blockIdx.x * blockDim.x + threadIdx.x;
        switch (kv.type) {
        case RIG_TYPE_F16:
                if (t < kv.kv_dim)
                        ((uint16_t *)dst)[t] = __half_as_ushort(__float2half_rn(src[t]));
                break;
        case RIG_TYPE_Q8_0:
                if (t < kv.kv_dim / QK8_0)
                        quantize_block_q8_0(src + (size_t)t * QK8_0, dst + (size_t)t * sizeof(struct block_q8_0));
                break;
        default:
                if (t < kv.kv_dim)
                        ((float *)dst)[t] = src[t];
                break;
        }
}

void gpu_kv_store(const struct gpu_launch *g, const struct rig_kv *kv, uint32_t layer, const struct gpu_batch *batch,
                  const float *k, const float *v)
{
        RIG_ASSERT(layer < kv->n_layer, "kv store at layer %u of %u", layer, kv->n_layer);
        uint32_t n = kv->type == RIG_TYPE_Q8_0 ? kv->kv_dim / QK8_0 : kv->kv_dim;
        if (batch->n == 0)
                return;
        dim3 grid((n + KV_STORE_BLOCK_THREADS - 1) / KV_STORE_BLOCK_THREADS, 2, batch->n);
        kv_store_kernel<<<grid, KV_STORE_BLOCK_THREADS, 0, g->stream>>>(*kv, layer, *batch, k, v);
}

/* Element i of a cached row. */
static __device__ __forceinline__ float kv_element(const struct rig_kv &kv, const uint8_t *row, uint32_t i)
{
        switch (kv.type) {
        case RIG_TYPE_F16:
                return half_bits_to_float(((const uint16_t *)row)[i]);
        case RIG_TYPE_Q8_0: {
                const uint8_t *b = row + (size_t)(i / QK8_0) * sizeof(struct block_q8_0);
                return (float)(int8_t)b[2 + i % QK8_0] * half_bits_to_float(load_u16(b));
        }
        default:
                return ((const float *)row)[i];
        }
}

/* q, out: [batch.n][n_head][head_dim]; block (h, i) takes query head h of token i, which reads
 * KV head h / group. Lane holds elements lane + j * WARP_SIZE of the head (j < head_dim /
 * WARP_SIZE, rounded up). */
__global__ void attention_kernel(struct rig_kv kv, uint32_t layer, struct gpu_batch batch, const float *q,
                                 float *out, uint32_t group, uint32_t head_dim)
{
        constexpr int PER_LANE = GPU_MAX_HEAD_DIM / WARP_SIZE;
        __shared__ float part_acc[ATTN_MAX_WARPS][GPU_MAX_HEAD_DIM];
        __shared__ float part_max[ATTN_MAX_WARPS], part_sum[ATTN_MAX_WARPS];

        uint32_t h = blockIdx.x, start = (h / group) * head_dim, n_head = gridDim.x;
        uint32_t pos = batch.pos[blockIdx.y];
        size_t first_pos = kv_row(kv, layer, batch.seq[blockIdx.y], 0);
        q += (size_t)blockIdx.y * n_head * head_dim;
        out += (size_t)blockIdx.y * n_head * head_dim;
        uint32_t lane = threadIdx.x % WARP_SIZE, warp = threadIdx.x / WARP_SIZE, n_warps = blockDim.x / WARP_SIZE;
        float qv[PER_LANE], acc[PER_LANE];
#pragma unroll
        for (int j = 0; j < PER_LANE; j++) {
                uint32_t i = lane + j * WARP_SIZE;
                qv[j] = i < head_dim ? q[(size_t)h * head_dim + i] : 0.0f;
                acc[j] = 0.0f;
        }
        float inv_sqrt_d = 1.0f / sqrtf((float)head_dim);
        float run_max = -INFINITY, run_sum = 0.0f;
        for (uint32_t t = warp; t <= pos; t += n_warps) {
                size_t off = (first_pos + t) * kv.row_bytes;
                const uint8_t *krow = kv.k + off, *vrow = kv.v + off;
                float dot = 0.0f;
#pragma unroll
                for (int j = 0; j < PER_LANE; j++) {
                        uint32_t i = lane + j * WARP_SIZE;
                        if (i < head_dim)
                                dot = fmaf(qv[j], kv_element(kv, krow, start + i), dot);
                }
                float s = warp_sum(dot) * inv_sqrt_d;
                float new_max = fmaxf(run_max, s);
                float rescale = expf(run_max - new_max), p = expf(s - new_max);
                run_sum = run_sum * rescale + p;
#pragma unroll
                for (int j = 0; j < PER_LANE; j++) {
                        uint32_t i = lane + j * WARP_SIZE;
                        if (i < head_dim)
                                acc[j] = acc[j] * rescale + p * kv_element(kv, vrow, start + i);
                }
                run_max = new_max;
        }
#pragma unroll
        for (int j = 0; j < PER_LANE; j++) {
                uint32_t i = lane + j * WARP_SIZE;
                if (i < head_dim)
                        part_acc[warp][i] = acc[j];
        }
        if (lane == 0) {
                part_max[warp] = run_max;
                part_sum[warp] = run_sum;
        }
        __syncthreads();

        float m = -INFINITY;
        for (uint32_t w = 0; w < n_warps; w++)
                m = fmaxf(m, part_max[w]);
        for (uint32_t i = threadIdx.x; i < head_dim; i += blockDim.x) {
                float num = 0.0f, den = 0.0f;
                for (uint32_t w = 0; w < n_warps; w++) {
                        if (part_max[w] == -INFINITY)
                                continue;       /* a warp that had no position */
                        float scale = expf(part_max[w] - m);
                        num += part_acc[w][i] * scale;
                        den += part_sum[w] * scale;
                }
                out[(size_t)h * head_dim + i] = num / den;
        }
}

void gpu_attention(const struct gpu_launch *g, const struct rig_kv *kv, uint32_t layer, const struct gpu_batch *batch,
                   const float *q, float *out, uint32_t n_head, uint32_t n_head_kv, uint32_t head_dim)
{
        RIG_ASSERT(layer < kv->n_layer, "attention at layer %u of %u", layer, kv->n_layer);
        RIG_ASSERT(head_dim <= GPU_MAX_HEAD_DIM && n_head_kv && n_head % n_head_kv == 0 &&
                           n_head_kv * head_dim == kv->kv_dim,
                   "attention with %u heads, %u KV heads of %u, KV rows of %u", n_head, n_head_kv, head_dim, kv->kv_dim);
        if (batch->n == 0)
                return;
        dim3 grid(n_head, batch->n);
        attention_kernel<<<grid, ATTN_BLOCK_THREADS, 0, g->stream>>>(*kv, layer, *batch, q, out, n_head / n_head_kv,
                                                                     head_dim);
}
