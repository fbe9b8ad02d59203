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
        if (p->repeat_last_n > 0)
                s->recent = malloc((size_t)p->repeat_last_n * sizeof(*s->recent));
        if (!s->cand || (p->repeat_last_n > 0 && !s->recent)) {
                sampler_free(s);
                return -ENOMEM;
        }
        return 0;
}

void sampler_free(struct sampler *s)
{
        free(s->cand);
        free(s->recent);
        s->cand = NULL;
        s->recent = NULL;
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

static void apply_penalty(struct sampler *s, float *logits)
{
        if (s->p.repeat_penalty == 1.0f)
                return;
        for (size_t i = 0; i < s->n_recent; i++) {
                int32_t id = s->recent[i];
                if (id < 0 || (size_t)id >= s->n_vocab)
                        continue;
                float *l = &logits[id];
                /* a token repeated twice in the window is penalized once, as llama.cpp does */
                bool is_seen = false;
                for (size_t j = 0; j < i; j++)
                        is_seen |= s->recent[j] == id;
                if (!is_seen)
                        *l = *l > 0 ? *l / s->p.repeat_penalty : *l * s->p.repeat_penalty;
        }
}

static int32_t argmax(const float *logits, size_t n)
{
        size_t best = 0;
        for (size_t i = 1; i < n; i++)
                if (logits[i] > logits[best])
                        best = i;
        return (int32_t)best;
}

static int by_logit_desc(const void *a, const void *b)
{
        float x = ((const struct sampler_candidate *)a)->logit, y = ((const struct sampler_candidate *)b)->logit;
        if (x != y)
                return x < y ? 1 : -1;
        return ((const struct sampler_candidate *)a)->id - ((const struct sampler_candidate *)b)->id;
}

/* Lower logit first (the heap's root is the weakest of the kept top-k); ties by higher id. */
static bool weaker(const struct sampler_candidate *a, const struct sampler_candidate *b)
{
        return a->logit < b->logit || (a->logit == b->logit && a->id > b->id);
}

static void sift_down(struct sampler_candidate *h, size_t n, size_t i)
{
        for (;;) {
                size_t l = 2 * i + 1, r = l + 1, m = i;
                if (l < n && weaker(&h[l], &h[m]))
                        m = l;
                if (r < n && weaker(&h[r], &h[m]))
                        m = r;
                if (m == i)
                        return;
                struct sampler_candidate t = h[i];
                h[i] = h[m];
                h[m] = t;
                i = m;
        }
}

/* The candidates in descending logit order: all of them, or with top-k only the k best, found
 * with a k-element min-heap (a 128k vocabulary sorted per token would cost milliseconds). */
static size_t collect_candidates(struct sampler *s, const float *logits)
{
        size_t n = s->n_vocab, k = s->p.top_k > 0 && (size_t)s->p.top_k < n ? (size_t)s->p.top_k : n;
        if (k == n) {
                for (size_t i = 0; i < n; i++)
                        s->cand[i] = (struct sampler_candidate){ (int32_t)i, logits[i] };
                qsort(s->cand, n, sizeof(*s->cand), by_logit_desc);
                return n;
        }
        for (size_t i = 0; i < k; i++)
                s->cand[i] = (struct sampler_candidate){ (int32_t)i, logits[i] };
        for (size_t i = k / 2; i-- > 0; )
                sift_down(s->cand, k, i);
        for (size_t i = k; i < n; i++) {
                struct sampler_candidate c = { (int32_t)i, logits[i] };
                if (weaker(&s->cand[0], &c)) {
                        s->cand[0] = c;
                        sift_down(s->cand, k, 0);
                }
        }
        qsort(s->cand, k, sizeof(*s->cand), by_logit_desc);
        return k;
}

int32_t sampler_sample(struct sampler *s, float *logits)
{
        apply_penalty(s, logits);
        if (s->p.temperature <= 0.0f)
                return argmax(logits, s->n_vocab);

        size_t n = collect_candidates(s, logits);

        /* probabilities at temperature 1 for the cut-offs, as the reference chain does */
        double mx = s->cand[0].logit, sum = 0.0;
        double *prob = malloc(n * sizeof(*prob));
        if (!prob)
                return s->cand[0].id;
        for (size_t i = 0; i < n; i++)
                sum += prob[i] = exp(s->cand[i].logit - mx);
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
                sum += prob[i] = exp((s->cand[i].logit - mx) / s->p.temperature);
        double r = (double)(next_u64(s->rng) >> 11) * 0x1.0p-53 * sum;
        int32_t chosen = s->cand[n - 1].id;
        for (size_t i = 0; i < n; i++) {
                r -= prob[i];
                if (r < 0) {
                        chosen = s->cand[i].id;
                        break;
                }
        }
        free(prob);
        return chosen;
}
