/* matmul_tiles.cu — y[j] = W x[j] for many columns at once (a prompt's tokens, a large batch) for
 * the quantized types: a block takes a tile of TILE_ROWS rows x TILE_COLS columns, so each weight
 * byte is read once per TILE_COLS columns (the matvec kernels read it once per GPU_MAX_COLS).
 *
 * Per step of TILE_K elements the block decodes its rows' chunks into 8-bit levels in shared
 * memory (the decoders of dot_int8.cuh: load(), then levels()), with a scale a and a min m per
 * unit of 32 (Q6_K: 16) elements, copies its columns' 8-bit activations and their scales ds
 * beside them, and takes the integer products there; per unit
 *     dot = a * dx * sum(level * xq) - m * (dx * sum(xq))
 * The products run on tensor cores (mma.sync, NVIDIA sm_80+) or by dp4a (any device, any warp
 * width: that path knows threads only by their index in the block). The next step's global loads
 * are issued into registers before the products of this one, so they are in flight meanwhile.
 *
 * When the tiles are too few to occupy the device (few rows, few columns), K is cut into slices
 * of whole steps, one block per (tile, slice): each writes its partial sums to the scratch of
 * struct gpu_launch, and a second kernel adds the slices in a fixed order (so a graph replay
 * equals plain launches bit for bit), then the bias. */
#include <stdlib.h>
#include <string.h>

#include "dot_int8.cuh"
#include "kernels.h"
#include "layout.h"
#include "mma.cuh"
#include "rig_assert.h"

/* Tile sizes (to be tuned by measurement). TILE_K: elements per step, a multiple of every chunk
 * (32, 64) and of Q6_K's half block (128), so a step's elements are one contiguous range. */
#define TILE_ROWS 128
#define TILE_COLS 64
#define TILE_K 128
#define TILE_THREADS 256
#define TILE_ACC (TILE_ROWS * TILE_COLS / TILE_THREADS)         /* outputs per thread */
/* Blocks per multiprocessor the compiler must leave registers for: 1 lets it take ~190 (sm_90,
 * no spills); 2 caps it at 128, with a few spilled words for some types. */
#ifndef TILE_MIN_BLOCKS                 /* -DTILE_MIN_BLOCKS=2 builds the other for a measurement */
#define TILE_MIN_BLOCKS 1
#endif

/* Words (4 levels) from one row (column) of a staged tile to the next: 4 more than a step's 32,
 * so that the 32 lanes of an mma fragment load (rows g = 0..7, words t = 0..3: bank 4g + t) and
 * the dp4a path's loads fall in distinct banks; a multiple of 4 for 16-byte stores. */
#define TILE_STRIDE (TILE_K / 4 + 4)
#define TILE_MAX_UNITS (TILE_K / 16)

/* The mma path: 8 warps of 32, as 4 (rows) x 2 (columns) warp tiles of 32 x 32, each 2 x 4
 * mma tiles of 16 rows x 8 columns. */
#define MMA_WARP_TILE 32
#define MMA_WARPS_ROWS (TILE_ROWS / MMA_WARP_TILE)

/* The dp4a path: thread t takes rows t / 8 + 32 i (i < 4) and columns t % 8 + 8 j (j < 8). */
#define DP4A_COL_THREADS 8
#define DP4A_ROW_THREADS (TILE_THREADS / DP4A_COL_THREADS)
#define DP4A_ROWS (TILE_ROWS / DP4A_ROW_THREADS)
#define DP4A_COLS (TILE_COLS / DP4A_COL_THREADS)

static_assert(TILE_ACC == DP4A_ROWS * DP4A_COLS, "the dp4a path covers the tile");
static_assert(TILE_ACC == 32 && TILE_THREADS / 32 == MMA_WARPS_ROWS * (TILE_COLS / MMA_WARP_TILE),
              "the mma path: 8 warps of 32 x 32 outputs, 32 per lane");
static_assert(TILE_K % 128 == 0 && TILE_STRIDE % 32 == 4, "step and stride as above");

