/* vec_dot.c — dot products of one weight row with one activation row, the inner loop of every
 * CPU matrix-vector product. Each weight type has a portable scalar kernel (always compiled,
 * the reference the tests hold the fast one to) and an AVX2+FMA+F16C kernel picked at run time,
 * so one binary runs on any x86-64 and at full speed where it can. */
#include "quant.h"
#include "rig_assert.h"
#include "vec_dot.h"

#include <assert.h>
#include <string.h>

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#define RIG_HAVE_X86 1
#else
#define RIG_HAVE_X86 0
#endif


/* Test and benchmark hooks, not API: the portable path, and whether rig_vec_dot takes the
 * AVX2 path on this CPU. Declared here and in the tests (quant.h is not ours to change). */

enum rig_type rig_vec_dot_type(enum rig_type weight_type)
{
        switch (weight_type) {
        case RIG_TYPE_Q4_0:
        case RIG_TYPE_Q8_0:
                return RIG_TYPE_Q8_0;
        case RIG_TYPE_Q4_K:
        case RIG_TYPE_Q5_K:
        case RIG_TYPE_Q6_K:
                return RIG_TYPE_Q8_K;
        default:
                return RIG_TYPE_F32;
        }
}

/* ---- portable kernels ------------------------------------------------------------------ */

/* Four partial sums so the compiler may keep several lanes busy; n any length. */
static float dot_f32(const float *w, const float *x, size_t n)
{
        float s[4] = { 0, 0, 0, 0 };
        size_t i = 0;
        for (; i + 4 <= n; i += 4)
                for (int k = 0; k < 4; k++)
                        s[k] += w[i + k] * x[i + k];
        for (; i < n; i++)
                s[0] += w[i] * x[i];
        return (s[0] + s[1]) + (s[2] + s[3]);
}

static float dot_f16(const rig_half *w, const float *x, size_t n)
{
        float s = 0;
        for (size_t i = 0; i < n; i++)
                s += rig_half_to_float(w[i]) * x[i];
        return s;
}

static float dot_bf16(const uint16_t *w, const float *x, size_t n)
{
        float s = 0;
        for (size_t i = 0; i < n; i++)
                s += rig_bf16_to_float(w[i]) * x[i];
        return s;
}

/* Per 32-block: integer dot of the quants, times both scales. */
static float dot_q4_0_q8_0(const struct block_q4_0 *w, const struct block_q8_0 *x, size_t nb)
{
        float s = 0;
        for (size_t i = 0; i < nb; i++) {
                int sumi = 0;
                for (int j = 0; j < QK4_0 / 2; j++) {
                        sumi += ((w[i].qs[j] & 0xf) - 8) * x[i].qs[j];
                        sumi += ((w[i].qs[j] >> 4) - 8) * x[i].qs[j + 16];
                }
                s += (float)sumi * (rig_half_to_float(w[i].d) * rig_half_to_float(x[i].d));
        }
        return s;
}

static float dot_q8_0_q8_0(const struct block_q8_0 *w, const struct block_q8_0 *x, size_t nb)
{
        float s = 0;
        for (size_t i = 0; i < nb; i++) {
                int sumi = 0;
                for (int j = 0; j < QK8_0; j++)
                        sumi += w[i].qs[j] * x[i].qs[j];
                s += (float)sumi * (rig_half_to_float(w[i].d) * rig_half_to_float(x[i].d));
        }
        return s;
}

/* Same packing as quant.c's k4_scale_min: 8 scales then 8 mins, 6 bits each. */
static void k4_unpack(const uint8_t *q, uint8_t out[16])
{
        for (int j = 0; j < 4; j++) {
                out[j] = q[j] & 63;
                out[8 + j] = q[j + 4] & 63;
                out[4 + j] = (uint8_t)((q[j + 8] & 0xf) | ((q[j] >> 6) << 4));
                out[12 + j] = (uint8_t)((q[j + 8] >> 4) | ((q[j + 4] >> 6) << 4));
        }
}

/* Q8_K is x = D * m_j * q per 32-element sub-block j (D a float per block, m_j an integer), and
 * the K types' weights are w = d * sc_j * q - dmin * mn_j, so a block's dot is
 *   d * D * sum_j (sc_j * m_j) * (q·x)_j  -  dmin * D * sum_j (mn_j * m_j) * sum(x_j)
 * with both sums exact in integers (int64 here; the SIMD kernels keep per-lane int32 sums, whose
 * bounds are given there), and one float step per block. */
