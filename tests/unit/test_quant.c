/* test_quant.c — the weight types: f16/bf16 rounding, dequantize of hand-packed blocks,
 * quantize→dequantize error per type, and the scalar and AVX2 dot products against
 * dequantize-then-dot. `test_quant --dump DIR` instead writes blocks and their dequantized
 * floats for tests/unit/quant_reference.py, the independent layout oracle. */
#include <errno.h>
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "quant.h"
#include "vec_dot.h"

/* Test hooks defined in runtime/cpu/vec_dot.c (not API). */

/* ---- helpers --------------------------------------------------------------------------- */

static uint64_t rng_state = 0x9e3779b97f4a7c15ull;

static uint32_t rng_u32(void)
{
        rng_state ^= rng_state << 13;
        rng_state ^= rng_state >> 7;
        rng_state ^= rng_state << 17;
        return (uint32_t)(rng_state >> 16);
}

static float rng_uniform(void)        /* [0, 1) */
{
        return (float)(rng_u32() >> 8) / 16777216.0f;
}

static float rng_gauss(void)
{
        float u = rng_uniform() + 1e-7f, v = rng_uniform();
        return sqrtf(-2.0f * logf(u)) * cosf(6.2831853f * v);
}

static void fill_gauss(float *x, size_t n, float sigma)
{
        for (size_t i = 0; i < n; i++)
                x[i] = sigma * rng_gauss();
}

static uint32_t f2u(float f)
{
        uint32_t u;
        memcpy(&u, &f, 4);
        return u;
}

static float u2f(uint32_t u)
{
        float f;
        memcpy(&f, &u, 4);
        return f;
}

static void *xmalloc(size_t n)
{
        void *p = malloc(n ? n : 1);
        assert_non_null(p);
        return p;
}

static const enum rig_type weight_types[] = {
        RIG_TYPE_F32, RIG_TYPE_F16, RIG_TYPE_BF16, RIG_TYPE_Q4_0,
        RIG_TYPE_Q8_0, RIG_TYPE_Q4_K, RIG_TYPE_Q5_K, RIG_TYPE_Q6_K,
};

static const char *type_name(enum rig_type t)
{
        switch (t) {
        case RIG_TYPE_F32: return "f32";
        case RIG_TYPE_F16: return "f16";
        case RIG_TYPE_BF16: return "bf16";
        case RIG_TYPE_Q4_0: return "q4_0";
        case RIG_TYPE_Q8_0: return "q8_0";
        case RIG_TYPE_Q4_K: return "q4_K";
        case RIG_TYPE_Q5_K: return "q5_K";
        case RIG_TYPE_Q6_K: return "q6_K";
        case RIG_TYPE_Q8_K: return "q8_K";
        }
        return "?";
}

static size_t block_elems(enum rig_type t)
{
        switch (t) {
        case RIG_TYPE_Q4_0: case RIG_TYPE_Q8_0: return 32;
        case RIG_TYPE_Q4_K: case RIG_TYPE_Q5_K: case RIG_TYPE_Q6_K: case RIG_TYPE_Q8_K: return QK_K;
        default: return 1;
        }
}

/* ---- f16 / bf16 ------------------------------------------------------------------------ */

static void test_half_rounds_to_nearest_even(void **state)
{
        (void)state;
        assert_int_equal(rig_float_to_half(0.0f), 0x0000);
        assert_int_equal(rig_float_to_half(-0.0f), 0x8000);
        assert_int_equal(rig_float_to_half(1.0f), 0x3c00);
        assert_int_equal(rig_float_to_half(-2.0f), 0xc000);
        assert_int_equal(rig_float_to_half(65504.0f), 0x7bff);          /* largest finite */
        assert_int_equal(rig_float_to_half(65519.0f), 0x7bff);
        assert_int_equal(rig_float_to_half(65520.0f), 0x7c00);          /* tie, odd → up → inf */
        assert_int_equal(rig_float_to_half(1e6f), 0x7c00);
        assert_int_equal(rig_float_to_half(INFINITY), 0x7c00);
        assert_int_equal(rig_float_to_half(-INFINITY), 0xfc00);
        assert_int_equal(rig_float_to_half(ldexpf(1, -24)), 0x0001);    /* smallest subnormal */
        assert_int_equal(rig_float_to_half(ldexpf(1, -25)), 0x0000);    /* tie → even (0) */
        assert_int_equal(rig_float_to_half(ldexpf(1.0001f, -25)), 0x0001);
        assert_int_equal(rig_float_to_half(ldexpf(3, -25)), 0x0002);    /* 1.5 units: tie → 2 */
        assert_int_equal(rig_float_to_half(ldexpf(5, -25)), 0x0002);    /* 2.5 units: tie → 2 */
        assert_int_equal(rig_float_to_half(-ldexpf(1, -30)), 0x8000);   /* underflow keeps sign */
        assert_int_equal(rig_float_to_half(ldexpf(1023, -24)), 0x03ff); /* largest subnormal */
        assert_int_equal(rig_float_to_half(ldexpf(2047, -25)), 0x0400); /* rounds up into normal */
        assert_int_equal(rig_float_to_half(ldexpf(1, -14)), 0x0400);    /* smallest normal */
        assert_int_equal(rig_float_to_half(1.0f + ldexpf(1, -11)), 0x3c00);     /* tie → even */
        assert_int_equal(rig_float_to_half(1.0f + ldexpf(3, -11)), 0x3c02);     /* tie → even */
        assert_int_equal(rig_float_to_half(1.0f + ldexpf(1, -11) + ldexpf(1, -20)), 0x3c01);
        assert_true(isnan(rig_half_to_float(rig_float_to_half(NAN))));
        assert_true(isnan(rig_half_to_float(rig_float_to_half(u2f(0x7f800001)))));  /* low payload */

        assert_true(rig_half_to_float(0x0001) == ldexpf(1, -24));
        assert_true(rig_half_to_float(0x03ff) == ldexpf(1023, -24));
        assert_true(rig_half_to_float(0x3555) == 0.333251953125f);
        assert_int_equal(f2u(rig_half_to_float(0x8000)), 0x80000000u);
        assert_true(rig_half_to_float(0xfc00) == -INFINITY);
        assert_true(isnan(rig_half_to_float(0x7e00)));
        assert_true(isnan(rig_half_to_float(0x7c01)));
}

