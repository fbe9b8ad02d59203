/* matvec.cu — y = W x for every weight type: dequantize fused into the dot product, float32
 * activations, one warp per output row (decode at batch 1 streams each weight byte once, so the
 * kernels are built around the loads: one chunk of a block per lane per step, see dequant.cuh).
 * One kernel per type, chosen from a table. */
#include "dequant.cuh"
#include "kernels.h"
#include "reduce.cuh"
#include "rig_assert.h"

/* Block of 256 threads: blockDim = (warp size, 256 / warp size), one row per warp. */
#define MATVEC_BLOCK_THREADS 256

/* dot(v[LEN], x[LEN]); x is 16-byte aligned when LEN is a multiple of 4 (runs start at
 * multiples of 8 elements of a 16-byte aligned vector). */
template <int LEN>
static __device__ __forceinline__ float dot_run(const float *v, const float *x, float acc)
{
        if (LEN % 4 == 0) {
#pragma unroll
                for (int i = 0; i < LEN / 4; i++) {
                        float4 xv = ((const float4 *)x)[i];
                        acc = fmaf(v[4 * i], xv.x, acc);
                        acc = fmaf(v[4 * i + 1], xv.y, acc);
                        acc = fmaf(v[4 * i + 2], xv.z, acc);
                        acc = fmaf(v[4 * i + 3], xv.w, acc);
                }
        } else {
#pragma unroll
                for (int i = 0; i < LEN; i++)
                        acc = fmaf(v[i], x[i], acc);
        }
        return acc;
}

/* w: [n_out] rows of row_bytes; x: [n_in]; y, bias: [n_out]. */
template <typename D>
__global__ void matvec_kernel(const uint8_t *w, size_t row_bytes, uint32_t n_in, uint32_t n_out, const float *x,
                              const float *bias, float *y)
{
        uint32_t row = blockIdx.x * blockDim.y + threadIdx.y;
        if (row >= n_out)
                return;                 /* the whole warp: rows are per warp */
        const uint8_t *wr = w + (size_t)row * row_bytes;
        uint32_t n_chunks = D::chunks(n_in);
        float acc = 0.0f;
        for (uint32_t c = threadIdx.x; c < n_chunks; c += WARP_SIZE) {
                float v[D::RUNS * D::RUN_LEN];
                D::decode(wr, c, v);
                const float *xc = x + D::first(c);
#pragma unroll
                for (int r = 0; r < D::RUNS; r++)
                        acc = dot_run<D::RUN_LEN>(v + r * D::RUN_LEN, xc + r * D::RUN_STRIDE, acc);
        }
        acc = warp_sum(acc);
        if (threadIdx.x == 0)
                y[row] = bias ? acc + bias[row] : acc;
}

typedef void (*matvec_fn)(const uint8_t *, size_t, uint32_t, uint32_t, const float *, const float *, float *);

/* vec needs n_in % 8 == 0 for the float types; scalar (float types only) takes any n_in. */
struct matvec_entry {
        enum rig_type type;
        matvec_fn vec, scalar;
};

static const struct matvec_entry matvec_table[] = {
        { RIG_TYPE_F32, matvec_kernel<dec_f32>, matvec_kernel<dec_f32_scalar> },
        { RIG_TYPE_F16, matvec_kernel<dec_f16>, matvec_kernel<dec_f16_scalar> },
        { RIG_TYPE_BF16, matvec_kernel<dec_bf16>, matvec_kernel<dec_bf16_scalar> },
        { RIG_TYPE_Q4_0, matvec_kernel<dec_q4_0>, NULL },
        { RIG_TYPE_Q8_0, matvec_kernel<dec_q8_0>, NULL },
        { RIG_TYPE_Q4_K, matvec_kernel<dec_q4_k>, NULL },
        { RIG_TYPE_Q5_K, matvec_kernel<dec_q5_k>, NULL },
        { RIG_TYPE_Q6_K, matvec_kernel<dec_q6_k>, NULL },
};

static const struct matvec_entry *matvec_find(enum rig_type type)
{
        for (size_t i = 0; i < sizeof(matvec_table) / sizeof(matvec_table[0]); i++)
                if (matvec_table[i].type == type)
                        return &matvec_table[i];
        return NULL;
}

bool gpu_type_supported(enum rig_type type)
{
        return matvec_find(type) != NULL;
}

void gpu_matvec(const struct gpu_launch *g, const struct rig_weight *w, const float *x, const float *bias, float *y)
{
        const struct matvec_entry *e = matvec_find(w->type);
        RIG_ASSERT(e, "matvec of weight type %d", (int)w->type);
        RIG_ASSERT(((uintptr_t)x & 15) == 0 && ((uintptr_t)w->data & 15) == 0, "matvec: x %p, W %p not 16-byte aligned",
                   (const void *)x, w->data);
        matvec_fn fn = e->vec;
        if (e->scalar && w->n_in % 8 != 0)
                fn = e->scalar;
        if (w->n_out == 0)
                return;
        dim3 block(g->warp_size, MATVEC_BLOCK_THREADS / g->warp_size);
        dim3 grid((w->n_out + block.y - 1) / block.y);
        fn<<<grid, block, 0, g->stream>>>((const uint8_t *)w->data, w->row_bytes, w->n_in, w->n_out, x, bias, y);
}