static float dot_q4_K_q8_K(const struct block_q4_K *w, const struct block_q8_K *x, size_t nb)
{
        float s = 0;
        for (size_t i = 0; i < nb; i++) {
                uint8_t sm[16];
                const int16_t *m = x[i].m;
                k4_unpack(w[i].scales, sm);
                int64_t sumi = 0, summ = 0;
                for (int k = 0; k < QK_K / 64; k++) {
                        int lo = 0, hi = 0;
                        for (int l = 0; l < 32; l++) {
                                lo += (w[i].qs[32 * k + l] & 0xf) * x[i].qs[64 * k + l];
                                hi += (w[i].qs[32 * k + l] >> 4) * x[i].qs[64 * k + 32 + l];
                        }
                        sumi += (int64_t)(sm[2 * k] * m[2 * k]) * lo + (int64_t)(sm[2 * k + 1] * m[2 * k + 1]) * hi;
                }
                for (int j = 0; j < QK_K / 32; j++)
                        summ += sm[8 + j] * m[j] * (x[i].bsums[2 * j] + x[i].bsums[2 * j + 1]);
                s += x[i].d * (rig_half_to_float(w[i].d) * (float)sumi - rig_half_to_float(w[i].dmin) * (float)summ);
        }
        return s;
}

static float dot_q5_K_q8_K(const struct block_q5_K *w, const struct block_q8_K *x, size_t nb)
{
        float s = 0;
        for (size_t i = 0; i < nb; i++) {
                uint8_t sm[16];
                const int16_t *m = x[i].m;
                k4_unpack(w[i].scales, sm);
                int64_t sumi = 0, summ = 0;
                for (int k = 0; k < QK_K / 64; k++) {
                        int lo = 0, hi = 0;
                        for (int l = 0; l < 32; l++) {
                                int ql = w[i].qs[32 * k + l], qh = w[i].qh[l];
                                int q_lo = (ql & 0xf) | (((qh >> (2 * k)) & 1) << 4);
                                int q_hi = (ql >> 4) | (((qh >> (2 * k + 1)) & 1) << 4);
                                lo += q_lo * x[i].qs[64 * k + l];
                                hi += q_hi * x[i].qs[64 * k + 32 + l];
                        }
                        sumi += (int64_t)(sm[2 * k] * m[2 * k]) * lo + (int64_t)(sm[2 * k + 1] * m[2 * k + 1]) * hi;
                }
                for (int j = 0; j < QK_K / 32; j++)
                        summ += sm[8 + j] * m[j] * (x[i].bsums[2 * j] + x[i].bsums[2 * j + 1]);
                s += x[i].d * (rig_half_to_float(w[i].d) * (float)sumi - rig_half_to_float(w[i].dmin) * (float)summ);
        }
        return s;
}

/* w = d*sc_g*(q - 32) per group g of 16; sub-block j of 32 (multiplier m_j) holds groups 2j and
 * 2j+1, and the -32 is folded in with their bsums: sum sc*(q-32)*x = sum sc*q*x - 32*sum sc*bsum. */
static float dot_q6_K_q8_K(const struct block_q6_K *w, const struct block_q8_K *x, size_t nb)
{
        float s = 0;
        for (size_t i = 0; i < nb; i++) {
                int64_t sumi = 0;
                for (int n = 0; n < QK_K / 128; n++) {
                        const uint8_t *ql = w[i].ql + 64 * n, *qh = w[i].qh + 32 * n;
                        const int8_t *sc = w[i].scales + 8 * n, *q8 = x[i].qs + 128 * n;
                        const int16_t *bs = x[i].bsums + 8 * n, *m = x[i].m + 4 * n;
                        for (int g = 0; g < 4; g++) {
                                int part[2] = { 0, 0 };
                                for (int l = 0; l < 32; l++) {
                                        int low = (ql[l + 32 * (g & 1)] >> (4 * (g >> 1))) & 0xf;
                                        int q = low | (((qh[l] >> (2 * g)) & 3) << 4);
                                        part[l / 16] += q * q8[32 * g + l];
                                }
                                sumi += (int64_t)m[g] * (sc[2 * g] * (part[0] - 32 * bs[2 * g]) +
                                                         sc[2 * g + 1] * (part[1] - 32 * bs[2 * g + 1]));
                        }
                }
                s += x[i].d * rig_half_to_float(w[i].d) * (float)sumi;
        }
        return s;
}

float rig_vec_dot_portable(enum rig_type weight_type, const void *w, const void *x, size_t n)
{
        switch (weight_type) {
        case RIG_TYPE_F32:
                return dot_f32(w, x, n);
        case RIG_TYPE_F16:
                return dot_f16(w, x, n);
        case RIG_TYPE_BF16:
                return dot_bf16(w, x, n);
        case RIG_TYPE_Q4_0:
                RIG_ASSERT(n % QK4_0 == 0, "q4_0 dot of %zu", n);
                return dot_q4_0_q8_0(w, x, n / QK4_0);
        case RIG_TYPE_Q8_0:
                RIG_ASSERT(n % QK8_0 == 0, "q8_0 dot of %zu", n);
                return dot_q8_0_q8_0(w, x, n / QK8_0);
        case RIG_TYPE_Q4_K:
                RIG_ASSERT(n % QK_K == 0, "q4_K dot of %zu", n);
                return dot_q4_K_q8_K(w, x, n / QK_K);
        case RIG_TYPE_Q5_K:
                RIG_ASSERT(n % QK_K == 0, "q5_K dot of %zu", n);
                return dot_q5_K_q8_K(w, x, n / QK_K);
        case RIG_TYPE_Q6_K:
                RIG_ASSERT(n % QK_K == 0, "q6_K dot of %zu", n);
                return dot_q6_K_q8_K(w, x, n / QK_K);
        default:
                RIG_ASSERT(0, "vec_dot of weight type %d", (int)weight_type);
                return 0;
        }
}

