/* top_k.h — the best few of a row of logits, and the repetition penalty on one: what a draw
 * needs of a 128k-token row. The sampler uses them on host memory; a GPU backend does the same
 * on the device (runtime/gpu/top_k.cu), so that only the few come back to the host. */
#pragma once

#include <stddef.h>
#include <stdint.h>

struct rig_candidate {
        int32_t id;
        float logit;
};

/* The order a draw takes candidates in: a higher logit first, of equal ones the lower id. */
static inline int rig_candidate_better(const struct rig_candidate *a, const struct rig_candidate *b)
{
        return a->logit > b->logit || (a->logit == b->logit && a->id < b->id);
}

/* The min(k, n) best of x[0..n) into out, best first; returns how many. */
size_t rig_top_k(const float *x, size_t n, size_t k, struct rig_candidate *out);

/* The repetition penalty on x in place: x[id] for each of the n_ids ids (each once; ids outside
 * [0, n) are skipped) divided by penalty where positive, multiplied where not. */
void rig_penalize(float *x, size_t n, const int32_t *ids, size_t n_ids, float penalty);
