/* norm.cu — RMSNorm: out = x * w / rms(x), one block per row; the sum of squares is taken in
 * double like the CPU reference, so large n_embd does not lose the small terms. Each thread
 * loads its elements of x (and y) and w at once into registers and keeps them through the
 * block's sum: at batch 1 the kernel is one row, and its time is the latency of its loads. */
#include "dot_int8.cuh"
#include "kernels.h"
#include "reduce.cuh"
#include "rig_assert.h"

#define NORM_BLOCK_THREADS 1024
#define NORM_PER_THREAD (GPU_MAX_NORM / NORM_BLOCK_THREADS)

struct norm_args {
        float *x;                       /* [n_rows][n]: read; add_rmsnorm writes x + y back */
        const float *y;                 /* add_rmsnorm: [n_rows][n], else NULL */
        float *out;                     /* [n_rows][n] */
        const float *w;                 /* [n] */
        uint32_t n;
        float eps;
        struct gpu_act_out q;           /* order GPU_ACT_NONE: none */
};

/* Row blockIdx.x; element k of thread t is t + k * NORM_BLOCK_THREADS, so the 32 lanes of a warp
 * hold a 32-element block of the row at each k (what quantize_act_lanes needs). */
template <bool ADD>
__global__ void __launch_bounds__(NORM_BLOCK_THREADS) norm_kernel(norm_args a)
{
        gpu_grid_begin();
        size_t row = (size_t)blockIdx.x * a.n;
        float v[NORM_PER_THREAD], w[NORM_PER_THREAD];
#pragma unroll
        for (int k = 0; k < NORM_PER_THREAD; k++) {
                uint32_t i = threadIdx.x + k * NORM_BLOCK_THREADS;
                v[k] = i < a.n ? (ADD ? a.x[row + i] + a.y[row + i] : a.x[row + i]) : 0.0f;
                w[k] = i < a.n ? a.w[i] : 0.0f;
        }
        double ss = 0.0;
#pragma unroll
        for (int k = 0; k < NORM_PER_THREAD; k++) {
                uint32_t i = threadIdx.x + k * NORM_BLOCK_THREADS;
                if (ADD && i < a.n)
                        a.x[row + i] = v[k];
                ss += (double)v[k] * v[k];
        }
        ss = block_sum_double(ss);
        float scale = (float)(1.0 / sqrt(ss / a.n + a.eps));
#pragma unroll
        for (int k = 0; k < NORM_PER_THREAD; k++) {
                uint32_t i = threadIdx.x + k * NORM_BLOCK_THREADS;
                if ((uint32_t)k * NORM_BLOCK_THREADS >= a.n)
                        break;          /* the same k for every thread: past every row's end */
                float o = __fmul_rn(__fmul_rn(v[k], scale), w[k]);
                if (i < a.n)
                        a.out[row + i] = o;
                if (a.q.order != GPU_ACT_NONE)  /* n is a multiple of 32: a warp's lanes are all in or all out */
                        quantize_act_lanes(o, i < a.n, row + i, a.q.n_in, a.q.order, a.q.act.q, a.q.act.ds);
        }
}

static void launch_norm(const struct gpu_launch *g, bool add, float *x, const float *y, float *out, const float *w,
                        uint32_t n, uint32_t n_rows, float eps, const struct gpu_act_out *q)
{
        RIG_ASSERT(n <= GPU_MAX_NORM && (!q || (n % 32 == 0 && q->n_in == n)),
                   "a norm of rows of %u (at most %u; quantized: a multiple of 32, columns of %u)", n, GPU_MAX_NORM,
                   q ? q->n_in : 0);
        if (n_rows == 0)
                return;
        norm_args a = { x, y, out, w, n, eps, {} };
        a.q.order = GPU_ACT_NONE;
        if (q)
                a.q = *q;
        if (add)
                gpu_launch_kernel(g, norm_kernel<true>, dim3(n_rows), dim3(NORM_BLOCK_THREADS), a);
        else
                gpu_launch_kernel(g, norm_kernel<false>, dim3(n_rows), dim3(NORM_BLOCK_THREADS), a);
}

void gpu_add_rmsnorm(const struct gpu_launch *g, float *x, const float *y, float *out, const float *w, uint32_t n,
                     uint32_t n_rows, float eps, const struct gpu_act_out *q)
{
        launch_norm(g, true, x, y, out, w, n, n_rows, eps, q);
}

void gpu_rmsnorm(const struct gpu_launch *g, float *out, const float *x, const float *w, uint32_t n, uint32_t n_rows,
                 float eps, const struct gpu_act_out *q)
{
        launch_norm(g, false, (float *)x, NULL, out, w, n, n_rows, eps, q);      /* x only read */
}