struct tile_args {
        const uint8_t *w;
        size_t stride;                  /* bytes from one row to the next */
        uint32_t n_in, n_out, n_cols;
        uint32_t slice_steps;           /* steps of TILE_K per K slice (blockIdx.z); all of K: one slice */
        const int8_t *xq;               /* [n_cols][n_in], the chunk order of layout.h */
        const float2 *xds;              /* [n_cols][n_in / 32] */
        const float *bias;              /* [n_out] or NULL (always NULL with more than one slice) */
        float *y;                       /* [slices][n_cols][n_out]: y itself, or the partial sums */
        bool accumulate;                /* y += the product (gpu_matmul_part); false with more than one slice */
};

/* One step's operands in shared memory (40 KB: under the 48 KB of a static allocation); 16-byte
 * aligned for the int4 stores. */
struct alignas(16) tile_smem {
        int w[TILE_ROWS][TILE_STRIDE];          /* the rows' levels, 4 a word, activation order */
        int x[TILE_COLS][TILE_STRIDE];          /* the columns' levels */
        float2 am[TILE_ROWS][TILE_MAX_UNITS];   /* per row and unit: (a, m) */
        float2 ds[TILE_COLS][TILE_MAX_UNITS];   /* per column and unit: (dx, dx * sum xq) */
};

/* How a step of decoder D divides among the threads. */
template <typename D>
struct tile_shape {
        static constexpr uint32_t KC = TILE_K / D::CHUNK;               /* chunks of a row per step */
        static constexpr uint32_t UPC = D::CHUNK / D::UNIT;             /* units per chunk */
        static constexpr uint32_t UNITS = TILE_K / D::UNIT;             /* units per step */
        static constexpr uint32_t XP = D::CHUNK / GPU_PIECE_BYTES;      /* activation pieces per chunk */
        static constexpr uint32_t W_LOADS = TILE_ROWS * KC / TILE_THREADS;              /* (row, chunk) */
        static constexpr uint32_t X_LOADS = TILE_COLS * KC * XP / TILE_THREADS;         /* pieces */
        static constexpr uint32_t DS_LOADS = TILE_COLS * UNITS / TILE_THREADS;          /* (column, unit) */
        static_assert(TILE_ROWS * KC % TILE_THREADS == 0 && TILE_COLS * KC * XP % TILE_THREADS == 0 &&
                              TILE_COLS * UNITS % TILE_THREADS == 0 && UNITS <= TILE_MAX_UNITS,
                      "every thread takes the same number of loads");
};

/* A step's global loads, held in registers until the previous step's products are done. */
template <typename D>
struct tile_loads {
        typename D::W w[tile_shape<D>::W_LOADS];
        int4 x[tile_shape<D>::X_LOADS];
        float2 ds[tile_shape<D>::DS_LOADS];
};

/* Load i of this thread: consecutive threads take consecutive chunks of one row (or piece of
 * one column), which lie side by side in the device layout. */
template <typename D>
struct w_load_at {
        uint32_t row, chunk;            /* in the tile, in the step */
        __device__ w_load_at(uint32_t i)
        {
                uint32_t p = threadIdx.x + i * TILE_THREADS;
                row = p / tile_shape<D>::KC;
                chunk = p % tile_shape<D>::KC;
        }
};

template <typename D>
struct x_load_at {
        uint32_t col, chunk, piece;
        __device__ x_load_at(uint32_t i)
        {
                typedef tile_shape<D> S;
                uint32_t q = threadIdx.x + i * TILE_THREADS;
                chunk = q % S::KC;
                piece = q / S::KC % S::XP;
                col = q / (S::KC * S::XP);
        }
};

template <typename D>
struct ds_load_at {
        uint32_t col, unit;             /* unit of the step: chunk unit / UPC, its unit unit % UPC */
        __device__ ds_load_at(uint32_t i)
        {
                uint32_t e = threadIdx.x + i * TILE_THREADS;
                unit = e % tile_shape<D>::UNITS;
                col = e / tile_shape<D>::UNITS;
        }
};

/* The step whose first chunk is c0 into registers; what lies past the rows, columns or chunks
 * is not read (tile_store writes zeros for it). */