/* Every finite or infinite half survives half→float→half; nans stay nans. */
static void test_half_round_trips_every_value(void **state)
{
        (void)state;
        for (uint32_t h = 0; h < 0x10000; h++) {
                float f = rig_half_to_float((rig_half)h);
                if ((h & 0x7c00) == 0x7c00 && (h & 0x3ff)) {
                        assert_true(isnan(f));
                        assert_true(isnan(rig_half_to_float(rig_float_to_half(f))));
                        continue;
                }
                assert_int_equal(rig_float_to_half(f), h);
        }
}

static void test_bf16_rounds_to_nearest_even_and_keeps_nan(void **state)
{
        (void)state;
        assert_int_equal(rig_float_to_bf16(0.0f), 0x0000);
        assert_int_equal(rig_float_to_bf16(-0.0f), 0x8000);
        assert_int_equal(rig_float_to_bf16(1.0f), 0x3f80);
        assert_int_equal(rig_float_to_bf16(u2f(0x3f808000)), 0x3f80);  /* tie, even stays */
        assert_int_equal(rig_float_to_bf16(u2f(0x3f818000)), 0x3f82);  /* tie, odd goes up */
        assert_int_equal(rig_float_to_bf16(u2f(0x3f808001)), 0x3f81);
        assert_int_equal(rig_float_to_bf16(u2f(0x00010000)), 0x0001);  /* subnormal */
        assert_int_equal(rig_float_to_bf16(u2f(0x00008000)), 0x0000);  /* subnormal tie → 0 */
        assert_int_equal(rig_float_to_bf16(u2f(0x7f7fffff)), 0x7f80);  /* rounds up to inf */
        assert_int_equal(rig_float_to_bf16(INFINITY), 0x7f80);
        assert_int_equal(rig_float_to_bf16(-INFINITY), 0xff80);
        /* A nan whose payload is only in the low 16 bits would truncate to inf. */
        assert_true(isnan(rig_bf16_to_float(rig_float_to_bf16(u2f(0x7f800001)))));
        assert_true(isnan(rig_bf16_to_float(rig_float_to_bf16(u2f(0xff800001)))));
        assert_true(isnan(rig_bf16_to_float(rig_float_to_bf16(NAN))));
        assert_true(rig_bf16_to_float(0x3f80) == 1.0f);
        assert_int_equal(f2u(rig_bf16_to_float(0x8001)), 0x80010000u);
        for (uint32_t h = 0; h < 0x10000; h++) {
                float f = rig_bf16_to_float((uint16_t)h);
                if (isnan(f))
                        assert_true(isnan(rig_bf16_to_float(rig_float_to_bf16(f))));
                else
                        assert_int_equal(rig_float_to_bf16(f), h);
        }
}

/* ---- dequantize of hand-packed blocks --------------------------------------------------- */

static void test_float_types_dequantize(void **state)
{
        (void)state;
        float src[5] = { 1.5f, -0.0f, 65504.0f, ldexpf(1, -24), -3.25f }, out[5];
        rig_dequantize_row(RIG_TYPE_F32, src, out, 5);
        assert_memory_equal(src, out, sizeof(src));
        rig_half h[5] = { 0x3e00, 0x8000, 0x7bff, 0x0001, 0xc280 };
        rig_dequantize_row(RIG_TYPE_F16, h, out, 5);
        assert_memory_equal(src, out, sizeof(src));
        uint16_t b[3] = { 0x3fc0, 0x8000, 0xc050 };
        rig_dequantize_row(RIG_TYPE_BF16, b, out, 3);
        assert_true(out[0] == 1.5f && f2u(out[1]) == 0x80000000u && out[2] == -3.25f);
}

/* Two blocks; the first low nibble is element 0, the first high nibble element 16. */
static void test_q4_0_dequantizes_hand_packed_block(void **state)
{
        (void)state;
        struct block_q4_0 b[2];
        float out[64];
        for (int k = 0; k < 2; k++) {
                b[k].d = k ? 0xb400 : 0x3800;                   /* 0.5, then -0.25 */
                for (int j = 0; j < 16; j++)
                        b[k].qs[j] = (uint8_t)(j | ((15 - j) << 4));
        }
        rig_dequantize_row(RIG_TYPE_Q4_0, b, out, 64);
        for (int k = 0; k < 2; k++) {
                float d = k ? -0.25f : 0.5f;
                for (int j = 0; j < 16; j++) {
                        assert_true(out[32 * k + j] == (float)(j - 8) * d);
                        assert_true(out[32 * k + 16 + j] == (float)(7 - j) * d);
                }
        }
}

