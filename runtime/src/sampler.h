/* sampler.h — choosing the next token from logits: repetition penalty, then top-k, top-p, min-p
 * and temperature, then a draw from a seeded generator (same seed, same tokens); temperature 0
 * is greedy. */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

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
        size_t n_recent, head;
        struct sampler_candidate { int32_t id; float logit; } *cand;
        size_t n_vocab;
};

void sampler_defaults(struct sampler_params *p);
int sampler_init(struct sampler *s, const struct sampler_params *p, size_t n_vocab);
void sampler_free(struct sampler *s);

/* Remembers a token for the repetition penalty (prompt tokens too). */
void sampler_accept(struct sampler *s, int32_t id);

/* Picks a token; logits are modified (penalties applied). */
int32_t sampler_sample(struct sampler *s, float *logits);
