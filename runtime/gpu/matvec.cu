/* matvec.cu — y[j] = W x[j] for up to GPU_MAX_COLS activation vectors at once (decode is one;
 * a batch of sequences, or a prompt's tokens, more): the dequantization fused into the dot
 * product, one warp per output row, each weight byte read once for every column — at batch 1
 * a decoder streams each weight byte once per token, so the kernels are built around the
 * loads. Quantized types take 8-bit activations (dot_int8.cuh; gpu_quantize_act makes them),
 * the float types float activations (dequant.cuh). One kernel per type and column count,
 * chosen from a table. */
#include "dequant.cuh"
#include "backend_gpu.h"
#include "dot_int8.cuh"
#include "kernels.h"
#include "layout.h"
#include "matvec.cuh"
#include "reduce.cuh"
#include "rig_assert.h"

#include <string.h>

/* Warps per block. A row takes 1, 2 or 4 of them (warps_per_row, chosen in gpu_matmul): one
 * warp per row leaves a multiprocessor ~30 warps (4096 rows) each waiting on its loads, and a
 * float row split over 4 warps keeps 4 times the loads in flight. */
#define MATVEC_BLOCK_WARPS 4

/* Which row this thread works on, and its place among the row's threads. */
struct row_share {
        uint32_t row, first, step;      /* chunks first, first + step, ... */
        bool is_live;                   /* row < n_rows (the others still meet at the barrier) */
};

static __device__ __forceinline__ row_share share_of(const matvec_args &a)
{
        row_share r;
        r.row = blockIdx.x * (MATVEC_BLOCK_WARPS / a.warps_per_row) + threadIdx.y / a.warps_per_row;
        r.first = threadIdx.y % a.warps_per_row * WARP_SIZE + threadIdx.x;
        r.step = a.warps_per_row * WARP_SIZE;
        r.is_live = r.row < a.n_rows;
        return r;
}

/* dot(v[LEN], x[LEN]); x is 16-byte aligned when LEN is a multiple of 4 (runs start at
 * multiples of 8 elements of a 16-byte aligned vector). */
template <int LEN>
static __device__ __forceinline__ float dot_run(const float *v, const float *x, float acc)
{
        if (LEN % 4 == 0) {
#pragma unroll
                for (int i = 0; i < LEN / 4; i++) {
                        float4 xv = ((const float4 *)x)[i];
                        acc = fmaf(v[4 * i], xv.x, acc);
                        acc = fmaf(v[4 * i + 1], xv.y, acc);
                        acc = fmaf(v[4 * i + 2], xv.z, acc);
                        acc = fmaf(v[4 * i + 3], xv.w, acc);
                }
        } else {
#pragma unroll
                for (int i = 0; i < LEN; i++)
                        acc = fmaf(v[i], x[i], acc);
        }
        return acc;
}

/* Sums each column over the row's warps; lane j of the row's first warp writes column j. */
template <int NCOLS>
static __device__ __forceinline__ void store_row(const matvec_args &a, const row_share &r, float *acc)
{
        __shared__ float part[MATVEC_BLOCK_WARPS][NCOLS];
#pragma unroll
        for (int j = 0; j < NCOLS; j++) {
                float s = warp_sum(acc[j]);
                if (threadIdx.x == 0)
                        part[threadIdx.y][j] = s;
        }
        __syncthreads();
        if (!r.is_live || threadIdx.y % a.warps_per_row != 0 || threadIdx.x >= (unsigned)NCOLS)
                return;
        float s = 0.0f;
        for (uint32_t k = 0; k < a.warps_per_row; k++)
                s += part[threadIdx.y + k][threadIdx.x];
        store_target(target_of(a, r.row), threadIdx.x, s);
}