static void test_q8_0_dequantizes_hand_packed_block(void **state)
{
        (void)state;
        struct block_q8_0 b = { .d = 0x3400 };                  /* 0.25 */
        float out[32];
        for (int j = 0; j < 32; j++)
                b.qs[j] = (int8_t)(j * 8 - 128);
        rig_dequantize_row(RIG_TYPE_Q8_0, &b, out, 32);
        for (int j = 0; j < 32; j++)
                assert_true(out[j] == (float)(j * 8 - 128) * 0.25f);
}

/* The 6-bit (scale, min) pairs packed by hand as the format says: bytes 0-3 hold the scales
 * 0-3 and, in bits 6-7, bits 4-5 of scales 4-7; bytes 4-7 the same for mins; bytes 8-11
 * the low 4 bits of scale 4-7 (low nibble) and min 4-7 (high nibble). */
static const uint8_t k_sc[8] = { 1, 2, 3, 4, 17, 33, 48, 63 };
static const uint8_t k_mn[8] = { 0, 5, 10, 63, 16, 31, 47, 62 };

static void pack_k_scales_by_hand(uint8_t q[12])
{
        for (int j = 0; j < 4; j++) {
                q[j] = (uint8_t)(k_sc[j] | ((k_sc[j + 4] >> 4) << 6));
                q[j + 4] = (uint8_t)(k_mn[j] | ((k_mn[j + 4] >> 4) << 6));
                q[j + 8] = (uint8_t)((k_sc[j + 4] & 15) | ((k_mn[j + 4] & 15) << 4));
        }
}

/* Element e sits in sub-block e/32; 64-chunk c = e/64 uses qs[32c + e%32], low nibble for
 * the first 32 of the chunk. y = d*sc*q - dmin*m (all exact here: d = 1, dmin = 0.5). */
static void test_q4_K_dequantizes_hand_packed_block(void **state)
{
        (void)state;
        struct block_q4_K b = { .d = 0x3c00, .dmin = 0x3800 };
        uint8_t q[QK_K];
        float out[QK_K];
        pack_k_scales_by_hand(b.scales);
        for (int e = 0; e < QK_K; e++)
                q[e] = (uint8_t)((e * 7 + 3) % 16);
        for (int c = 0; c < 4; c++)
                for (int l = 0; l < 32; l++)
                        b.qs[32 * c + l] = (uint8_t)(q[64 * c + l] | (q[64 * c + 32 + l] << 4));
        rig_dequantize_row(RIG_TYPE_Q4_K, &b, out, QK_K);
        for (int e = 0; e < QK_K; e++)
                assert_true(out[e] == (float)(k_sc[e / 32] * q[e]) - 0.5f * (float)k_mn[e / 32]);
}

/* Q5_K: the 5th bit of element 64c + l is bit 2c of qh[l], of 64c + 32 + l bit 2c+1. */
static void test_q5_K_dequantizes_hand_packed_block(void **state)
{
        (void)state;
        struct block_q5_K b = { .d = 0x3800, .dmin = 0x3c00 };  /* 0.5, 1 */
        uint8_t q[QK_K];
        float out[QK_K];
        pack_k_scales_by_hand(b.scales);
        memset(b.qh, 0, sizeof(b.qh));
        for (int e = 0; e < QK_K; e++)
                q[e] = (uint8_t)((e * 13 + 5) % 32);
        for (int c = 0; c < 4; c++) {
                for (int l = 0; l < 32; l++) {
                        uint8_t lo = q[64 * c + l], hi = q[64 * c + 32 + l];
                        b.qs[32 * c + l] = (uint8_t)((lo & 15) | ((hi & 15) << 4));
                        b.qh[l] |= (uint8_t)(((lo >> 4) << (2 * c)) | ((hi >> 4) << (2 * c + 1)));
                }
        }
        rig_dequantize_row(RIG_TYPE_Q5_K, &b, out, QK_K);
        for (int e = 0; e < QK_K; e++)
                assert_true(out[e] == 0.5f * (float)(k_sc[e / 32] * q[e]) - (float)k_mn[e / 32]);
}

/* Q6_K: per 128-half n, element 128n + 32g + l (g < 4) keeps its low 4 bits in
 * ql[64n + l + 32(g&1)] (low nibble for g < 2), its high 2 bits in qh[32n + l] bits 2g..2g+1,
 * scale scales[8n + 2g + l/16]; y = d * scale * (q - 32). */
