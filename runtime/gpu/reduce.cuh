/* reduce.cuh — sums and maxima across a warp (32 lanes on NVIDIA and gfx10+, 64 on gfx9) and
 * across a block, by butterfly shuffles: every lane ends with the result. */
#pragma once

#include "vendor.h"

static __device__ __forceinline__ float warp_sum(float v)
{
        for (int off = WARP_SIZE / 2; off > 0; off /= 2)
                v += __shfl_xor_sync(0xffffffffu, v, off);
        return v;
}

static __device__ __forceinline__ double warp_sum_double(double v)
{
        for (int off = WARP_SIZE / 2; off > 0; off /= 2)
                v += __shfl_xor_sync(0xffffffffu, v, off);
        return v;
}

/* Sum over the whole block (blockDim.x a multiple of WARP_SIZE, at most 1024 threads); every
 * thread calls it, every thread gets the sum. Uses 32 doubles of shared memory. */
static __device__ __forceinline__ double block_sum_double(double v)
{
        __shared__ double partial[1024 / 32];
        int lane = threadIdx.x % WARP_SIZE, warp = threadIdx.x / WARP_SIZE;
        int n_warps = blockDim.x / WARP_SIZE;
        v = warp_sum_double(v);
        if (lane == 0)
                partial[warp] = v;
        __syncthreads();
        v = lane < n_warps ? partial[lane] : 0.0;
        v = warp_sum_double(v);
        __syncthreads();        /* partial may be reused by a later call */
        return v;
}
