/* op_profile.cu — see op_profile.h. */
#include <stdlib.h>
#include <string.h>

#include "op_profile.h"

#define PROFILE_MAX_KINDS 128
/* Ops timed before their times are read: a decode step of a 126-layer model has ~2600. Between
 * reads the events are only recorded, so the host runs ahead and the device keeps busy, as it
 * would without the profile (a read of each op alone would add a launch latency to each). */
#define PROFILE_MAX_PENDING 4096

struct op_kind_time {
        char what[64];
        uint64_t calls;
        double total_ms;
        double bytes;
};

struct pending_op {
        struct op_kind_time *kind;
        double bytes;
};

struct op_profile {
        cudaEvent_t events[2 * PROFILE_MAX_PENDING];   /* start, stop of each pending op */
        struct pending_op pending[PROFILE_MAX_PENDING];
        int n_pending;
        struct op_kind_time kinds[PROFILE_MAX_KINDS];
        int n_kinds;
        uint64_t n_steps;
};

struct op_profile *op_profile_new(void)
{
        const char *env = getenv("RIG_GPU_PROFILE");
        if (!env || !env[0] || strcmp(env, "0") == 0)
                return NULL;
        struct op_profile *p = (struct op_profile *)calloc(1, sizeof(*p));
        if (!p)
                return NULL;
        for (int i = 0; i < 2 * PROFILE_MAX_PENDING; i++)
                if (cudaEventCreate(&p->events[i]) != cudaSuccess) {
                        cudaGetLastError();
                        for (int k = 0; k < i; k++)
                                cudaEventDestroy(p->events[k]);
                        free(p);
                        return NULL;
                }
        return p;
}

void op_profile_free(struct op_profile *p)
{
        if (!p)
                return;
        for (int i = 0; i < 2 * PROFILE_MAX_PENDING; i++)
                cudaEventDestroy(p->events[i]);
        free(p);
}

/* The pending ops' times into their kinds (waits for the last of them). */
static void resolve(struct op_profile *p)
{
        if (p->n_pending == 0)
                return;
        if (cudaEventSynchronize(p->events[2 * p->n_pending - 1]) != cudaSuccess) {
                cudaGetLastError();     /* the ops' own error is the backend's to report */
                p->n_pending = 0;
                return;
        }
        for (int i = 0; i < p->n_pending; i++) {
                float ms = 0;
                struct op_kind_time *k = p->pending[i].kind;
                if (!k || cudaEventElapsedTime(&ms, p->events[2 * i], p->events[2 * i + 1]) != cudaSuccess)
                        continue;
                k->calls++;
                k->total_ms += ms;
                k->bytes += p->pending[i].bytes;
        }
        cudaGetLastError();
        p->n_pending = 0;
}

void op_profile_begin(struct op_profile *p, cudaStream_t stream)
{
        if (p->n_pending == PROFILE_MAX_PENDING)
                resolve(p);
        cudaEventRecord(p->events[2 * p->n_pending], stream);
}

static struct op_kind_time *kind_of(struct op_profile *p, const char *what)
{
        for (int i = 0; i < p->n_kinds; i++)
                if (strncmp(p->kinds[i].what, what, sizeof(p->kinds[i].what) - 1) == 0)
                        return &p->kinds[i];
        if (p->n_kinds == PROFILE_MAX_KINDS)
                return NULL;            /* more kinds than a model has: the rest go uncounted */
        struct op_kind_time *k = &p->kinds[p->n_kinds++];
        strncpy(k->what, what, sizeof(k->what) - 1);
        return k;
}

void op_profile_end(struct op_profile *p, cudaStream_t stream, const char *what, double bytes)
{
        cudaEventRecord(p->events[2 * p->n_pending + 1], stream);
        p->pending[p->n_pending].kind = kind_of(p, what);
        p->pending[p->n_pending].bytes = bytes;
        p->n_pending++;
}

void op_profile_step(struct op_profile *p)
{
        resolve(p);
        p->n_steps++;
}

static int by_total_desc(const void *a, const void *b)
{
        double x = ((const struct op_kind_time *)a)->total_ms, y = ((const struct op_kind_time *)b)->total_ms;
        return x < y ? 1 : x > y ? -1 : 0;
}

void op_profile_print(struct op_profile *p, FILE *f)
{
        resolve(p);
        struct op_kind_time sorted[PROFILE_MAX_KINDS];
        memcpy(sorted, p->kinds, (size_t)p->n_kinds * sizeof(sorted[0]));
        qsort(sorted, (size_t)p->n_kinds, sizeof(sorted[0]), by_total_desc);
        double total = 0;
        for (int i = 0; i < p->n_kinds; i++)
                total += sorted[i].total_ms;
        fprintf(f, "GPU op profile (RIG_GPU_PROFILE): %llu steps, kernel time %.3f ms, %.1f us a step\n",
                (unsigned long long)p->n_steps, total, p->n_steps ? 1e3 * total / p->n_steps : 0.0);
        fprintf(f, "%-44s %8s %10s %9s %6s %8s\n", "op", "calls", "total ms", "mean us", "share", "GB/s");
        for (int i = 0; i < p->n_kinds; i++) {
                const struct op_kind_time *k = &sorted[i];
                double gbs = k->bytes > 0 && k->total_ms > 0 ? k->bytes / (k->total_ms * 1e-3) / 1e9 : 0;
                fprintf(f, "%-44s %8llu %10.3f %9.2f %5.1f%% ", k->what, (unsigned long long)k->calls, k->total_ms,
                        1e3 * k->total_ms / (double)k->calls, total > 0 ? 100 * k->total_ms / total : 0.0);
                if (gbs > 0)
                        fprintf(f, "%8.0f\n", gbs);
                else
                        fprintf(f, "%8s\n", "-");
        }
}