static void test_q6_K_dequantizes_hand_packed_block(void **state)
{
        (void)state;
        struct block_q6_K b = { .d = 0x3000 };                  /* 0.125 */
        uint8_t q[QK_K];
        float out[QK_K];
        memset(b.ql, 0, sizeof(b.ql));
        memset(b.qh, 0, sizeof(b.qh));
        for (int g = 0; g < 16; g++)
                b.scales[g] = (int8_t)(g * 17 - 128);
        for (int e = 0; e < QK_K; e++)
                q[e] = (uint8_t)((e * 37 + 11) % 64);
        for (int e = 0; e < QK_K; e++) {
                int n = e / 128, g = (e % 128) / 32, l = e % 32;
                b.ql[64 * n + l + 32 * (g & 1)] |= (uint8_t)((q[e] & 15) << (4 * (g >> 1)));
                b.qh[32 * n + l] |= (uint8_t)((q[e] >> 4) << (2 * g));
        }
        rig_dequantize_row(RIG_TYPE_Q6_K, &b, out, QK_K);
        for (int e = 0; e < QK_K; e++) {
                int sc = b.scales[(e / 128) * 8 + ((e % 128) / 32) * 2 + (e % 32) / 16];
                assert_true(out[e] == 0.125f * (float)(sc * (q[e] - 32)));
        }
}

/* Q8_K is rig's own activation block: element e of sub-block j (32 elements) is d * m[j] * qs[e]
 * with d = amax / (127 * 64) for the block and m[j] the smallest multiplier in 1..64 whose step
 * holds the sub-block (amax_j <= 127 d m_j); bsums[g] is the sum of qs[16g .. 16g+15]. The
 * sub-blocks get very different magnitudes here (2^3 apart), so a shared step would show. */
static void test_q8_K_multiplier_per_32_and_sums_groups(void **state)
{
        (void)state;
        float x[QK_K], out[QK_K];
        struct block_q8_K b;
        fill_gauss(x, QK_K, 1.0f);
        for (int e = 0; e < QK_K; e++)
                x[e] *= ldexpf(1.0f, 3 * (e / 32) - 12);
        rig_quantize_row(RIG_TYPE_Q8_K, x, &b, QK_K);
        rig_dequantize_row(RIG_TYPE_Q8_K, &b, out, QK_K);
        for (int g = 0; g < 16; g++) {
                int s = 0;
                for (int l = 0; l < 16; l++)
                        s += b.qs[16 * g + l];
                assert_int_equal(b.bsums[g], s);
        }
        float amax = 0;
        for (int e = 0; e < QK_K; e++)
                amax = fmaxf(amax, fabsf(x[e]));
        assert_true(b.d == amax / (127.0f * 64));
        assert_int_equal(b.m[7], 64);                   /* the largest sub-block */
        assert_int_equal(b.m[0], 1);                    /* 2^-21 of it: the smallest step */
        for (int j = 0; j < QK_K / 32; j++) {
                float amax_j = 0;
                for (int l = 0; l < 32; l++)
                        amax_j = fmaxf(amax_j, fabsf(x[32 * j + l]));
                assert_true(b.m[j] >= 1 && b.m[j] <= 64);
                assert_true(amax_j <= 127.0f * b.d * (float)b.m[j] * (1 + 1e-6f));
                if (b.m[j] > 1)
                        assert_true(amax_j > 127.0f * b.d * (float)(b.m[j] - 1));
        }
        for (int e = 0; e < QK_K; e++)
                assert_true(out[e] == b.d * (float)b.m[e / 32] * (float)b.qs[e]);
}

/* The 8-bit activation quantizers take, for each element, the level in -127..127 nearest to
 * x / d with d as stored (Q8_0: the f16 scale, not the float it was rounded from): checked in
 * double against both neighbours (on an exact tie either is right). Data: Gaussian at several
 * magnitudes, plus exact ties x = (k + 1/2) d. */
static void check_nearest_levels(enum rig_type t, const float *x, size_t n)
{
        uint8_t *q = xmalloc(rig_row_bytes(t, n));
        rig_quantize_row(t, x, q, n);
        for (size_t e = 0; e < n; e++) {
                double d;
                int level;
                if (t == RIG_TYPE_Q8_0) {
                        const struct block_q8_0 *b = (const struct block_q8_0 *)q + e / 32;
                        d = rig_half_to_float(b->d);
                        level = b->qs[e % 32];
                } else {
                        const struct block_q8_K *b = (const struct block_q8_K *)q + e / QK_K;
                        d = (double)(b->d * (float)b->m[(e % QK_K) / 32]);
                        level = b->qs[e % QK_K];
                }
                assert_true(level >= -127 && level <= 127);
                double err = fabs(x[e] - level * d);
                for (int nb = level - 1; nb <= level + 1; nb += 2)
                        if (nb >= -127 && nb <= 127 && fabs(x[e] - nb * d) < err)
                                fail_msg("%s element %zu: x %.9g d %.9g level %d, but %d is nearer",
                                         type_name(t), e, x[e], d, level, nb);
        }
        free(q);
}

static void test_activation_quantizers_pick_the_nearest_level(void **state)
{
        (void)state;
        const size_t n = 4096;
        float *x = xmalloc(n * sizeof(float));
        const enum rig_type types[] = { RIG_TYPE_Q8_0, RIG_TYPE_Q8_K };
        const float sigmas[4] = { 1.0f, 1e-3f, 30.0f, 1e-6f };
        for (size_t t = 0; t < 2; t++) {
                for (int s = 0; s < 4; s++) {
                        fill_gauss(x, n, sigmas[s]);
                        check_nearest_levels(types[t], x, n);
                }
                /* Ties: the block's max is 127 * 2^-7 so d is exactly 2^-7 in f16 and float;
                 * the rest sit exactly halfway between levels. */
                for (size_t e = 0; e < n; e++)
                        x[e] = e % 32 == 0 ? 127.0f / 128 : ((float)((int)(e % 200) - 100) + 0.5f) / 128;
                check_nearest_levels(types[t], x, n);
        }
        free(x);
}

