/* mma.cuh — the integer products on tensor cores shared by the kernels that take them (the tile
 * kernel, matmul_tiles.cu, and the matvec of a few columns, matvec_mma.cu), and the float step
 * after each unit's integer sum. */
#pragma once

#include "vendor.h"

/* acc + a * dx * sum(level * xq) - m * (dx * sum(xq)) for one output and unit; for a type whose
 * m is always 0 (HAS_MIN false: Q8_0, Q6_K) without the second term, which is then exactly 0. */
template <bool HAS_MIN>
static __device__ __forceinline__ float unit_dot(float acc, float2 am, float2 ds, int sum)
{
        float v = acc + am.x * ds.x * (float)sum;
        return HAS_MIN ? v - am.y * ds.y : v;
}

/* ---- tensor cores: mma.sync on 8-bit integers (PTX ISA, "Matrix Fragments for mma.m16n8k32"
 * and "... mma.m16n8k16 with integer type"). With g = lane / 4, t = lane % 4 and the tiles as
 * 32-bit words of 4 levels (A: rows x k, B: columns x k):
 *   k32: A {a0, a1, a2, a3} = A[g][t], A[g + 8][t], A[g][4 + t], A[g + 8][4 + t]
 *        B {b0, b1}         = B[g][t], B[g][4 + t]
 *   k16: A {a0, a1} = A[g][t], A[g + 8][t];  B {b0} = B[g][t]
 *   C, D {c0, c1, c2, c3} = (row g, column 2t), (g, 2t + 1), (g + 8, 2t), (g + 8, 2t + 1) ---- */

#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 800
/* c = A B for one unit of 32 (k32) or 16 (k16) elements. */
template <uint32_t UNIT>
static __device__ __forceinline__ void mma_unit(const int *a, const int *b, int *c);

template <>
__device__ __forceinline__ void mma_unit<32>(const int *a, const int *b, int *c)
{
        asm("mma.sync.aligned.m16n8k32.row.col.s32.s8.s8.s32 {%0, %1, %2, %3}, {%4, %5, %6, %7}, {%8, %9}, "
            "{%10, %10, %10, %10};"
            : "=r"(c[0]), "=r"(c[1]), "=r"(c[2]), "=r"(c[3])
            : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b[0]), "r"(b[1]), "r"(0));
}

template <>
__device__ __forceinline__ void mma_unit<16>(const int *a, const int *b, int *c)
{
        asm("mma.sync.aligned.m16n8k16.row.col.s32.s8.s8.s32 {%0, %1, %2, %3}, {%4, %5}, {%6}, {%7, %7, %7, %7};"
            : "=r"(c[0]), "=r"(c[1]), "=r"(c[2]), "=r"(c[3])
            : "r"(a[0]), "r"(a[1]), "r"(b[0]), "r"(0));
}
#endif
