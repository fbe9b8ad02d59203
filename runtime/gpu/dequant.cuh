/* dequant.cuh — decoding rows of each weight type (GGUF layout) to float on the device: the
 * embedding lookup (elementwise.cu) and the float types' matrix-vector kernels (matvec.cu) use
 * them, and see the values rig_dequantize_row gives on the CPU, bit for bit. (The quantized
 * types' products read the device layout of layout.h, through dot_int8.cuh.)
 *
 * A decoder cuts a row of n elements into chunks, the unit one lane decodes per step: chunk c
 * decodes into RUNS runs of RUN_LEN consecutive elements, run r starting at element
 * first(c) + r * RUN_STRIDE. Chunks follow the block layouts so that a lane's weight bytes are
 * one 16-byte load where the block is 16-byte aligned (Q4_K 144 bytes, Q5_K 176, floats), else
 * 2-byte loads (Q4_0 18, Q8_0 34, Q6_K 210 bytes: only 2-byte alignment holds).
 *
 * Exactness: quant.c computes each value with separately rounded float operations (no fused
 * multiply-add); nvcc and hipcc would contract a * b - c into one fma, so the decoders spell the
 * roundings out with __fmul_rn / __fsub_rn. The products with activations may fuse freely.
 *
 * The decoders are structs of static functions used as template arguments (matvec_float_kernel<D, N>)
 * rather than function pointers: the device compiler must inline the decode into the loop. */
#pragma once

#include <stdint.h>

#include "vendor.h"

static __device__ __forceinline__ float half_bits_to_float(uint16_t h)
{
        return __half2float(__ushort_as_half(h));
}

static __device__ __forceinline__ uint16_t load_u16(const uint8_t *p)
{
        return *(const uint16_t *)p;
}

/* n bytes (even) from a 2-byte aligned address, as n / 2 two-byte loads. */
template <int N>
static __device__ __forceinline__ void load_bytes_2aligned(const uint8_t *p, uint8_t *out)
{
#pragma unroll
        for (int i = 0; i < N / 2; i++) {
                uint16_t v = load_u16(p + 2 * i);
                out[2 * i] = (uint8_t)(v & 0xff);
                out[2 * i + 1] = (uint8_t)(v >> 8);
        }
}

/* 16 bytes from a 16-byte aligned address, one load. */
static __device__ __forceinline__ void load_bytes_16(const uint8_t *p, uint8_t *out)
{
        uint4 u = *(const uint4 *)p;
        uint32_t w[4] = { u.x, u.y, u.z, u.w };
#pragma unroll
        for (int i = 0; i < 16; i++)
                out[i] = (uint8_t)(w[i / 4] >> (8 * (i % 4)));
}

/* The (scale, min) pair of sub-block j of Q4_K / Q5_K from the 12 packed bytes (see quant.c). */
static __device__ __forceinline__ void k4_scale_min(int j, const uint8_t *q, int *scale, int *min)
{
        if (j < 4) {
                *scale = q[j] & 63;
                *min = q[j + 4] & 63;
        } else {
                *scale = (q[j + 4] & 0xf) | ((q[j - 4] >> 6) << 4);
                *min = (q[j + 4] >> 4) | ((q[j] >> 6) << 4);
        }
}

/* ---- float types: chunks of 8 elements (n % 8 == 0), or of 1 for any other n ---- */

struct dec_f32 {
        static constexpr int RUNS = 1, RUN_LEN = 8, RUN_STRIDE = 0;
        static __device__ uint32_t chunks(uint32_t n) { return n / 8; }
        static __device__ uint32_t first(uint32_t c) { return 8 * c; }
        static __device__ void decode(const uint8_t *row, uint32_t c, float *v)
        {
                const float4 *p = (const float4 *)row + 2 * c;
                float4 a = p[0], b = p[1];
                v[0] = a.x; v[1] = a.y; v[2] = a.z; v[3] = a.w;
                v[4] = b.x; v[5] = b.y; v[6] = b.z; v[7] = b.w;
        }
};

struct dec_f32_scalar {
        static constexpr int RUNS = 1, RUN_LEN = 1, RUN_STRIDE = 0;
        static __device__ uint32_t chunks(uint32_t n) { return n; }
        static __device__ uint32_t first(uint32_t c) { return c; }
        static __device__ void decode(const uint8_t *row, uint32_t c, float *v)
        {
                v[0] = ((const float *)row)[c];
        }
};

struct dec_f16 {
        static constexpr int RUNS = 1, RUN_LEN = 8, RUN_STRIDE = 0;
        static __device__ uint32_t chunks(uint32_t n) { return n / 8; }
        static __device__ uint32_t first(uint32_t c) { return 8 * c; }
        static __device__ void decode(const uint8_t *row, uint32_t c, float *v)
        {
                uint4 u = ((const uint4 *)row)[c];
                uint32_t w[4] = { u.x, u.y, u.z, u.w };
#pragma unroll
                for (int i = 0; i < 4; i++) {
                        v[2 * i] = half_bits_to_float((uint16_t)(w[i] & 0xffff));
                        v[2 * i + 1] = half_bits_to_float((uint16_t)(w[i] >> 16));
                }
        }
};

