/* quant.c — conversions between float and the GGUF weight types: f16/bf16 rounding, the
 * dequantizers (bit-exact with ggml's reference formulas, in the same float operation order)
 * and the reference-quality quantizers used by rig synth and for activations. */
#include "quant.h"
#include "rig_assert.h"

#include <assert.h>
#include <math.h>
#include <string.h>


static uint32_t float_bits(float f)
{
        uint32_t u;
        memcpy(&u, &f, sizeof(u));
        return u;
}

static float bits_float(uint32_t u)
{
        float f;
        memcpy(&f, &u, sizeof(f));
        return f;
}

/* ---- half and bfloat16 ---------------------------------------------------------------- */

float rig_half_to_float(rig_half h)
{
        uint32_t sign = (uint32_t)(h & 0x8000u) << 16;
        uint32_t exp = (h >> 10) & 0x1fu;
        uint32_t mant = h & 0x3ffu;

        if (exp == 0x1f)                        /* inf, or nan with its payload kept */
                return bits_float(sign | 0x7f800000u | (mant << 13));
        if (exp != 0)
                return bits_float(sign | ((exp + 112) << 23) | (mant << 13));
        if (mant == 0)
                return bits_float(sign);
        /* Subnormal: mant * 2^-24, exact in float; normalise the mantissa. */
        exp = 113;
        while (!(mant & 0x400u)) {
                mant <<= 1;
                exp--;
        }
        return bits_float(sign | (exp << 23) | ((mant & 0x3ffu) << 13));
}

/* v >> shift rounded to nearest, ties to even (shift in 1..31). */
static uint32_t shift_round_even(uint32_t v, unsigned shift)
{
        uint32_t q = v >> shift;
        uint32_t rem = v & ((1u << shift) - 1);
        uint32_t half = 1u << (shift - 1);
        if (rem > half || (rem == half && (q & 1)))
                q++;
        return q;
}

rig_half rig_float_to_half(float f)
{
        uint32_t x = float_bits(f);
        uint16_t sign = (uint16_t)((x >> 16) & 0x8000u);
        x &= 0x7fffffffu;

        if (x > 0x7f800000u)                    /* nan stays a quiet nan, top payload bits kept */
                return sign | 0x7e00u | (uint16_t)((x >> 13) & 0x3ffu);
        if (x >= 0x47800000u)                   /* >= 65536 (and inf): inf */
                return sign | 0x7c00u;
        if (x >= 0x38800000u)                   /* normal half; a carry may round up to inf */
                return sign | (uint16_t)(shift_round_even(x - 0x38000000u, 13));
        /* Subnormal half or zero: value = m * 2^(e-150), in units of 2^-24 that is m >> (126-e). */
        uint32_t e = x >> 23;
        if (e < 102)                            /* < 2^-25: rounds to (signed) zero */
                return sign;
        uint32_t m = (x & 0x7fffffu) | 0x800000u;
        return sign | (uint16_t)shift_round_even(m, 126 - e);
}

float rig_bf16_to_float(uint16_t h)
{
        return bits_float((uint32_t)h << 16);
}

uint16_t rig_float_to_bf16(float f)
{
        uint32_t x = float_bits(f);
        if ((x & 0x7fffffffu) > 0x7f800000u)    /* nan: truncating could make it inf; force quiet */
                return (uint16_t)((x >> 16) | 0x40u);
        return (uint16_t)((x + 0x7fffu + ((x >> 16) & 1)) >> 16);
}

/* ---- dequantize ------------------------------------------------------------------------ */

/* The 12 scale bytes of Q4_K/Q5_K hold 8 (scale, min) pairs of 6 bits, sub-block j of 32:
 *   j < 4:  scale = q[j] & 63,                      min = q[j+4] & 63
 *   j >= 4: scale = q[j+4] & 15 | (q[j-4] >> 6) << 4, min = q[j+4] >> 4 | (q[j] >> 6) << 4 */
static void k4_scale_min(int j, const uint8_t *q, uint8_t *scale, uint8_t *min)
{
        if (j < 4) {
                *scale = q[j] & 63;
                *min = q[j + 4] & 63;
        } else {
                *scale = (uint8_t)((q[j + 4] & 0xf) | ((q[j - 4] >> 6) << 4));
                *min = (uint8_t)((q[j + 4] >> 4) | ((q[j] >> 6) << 4));
        }
}

