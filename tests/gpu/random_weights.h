/* random_weights.h — random activations and weight rows of every type for the GPU op tests and
 * benchmarks (a fixed xorshift sequence: every run sees the same inputs). */
#pragma once

#include <stddef.h>
#include <stdint.h>

#include "quant.h"

#ifdef __cplusplus
extern "C" {
#endif

uint64_t rng_next(void);
/* Uniform in [-1, 1). */
float rng_float(void);
/* n floats from rng_float (malloc'd; the caller frees). */
float *random_floats(size_t n);
/* One row of n elements of type: random bits in every quant and scale field (all patterns the
 * decoders must take), the f16 block scales set to small finite values. */
void random_row(enum rig_type type, size_t n, uint8_t *row);
/* n_out such rows of n_in (malloc'd). */
uint8_t *random_matrix(enum rig_type type, uint32_t n_in, uint32_t n_out);

#ifdef __cplusplus
}
#endif
