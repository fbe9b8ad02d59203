/* sampler.h — choosing the next token from logits: repetition penalty, then top-k, top-p, min-p
 * and temperature, then a draw from a seeded generator (same seed, same tokens); temperature 0
 * is greedy. */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "top_k.h"

struct sampler_params {
        float temperature;              /* 0 = greedy */
        int top_k;                      /* 0 = off */
        float top_p;                    /* 1 = off */
        float min_p;                    /* 0 = off: drop tokens below min_p × the top probability */
        float repeat_penalty;           /* 1 = off; divides positive logits, multiplies negative */
        int repeat_last_n;              /* how many recent tokens the penalty looks at */
        uint64_t seed;
};

struct sampler {
        struct sampler_params p;
        uint64_t rng[4];                /* xoshiro256** state */
        int32_t *recent;                /* ring of the last repeat_last_n tokens */
        int32_t *recent_ids;            /* scratch: their distinct ids (sampler_penalized) */
        size_t n_recent, head;
        struct rig_candidate *cand;
        size_t n_vocab;
};

void sampler_defaults(struct sampler_params *p);
int sampler_init(struct sampler *s, const struct sampler_params *p, size_t n_vocab);
void sampler_free(struct sampler *s);

/* Remembers a token for the repetition penalty (prompt tokens too). */
void sampler_accept(struct sampler *s, int32_t id);

/* Picks a token; logits are modified (penalties applied). */
int32_t sampler_sample(struct sampler *s, float *logits);

/* The same draw in two halves, for a caller whose logits are elsewhere (a GPU's memory): it
 * applies the penalty (rig_penalize with sampler_penalized's ids and penalty) and finds the
 * sampler_top_needed best (rig_top_k), and sampler_sample_top picks from those: the token
 * sampler_sample would pick from the whole row, the generator advanced alike.
 * sampler_top_needed: 1 when greedy, top_k when the draw cuts there, 0 when it needs the whole
 * row (top_k off and a temperature above 0: use sampler_sample). */
size_t sampler_top_needed(const struct sampler *s);
/* The distinct recent tokens the penalty applies to (at most repeat_last_n, in the sampler's own
 * scratch, valid until its next call), their count in *n_ids (0 when the penalty is off), and
 * the penalty. */
const int32_t *sampler_penalized(struct sampler *s, size_t *n_ids, float *penalty);
/* cand: the n best of the penalized logits, best first (rig_top_k's order); n >= 1. */
int32_t sampler_sample_top(struct sampler *s, const struct rig_candidate *cand, size_t n);
