/* op_profile.h — where a step's GPU time goes, for whoever tunes the kernels: with
 * RIG_GPU_PROFILE=1 in the environment the backend launches every op by itself (no graphs),
 * brackets each with events, and on exit prints one line per kind of op (a matmul per weight
 * type and shape) to stderr: calls, total and mean time, and the weight bandwidth of the
 * matmuls. The time between an op's events is its kernels' time and the gaps between them; the
 * gaps a graph removes between ops are the difference to the step time rig bench measures. */
#pragma once

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

#include "vendor.h"

struct op_profile;

/* NULL (no profile) unless RIG_GPU_PROFILE is set to something but "0". */
struct op_profile *op_profile_new(void);
void op_profile_free(struct op_profile *p);

/* Brackets one op's launches on stream: their time is added to `what` (at most 63 characters
 * kept) with bytes of weights read, once the device has run them (read at the next step, or
 * after PROFILE_MAX_PENDING ops). */
void op_profile_begin(struct op_profile *p, cudaStream_t stream);
void op_profile_end(struct op_profile *p, cudaStream_t stream, const char *what, double bytes);
/* A step began: the table gives time per step too. */
void op_profile_step(struct op_profile *p);

/* The table, longest total first (after waiting for the ops still pending). */
void op_profile_print(struct op_profile *p, FILE *f);