static void k4_pack_scale_min(int j, uint8_t *q, uint8_t scale, uint8_t min)
{
        if (j < 4) {
                q[j] = scale;
                q[j + 4] = min;
        } else {
                q[j + 4] = (uint8_t)((scale & 0xf) | ((min & 0xf) << 4));
                q[j - 4] |= (uint8_t)((scale >> 4) << 6);
                q[j] |= (uint8_t)((min >> 4) << 6);
        }
}

/* y[32] = (q - 8) * d per block; low nibbles are elements 0..15, high nibbles 16..31. */
static void dequantize_q4_0(const struct block_q4_0 *x, float *y, size_t nb)
{
        for (size_t i = 0; i < nb; i++, y += QK4_0) {
                float d = rig_half_to_float(x[i].d);
                for (int j = 0; j < QK4_0 / 2; j++) {
                        y[j] = (float)((x[i].qs[j] & 0xf) - 8) * d;
                        y[j + QK4_0 / 2] = (float)((x[i].qs[j] >> 4) - 8) * d;
                }
        }
}

static void dequantize_q8_0(const struct block_q8_0 *x, float *y, size_t nb)
{
        for (size_t i = 0; i < nb; i++, y += QK8_0) {
                float d = rig_half_to_float(x[i].d);
                for (int j = 0; j < QK8_0; j++)
                        y[j] = (float)x[i].qs[j] * d;
        }
}

/* Per 64 elements: qs[32] bytes, low nibbles = sub-block 2k, high = 2k+1;
 * y = (d * scale) * q - (dmin * min). */
static void dequantize_q4_K(const struct block_q4_K *x, float *y, size_t nb)
{
        for (size_t i = 0; i < nb; i++) {
                float d = rig_half_to_float(x[i].d);
                float dmin = rig_half_to_float(x[i].dmin);
                const uint8_t *q = x[i].qs;
                for (int k = 0; k < QK_K / 64; k++, q += 32, y += 64) {
                        uint8_t sc, m;
                        k4_scale_min(2 * k, x[i].scales, &sc, &m);
                        float d1 = d * sc, m1 = dmin * m;
                        k4_scale_min(2 * k + 1, x[i].scales, &sc, &m);
                        float d2 = d * sc, m2 = dmin * m;
                        for (int l = 0; l < 32; l++) {
                                y[l] = d1 * (float)(q[l] & 0xf) - m1;
                                y[l + 32] = d2 * (float)(q[l] >> 4) - m2;
                        }
                }
        }
}

/* As Q4_K, plus a 5th bit: element l of 64-chunk k takes bit 2k of qh[l], element l+32 bit 2k+1. */
static void dequantize_q5_K(const struct block_q5_K *x, float *y, size_t nb)
{
        for (size_t i = 0; i < nb; i++) {
                float d = rig_half_to_float(x[i].d);
                float dmin = rig_half_to_float(x[i].dmin);
                const uint8_t *ql = x[i].qs;
                const uint8_t *qh = x[i].qh;
                for (int k = 0; k < QK_K / 64; k++, ql += 32, y += 64) {
                        uint8_t sc, m;
                        k4_scale_min(2 * k, x[i].scales, &sc, &m);
                        float d1 = d * sc, m1 = dmin * m;
                        k4_scale_min(2 * k + 1, x[i].scales, &sc, &m);
                        float d2 = d * sc, m2 = dmin * m;
                        uint8_t u1 = (uint8_t)(1u << (2 * k)), u2 = (uint8_t)(2u << (2 * k));
                        for (int l = 0; l < 32; l++) {
                                int lo = (ql[l] & 0xf) + ((qh[l] & u1) ? 16 : 0);
                                int hi = (ql[l] >> 4) + ((qh[l] & u2) ? 16 : 0);
                                y[l] = d1 * (float)lo - m1;
                                y[l + 32] = d2 * (float)hi - m2;
                        }
                }
        }
}

