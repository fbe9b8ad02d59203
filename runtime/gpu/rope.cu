/* rope.cu — rotary position embedding in place. The angle of pair i is pos * freqs[i] in double
 * (freqs built once on the host exactly as the CPU computes them), then cos and sin in double
 * rounded to float, as the CPU does. Pairs are (2i, 2i+1) for "normal" RoPE (llama's converted
 * weights), (i, i + d/2) for NeoX (qwen2). */
#include "kernels.h"

#define ROPE_BLOCK_THREADS 256

/* vec: [batch.n][n_heads][head_dim], vec2 likewise of n_heads2 (or none), row blockIdx.y at
 * batch.pos of it; one thread per (head, pair), vec's heads first. */
__global__ void rope_kernel(float *vec, uint32_t n_heads, float *vec2, uint32_t n_heads2, uint32_t head_dim, int is_neox,
                            const double *freqs, struct gpu_batch batch)
{
        gpu_grid_begin();
        uint32_t pos = batch.pos[blockIdx.y];
        uint32_t n_pairs = head_dim / 2;
        uint32_t t = blockIdx.x * blockDim.x + threadIdx.x;
        if (t >= (n_heads + n_heads2) * n_pairs)
                return;
        uint32_t h = t / n_pairs, i = t % n_pairs;
        float *head = h < n_heads ? vec + ((size_t)blockIdx.y * n_heads + h) * head_dim
                                  : vec2 + ((size_t)blockIdx.y * n_heads2 + h - n_heads) * head_dim;
        double angle = pos * freqs[i];
        float cs = (float)cos(angle), sn = (float)sin(angle);
        uint32_t a = is_neox ? i : 2 * i;
        uint32_t b = is_neox ? i + n_pairs : 2 * i + 1;
        float x0 = head[a], x1 = head[b];
        head[a] = __fsub_rn(__fmul_rn(x0, cs), __fmul_rn(x1, sn));
        head[b] = __fadd_rn(__fmul_rn(x0, sn), __fmul_rn(x1, cs));
}

void gpu_rope(const struct gpu_launch *g, float *vec, uint32_t n_heads, float *vec2, uint32_t n_heads2, uint32_t head_dim,
              enum rig_rope_type type, const double *freqs, const struct gpu_batch *batch)
{
        if (!vec2)
                n_heads2 = 0;
        uint32_t n = (n_heads + n_heads2) * (head_dim / 2);
        if (n == 0 || batch->n == 0)
                return;
        dim3 grid((n + ROPE_BLOCK_THREADS - 1) / ROPE_BLOCK_THREADS, batch->n);
        gpu_launch_kernel(g, rope_kernel, grid, dim3(ROPE_BLOCK_THREADS), vec, n_heads, vec2, n_heads2, head_dim,
                          (int)(type == RIG_ROPE_NEOX), freqs, *batch);
}
