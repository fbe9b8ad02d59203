/* matvec_mma.cu — y[j] = W x[j] of a quantized type for 2 to 8 columns (a few sequences decoding
 * together) on tensor cores, so that 8 columns cost less than twice what one does: the weights
 * are read once either way, and the products of 8 columns by dp4a (matvec.cu) take each weight
 * word 8 times through the integer units and each activation word once per row.
 *
 * A warp takes 16 rows: an mma.sync tile of 16 rows x 8 columns (mma.cuh). The warps of a block
 * share those rows and split the chunks of K between them (a warp per 16 rows alone would leave
 * 4096 rows 256 warps, two a multiprocessor: too few loads in flight), and add their sums at the
 * end. Per step a warp takes 4 consecutive chunks of its rows: lane t of each quad (lanes 4g ..
 * 4g + 3) loads chunk c0 + t of rows g and g + 8 with the decoders of dot_int8.cuh (load(), then
 * levels(): the chunk's levels as words in the order of its activations and each unit's scales),
 * and of column g that chunk's activations and scales, so every load is a whole 16-byte piece
 * and the warp's loads are as contiguous as matvec.cu's. An mma fragment wants the opposite: for
 * each chunk, lane t holds words t, t + 4, ... of rows g and g + 8. So the warp stages the
 * decoded step in shared memory (struct mmv_stage) and takes the fragments from there with
 * ldmatrix, the scales with plain loads.
 *
 * Measured on an H200 (docs/perf.md): first with the fragments exchanged by shuffles in each
 * quad (880 instructions a step, 40 us for 8 columns of 4096 x 14336), then staged (450, 27 us).
 * What bounds it now is how many steps are in flight: one a warp, 15 warps a multiprocessor
 * (the registers and the 256 tiles of 4096 rows allow no more).
 *
 * NVIDIA sm_80 and later only; elsewhere matvec.cu takes these products. */
#include "dot_int8.cuh"
#include "kernels.h"
#include "layout.h"
#include "matvec.cuh"
#include "mma.cuh"
#include "rig_assert.h"

#if GPU_HAS_MMA_SYNC

/* Rows of a warp (an mma tile), and chunks of a step (a quad's lanes). */
#define MMV_ROWS 16
#define MMV_STEP_CHUNKS 4
/* Most warps a block of one tile that mma_warps chooses (16, RIG_GPU_MMV=16, is for measuring: at
 * 60-130 registers a thread and 4-9 KB of stage a warp a multiprocessor holds one such block of
 * the K types, so 256 tiles take two waves). */
#define MMV_MAX_WARPS 8

/* Blocks of WARPS warps a multiprocessor must hold (the compiler keeps the registers under what
 * that leaves): 2 of 8 warps, so that 256 tiles (4096 rows) are one wave even with 16 columns
 * (left alone, the compiler took 161-167 registers for them: one block a multiprocessor); 2 of
 * 16 (64 registers: Q8_0 and Q4_0 without spills) for the measurements of RIG_GPU_MMV=16. */
#define MMV_MIN_BLOCKS(warps) ((warps) >= 8 ? 2 : 1)

/* What a warp stages of a step in shared memory, and where: the levels of its 16 rows (4 chunks
 * each, in activation order), those of its 8 or 16 columns, and the units' scales of both. Laid out
 * so that no access has two lanes on one bank (they would wait for each other):
 *  - a row of levels is padded by 16 bytes, so that ldmatrix's 8 rows of 16 bytes fall in
 *    distinct banks;
 *  - with 4 pieces a chunk (64 elements), chunk e's piece j lies in place j ^ (e & 2), so that the
 *    8 lanes of a 16-byte store (chunks 0..3 of two rows) do too (chunks 0 and 2 of a row are
 *    128 bytes apart);
 *  - the scales of a row (column) are padded by one pair, so that the 8 rows (4 columns) a
 *    warp reads at once fall in distinct banks. */