template <typename D, int NCOLS>
__global__ void matvec_float_kernel(matvec_args a)
{
        gpu_grid_begin();
        row_share r = share_of(a);
        const uint8_t *wr = target_of(a, r.is_live ? r.row : 0).w;
        uint32_t n_chunks = r.is_live ? D::chunks(a.n_in) : 0;
        float acc[NCOLS] = {};
        /* unrolled so that several chunks' loads are in flight before the first product: a row of
         * 14336 F16 elements is 14 chunks for each of 4 warps' lanes */
#pragma unroll 4
        for (uint32_t c = r.first; c < n_chunks; c += r.step) {
                float v[D::RUNS * D::RUN_LEN];
                D::decode(wr, c, v);
#pragma unroll
                for (int j = 0; j < NCOLS; j++) {
                        const float *xc = a.x + (size_t)j * a.n_in + D::first(c);
#pragma unroll
                        for (int k = 0; k < D::RUNS; k++)
                                acc[j] = dot_run<D::RUN_LEN>(v + k * D::RUN_LEN, xc + k * D::RUN_STRIDE, acc[j]);
                }
        }
        store_row<NCOLS>(a, r, acc);
}

/* The weights of one step of a group's lane: chunks c0, c0 + LANES, ... (UNROLL of them, those
 * before end) of each of its ROWS rows, every load issued before any is used. */
template <typename D, int ROWS, int UNROLL, uint32_t LANES>
static __device__ __forceinline__ void load_step(const uint8_t *const *wr, uint32_t n_in, uint32_t n_chunks, uint32_t c0,
                                                 uint32_t end, typename D::W (&wv)[UNROLL][ROWS])
{
#pragma unroll
        for (int u = 0; u < UNROLL; u++) {
                uint32_t c = c0 + u * LANES;
                if (c < end) {
                        chunk_place at = place_of(c, n_chunks);
#pragma unroll
                        for (int r = 0; r < ROWS; r++)
                                D::load(wr[r], n_in, c, at, wv[u][r]);
                }
        }
}

/* Quantized rows: a group of WARPS warps takes rows ROWS g .. ROWS g + ROWS-1 (g: the group's
 * place in the grid), its lane l (of WARPS x WARP_SIZE) chunks l, l + WARPS x WARP_SIZE, ...,
 * UNROLL of them a step with every load issued before the first product: at batch 1 the kernel
 * waits on load latency, not on bandwidth (ncu: 70-80% of issue slots stalled on L1TEX), so
 * what counts is how many loads are in flight, and how many round trips a warp makes one after
 * another (a row of 14336 Q4_K elements is 7 chunks a lane for one warp, 2 for four). With
 * PREFETCH the next step's loads are issued before this step's products, so a lane's loads are
 * in flight while it computes. Several rows per group also share each activation load. ROWS,
 * UNROLL, WARPS and PREFETCH are chosen by measurement (gpu_launch.mv_*; bench_gpu_matvec sweeps
 * them). */