template <typename D>
static __device__ __forceinline__ void tile_load(const tile_args &a, uint32_t row0, uint32_t col0, uint32_t c0,
                                                 tile_loads<D> &l)
{
        typedef tile_shape<D> S;
        uint32_t n_chunks = a.n_in / D::CHUNK;
#pragma unroll
        for (uint32_t i = 0; i < S::W_LOADS; i++) {
                w_load_at<D> at(i);
                uint32_t r = row0 + at.row, c = c0 + at.chunk;
                if (r < a.n_out && c < n_chunks)
                        D::load(a.w + (size_t)r * a.stride, a.n_in, c, place_of(c, n_chunks), l.w[i]);
        }
#pragma unroll
        for (uint32_t i = 0; i < S::X_LOADS; i++) {
                x_load_at<D> at(i);
                uint32_t col = col0 + at.col, c = c0 + at.chunk;
                int4 v = make_int4(0, 0, 0, 0);
                if (col < a.n_cols && c < n_chunks)
                        v = *(const int4 *)(a.xq + (size_t)col * a.n_in +
                                            piece_offset(place_of(c, n_chunks), at.piece, S::XP));
                l.x[i] = v;
        }
#pragma unroll
        for (uint32_t i = 0; i < S::DS_LOADS; i++) {
                ds_load_at<D> at(i);
                uint32_t col = col0 + at.col, c = c0 + at.unit / S::UPC;
                float2 v = make_float2(0.0f, 0.0f);
                if (col < a.n_cols && c < n_chunks)
                        v = a.xds[(size_t)col * (a.n_in / 32) + D::unit_block(c, at.unit % S::UPC)];
                l.ds[i] = v;
        }
}

/* The registers of tile_load into shared memory, the weights decoded to levels; zeros (levels
 * and scales) past the rows or chunks, so the products there add exactly 0. */
template <typename D>
static __device__ __forceinline__ void tile_store(const tile_args &a, uint32_t row0, uint32_t c0, const tile_loads<D> &l,
                                                  tile_smem &s)
{
        typedef tile_shape<D> S;
        uint32_t n_chunks = a.n_in / D::CHUNK;
#pragma unroll
        for (uint32_t i = 0; i < S::W_LOADS; i++) {
                w_load_at<D> at(i);
                int q[D::CHUNK / 4];
                float2 am[S::UPC];
                if (row0 + at.row < a.n_out && c0 + at.chunk < n_chunks) {
                        D::levels(l.w[i], q, am);
                } else {
#pragma unroll
                        for (uint32_t k = 0; k < D::CHUNK / 4; k++)
                                q[k] = 0;
#pragma unroll
                        for (uint32_t u = 0; u < S::UPC; u++)
                                am[u] = make_float2(0.0f, 0.0f);
                }
                int4 *dst = (int4 *)&s.w[at.row][at.chunk * (D::CHUNK / 4)];
#pragma unroll
                for (uint32_t k = 0; k < D::CHUNK / 16; k++)
                        dst[k] = make_int4(q[4 * k], q[4 * k + 1], q[4 * k + 2], q[4 * k + 3]);
#pragma unroll
                for (uint32_t u = 0; u < S::UPC; u++)
                        s.am[at.row][at.chunk * S::UPC + u] = am[u];
        }
#pragma unroll
        for (uint32_t i = 0; i < S::X_LOADS; i++) {
                x_load_at<D> at(i);
                *(int4 *)&s.x[at.col][at.chunk * (D::CHUNK / 4) + at.piece * 4] = l.x[i];
        }
#pragma unroll
        for (uint32_t i = 0; i < S::DS_LOADS; i++) {
                ds_load_at<D> at(i);
                s.ds[at.col][at.unit] = l.ds[i];
        }
}

/* Where output k (0..TILE_ACC-1) of this lane lies in the mma path: k = 4 (4 mi + ni) + e for
 * mma tile (mi, ni) of its warp and element e of the accumulator fragment. */
static __device__ __forceinline__ void mma_place(uint32_t k, uint32_t *row, uint32_t *col)
{
        uint32_t warp = threadIdx.x / 32, lane = threadIdx.x % 32, g = lane / 4, t = lane % 4;
        uint32_t mi = k / 16, ni = k / 4 % 4, e = k % 4;
        *row = warp % MMA_WARPS_ROWS * MMA_WARP_TILE + 16 * mi + g + 8 * (e / 2);
        *col = warp / MMA_WARPS_ROWS * MMA_WARP_TILE + 8 * ni + 2 * t + e % 2;
}