/* ---- AVX2 + FMA + F16C kernels --------------------------------------------------------- */
#if RIG_HAVE_X86
#define AVX2 __attribute__((target("avx2,fma,f16c")))

AVX2 static float hsum_ps(__m256 v)
{
        __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
        s = _mm_add_ps(s, _mm_movehl_ps(s, s));
        s = _mm_add_ss(s, _mm_movehdup_ps(s));
        return _mm_cvtss_f32(s);
}

AVX2 static float half_f32(rig_half h)
{
        return _cvtsh_ss(h);
}

/* int8 x int8 → 8 int32 lanes. maddubs wants unsigned × signed, so move x's sign onto y
 * (|x| ≤ 127 for our quants; -128 would read as 128, still right for the unsigned operand). */
AVX2 static __m256i dot_i8_i32(__m256i x, __m256i y)
{
        __m256i ax = _mm256_sign_epi8(x, x);
        __m256i sy = _mm256_sign_epi8(y, x);
        __m256i p16 = _mm256_maddubs_epi16(ax, sy);
        return _mm256_madd_epi16(p16, _mm256_set1_epi16(1));
}

/* 8 f16 or bf16 values → 8 floats. */
AVX2 static __m256 load_f16x8(const rig_half *p)
{
        return _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)p));
}

AVX2 static __m256 load_bf16x8(const uint16_t *p)
{
        __m256i v = _mm256_cvtepu16_epi32(_mm_loadu_si128((const __m128i *)p));
        return _mm256_castsi256_ps(_mm256_slli_epi32(v, 16));
}

/* The float kernels: 4 accumulators of 8 (32 elements per step) to cover the FMA latency. */
#define FLOAT_DOT_AVX2(NAME, WTYPE, LOAD, SCALAR)                                          \
        AVX2 static float NAME(const WTYPE *w, const float *x, size_t n)                    \
        {                                                                                   \
                __m256 acc[4] = { _mm256_setzero_ps(), _mm256_setzero_ps(),                 \
                                  _mm256_setzero_ps(), _mm256_setzero_ps() };               \
                size_t i = 0;                                                               \
                for (; i + 32 <= n; i += 32)                                                \
                        for (int k = 0; k < 4; k++)                                         \
                                acc[k] = _mm256_fmadd_ps(LOAD(w + i + 8 * k),               \
                                                         _mm256_loadu_ps(x + i + 8 * k),    \
                                                         acc[k]);                           \
                for (; i + 8 <= n; i += 8)                                                  \
                        acc[0] = _mm256_fmadd_ps(LOAD(w + i), _mm256_loadu_ps(x + i), acc[0]); \
                float s = hsum_ps(_mm256_add_ps(_mm256_add_ps(acc[0], acc[1]),              \
                                                _mm256_add_ps(acc[2], acc[3])));            \
                for (; i < n; i++)                                                          \
                        s += SCALAR(w[i]) * x[i];                                           \
                return s;                                                                   \
        }

#define LOAD_F32(p) _mm256_loadu_ps(p)
#define SCALAR_F32(v) (v)
FLOAT_DOT_AVX2(dot_f32_avx2, float, LOAD_F32, SCALAR_F32)
FLOAT_DOT_AVX2(dot_f16_avx2, rig_half, load_f16x8, rig_half_to_float)
FLOAT_DOT_AVX2(dot_bf16_avx2, uint16_t, load_bf16x8, rig_bf16_to_float)

/* Two blocks per step into two accumulators: the loop is load-bound, this keeps two
 * independent FMA chains in flight. */
AVX2 static float dot_q8_0_q8_0_avx2(const struct block_q8_0 *w, const struct block_q8_0 *x, size_t nb)
{
        __m256 acc0 = _mm256_setzero_ps(), acc1 = _mm256_setzero_ps();
        size_t i = 0;
        for (; i + 2 <= nb; i += 2) {
                __m256i p0 = dot_i8_i32(_mm256_loadu_si256((const __m256i *)w[i].qs),
                                        _mm256_loadu_si256((const __m256i *)x[i].qs));
                __m256i p1 = dot_i8_i32(_mm256_loadu_si256((const __m256i *)w[i + 1].qs),
                                        _mm256_loadu_si256((const __m256i *)x[i + 1].qs));
                __m256 d0 = _mm256_set1_ps(half_f32(w[i].d) * half_f32(x[i].d));
                __m256 d1 = _mm256_set1_ps(half_f32(w[i + 1].d) * half_f32(x[i + 1].d));
                acc0 = _mm256_fmadd_ps(d0, _mm256_cvtepi32_ps(p0), acc0);
                acc1 = _mm256_fmadd_ps(d1, _mm256_cvtepi32_ps(p1), acc1);
        }
        for (; i < nb; i++) {
                __m256i p = dot_i8_i32(_mm256_loadu_si256((const __m256i *)w[i].qs),
                                       _mm256_loadu_si256((const __m256i *)x[i].qs));
                __m256 d = _mm256_set1_ps(half_f32(w[i].d) * half_f32(x[i].d));
                acc0 = _mm256_fmadd_ps(d, _mm256_cvtepi32_ps(p), acc0);
        }
        return hsum_ps(_mm256_add_ps(acc0, acc1));
}