/* Per 128 elements: ql[64], qh[32], scales[8]. Element l + 32*g (l < 32, g < 4) has low bits
 * ql[l + 32*(g&1)] >> 4*(g>>1) and high bits (qh[l] >> 2g) & 3; value (q - 32) with scale
 * scales[g*2 + l/16]; y = (d * scale) * (q - 32). */
static void dequantize_q6_K(const struct block_q6_K *x, float *y, size_t nb)
{
        for (size_t i = 0; i < nb; i++) {
                float d = rig_half_to_float(x[i].d);
                const uint8_t *ql = x[i].ql;
                const uint8_t *qh = x[i].qh;
                const int8_t *sc = x[i].scales;
                for (int n = 0; n < QK_K / 128; n++, ql += 64, qh += 32, sc += 8, y += 128) {
                        for (int l = 0; l < 32; l++) {
                                int is = l / 16;
                                int q1 = ((ql[l] & 0xf) | (((qh[l] >> 0) & 3) << 4)) - 32;
                                int q2 = ((ql[l + 32] & 0xf) | (((qh[l] >> 2) & 3) << 4)) - 32;
                                int q3 = ((ql[l] >> 4) | (((qh[l] >> 4) & 3) << 4)) - 32;
                                int q4 = ((ql[l + 32] >> 4) | (((qh[l] >> 6) & 3) << 4)) - 32;
                                y[l] = d * (float)sc[is + 0] * (float)q1;
                                y[l + 32] = d * (float)sc[is + 2] * (float)q2;
                                y[l + 64] = d * (float)sc[is + 4] * (float)q3;
                                y[l + 96] = d * (float)sc[is + 6] * (float)q4;
                        }
                }
        }
}

static void dequantize_q8_K(const struct block_q8_K *x, float *y, size_t nb)
{
        for (size_t i = 0; i < nb; i++, y += QK_K)
                for (int j = 0; j < QK_K; j++)
                        y[j] = x[i].d * (float)x[i].m[j / 32] * (float)x[i].qs[j];
}

void rig_dequantize_row(enum rig_type type, const void *src, float *dst, size_t n)
{
        switch (type) {
        case RIG_TYPE_F32:
                memcpy(dst, src, n * sizeof(float));
                return;
        case RIG_TYPE_F16: {
                const rig_half *h = src;
                for (size_t i = 0; i < n; i++)
                        dst[i] = rig_half_to_float(h[i]);
                return;
        }
        case RIG_TYPE_BF16: {
                const uint16_t *h = src;
                for (size_t i = 0; i < n; i++)
                        dst[i] = rig_bf16_to_float(h[i]);
                return;
        }
        case RIG_TYPE_Q4_0:
                RIG_ASSERT(n % QK4_0 == 0, "q4_0 row of %zu", n);
                dequantize_q4_0(src, dst, n / QK4_0);
                return;
        case RIG_TYPE_Q8_0:
                RIG_ASSERT(n % QK8_0 == 0, "q8_0 row of %zu", n);
                dequantize_q8_0(src, dst, n / QK8_0);
                return;
        case RIG_TYPE_Q4_K:
                RIG_ASSERT(n % QK_K == 0, "q4_K row of %zu", n);
                dequantize_q4_K(src, dst, n / QK_K);
                return;
        case RIG_TYPE_Q5_K:
                RIG_ASSERT(n % QK_K == 0, "q5_K row of %zu", n);
                dequantize_q5_K(src, dst, n / QK_K);
                return;
        case RIG_TYPE_Q6_K:
                RIG_ASSERT(n % QK_K == 0, "q6_K row of %zu", n);
                dequantize_q6_K(src, dst, n / QK_K);
                return;
        case RIG_TYPE_Q8_K:
                RIG_ASSERT(n % QK_K == 0, "q8_K row of %zu", n);
                dequantize_q8_K(src, dst, n / QK_K);
                return;
        }
        RIG_ASSERT(0, "dequantize of type %d", (int)type);
}

/* ---- quantize -------------------------------------------------------------------------- */

/* Round to nearest, ties to even (the default rounding mode), as ggml's nearest_int. */
static int nearest_int(float f)
{
        return (int)lrintf(f);
}

static int clamp_int(int v, int lo, int hi)
{
        return v < lo ? lo : v > hi ? hi : v;
}