template <typename D>
static __device__ __forceinline__ void tile_products_mma(const tile_smem &s, float *acc)
{
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 800
        constexpr uint32_t A_REGS = D::UNIT / 8, B_REGS = D::UNIT / 16;
        uint32_t warp = threadIdx.x / 32, lane = threadIdx.x % 32, g = lane / 4, t = lane % 4;
        uint32_t r0 = warp % MMA_WARPS_ROWS * MMA_WARP_TILE, c0 = warp / MMA_WARPS_ROWS * MMA_WARP_TILE;
#pragma unroll 1        /* one unit at a time: unrolled, the next units' loads take registers */
        for (uint32_t u = 0; u < tile_shape<D>::UNITS; u++) {
                uint32_t kw = u * (D::UNIT / 4);
                int a[2][A_REGS], b[4][B_REGS];
                float2 am[2][2], ds[4][2];
#pragma unroll
                for (uint32_t mi = 0; mi < 2; mi++) {
                        uint32_t r = r0 + 16 * mi + g;
                        a[mi][0] = s.w[r][kw + t];
                        a[mi][1] = s.w[r + 8][kw + t];
                        if (A_REGS == 4) {
                                a[mi][A_REGS - 2] = s.w[r][kw + 4 + t];
                                a[mi][A_REGS - 1] = s.w[r + 8][kw + 4 + t];
                        }
                        am[mi][0] = s.am[r][u];
                        am[mi][1] = s.am[r + 8][u];
                }
#pragma unroll
                for (uint32_t ni = 0; ni < 4; ni++) {
                        uint32_t c = c0 + 8 * ni;
                        b[ni][0] = s.x[c + g][kw + t];
                        if (B_REGS == 2)
                                b[ni][B_REGS - 1] = s.x[c + g][kw + 4 + t];
                        ds[ni][0] = s.ds[c + 2 * t][u];
                        ds[ni][1] = s.ds[c + 2 * t + 1][u];
                }
#pragma unroll
                for (uint32_t mi = 0; mi < 2; mi++) {
#pragma unroll
                        for (uint32_t ni = 0; ni < 4; ni++) {
                                int sum[4];
                                mma_unit<D::UNIT>(a[mi], b[ni], sum);
                                float *o = acc + 4 * (4 * mi + ni);
#pragma unroll
                                for (uint32_t e = 0; e < 4; e++)
                                        o[e] = unit_dot<D::HAS_MIN>(o[e], am[mi][e / 2], ds[ni][e % 2], sum[e]);
                        }
                }
        }
#elif defined(__CUDA_ARCH__)
        __trap();       /* the host takes this path on sm_80 and later only */
#endif
}

/* ---- dp4a: any device, any warp width ---- */

static __device__ __forceinline__ void dp4a_place(uint32_t k, uint32_t *row, uint32_t *col)
{
        *row = threadIdx.x / DP4A_COL_THREADS + DP4A_ROW_THREADS * (k / DP4A_COLS);
        *col = threadIdx.x % DP4A_COL_THREADS + DP4A_COL_THREADS * (k % DP4A_COLS);
}

