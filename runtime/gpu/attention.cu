/* attention.cu — the KV cache on the device (rows laid out as kv.c: [n_layer][n_seq][n_ctx]
 * [row_bytes] for K and for V, F32, F16 or Q8_0 with the same roundings as rig_quantize_row) and
 * grouped-query attention in the flash-decoding manner: one block per (query heads of one KV
 * head, token of the batch, slice of the positions), its warps taking positions in turn, each
 * with a running max and sum (one pass over K and V, no score buffer), merged across warps and
 * then across slices. */
#include <math.h>

#include "dequant.cuh"
#include "kernels.h"
#include "reduce.cuh"
#include "rig_assert.h"

#define KV_STORE_BLOCK_THREADS 256
#define ATTN_BLOCK_THREADS 256
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
        gpu_grid_begin();
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
        gpu_launch_kernel(g, kv_store_kernel, grid, dim3(KV_STORE_BLOCK_THREADS), *kv, layer, *batch, k, v);
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

/* What one attention launch needs (passed by value). */
struct attn_args {
        struct rig_kv kv;
        uint32_t layer;
        struct gpu_batch batch;
        const float *q;                 /* [batch.n][n_head][head_dim] */
        float *out;                     /* [batch.n][n_head][head_dim] */
        uint32_t n_head, group, head_dim;
        uint32_t split_len;             /* positions of each slice (grid.z slices) */
        float *part;                    /* grid.z > 1: [batch.n][n_head][slices][head_dim + 2] */
};

/* Block (x, i, z): query heads HEADS x .. HEADS x + HEADS-1 (of one KV head: HEADS divides the
 * group, so each K and V row read serves them all) of batch token i, over slice z of its
 * positions (split_len of them, up to its own). Each warp takes positions in turn with a running
 * max and sum per head; lane holds elements lane + j * WARP_SIZE of a head. The warps merge in
 * shared memory; with one slice the block writes out, with more it leaves the slice's
 * unnormalized sums, max and denominator to attention_merge_kernel. MAX_D: the head size rounded
 * up to 64, 128 or 256, so the registers held per lane are what the head needs. */
template <int HEADS, int MAX_D>
__global__ void attention_kernel(attn_args a)
{
        gpu_grid_begin();
        constexpr int PER_LANE = MAX_D / WARP_SIZE > 0 ? MAX_D / WARP_SIZE : 1;
        __shared__ float part_acc[ATTN_MAX_WARPS][HEADS][MAX_D];
        __shared__ float part_max[ATTN_MAX_WARPS][HEADS], part_sum[ATTN_MAX_WARPS][HEADS];

        uint32_t h0 = blockIdx.x * HEADS, d = a.head_dim, start = (h0 / a.group) * d;
        uint32_t i_row = blockIdx.y, pos = a.batch.pos[i_row];
        uint32_t t0 = blockIdx.z * a.split_len, t_end = pos + 1 < t0 + a.split_len ? pos + 1 : t0 + a.split_len;
        size_t first_pos = kv_row(a.kv, a.layer, a.batch.seq[i_row], 0);
        const float *q = a.q + ((size_t)i_row * a.n_head + h0) * d;
        uint32_t lane = threadIdx.x % WARP_SIZE, warp = threadIdx.x / WARP_SIZE, n_warps = blockDim.x / WARP_SIZE;
        float qv[HEADS][PER_LANE], acc[HEADS][PER_LANE], run_max[HEADS], run_sum[HEADS];
#pragma unroll
        for (int h = 0; h < HEADS; h++) {
                run_max[h] = -INFINITY;
                run_sum[h] = 0.0f;
#pragma unroll
                for (int j = 0; j < PER_LANE; j++) {
                        uint32_t e = lane + j * WARP_SIZE;
                        qv[h][j] = e < d ? q[(size_t)h * d + e] : 0.0f;
                        acc[h][j] = 0.0f;
                }
        }
        float inv_sqrt_d = 1.0f / sqrtf((float)d);
        for (uint32_t t = t0 + warp; t < t_end; t += n_warps) {
                size_t off = (first_pos + t) * a.kv.row_bytes;
                const uint8_t *krow = a.kv.k + off, *vrow = a.kv.v + off;
                float kx[PER_LANE], vx[PER_LANE];
#pragma unroll
                for (int j = 0; j < PER_LANE; j++) {
                        uint32_t e = lane + j * WARP_SIZE;
                        kx[j] = e < d ? kv_element(a.kv, krow, start + e) : 0.0f;
                        vx[j] = e < d ? kv_element(a.kv, vrow, start + e) : 0.0f;
                }
#pragma unroll
                for (int h = 0; h < HEADS; h++) {
                        float dot = 0.0f;
#pragma unroll
                        for (int j = 0; j < PER_LANE; j++)
                                dot = fmaf(qv[h][j], kx[j], dot);
                        float sc = warp_sum(dot) * inv_sqrt_d;
                        float new_max = fmaxf(run_max[h], sc);
                        float rescale = expf(run_max[h] - new_max), p = expf(sc - new_max);
                        run_sum[h] = run_sum[h] * rescale + p;
#pragma unroll
                        for (int j = 0; j < PER_LANE; j++)
                                acc[h][j] = acc[h][j] * rescale + p * vx[j];
                        run_max[h] = new_max;
                }
        }
#pragma unroll
        for (int h = 0; h < HEADS; h++) {
#pragma unroll
                for (int j = 0; j < PER_LANE; j++) {
                        uint32_t e = lane + j * WARP_SIZE;
                        if (e < d)
                                part_acc[warp][h][e] = acc[h][j];
                }
                if (lane == 0) {
                        part_max[warp][h] = run_max[h];
                        part_sum[warp][h] = run_sum[h];
                }
        }
        __syncthreads();

        uint32_t n_slices = gridDim.z;
        for (uint32_t h = 0; h < HEADS; h++) {
                float m = -INFINITY;
                for (uint32_t w = 0; w < n_warps; w++)
                        m = fmaxf(m, part_max[w][h]);
                float den = 0.0f;
                for (uint32_t w = 0; w < n_warps; w++)
                        if (part_max[w][h] != -INFINITY)        /* a warp that had no position */
                                den += part_sum[w][h] * expf(part_max[w][h] - m);
                size_t head = (size_t)i_row * a.n_head + h0 + h;
                float *slot = n_slices > 1 ? a.part + (head * n_slices + blockIdx.z) * (d + 2) : NULL;
                for (uint32_t e = threadIdx.x; e < d; e += blockDim.x) {
                        float num = 0.0f;
                        for (uint32_t w = 0; w < n_warps; w++)
                                if (part_max[w][h] != -INFINITY)
                                        num += part_acc[w][h][e] * expf(part_max[w][h] - m);
                        if (slot)
                                slot[e] = num;
                        else
                                a.out[head * d + e] = num / den;
                }
                if (slot && threadIdx.x == 0) {
                        slot[d] = m;            /* -INFINITY: a slice past the token's position */
                        slot[d + 1] = den;
                }
        }
}

