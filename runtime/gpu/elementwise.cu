/* elementwise.cu — the embedding lookup (one row of any weight type to float, with the same
 * decoders as matvec) and SwiGLU (its output to 8 bits too, for the quantized down projection). */
#include "dequant.cuh"
#include "dot_int8.cuh"
#include "kernels.h"
#include "rig_assert.h"

#define ELEMENTWISE_BLOCK_THREADS 256

/* out[i][n] = row batch.tokens[i] of the embedding decoded, i = blockIdx.y; one thread per
 * chunk. */
template <typename D>
__global__ void dequantize_row_kernel(const uint8_t *embd, size_t row_bytes, struct gpu_batch batch, uint32_t n,
                                      float *out)
{
        gpu_grid_begin();
        const uint8_t *row = embd + (size_t)batch.tokens[blockIdx.y] * row_bytes;
        uint32_t c = blockIdx.x * blockDim.x + threadIdx.x;
        if (c >= D::chunks(n))
                return;
        float v[D::RUNS * D::RUN_LEN];
        D::decode(row, c, v);
        float *o = out + (size_t)blockIdx.y * n + D::first(c);
#pragma unroll
        for (int r = 0; r < D::RUNS; r++)
#pragma unroll
                for (int i = 0; i < D::RUN_LEN; i++)
                        o[r * D::RUN_STRIDE + i] = v[r * D::RUN_LEN + i];
}

typedef void (*dequantize_fn)(const uint8_t *, size_t, struct gpu_batch, uint32_t, float *);

struct dequantize_entry {
        enum rig_type type;
        dequantize_fn vec, scalar;      /* as in matvec.cu: scalar for float rows of n % 8 != 0 */
        uint32_t vec_elems;             /* elements per chunk of vec */
};

static const struct dequantize_entry dequantize_table[] = {
        { RIG_TYPE_F32, dequantize_row_kernel<dec_f32>, dequantize_row_kernel<dec_f32_scalar>, 8 },
        { RIG_TYPE_F16, dequantize_row_kernel<dec_f16>, dequantize_row_kernel<dec_f16_scalar>, 8 },
        { RIG_TYPE_BF16, dequantize_row_kernel<dec_bf16>, dequantize_row_kernel<dec_bf16_scalar>, 8 },
        { RIG_TYPE_Q4_0, dequantize_row_kernel<dec_q4_0>, NULL, 32 },
        { RIG_TYPE_Q8_0, dequantize_row_kernel<dec_q8_0>, NULL, 32 },
        { RIG_TYPE_Q4_K, dequantize_row_kernel<dec_q4_k>, NULL, 32 },
        { RIG_TYPE_Q5_K, dequantize_row_kernel<dec_q5_k>, NULL, 32 },
        { RIG_TYPE_Q6_K, dequantize_row_kernel<dec_q6_k>, NULL, 32 },
};

void gpu_embed(const struct gpu_launch *g, const struct rig_weight *w, const struct gpu_batch *batch, float *out)
{
        enum rig_type type = w->type;
        uint32_t n = w->n_in;
        const struct dequantize_entry *e = NULL;
        for (size_t i = 0; i < sizeof(dequantize_table) / sizeof(dequantize_table[0]); i++)
                if (dequantize_table[i].type == type)
                        e = &dequantize_table[i];
        RIG_ASSERT(e, "dequantize of type %d", (int)type);
        dequantize_fn fn = e->vec;
        uint32_t n_chunks = n / e->vec_elems;
        if (e->scalar && n % 8 != 0) {
                fn = e->scalar;
                n_chunks = n;
        }
        if (n_chunks == 0 || batch->n == 0)
                return;
        dim3 grid((n_chunks + ELEMENTWISE_BLOCK_THREADS - 1) / ELEMENTWISE_BLOCK_THREADS, batch->n);
        gpu_launch_kernel(g, fn, grid, dim3(ELEMENTWISE_BLOCK_THREADS), (const uint8_t *)w->data, w->row_bytes, *batch,
                          n, out);
}

/* out, gate, up: [n]; silu(v) = v / (1 + e^-v). With q.order not GPU_ACT_NONE, out also to 8
 * bits (the lanes past n still take part in the shuffles). */
__global__ void swiglu_kernel(float *out, const float *gate, const float *up, uint32_t n, struct gpu_act_out q)
{
        gpu_grid_begin();
        uint32_t i = blockIdx.x * blockDim.x + threadIdx.x;
        float o = 0.0f;
        if (i < n) {
                float v = gate[i];
                o = __fmul_rn(__fdiv_rn(v, __fadd_rn(1.0f, expf(-v))), up[i]);
                out[i] = o;
        }
        if (q.order != GPU_ACT_NONE)
                quantize_act_lanes(o, i < n, i, q.n_in, q.order, q.act.q, q.act.ds);
}

static uint32_t elementwise_blocks(uint32_t n)
{
        return (n + ELEMENTWISE_BLOCK_THREADS - 1) / ELEMENTWISE_BLOCK_THREADS;
}

void gpu_swiglu(const struct gpu_launch *g, float *out, const float *gate, const float *up, uint32_t n,
                const struct gpu_act_out *q)
{
        RIG_ASSERT(!q || (q->n_in % 32 == 0 && n % q->n_in == 0), "swiglu of %u quantized in columns of %u", n,
                   q ? q->n_in : 0);
        struct gpu_act_out none = {};
        none.order = GPU_ACT_NONE;
        if (n)
                gpu_launch_kernel(g, swiglu_kernel, dim3(elementwise_blocks(n)), dim3(ELEMENTWISE_BLOCK_THREADS), out, gate,
                                  up, n, q ? *q : none);
}