template <typename D, int NT>
struct mmv_stage {
        static constexpr uint32_t QUADS = D::CHUNK / 16, UNITS = D::CHUNK / D::UNIT;
        static constexpr uint32_t ROW_BYTES = MMV_STEP_CHUNKS * D::CHUNK + 16;
        static constexpr uint32_t SCALES = MMV_STEP_CHUNKS * UNITS + 1;         /* pairs a row (column) */
        static constexpr uint32_t W_BYTES = MMV_ROWS * ROW_BYTES, X_BYTES = 8 * NT * ROW_BYTES;
        static constexpr uint32_t AM_BYTES = MMV_ROWS * SCALES * sizeof(float2);
        static constexpr uint32_t DS_BYTES = (8 * NT * SCALES * sizeof(float2) + 15) / 16 * 16;
        static constexpr uint32_t BYTES = W_BYTES + X_BYTES + AM_BYTES + DS_BYTES;
        static_assert(BYTES % 16 == 0 && (W_BYTES + X_BYTES + AM_BYTES) % 16 == 0, "16-byte aligned parts");
        uint8_t *w, *x;                 /* [row][chunk][CHUNK levels], [column][chunk][CHUNK levels] */
        float2 *am, *ds;                /* [row][SCALES], [column][SCALES]: chunk e's unit u at UNITS e + u */

        __device__ __forceinline__ mmv_stage(uint8_t *base)
        {
                w = base;
                x = base + W_BYTES;
                am = (float2 *)(x + X_BYTES);
                ds = (float2 *)((uint8_t *)am + AM_BYTES);
        }

        /* Byte offset of piece j of chunk e in a row (column) of levels. */
        static __device__ __forceinline__ uint32_t piece_at(uint32_t e, uint32_t j)
        {
                return e * D::CHUNK + 16 * (QUADS == 4 ? j ^ (e & 2) : j);
        }
};

static __device__ __forceinline__ uint32_t shared_address(const void *p)
{
        return (uint32_t)__cvta_generic_to_shared(p);
}

/* Four 8 x 16-byte matrices from shared memory (lanes 8i .. 8i + 7 name the rows of matrix i):
 * r[i] is word t of row g of matrix i — an mma fragment's layout. */
static __device__ __forceinline__ void ldmatrix_x4(uint32_t address, int *r)
{
        asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0, %1, %2, %3}, [%4];"
                     : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
                     : "r"(address));
}

static __device__ __forceinline__ void ldmatrix_x2(uint32_t address, int *r)
{
        asm volatile("ldmatrix.sync.aligned.m8n8.x2.shared.b16 {%0, %1}, [%2];" : "=r"(r[0]), "=r"(r[1]) : "r"(address));
}

/* Where column g + 8 nt (nt < NT) of the launch is: a column past n_cols reads the last one
 * instead (no branch at each load), whose outputs are not stored. */
template <int NT>
struct mmv_columns {
        const int8_t *xq[NT];
        const float2 *xds[NT];

        __device__ __forceinline__ mmv_columns(const matvec_args &a, uint32_t n_cols)
        {
                uint32_t last = n_cols - 1;
#pragma unroll
                for (int nt = 0; nt < NT; nt++) {
                        uint32_t col = threadIdx.x / 4 + 8 * nt;
                        col = col < last ? col : last;
                        xq[nt] = a.xq + (size_t)col * a.n_in;
                        xds[nt] = a.xds + (size_t)col * (a.n_in / 32);
                }
        }
};

/* What one lane loads for a step, in registers: chunk c0 + t (or the last chunk where that is
 * past the end: loaded, not used) of rows g and g + 8, and of columns g + 8 nt that chunk's
 * activations and its units' scales. */
template <typename D, int NT>
struct mmv_loads {
        static constexpr uint32_t QUADS = D::CHUNK / 16, UNITS = D::CHUNK / D::UNIT;
        typename D::W w[2];
        int4 x[NT][QUADS];
        float2 ds[NT][UNITS];