/* The element of largest magnitude, with its sign (first one on ties). */
static float signed_absmax(const float *x, int n)
{
        float amax = 0, max = 0;
        for (int i = 0; i < n; i++) {
                if (fabsf(x[i]) > amax) {
                        amax = fabsf(x[i]);
                        max = x[i];
                }
        }
        return max;
}

/* d = max / -8 maps the extreme element to q = 0 (exactly -8 * d) and uses all 16 levels. */
static void quantize_q4_0(const float *x, struct block_q4_0 *y, size_t nb)
{
        for (size_t i = 0; i < nb; i++, x += QK4_0) {
                float d = signed_absmax(x, QK4_0) / -8.0f;
                float id = d != 0 ? 1.0f / d : 0.0f;
                y[i].d = rig_float_to_half(d);
                for (int j = 0; j < QK4_0 / 2; j++) {
                        int lo = clamp_int((int)(x[j] * id + 8.5f), 0, 15);
                        int hi = clamp_int((int)(x[j + 16] * id + 8.5f), 0, 15);
                        y[i].qs[j] = (uint8_t)(lo | (hi << 4));
                }
        }
}

/* v rounded to the nearest integer, ties to even, for |v| <= 2^22: adding 1.5 * 2^23 leaves
 * the integer in the low mantissa bits (exact in float; vectorizes, unlike lrintf). */
static int round_small(float v)
{
        int32_t i;
        float t = v + 12582912.0f;
        memcpy(&i, &t, sizeof(i));
        return (i & 0x007fffff) - 0x00400000;
}

/* The 8-bit activation quantizers' levels: q[l] = the level in -127..127 nearest to x[l] with
 * the scale d as it is stored (so q * d is the closest value the block can hold). The quotient
 * is a single correctly rounded division, clamped before rounding (the clamp matters only when
 * storing rounded d down, or made it subnormal, and left amax / d a little over 127). */
static void round_to_levels(const float *x, float d, int8_t *q, int n)
{
        if (d == 0) {                   /* all zero, or amax so small that amax / 127 underflows */
                memset(q, 0, (size_t)n);
                return;
        }
        for (int l = 0; l < n; l++) {
                float v = x[l] / d;
                v = v < -127.0f ? -127.0f : v > 127.0f ? 127.0f : v;
                q[l] = (int8_t)round_small(v);
        }
}

static float absmax(const float *x, int n)
{
        float amax = 0;
        for (int i = 0; i < n; i++) {
                float a = fabsf(x[i]);
                amax = a > amax ? a : amax;
        }
        return amax;
}

/* d = amax / 127 rounded to f16; the levels are taken against that f16 value. */
static void quantize_q8_0(const float *x, struct block_q8_0 *y, size_t nb)
{
        for (size_t i = 0; i < nb; i++, x += QK8_0) {
                y[i].d = rig_float_to_half(absmax(x, QK8_0) / 127.0f);
                round_to_levels(x, rig_half_to_float(y[i].d), y[i].qs, QK8_0);
        }
}

/* Symmetric 8-bit, q in -127..127 so |q| fits the unsigned operand of maddubs. The block scale
 * is d = amax / (127 * MAX_MULT); sub-block j takes the smallest multiplier m_j with
 * amax_j <= 127 * d * m_j, so its step d * m_j is within a factor (1 + 1/(MAX_MULT * amax_j /
 * amax)) of its own amax_j / 127. bsums[g] = sum of the 16 q of group g, for the mins of the K
 * types (and Q6_K's -32 offset). */
static void quantize_q8_K(const float *x, struct block_q8_K *y, size_t nb)
{
        for (size_t i = 0; i < nb; i++, x += QK_K) {
                memset(&y[i], 0, sizeof(y[i]));
                float amax = absmax(x, QK_K);
                float d = amax / (127.0f * Q8_K_MAX_MULT);
                y[i].d = d;
                for (int j = 0; j < QK_K / 32; j++) {
                        int m = Q8_K_MAX_MULT;
                        if (d > 0) {
                                float need = absmax(x + 32 * j, 32) / (127.0f * d);
                                m = clamp_int((int)ceilf(need), 1, Q8_K_MAX_MULT);
                        }
                        y[i].m[j] = (int16_t)m;
                        round_to_levels(x + 32 * j, d * (float)m, y[i].qs + 32 * j, 32);
                }
                for (int g = 0; g < QK_K / 16; g++) {
                        int s = 0;
                        for (int l = 0; l < 16; l++)
                                s += y[i].qs[16 * g + l];
                        y[i].bsums[g] = (int16_t)s;
                }
        }
}