template <typename D>
static __device__ __forceinline__ void tile_products_dp4a(const tile_smem &s, float *acc)
{
        uint32_t tr = threadIdx.x / DP4A_COL_THREADS, tc = threadIdx.x % DP4A_COL_THREADS;
        for (uint32_t u = 0; u < tile_shape<D>::UNITS; u++) {
                uint32_t kw = u * (D::UNIT / 4);
                int sum[DP4A_ROWS][DP4A_COLS] = {};
#pragma unroll
                for (uint32_t k = 0; k < D::UNIT / 4; k++) {
                        int rw[DP4A_ROWS], cw[DP4A_COLS];
#pragma unroll
                        for (uint32_t i = 0; i < DP4A_ROWS; i++)
                                rw[i] = s.w[tr + DP4A_ROW_THREADS * i][kw + k];
#pragma unroll
                        for (uint32_t j = 0; j < DP4A_COLS; j++)
                                cw[j] = s.x[tc + DP4A_COL_THREADS * j][kw + k];
#pragma unroll
                        for (uint32_t i = 0; i < DP4A_ROWS; i++)
#pragma unroll
                                for (uint32_t j = 0; j < DP4A_COLS; j++)
                                        sum[i][j] = gpu_dp4a(rw[i], cw[j], sum[i][j]);
                }
#pragma unroll
                for (uint32_t i = 0; i < DP4A_ROWS; i++) {
                        float2 am = s.am[tr + DP4A_ROW_THREADS * i][u];
#pragma unroll
                        for (uint32_t j = 0; j < DP4A_COLS; j++)
                                acc[DP4A_COLS * i + j] = unit_dot<D::HAS_MIN>(acc[DP4A_COLS * i + j], am,
                                                                  s.ds[tc + DP4A_COL_THREADS * j][u], sum[i][j]);
                }
        }
}

/* ---- the kernel ---- */

/* The tile's sums into slice blockIdx.z of a.y. */
template <bool MMA>
static __device__ __forceinline__ void tile_write(const tile_args &a, uint32_t row0, uint32_t col0, const float *acc)
{
        float *y = a.y + (size_t)blockIdx.z * a.n_cols * a.n_out;
#pragma unroll
        for (uint32_t k = 0; k < TILE_ACC; k++) {
                uint32_t row, col;
                if (MMA)
                        mma_place(k, &row, &col);
                else
                        dp4a_place(k, &row, &col);
                row += row0;
                col += col0;
                if (row >= a.n_out || col >= a.n_cols)
                        continue;
                float v = a.bias ? acc[k] + a.bias[row] : acc[k];
                float *out = y + (size_t)col * a.n_out + row;
                *out = a.accumulate ? *out + v : v;
        }
}

/* Block (x, y, z): rows 128 x .. 128 x + 127, columns 64 y .. 64 y + 63, steps
 * z slice_steps .. (z + 1) slice_steps - 1 of K. */
template <typename D, bool MMA>
__global__ void __launch_bounds__(TILE_THREADS, TILE_MIN_BLOCKS) matmul_tiles_kernel(tile_args a)
{
        gpu_grid_begin();
        typedef tile_shape<D> S;
        __shared__ tile_smem s;
        uint32_t row0 = blockIdx.x * TILE_ROWS, col0 = blockIdx.y * TILE_COLS;
        uint32_t n_steps = (a.n_in / D::CHUNK + S::KC - 1) / S::KC;
        uint32_t first = blockIdx.z * a.slice_steps;    /* < n_steps: the host leaves no slice empty */
        uint32_t end = n_steps - first < a.slice_steps ? n_steps : first + a.slice_steps;
        float acc[TILE_ACC] = {};
        tile_loads<D> l;
        tile_load<D>(a, row0, col0, first * S::KC, l);
        for (uint32_t step = first; step < end; step++) {
                tile_store<D>(a, row0, step * S::KC, l, s);
                __syncthreads();
                if (step + 1 < end)
                        tile_load<D>(a, row0, col0, (step + 1) * S::KC, l);
                if (MMA)
                        tile_products_mma<D>(s, acc);
                else
                        tile_products_dp4a<D>(s, acc);
                __syncthreads();        /* every product read s before the next store */
        }
        tile_write<MMA>(a, row0, col0, acc);
}

/* y[i] = the sum of the n_slices partial sums part[k][i], k = 0, 1, ... in order, + bias[row]
 * (y[i] += that, with accumulate); i = col * n_out + row < n. */
static __global__ void tile_sum_slices(const float *part, uint32_t n_slices, size_t n, uint32_t n_out,
                                       const float *bias, bool accumulate, float *y)
{
        gpu_grid_begin();
        size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
        if (i >= n)
                return;
        float sum = part[i];
        for (uint32_t k = 1; k < n_slices; k++)
                sum += part[k * n + i];
        float v = bias ? sum + bias[i % n_out] : sum;
        y[i] = accumulate ? y[i] + v : v;
}

