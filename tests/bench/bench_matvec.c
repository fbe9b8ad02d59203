/* bench_matvec.c — y = W·x on the CPU for each weight type: W rows × cols in the type, x
 * [cols] float32 quantized to rig_vec_dot_type() inside the timed region (as a real decode
 * step does). Prints the median of N runs in ns and the weight bytes streamed per second;
 * 1 thread and T threads (rows split in contiguous parts on the runtime's thread pool).
 *
 *   bench_matvec [runs] [threads] [TYPES]   defaults: 21 runs, 2 threads, every type
 *
 * TYPES is a comma-separated list of names (Q4_K,Q6_K) to run only those.
 *
 * Shapes: 14336 × 4096 (an FFN up/gate projection of an 8B model) and 4096 × 14336 (its down
 * projection; ggml's m=4096, n=1, k=14336), and 128 × 4096, whose weights stay in the L2 cache
 * and whose x is quantized before the timing: its time is the kernel's compute alone, which the
 * large shapes hide where memory is slow. Never asserts on time. */
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "pool.h"
#include "quant.h"
#include "vec_dot.h"

struct matvec {
        enum rig_type type;
        size_t rows, cols, row_bytes;
        const uint8_t *w;               /* [rows][row_bytes] */
        const float *x;                 /* [cols] */
        void *xq;                       /* x in rig_vec_dot_type(type) */
        float *y;                       /* [rows] */
};

static double now_ns(void)
{
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (double)ts.tv_sec * 1e9 + (double)ts.tv_nsec;
}

static void rows_dot(struct matvec *mv, size_t begin, size_t end)
{
        rig_matvec_rows(mv->type, mv->w, mv->row_bytes, (int)begin, (int)end, mv->xq, mv->cols, mv->y);
}

/* The runtime's own split: rows in contiguous parts, one per pool thread. */
static void rows_job(void *ctx, int ith, int nth)
{
        struct matvec *mv = ctx;
        int begin, end;
        cpu_split((int)mv->rows, ith, nth, &begin, &end);
        rows_dot(mv, (size_t)begin, (size_t)end);
}

static int cmp_double(const void *a, const void *b)
{
        double x = *(const double *)a, y = *(const double *)b;
        return (x > y) - (x < y);
}

/* Weights: a few distinct quantized rows repeated (quantizing 58M values with the K-type
 * search would take longer than the benchmark; the bytes' values do not change the speed). */
static uint8_t *make_weights(enum rig_type t, size_t rows, size_t cols, size_t row_bytes)
{
        const size_t distinct = 16;
        uint8_t *w = aligned_alloc(64, (rows * row_bytes + 63) / 64 * 64);
        float *src = malloc(cols * sizeof(float));
        if (!w || !src) {
                fprintf(stderr, "out of memory for %zu x %zu\n", rows, cols);
                exit(1);
        }
        uint32_t s = 12345;
        for (size_t r = 0; r < distinct && r < rows; r++) {
                for (size_t i = 0; i < cols; i++) {
                        s = s * 1664525u + 1013904223u;
                        src[i] = ((float)(s >> 8) / 16777216.0f - 0.5f) * 0.05f;
                }
                rig_quantize_row(t, src, w + r * row_bytes, cols);
        }
        for (size_t r = distinct; r < rows; r++)
                memcpy(w + r * row_bytes, w + (r % distinct) * row_bytes, row_bytes);
        free(src);
        return w;
}

/* Median time of `runs` products on the runtime's thread pool (the caller's thread works too). */
static double time_matvec(struct matvec *mv, int threads, int runs, bool quantize_x)
{
        struct cpu_pool *pool;
        double *t = malloc((size_t)runs * sizeof(double));
        if (!t || cpu_pool_new(threads, &pool) < 0) {
                fprintf(stderr, "cannot start %d threads\n", threads);
                exit(1);
        }
        enum rig_type xt = rig_vec_dot_type(mv->type);
        rig_quantize_row(xt, mv->x, mv->xq, mv->cols);
        for (int r = -2; r < runs; r++) {               /* two warm-up runs */
                double t0 = now_ns();
                if (quantize_x)
                        rig_quantize_row(xt, mv->x, mv->xq, mv->cols);
                cpu_pool_run(pool, rows_job, mv);
                if (r >= 0)
                        t[r] = now_ns() - t0;
        }
        cpu_pool_free(pool);
        qsort(t, (size_t)runs, sizeof(double), cmp_double);
        double median = t[runs / 2];
        free(t);
        return median;
}