/* Fit x[n] ≈ scale * L + min (L in 0..nmax, min <= 0) minimising the weighted squared error:
 * start from the min/max grid, then try nstep+1 grids stretched by (rmin + rdelta*is) levels,
 * and for each take the least-squares scale and min for the L it gives. Returns scale, and
 * -min in *neg_min. The same search as ggml's reference K quantizers (make_qkx2_quants). */
static float fit_scale_min(int n, int nmax, const float *x, const float *w, uint8_t *L,
                           float *neg_min, float rmin, float rdelta, int nstep)
{
        uint8_t Laux[32];
        float min = x[0], max = x[0], sum_w = 0, sum_x = 0;
        for (int i = 0; i < n; i++) {
                min = fminf(min, x[i]);
                max = fmaxf(max, x[i]);
                sum_w += w[i];
                sum_x += w[i] * x[i];
        }
        if (min > 0)
                min = 0;
        if (max == min) {
                memset(L, 0, (size_t)n);
                *neg_min = -min;
                return 0;
        }
        float iscale = nmax / (max - min);
        float scale = 1 / iscale;
        float best_err = 0;
        for (int i = 0; i < n; i++) {
                L[i] = (uint8_t)clamp_int(nearest_int(iscale * (x[i] - min)), 0, nmax);
                float diff = scale * L[i] + min - x[i];
                best_err += w[i] * diff * diff;
        }
        for (int is = 0; is <= nstep; is++) {
                iscale = (rmin + rdelta * is + nmax) / (max - min);
                float sum_l = 0, sum_l2 = 0, sum_xl = 0;
                for (int i = 0; i < n; i++) {
                        int l = clamp_int(nearest_int(iscale * (x[i] - min)), 0, nmax);
                        Laux[i] = (uint8_t)l;
                        sum_l += w[i] * l;
                        sum_l2 += w[i] * l * l;
                        sum_xl += w[i] * l * x[i];
                }
                float D = sum_w * sum_l2 - sum_l * sum_l;
                if (D <= 0)
                        continue;
                float this_scale = (sum_w * sum_xl - sum_x * sum_l) / D;
                float this_min = (sum_l2 * sum_x - sum_l * sum_xl) / D;
                if (this_min > 0) {
                        this_min = 0;
                        this_scale = sum_xl / sum_l2;
                }
                float err = 0;
                for (int i = 0; i < n; i++) {
                        float diff = this_scale * Laux[i] + this_min - x[i];
                        err += w[i] * diff * diff;
                }
                if (err < best_err) {
                        memcpy(L, Laux, (size_t)n);
                        best_err = err;
                        scale = this_scale;
                        min = this_min;
                }
        }
        *neg_min = -min;
        return scale;
}

/* Q4_K/Q5_K: fit each 32-element sub-block (weights av|x| + |x|, as the reference), quantize
 * the 8 scales and 8 mins to 6 bits against the largest, then requantize every element with
 * the scales as stored. L[256] gets levels 0..nmax. */
