/* dot_int8.cuh — dot products of quantized weight rows (device layout, layout.h) with
 * activations quantized to 8 bits (struct gpu_act: per 32 elements a scale d and d * sum of
 * the levels), by 4-way integer products (dp4a / v_dot4): a block's integer sum is exact, and
 * each 32-element part costs one float multiply-add instead of 32.
 *
 * A decoder cuts a row into chunks of CHUNK elements, the unit one lane takes per step: load()
 * reads the chunk's weight bytes (16-byte loads) and scales into registers once, dot() takes
 * them against one column of activations, so a kernel with several columns reads each weight
 * byte once. The activations of chunk c are elements CHUNK * c .. CHUNK * (c + 1) - 1, except
 * Q6_K's, which interleave inside their 256-element block. Values are the CPU's: level * scale - min, with the
 * products rounded differently (the tests bound the difference). */
#pragma once

#include <stdint.h>

#include "dequant.cuh"
#include "vendor.h"

/* 16 bytes as four 32-bit words, one load; p 16-byte aligned. */
static __device__ __forceinline__ void load_words4(const void *p, int *w)
{
        int4 v = *(const int4 *)p;
        w[0] = v.x;
        w[1] = v.y;
        w[2] = v.z;
        w[3] = v.w;
}

/* Byte i (0..3) of word w. */
static __device__ __forceinline__ int byte_of(uint32_t w, int i)
{
        return (int)((w >> (8 * i)) & 0xff);
}

/* Each byte of w minus k (bytes 0..127 minus k <= 64, results as signed bytes): the high bit of
 * every byte set first, so no byte borrows from the next. */
static __device__ __forceinline__ int bytes_minus(uint32_t w, uint32_t k4)
{
        return (int)(((w | 0x80808080u) - k4) ^ 0x80808080u);
}

/* sum over i < N of dp4a(a[i], b[i]). */
template <int N>
static __device__ __forceinline__ int dot_words(const int *a, const int *b)
{
        int s = 0;
#pragma unroll
        for (int i = 0; i < N; i++)
                s = gpu_dp4a(a[i], b[i], s);
        return s;
}

/* The (scale, min) pair of sub-block j (0..7) of Q4_K / Q5_K from the packed scale bytes as
 * words s0 (bytes 0..3), s1 (4..7), s2 (8..11): k4_scale_min of dequant.cuh without indexing a
 * byte array by a lane-dependent j (which would go through local memory). */
static __device__ __forceinline__ void k4_scale_min_words(int j, uint32_t s0, uint32_t s1, uint32_t s2, int *scale,
                                                          int *min)
{
        if (j < 4) {
                *scale = byte_of(s0, j) & 63;
                *min = byte_of(s1, j) & 63;
        } else {
                *scale = (byte_of(s2, j - 4) & 0xf) | ((byte_of(s0, j - 4) >> 6) << 4);
                *min = (byte_of(s2, j - 4) >> 4) | ((byte_of(s1, j - 4) >> 6) << 4);
        }
}

/* ---- Q8_0: chunk = one block (32 elements) ---- */

struct dot_q8_0 {
        static constexpr uint32_t CHUNK = 32;
        struct W {
                int q[8];
                float d;
        };
        static __device__ void load(const uint8_t *row, uint32_t n, uint32_t c, W &w)
        {
                load_words4(row + (size_t)c * 32, w.q);
                load_words4(row + (size_t)c * 32 + 16, w.q + 4);
                w.d = half_bits_to_float(load_u16(row + (size_t)n / QK8_0 * 32 + 2 * c));
        }
        static __device__ float dot(const W &w, uint32_t c, const int8_t *xq, const float2 *xds)
        {
                int x[8];
                load_words4(xq + (size_t)c * 32, x);
                load_words4(xq + (size_t)c * 32 + 16, x + 4);
                return w.d * xds[c].x * (float)dot_words<8>(w.q, x);
        }
};

/* ---- Q4_0: chunk = one block; levels 0..15 mean level - 8, taken as 8 * sum(x) ---- */