/* ---- host ---- */

/* K slices. A block of this kernel keeps a multiprocessor to itself (TILE_MIN_BLOCKS: its
 * registers leave room for no other) and its time is about proportional to its steps, whatever
 * the other multiprocessors do (H200, 4096 x 14336: 32 blocks of 112 steps take 332 us, 256
 * take 669 us). So a grid takes waves x steps per block, a wave being the blocks the device runs
 * at once; the split picks the slices that minimize it, among those with:
 *   - at least TILE_SPLIT_MIN_STEPS steps a slice: each block adds about one step of its own
 *     (its first loads, overlapped with nothing, and its writes), and each slice a round trip of
 *     the partial sums;
 *   - at most about TILE_SPLIT_WAVES waves of blocks: beyond, more slices only trade waves for
 *     steps; and no split at all from TILE_SPLIT_WAVES waves of tiles on;
 *   - the partial sums within the scratch.
 * A slice is whole steps, and may begin at any: a step is whole chunks, and a decoder finds the
 * scales of a chunk from its index (a Q4_K..Q6_K super-block of 256 spans two steps). */
#define TILE_SPLIT_MIN_STEPS 4
#define TILE_SPLIT_WAVES 2
#define TILE_SUM_THREADS 256

/* What a grid of n_tiles tiles of n_steps steps, slice_steps to a slice, costs: waves (of
 * per_wave blocks) x (steps of a block + the block's own, about one). */
static uint64_t tile_split_cost(uint32_t n_tiles, uint32_t n_steps, uint32_t slice_steps, uint32_t per_wave)
{
        uint64_t blocks = (uint64_t)n_tiles * ((n_steps + slice_steps - 1) / slice_steps);
        return (blocks + per_wave - 1) / per_wave * (slice_steps + 1);
}

/* Steps of TILE_K a K slice takes for n_tiles tiles of n_steps steps and n_outputs outputs
 * (n_cols x n_out); n_steps for no split. The slices are then n_steps / slice_steps, rounded up,
 * none empty. */
static uint32_t tile_slice_steps(const struct gpu_launch *g, uint32_t n_tiles, uint32_t n_steps, size_t n_outputs)
{
        if (g->n_sm <= 0 || n_steps < 2 * TILE_SPLIT_MIN_STEPS || g->split_ws_floats / n_outputs < 2)
                return n_steps;
        uint32_t per_wave = TILE_MIN_BLOCKS * (uint32_t)g->n_sm;
        if (n_tiles >= TILE_SPLIT_WAVES * per_wave)
                return n_steps;
        size_t max_slices = n_steps / TILE_SPLIT_MIN_STEPS;
        if (max_slices > g->split_ws_floats / n_outputs)
                max_slices = g->split_ws_floats / n_outputs;
        if (max_slices > (TILE_SPLIT_WAVES * per_wave + n_tiles - 1) / n_tiles)
                max_slices = (TILE_SPLIT_WAVES * per_wave + n_tiles - 1) / n_tiles;
        uint32_t best = n_steps;
        uint64_t best_cost = tile_split_cost(n_tiles, n_steps, n_steps, per_wave);
        for (uint32_t slices = 2; slices <= max_slices; slices++) {
                uint32_t steps = (n_steps + slices - 1) / slices;
                uint64_t cost = tile_split_cost(n_tiles, n_steps, steps, per_wave);
                if (cost < best_cost) {         /* ties: fewer slices, less partial-sum traffic */
                        best = steps;
                        best_cost = cost;
                }
        }
        return best;
}

/* y[n_outputs] = the sum of the n_slices partial sums in g->split_ws, + bias (added to y, with
 * accumulate). */
static void tile_sum_launch(const struct gpu_launch *g, uint32_t n_slices, size_t n_outputs, uint32_t n_out,
                            const float *bias, bool accumulate, float *y)
{
        unsigned blocks = (unsigned)((n_outputs + TILE_SUM_THREADS - 1) / TILE_SUM_THREADS);
        gpu_launch_kernel(g, tile_sum_slices, dim3(blocks), dim3(TILE_SUM_THREADS), g->split_ws, n_slices, n_outputs,
                          n_out, bias, accumulate, y);
}