/* Block (h, i): query head h of batch token i from its slices' sums (slot layout above). */
__global__ void attention_merge_kernel(const float *part, uint32_t n_head, uint32_t n_slices, uint32_t d, float *out)
{
        gpu_grid_begin();
        size_t head = (size_t)blockIdx.y * n_head + blockIdx.x;
        const float *slots = part + head * n_slices * (d + 2);
        float m = -INFINITY;
        for (uint32_t z = 0; z < n_slices; z++)
                m = fmaxf(m, slots[z * (d + 2) + d]);
        float den = 0.0f;
        for (uint32_t z = 0; z < n_slices; z++) {
                float mz = slots[z * (d + 2) + d];
                if (mz != -INFINITY)
                        den += slots[z * (d + 2) + d + 1] * expf(mz - m);
        }
        for (uint32_t e = threadIdx.x; e < d; e += blockDim.x) {
                float num = 0.0f;
                for (uint32_t z = 0; z < n_slices; z++) {
                        float mz = slots[z * (d + 2) + d];
                        if (mz != -INFINITY)
                                num += slots[z * (d + 2) + e] * expf(mz - m);
                }
                out[head * d + e] = num / den;
        }
}

template <int MAX_D>
static void launch_attention(const struct gpu_launch *g, const attn_args &a, dim3 grid, uint32_t heads)
{
        if (heads == 4)
                gpu_launch_kernel(g, attention_kernel<4, MAX_D>, grid, dim3(ATTN_BLOCK_THREADS), a);
        else if (heads == 2)
                gpu_launch_kernel(g, attention_kernel<2, MAX_D>, grid, dim3(ATTN_BLOCK_THREADS), a);
        else
                gpu_launch_kernel(g, attention_kernel<1, MAX_D>, grid, dim3(ATTN_BLOCK_THREADS), a);
}

/* Query heads a block takes: the most of 4, 2, 1 that divides the group. */
static uint32_t heads_per_block(uint32_t group)
{
        return group % 4 == 0 ? 4 : group % 2 == 0 ? 2 : 1;
}

/* Slices of the positions: enough blocks to fill the device (ATTN_BLOCKS_PER_SM each) where the
 * cache is long and the blocks few (decode), each slice at least ATTN_MIN_SLICE positions, their
 * sums within the scratch. Chosen from the cache size, not the positions (those are in device
 * memory: one graph serves every step); a slice past a token's position does nothing. */
#define ATTN_BLOCKS_PER_SM 8
#define ATTN_MIN_SLICE 128

static uint32_t attention_slices(const struct gpu_launch *g, const struct rig_kv *kv, uint32_t blocks, uint32_t n_rows,
                                 uint32_t n_head, uint32_t d)
{
        uint32_t target = ATTN_BLOCKS_PER_SM * (uint32_t)(g->n_sm > 0 ? g->n_sm : 1);
        uint32_t slices = (target + blocks - 1) / blocks;
        uint32_t most = (kv->n_ctx + ATTN_MIN_SLICE - 1) / ATTN_MIN_SLICE;
        if (slices > most)
                slices = most;
        size_t per_slice = (size_t)n_rows * n_head * (d + 2);
        if (slices > 1 && (size_t)slices * per_slice > g->split_ws_floats)
                slices = (uint32_t)(g->split_ws_floats / per_slice);
        return slices > 1 ? slices : 1;
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
        attn_args a;
        a.kv = *kv;
        a.layer = layer;
        a.batch = *batch;
        a.q = q;
        a.out = out;
        a.n_head = n_head;
        a.group = n_head / n_head_kv;
        a.head_dim = head_dim;
        a.part = g->split_ws;
        uint32_t heads = heads_per_block(a.group);
        dim3 grid(n_head / heads, batch->n, 1);
        grid.z = attention_slices(g, kv, grid.x * grid.y, batch->n, n_head, head_dim);
        a.split_len = (kv->n_ctx + grid.z - 1) / grid.z;
        if (head_dim <= 64)
                launch_attention<64>(g, a, grid, heads);
        else if (head_dim <= 128)
                launch_attention<128>(g, a, grid, heads);
        else
                launch_attention<GPU_MAX_HEAD_DIM>(g, a, grid, heads);
        if (grid.z > 1)
                gpu_launch_kernel(g, attention_merge_kernel, dim3(n_head, batch->n), dim3(ATTN_BLOCK_THREADS),
                                  g->split_ws, n_head, grid.z, head_dim, out);
}