/* ---- quantize → dequantize error ------------------------------------------------------- */

/* Per-element bound, as a function of the block the element is in: `amax` is the largest
 * |x| of the block of scale_block_elems(t) values (for the K weight types: of the 256-block;
 * for Q8_K, whose scales are per 32: of the 32 elements sharing the scale). */
struct err_stats {
        double max_rel_block;   /* max over blocks of max|err| / amax */
        double rms_rel;         /* sqrt(sum err^2 / sum x^2) over the row */
};

static struct err_stats round_trip_error(enum rig_type t, const float *x, size_t n)
{
        size_t bytes = n * sizeof(float);       /* enough for every type */
        void *q = xmalloc(bytes);
        float *y = xmalloc(n * sizeof(float));
        rig_quantize_row(t, x, q, n);
        rig_dequantize_row(t, q, y, n);
        size_t be = t == RIG_TYPE_Q8_K || block_elems(t) == 1 ? 32 : block_elems(t);
        struct err_stats st = { 0, 0 };
        double se = 0, sx = 0;
        for (size_t b = 0; b < n / be; b++) {
                double amax = 0, emax = 0;
                for (size_t j = b * be; j < (b + 1) * be; j++) {
                        double e = fabs((double)x[j] - y[j]);
                        amax = fmax(amax, fabs(x[j]));
                        emax = fmax(emax, e);
                        se += e * e;
                        sx += (double)x[j] * x[j];
                }
                if (amax > 0)
                        st.max_rel_block = fmax(st.max_rel_block, emax / amax);
        }
        st.rms_rel = sqrt(se / sx);
        free(q);
        free(y);
        return st;
}

/* Bounds on Gaussian data (n = 16384, sigma 1, 0.01 and 50, with one 20-sigma outlier).
 * (Smaller data than sigma 0.01 makes the f16 block scale of q8_0/q4_0 subnormal and adds an
 * absolute error of up to 127 * 2^-25: inherent to the format, not tested here.)
 *  f16:  1 half ulp: |err| <= 2^-11 |x|, so <= 2^-11 amax.
 *  bf16: 1 half ulp: 2^-8 amax.
 *  q8_0: d = amax/127 is stored as f16 and the levels are taken against the stored d, so
 *        err <= d/2 with d <= (1 + 2^-11) amax/127 (or the clamp at 127 when d rounded down:
 *        <= 127 d 2^-11, less) → 0.003940 amax.
 *  q8_K: step d*m_j per 32 elements, at most (1 + 1/k) times amax_j/127 where k = floor(64
 *        amax_j / amax): err <= 0.003938 (1 + 1/k) amax_j. The outlier's block has sub-blocks
 *        at ~1/8-1/16 of it (k 4..8): bound 0.0050 of the 32's amax.
 *  (RMS of both is ~ d/sqrt(12) = amax/440, and amax ≈ 2.5 sigma for 32 Gaussians: measured
 *  0.0055-0.0057, bound 0.0065; one scale per 256, as Q8_K had, measured 0.0088.)
 *  q4_0: d = -max/8, the far side of max clamps at level 15 = 7/8 of it: err <= d (+f16 of d)
 *        → 0.126 amax.
 *  K types have no tight per-element bound (fitted scale and min per sub-block, 6-bit scale
 *  quantization); the bounds are on relative RMS error, measured on this data with ~25%
 *  margin: q4_K 0.095 (measured 0.072), q5_K 0.047 (0.036), q6_K 0.023 (0.018), and a
 *  per-block max error bound of 2 levels of the 256-block's range: q4_K 0.27, q5_K 0.13,
 *  q6_K 0.065 of amax. */
static void check_round_trip(enum rig_type t, double max_rel_block, double rms_rel)
{
        const size_t n = 16384;
        float *x = xmalloc(n * sizeof(float));
        const float sigmas[3] = { 1.0f, 0.01f, 50.0f };
        for (int s = 0; s < 3; s++) {
                fill_gauss(x, n, sigmas[s]);
                x[100] = 20 * sigmas[s];                        /* an outlier */
                struct err_stats st = round_trip_error(t, x, n);
                if (st.max_rel_block > max_rel_block || st.rms_rel > rms_rel)
                        fail_msg("%s sigma %g: max err/amax %.6f (bound %.6f), rms rel %.5f (bound %.5f)",
                                 type_name(t), sigmas[s], st.max_rel_block, max_rel_block, st.rms_rel, rms_rel);
        }
        free(x);
}