template <typename D, int NCOLS, int ROWS, int UNROLL, int WARPS, bool PREFETCH>
static __device__ __forceinline__ void matvec_int8(const matvec_args &a)
{
        constexpr uint32_t GROUPS = MATVEC_BLOCK_WARPS / WARPS, LANES = WARPS * WARP_SIZE, STEP = UNROLL * LANES;
        uint32_t lane = threadIdx.y % WARPS * WARP_SIZE + threadIdx.x;
        uint32_t row0 = (blockIdx.x * GROUPS + threadIdx.y / WARPS) * ROWS;
        uint32_t n_chunks = a.n_in / D::CHUNK, n_blocks = a.n_in / 32;
        uint32_t end = row0 < a.n_rows ? n_chunks : 0;
        const uint8_t *wr[ROWS];
#pragma unroll
        for (int r = 0; r < ROWS; r++)      /* a row past the end reads the last one again, unused */
                wr[r] = target_of(a, row0 + r < a.n_rows ? row0 + r : a.n_rows - 1).w;
        float acc[ROWS][NCOLS] = {};
        /* next: the step ahead (one unused entry without PREFETCH, which the code below must
         * still compile against: hence the PREFETCH ? UNROLL : 1 in its shape) */
        typename D::W wv[UNROLL][ROWS], next[PREFETCH ? UNROLL : 1][ROWS];
        if (PREFETCH)
                load_step<D, ROWS, UNROLL, LANES>(wr, a.n_in, n_chunks, lane, end, wv);
        for (uint32_t c0 = lane; c0 < end; c0 += STEP) {
                if (PREFETCH)
                        load_step<D, ROWS, PREFETCH ? UNROLL : 1, LANES>(wr, a.n_in, n_chunks, c0 + STEP, end, next);
                else
                        load_step<D, ROWS, UNROLL, LANES>(wr, a.n_in, n_chunks, c0, end, wv);
#pragma unroll
                for (int u = 0; u < UNROLL; u++) {
                        uint32_t c = c0 + u * LANES;
                        if (u > 0 && c >= end)
                                break;
                        chunk_place at = place_of(c, n_chunks);
#pragma unroll
                        for (int j = 0; j < NCOLS; j++)
#pragma unroll
                                for (int r = 0; r < ROWS; r++)
                                        acc[r][j] += D::dot(wv[u][r], c, at, a.xq + (size_t)j * a.n_in,
                                                            a.xds + (size_t)j * n_blocks);
                }
                if (PREFETCH)
#pragma unroll
                        for (int u = 0; u < UNROLL; u++)
#pragma unroll
                                for (int r = 0; r < ROWS; r++)
                                        wv[u][r] = next[PREFETCH ? u : 0][r];
        }
        __shared__ float part[WARPS > 1 ? MATVEC_BLOCK_WARPS : 1][ROWS * NCOLS];
#pragma unroll
        for (int r = 0; r < ROWS; r++)
#pragma unroll
                for (int j = 0; j < NCOLS; j++) {
                        float sum = warp_sum(acc[r][j]);
                        if (WARPS > 1 && threadIdx.x == 0)
                                part[threadIdx.y][r * NCOLS + j] = sum;
                        else if (WARPS == 1 && lane == 0 && row0 + r < a.n_rows)
                                store_target(target_of(a, row0 + r), j, sum);
                }
        if (WARPS == 1)
                return;
        __syncthreads();
        /* the group's first warp sums the others' parts, lane r * NCOLS + j of it one sum */
        uint32_t k = threadIdx.x, r = k / NCOLS;
        if (threadIdx.y % WARPS != 0 || k >= (uint32_t)(ROWS * NCOLS) || row0 + r >= a.n_rows)
                return;
        float sum = 0.0f;
#pragma unroll
        for (int w = 0; w < WARPS; w++)
                sum += part[threadIdx.y + w][k];
        store_target(target_of(a, row0 + r), k % NCOLS, sum);
}

template <typename D, int NCOLS, int ROWS, int UNROLL, int WARPS, bool PREFETCH>
__global__ void matvec_int8_kernel(matvec_args a)
{
        gpu_grid_begin();
        matvec_int8<D, NCOLS, ROWS, UNROLL, WARPS, PREFETCH>(a);
}

/* Q8_0 and Q4_0 at 2 to 8 columns, held to 64 registers a thread so that a multiprocessor takes
 * 8 blocks: 4096 rows are then one wave. Left to itself the compiler gave them 72 and 76 (7
 * blocks, 1.1 waves: Q8_0 at 8 columns went from 51 to 67-73 us, docs/perf.md). The K types
 * spill at 64 and keep their own count (the same bounds with 1 block let it grow). */
template <typename D, int NCOLS>
__global__ void GPU_LAUNCH_BOUNDS(MATVEC_BLOCK_WARPS * WARP_SIZE, 8) matvec_int8_cols_kernel(matvec_args a)
{
        gpu_grid_begin();
        matvec_int8<D, NCOLS, 1, 2, 1, false>(a);
}

/* The two kernel families, as types whose launch<NCOLS> starts the instance for D. */
template <typename D>
struct float_kernels {
        template <int NCOLS>
        static void launch(const struct gpu_launch *g, const matvec_args &a, dim3 grid, dim3 block)
        {
                gpu_launch_kernel(g, matvec_float_kernel<D, NCOLS>, grid, block, a);
        }
};

