/* matvec.cuh — what the matrix-vector kernels (matvec.cu: by dp4a or float products, one warp
 * or a few a row; matvec_mma.cu: on tensor cores, 16 rows a warp) share: the arguments of a
 * launch, and where a launch's row lies among the weights it joins. */
#pragma once

#include "kernels.h"
#include "vendor.h"

/* One weight of the launch (a launch takes the products of up to GPU_MAX_PARTS weights on the
 * same x: its rows are theirs one after another). */
struct matvec_part {
        const uint8_t *w;
        const float *bias;              /* [n_out] or NULL */
        float *y;                       /* [n_cols][n_out] */
        uint32_t n_out;
        bool accumulate;                /* y += the product (gpu_matmul_part) */
};

struct matvec_args {
        matvec_part part[GPU_MAX_PARTS];
        uint32_t n_parts;
        uint32_t n_rows;                /* of all parts */
        size_t stride;                  /* bytes from one row to the next, in every part */
        uint32_t n_in;
        const float *x;                 /* [n_cols][n_in], float types */
        const int8_t *xq;               /* [n_cols][n_in], quantized types */
        const float2 *xds;              /* [n_cols][n_in / 32] */
        uint32_t warps_per_row;         /* 1, 2 or 4 */
};

/* Row `row` of the launch (< n_rows) as row `row` of its part. Unrolled over the parts, so the
 * arguments are read by constant index (a run-time index would copy them to local memory). */
struct row_target {
        const uint8_t *w;               /* the row's weights */
        const float *bias;
        float *y;
        uint32_t row, n_out;
        bool accumulate;
};

static __device__ __forceinline__ row_target target_of(const matvec_args &a, uint32_t row)
{
        row_target t;
        uint32_t first = 0;
#pragma unroll
        for (int p = 0; p < GPU_MAX_PARTS; p++) {
                if (p == 0 || (p < (int)a.n_parts && row >= first)) {
                        t.row = row - first;
                        t.w = a.part[p].w + (size_t)t.row * a.stride;
                        t.bias = a.part[p].bias;
                        t.y = a.part[p].y;
                        t.n_out = a.part[p].n_out;
                        t.accumulate = a.part[p].accumulate;
                }
                first += a.part[p].n_out;
        }
        return t;
}

/* Writes column j of the row's result (adds it, for a part that accumulates: the CPU's residual
 * add of the product's float result, the same rounding). */
static __device__ __forceinline__ void store_target(const row_target &t, uint32_t j, float sum)
{
        float v = t.bias ? sum + t.bias[t.row] : sum;
        float *y = t.y + (size_t)j * t.n_out + t.row;
        *y = t.accumulate ? *y + v : v;
}

/* Most columns one launch of the tensor-core matvec takes (two mma tiles of 8). */
#define MMV_MAX_COLS 16

/* Most columns one launch of the tensor-core matvec (matvec_mma.cu) takes for products of type
 * (8 or MMV_MAX_COLS); 0 where it takes none: the device has no tensor cores, the environment
 * asks otherwise (gpu_takes_mma), or it has no kernel for the type. */
uint32_t matvec_mma_max_cols(const struct gpu_launch *g, enum rig_type type);

/* Whether it takes a product of n_cols columns of type: from 3 or 5 columns (by type) to its
 * most. */
bool matvec_mma_takes(const struct gpu_launch *g, enum rig_type type, uint32_t n_cols);

/* Launches it, for a product it takes. */
void matvec_mma_launch(const struct gpu_launch *g, enum rig_type type, const matvec_args &a, uint32_t n_cols);