static void test_f16_round_trip_within_half_ulp(void **state) { (void)state; check_round_trip(RIG_TYPE_F16, 0x1p-11, 0x1p-11); }
static void test_bf16_round_trip_within_half_ulp(void **state) { (void)state; check_round_trip(RIG_TYPE_BF16, 0x1p-8, 0x1p-8); }
static void test_q8_0_round_trip_error_bounded(void **state) { (void)state; check_round_trip(RIG_TYPE_Q8_0, 0.003941, 0.0065); }
static void test_q8_K_round_trip_error_bounded(void **state) { (void)state; check_round_trip(RIG_TYPE_Q8_K, 0.0050, 0.0065); }
static void test_q4_0_round_trip_error_bounded(void **state) { (void)state; check_round_trip(RIG_TYPE_Q4_0, 0.126, 0.11); }
static void test_q4_K_round_trip_error_bounded(void **state) { (void)state; check_round_trip(RIG_TYPE_Q4_K, 0.27, 0.095); }
static void test_q5_K_round_trip_error_bounded(void **state) { (void)state; check_round_trip(RIG_TYPE_Q5_K, 0.13, 0.047); }
static void test_q6_K_round_trip_error_bounded(void **state) { (void)state; check_round_trip(RIG_TYPE_Q6_K, 0.065, 0.023); }

/* A block of zeros quantizes to zeros (no division by zero, no nan). */
static void test_zero_rows_quantize_to_zero(void **state)
{
        (void)state;
        float x[QK_K] = { 0 }, y[QK_K];
        uint8_t q[QK_K * 4];
        const enum rig_type types[] = { RIG_TYPE_Q4_0, RIG_TYPE_Q8_0, RIG_TYPE_Q4_K, RIG_TYPE_Q5_K,
                                        RIG_TYPE_Q6_K, RIG_TYPE_Q8_K };
        for (size_t t = 0; t < sizeof(types) / sizeof(types[0]); t++) {
                rig_quantize_row(types[t], x, q, QK_K);
                rig_dequantize_row(types[t], q, y, QK_K);
                for (int j = 0; j < QK_K; j++)
                        assert_true(y[j] == 0.0f);
        }
}

/* ---- dot products ---------------------------------------------------------------------- */

/* Weight matrix rows x cols in type t, activations x[cols] converted to the dot type; checks,
 * per row, portable vs dequantize-then-dot (double) vs the dispatched (AVX2) kernel.
 * Bound: |dot - ref| <= tol * sum|w_i x_i| — float accumulation over the row, the f16 block
 * scale products and the order of summation differ; tol = 1e-5 covers n*eps-ish growth of a
 * few thousand terms with a 4-8 wide tree (measured worst ~1e-6). The int8 kernels are exact
 * inside a block, so AVX2 and portable differ only by that float summation order. */
static void check_dot(enum rig_type t, size_t rows, size_t cols)
{
        enum rig_type xt = rig_vec_dot_type(t);
        size_t wrow = rig_row_bytes(t, cols), xbytes = rig_row_bytes(xt, cols);
        assert_true(wrow > 0 && xbytes > 0);
        float *wf = xmalloc(cols * sizeof(float)), *xf = xmalloc(cols * sizeof(float));
        float *wd = xmalloc(cols * sizeof(float)), *xd = xmalloc(cols * sizeof(float));
        uint8_t *w = xmalloc(rows * wrow), *x = xmalloc(xbytes);
        const double tol = 1e-5;

        /* Activations whose size changes from one 32-block to the next (by up to 2^10), so a
         * kernel that applies the wrong block's scale is far off. */
        fill_gauss(xf, cols, 1.0f);
        for (size_t i = 0; i < cols; i++)
                xf[i] *= ldexpf(1.0f, (int)((i / 32 * 7) % 11) - 5);
        rig_quantize_row(xt, xf, x, cols);
        rig_dequantize_row(xt, x, xd, cols);
        for (size_t r = 0; r < rows; r++) {
                fill_gauss(wf, cols, 0.02f);
                rig_quantize_row(t, wf, w + r * wrow, cols);
        }
        for (size_t r = 0; r < rows; r++) {
                rig_dequantize_row(t, w + r * wrow, wd, cols);
                double ref = 0, mag = 0;
                for (size_t i = 0; i < cols; i++) {
                        ref += (double)wd[i] * xd[i];
                        mag += fabs((double)wd[i] * xd[i]);
                }
                float portable = rig_vec_dot_portable(t, w + r * wrow, x, cols);
                float fast = rig_vec_dot(t, w + r * wrow, x, cols);
                if (fabs(portable - ref) > tol * mag || fabs(fast - ref) > tol * mag ||
                    fabs(fast - portable) > tol * mag)
                        fail_msg("%s %zux%zu row %zu: portable %.9g avx2 %.9g ref %.9g (sum|wx| %.6g)",
                                 type_name(t), rows, cols, r, portable, fast, ref, mag);
        }
        free(wf);
        free(xf);
        free(wd);
        free(xd);
        free(w);
        free(x);
}

/* Shapes: one block, an odd number of blocks and rows, and a model-sized row. The float
 * types also get lengths that are not multiples of the 8- and 32-wide SIMD steps. */
static void test_vec_dot_matches_dequantized_dot(void **state)
{
        (void)state;
        if (!rig_vec_dot_has_avx2())
                print_message("no AVX2 on this CPU: only the portable path is checked\n");
        for (size_t k = 0; k < sizeof(weight_types) / sizeof(weight_types[0]); k++) {
                enum rig_type t = weight_types[k];
                size_t be = block_elems(rig_vec_dot_type(t)) > block_elems(t) ?
                            block_elems(rig_vec_dot_type(t)) : block_elems(t);
                if (be == 1)
                        be = 32;
                check_dot(t, 3, be);
                check_dot(t, 7, 3 * be);
                check_dot(t, 5, 4096);
                check_dot(t, 1, 14336);
                if (block_elems(t) == 1) {
                        check_dot(t, 3, 1);
                        check_dot(t, 9, 37);
                        check_dot(t, 2, 4096 + 13);
                }
        }
}