struct dot_q4_0 {
        static constexpr uint32_t CHUNK = 32;
        struct W {
                int lo[4], hi[4];       /* elements 0..15, 16..31 */
                float d;
        };
        static __device__ void load(const uint8_t *row, uint32_t n, uint32_t c, W &w)
        {
                int q[4];
                load_words4(row + (size_t)c * 16, q);
#pragma unroll
                for (int i = 0; i < 4; i++) {
                        w.lo[i] = q[i] & 0x0f0f0f0f;
                        w.hi[i] = (q[i] >> 4) & 0x0f0f0f0f;
                }
                w.d = half_bits_to_float(load_u16(row + (size_t)n / QK4_0 * 16 + 2 * c));
        }
        static __device__ float dot(const W &w, uint32_t c, const int8_t *xq, const float2 *xds)
        {
                int x[8];
                load_words4(xq + (size_t)c * 32, x);
                load_words4(xq + (size_t)c * 32 + 16, x + 4);
                int s = dot_words<4>(w.lo, x) + dot_words<4>(w.hi, x + 4);
                float2 ds = xds[c];
                return w.d * (ds.x * (float)s - 8.0f * ds.y);
        }
};

/* ---- Q4_K / Q5_K: chunk k of a block = sub-blocks 2k (low nibbles of qs[32k..32k+31]) and
 * 2k+1 (high nibbles); value = d * scale * level - dmin * min ---- */

struct k45_chunk {
        int lo[8], hi[8];               /* levels of sub-blocks 2k and 2k+1 */
        float a1, a2, m1, m2;           /* d * scale and dmin * min of each */
};

static __device__ __forceinline__ void k45_load_header(const uint8_t *b, int k, k45_chunk &w)
{
        int h[4];
        load_words4(b, h);              /* d, dmin; 12 scale bytes */
        float d = half_bits_to_float((uint16_t)(h[0] & 0xffff));
        float dmin = half_bits_to_float((uint16_t)((uint32_t)h[0] >> 16));
        int sc, m;
        k4_scale_min_words(2 * k, h[1], h[2], h[3], &sc, &m);
        w.a1 = d * (float)sc;
        w.m1 = dmin * (float)m;
        k4_scale_min_words(2 * k + 1, h[1], h[2], h[3], &sc, &m);
        w.a2 = d * (float)sc;
        w.m2 = dmin * (float)m;
}

static __device__ __forceinline__ float k45_dot(const k45_chunk &w, uint32_t c, const int8_t *xq, const float2 *xds)
{
        int x[16];
#pragma unroll
        for (int i = 0; i < 4; i++)
                load_words4(xq + (size_t)c * 64 + 16 * i, x + 4 * i);
        float2 ds1 = xds[2 * c], ds2 = xds[2 * c + 1];
        float s1 = (float)dot_words<8>(w.lo, x), s2 = (float)dot_words<8>(w.hi, x + 8);
        return w.a1 * ds1.x * s1 + w.a2 * ds2.x * s2 - (w.m1 * ds1.y + w.m2 * ds2.y);
}

struct dot_q4_k {
        static constexpr uint32_t CHUNK = 64;
        typedef k45_chunk W;
        static __device__ void load(const uint8_t *row, uint32_t n, uint32_t c, W &w)
        {
                const uint8_t *b = row + (size_t)(c / 4) * sizeof(struct block_q4_K);
                int k = c % 4;
                k45_load_header(b, k, w);
                int q[8];
                load_words4(b + 16 + 32 * k, q);
                load_words4(b + 32 + 32 * k, q + 4);
#pragma unroll
                for (int i = 0; i < 8; i++) {
                        w.lo[i] = q[i] & 0x0f0f0f0f;
                        w.hi[i] = (q[i] >> 4) & 0x0f0f0f0f;
                }
        }
        static __device__ float dot(const W &w, uint32_t c, const int8_t *xq, const float2 *xds)
        {
                return k45_dot(w, c, xq, xds);
        }
};

