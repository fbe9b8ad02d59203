/* pool.c — worker threads woken per job with a generation counter under one mutex. Jobs are
 * large (a whole matrix-vector product), so a condition variable costs nothing that matters. */
#include <errno.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdlib.h>

#include "pool.h"

struct cpu_pool {
        pthread_mutex_t lock;
        pthread_cond_t wake, done;
        pthread_t *threads;
        int n_threads;
        unsigned long generation;       /* bumped per job */
        int n_running;                  /* workers still in the current job */
        bool is_stopping;
        cpu_job_fn fn;
        void *ctx;
};

struct worker_arg {
        struct cpu_pool *pool;
        int ith;
};

static void *worker_main(void *arg)
{
        struct worker_arg *w = arg;
        struct cpu_pool *p = w->pool;
        int ith = w->ith;
        free(w);

        unsigned long seen = 0;
        pthread_mutex_lock(&p->lock);
        for (;;) {
                while (p->generation == seen && !p->is_stopping)
                        pthread_cond_wait(&p->wake, &p->lock);
                if (p->is_stopping)
                        break;
                seen = p->generation;
                cpu_job_fn fn = p->fn;
                void *ctx = p->ctx;
                pthread_mutex_unlock(&p->lock);

                fn(ctx, ith, p->n_threads);

                pthread_mutex_lock(&p->lock);
                if (--p->n_running == 0)
                        pthread_cond_signal(&p->done);
        }
        pthread_mutex_unlock(&p->lock);
        return NULL;
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
        pthread_cond_init(&p->done, NULL);
        p->n_threads = n_threads;
        p->threads = calloc((size_t)n_threads, sizeof(*p->threads));
        if (!p->threads) {
                cpu_pool_free(p);
                return -ENOMEM;
        }
        for (int i = 1; i < n_threads; i++) {
                struct worker_arg *w = malloc(sizeof(*w));
                if (!w) {
                        p->n_threads = i;
                        cpu_pool_free(p);
                        return -ENOMEM;
                }
                w->pool = p;
                w->ith = i;
                int r = pthread_create(&p->threads[i], NULL, worker_main, w);
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
        p->is_stopping = true;
        pthread_cond_broadcast(&p->wake);
        pthread_mutex_unlock(&p->lock);
        for (int i = 1; i < p->n_threads; i++)
                if (p->threads)
                        pthread_join(p->threads[i], NULL);
        pthread_cond_destroy(&p->wake);
        pthread_cond_destroy(&p->done);
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
        pthread_mutex_lock(&p->lock);
        p->fn = fn;
        p->ctx = ctx;
        p->n_running = p->n_threads - 1;
        p->generation++;
        pthread_cond_broadcast(&p->wake);
        pthread_mutex_unlock(&p->lock);

        fn(ctx, 0, p->n_threads);

        pthread_mutex_lock(&p->lock);
        while (p->n_running > 0)
                pthread_cond_wait(&p->done, &p->lock);
        pthread_mutex_unlock(&p->lock);
}

void cpu_split(int n, int ith, int nth, int *begin, int *end)
{
        int per = n / nth, extra = n % nth;
        *begin = ith * per + (ith < extra ? ith : extra);
        *end = *begin + per + (ith < extra ? 1 : 0);
}