/* How a quantized type takes several columns (the sweep's shapes are for n = 1):
 *  COLS_PLAIN   one row a warp, two chunks a step;
 *  COLS_HELD    the same held to 64 registers (Q8_0, Q4_0: matvec_int8_cols_kernel);
 *  COLS_2_ROWS  two columns of a K type in its one-column default shape (mv_default_of: two
 *               rows a group of two warps, the same 4 rows a block). Measured on an H200
 *               (docs/perf.md), 2 columns: Q4_K 19.8 -> 16.3 us (4096 x 14336), 18.6 -> 15.0
 *               (14336 x 4096); Q8_0 in its default shape got slower (19.3 -> 26.1, 19.4 ->
 *               20.3), so Q8_0 and Q4_0 keep one row a warp. */
enum cols_shape { COLS_PLAIN, COLS_HELD, COLS_2_ROWS };

template <typename D, int NCOLS, cols_shape SHAPE>
struct int8_cols {
        static void launch(const struct gpu_launch *g, const matvec_args &a, dim3 grid, dim3 block)
        {
                gpu_launch_kernel(g, matvec_int8_kernel<D, NCOLS, 1, 2, 1, false>, grid, block, a);
        }
};

template <typename D, int NCOLS>
struct int8_cols<D, NCOLS, COLS_HELD> {
        static void launch(const struct gpu_launch *g, const matvec_args &a, dim3 grid, dim3 block)
        {
                gpu_launch_kernel(g, matvec_int8_cols_kernel<D, NCOLS>, grid, block, a);
        }
};

template <typename D, int NCOLS>
struct int8_cols<D, NCOLS, COLS_2_ROWS> {
        static void launch(const struct gpu_launch *g, const matvec_args &a, dim3 grid, dim3 block)
        {
                gpu_launch_kernel(g, matvec_int8_kernel<D, NCOLS, 2, 1, 2, false>, grid, block, a);
        }
};

template <typename D>
struct int8_kernels {
        template <int NCOLS>
        static void launch(const struct gpu_launch *g, const matvec_args &a, dim3 grid, dim3 block)
        {
                constexpr cols_shape shape = D::CHUNK == 32 ? COLS_HELD : NCOLS == 2 ? COLS_2_ROWS : COLS_PLAIN;
                int8_cols<D, NCOLS, shape>::launch(g, a, grid, block);
        }
};

/* One launch of n_cols (1..GPU_MAX_COLS) columns: the kernel instance for that count. */
template <typename K>
static void launch_cols(const struct gpu_launch *g, const matvec_args &a, uint32_t n_cols, dim3 grid, dim3 block)
{
        switch (n_cols) {
        case 1: K::template launch<1>(g, a, grid, block); break;
        case 2: K::template launch<2>(g, a, grid, block); break;
        case 3: K::template launch<3>(g, a, grid, block); break;
        case 4: K::template launch<4>(g, a, grid, block); break;
        case 5: K::template launch<5>(g, a, grid, block); break;
        case 6: K::template launch<6>(g, a, grid, block); break;
        case 7: K::template launch<7>(g, a, grid, block); break;
        default: K::template launch<8>(g, a, grid, block); break;
        }
}

typedef void (*launch_fn)(const struct gpu_launch *, const matvec_args &, uint32_t, dim3, dim3);

/* The shapes of the one-column quantized matvec there are kernels for: rows a group of warps,
 * chunks a lane takes a step, warps a group, whether the next step's loads go before this
 * step's products (RIG_GPU_MV=rows,unroll,warps,prefetch picks one). */
struct mv_shape {
        uint32_t rows, unroll, warps, prefetch;
};

static const mv_shape mv_shapes[] = {
        { 1, 1, 1, 0 }, { 1, 2, 1, 0 }, { 2, 1, 1, 0 }, { 2, 2, 1, 0 }, { 1, 1, 2, 0 }, { 2, 1, 2, 0 },
        { 2, 2, 2, 0 }, { 1, 1, 4, 0 }, { 2, 1, 4, 0 }, { 1, 1, 1, 1 }, { 2, 1, 2, 1 },
};
#define N_MV_SHAPES (sizeof(mv_shapes) / sizeof(mv_shapes[0]))