/* 16 nibble bytes → 32 int8 in element order (low nibbles 0..15, high 16..31), minus 8. */
AVX2 static __m256i q4_0_unpack(const uint8_t *qs)
{
        __m128i b = _mm_loadu_si128((const __m128i *)qs);
        __m256i v = _mm256_set_m128i(_mm_srli_epi16(b, 4), b);
        v = _mm256_and_si256(v, _mm256_set1_epi8(0x0f));
        return _mm256_sub_epi8(v, _mm256_set1_epi8(8));
}

AVX2 static float dot_q4_0_q8_0_avx2(const struct block_q4_0 *w, const struct block_q8_0 *x, size_t nb)
{
        __m256 acc0 = _mm256_setzero_ps(), acc1 = _mm256_setzero_ps();
        size_t i = 0;
        for (; i + 2 <= nb; i += 2) {
                __m256i p0 = dot_i8_i32(q4_0_unpack(w[i].qs), _mm256_loadu_si256((const __m256i *)x[i].qs));
                __m256i p1 = dot_i8_i32(q4_0_unpack(w[i + 1].qs),
                                        _mm256_loadu_si256((const __m256i *)x[i + 1].qs));
                __m256 d0 = _mm256_set1_ps(half_f32(w[i].d) * half_f32(x[i].d));
                __m256 d1 = _mm256_set1_ps(half_f32(w[i + 1].d) * half_f32(x[i + 1].d));
                acc0 = _mm256_fmadd_ps(d0, _mm256_cvtepi32_ps(p0), acc0);
                acc1 = _mm256_fmadd_ps(d1, _mm256_cvtepi32_ps(p1), acc1);
        }
        for (; i < nb; i++) {
                __m256i p = dot_i8_i32(q4_0_unpack(w[i].qs), _mm256_loadu_si256((const __m256i *)x[i].qs));
                __m256 d = _mm256_set1_ps(half_f32(w[i].d) * half_f32(x[i].d));
                acc0 = _mm256_fmadd_ps(d, _mm256_cvtepi32_ps(p), acc0);
        }
        return hsum_ps(_mm256_add_ps(acc0, acc1));
}

/* The 12 scale bytes as 16 int16: scales 0-7 then mins 0-7. Works on the three 32-bit words
 * (w0 = bytes 0-3, w1 = 4-7, w2 = 8-11): scales 0-3 = w0 & 63, mins 0-3 = w1 & 63 per byte;
 * scales 4-7 = low nibbles of w2 | (top 2 bits of w0 bytes) << 4; mins 4-7 likewise from the
 * high nibbles of w2 and the top bits of w1. */
AVX2 static __m256i k4_scales_mins16(const uint8_t *q)
{
        uint32_t w0, w1, w2;
        memcpy(&w0, q, 4);
        memcpy(&w1, q + 4, 4);
        memcpy(&w2, q + 8, 4);
        uint32_t s03 = w0 & 0x3f3f3f3fu, m03 = w1 & 0x3f3f3f3fu;
        uint32_t s47 = (w2 & 0x0f0f0f0fu) | ((w0 >> 2) & 0x30303030u);
        uint32_t m47 = ((w2 >> 4) & 0x0f0f0f0fu) | ((w1 >> 2) & 0x30303030u);
        return _mm256_cvtepu8_epi16(_mm_set_epi32((int)m47, (int)m03, (int)s47, (int)s03));
}

/* pshufb mask: int16 element j to the whole low 128-bit lane, element j+1 to the high lane
 * (elements 0..15 of a 32-vector have one Q6_K scale, 16..31 the next). */
AVX2 static __m256i scale_pair_mask(int j)
{
        return _mm256_set_m128i(_mm_set1_epi16((short)((2 * j + 2) | ((2 * j + 3) << 8))),
                                _mm_set1_epi16((short)((2 * j) | ((2 * j + 1) << 8))));
}

/* ---- multi-row AVX2 kernels ------------------------------------------------------------ */
/* R weight rows (R = 1..4, a constant after inlining) against one activation row: every
 * activation load, its |x| or bsums, and its scales are reused across the R rows, and each row
 * keeps its own accumulators, so the activation row (17.9 KB of Q8_K for 14336 columns) is
 * read from L1/L2 once per R rows instead of once per row. Rows are `rb` bytes apart. */
