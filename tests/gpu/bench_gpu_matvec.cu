/* bench_gpu_matvec.cu — the matrix-vector product of each weight type on 4096 rows x 14336
 * columns (ggml's m=4096, k=14336: a Llama 8B FFN down projection), as the backend's op runs it
 * (the activations' quantization included), for n=1 and n=8 columns: median of 100 runs timed
 * with events, each product waited for (as ggml's test-backend-ops does not: it launches them
 * back to back), and "queued": back to back, µs per product, and the product alone (x quantized
 * once before), in µs and effective GB/s (GGUF weight bytes / time). Twice: the same weights
 * every run (the L2 may hold part of them, as in ggml's test-backend-ops), and rotating through
 * copies totalling over 100 MB (more than an H100's 50 MB or an H200's 60 MB L2). For the
 * quantized types also n=16, n=64 and n=512 columns (a batched decode, a prompt: the tile kernel,
 * matmul_tiles.cu, K split into slices where its tiles are too few for the device), on tensor
 * cores and on the dp4a path (RIG_GPU_MMA=0), rotating, in µs and effective TOPS
 * (2 x 4096 x 14336 x n / time); and on two shapes: n=1, queued, for each shape of the
 * quantized matvec (RIG_GPU_MV), 2..8 columns on tensor cores and by dp4a (RIG_GPU_MMA=0), n=8 on
 * tensor cores for each block size (RIG_GPU_MMV). Prints numbers, never asserts on time.
 * `bench_gpu_matvec Q4_K` runs one type. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "vendor.h"

#include "backend_gpu.h"
#include "kernels.h"
#include "layout.h"
#include "random_weights.h"

#define N_OUT 4096
#define N_IN 14336
#define N_RUNS 100
#define N_COLS_MAX 512
#define N_COLS_MATVEC 8
#define ROTATE_BYTES ((size_t)100 << 20)
#define SPLIT_WS_FLOATS ((size_t)8 << 20)      /* the tile kernel's scratch, as the backend allocates it */

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

/* What one timed product reads and writes. */
struct bench_io {
        const float *x;                 /* [N_COLS_MAX][N_IN] */
        struct gpu_act act;
        float *y;                       /* [N_COLS_MAX][N_OUT] */
};

/* One op as the backend runs it: x quantized (the quantized types; unless is_product_only),
 * then the product. */
static void run_matmul(const struct gpu_launch *g, const struct rig_weight *w, const struct bench_io *io, uint32_t n_cols,
                       bool is_product_only)
{
        if (gpu_act_order_of(w->type) != GPU_ACT_NONE && !is_product_only)
                gpu_quantize_act(g, io->x, w->n_in, n_cols, gpu_act_order_of(w->type), &io->act);
        gpu_matmul(g, w, io->x, &io->act, n_cols, NULL, io->y);
}

/* µs per product of N_RUNS products launched back to back between two events (the median of 5
 * such), run i reading weights[i % n_weights]: how the products run inside a step's graph,
 * where the device never waits for the host. time_matmul instead waits for each product, so
 * its figure also holds the gap between the host's launch and the device's start. */
static float time_queued(const struct gpu_launch *g, struct rig_weight *weights, size_t n_weights,
                         const struct bench_io *io, uint32_t n_cols, bool is_product_only)
{
        cudaEvent_t start, stop;
        cudaEventCreate(&start);
        cudaEventCreate(&stop);
        float us[5];
        if (gpu_act_order_of(weights[0].type) != GPU_ACT_NONE)
                gpu_quantize_act(g, io->x, weights[0].n_in, n_cols, gpu_act_order_of(weights[0].type), &io->act);
        for (int i = 0; i < 5; i++)
                run_matmul(g, &weights[i % n_weights], io, n_cols, is_product_only);
        for (int k = 0; k < 5; k++) {
                cudaEventRecord(start, g->stream);
                for (int i = 0; i < N_RUNS; i++)
                        run_matmul(g, &weights[i % n_weights], io, n_cols, is_product_only);
                cudaEventRecord(stop, g->stream);
                cudaEventSynchronize(stop);
                float ms = 0;
                cudaEventElapsedTime(&ms, start, stop);
                us[k] = ms * 1000.0f / N_RUNS;
        }
        cudaEventDestroy(start);
        cudaEventDestroy(stop);
        qsort(us, 5, sizeof(us[0]), cmp_float);
        return us[2];
}

