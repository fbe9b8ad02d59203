/* sampler.c — the sampling chain; order as llama.cpp's default: penalties, top-k, top-p, min-p,
 * temperature, draw. */
#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "sampler.h"

void sampler_defaults(struct sampler_params *p)
{
        p->temperature = 0.8f;
        p->top_k = 40;
        p->top_p = 0.95f;
        p->min_p = 0.05f;
        p->repeat_penalty = 1.0f;
        p->repeat_last_n = 64;
        p->seed = 0x5eed;
}

static uint64_t rotl(uint64_t x, int k)
{
        return (x << k) | (x >> (64 - k));
}

static uint64_t next_u64(uint64_t s[4])
{
        uint64_t result = rotl(s[1] * 5, 7) * 9, t = s[1] << 17;
        s[2] ^= s[0];
        s[3] ^= s[1];
        s[1] ^= s[2];
        s[0] ^= s[3];
        s[2] ^= t;
        s[3] = rotl(s[3], 45);
        return result;
}

static uint64_t splitmix64(uint64_t *x)
{
        uint64_t z = (*x += 0x9e3779b97f4a7c15ull);
        z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
        z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
        return z ^ (z >> 31);
}

int sampler_init(struct sampler *s, const struct sampler_params *p, size_t n_vocab)
{
        memset(s, 0, sizeof(*s));
        s->p = *p;
        s->n_vocab = n_vocab;
        uint64_t seed = p->seed;
        for (int i = 0; i < 4; i++)
                s->rng[i] = splitmix64(&seed);
        s->cand = malloc(n_vocab * sizeof(*s->cand));
        if (p->repeat_last_n > 0) {
                s->recent = malloc((size_t)p->repeat_last_n * sizeof(*s->recent));
                s->recent_ids = malloc((size_t)p->repeat_last_n * sizeof(*s->recent_ids));
        }
        if (!s->cand || (p->repeat_last_n > 0 && (!s->recent || !s->recent_ids))) {
                sampler_free(s);
                return -ENOMEM;
        }
        return 0;
}

void sampler_free(struct sampler *s)
{
        free(s->cand);
        free(s->recent);
        free(s->recent_ids);
        s->cand = NULL;
        s->recent = NULL;
        s->recent_ids = NULL;
}

void sampler_accept(struct sampler *s, int32_t id)
{
        if (s->p.repeat_last_n <= 0)
                return;
        s->recent[s->head] = id;
        s->head = (s->head + 1) % (size_t)s->p.repeat_last_n;
        if (s->n_recent < (size_t)s->p.repeat_last_n)
                s->n_recent++;
}

const int32_t *sampler_penalized(struct sampler *s, size_t *n_ids, float *penalty)
{
        int32_t *ids = s->recent_ids;
        size_t n = 0;
        *penalty = s->p.repeat_penalty;
        *n_ids = 0;
        if (s->p.repeat_penalty == 1.0f)
                return ids;
        for (size_t i = 0; i < s->n_recent; i++) {
                /* a token repeated in the window is penalized once, as llama.cpp does */
                bool is_seen = false;
                for (size_t j = 0; j < n; j++)
                        is_seen |= ids[j] == s->recent[i];
                if (!is_seen)
                        ids[n++] = s->recent[i];
        }
        *n_ids = n;
        return ids;
}

size_t sampler_top_needed(const struct sampler *s)
{
        if (s->p.temperature <= 0.0f)
                return 1;
        return s->p.top_k > 0 ? ((size_t)s->p.top_k < s->n_vocab ? (size_t)s->p.top_k : s->n_vocab) : 0;
}

int32_t sampler_sample(struct sampler *s, float *logits)
{
        float penalty;
        size_t n_ids;
        const int32_t *ids = sampler_penalized(s, &n_ids, &penalty);
        rig_penalize(logits, s->n_vocab, ids, n_ids, penalty);
        size_t n = sampler_top_needed(s);
        n = rig_top_k(logits, s->n_vocab, n ? n : s->n_vocab, s->cand);
        return sampler_sample_top(s, s->cand, n);
}

int32_t sampler_sample_top(struct sampler *s, const struct rig_candidate *cand, size_t n)
{
        if (s->p.temperature <= 0.0f)
                return cand[0].id;

        /* probabilities at temperature 1 for the cut-offs, as the reference chain does */
        double mx = cand[0].logit, sum = 0.0;
        double *prob = malloc(n * sizeof(*prob));
        if (!prob)
                return cand[0].id;
        for (size_t i = 0; i < n; i++)
                sum += prob[i] = exp(cand[i].logit - mx);
        if (s->p.top_p < 1.0f) {
                double cum = 0.0;
                for (size_t i = 0; i < n; i++) {
                        cum += prob[i] / sum;
                        if (cum >= s->p.top_p) {
                                n = i + 1;
                                break;
                        }
                }
        }
        if (s->p.min_p > 0.0f) {
                size_t keep = 1;
                while (keep < n && prob[keep] >= s->p.min_p * prob[0])
                        keep++;
                n = keep;
        }

        sum = 0.0;
        for (size_t i = 0; i < n; i++)
                sum += prob[i] = exp((cand[i].logit - mx) / s->p.temperature);
        double r = (double)(next_u64(s->rng) >> 11) * 0x1.0p-53 * sum;
        int32_t chosen = cand[n - 1].id;
        for (size_t i = 0; i < n; i++) {
                r -= prob[i];
                if (r < 0) {
                        chosen = cand[i].id;
                        break;
                }
        }
        free(prob);
        return chosen;
}