#define MR_INLINE __attribute__((always_inline)) inline
#define MR_MAX 4
#ifndef MR_PF
#define MR_PF 1024
#endif
/* Software prefetch of [p + MR_PF, p + MR_PF + len) into L1 (a line per 64 bytes). */
#define MR_PREFETCH(p, len)                                                                     \
        do {                                                                                    \
                if (MR_PF)                                                                      \
                        for (size_t pf_ = 0; pf_ < (size_t)(len); pf_ += 64)                    \
                                _mm_prefetch((const char *)(p) + MR_PF + pf_, _MM_HINT_T0);     \
        } while (0)

AVX2 static MR_INLINE void mr_q8_0(int R, const uint8_t *w, size_t rb, const struct block_q8_0 *x, size_t nb,
                                   float *y)
{
        __m256 acc[MR_MAX];
        for (int r = 0; r < R; r++)
                acc[r] = _mm256_setzero_ps();
        const __m256i ones = _mm256_set1_epi16(1);
        for (size_t i = 0; i < nb; i++) {
                __m256i xq = _mm256_loadu_si256((const __m256i *)x[i].qs);
                __m256i ax = _mm256_sign_epi8(xq, xq);
                float xd = half_f32(x[i].d);
                for (int r = 0; r < R; r++) {
                        const struct block_q8_0 *b = (const struct block_q8_0 *)(w + r * rb) + i;
                        if (i % 2 == 0)
                                MR_PREFETCH(b, 64);
                        __m256i sw = _mm256_sign_epi8(_mm256_loadu_si256((const __m256i *)b->qs), xq);
                        __m256i p = _mm256_madd_epi16(_mm256_maddubs_epi16(ax, sw), ones);
                        acc[r] = _mm256_fmadd_ps(_mm256_set1_ps(half_f32(b->d) * xd), _mm256_cvtepi32_ps(p), acc[r]);
                }
        }
        for (int r = 0; r < R; r++)
                y[r] = hsum_ps(acc[r]);
}

/* Nibbles are used unsigned (0..15) in maddubs and the -8 comes off as 8 * the activation's
 * pair sums, computed once per block for all rows (int16: |q*x pair| <= 2 * 15 * 127). */
AVX2 static MR_INLINE void mr_q4_0(int R, const uint8_t *w, size_t rb, const struct block_q8_0 *x, size_t nb,
                                   float *y)
{
        __m256 acc[MR_MAX];
        for (int r = 0; r < R; r++)
                acc[r] = _mm256_setzero_ps();
        const __m256i ones = _mm256_set1_epi16(1);
        const __m256i m4 = _mm256_set1_epi8(0x0f);
        const __m256i eight = _mm256_set1_epi8(8);
        for (size_t i = 0; i < nb; i++) {
                __m256i xq = _mm256_loadu_si256((const __m256i *)x[i].qs);
                __m256i x8 = _mm256_maddubs_epi16(eight, xq);
                float xd = half_f32(x[i].d);
                for (int r = 0; r < R; r++) {
                        const struct block_q4_0 *b = (const struct block_q4_0 *)(w + r * rb) + i;
                        if (i % 4 == 0)
                                MR_PREFETCH(b, 64);
                        __m128i bb = _mm_loadu_si128((const __m128i *)b->qs);
                        __m256i q = _mm256_and_si256(_mm256_set_m128i(_mm_srli_epi16(bb, 4), bb), m4);
                        __m256i p16 = _mm256_sub_epi16(_mm256_maddubs_epi16(q, xq), x8);
                        __m256i p = _mm256_madd_epi16(p16, ones);
                        acc[r] = _mm256_fmadd_ps(_mm256_set1_ps(half_f32(b->d) * xd), _mm256_cvtepi32_ps(p), acc[r]);
                }
        }
        for (int r = 0; r < R; r++)
                y[r] = hsum_ps(acc[r]);
}

/* pshufb mask: int16 element j of each 128-bit lane to all eight int16 of that lane. */
AVX2 static __m256i scale_bcast_mask(int j)
{
        return _mm256_set1_epi16((short)((2 * j) | ((2 * j + 1) << 8)));
}

/* Q4_K and Q5_K (HB = 1 adds the 5th bits). Per block and row, the 6-bit scales and mins are
 * multiplied (int16) by Q8_K's sub-block multipliers; each 32-element half meets its sc_j*m_j
 * in the madd that widens the maddubs pair sums, the block accumulates in int32 and meets
 * d * D once as float; the mins meet the bsums in one madd. int32 bound per lane: 8 madds of
 * <= 2 * (2 * 31 * 127) * (63 * 64) = 63.5M each, 508M over the block. */