extern "C" bool gpu_matvec_shape(size_t i, uint32_t *rows, uint32_t *unroll, uint32_t *warps, uint32_t *prefetch)
{
        if (i >= N_MV_SHAPES)
                return false;
        *rows = mv_shapes[i].rows;
        *unroll = mv_shapes[i].unroll;
        *warps = mv_shapes[i].warps;
        *prefetch = mv_shapes[i].prefetch;
        return true;
}

typedef void (*int8_kernel_fn)(matvec_args);

/* The kernels of mv_shapes, in its order, for D. */
template <typename D>
static int8_kernel_fn int8_single_kernel(size_t i)
{
        static const int8_kernel_fn fns[N_MV_SHAPES] = {
                matvec_int8_kernel<D, 1, 1, 1, 1, false>, matvec_int8_kernel<D, 1, 1, 2, 1, false>,
                matvec_int8_kernel<D, 1, 2, 1, 1, false>, matvec_int8_kernel<D, 1, 2, 2, 1, false>,
                matvec_int8_kernel<D, 1, 1, 1, 2, false>, matvec_int8_kernel<D, 1, 2, 1, 2, false>,
                matvec_int8_kernel<D, 1, 2, 2, 2, false>, matvec_int8_kernel<D, 1, 1, 1, 4, false>,
                matvec_int8_kernel<D, 1, 2, 1, 4, false>, matvec_int8_kernel<D, 1, 1, 1, 1, true>,
                matvec_int8_kernel<D, 1, 2, 1, 2, true>,
        };
        return fns[i];
}

/* Each type's shape when none is asked for: of the sweeps of bench_gpu_matvec on an H200
 * (docs/perf.md, 2026-12-04), the one near the best on both the 4096 x 14336 and the 14336 x
 * 4096 product, with few registers (the shapes of 120 and more lost most when other kernels'
 * blocks shared the multiprocessors). Q8_0 and Q4_0 load a step ahead: in two runs of the
 * fifth session's sweeps the best of both products (Q8_0 19.6 -> 19.2 and 18.6 -> 18.2 us,
 * Q4_0 12.5 -> 12.1 and 13.4 -> 12.1 against 2, 2, 2, 0), at 63 and 44 registers. */
template <typename D>
static mv_shape mv_default_of(void)
{
        mv_shape s = { 2, 1, 2, 0 };        /* Q4_K, Q5_K, Q6_K */
        if (D::CHUNK == 32)
                s.prefetch = 1;                 /* Q8_0, Q4_0: 2, 1, 2, 1 */
        return s;
}

static size_t mv_find(const mv_shape &want)
{
        for (size_t i = 0; i < N_MV_SHAPES; i++)
                if (mv_shapes[i].rows == want.rows && mv_shapes[i].unroll == want.unroll &&
                    mv_shapes[i].warps == want.warps && mv_shapes[i].prefetch == want.prefetch)
                        return i;
        return N_MV_SHAPES;
}

/* One column of a quantized type, in the shape g asks for, or where it names none of
 * mv_shapes, the type's own (mv_default_of). */
template <typename D>
static void launch_int8_single(const struct gpu_launch *g, const matvec_args &a, dim3 block)
{
        mv_shape want = { g->mv_rows, g->mv_unroll, g->mv_warps ? g->mv_warps : 1, g->mv_prefetch };
        size_t pick = mv_find(want);
        if (pick == N_MV_SHAPES)
                pick = mv_find(mv_default_of<D>());
        uint32_t rows_per_block = MATVEC_BLOCK_WARPS / mv_shapes[pick].warps * mv_shapes[pick].rows;
        dim3 grid((a.n_rows + rows_per_block - 1) / rows_per_block);
        gpu_launch_kernel(g, int8_single_kernel<D>(pick), grid, block, a);
}

typedef void (*single_fn)(const struct gpu_launch *, const matvec_args &, dim3);

/* vec needs n_in % 8 == 0 for the float types; scalar (float types only) takes any n_in. The
 * quantized types read 8-bit activations (gpu_act_order_of their type is not GPU_ACT_NONE), and
 * have single for one column. */
struct matvec_entry {
        enum rig_type type;
        launch_fn vec, scalar;
        single_fn single;
};