struct dec_f16_scalar {
        static constexpr int RUNS = 1, RUN_LEN = 1, RUN_STRIDE = 0;
        static __device__ uint32_t chunks(uint32_t n) { return n; }
        static __device__ uint32_t first(uint32_t c) { return c; }
        static __device__ void decode(const uint8_t *row, uint32_t c, float *v)
        {
                v[0] = half_bits_to_float(((const uint16_t *)row)[c]);
        }
};

/* bfloat16 is the top half of a float32. */
struct dec_bf16 {
        static constexpr int RUNS = 1, RUN_LEN = 8, RUN_STRIDE = 0;
        static __device__ uint32_t chunks(uint32_t n) { return n / 8; }
        static __device__ uint32_t first(uint32_t c) { return 8 * c; }
        static __device__ void decode(const uint8_t *row, uint32_t c, float *v)
        {
                uint4 u = ((const uint4 *)row)[c];
                uint32_t w[4] = { u.x, u.y, u.z, u.w };
#pragma unroll
                for (int i = 0; i < 4; i++) {
                        v[2 * i] = __uint_as_float(w[i] << 16);
                        v[2 * i + 1] = __uint_as_float(w[i] & 0xffff0000u);
                }
        }
};

struct dec_bf16_scalar {
        static constexpr int RUNS = 1, RUN_LEN = 1, RUN_STRIDE = 0;
        static __device__ uint32_t chunks(uint32_t n) { return n; }
        static __device__ uint32_t first(uint32_t c) { return c; }
        static __device__ void decode(const uint8_t *row, uint32_t c, float *v)
        {
                v[0] = __uint_as_float((uint32_t)((const uint16_t *)row)[c] << 16);
        }
};

/* ---- Q4_0: chunk = one 18-byte block; low nibbles elements 0..15, high 16..31 ---- */

struct dec_q4_0 {
        static constexpr int RUNS = 2, RUN_LEN = 16, RUN_STRIDE = 16;
        static __device__ uint32_t chunks(uint32_t n) { return n / QK4_0; }
        static __device__ uint32_t first(uint32_t c) { return QK4_0 * c; }
        static __device__ void decode(const uint8_t *row, uint32_t c, float *v)
        {
                const uint8_t *b = row + (size_t)c * sizeof(struct block_q4_0);
                float d = half_bits_to_float(load_u16(b));
                uint8_t q[16];
                load_bytes_2aligned<16>(b + 2, q);
#pragma unroll
                for (int j = 0; j < 16; j++) {
                        v[j] = (float)((q[j] & 0xf) - 8) * d;
                        v[j + 16] = (float)((q[j] >> 4) - 8) * d;
                }
        }
};

/* ---- Q8_0: chunk = one 34-byte block ---- */

struct dec_q8_0 {
        static constexpr int RUNS = 1, RUN_LEN = 32, RUN_STRIDE = 0;
        static __device__ uint32_t chunks(uint32_t n) { return n / QK8_0; }
        static __device__ uint32_t first(uint32_t c) { return QK8_0 * c; }
        static __device__ void decode(const uint8_t *row, uint32_t c, float *v)
        {
                const uint8_t *b = row + (size_t)c * sizeof(struct block_q8_0);
                float d = half_bits_to_float(load_u16(b));
                uint8_t q[32];
                load_bytes_2aligned<32>(b + 2, q);
#pragma unroll
                for (int j = 0; j < 32; j++)
                        v[j] = (float)(int8_t)q[j] * d;
        }
};

/* ---- Q4_K / Q5_K: 8 chunks per 256-element block. Chunk j (k = j/2, h = j%2) is the 16 qs
 * bytes 32k + 16h: low nibbles are elements 64k + 16h + 0..15 (sub-block 2k), high nibbles
 * 32 further on (sub-block 2k+1). ---- */

/* Q4_K and Q5_K share the header (d, dmin, 12 packed scale bytes): the float scale and min of
 * sub-blocks 2k and 2k+1, rounded as quant.c's dequantizer does. */
static __device__ void k45_sub_scales(const uint8_t *b, int k, float *d1, float *m1, float *d2, float *m2)
{
        float d = half_bits_to_float(load_u16(b));
        float dmin = half_bits_to_float(load_u16(b + 2));
        int sc, m;
        k4_scale_min(2 * k, b + 4, &sc, &m);
        *d1 = __fmul_rn(d, (float)sc), *m1 = __fmul_rn(dmin, (float)m);
        k4_scale_min(2 * k + 1, b + 4, &sc, &m);
        *d2 = __fmul_rn(d, (float)sc), *m2 = __fmul_rn(dmin, (float)m);
}