static void quantize_k_sub_blocks(const float *x, int nmax, float rmin, int nstep,
                                  rig_half *d_out, rig_half *dmin_out, uint8_t *packed, uint8_t *L)
{
        float scales[QK_K / 32], mins[QK_K / 32], w[32];
        float max_scale = 0, max_min = 0;
        for (int j = 0; j < QK_K / 32; j++) {
                const float *xs = x + 32 * j;
                float sum_x2 = 0;
                for (int l = 0; l < 32; l++)
                        sum_x2 += xs[l] * xs[l];
                float av_x = sqrtf(sum_x2 / 32);
                for (int l = 0; l < 32; l++)
                        w[l] = av_x + fabsf(xs[l]);
                scales[j] = fit_scale_min(32, nmax, xs, w, L + 32 * j, &mins[j], rmin, 0.1f, nstep);
                max_scale = fmaxf(max_scale, scales[j]);
                max_min = fmaxf(max_min, mins[j]);
        }
        float inv_scale = max_scale > 0 ? 63.0f / max_scale : 0.0f;
        float inv_min = max_min > 0 ? 63.0f / max_min : 0.0f;
        memset(packed, 0, K_SCALE_SIZE);
        for (int j = 0; j < QK_K / 32; j++) {
                uint8_t ls = (uint8_t)clamp_int(nearest_int(inv_scale * scales[j]), 0, 63);
                uint8_t lm = (uint8_t)clamp_int(nearest_int(inv_min * mins[j]), 0, 63);
                k4_pack_scale_min(j, packed, ls, lm);
        }
        *d_out = rig_float_to_half(max_scale / 63.0f);
        *dmin_out = rig_float_to_half(max_min / 63.0f);
        float d_all = rig_half_to_float(*d_out), dmin_all = rig_half_to_float(*dmin_out);
        for (int j = 0; j < QK_K / 32; j++) {
                uint8_t sc, m;
                k4_scale_min(j, packed, &sc, &m);
                float d = d_all * sc;
                if (d == 0)
                        continue;
                float dm = dmin_all * m;
                for (int l = 0; l < 32; l++)
                        L[32 * j + l] = (uint8_t)clamp_int(nearest_int((x[32 * j + l] + dm) / d), 0, nmax);
        }
}

static void quantize_q4_K(const float *x, struct block_q4_K *y, size_t nb)
{
        uint8_t L[QK_K];
        for (size_t i = 0; i < nb; i++, x += QK_K) {
                quantize_k_sub_blocks(x, 15, -1.0f, 20, &y[i].d, &y[i].dmin, y[i].scales, L);
                for (int k = 0; k < QK_K / 64; k++)
                        for (int l = 0; l < 32; l++)
                                y[i].qs[32 * k + l] = (uint8_t)(L[64 * k + l] | (L[64 * k + l + 32] << 4));
        }
}

static void quantize_q5_K(const float *x, struct block_q5_K *y, size_t nb)
{
        uint8_t L[QK_K];
        for (size_t i = 0; i < nb; i++, x += QK_K) {
                quantize_k_sub_blocks(x, 31, -0.5f, 15, &y[i].d, &y[i].dmin, y[i].scales, L);
                memset(y[i].qh, 0, sizeof(y[i].qh));
                for (int k = 0; k < QK_K / 64; k++) {
                        for (int l = 0; l < 32; l++) {
                                int lo = L[64 * k + l], hi = L[64 * k + l + 32];
                                y[i].qh[l] |= (uint8_t)(((lo >> 4) << (2 * k)) | ((hi >> 4) << (2 * k + 1)));
                                y[i].qs[32 * k + l] = (uint8_t)((lo & 0xf) | ((hi & 0xf) << 4));
                        }
                }
        }
}

/* Symmetric fit of x[16] ≈ scale * (L - 32), L - 32 in -32..31, weights x^2: try 19 grids
 * around -32/max and keep the least-squares scale with the best fit (ggml's make_qx_quants). */
static float fit_scale_sym(const float *x, int8_t *L)
{
        const int n = 16, nmax = 32;
        float max = signed_absmax(x, n);
        if (fabsf(max) < 1e-15f) {
                memset(L, 0, (size_t)n);
                return 0;
        }
        float best = 0, scale = 0;
        bool have = false;
        for (int is = -9; is <= 9; is++) {
                float iscale = -(nmax + 0.1f * is) / max;
                float sumlx = 0, suml2 = 0;
                int8_t Laux[16];
                for (int i = 0; i < n; i++) {
                        int l = clamp_int(nearest_int(iscale * x[i]), -nmax, nmax - 1);
                        Laux[i] = (int8_t)l;
                        float w = x[i] * x[i];
                        sumlx += w * x[i] * l;
                        suml2 += w * l * l;
                }
                if (suml2 > 0 && (!have || sumlx * sumlx > best * suml2)) {
                        have = true;
                        memcpy(L, Laux, (size_t)n);
                        scale = sumlx / suml2;
                        best = scale * sumlx;
                }
        }
        return scale;
}

