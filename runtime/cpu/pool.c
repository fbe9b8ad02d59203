/* pool.c — worker threads that spin briefly on a job counter before sleeping on a condition
 * variable. A decode step runs ~10 products per layer back to back, each a millisecond or less:
 * waking a sleeping thread costs tens to hundreds of microseconds on a VM, so workers keep
 * spinning (with pause) for about a millisecond after each job, and sleep only when idle. */
#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdlib.h>
#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#define cpu_relax() _mm_pause()
#else
#define cpu_relax() ((void)0)
#endif

#include "pool.h"

#define SPIN_ITERATIONS (1 << 15)       /* ~1 ms of pause on current x86 cores */

struct cpu_pool {
        pthread_mutex_t lock;
        pthread_cond_t wake;
        pthread_t *threads;
        int n_threads;
        atomic_ulong generation;        /* bumped per job, after fn/ctx are written */
        atomic_int n_pending;           /* workers still in the current job */
        atomic_bool is_stopping;
        int n_sleeping;                 /* under lock */
        cpu_job_fn fn;
        void *ctx;
};

struct worker_arg {
        struct cpu_pool *pool;
        int ith;
};

/* Waits until the generation differs from seen (or the pool stops); returns the new one. */
static unsigned long wait_for_job(struct cpu_pool *p, unsigned long seen)
{
        for (int i = 0; i < SPIN_ITERATIONS; i++) {
                unsigned long g = atomic_load_explicit(&p->generation, memory_order_acquire);
                if (g != seen || atomic_load_explicit(&p->is_stopping, memory_order_acquire))
                        return g;
                cpu_relax();
        }
        pthread_mutex_lock(&p->lock);
        p->n_sleeping++;
        while (atomic_load(&p->generation) == seen && !atomic_load(&p->is_stopping))
                pthread_cond_wait(&p->wake, &p->lock);
        p->n_sleeping--;
        pthread_mutex_unlock(&p->lock);
        return atomic_load_explicit(&p->generation, memory_order_acquire);
}

static void *worker_main(void *arg)
{
        struct worker_arg *w = arg;
        struct cpu_pool *p = w->pool;
        int ith = w->ith;
        free(w);

        unsigned long seen = 0;
        for (;;) {
                seen = wait_for_job(p, seen);
                if (atomic_load(&p->is_stopping))
                        return NULL;
                p->fn(p->ctx, ith, p->n_threads);
                atomic_fetch_sub_explicit(&p->n_pending, 1, memory_order_release);
        }
}

int cpu_pool_new(int n_threads, struct cpu_pool **out)
{
        if (n_threads < 1)
                n_threads = 1;
        struct cpu_pool *p = calloc(1, sizeof(*p));
        if (!p)
                return -ENOMEM;
        pthread_mutex_init(&p->lock, NULL);
        pthread_cond_init(&p->wake, NULL);
        p->n_threads = n_threads;
        p->threads = calloc((size_t)n_threads, sizeof(*p->threads));
        if (!p->threads) {
                p->n_threads = 1;
                cpu_pool_free(p);
                return -ENOMEM;
        }
        for (int i = 1; i < n_threads; i++) {
                struct worker_arg *w = malloc(sizeof(*w));
                int r = ENOMEM;
                if (w) {
                        w->pool = p;
                        w->ith = i;
                        r = pthread_create(&p->threads[i], NULL, worker_main, w);
                }
                if (r != 0) {
                        free(w);
                        p->n_threads = i;
                        cpu_pool_free(p);
                        return -r;
                }
        }
        *out = p;
        return 0;
}

void cpu_pool_free(struct cpu_pool *p)
{
        if (!p)
                return;
        pthread_mutex_lock(&p->lock);
        atomic_store(&p->is_stopping, true);
        pthread_cond_broadcast(&p->wake);
        pthread_mutex_unlock(&p->lock);
        for (int i = 1; i < p->n_threads; i++)
                pthread_join(p->threads[i], NULL);
        pthread_cond_destroy(&p->wake);
        pthread_mutex_destroy(&p->lock);
        free(p->threads);
        free(p);
}

int cpu_pool_threads(const struct cpu_pool *p)
{
        return p->n_threads;
}

void cpu_pool_run(struct cpu_pool *p, cpu_job_fn fn, void *ctx)
{
        if (p->n_threads == 1) {
                fn(ctx, 0, 1);
                return;
        }
        p->fn = fn;
        p->ctx = ctx;
        atomic_store_explicit(&p->n_pending, p->n_threads - 1, memory_order_relaxed);
        atomic_fetch_add_explicit(&p->generation, 1, memory_order_release);
        /* Sleepers re-check the generation under the lock, so taking it here cannot lose one. */
        pthread_mutex_lock(&p->lock);
        if (p->n_sleeping > 0)
                pthread_cond_broadcast(&p->wake);
        pthread_mutex_unlock(&p->lock);

        fn(ctx, 0, p->n_threads);

        while (atomic_load_explicit(&p->n_pending, memory_order_acquire) > 0)
                cpu_relax();
}

void cpu_split(int n, int ith, int nth, int *begin, int *end)
{
        int per = n / nth, extra = n % nth;
        *begin = ith * per + (ith < extra ? ith : extra);
        *end = *begin + per + (ith < extra ? 1 : 0);
}
