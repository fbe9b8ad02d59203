/* op_profile.cu — see op_profile.h. */
#include <stdlib.h>
#include <string.h>

#include "op_profile.h"

#define PROFILE_MAX_KINDS 128

struct op_kind_time {
        char what[64];
        uint64_t calls;
        double total_ms;
        double bytes;
};

struct op_profile {
        cudaEvent_t start, stop;
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
        if (cudaEventCreate(&p->start) != cudaSuccess || cudaEventCreate(&p->stop) != cudaSuccess) {
                cudaGetLastError();
                free(p);
                return NULL;
        }
        return p;
}

void op_profile_free(struct op_profile *p)
{
        if (!p)
                return;
        cudaEventDestroy(p->start);
        cudaEventDestroy(p->stop);
        free(p);
}

void op_profile_begin(struct op_profile *p, cudaStream_t stream)
{
        cudaEventRecord(p->start, stream);
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
        float ms = 0;
        cudaEventRecord(p->stop, stream);
        if (cudaEventSynchronize(p->stop) != cudaSuccess || cudaEventElapsedTime(&ms, p->start, p->stop) != cudaSuccess) {
                cudaGetLastError();     /* the op's own error is the backend's to report */
                return;
        }
        struct op_kind_time *k = kind_of(p, what);
        if (!k)
                return;
        k->calls++;
        k->total_ms += ms;
        k->bytes += bytes;
}

void op_profile_step(struct op_profile *p)
{
        p->n_steps++;
}

static int by_total_desc(const void *a, const void *b)
{
        double x = ((const struct op_kind_time *)a)->total_ms, y = ((const struct op_kind_time *)b)->total_ms;
        return x < y ? 1 : x > y ? -1 : 0;
}

void op_profile_print(const struct op_profile *p, FILE *f)
{
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
