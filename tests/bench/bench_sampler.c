/* bench_sampler.c — what drawing a token costs the host, for a 128k vocabulary (llama3's): the
 * whole row (the repetition penalty, the top-k heap over every logit, the draw) as a session
 * that reads its logits back does, against the draw from the k best alone as a backend's top_k
 * leaves it (session_eval_sample). Prints the median of N runs in µs; the copy of a row, for
 * scale. Never asserts on time.
 *
 *   bench_sampler [runs]   default 201 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "sampler.h"

enum { N_VOCAB = 128256 };

static double now_us(void)
{
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (double)ts.tv_sec * 1e6 + (double)ts.tv_nsec * 1e-3;
}

static int by_value(const void *a, const void *b)
{
        double x = *(const double *)a, y = *(const double *)b;
        return (x > y) - (x < y);
}

static double median(double *t, int n)
{
        qsort(t, (size_t)n, sizeof(*t), by_value);
        return t[n / 2];
}

/* Logits like a model's: most near 0, a few high. */
static void fill_logits(float *x, uint32_t *state)
{
        for (int i = 0; i < N_VOCAB; i++) {
                *state = *state * 1664525u + 1013904223u;
                x[i] = (float)(*state >> 8) / (float)(1u << 24) * 4.0f - 2.0f + (*state % 1000 == 0 ? 8.0f : 0.0f);
        }
}

int main(int argc, char **argv)
{
        int runs = argc > 1 ? atoi(argv[1]) : 201;
        if (runs < 1)
                runs = 1;
        struct sampler_params p;
        sampler_defaults(&p);           /* temperature 0.8, top-k 40, top-p 0.95, min-p 0.05 */
        p.repeat_penalty = 1.1f;
        struct sampler whole, top, greedy;
        struct sampler_params pg = p;
        pg.temperature = 0.0f;
        float *x = malloc(N_VOCAB * sizeof(float)), *row = malloc(N_VOCAB * sizeof(float));
        double *t_whole = malloc(runs * sizeof(double)), *t_top = malloc(runs * sizeof(double));
        double *t_greedy = malloc(runs * sizeof(double)), *t_copy = malloc(runs * sizeof(double));
        struct rig_candidate *cand = malloc(N_VOCAB * sizeof(*cand));
        if (!x || !row || !t_whole || !t_top || !t_greedy || !t_copy || !cand || sampler_init(&whole, &p, N_VOCAB) < 0 ||
            sampler_init(&top, &p, N_VOCAB) < 0 || sampler_init(&greedy, &pg, N_VOCAB) < 0) {
                fprintf(stderr, "bench_sampler: out of memory\n");
                return 1;
        }
        uint32_t state = 1;
        for (int i = 0; i < p.repeat_last_n; i++) {    /* a full penalty window */
                sampler_accept(&whole, i * 977);
                sampler_accept(&top, i * 977);
                sampler_accept(&greedy, i * 977);
        }
        for (int r = 0; r < runs; r++) {
                fill_logits(x, &state);
                double t0 = now_us();
                memcpy(row, x, N_VOCAB * sizeof(float));
                double t1 = now_us();
                int32_t a = sampler_sample(&whole, row);
                double t2 = now_us();
                memcpy(row, x, N_VOCAB * sizeof(float));
                float penalty;
                size_t n_ids;
                const int32_t *ids = sampler_penalized(&top, &n_ids, &penalty);
                rig_penalize(row, N_VOCAB, ids, n_ids, penalty);
                size_t k = rig_top_k(row, N_VOCAB, sampler_top_needed(&top), cand);    /* a backend's part */
                double t3 = now_us();
                int32_t b = sampler_sample_top(&top, cand, k);
                double t4 = now_us();
                memcpy(row, x, N_VOCAB * sizeof(float));
                double t5 = now_us();
                sampler_sample(&greedy, row);
                double t6 = now_us();
                if (a != b) {
                        fprintf(stderr, "bench_sampler: the two draws differ (%d, %d)\n", a, b);
                        return 1;
                }
                t_copy[r] = t1 - t0;
                t_whole[r] = t2 - t1;
                t_top[r] = t4 - t3;
                t_greedy[r] = t6 - t5;
        }
        printf("sampling a 128256-token row, median of %d (µs): copy of the row %.1f; default chain (top-k 40, "
               "top-p 0.95, min-p 0.05, penalty over 64) on the whole row %.1f; the draw from its 40 best alone %.2f; "
               "greedy on the whole row %.1f\n",
               runs, median(t_copy, runs), median(t_whole, runs), median(t_top, runs), median(t_greedy, runs));
        sampler_free(&whole);
        sampler_free(&top);
        sampler_free(&greedy);
        free(x);
        free(row);
        free(cand);
        free(t_whole);
        free(t_top);
        free(t_greedy);
        free(t_copy);
        return 0;
}