static const char *type_name(enum rig_type t)
{
        switch (t) {
        case RIG_TYPE_F32: return "F32";
        case RIG_TYPE_F16: return "F16";
        case RIG_TYPE_BF16: return "BF16";
        case RIG_TYPE_Q4_0: return "Q4_0";
        case RIG_TYPE_Q8_0: return "Q8_0";
        case RIG_TYPE_Q4_K: return "Q4_K";
        case RIG_TYPE_Q5_K: return "Q5_K";
        case RIG_TYPE_Q6_K: return "Q6_K";
        case RIG_TYPE_Q8_K: return "Q8_K";
        }
        return "?";
}

/* Whether `name` is in the comma-separated list (NULL: every type). */
static int type_selected(const char *list, const char *name)
{
        if (!list)
                return 1;
        size_t len = strlen(name);
        for (const char *p = list; *p;) {
                const char *end = strchr(p, ',');
                size_t n = end ? (size_t)(end - p) : strlen(p);
                if (n == len && strncasecmp(p, name, n) == 0)
                        return 1;
                p += n + (end != NULL);
        }
        return 0;
}

static void bench_shape(enum rig_type t, size_t rows, size_t cols, int runs, int threads, bool quantize_x)
{
        struct matvec mv = { .type = t, .rows = rows, .cols = cols };
        mv.row_bytes = rig_row_bytes(t, cols);
        mv.w = make_weights(t, rows, cols, mv.row_bytes);
        float *x = malloc(cols * sizeof(float));
        /* 64-byte aligned, as the weights: Q8_K's 320-byte blocks then never split a 32-byte load
         * across cache lines. */
        mv.xq = aligned_alloc(64, (cols * sizeof(float) + 63) / 64 * 64);
        mv.y = malloc(rows * sizeof(float));
        if (!x || !mv.xq || !mv.y) {
                fprintf(stderr, "out of memory\n");
                exit(1);
        }
        for (size_t i = 0; i < cols; i++)
                x[i] = (float)((i * 7919) % 1000) / 1000.0f - 0.5f;
        mv.x = x;
        double bytes = (double)rows * (double)mv.row_bytes;
        double t1 = time_matvec(&mv, 1, runs, quantize_x);
        double tn = time_matvec(&mv, threads, runs, quantize_x);
        printf("%-5s %6zu x %-6zu %8.1f MB   1 thread: %10.0f ns %6.2f GB/s   %d threads: %10.0f ns %6.2f GB/s\n",
               type_name(t), rows, cols, bytes / 1e6, t1, bytes / t1, threads, tn, bytes / tn);
        fflush(stdout);
        free((void *)mv.w);
        free(x);
        free(mv.xq);
        free(mv.y);
}

int main(int argc, char **argv)
{
        int runs = argc > 1 ? atoi(argv[1]) : 21;
        int threads = argc > 2 ? atoi(argv[2]) : 2;
        const char *only = argc > 3 ? argv[3] : NULL;
        if (runs < 1 || threads < 1 || threads > 64 || argc > 4) {
                fprintf(stderr, "usage: %s [runs >= 1] [threads 1..64] [TYPE,TYPE...]\n", argv[0]);
                return 2;
        }
        const enum rig_type types[] = { RIG_TYPE_F32, RIG_TYPE_F16, RIG_TYPE_BF16, RIG_TYPE_Q4_0,
                                        RIG_TYPE_Q8_0, RIG_TYPE_Q4_K, RIG_TYPE_Q5_K, RIG_TYPE_Q6_K };
        printf("y = W x, median of %d runs; GB/s = weight bytes / time (x quantized inside the timing)\n", runs);
        for (size_t k = 0; k < sizeof(types) / sizeof(types[0]); k++) {
                if (!type_selected(only, type_name(types[k])))
                        continue;
                bench_shape(types[k], 14336, 4096, runs, threads, true);
                bench_shape(types[k], 4096, 14336, runs, threads, true);
                bench_shape(types[k], 128, 4096, runs * 20, threads, false);
        }
        return 0;
}