/* rig_matvec_rows (multi-row kernels under AVX2) against rig_vec_dot_portable row by row, within
 * check_dot's bound, for row counts 1, 2, 3, 5, 8 at row_begin 0 and at odd offsets; rows
 * outside [begin, end) must be left alone. */
static void check_matvec_rows(enum rig_type t, size_t cols)
{
        enum rig_type xt = rig_vec_dot_type(t);
        const int total = 13;
        size_t wrow = rig_row_bytes(t, cols), xbytes = rig_row_bytes(xt, cols);
        assert_true(wrow > 0 && xbytes > 0);
        float *wf = xmalloc(cols * sizeof(float)), *xf = xmalloc(cols * sizeof(float));
        float *wd = xmalloc(cols * sizeof(float)), *xd = xmalloc(cols * sizeof(float));
        uint8_t *w = xmalloc((size_t)total * wrow), *x = xmalloc(xbytes);
        float y[13];
        double ref[13], mag[13];
        const double tol = 1e-5;

        fill_gauss(xf, cols, 1.0f);
        for (size_t i = 0; i < cols; i++)
                xf[i] *= ldexpf(1.0f, (int)((i / 32 * 7) % 11) - 5);
        rig_quantize_row(xt, xf, x, cols);
        rig_dequantize_row(xt, x, xd, cols);
        for (int r = 0; r < total; r++) {
                fill_gauss(wf, cols, 0.02f);
                rig_quantize_row(t, wf, w + (size_t)r * wrow, cols);
                rig_dequantize_row(t, w + (size_t)r * wrow, wd, cols);
                mag[r] = 0;
                for (size_t i = 0; i < cols; i++)
                        mag[r] += fabs((double)wd[i] * xd[i]);
                ref[r] = rig_vec_dot_portable(t, w + (size_t)r * wrow, x, cols);
        }
        const int counts[] = { 1, 2, 3, 5, 8 }, begins[] = { 0, 1, 3, 5 };
        for (size_t c = 0; c < sizeof(counts) / sizeof(counts[0]); c++) {
                for (size_t b = 0; b < sizeof(begins) / sizeof(begins[0]); b++) {
                        int begin = begins[b], end = begin + counts[c];
                        for (int r = 0; r < total; r++)
                                y[r] = -12345.0f;
                        rig_matvec_rows(t, w, wrow, begin, end, x, cols, y);
                        for (int r = 0; r < total; r++) {
                                if (r < begin || r >= end) {
                                        if (y[r] != -12345.0f)
                                                fail_msg("%s rows %d..%d wrote y[%d]", type_name(t), begin, end, r);
                                } else if (fabs(y[r] - ref[r]) > tol * mag[r]) {
                                        fail_msg("%s %zu cols rows %d..%d row %d: matvec %.9g portable %.9g (sum|wx| %.6g)",
                                                 type_name(t), cols, begin, end, r, y[r], ref[r], mag[r]);
                                }
                        }
                }
        }
        free(wf);
        free(xf);
        free(wd);
        free(xd);
        free(w);
        free(x);
}

static void test_matvec_rows_matches_per_row_dot(void **state)
{
        (void)state;
        for (size_t k = 0; k < sizeof(weight_types) / sizeof(weight_types[0]); k++) {
                enum rig_type t = weight_types[k];
                size_t be = block_elems(rig_vec_dot_type(t)) > block_elems(t) ?
                            block_elems(rig_vec_dot_type(t)) : block_elems(t);
                if (be == 1)
                        be = 32;
                check_matvec_rows(t, be);
                check_matvec_rows(t, 3 * be);
                check_matvec_rows(t, 4096);
        }
}

/* ---- dump for the Python oracle -------------------------------------------------------- */

/* A random finite half of magnitude 2^-12 .. 2^3, either sign: a realistic block scale. */
static rig_half random_scale_half(void)
{
        int e = 3 + (int)(rng_u32() % 16);              /* biased exponent 3..18 */
        return (rig_half)(((rng_u32() & 1) << 15) | (e << 10) | (rng_u32() & 0x3ff));
}

static void random_bytes(void *p, size_t n)
{
        uint8_t *b = p;
        for (size_t i = 0; i < n; i++)
                b[i] = (uint8_t)rng_u32();
}

/* Blocks of random bits with realistic scale fields (so every bit pattern of the quants and
 * of the 6-bit scales is exercised), followed by blocks quantized from Gaussian data. */
