/* pool.h — a fixed set of worker threads that run one job at a time on all threads: the CPU
 * backend splits each matrix-vector product across them. */
#pragma once

struct cpu_pool;

/* fn(ctx, ith, nth) runs once on each of nth threads (the caller is thread 0). */
typedef void (*cpu_job_fn)(void *ctx, int ith, int nth);

int cpu_pool_new(int n_threads, struct cpu_pool **out);
void cpu_pool_free(struct cpu_pool *p);
int cpu_pool_threads(const struct cpu_pool *p);

/* Runs fn on every thread and returns when all are done. */
void cpu_pool_run(struct cpu_pool *p, cpu_job_fn fn, void *ctx);

/* Rows [*begin, *end) of n for thread ith of nth: contiguous, as even as possible. */
void cpu_split(int n, int ith, int nth, int *begin, int *end);