/* Median µs of N_RUNS products of n_cols columns, run i reading weights[i % n_weights]. */
static float time_matmul(const struct gpu_launch *g, struct rig_weight *weights, size_t n_weights,
                         const struct bench_io *io, uint32_t n_cols)
{
        cudaEvent_t start, stop;
        cudaEventCreate(&start);
        cudaEventCreate(&stop);
        float us[N_RUNS];
        for (int i = 0; i < 5; i++)
                run_matmul(g, &weights[i % n_weights], io, n_cols, false);      /* warm up: clocks, caches, lazy loading */
        for (int i = 0; i < N_RUNS; i++) {
                cudaEventRecord(start, g->stream);
                run_matmul(g, &weights[i % n_weights], io, n_cols, false);
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

/* The tile kernel at n columns on one path: µs, and effective TOPS after it. */
static float time_tiles(const struct gpu_launch *g, struct rig_weight *weights, size_t n_copies,
                        const struct bench_io *io, uint32_t n, bool is_mma, float *tops)
{
        setenv("RIG_GPU_MMA", is_mma ? "1" : "0", 1);   /* read by gpu_matmul_tiles at each call */
        float us = time_matmul(g, weights, n_copies, io, n);
        unsetenv("RIG_GPU_MMA");
        *tops = 2.0f * N_OUT * N_IN * n / (us * 1e6f);
        return us;
}

/* n=16, n=64 and n=512 columns, rotating weights: tensor cores (where the device has them) and
 * dp4a. */
static int bench_tiles(const struct gpu_launch *g, struct rig_weight *weights, size_t n_copies, const struct bench_io *io)
{
        static const uint32_t cols[] = { 16, 64, 512 };
        bool has_mma = GPU_HAS_MMA_SYNC && g->cc_major >= 8;
        printf("     ");
        for (size_t i = 0; i < sizeof(cols) / sizeof(cols[0]); i++) {
                float tops_mma = 0, tops_dp4a = 0;
                float us_mma = has_mma ? time_tiles(g, weights, n_copies, io, cols[i], true, &tops_mma) : 0;
                float us_dp4a = time_tiles(g, weights, n_copies, io, cols[i], false, &tops_dp4a);
                if (has_mma)
                        printf("  n=%u mma %8.1f us %6.1f TOPS", cols[i], us_mma, tops_mma);
                printf("  n=%u dp4a %8.1f us %6.1f TOPS", cols[i], us_dp4a, tops_dp4a);
        }
        printf("\n");
        return check(cudaGetLastError(), "tiled matmul");
}

/* Rotating copies of a random n_out x n_in matrix of type in the device layout, over
 * ROTATE_BYTES in all; *n_copies of them, free with free_weights. */
static struct rig_weight *upload_weights(enum rig_type type, uint32_t n_out, uint32_t n_in, size_t *n_copies)
{
        size_t row_bytes = rig_row_bytes(type, n_in), stride = gpu_row_stride(type, n_in);
        size_t dev_bytes = stride * n_out;
        *n_copies = ROTATE_BYTES / (row_bytes * n_out) + 2;
        uint8_t *host = random_matrix(type, n_in, n_out);
        uint8_t *laid = (uint8_t *)malloc(dev_bytes);
        gpu_layout_rows(type, n_in, n_out, host, row_bytes, laid);
        struct rig_weight *weights = (struct rig_weight *)calloc(*n_copies, sizeof(*weights));
        int r = 0;
        for (size_t i = 0; i < *n_copies && r == 0; i++) {
                void *d = NULL;
                r = check(cudaMalloc(&d, dev_bytes), "allocating weights");
                if (r == 0)
                        r = check(cudaMemcpy(d, laid, dev_bytes, cudaMemcpyHostToDevice), "uploading weights");
                struct rig_weight w = { d, type, n_in, n_out, stride };
                weights[i] = w;
        }
        free(laid);
        free(host);
        return weights;
}

static void free_weights(struct rig_weight *weights, size_t n_copies)
{
        for (size_t i = 0; i < n_copies; i++)
                cudaFree((void *)weights[i].data);
        free(weights);
}

/* The quantized matvec at n=1, rotating, queued, for each of its shapes (RIG_GPU_MV
 * rows,unroll,warps), on the FFN down shape and on a 4096-wide one (gate, up: 14336 x 4096),
 * whose rows are 2 to 4 chunks a lane. */
static int sweep_matvec_shapes(const struct gpu_launch *g, enum rig_type type, const struct bench_io *io)
{
        static const uint32_t dims[][2] = { { N_OUT, N_IN }, { N_IN, N_OUT } };
        for (size_t d = 0; d < sizeof(dims) / sizeof(dims[0]); d++) {
                size_t n_copies;
                struct rig_weight *weights = upload_weights(type, dims[d][0], dims[d][1], &n_copies);
                double bytes = (double)rig_row_bytes(type, dims[d][1]) * dims[d][0];
                printf("     n=1 queued rotating %ux%u by RIG_GPU_MV rows,unroll,warps,prefetch:", dims[d][0], dims[d][1]);
                struct gpu_launch v = *g;
                for (size_t i = 0; gpu_matvec_shape(i, &v.mv_rows, &v.mv_unroll, &v.mv_warps, &v.mv_prefetch); i++) {
                        float us = time_queued(&v, weights, n_copies, io, 1, false);
                        printf("  %u,%u,%u,%u %5.1f us %4.0f GB/s", v.mv_rows, v.mv_unroll, v.mv_warps, v.mv_prefetch, us,
                               bytes / (us * 1e3));
                }
                printf("\n");
                if (GPU_HAS_MMA_SYNC && g->cc_major >= 8) {
                        printf("     2-8 columns, queued rotating %ux%u, tensor cores / dp4a:", dims[d][0], dims[d][1]);
                        for (uint32_t n = 2; n <= N_COLS_MATVEC; n++) {
                                float us_mma = time_queued(g, weights, n_copies, io, n, false);
                                setenv("RIG_GPU_MMA", "0", 1);
                                float us_dp4a = time_queued(g, weights, n_copies, io, n, false);
                                unsetenv("RIG_GPU_MMA");
                                printf("  n=%u %5.1f / %5.1f us", n, us_mma, us_dp4a);
                        }
                        printf("\n");
                        printf("     n=8 tensor cores, queued rotating %ux%u by RIG_GPU_MMV warps:", dims[d][0], dims[d][1]);
                        for (v.mmv_warps = 1; v.mmv_warps <= 16; v.mmv_warps *= 2) {
                                float us = time_queued(&v, weights, n_copies, io, N_COLS_MATVEC, false);
                                printf("  %u %5.1f us %4.0f GB/s", v.mmv_warps, us, bytes / (us * 1e3));
                        }
                        printf("\n");
                }
                free_weights(weights, n_copies);
        }
        return check(cudaGetLastError(), "matvec sweep");
}

static int bench_type(const struct gpu_launch *g, enum rig_type type, const struct bench_io *io)
{
        double bytes = (double)rig_row_bytes(type, N_IN) * N_OUT;
        size_t n_copies;
        struct rig_weight *weights = upload_weights(type, N_OUT, N_IN, &n_copies);
        int r = check(cudaGetLastError(), "uploading weights");
        if (r == 0) {
                float same1 = time_matmul(g, weights, 1, io, 1), rot1 = time_matmul(g, weights, n_copies, io, 1);
                float same8 = time_matmul(g, weights, 1, io, N_COLS_MATVEC);
                float rot8 = time_matmul(g, weights, n_copies, io, N_COLS_MATVEC);
                r = check(cudaGetLastError(), "matmul");
                if (r == 0)
                        printf("%-5s %6.2f MB  n=1 same %7.1f us %6.0f GB/s  rotating(%zu) %7.1f us %6.0f GB/s  "
                               "n=%d same %7.1f us  rotating %7.1f us  n=%d/n=1 %.2f\n",
                               rig_type_get(type)->name, bytes / 1e6, same1, bytes / (same1 * 1e3), n_copies, rot1,
                               bytes / (rot1 * 1e3), N_COLS_MATVEC, same8, rot8, N_COLS_MATVEC, rot8 / rot1);
        }
        if (r == 0) {
                float q_same1 = time_queued(g, weights, 1, io, 1, false), q_rot1 = time_queued(g, weights, n_copies, io, 1, false);
                float q_prod1 = time_queued(g, weights, n_copies, io, 1, true);
                float q_rot8 = time_queued(g, weights, n_copies, io, N_COLS_MATVEC, false);
                setenv("RIG_GPU_MMA", "0", 1);  /* n=8 by dp4a (read at each call) */
                float q_rot8_dp4a = time_queued(g, weights, n_copies, io, N_COLS_MATVEC, false);
                unsetenv("RIG_GPU_MMA");
                struct gpu_launch plain = *g;   /* each kernel launched after the one before has ended */
                plain.launches_early = false;
                float q_plain1 = time_queued(&plain, weights, 1, io, 1, false);
                r = check(cudaGetLastError(), "matmul");
                if (r == 0)
                        printf("      queued: n=1 same %7.1f us %6.0f GB/s (launched plainly %7.1f us)  rotating %7.1f us %6.0f "
                               "GB/s  product alone %7.1f us %6.0f GB/s  n=%d rotating %7.1f us (dp4a %7.1f us)  n=%d/n=1 %.2f\n",
                               q_same1, bytes / (q_same1 * 1e3), q_plain1, q_rot1, bytes / (q_rot1 * 1e3), q_prod1,
                               bytes / (q_prod1 * 1e3), N_COLS_MATVEC, q_rot8, q_rot8_dp4a, N_COLS_MATVEC,
                               q_rot8 / q_rot1);
        }
        if (r == 0 && gpu_act_order_of(type) != GPU_ACT_NONE)
                r = bench_tiles(g, weights, n_copies, io);
        if (r == 0 && gpu_act_order_of(type) != GPU_ACT_NONE)
                r = sweep_matvec_shapes(g, type, io);
        free_weights(weights, n_copies);
        return r;
}

int main(int argc, char **argv)
{
        if (gpu_device_count() == 0) {
                printf("skipped: no GPU\n");
                return 0;
        }
        cudaDeviceProp prop;
        struct gpu_launch g = {};
        if (check(cudaSetDevice(0), "opening device 0") < 0 || check(cudaGetDeviceProperties(&prop, 0), "properties") < 0 ||
            check(cudaStreamCreateWithFlags(&g.stream, cudaStreamNonBlocking), "creating a stream") < 0 ||
            check(cudaMalloc((void **)&g.split_ws, SPLIT_WS_FLOATS * sizeof(float)), "allocating the split scratch") < 0)
                return 1;
        g.warp_size = prop.warpSize;
        g.cc_major = prop.major;
        g.launches_early = gpu_can_launch_early(prop.major);
        g.n_sm = prop.multiProcessorCount;
        g.split_ws_floats = SPLIT_WS_FLOATS;
        printf("%s (%d multiprocessors): matvec %d x %d, median of %d runs\n", prop.name, prop.multiProcessorCount, N_OUT,
               N_IN, N_RUNS);

        float *hx = random_floats((size_t)N_IN * N_COLS_MAX);
        struct bench_io io;
        float *x = NULL;
        if (check(cudaMalloc((void **)&x, (size_t)N_IN * N_COLS_MAX * sizeof(float)), "allocating x") < 0 ||
            check(cudaMalloc((void **)&io.y, (size_t)N_OUT * N_COLS_MAX * sizeof(float)), "allocating y") < 0 ||
            check(cudaMalloc((void **)&io.act.q, (size_t)N_IN * N_COLS_MAX), "allocating activations") < 0 ||
            check(cudaMalloc((void **)&io.act.ds, (size_t)N_IN / 32 * N_COLS_MAX * sizeof(float2)), "allocating scales") < 0 ||
            check(cudaMemcpy(x, hx, (size_t)N_IN * N_COLS_MAX * sizeof(float), cudaMemcpyHostToDevice), "uploading x") < 0)
                return 1;
        io.x = x;
        static const enum rig_type types[] = { RIG_TYPE_F32, RIG_TYPE_F16, RIG_TYPE_BF16, RIG_TYPE_Q8_0,
                                               RIG_TYPE_Q4_0, RIG_TYPE_Q4_K, RIG_TYPE_Q5_K, RIG_TYPE_Q6_K };
        int failed = 0;
        for (size_t i = 0; i < sizeof(types) / sizeof(types[0]); i++)
                if (argc < 2 || strcmp(argv[1], rig_type_get(types[i])->name) == 0)     /* one type, for a profiler */
                        failed |= bench_type(&g, types[i], &io) < 0;
        cudaFree(x);
        cudaFree(io.y);
        cudaFree(io.act.q);
        cudaFree(io.act.ds);
        cudaFree(g.split_ws);
        cudaStreamDestroy(g.stream);
        free(hx);
        return failed;
}
