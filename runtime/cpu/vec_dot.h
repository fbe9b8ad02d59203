/* vec_dot.h — what tests need beyond quant.h's rig_vec_dot: the portable kernels alone (always
 * compiled), and whether the AVX2 ones are in use on this CPU. */
#pragma once

#include <stdbool.h>
#include <stddef.h>

#include "quant.h"

float rig_vec_dot_portable(enum rig_type weight_type, const void *w, const void *x, size_t n);
bool rig_vec_dot_has_avx2(void);