typedef void (*tile_launch_fn)(const struct gpu_launch *, const tile_args &, dim3);

template <typename D, bool MMA>
static void tile_launch(const struct gpu_launch *g, const tile_args &a, dim3 grid)
{
        gpu_launch_kernel(g, matmul_tiles_kernel<D, MMA>, grid, dim3(TILE_THREADS), a);
}

/* The mma instances exist where the vendor has mma.sync (not for HIP). */
#if GPU_HAS_MMA_SYNC
#define TILE_MMA(D) tile_launch<D, true>
#else
#define TILE_MMA(D) NULL
#endif

struct tile_entry {
        enum rig_type type;
        tile_launch_fn mma, dp4a;
};

static const struct tile_entry tile_table[] = {
        { RIG_TYPE_Q4_0, TILE_MMA(dot_q4_0), tile_launch<dot_q4_0, false> },
        { RIG_TYPE_Q8_0, TILE_MMA(dot_q8_0), tile_launch<dot_q8_0, false> },
        { RIG_TYPE_Q4_K, TILE_MMA(dot_q4_k), tile_launch<dot_q4_k, false> },
        { RIG_TYPE_Q5_K, TILE_MMA(dot_q5_k), tile_launch<dot_q5_k, false> },
        { RIG_TYPE_Q6_K, TILE_MMA(dot_q6_k), tile_launch<dot_q6_k, false> },
};

bool gpu_takes_mma(const struct gpu_launch *g)
{
        const char *env = getenv("RIG_GPU_MMA");
        return GPU_HAS_MMA_SYNC && g->cc_major >= 8 && !(env && strcmp(env, "0") == 0);
}

void gpu_matmul_tiles(const struct gpu_launch *g, const struct gpu_matmul_part *part, const struct gpu_act *act,
                      uint32_t n_cols)
{
        const struct rig_weight *w = &part->w;
        const struct tile_entry *e = NULL;
        for (size_t i = 0; i < sizeof(tile_table) / sizeof(tile_table[0]); i++)
                if (tile_table[i].type == w->type)
                        e = &tile_table[i];
        RIG_ASSERT(e && act && w->n_in % rig_type_get(w->type)->block_elems == 0,
                   "tiled matmul of type %d, n_in %u (a quantized type, n_in a multiple of its block, 8-bit x)",
                   (int)w->type, w->n_in);
        RIG_ASSERT(((uintptr_t)w->data & 15) == 0 && w->row_bytes % 16 == 0 && ((uintptr_t)act->q & 15) == 0,
                   "tiled matmul: W %p, stride %zu, activations %p not 16-byte aligned", w->data, w->row_bytes,
                   (const void *)act->q);
        if (w->n_out == 0 || n_cols == 0)
                return;
        tile_args a;
        a.w = (const uint8_t *)w->data;
        a.stride = w->row_bytes;
        a.n_in = w->n_in;
        a.n_out = w->n_out;
        a.n_cols = n_cols;
        a.xq = act->q;
        a.xds = act->ds;
        a.bias = part->bias;
        a.y = part->y;
        a.accumulate = part->accumulate;
        dim3 grid((w->n_out + TILE_ROWS - 1) / TILE_ROWS, (n_cols + TILE_COLS - 1) / TILE_COLS);
        uint32_t n_steps = (w->n_in + TILE_K - 1) / TILE_K;
        size_t n_outputs = (size_t)n_cols * w->n_out;
        a.slice_steps = tile_slice_steps(g, grid.x * grid.y, n_steps, n_outputs);
        grid.z = n_steps > a.slice_steps ? (n_steps + a.slice_steps - 1) / a.slice_steps : 1;
        if (grid.z > 1) {
                a.bias = NULL;          /* added once, by the sum */
                a.y = g->split_ws;
                a.accumulate = false;
        }
        tile_launch_fn fn = e->mma && gpu_takes_mma(g) ? e->mma : e->dp4a;
        fn(g, a, grid);
        if (grid.z > 1)
                tile_sum_launch(g, grid.z, n_outputs, w->n_out, part->bias, part->accumulate, part->y);
}
