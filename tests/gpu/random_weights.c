/* random_weights.c — see random_weights.h. */
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include "quant.h"
#include "random_weights.h"

static uint64_t rng_state = 0x9e3779b97f4a7c15ull;

uint64_t rng_next(void)
{
        rng_state ^= rng_state << 13;
        rng_state ^= rng_state >> 7;
        rng_state ^= rng_state << 17;
        return rng_state;
}

/* Uniform in [-1, 1). */
float rng_float(void)
{
        return (float)((rng_next() >> 40) * (1.0 / (1ull << 23)) - 1.0);
}

float *random_floats(size_t n)
{
        float *x = malloc((n ? n : 1) * sizeof(float));
        for (size_t i = 0; i < n; i++)
                x[i] = rng_float();
        return x;
}

static void put_half(uint8_t *p, float f)
{
        rig_half h = rig_float_to_half(f);
        memcpy(p, &h, sizeof(h));
}

/* One row of n elements of type: random bits in every quant and scale field (all patterns
 * the decoders must take), the f16 block scales set to small finite values. */
void random_row(enum rig_type type, size_t n, uint8_t *row)
{
        size_t bytes = rig_row_bytes(type, n);
        if (type == RIG_TYPE_F32 || type == RIG_TYPE_F16 || type == RIG_TYPE_BF16) {
                float *x = random_floats(n);
                rig_quantize_row(type, x, row, n);
                free(x);
                return;
        }
        for (size_t i = 0; i < bytes; i++)
                row[i] = (uint8_t)rng_next();
        const struct rig_type_info *t = rig_type_get(type);
        for (uint8_t *b = row; b < row + bytes; b += t->block_bytes) {
                switch (type) {
                case RIG_TYPE_Q4_0:
                case RIG_TYPE_Q8_0:
                        put_half(b, 0.01f * rng_float());
                        break;
                case RIG_TYPE_Q4_K:
                case RIG_TYPE_Q5_K:
                        put_half(b, 0.01f * rng_float());               /* d */
                        put_half(b + 2, 0.01f * rng_float());           /* dmin */
                        break;
                case RIG_TYPE_Q6_K:
                        put_half(b + offsetof(struct block_q6_K, d), 0.001f * rng_float());
                        break;
                default:
                        break;
                }
        }
}

uint8_t *random_matrix(enum rig_type type, uint32_t n_in, uint32_t n_out)
{
        size_t rb = rig_row_bytes(type, n_in);
        uint8_t *w = malloc(rb * n_out + 1);
        for (uint32_t r = 0; r < n_out; r++)
                random_row(type, n_in, w + r * rb);
        return w;
}
