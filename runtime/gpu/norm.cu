/* norm.cu — RMSNorm: out = x * w / rms(x); the sum of squares is taken in double like the CPU
 * reference, so large n_embd does not lose the small terms. At batch 1 a norm is one row, which
 * one block would take alone (8.3 µs on an H200, ncu): instead several blocks take a row, each
 * summing the squares of the whole row (from the L2: the product before has just written it) and
 * then norming and quantizing its own slice. add_rmsnorm's add writes x, so its row stays with
 * one block (the decode step joins that add into the product before: backend_gpu.cu). */
#include "dot_int8.cuh"
#include "kernels.h"
#include "reduce.cuh"
#include "rig_assert.h"

#define NORM_THREADS 256

struct norm_args {
        float *x;                       /* [n_rows][n]: read; add_rmsnorm writes x + y back */
        const float *y;                 /* add_rmsnorm: [n_rows][n], else NULL */
        float *out;                     /* [n_rows][n] */
        const float *w;                 /* [n] */
        uint32_t n;
        uint32_t slice;                 /* elements each block of a row norms: a multiple of 32 */
        float eps;
        struct gpu_act_out q;           /* order GPU_ACT_NONE: none */
};

/* Row blockIdx.y, slice blockIdx.x of it (with ADD, gridDim.x is 1: the block that writes x + y
 * is the only one that reads it). A thread norms the elements it summed itself (ADD reads back
 * what it wrote), and the 32 lanes of a warp hold a 32-element block of the row, in lane order,
 * at each step (what quantize_act_lanes needs). */
template <bool ADD>
__global__ void __launch_bounds__(NORM_THREADS) norm_kernel(norm_args a)
{
        gpu_grid_begin();
        size_t row = (size_t)blockIdx.y * a.n;
        float *x = a.x + row;
        uint32_t first = blockIdx.x * a.slice, end = a.n - first < a.slice ? a.n : first + a.slice;
        /* the norm weight of the thread's first element, asked for now: it comes from DRAM (each
         * layer has its own) while the row is summed, not after */
        float w0 = first + threadIdx.x < end ? a.w[first + threadIdx.x] : 0.0f;
        double ss = 0.0;
#pragma unroll 8
        for (uint32_t i = threadIdx.x; i < a.n; i += NORM_THREADS) {
                float v = x[i];
                if (ADD) {
                        v += a.y[row + i];
                        x[i] = v;
                }
                ss += (double)v * v;
        }
        ss = block_sum_double(ss);
        float scale = (float)(1.0 / sqrt(ss / a.n + a.eps));
        for (uint32_t base = first; base < end; base += NORM_THREADS) {        /* the same steps for every thread */
                uint32_t i = base + threadIdx.x;
                bool is_live = i < end;
                float w = base == first ? w0 : is_live ? a.w[i] : 0.0f;
                float o = is_live ? __fmul_rn(__fmul_rn(x[i], scale), w) : 0.0f;
                if (is_live)
                        a.out[row + i] = o;
                if (a.q.order != GPU_ACT_NONE)  /* n and slice multiples of 32: a warp's lanes are all in or all out */
                        quantize_act_lanes(o, is_live, row + i, a.q.n_in, a.q.order, a.q.act.q, a.q.act.ds);
        }
}

static void launch_norm(const struct gpu_launch *g, bool add, float *x, const float *y, float *out, const float *w,
                        uint32_t n, uint32_t n_rows, float eps, const struct gpu_act_out *q)
{
        RIG_ASSERT(!q || (n % 32 == 0 && q->n_in == n), "a quantized norm of rows of %u (a multiple of 32, columns of %u)",
                   n, q ? q->n_in : 0);
        if (n_rows == 0 || n == 0)
                return;
        norm_args a = { x, y, out, w, n, n, eps, {} };
        a.q.order = GPU_ACT_NONE;
        if (q)
                a.q = *q;
        /* a slice a thread each while the rows alone would leave most multiprocessors idle */
        uint32_t slices = 1;
        if (!add && n_rows < (uint32_t)g->n_sm) {
                a.slice = NORM_THREADS;
                slices = (n + NORM_THREADS - 1) / NORM_THREADS;
        }
        dim3 grid(slices, n_rows);
        if (add)
                gpu_launch_kernel(g, norm_kernel<true>, grid, dim3(NORM_THREADS), a);
        else
                gpu_launch_kernel(g, norm_kernel<false>, grid, dim3(NORM_THREADS), a);
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
