/* dot_int8.cuh — dot products of quantized weight rows (device layout, layout.h) with
 * activations quantized to 8 bits (struct gpu_act: levels in the chunk order of layout.h, per
 * 32 elements a scale d and d * sum of the levels), by 4-way integer products (dp4a / v_dot4):
 * a block's integer sum is exact, and each 32-element part costs one float multiply-add
 * instead of 32.
 *
 * A decoder cuts a row into chunks of CHUNK elements (layout.h lists them), the unit one lane
 * takes per step: load() reads the chunk's weight pieces and scales into registers once, dot()
 * takes them against one column of activations, so a kernel with several columns reads each
 * weight byte once. Values are the CPU's: level * scale - min, with the products rounded
 * differently (the tests bound the difference).
 *
 * The matrix-matrix kernels (matmul_tiles.cu) stage a chunk's levels in shared memory and take
 * the products there, so each decoder also says, from the same load():
 *   UNIT              elements per scale (32; Q6_K 16)
 *   levels(w, q, am)  the chunk's levels as CHUNK / 4 words in the order of its activations
 *                     (word i against bytes 4i .. 4i+3 of the chunk's activation pieces), and
 *                     per unit u a pair am[u] = (a, m): the unit's dot with activations of
 *                     scale dx is a * dx * sum(level * xq) - m * (dx * sum(xq))
 *   HAS_MIN           whether m can be other than 0
 *   unit_block(c, u)  the 32-element block (element order: the index into ds) of unit u of
 *                     chunk c */
#pragma once

#include <stdint.h>