struct dec_q4_k {
        static constexpr int RUNS = 2, RUN_LEN = 16, RUN_STRIDE = 32;
        static __device__ uint32_t chunks(uint32_t n) { return n / QK_K * 8; }
        static __device__ uint32_t first(uint32_t c) { return c / 8 * QK_K + (c % 8 / 2) * 64 + (c % 2) * 16; }
        static __device__ void decode(const uint8_t *row, uint32_t c, float *v)
        {
                const uint8_t *b = row + (size_t)(c / 8) * sizeof(struct block_q4_K);
                int k = c % 8 / 2, h = c % 2;
                float d1, m1, d2, m2;
                k45_sub_scales(b, k, &d1, &m1, &d2, &m2);
                uint8_t q[16];
                load_bytes_16(b + 16 + 32 * k + 16 * h, q);
#pragma unroll
                for (int l = 0; l < 16; l++) {
                        v[l] = __fsub_rn(__fmul_rn(d1, (float)(q[l] & 0xf)), m1);
                        v[l + 16] = __fsub_rn(__fmul_rn(d2, (float)(q[l] >> 4)), m2);
                }
        }
};

/* As Q4_K; the 5th bits of elements l (and l + 32) of 64-chunk k are bits 2k (2k+1) of qh[l],
 * so the chunk also takes the 16 qh bytes 16h..16h+15. */
struct dec_q5_k {
        static constexpr int RUNS = 2, RUN_LEN = 16, RUN_STRIDE = 32;
        static __device__ uint32_t chunks(uint32_t n) { return n / QK_K * 8; }
        static __device__ uint32_t first(uint32_t c) { return c / 8 * QK_K + (c % 8 / 2) * 64 + (c % 2) * 16; }
        static __device__ void decode(const uint8_t *row, uint32_t c, float *v)
        {
                const uint8_t *b = row + (size_t)(c / 8) * sizeof(struct block_q5_K);
                int k = c % 8 / 2, h = c % 2;
                float d1, m1, d2, m2;
                k45_sub_scales(b, k, &d1, &m1, &d2, &m2);
                uint8_t qh[16], q[16];
                load_bytes_16(b + 16 + 16 * h, qh);
                load_bytes_16(b + 48 + 32 * k + 16 * h, q);
                int u1 = 1 << (2 * k), u2 = 2 << (2 * k);
#pragma unroll
                for (int l = 0; l < 16; l++) {
                        int lo = (q[l] & 0xf) + ((qh[l] & u1) ? 16 : 0);
                        int hi = (q[l] >> 4) + ((qh[l] & u2) ? 16 : 0);
                        v[l] = __fsub_rn(__fmul_rn(d1, (float)lo), m1);
                        v[l + 16] = __fsub_rn(__fmul_rn(d2, (float)hi), m2);
                }
        }
};

/* ---- Q6_K: 8 chunks per 256-element block; chunk j covers half n = j/4 (128 elements) and
 * l = l0..l0+7 with l0 = 8 * (j%4): elements l, l+32, l+64, l+96 of that half, from ql[l],
 * ql[l+32] and qh[l] (layout at dequantize_q6_K in quant.c). ---- */

struct dec_q6_k {
        static constexpr int RUNS = 4, RUN_LEN = 8, RUN_STRIDE = 32;
        static __device__ uint32_t chunks(uint32_t n) { return n / QK_K * 8; }
        static __device__ uint32_t first(uint32_t c) { return c / 8 * QK_K + (c % 8 / 4) * 128 + (c % 4) * 8; }
        static __device__ void decode(const uint8_t *row, uint32_t c, float *v)
        {
                const uint8_t *b = row + (size_t)(c / 8) * sizeof(struct block_q6_K);
                int n = c % 8 / 4, l0 = (c % 4) * 8;
                const uint8_t *ql = b + 64 * n;
                const uint8_t *qh = b + 128 + 32 * n;
                const int8_t *sc = (const int8_t *)(b + 192 + 8 * n) + l0 / 16;
                float d = half_bits_to_float(load_u16(b + 208));
                uint8_t a[8], a32[8], h[8];
                load_bytes_2aligned<8>(ql + l0, a);
                load_bytes_2aligned<8>(ql + l0 + 32, a32);
                load_bytes_2aligned<8>(qh + l0, h);
                float s0 = __fmul_rn(d, (float)sc[0]), s2 = __fmul_rn(d, (float)sc[2]);
                float s4 = __fmul_rn(d, (float)sc[4]), s6 = __fmul_rn(d, (float)sc[6]);
#pragma unroll
                for (int i = 0; i < 8; i++) {
                        int q1 = ((a[i] & 0xf) | (((h[i] >> 0) & 3) << 4)) - 32;
                        int q2 = ((a32[i] & 0xf) | (((h[i] >> 2) & 3) << 4)) - 32;
                        int q3 = ((a[i] >> 4) | (((h[i] >> 4) & 3) << 4)) - 32;
                        int q4 = ((a32[i] >> 4) | (((h[i] >> 6) & 3) << 4)) - 32;
                        v[i] = __fmul_rn(s0, (float)q1);
                        v[i + 8] = __fmul_rn(s2, (float)q2);
                        v[i + 16] = __fmul_rn(s4, (float)q3);
                        v[i + 24] = __fmul_rn(s6, (float)q4);
                }
        }
};