        __device__ __forceinline__ void load(const uint8_t *const *wr, const mmv_columns<NT> &cols, uint32_t n_in,
                                             uint32_t c0)
        {
                uint32_t n_chunks = n_in / D::CHUNK, t = threadIdx.x % 4;
                uint32_t c = c0 + t < n_chunks ? c0 + t : n_chunks - 1;
                chunk_place at = place_of(c, n_chunks);
#pragma unroll
                for (int h = 0; h < 2; h++)
                        D::load(wr[h], n_in, c, at, w[h]);
                uint32_t b = D::unit_block(c, 0);      /* the units are consecutive blocks */
#pragma unroll
                for (int nt = 0; nt < NT; nt++) {
#pragma unroll
                        for (uint32_t j = 0; j < QUADS; j++)
                                x[nt][j] = *(const int4 *)(cols.xq[nt] + piece_offset(at, j, QUADS));
#pragma unroll
                        for (uint32_t u = 0; u < UNITS; u++)
                                ds[nt][u] = cols.xds[nt][b + u];
                }
        }

        /* Into the warp's stage: decoded to levels and scales. */
        __device__ __forceinline__ void stage(const mmv_stage<D, NT> &s) const
        {
                uint32_t g = threadIdx.x / 4, t = threadIdx.x % 4;
#pragma unroll
                for (int h = 0; h < 2; h++) {
                        int q[D::CHUNK / 4];
                        float2 am[UNITS];
                        D::levels(w[h], q, am);
                        uint32_t row = g + 8 * h;
#pragma unroll
                        for (uint32_t j = 0; j < QUADS; j++)
                                *(int4 *)(s.w + row * s.ROW_BYTES + s.piece_at(t, j)) =
                                        make_int4(q[4 * j], q[4 * j + 1], q[4 * j + 2], q[4 * j + 3]);
#pragma unroll
                        for (uint32_t u = 0; u < UNITS; u++)
                                s.am[row * s.SCALES + t * UNITS + u] = am[u];
                }
#pragma unroll
                for (int nt = 0; nt < NT; nt++) {
                        uint32_t col = g + 8 * nt;
#pragma unroll
                        for (uint32_t j = 0; j < QUADS; j++)
                                *(int4 *)(s.x + col * s.ROW_BYTES + s.piece_at(t, j)) = x[nt][j];
#pragma unroll
                        for (uint32_t u = 0; u < UNITS; u++)
                                s.ds[col * s.SCALES + t * UNITS + u] = ds[nt][u];
                }
        }
};

/* Adds to acc[nt] (outputs (row g, column 8 nt + 2t), (g, 8 nt + 2t + 1), (g + 8, 8 nt + 2t),
 * (g + 8, 8 nt + 2t + 1)) the products of chunk e of the staged step. */