AVX2 static MR_INLINE void mr_q45_K(int R, int HB, const uint8_t *w, size_t rb, const struct block_q8_K *x,
                                    size_t nb, float *y)
{
        __m256 acc[MR_MAX];
        for (int r = 0; r < R; r++)
                acc[r] = _mm256_setzero_ps();
        const __m256i m4 = _mm256_set1_epi8(0x0f);
        const __m256i b16 = _mm256_set1_epi8(16);
        const size_t bsz = HB ? sizeof(struct block_q5_K) : sizeof(struct block_q4_K);
        for (size_t i = 0; i < nb; i++) {
                const __m256i mult = _mm256_broadcastsi128_si256(_mm_loadu_si128((const __m128i *)x[i].m));
                const __m256i bsums = _mm256_loadu_si256((const __m256i *)x[i].bsums);
                const int8_t *q8 = x[i].qs;
                for (int r = 0; r < R; r++) {
                        const uint8_t *b = w + r * rb + i * bsz;
                        rig_half d, dmin;
                        const uint8_t *packed, *qs, *qh = NULL;
                        if (HB) {
                                const struct block_q5_K *q = (const struct block_q5_K *)b;
                                d = q->d, dmin = q->dmin, packed = q->scales, qs = q->qs, qh = q->qh;
                        } else {
                                const struct block_q4_K *q = (const struct block_q4_K *)b;
                                d = q->d, dmin = q->dmin, packed = q->scales, qs = q->qs;
                        }
                        MR_PREFETCH(b, bsz);
                        __m256i sm = _mm256_mullo_epi16(k4_scales_mins16(packed), mult);
                        __m128i mins = _mm256_extracti128_si256(sm, 1);
                        __m256i m2 = _mm256_set_m128i(_mm_unpackhi_epi16(mins, mins), _mm_unpacklo_epi16(mins, mins));
                        __m256i summ = _mm256_madd_epi16(m2, bsums);
                        __m256i scales = _mm256_permute2x128_si256(sm, sm, 0x00);
                        __m256i hbits = HB ? _mm256_loadu_si256((const __m256i *)qh) : _mm256_setzero_si256();
                        __m256i sumi = _mm256_setzero_si256();
                        for (int k = 0; k < QK_K / 64; k++) {
                                __m256i bits = _mm256_loadu_si256((const __m256i *)(qs + 32 * k));
                                __m256i lo = _mm256_and_si256(bits, m4);
                                __m256i hi = _mm256_and_si256(_mm256_srli_epi16(bits, 4), m4);
                                if (HB) {       /* bit 2k to bit 4 of the low half, bit 2k+1 of the high */
                                        __m256i hb = _mm256_srli_epi16(hbits, 2 * k);
                                        lo = _mm256_or_si256(lo, _mm256_and_si256(_mm256_slli_epi16(hb, 4), b16));
                                        hi = _mm256_or_si256(hi, _mm256_and_si256(_mm256_slli_epi16(hb, 3), b16));
                                }
                                __m256i plo = _mm256_maddubs_epi16(lo, _mm256_loadu_si256((const __m256i *)(q8 + 64 * k)));
                                __m256i phi = _mm256_maddubs_epi16(hi, _mm256_loadu_si256((const __m256i *)(q8 + 64 * k + 32)));
                                plo = _mm256_madd_epi16(_mm256_shuffle_epi8(scales, scale_bcast_mask(2 * k)), plo);
                                phi = _mm256_madd_epi16(_mm256_shuffle_epi8(scales, scale_bcast_mask(2 * k + 1)), phi);
                                sumi = _mm256_add_epi32(sumi, _mm256_add_epi32(plo, phi));
                        }
                        acc[r] = _mm256_fmadd_ps(_mm256_set1_ps(half_f32(d) * x[i].d), _mm256_cvtepi32_ps(sumi), acc[r]);
                        acc[r] = _mm256_fnmadd_ps(_mm256_set1_ps(half_f32(dmin) * x[i].d), _mm256_cvtepi32_ps(summ), acc[r]);
                }
        }
        for (int r = 0; r < R; r++)
                y[r] = hsum_ps(acc[r]);
}

/* Q6_K: 6-bit q (0..63, unsigned for maddubs) against int8; each 16-group's int8 scale times its
 * sub-block's multiplier (|sc*m| <= 128 * 64, int16) meets the pair sums in one madd, and the -32
 * offset comes off once per block as 32 * sum (sc*m) * bsum. int32 bound per lane and half-block:
 * 4 madds of <= 2 * (2 * 63 * 127) * 8192 = 262M each, 1.05G; the halves meet in float. */