/* Elements a float type's vec kernel takes per chunk. */
#define FLOAT_VEC_CHUNK 8

static const struct matvec_entry matvec_table[] = {
        { RIG_TYPE_F32, launch_cols<float_kernels<dec_f32> >, launch_cols<float_kernels<dec_f32_scalar> >, NULL },
        { RIG_TYPE_F16, launch_cols<float_kernels<dec_f16> >, launch_cols<float_kernels<dec_f16_scalar> >, NULL },
        { RIG_TYPE_BF16, launch_cols<float_kernels<dec_bf16> >, launch_cols<float_kernels<dec_bf16_scalar> >, NULL },
        { RIG_TYPE_Q4_0, launch_cols<int8_kernels<dot_q4_0> >, NULL, launch_int8_single<dot_q4_0> },
        { RIG_TYPE_Q8_0, launch_cols<int8_kernels<dot_q8_0> >, NULL, launch_int8_single<dot_q8_0> },
        { RIG_TYPE_Q4_K, launch_cols<int8_kernels<dot_q4_k> >, NULL, launch_int8_single<dot_q4_k> },
        { RIG_TYPE_Q5_K, launch_cols<int8_kernels<dot_q5_k> >, NULL, launch_int8_single<dot_q5_k> },
        { RIG_TYPE_Q6_K, launch_cols<int8_kernels<dot_q6_k> >, NULL, launch_int8_single<dot_q6_k> },
};

static const struct matvec_entry *matvec_find(enum rig_type type)
{
        for (size_t i = 0; i < sizeof(matvec_table) / sizeof(matvec_table[0]); i++)
                if (matvec_table[i].type == type)
                        return &matvec_table[i];
        return NULL;
}

bool gpu_type_supported(enum rig_type type)
{
        return matvec_find(type) != NULL;
}

/* ---- 8-bit activations ---- */

/* Thread i takes element i of the n_cols x n_in activations. */
__global__ void quantize_act_kernel(const float *x, uint32_t n_in, size_t n, enum gpu_act_order order, int8_t *q,
                                    float2 *ds)
{
        gpu_grid_begin();
        size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
        quantize_act_lanes(i < n ? x[i] : 0.0f, i < n, i, n_in, order, q, ds);
}

void gpu_quantize_act(const struct gpu_launch *g, const float *x, uint32_t n_in, uint32_t n_cols, enum gpu_act_order order,
                      const struct gpu_act *a)
{
        RIG_ASSERT(order != GPU_ACT_NONE && n_in % (order == GPU_ACT_CHUNK32 ? 32 : QK_K) == 0,
                   "8-bit activations of %u elements in order %d", n_in, (int)order);
        size_t n = (size_t)n_in * n_cols;
        if (n == 0)
                return;
        const unsigned threads = 256;
        gpu_launch_kernel(g, quantize_act_kernel, dim3((unsigned)((n + threads - 1) / threads)), dim3(threads), x, n_in, n,
                          order, a->q, a->ds);
}