template <typename D, int NT>
static __device__ __forceinline__ void mma_chunk(const mmv_stage<D, NT> &s, uint32_t e, float (*acc)[4])
{
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 800
        constexpr uint32_t QUADS = D::CHUNK / 16, UNITS = D::CHUNK / D::UNIT, QPU = D::UNIT / 16;
        uint32_t lane = threadIdx.x, g = lane / 4, t = lane % 4;
        /* B of each 8 columns: lane i names row i % 8 (column) of matrix i / 8 (quad) */
        int b[NT][QUADS];
#pragma unroll
        for (int nt = 0; nt < NT; nt++) {
                uint32_t xa = shared_address(s.x + (8 * nt + lane % 8) * s.ROW_BYTES + s.piece_at(e, lane / 8 % QUADS));
                if (QUADS == 4)
                        ldmatrix_x4(xa, b[nt]);
                else
                        ldmatrix_x2(xa, b[nt]);
        }
        /* A, two quads at a time: matrices (rows 0-7, quad 2p), (rows 8-15, 2p), (0-7, 2p + 1),
         * (8-15, 2p + 1): one k32 unit (A[g][t], A[g + 8][t], A[g][4 + t], A[g + 8][4 + t]), or
         * two k16 units */
        const uint8_t *wa = s.w + (lane % 16) * s.ROW_BYTES;
#pragma unroll
        for (uint32_t p = 0; p < QUADS / 2; p++) {
                int a[4];
                ldmatrix_x4(shared_address(wa + s.piece_at(e, 2 * p + lane / 16)), a);
#pragma unroll
                for (uint32_t k = 0; k < 2 / QPU; k++) {
                        uint32_t u = 2 * p / QPU + k;
                        float2 r0 = s.am[g * s.SCALES + e * UNITS + u], r1 = s.am[(g + 8) * s.SCALES + e * UNITS + u];
#pragma unroll
                        for (int nt = 0; nt < NT; nt++) {
                                int fb[2] = { b[nt][QPU * u], b[nt][QPU * u + QPU - 1] };
                                int sum[4];
                                mma_unit<D::UNIT>(a + 2 * k, fb, sum);
                                float2 d0 = s.ds[(8 * nt + 2 * t) * s.SCALES + e * UNITS + u];
                                float2 d1 = s.ds[(8 * nt + 2 * t + 1) * s.SCALES + e * UNITS + u];
                                acc[nt][0] = unit_dot<D::HAS_MIN>(acc[nt][0], r0, d0, sum[0]);
                                acc[nt][1] = unit_dot<D::HAS_MIN>(acc[nt][1], r0, d1, sum[1]);
                                acc[nt][2] = unit_dot<D::HAS_MIN>(acc[nt][2], r1, d0, sum[2]);
                                acc[nt][3] = unit_dot<D::HAS_MIN>(acc[nt][3], r1, d1, sum[3]);
                        }
                }
        }
#endif
}

/* Each step's loads are issued once the step before is staged, before its products: in flight
 * meanwhile, in the registers the staged step has left (measured on an H200: 1-3 us faster than
 * loading each step after the one before, docs/perf.md). */
template <typename D, int WARPS, int NT>
__global__ void GPU_LAUNCH_BOUNDS(WARPS * 32, MMV_MIN_BLOCKS(WARPS)) matvec_mma_kernel(matvec_args a, uint32_t n_cols)
{
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 800
        gpu_grid_begin();
        extern __shared__ __align__(16) uint8_t mmv_shared[];
        constexpr uint32_t STRIDE = MMV_STEP_CHUNKS * WARPS;
        uint32_t lane = threadIdx.x, g = lane / 4, t = lane % 4, row0 = blockIdx.x * MMV_ROWS;
        uint32_t n_chunks = a.n_in / D::CHUNK;
        const uint8_t *wr[2];
#pragma unroll
        for (int h = 0; h < 2; h++) {   /* a row past the end reads the last one again, unused */
                uint32_t row = row0 + g + 8 * h;
                wr[h] = target_of(a, row < a.n_rows ? row : a.n_rows - 1).w;
        }
        mmv_columns<NT> cols(a, n_cols);
        mmv_stage<D, NT> s(mmv_shared + threadIdx.y * mmv_stage<D, NT>::BYTES);
        float acc[NT][4] = {};
        mmv_loads<D, NT> step;
        uint32_t c0 = MMV_STEP_CHUNKS * threadIdx.y;
        if (c0 < n_chunks)
                step.load(wr, cols, a.n_in, c0);
        for (; c0 < n_chunks; c0 += STRIDE) {
                __syncwarp();           /* the step before has read the stage */
                step.stage(s);
                if (c0 + STRIDE < n_chunks)
                        step.load(wr, cols, a.n_in, c0 + STRIDE);
                __syncwarp();
#pragma unroll
                for (uint32_t e = 0; e < MMV_STEP_CHUNKS; e++) {
                        if (c0 + e >= n_chunks)         /* the same for the whole warp */
                                break;
                        mma_chunk<D, NT>(s, e, acc);
                }
        }
        if (WARPS > 1) {
                __syncthreads();        /* every warp done with its stage: the sums go there */
                float4 *part = (float4 *)mmv_shared;
#pragma unroll
                for (int nt = 0; nt < NT; nt++)
                        part[(threadIdx.y * NT + nt) * 32 + lane] = make_float4(acc[nt][0], acc[nt][1], acc[nt][2],
                                                                                acc[nt][3]);
                __syncthreads();
                if (threadIdx.y != 0)
                        return;
                for (int w = 1; w < WARPS; w++)
#pragma unroll
                        for (int nt = 0; nt < NT; nt++) {
                                float4 p = part[(w * NT + nt) * 32 + lane];
                                acc[nt][0] += p.x;
                                acc[nt][1] += p.y;
                                acc[nt][2] += p.z;
                                acc[nt][3] += p.w;
                        }
        }
#pragma unroll
        for (int nt = 0; nt < NT; nt++)
#pragma unroll
                for (int k = 0; k < 4; k++) {
                        uint32_t row = row0 + g + 8 * (k / 2), col = 8 * nt + 2 * t + k % 2;
                        if (row < a.n_rows && col < n_cols)
                                store_target(target_of(a, row), col, acc[nt][k]);
                }
#endif
}