AVX2 static MR_INLINE void mr_q6_K(int R, const uint8_t *w, size_t rb, const struct block_q8_K *x, size_t nb,
                                   float *y)
{
        __m256 acc[MR_MAX];
        for (int r = 0; r < R; r++)
                acc[r] = _mm256_setzero_ps();
        const __m256i m4 = _mm256_set1_epi8(0x0f);
        const __m256i m30 = _mm256_set1_epi8(0x30);
        for (size_t i = 0; i < nb; i++) {
                __m128i m = _mm_loadu_si128((const __m128i *)x[i].m);
                const __m256i mult = _mm256_set_m128i(_mm_unpackhi_epi16(m, m), _mm_unpacklo_epi16(m, m));
                const __m256i bsums = _mm256_loadu_si256((const __m256i *)x[i].bsums);
                for (int r = 0; r < R; r++) {
                        const struct block_q6_K *b = (const struct block_q6_K *)(w + r * rb) + i;
                        MR_PREFETCH(b, sizeof(*b));
                        __m256i scm = _mm256_mullo_epi16(
                                _mm256_cvtepi8_epi16(_mm_loadu_si128((const __m128i *)b->scales)), mult);
                        __m256i corr = _mm256_slli_epi32(_mm256_madd_epi16(scm, bsums), 5);
                        __m256 sum = _mm256_sub_ps(_mm256_setzero_ps(), _mm256_cvtepi32_ps(corr));
                        for (int n = 0; n < QK_K / 128; n++) {
                                const uint8_t *ql = b->ql + 64 * n, *qh = b->qh + 32 * n;
                                const int8_t *q8 = x[i].qs + 128 * n;
                                /* this half's 8 scales in both 128-bit lanes */
                                __m256i sc = n == 0 ? _mm256_permute2x128_si256(scm, scm, 0x00)
                                                    : _mm256_permute2x128_si256(scm, scm, 0x11);
                                __m256i l0 = _mm256_loadu_si256((const __m256i *)ql);
                                __m256i l1 = _mm256_loadu_si256((const __m256i *)(ql + 32));
                                __m256i h = _mm256_loadu_si256((const __m256i *)qh);
                                __m256i q[4];
                                q[0] = _mm256_or_si256(_mm256_and_si256(l0, m4), _mm256_and_si256(_mm256_slli_epi16(h, 4), m30));
                                q[1] = _mm256_or_si256(_mm256_and_si256(l1, m4), _mm256_and_si256(_mm256_slli_epi16(h, 2), m30));
                                q[2] = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(l0, 4), m4), _mm256_and_si256(h, m30));
                                q[3] = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(l1, 4), m4),
                                                       _mm256_and_si256(_mm256_srli_epi16(h, 2), m30));
                                __m256i sumi = _mm256_setzero_si256();
                                for (int g = 0; g < 4; g++) {
                                        __m256i p = _mm256_maddubs_epi16(q[g], _mm256_loadu_si256((const __m256i *)(q8 + 32 * g)));
                                        sumi = _mm256_add_epi32(sumi, _mm256_madd_epi16(_mm256_shuffle_epi8(sc, scale_pair_mask(2 * g)), p));
                                }
                                sum = _mm256_add_ps(sum, _mm256_cvtepi32_ps(sumi));
                        }
                        acc[r] = _mm256_fmadd_ps(_mm256_set1_ps(half_f32(b->d) * x[i].d), sum, acc[r]);
                }
        }
        for (int r = 0; r < R; r++)
                y[r] = hsum_ps(acc[r]);
}

/* One entry per type: rows [begin, end) in groups of ROWS (1, 2 or 4), the rest one group of
 * 1..3. Row counts measured on the 4096 x 14336 shape (Zen 4, 2 threads). */
#ifndef MR_ROWS_Q8_0
#define MR_ROWS_Q8_0 4
#endif
#ifndef MR_ROWS_Q4_0
#define MR_ROWS_Q4_0 4
#endif
#ifndef MR_ROWS_Q4_K
#define MR_ROWS_Q4_K 4
#endif
#ifndef MR_ROWS_Q5_K
#define MR_ROWS_Q5_K 4
#endif
#ifndef MR_ROWS_Q6_K
#define MR_ROWS_Q6_K 1          /* measured: 4 rows spill registers, 2 rows slower still; the
                                 * one-row form with prefetch and d folded in is the fastest */
#endif
#define MR_DRIVER(NAME, CALL, XT, BLK, MR_ROWS)                                                              \
        AVX2 static void NAME(const uint8_t *w, size_t rb, int begin, int end, const void *xv,       \
                              size_t n, float *y)                                                 \
        {                                                                                         \
                const XT *x = xv;                                                                 \
                size_t nb = n / (BLK);                                                            \
                int r = begin;                                                                    \
                for (; r + MR_ROWS <= end; r += MR_ROWS)                                          \
                        CALL(MR_ROWS, w + (size_t)r * rb, rb, x, nb, y + r);                      \
                switch (end - r) {                                                                \
                case 3: CALL(3, w + (size_t)r * rb, rb, x, nb, y + r); break;                     \
                case 2: CALL(2, w + (size_t)r * rb, rb, x, nb, y + r); break;                     \
                case 1: CALL(1, w + (size_t)r * rb, rb, x, nb, y + r); break;                     \
                default: break;                                                                   \
                }                                                                                 \
        }

