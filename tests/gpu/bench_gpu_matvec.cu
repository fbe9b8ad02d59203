/* bench_gpu_matvec.cu — the matvec kernel of each weight type on 4096 rows x 14336 columns
 * (ggml's m=4096, k=14336, n=1: a Llama 8B FFN down projection): median of 100 runs timed with
 * events, in µs and effective GB/s (weight bytes / time). Twice: the same weights every run
 * (the L2 may hold part of them), and rotating through copies totalling over 100 MB (more than
 * an H100's 50 MB L2). Prints numbers, never asserts on time. */
#include <stdio.h>
#include <stdlib.h>

#include "vendor.h"

#include "backend_gpu.h"
#include "kernels.h"
#include "random_weights.h"

#define N_OUT 4096
#define N_IN 14336
#define N_RUNS 100
#define ROTATE_BYTES ((size_t)100 << 20)

static int cmp_float(const void *a, const void *b)
{
        float x = *(const float *)a, y = *(const float *)b;
        return (x > y) - (x < y);
}

static int check(cudaError_t e, const char *what)
{
        if (e == cudaSuccess)
                return 0;
        fprintf(stderr, "bench_gpu_matvec: %s: %s\n", what, cudaGetErrorString(e));
        return -1;
}

/* Median µs of N_RUNS launches, run i reading weights[i % n_weights]. */
static float time_matvec(const struct gpu_launch *g, struct rig_weight *weights, size_t n_weights, const float *x, float *y)
{
        cudaEvent_t start, stop;
        cudaEventCreate(&start);
        cudaEventCreate(&stop);
        float us[N_RUNS];
        for (int i = 0; i < 5; i++)
                gpu_matvec(g, &weights[i % n_weights], x, NULL, y);     /* warm up: clocks, caches, lazy loading */
        for (int i = 0; i < N_RUNS; i++) {
                cudaEventRecord(start, g->stream);
                gpu_matvec(g, &weights[i % n_weights], x, NULL, y);
                cudaEventRecord(stop, g->stream);
                cudaEventSynchronize(stop);
                float ms = 0;
                cudaEventElapsedTime(&ms, start, stop);
                us[i] = ms * 1000.0f;
        }
        cudaEventDestroy(start);
        cudaEventDestroy(stop);
        qsort(us, N_RUNS, sizeof(us[0]), cmp_float);
        return (us[N_RUNS / 2 - 1] + us[N_RUNS / 2]) / 2;
}

static int bench_type(const struct gpu_launch *g, enum rig_type type, const float *x, float *y)
{
        size_t row_bytes = rig_row_bytes(type, N_IN), bytes = row_bytes * N_OUT;
        size_t n_copies = ROTATE_BYTES / bytes + 2;
        uint8_t *host = random_matrix(type, N_IN, N_OUT);
        struct rig_weight *weights = (struct rig_weight *)calloc(n_copies, sizeof(*weights));
        int r = 0;
        for (size_t i = 0; i < n_copies && r == 0; i++) {
                void *d = NULL;
                r = check(cudaMalloc(&d, bytes), "allocating weights");
                if (r == 0)
                        r = check(cudaMemcpy(d, host, bytes, cudaMemcpyHostToDevice), "uploading weights");
                struct rig_weight w = { d, type, N_IN, N_OUT, row_bytes };
                weights[i] = w;
        }
        if (r == 0) {
                float same = time_matvec(g, weights, 1, x, y);
                float rotating = time_matvec(g, weights, n_copies, x, y);
                r = check(cudaGetLastError(), "matvec");
                if (r == 0)
                        printf("%-5s %7.2f MB   same: %8.1f us %7.1f GB/s   rotating %zu copies: %8.1f us %7.1f GB/s\n",
                               rig_type_get(type)->name, bytes / 1e6, same, bytes / (same * 1e3), n_copies, rotating,
                               bytes / (rotating * 1e3));
        }
        for (size_t i = 0; i < n_copies; i++)
                cudaFree((void *)weights[i].data);
        free(weights);
        free(host);
        return r;
}

int main(void)
{
        if (gpu_device_count() == 0) {
                printf("skipped: no GPU\n");
                return 0;
        }
        cudaDeviceProp prop;
        struct gpu_launch g;
        if (check(cudaSetDevice(0), "opening device 0") < 0 || check(cudaGetDeviceProperties(&prop, 0), "properties") < 0 ||
            check(cudaStreamCreateWithFlags(&g.stream, cudaStreamNonBlocking), "creating a stream") < 0)
                return 1;
        g.warp_size = prop.warpSize;
        printf("%s: matvec %d x %d, median of %d runs\n", prop.name, N_OUT, N_IN, N_RUNS);

        float *hx = random_floats(N_IN);
        float *x = NULL, *y = NULL;
        if (check(cudaMalloc((void **)&x, N_IN * sizeof(float)), "allocating x") < 0 ||
            check(cudaMalloc((void **)&y, N_OUT * sizeof(float)), "allocating y") < 0 ||
            check(cudaMemcpy(x, hx, N_IN * sizeof(float), cudaMemcpyHostToDevice), "uploading x") < 0)
                return 1;
        static const enum rig_type types[] = { RIG_TYPE_F32, RIG_TYPE_F16, RIG_TYPE_BF16, RIG_TYPE_Q8_0,
                                               RIG_TYPE_Q4_0, RIG_TYPE_Q4_K, RIG_TYPE_Q5_K, RIG_TYPE_Q6_K };
        int failed = 0;
        for (size_t i = 0; i < sizeof(types) / sizeof(types[0]); i++)
                failed |= bench_type(&g, types[i], x, y) < 0;
        cudaFree(x);
        cudaFree(y);
        cudaStreamDestroy(g.stream);
        free(hx);
        return failed;
}