/* Q5_K: the 5th bit of element l of sub-block 2k (2k+1) is bit 2k (2k+1) of qh[l]. */
struct dot_q5_k {
        static constexpr uint32_t CHUNK = 64;
        typedef k45_chunk W;
        static __device__ void load(const uint8_t *row, uint32_t n, uint32_t c, W &w)
        {
                const uint8_t *b = row + (size_t)(c / 4) * sizeof(struct block_q5_K);
                int k = c % 4;
                k45_load_header(b, k, w);
                int qh[8], q[8];
                load_words4(b + 16, qh);
                load_words4(b + 32, qh + 4);
                load_words4(b + 48 + 32 * k, q);
                load_words4(b + 64 + 32 * k, q + 4);
#pragma unroll
                for (int i = 0; i < 8; i++) {
                        w.lo[i] = (q[i] & 0x0f0f0f0f) | ((((uint32_t)qh[i] >> (2 * k)) & 0x01010101u) << 4);
                        w.hi[i] = ((q[i] >> 4) & 0x0f0f0f0f) | ((((uint32_t)qh[i] >> (2 * k + 1)) & 0x01010101u) << 4);
                }
        }
        static __device__ float dot(const W &w, uint32_t c, const int8_t *xq, const float2 *xds)
        {
                return k45_dot(w, c, xq, xds);
        }
};

/* ---- Q6_K: chunk c of a block (half = c%4/2, l0 = 16 * (c%2)) = elements l0..l0+15 of runs
 * r = 0..3 at 128 * half + 32 * r of the block, from ql[64 half + l0..], ql[64 half + 32 + l0..]
 * and qh[32 half + l0..] (layout at dequantize_q6_K in quant.c); each run has its own int8
 * scale; levels 0..63 mean level - 32 ---- */

struct dot_q6_k {
        static constexpr uint32_t CHUNK = 64;
        struct W {
                int v[4][4];            /* [run][word], level - 32 as signed bytes */
                float s[4];             /* d * scale of each run */
        };
        static __device__ void load(const uint8_t *row, uint32_t n, uint32_t c, W &w)
        {
                const uint8_t *b = row + (size_t)(c / 4) * Q6_K_PAYLOAD;
                int half = c % 4 / 2, l0 = 16 * (c % 2);
                int qa[4], qb[4], qh[4];
                load_words4(b + 64 * half + l0, qa);
                load_words4(b + 64 * half + 32 + l0, qb);
                load_words4(b + 128 + 32 * half + l0, qh);
#pragma unroll
                for (int i = 0; i < 4; i++) {
                        uint32_t a = (uint32_t)qa[i], bb = (uint32_t)qb[i], h = (uint32_t)qh[i];
                        w.v[0][i] = bytes_minus((a & 0x0f0f0f0fu) | ((h << 4) & 0x30303030u), 0x20202020u);
                        w.v[1][i] = bytes_minus((bb & 0x0f0f0f0fu) | ((h << 2) & 0x30303030u), 0x20202020u);
                        w.v[2][i] = bytes_minus(((a >> 4) & 0x0f0f0f0fu) | (h & 0x30303030u), 0x20202020u);
                        w.v[3][i] = bytes_minus(((bb >> 4) & 0x0f0f0f0fu) | ((h >> 2) & 0x30303030u), 0x20202020u);
                }
                /* scales of the 16-element groups: sc[8 half + 2 r + l0 / 16] */
                uint2 sc = *(const uint2 *)(b + 192 + 8 * half);
                float d = half_bits_to_float(load_u16(row + (size_t)n / QK_K * Q6_K_PAYLOAD + 2 * (c / 4)));
                int odd = l0 / 16;
                w.s[0] = d * (float)(int8_t)byte_of(sc.x, odd);
                w.s[1] = d * (float)(int8_t)byte_of(sc.x, 2 + odd);
                w.s[2] = d * (float)(int8_t)byte_of(sc.y, odd);
                w.s[3] = d * (float)(int8_t)byte_of(sc.y, 2 + odd);
        }
        static __device__ float dot(const W &w, uint32_t c, const int8_t *xq, const float2 *xds)
        {
                int half = c % 4 / 2, l0 = 16 * (c % 2);
                const int8_t *x0 = xq + (size_t)(c / 4) * QK_K + 128 * half + l0;
                const float2 *ds = xds + (size_t)(c / 4) * 8 + 4 * half;
                float acc = 0.0f;
#pragma unroll
                for (int r = 0; r < 4; r++) {
                        int x[4];
                        load_words4(x0 + 32 * r, x);
                        acc += w.s[r] * ds[r].x * (float)dot_words<4>(w.v[r], x);
                }
                return acc;
        }
};