typedef void (*mma_kernel_fn)(matvec_args, uint32_t);

/* An instance of the kernel, allowed the shared memory its warps stage in (over the 48 KB a
 * kernel gets unasked from 6 warps on), once. */
template <typename D, int WARPS, int NT>
static mma_kernel_fn mma_instance(void)
{
        static bool is_ready;           /* a race sets the same attribute twice: harmless */
        mma_kernel_fn fn = matvec_mma_kernel<D, WARPS, NT>;
        if (!is_ready)
                cudaFuncSetAttribute(fn, cudaFuncAttributeMaxDynamicSharedMemorySize, WARPS * mmv_stage<D, NT>::BYTES);
        is_ready = true;
        return fn;
}

/* Launches D's instance for 1, 2, 4, 8 or 16 warps a block and NT tiles of 8 columns. */
template <typename D, int NT>
static void mma_launch(const struct gpu_launch *g, const matvec_args &a, uint32_t n_cols, uint32_t n_tiles, uint32_t warps)
{
        mma_kernel_fn fn;
        switch (warps) {
        case 1: fn = mma_instance<D, 1, NT>(); break;
        case 2: fn = mma_instance<D, 2, NT>(); break;
        case 4: fn = mma_instance<D, 4, NT>(); break;
        case 8: fn = mma_instance<D, 8, NT>(); break;
        default: fn = mma_instance<D, 16, NT>(); break;
        }
        gpu_launch_kernel_shared(g, fn, dim3(n_tiles), dim3(32, warps), warps * mmv_stage<D, NT>::BYTES, a, n_cols);
}

/* Warps a block: the fewest that give the device about 16 warps a multiprocessor (so that enough
 * loads are in flight), each warp 2 steps or more; g->mmv_warps when set (RIG_GPU_MMV). */
static uint32_t mma_warps(const struct gpu_launch *g, uint32_t n_tiles, uint32_t n_chunks)
{
        if (g->mmv_warps)
                return g->mmv_warps;
        uint32_t n_steps = (n_chunks + MMV_STEP_CHUNKS - 1) / MMV_STEP_CHUNKS, warps = 1;
        while (warps < MMV_MAX_WARPS && (size_t)n_tiles * warps < (size_t)g->n_sm * 16 && 2 * warps * 2 <= n_steps)
                warps *= 2;
        return warps;
}