#include "dequant.cuh"
#include "layout.h"
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
 * byte array by a lane-dependent j (which would go through local memory), and without a branch
 * on it: a branch between a kernel's loads holds back the loads after it until the data before
 * it has come (the tensor-core matvec's next step, matvec_mma.cu). */
static __device__ __forceinline__ void k4_scale_min_words(int j, uint32_t s0, uint32_t s1, uint32_t s2, int *scale,
                                                          int *min)
{
        int i = j & 3, b0 = byte_of(s0, i), b1 = byte_of(s1, i), b2 = byte_of(s2, i);
        bool is_low = j < 4;
        *scale = is_low ? b0 & 63 : (b2 & 0xf) | ((b0 >> 6) << 4);
        *min = is_low ? b1 & 63 : (b2 >> 4) | ((b1 >> 6) << 4);
}

/* Where element e of a vector of n elements goes in the chunk order of layout.h. */
static __device__ __forceinline__ uint32_t act_position(enum gpu_act_order order, uint32_t e, uint32_t n)
{
        uint32_t chunk = 64, c, offset;
        if (order == GPU_ACT_CHUNK32) {
                chunk = 32;
                c = e / 32;
                offset = e % 32;
        } else if (order == GPU_ACT_CHUNK64) {
                c = e / 64;
                offset = e % 64;
        } else {        /* Q6_K: e = 256 block + 128 h + 32 r + 16 o + t is chunk 4 block + 2h + o, run r */
                uint32_t b = e % QK_K, h = b / 128, r = b % 128 / 32, o = b % 32 / 16;
                c = e / QK_K * 4 + 2 * h + o;
                offset = 16 * r + b % 16;
        }
        return (uint32_t)piece_offset(place_of(c, n / chunk), offset / 16, chunk / GPU_PIECE_BYTES) + offset % 16;
}

/* Element i (of n elements in all, columns of n_in) of activations, value v, to 8 bits: called by
 * the 32 lanes that hold one 32-element block (in lane order; half a 64-wide wavefront, or a
 * whole 32-wide warp), which agree on its scale by shuffles; is_live false past the end (those
 * lanes shuffle too, with v = 0, and write nothing). Rounded as rig_quantize_row's Q8_0: d = amax
 * / 127 to f16, levels the nearest integers (ties to even) to v / d, clamped; ds = (d, d * the sum
 * of the block's levels). */
static __device__ __forceinline__ void quantize_act_lanes(float v, bool is_live, size_t i, uint32_t n_in,
                                                          enum gpu_act_order order, int8_t *q, float2 *ds)
{
        float amax = fabsf(v);
        for (int off = 16; off > 0; off /= 2)
                amax = fmaxf(amax, __shfl_xor_sync(0xffffffffu, amax, off));
        float d = __half2float(__float2half_rn(__fdiv_rn(amax, 127.0f)));
        float t = d == 0.0f ? 0.0f : __fdiv_rn(v, d);
        int level = __float2int_rn(fminf(fmaxf(t, -127.0f), 127.0f));
        int sum = level;
        for (int off = 16; off > 0; off /= 2)
                sum += __shfl_xor_sync(0xffffffffu, sum, off);
        if (!is_live)
                return;
        size_t col = i / n_in;
        q[col * n_in + act_position(order, (uint32_t)(i % n_in), n_in)] = (int8_t)level;
        if (i % 32 == 0)
                ds[i / 32] = make_float2(d, d * (float)sum);
}

/* The four words of piece p of a vector with P pieces per chunk. */
template <int P>
static __device__ __forceinline__ void load_piece(const void *base, const chunk_place &at, int p, int *w)
{
        load_words4((const uint8_t *)base + piece_offset(at, p, P), w);
}

/* ---- Q8_0: chunk = one block (32 elements): 2 pieces of levels, d[block] after them ---- */

struct dot_q8_0 {
        static constexpr uint32_t CHUNK = 32, UNIT = 32;
        static constexpr bool HAS_MIN = false;
        struct W {
                int q[8];
                float d;
        };
        static __device__ void load(const uint8_t *row, uint32_t n, uint32_t c, const chunk_place &at, W &w)
        {
                load_piece<2>(row, at, 0, w.q);
                load_piece<2>(row, at, 1, w.q + 4);
                w.d = half_bits_to_float(load_u16(row + (size_t)n / QK8_0 * 32 + 2 * c));
        }
        static __device__ float dot(const W &w, uint32_t c, const chunk_place &at, const int8_t *xq, const float2 *xds)
        {
                int x[8];
                load_piece<2>(xq, at, 0, x);
                load_piece<2>(xq, at, 1, x + 4);
                return w.d * xds[c].x * (float)dot_words<8>(w.q, x);
        }
        static __device__ void levels(const W &w, int *q, float2 *am)
        {
#pragma unroll
                for (int i = 0; i < 8; i++)
                        q[i] = w.q[i];
                am[0] = make_float2(w.d, 0.0f);
        }
        static __device__ uint32_t unit_block(uint32_t c, uint32_t u) { return c; }
};

/* ---- Q4_0: chunk = one block: 1 piece (low nibbles elements 0..15, high 16..31), d[block];
 * levels 0..15 mean level - 8, taken as 8 * sum(x) ---- */

struct dot_q4_0 {
        static constexpr uint32_t CHUNK = 32, UNIT = 32;
        static constexpr bool HAS_MIN = true;
        struct W {
                int lo[4], hi[4];
                float d;
        };
        static __device__ void load(const uint8_t *row, uint32_t n, uint32_t c, const chunk_place &at, W &w)
        {
                int q[4];
                load_piece<1>(row, at, 0, q);
#pragma unroll
                for (int i = 0; i < 4; i++) {
                        w.lo[i] = q[i] & 0x0f0f0f0f;
                        w.hi[i] = (q[i] >> 4) & 0x0f0f0f0f;
                }
                w.d = half_bits_to_float(load_u16(row + (size_t)n / QK4_0 * 16 + 2 * c));
        }
        static __device__ float dot(const W &w, uint32_t c, const chunk_place &at, const int8_t *xq, const float2 *xds)
        {
                int x[8];
                load_piece<2>(xq, at, 0, x);
                load_piece<2>(xq, at, 1, x + 4);
                int s = dot_words<4>(w.lo, x) + dot_words<4>(w.hi, x + 4);
                float2 ds = xds[c];
                return w.d * (ds.x * (float)s - 8.0f * ds.y);
        }
        static __device__ void levels(const W &w, int *q, float2 *am)
        {
#pragma unroll
                for (int i = 0; i < 4; i++) {
                        q[i] = w.lo[i];
                        q[4 + i] = w.hi[i];
                }
                am[0] = make_float2(w.d, 8.0f * w.d);   /* levels 0..15 stand for level - 8 */
        }
        static __device__ uint32_t unit_block(uint32_t c, uint32_t u) { return c; }
};

/* ---- Q4_K / Q5_K: chunk = sub-blocks 2k (low nibbles of qs[32k .. 32k+31]) and 2k+1 (high
 * nibbles) of block c / 4, k = c % 4; value = d * scale * level - dmin * min ---- */

struct k45_chunk {
        int lo[8], hi[8];               /* levels of sub-blocks 2k and 2k+1 */
        float a1, a2, m1, m2;           /* d * scale and dmin * min of each */
};

/* The block's header (d, dmin, 12 scale bytes) from the side array after the pieces. */
static __device__ __forceinline__ void k45_load_header(const uint8_t *row, uint32_t n, uint32_t c, k45_chunk &w)
{
        int h[4];
        load_words4(row + (size_t)n / QK_K * 128 + 16 * (c / 4), h);
        float d = half_bits_to_float((uint16_t)(h[0] & 0xffff));
        float dmin = half_bits_to_float((uint16_t)((uint32_t)h[0] >> 16));
        int k = c % 4, sc, m;
        k4_scale_min_words(2 * k, h[1], h[2], h[3], &sc, &m);
        w.a1 = d * (float)sc;
        w.m1 = dmin * (float)m;
        k4_scale_min_words(2 * k + 1, h[1], h[2], h[3], &sc, &m);
        w.a2 = d * (float)sc;
        w.m2 = dmin * (float)m;
}

/* The 32 qs bytes: word i of piece p holds elements 16p + 4i .. of each sub-block. */
static __device__ __forceinline__ void k45_load_levels(const uint8_t *row, const chunk_place &at, k45_chunk &w)
{
        int q[8];
        load_piece<2>(row, at, 0, q);
        load_piece<2>(row, at, 1, q + 4);
#pragma unroll
        for (int i = 0; i < 8; i++) {
                w.lo[i] = q[i] & 0x0f0f0f0f;
                w.hi[i] = (q[i] >> 4) & 0x0f0f0f0f;
        }
}

static __device__ __forceinline__ float k45_dot(const k45_chunk &w, uint32_t c, const chunk_place &at, const int8_t *xq,
                                                const float2 *xds)
{
        int x[16];
#pragma unroll
        for (int p = 0; p < 4; p++)
                load_piece<4>(xq, at, p, x + 4 * p);
        float4 ds = *(const float4 *)(xds + 2 * c);     /* d, d * sum of sub-blocks 2k, 2k+1 */
        float s1 = (float)dot_words<8>(w.lo, x), s2 = (float)dot_words<8>(w.hi, x + 8);
        return w.a1 * ds.x * s1 + w.a2 * ds.z * s2 - (w.m1 * ds.y + w.m2 * ds.w);
}

/* Units: sub-blocks 2k (lo, activation pieces 0, 1) and 2k+1 (hi, pieces 2, 3); blocks 2c, 2c+1. */
static __device__ __forceinline__ void k45_levels(const k45_chunk &w, int *q, float2 *am)
{
#pragma unroll
        for (int i = 0; i < 8; i++) {
                q[i] = w.lo[i];
                q[8 + i] = w.hi[i];
        }
        am[0] = make_float2(w.a1, w.m1);
        am[1] = make_float2(w.a2, w.m2);
}

struct dot_q4_k {
        static constexpr uint32_t CHUNK = 64, UNIT = 32;
        static constexpr bool HAS_MIN = true;
        typedef k45_chunk W;
        static __device__ void load(const uint8_t *row, uint32_t n, uint32_t c, const chunk_place &at, W &w)
        {
                k45_load_header(row, n, c, w);
                k45_load_levels(row, at, w);
        }
        static __device__ float dot(const W &w, uint32_t c, const chunk_place &at, const int8_t *xq, const float2 *xds)
        {
                return k45_dot(w, c, at, xq, xds);
        }
        static __device__ void levels(const W &w, int *q, float2 *am) { k45_levels(w, q, am); }
        static __device__ uint32_t unit_block(uint32_t c, uint32_t u) { return 2 * c + u; }
};

/* Q5_K: the fifth bits from the chunk's two planes (layout.h): word i takes bits i, 8 + i, 16 + i,
 * 24 + i of a plane. */
struct dot_q5_k {
        static constexpr uint32_t CHUNK = 64, UNIT = 32;
        static constexpr bool HAS_MIN = true;
        typedef k45_chunk W;
        static __device__ void load(const uint8_t *row, uint32_t n, uint32_t c, const chunk_place &at, W &w)
        {
                k45_load_header(row, n, c, w);
                k45_load_levels(row, at, w);
                uint2 planes = *(const uint2 *)(row + (size_t)n / QK_K * 144 + 8 * c);
#pragma unroll
                for (int i = 0; i < 8; i++) {
                        w.lo[i] |= ((planes.x >> i) & 0x01010101u) << 4;
                        w.hi[i] |= ((planes.y >> i) & 0x01010101u) << 4;
                }
        }
        static __device__ float dot(const W &w, uint32_t c, const chunk_place &at, const int8_t *xq, const float2 *xds)
        {
                return k45_dot(w, c, at, xq, xds);
        }
        static __device__ void levels(const W &w, int *q, float2 *am) { k45_levels(w, q, am); }
        static __device__ uint32_t unit_block(uint32_t c, uint32_t u) { return 2 * c + u; }
};

/* ---- Q6_K: chunk c = half h = c%4/2 of block c/4, l = 16o .. 16o+15 (o = c%2) of its runs r
 * = 0..3 (elements 128h + 32r + l): pieces ql_a, ql_b, qh (layout.h), run r from the low (r < 2)
 * or high nibbles of ql_a (r even) or ql_b (r odd) and bits 2r, 2r+1 of qh; levels 0..63 mean
 * level - 32 ---- */

struct dot_q6_k {
        static constexpr uint32_t CHUNK = 64, UNIT = 16;
        static constexpr bool HAS_MIN = false;
        struct W {
                int v[4][4];            /* [run][word], level - 32 as signed bytes */
                float s[4];             /* d * scale of each run */
        };
        static __device__ void load(const uint8_t *row, uint32_t n, uint32_t c, const chunk_place &at, W &w)
        {
                int qa[4], qb[4], qh[4];
                load_piece<3>(row, at, 0, qa);
                load_piece<3>(row, at, 1, qb);
                load_piece<3>(row, at, 2, qh);
#pragma unroll
                for (int i = 0; i < 4; i++) {
                        uint32_t a = (uint32_t)qa[i], b = (uint32_t)qb[i], h = (uint32_t)qh[i];
                        w.v[0][i] = bytes_minus((a & 0x0f0f0f0fu) | ((h << 4) & 0x30303030u), 0x20202020u);
                        w.v[1][i] = bytes_minus((b & 0x0f0f0f0fu) | ((h << 2) & 0x30303030u), 0x20202020u);
                        w.v[2][i] = bytes_minus(((a >> 4) & 0x0f0f0f0fu) | (h & 0x30303030u), 0x20202020u);
                        w.v[3][i] = bytes_minus(((b >> 4) & 0x0f0f0f0fu) | ((h >> 2) & 0x30303030u), 0x20202020u);
                }
                uint32_t nb = n / QK_K;
                uint32_t sc = *(const uint32_t *)(row + (size_t)nb * 192 + 4 * c);
                float d = half_bits_to_float(load_u16(row + (size_t)nb * 208 + 2 * (c / 4)));
#pragma unroll
                for (int r = 0; r < 4; r++)
                        w.s[r] = d * (float)(int8_t)byte_of(sc, r);
        }
        static __device__ float dot(const W &w, uint32_t c, const chunk_place &at, const int8_t *xq, const float2 *xds)
        {
                /* the runs' 32-element blocks: 8 (c / 4) + 4h + r */
                const float4 *ds = (const float4 *)(xds + (size_t)(c / 4) * 8 + 4 * (c % 4 / 2));
                float4 d01 = ds[0], d23 = ds[1];
                float dx[4] = { d01.x, d01.z, d23.x, d23.z };
                float acc = 0.0f;
#pragma unroll
                for (int r = 0; r < 4; r++) {
                        int x[4];
                        load_piece<4>(xq, at, r, x);
                        acc += w.s[r] * dx[r] * (float)dot_words<4>(w.v[r], x);
                }
                return acc;
        }
        /* units: the four runs (activation piece r), each its own scale */
        static __device__ void levels(const W &w, int *q, float2 *am)
        {
#pragma unroll
                for (int r = 0; r < 4; r++) {
#pragma unroll
                        for (int i = 0; i < 4; i++)
                                q[4 * r + i] = w.v[r][i];
                        am[r] = make_float2(w.s[r], 0.0f);
                }
        }
        static __device__ uint32_t unit_block(uint32_t c, uint32_t u) { return c / 4 * 8 + 4 * (c % 4 / 2) + u; }
};
