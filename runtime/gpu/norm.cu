/* norm.cu — RMSNorm: out = x * w / rms(x), one block per row; the sum of squares is taken in
 * double like the CPU reference, so large n_embd does not lose the small terms. */
#include "kernels.h"
#include "reduce.cuh"

#define NORM_BLOCK_THREADS 1024

/* out, x: [n_rows][n], row blockIdx.x; w: [n]. */
__global__ void rmsnorm_kernel(float *out, const float *x, const float *w, uint32_t n, float eps)
{
        gpu_grid_begin();
        x += (size_t)blockIdx.x * n;
        out += (size_t)blockIdx.x * n;
        double ss = 0.0;
        for (uint32_t i = threadIdx.x; i < n; i += blockDim.x)
                ss += (double)x[i] * x[i];
        ss = block_sum_double(ss);
        float scale = (float)(1.0 / sqrt(ss / n + eps));
        for (uint32_t i = threadIdx.x; i < n; i += blockDim.x)
                out[i] = __fmul_rn(__fmul_rn(x[i], scale), w[i]);
}

/* x, y, out: [n_rows][n], row blockIdx.x; x += y first, the sum of squares of the new x. */
__global__ void add_rmsnorm_kernel(float *x, const float *y, float *out, const float *w, uint32_t n, float eps)
{
        gpu_grid_begin();
        x += (size_t)blockIdx.x * n;
        y += (size_t)blockIdx.x * n;
        out += (size_t)blockIdx.x * n;
        double ss = 0.0;
        for (uint32_t i = threadIdx.x; i < n; i += blockDim.x) {
                float v = x[i] + y[i];
                x[i] = v;
                ss += (double)v * v;
        }
        ss = block_sum_double(ss);
        float scale = (float)(1.0 / sqrt(ss / n + eps));
        for (uint32_t i = threadIdx.x; i < n; i += blockDim.x)
                out[i] = __fmul_rn(__fmul_rn(x[i], scale), w[i]);    /* the thread's own x[i]: no race */
}

void gpu_add_rmsnorm(const struct gpu_launch *g, float *x, const float *y, float *out, const float *w, uint32_t n,
                     uint32_t n_rows, float eps)
{
        if (n_rows)
                add_rmsnorm_kernel<<<n_rows, NORM_BLOCK_THREADS, 0, g->stream>>>(x, y, out, w, n, eps);
}

void gpu_rmsnorm(const struct gpu_launch *g, float *out, const float *x, const float *w, uint32_t n, uint32_t n_rows,
                 float eps)
{
        if (n_rows)
                rmsnorm_kernel<<<n_rows, NORM_BLOCK_THREADS, 0, g->stream>>>(out, x, w, n, eps);
}
