/* The KV cache: rows stored in F32, F16 and Q8_0 come back within each type's precision, per
 * head slice, at the right layer, sequence and position. */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>

#include <cmocka.h>

#include "kv.h"

enum { LAYERS = 3, SEQS = 2, CTX = 5, DIM = 128, HEAD = 64 };

static void fill(float *v, int seed)
{
        for (int i = 0; i < DIM; i++)
                v[i] = sinf((float)(i * 7 + seed * 13)) * (1.0f + (float)seed);
}

/* Bound per type: F32 exact; F16 half an ulp (2^-11 relative); Q8_0 half a step of max/127 plus
 * the f16 rounding of the block scale (2^-11 of max). */
static float bound(enum rig_type t, float amax)
{
        return t == RIG_TYPE_F32 ? 0.0f : t == RIG_TYPE_F16 ? amax / 2048.0f : amax / 254.0f + amax / 2048.0f;
}

static void round_trip(enum rig_type type)
{
        struct rig_kv kv;
        assert_int_equal(kv_init(&kv, type, LAYERS, SEQS, CTX, DIM), 0);
        float k[DIM], v[DIM], out[DIM];
        for (int l = 0; l < LAYERS; l++)
                for (int s = 0; s < SEQS; s++)
                        for (int p = 0; p < CTX; p++) {
                                int seed = l * 20 + s * 10 + p;
                                fill(k, seed);
                                fill(v, seed + 100);
                                kv_store(&kv, (uint32_t)l, (uint32_t)s, (uint32_t)p, k, v);
                        }
        for (int l = 0; l < LAYERS; l++)
                for (int s = 0; s < SEQS; s++)
                        for (int p = 0; p < CTX; p++)
                                for (int start = 0; start < DIM; start += HEAD) {
                                        int seed = l * 20 + s * 10 + p;
                                        fill(k, seed);
                                        fill(v, seed + 100);
                                        kv_load_k(&kv, (uint32_t)l, (uint32_t)s, (uint32_t)p, (uint32_t)start, HEAD, out);
                                        float amax = 1.0f + (float)seed;
                                        for (int i = 0; i < HEAD; i++)
                                                assert_true(fabsf(out[i] - k[start + i]) <= bound(type, amax));
                                        kv_load_v(&kv, (uint32_t)l, (uint32_t)s, (uint32_t)p, (uint32_t)start, HEAD, out);
                                        amax += 100.0f;
                                        for (int i = 0; i < HEAD; i++)
                                                assert_true(fabsf(out[i] - v[start + i]) <= bound(type, amax));
                                }
        kv_free(&kv);
}

static void test_f32_rows_come_back_exactly(void **state) { round_trip(RIG_TYPE_F32); }
static void test_f16_rows_come_back_within_half_an_ulp(void **state) { round_trip(RIG_TYPE_F16); }
static void test_q8_0_rows_come_back_within_half_a_step(void **state) { round_trip(RIG_TYPE_Q8_0); }

static void test_sizes_and_names(void **state)
{
        assert_int_equal(kv_bytes(RIG_TYPE_F16, 32, 8192, 1024), 2ull * 32 * 8192 * 1024 * 2);
        assert_int_equal(kv_bytes(RIG_TYPE_Q8_0, 32, 8192, 1024), 2ull * 32 * 8192 * (1024 / 32) * 34);
        enum rig_type t;
        assert_int_equal(kv_type_from_name("q8_0", &t), 0);
        assert_int_equal(t, RIG_TYPE_Q8_0);
        assert_int_equal(kv_type_from_name("q4_0", &t), -22);
        struct rig_kv kv;
        assert_int_equal(kv_init(&kv, RIG_TYPE_Q8_0, 1, 1, 1, 48), -22);  /* not a multiple of 32 */
        assert_int_equal(kv_init(&kv, RIG_TYPE_F16, 1, 0, 1, 64), -22);   /* no sequences */
        assert_int_equal(kv_init(&kv, RIG_TYPE_F16, 1, 1, 0, 64), -22);   /* no positions */
}

int main(void)
{
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_f32_rows_come_back_exactly),
                cmocka_unit_test(test_f16_rows_come_back_within_half_an_ulp),
                cmocka_unit_test(test_q8_0_rows_come_back_within_half_a_step),
                cmocka_unit_test(test_sizes_and_names),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
