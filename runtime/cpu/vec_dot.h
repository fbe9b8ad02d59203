/* vec_dot.h — what tests need beyond quant.h's rig_vec_dot: the portable kernels alone (always
 * compiled), and whether the AVX2 ones are in use on this CPU. */
#pragma once

#include <stdbool.h>
#include <stddef.h>

#include "quant.h"

float rig_vec_dot_portable(enum rig_type weight_type, const void *w, const void *x, size_t n);
bool rig_vec_dot_has_avx2(void);

/* y[r] = rig_vec_dot(row r of w, x) for r in [row_begin, row_end); row r starts at
 * w + r * row_bytes, x is in rig_vec_dot_type(weight_type). With AVX2 the quantized types take
 * several rows per pass over x (each activation load reused across them); the results equal
 * per-row dots up to float summation order. */
void rig_matvec_rows(enum rig_type weight_type, const void *w, size_t row_bytes, int row_begin, int row_end,
                     const void *x, size_t n, float *y);