/* The launch of D's product: its block size, and two tiles of columns for units of 32 only (Q6_K
 * takes 8 columns a launch, mma_table), so that no instance of it is built unused. */
template <typename D>
static void mma_launch(const struct gpu_launch *g, const matvec_args &a, uint32_t n_cols)
{
        uint32_t n_tiles = (a.n_rows + MMV_ROWS - 1) / MMV_ROWS;
        uint32_t warps = mma_warps(g, n_tiles, a.n_in / D::CHUNK);
        if (n_cols > 8)
                mma_launch<D, D::UNIT == 32 ? 2 : 1>(g, a, n_cols, n_tiles, warps);
        else
                mma_launch<D, 1>(g, a, n_cols, n_tiles, warps);
}

/* The types this kernel takes, and from how many columns to how many a launch. This kernel's
 * time hardly depends on the columns (all 8 of an mma tile are computed), matvec.cu's grows
 * with each: measured on an H200 (docs/perf.md, 4096 x 14336 and 14336 x 4096), the K types
 * are faster here from 3 columns, Q8_0 and Q4_0 from 5. Q6_K takes 8 a launch: with 16 (4 units
 * of 16 elements a chunk, each a pair of scales a column) its next step's loads did not fit the
 * registers of two blocks a multiprocessor, and the spilled instance was slower than two
 * launches of 8 (68.8 against 2 x 28.2 us). */
struct mma_entry {
        enum rig_type type;
        uint32_t min_cols, max_cols;
        void (*launch)(const struct gpu_launch *, const matvec_args &, uint32_t);
};

static const struct mma_entry mma_table[] = {
        { RIG_TYPE_Q8_0, 5, MMV_MAX_COLS, mma_launch<dot_q8_0> },
        { RIG_TYPE_Q4_0, 5, MMV_MAX_COLS, mma_launch<dot_q4_0> },
        { RIG_TYPE_Q4_K, 3, MMV_MAX_COLS, mma_launch<dot_q4_k> },
        { RIG_TYPE_Q5_K, 3, MMV_MAX_COLS, mma_launch<dot_q5_k> },
        { RIG_TYPE_Q6_K, 3, 8, mma_launch<dot_q6_k> },
};

/* type's entry, where g takes tensor cores; else NULL. */
static const struct mma_entry *mma_find(const struct gpu_launch *g, enum rig_type type)
{
        for (size_t i = 0; i < sizeof(mma_table) / sizeof(mma_table[0]); i++)
                if (mma_table[i].type == type)
                        return gpu_takes_mma(g) ? &mma_table[i] : NULL;
        return NULL;
}

uint32_t matvec_mma_max_cols(const struct gpu_launch *g, enum rig_type type)
{
        const struct mma_entry *e = mma_find(g, type);
        return e ? e->max_cols : 0;
}

bool matvec_mma_takes(const struct gpu_launch *g, enum rig_type type, uint32_t n_cols)
{
        const struct mma_entry *e = mma_find(g, type);
        return e && n_cols >= e->min_cols && n_cols <= e->max_cols;
}

void matvec_mma_launch(const struct gpu_launch *g, enum rig_type type, const matvec_args &a, uint32_t n_cols)
{
        RIG_ASSERT(matvec_mma_takes(g, type, n_cols), "tensor-core matvec of type %d, %u columns", (int)type, n_cols);
        mma_find(g, type)->launch(g, a, n_cols);
}

#else /* no mma.sync */

uint32_t matvec_mma_max_cols(const struct gpu_launch *g, enum rig_type type)
{
        return 0;
}

bool matvec_mma_takes(const struct gpu_launch *g, enum rig_type type, uint32_t n_cols)
{
        return false;
}

void matvec_mma_launch(const struct gpu_launch *g, enum rig_type type, const matvec_args &a, uint32_t n_cols)
{
        RIG_ASSERT(false, "no tensor-core matvec on this vendor (matvec_mma_takes said so)");
}

#endif