static void make_dump_blocks(enum rig_type t, void *q, size_t n)
{
        size_t bytes = rig_row_bytes(t, n), half = n / 2;
        random_bytes(q, bytes);
        size_t be = block_elems(t);
        size_t nb_rand = half / be;
        for (size_t i = 0; i < nb_rand; i++) {
                switch (t) {
                case RIG_TYPE_Q4_0: ((struct block_q4_0 *)q)[i].d = random_scale_half(); break;
                case RIG_TYPE_Q8_0: ((struct block_q8_0 *)q)[i].d = random_scale_half(); break;
                case RIG_TYPE_Q4_K:
                        ((struct block_q4_K *)q)[i].d = random_scale_half();
                        ((struct block_q4_K *)q)[i].dmin = random_scale_half();
                        break;
                case RIG_TYPE_Q5_K:
                        ((struct block_q5_K *)q)[i].d = random_scale_half();
                        ((struct block_q5_K *)q)[i].dmin = random_scale_half();
                        break;
                case RIG_TYPE_Q6_K: ((struct block_q6_K *)q)[i].d = random_scale_half(); break;
                case RIG_TYPE_Q8_K:
                        ((struct block_q8_K *)q)[i].d = rng_gauss();
                        for (int j = 0; j < QK_K / 32; j++)
                                ((struct block_q8_K *)q)[i].m[j] = (int16_t)(1 + rng_u32() % 64);
                        break;
                default: break;
                }
        }
        if (be == 1)
                return;                                 /* float types: all random bits */
        float *x = xmalloc((n - nb_rand * be) * sizeof(float));
        fill_gauss(x, n - nb_rand * be, 1.0f);
        rig_quantize_row(t, x, (uint8_t *)q + rig_row_bytes(t, nb_rand * be), n - nb_rand * be);
        free(x);
}

static int write_file(const char *dir, const char *name, const char *ext, const void *p, size_t n)
{
        char path[4096];
        snprintf(path, sizeof(path), "%s/%s.%s", dir, name, ext);
        FILE *f = fopen(path, "wb");
        if (!f) {
                fprintf(stderr, "writing %s: %s\n", path, strerror(errno));
                return -1;
        }
        size_t w = fwrite(p, 1, n, f);
        if (fclose(f) != 0 || w != n) {
                fprintf(stderr, "writing %s: short write\n", path);
                return -1;
        }
        return 0;
}

/* DIR/<type>.bin: a row of blocks; DIR/<type>.f32: rig_dequantize_row of it (little endian). */
static int dump_for_oracle(const char *dir)
{
        const enum rig_type types[] = { RIG_TYPE_F32, RIG_TYPE_F16, RIG_TYPE_BF16, RIG_TYPE_Q4_0,
                                        RIG_TYPE_Q8_0, RIG_TYPE_Q4_K, RIG_TYPE_Q5_K, RIG_TYPE_Q6_K,
                                        RIG_TYPE_Q8_K };
        const size_t n = 65536;                 /* 256 K-blocks; every f16/bf16 bit pattern once */
        for (size_t k = 0; k < sizeof(types) / sizeof(types[0]); k++) {
                enum rig_type t = types[k];
                void *q = xmalloc(rig_row_bytes(t, n));
                float *y = xmalloc(n * sizeof(float));
                make_dump_blocks(t, q, n);
                if (t == RIG_TYPE_F16 || t == RIG_TYPE_BF16)
                        for (size_t i = 0; i < n; i++)
                                ((uint16_t *)q)[i] = (uint16_t)i;
                rig_dequantize_row(t, q, y, n);
                int r = write_file(dir, type_name(t), "bin", q, rig_row_bytes(t, n));
                if (r == 0)
                        r = write_file(dir, type_name(t), "f32", y, n * sizeof(float));
                free(q);
                free(y);
                if (r < 0)
                        return 1;
        }
        return 0;
}

int main(int argc, char **argv)
{
        if (argc == 3 && strcmp(argv[1], "--dump") == 0)
                return dump_for_oracle(argv[2]);

        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_half_rounds_to_nearest_even),
                cmocka_unit_test(test_half_round_trips_every_value),
                cmocka_unit_test(test_bf16_rounds_to_nearest_even_and_keeps_nan),
                cmocka_unit_test(test_float_types_dequantize),
                cmocka_unit_test(test_q4_0_dequantizes_hand_packed_block),
                cmocka_unit_test(test_q8_0_dequantizes_hand_packed_block),
                cmocka_unit_test(test_q4_K_dequantizes_hand_packed_block),
                cmocka_unit_test(test_q5_K_dequantizes_hand_packed_block),
                cmocka_unit_test(test_q6_K_dequantizes_hand_packed_block),
                cmocka_unit_test(test_q8_K_multiplier_per_32_and_sums_groups),
                cmocka_unit_test(test_activation_quantizers_pick_the_nearest_level),
                cmocka_unit_test(test_f16_round_trip_within_half_ulp),
                cmocka_unit_test(test_bf16_round_trip_within_half_ulp),
                cmocka_unit_test(test_q8_0_round_trip_error_bounded),
                cmocka_unit_test(test_q8_K_round_trip_error_bounded),
                cmocka_unit_test(test_q4_0_round_trip_error_bounded),
                cmocka_unit_test(test_q4_K_round_trip_error_bounded),
                cmocka_unit_test(test_q5_K_round_trip_error_bounded),
                cmocka_unit_test(test_q6_K_round_trip_error_bounded),
                cmocka_unit_test(test_zero_rows_quantize_to_zero),
                cmocka_unit_test(test_vec_dot_matches_dequantized_dot),
                cmocka_unit_test(test_matvec_rows_matches_per_row_dot),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