void gpu_matmul_parts(const struct gpu_launch *g, const struct gpu_matmul_part *parts, uint32_t n_parts, const float *x,
                      const struct gpu_act *act, uint32_t n_cols)
{
        RIG_ASSERT(n_parts >= 1 && n_parts <= GPU_MAX_PARTS, "a matmul of %u weights", n_parts);
        const struct rig_weight *w = &parts[0].w;
        uint32_t n_rows = 0;
        for (uint32_t p = 0; p < n_parts; p++) {
                const struct rig_weight *wp = &parts[p].w;
                RIG_ASSERT(wp->type == w->type && wp->n_in == w->n_in && wp->row_bytes == w->row_bytes,
                           "matmul part %u: type %d, %u columns, stride %zu, not part 0's (%d, %u, %zu)", p,
                           (int)wp->type, wp->n_in, wp->row_bytes, (int)w->type, w->n_in, w->row_bytes);
                RIG_ASSERT(((uintptr_t)wp->data & 15) == 0, "matvec: W %p not 16-byte aligned", wp->data);
                n_rows += wp->n_out;
        }
        const struct matvec_entry *e = matvec_find(w->type);
        RIG_ASSERT(e, "matvec of weight type %d", (int)w->type);
        bool takes_act = gpu_act_order_of(w->type) != GPU_ACT_NONE;
        RIG_ASSERT(takes_act ? act && w->n_in % rig_type_get(w->type)->block_elems == 0 : ((uintptr_t)x & 15) == 0,
                   "matvec of type %d, n_in %u: x %p not 16-byte aligned, or no 8-bit activations", (int)w->type, w->n_in,
                   (const void *)x);
        RIG_ASSERT(w->row_bytes % 16 == 0, "matvec: stride %zu not 16-byte aligned", w->row_bytes);
        uint32_t tiles_from = g->tiles_min_cols ? g->tiles_min_cols : GPU_TILES_MIN_COLS;
        if (takes_act && n_cols >= tiles_from) {
                for (uint32_t p = 0; p < n_parts; p++)  /* reads W once per 64 columns, not per 8 */
                        gpu_matmul_tiles(g, &parts[p], act, n_cols);
                return;
        }
        launch_fn fn = e->vec;
        if (e->scalar && w->n_in % 8 != 0)
                fn = e->scalar;
        if (n_rows == 0)
                return;
        /* Float rows: as many warps per row (up to 4) as leave every lane a chunk — F16 4096x14336
         * went from 40.3 to 33.6 us on the H200. Quantized rows: one warp each, which measured
         * faster there for Q4_K (16.8 vs 17.9 us) and Q8_0 (26.0 vs 27.5); docs/perf.md. */
        uint32_t warps_per_row = 1;
        if (!takes_act) {
                uint32_t n_chunks = fn == e->scalar ? w->n_in : w->n_in / FLOAT_VEC_CHUNK;
                for (warps_per_row = 4; warps_per_row > 1 && n_chunks < warps_per_row * (uint32_t)g->warp_size;)
                        warps_per_row /= 2;
        }
        uint32_t rows_per_block = MATVEC_BLOCK_WARPS / warps_per_row;
        dim3 block(g->warp_size, MATVEC_BLOCK_WARPS);
        dim3 grid((n_rows + rows_per_block - 1) / rows_per_block);
        /* the tensor-core matvec takes up to 16 columns a launch, the others 8 */
        uint32_t step = takes_act ? matvec_mma_max_cols(g, w->type) : 0;
        if (step < GPU_MAX_COLS)
                step = GPU_MAX_COLS;
        for (uint32_t j = 0; j < n_cols; j += step) {
                uint32_t cols = n_cols - j < step ? n_cols - j : step;
                matvec_args a;
                memset(&a, 0, sizeof(a));
                for (uint32_t p = 0; p < n_parts; p++) {
                        a.part[p].w = (const uint8_t *)parts[p].w.data;
                        a.part[p].bias = parts[p].bias;
                        a.part[p].y = parts[p].y + (size_t)j * parts[p].w.n_out;
                        a.part[p].n_out = parts[p].w.n_out;
                        a.part[p].accumulate = parts[p].accumulate;
                }
                a.n_parts = n_parts;
                a.n_rows = n_rows;
                a.stride = w->row_bytes;
                a.n_in = w->n_in;
                a.x = x ? x + (size_t)j * w->n_in : NULL;
                a.xq = act ? act->q + (size_t)j * w->n_in : NULL;
                a.xds = act ? act->ds + (size_t)j * (w->n_in / 32) : NULL;
                a.warps_per_row = warps_per_row;
                if (cols == 1 && e->single)
                        e->single(g, a, block);
                else if (takes_act && matvec_mma_takes(g, w->type, cols))
                        matvec_mma_launch(g, w->type, a, cols);
                else
                        fn(g, a, cols, grid, block);
        }
}

void gpu_matmul(const struct gpu_launch *g, const struct rig_weight *w, const float *x, const struct gpu_act *act,
                uint32_t n_cols, const float *bias, float *y)
{
        struct gpu_matmul_part part = { *w, bias, y, false };
        gpu_matmul_parts(g, &part, 1, x, act, n_cols);
}