#define MR_Q4_K(R, w, rb, x, nb, y) mr_q45_K(R, 0, w, rb, x, nb, y)
#define MR_Q5_K(R, w, rb, x, nb, y) mr_q45_K(R, 1, w, rb, x, nb, y)
MR_DRIVER(matvec_q8_0_avx2, mr_q8_0, struct block_q8_0, QK8_0, MR_ROWS_Q8_0)
MR_DRIVER(matvec_q4_0_avx2, mr_q4_0, struct block_q8_0, QK4_0, MR_ROWS_Q4_0)
MR_DRIVER(matvec_q4_K_avx2, MR_Q4_K, struct block_q8_K, QK_K, MR_ROWS_Q4_K)
MR_DRIVER(matvec_q5_K_avx2, MR_Q5_K, struct block_q8_K, QK_K, MR_ROWS_Q5_K)
MR_DRIVER(matvec_q6_K_avx2, mr_q6_K, struct block_q8_K, QK_K, MR_ROWS_Q6_K)

/* One row: the float and Q8_0-partnered types have their own kernels, the K types are the
 * multi-row kernels with one row. */
AVX2 static float vec_dot_avx2(enum rig_type weight_type, const void *w, const void *x, size_t n)
{
        float y;
        switch (weight_type) {
        case RIG_TYPE_F32:
                return dot_f32_avx2(w, x, n);
        case RIG_TYPE_F16:
                return dot_f16_avx2(w, x, n);
        case RIG_TYPE_BF16:
                return dot_bf16_avx2(w, x, n);
        case RIG_TYPE_Q4_0:
                RIG_ASSERT(n % QK4_0 == 0, "q4_0 dot of %zu", n);
                return dot_q4_0_q8_0_avx2(w, x, n / QK4_0);
        case RIG_TYPE_Q8_0:
                RIG_ASSERT(n % QK8_0 == 0, "q8_0 dot of %zu", n);
                return dot_q8_0_q8_0_avx2(w, x, n / QK8_0);
        case RIG_TYPE_Q4_K:
                RIG_ASSERT(n % QK_K == 0, "q4_K dot of %zu", n);
                mr_q45_K(1, 0, w, 0, x, n / QK_K, &y);
                return y;
        case RIG_TYPE_Q5_K:
                RIG_ASSERT(n % QK_K == 0, "q5_K dot of %zu", n);
                mr_q45_K(1, 1, w, 0, x, n / QK_K, &y);
                return y;
        case RIG_TYPE_Q6_K:
                RIG_ASSERT(n % QK_K == 0, "q6_K dot of %zu", n);
                mr_q6_K(1, w, 0, x, n / QK_K, &y);
                return y;
        default:
                RIG_ASSERT(0, "vec_dot of weight type %d", (int)weight_type);
                return 0;
        }
}

/* The multi-row kernel for a type, or NULL (the float types: one row at a time). */
typedef void (*matvec_fn)(const uint8_t *w, size_t rb, int begin, int end, const void *x, size_t n, float *y);

static matvec_fn matvec_avx2(enum rig_type weight_type)
{
        switch (weight_type) {
        case RIG_TYPE_Q4_0: return matvec_q4_0_avx2;
        case RIG_TYPE_Q8_0: return matvec_q8_0_avx2;
        case RIG_TYPE_Q4_K: return matvec_q4_K_avx2;
        case RIG_TYPE_Q5_K: return matvec_q5_K_avx2;
        case RIG_TYPE_Q6_K: return matvec_q6_K_avx2;
        default: return NULL;
        }
}
#endif

bool rig_vec_dot_has_avx2(void)
{
#if RIG_HAVE_X86
        /* The runtime fills the cpu model in a constructor; this is a load and a bit test.
         * F16C is not asked: clang cannot, and every CPU with AVX2 and FMA has it. */
        return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
#else
        return false;
#endif
}

float rig_vec_dot(enum rig_type weight_type, const void *w, const void *x, size_t n)
{
#if RIG_HAVE_X86
        if (rig_vec_dot_has_avx2())
                return vec_dot_avx2(weight_type, w, x, n);
#endif
        return rig_vec_dot_portable(weight_type, w, x, n);
}

void rig_matvec_rows(enum rig_type weight_type, const void *w, size_t row_bytes, int row_begin, int row_end,
                     const void *x, size_t n, float *y)
{
        RIG_ASSERT(row_begin <= row_end, "matvec rows %d..%d", row_begin, row_end);
#if RIG_HAVE_X86
        if (rig_vec_dot_has_avx2()) {
                matvec_fn f = matvec_avx2(weight_type);
                if (f) {
                        size_t be = weight_type == RIG_TYPE_Q4_0 || weight_type == RIG_TYPE_Q8_0 ? QK8_0 : QK_K;
                        RIG_ASSERT(n % be == 0, "matvec of type %d over %zu columns", (int)weight_type, n);
                        f(w, row_bytes, row_begin, row_end, x, n, y);
                        return;
                }
        }
#endif
        const uint8_t *row = (const uint8_t *)w + (size_t)row_begin * row_bytes;
        for (int r = row_begin; r < row_end; r++, row += row_bytes)
                y[r] = rig_vec_dot(weight_type, row, x, n);
}