/* Q6_K: 16 groups of 16 with int8 scales against a half super-scale; requantize each element
 * with the stored scale; pack per 128 as described at dequantize_q6_K. */
static void quantize_q6_K_block(const float *x, struct block_q6_K *y)
{
        int8_t L6[QK_K];
        uint8_t L[QK_K];
        float scales[QK_K / 16];
        float max_scale = 0, max_abs = 0;
        for (int g = 0; g < QK_K / 16; g++) {
                scales[g] = fit_scale_sym(x + 16 * g, L6 + 16 * g);
                if (fabsf(scales[g]) > max_abs) {
                        max_abs = fabsf(scales[g]);
                        max_scale = scales[g];
                }
        }
        memset(y, 0, sizeof(*y));
        if (max_abs < 1e-15f)
                return;
        float iscale = -128.0f / max_scale;
        y->d = rig_float_to_half(1 / iscale);
        for (int g = 0; g < QK_K / 16; g++)
                y->scales[g] = (int8_t)clamp_int(nearest_int(iscale * scales[g]), -128, 127);
        float d_all = rig_half_to_float(y->d);
        for (int j = 0; j < QK_K; j++) {
                float d = d_all * y->scales[j / 16];
                L[j] = d == 0 ? 32 : (uint8_t)(clamp_int(nearest_int(x[j] / d), -32, 31) + 32);
        }
        for (int n = 0; n < QK_K / 128; n++) {
                const uint8_t *Ln = L + 128 * n;
                uint8_t *ql = y->ql + 64 * n, *qh = y->qh + 32 * n;
                for (int l = 0; l < 32; l++) {
                        ql[l] = (uint8_t)((Ln[l] & 0xf) | ((Ln[l + 64] & 0xf) << 4));
                        ql[l + 32] = (uint8_t)((Ln[l + 32] & 0xf) | ((Ln[l + 96] & 0xf) << 4));
                        qh[l] = (uint8_t)((Ln[l] >> 4) | ((Ln[l + 32] >> 4) << 2) |
                                          ((Ln[l + 64] >> 4) << 4) | ((Ln[l + 96] >> 4) << 6));
                }
        }
}

void rig_quantize_row(enum rig_type type, const float *src, void *dst, size_t n)
{
        switch (type) {
        case RIG_TYPE_F32:
                memcpy(dst, src, n * sizeof(float));
                return;
        case RIG_TYPE_F16: {
                rig_half *h = dst;
                for (size_t i = 0; i < n; i++)
                        h[i] = rig_float_to_half(src[i]);
                return;
        }
        case RIG_TYPE_BF16: {
                uint16_t *h = dst;
                for (size_t i = 0; i < n; i++)
                        h[i] = rig_float_to_bf16(src[i]);
                return;
        }
        case RIG_TYPE_Q4_0:
                RIG_ASSERT(n % QK4_0 == 0, "q4_0 row of %zu", n);
                quantize_q4_0(src, dst, n / QK4_0);
                return;
        case RIG_TYPE_Q8_0:
                RIG_ASSERT(n % QK8_0 == 0, "q8_0 row of %zu", n);
                quantize_q8_0(src, dst, n / QK8_0);
                return;
        case RIG_TYPE_Q4_K:
                RIG_ASSERT(n % QK_K == 0, "q4_K row of %zu", n);
                quantize_q4_K(src, dst, n / QK_K);
                return;
        case RIG_TYPE_Q5_K:
                RIG_ASSERT(n % QK_K == 0, "q5_K row of %zu", n);
                quantize_q5_K(src, dst, n / QK_K);
                return;
        case RIG_TYPE_Q6_K: {
                RIG_ASSERT(n % QK_K == 0, "q6_K row of %zu", n);
                struct block_q6_K *y = dst;
                for (size_t i = 0; i < n / QK_K; i++)
                        quantize_q6_K_block(src + i * QK_K, &y[i]);
                return;
        }
        case RIG_TYPE_Q8_K:
                RIG_ASSERT(n % QK_K == 0, "q8_K row of %zu", n);
                quantize_q8_K(src, dst, n / QK_K);
                return;
        }
        RIG_ASSERT(0, "quantize to type %d", (int)type);
}
