/* norm.cu — RMSNorm: out = x * w / rms(x), one block per row; the sum of squares is taken in
 * double like the CPU reference, so large n_embd does not lose the small terms. */
#include "kernels.h"
#include "reduce.cuh"

#define NORM_BLOCK_THREADS 1024

/* out, x: [n_rows][n], row blockIdx.x; w: [n]. */
__global__ void rmsnorm_kernel(float *out, const float *x, const float *w, uint32_t n, float eps)
{
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

void gpu_rmsnorm(const struct gpu_launch *g, float *out, const float *x, const float *w, uint32_t n, uint32_t n_rows,
                 float eps)
{
        if (n_rows)
                rmsnorm_kernel<<<n_rows, NORM_BLOCK_THREADS, 0, g->stream>>>(out, x, w, n, eps);
}
