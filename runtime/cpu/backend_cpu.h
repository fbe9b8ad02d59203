/* backend_cpu.h — the CPU backend: the reference every GPU op is checked against, and the
 * fallback where no GPU is. Threads from a pool, SIMD dot products (vec_dot.c). */
#pragma once

#include "backend.h"
#include "quant.h"

/* A backend for model m with KV caches of n_ctx positions for n_seq sequences in kv_type (F32,
 * F16, Q8_0). -EINVAL for a KV type whose blocks do not divide a head, or no positions or
 * sequences; -ENOMEM. */
int cpu_backend_new(const struct rig_model *m, uint32_t n_ctx, uint32_t n_seq, enum rig_type kv_type, int n_threads,
                    struct rig_backend **out);
