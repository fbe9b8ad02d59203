/* backend_gpu.cu — struct rig_backend_ops on one GPU: weights uploaded once into one device
 * allocation, the KV cache and activations in device memory, every op enqueued on one stream
 * (read() synchronises). */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "vendor.h"

#include "backend_gpu.h"
#include "kernels.h"
#include "layout.h"
#include "op_profile.h"
#include "rig_assert.h"
#include "step_graph.h"

#if defined(RIG_HIP) || defined(__HIP_PLATFORM_AMD__)
#define VENDOR_LABEL "HIP"
#else
#define VENDOR_LABEL "CUDA"
#endif

/* Weights start at multiples of this: more than the 16 bytes the vector loads need, and a
 * whole number of cache lines. */
#define WEIGHT_ALIGN 256

struct gpu_backend {
        struct rig_backend base;        /* first: the ops are handed &base */
        struct gpu_launch launch;
        int device;
        struct rig_model model;         /* copy of the host model, weight pointers into weights */
        struct rig_layer *layers;       /* host array [n_layer] of device pointers */
        uint8_t *weights;               /* device: every tensor, WEIGHT_ALIGN apart */
        double *rope_freqs;             /* device [head_dim / 2]: per-pair angle per position */
        struct rig_kv kv;               /* k, v in device memory */
        void **allocs;                  /* from alloc(), freed with the backend */
        size_t n_allocs, allocs_cap;
        struct gpu_act act;             /* 8-bit activations of the quantized types' matmuls */
        size_t act_cap;                 /* elements act holds */
        uint32_t act_n_in_max;          /* the widest row of the model's weights */
        const float *act_src;           /* the x act was quantized from, while no op has run since */
        uint32_t act_n_in, act_n;
        enum gpu_act_order act_order;
        uint32_t *batch_buf;            /* device: the step's tokens, positions, sequences */
        uint32_t batch_cap;             /* tokens batch_buf holds */
        struct gpu_batch batch;         /* the step's, pointing into batch_buf */
        struct step_graph graph;        /* the ops of a step, recorded while in_step */
        bool in_step;
        struct op_profile *profile;     /* RIG_GPU_PROFILE: each op timed (op_profile.h), else NULL */
        cudaError_t error;              /* first failure of an op, and which op */
        const char *error_op;
};

static struct gpu_backend *to_gpu(struct rig_backend *b)
{
        return (struct gpu_backend *)b;
}

static void note_error(struct gpu_backend *g, cudaError_t e, const char *op)
{
        if (e != cudaSuccess && g->error == cudaSuccess) {
                g->error = e;
                g->error_op = op;
        }
}

/* After each launch: a bad configuration or a fault of an earlier kernel shows here. */
static void check_launch(struct gpu_backend *g, const char *op)
{
        note_error(g, cudaGetLastError(), op);
}

/* The matmuls in a row on one x (Q, K and V; gate and up) share one quantization of it, when
 * their types read the same order (Q4_K_M's Q6_K V takes its own): any other op may write x,
 * so each of them forgets it (forget_act). */
static void forget_act(struct gpu_backend *g)
{
        g->act_src = NULL;
}

/* ---- uploading the model ---- */

/* Walks every tensor of the model twice: once to size the allocation (base == NULL), once to
 * copy each tensor to base + its offset and point the copy's fields there. */
struct placer {
        uint8_t *base;
        size_t offset;
        cudaError_t error;
};

/* The offset of the next bytes, WEIGHT_ALIGN aligned. */
static size_t reserve(struct placer *p, size_t bytes)
{
        size_t off = (p->offset + WEIGHT_ALIGN - 1) / WEIGHT_ALIGN * WEIGHT_ALIGN;
        p->offset = off + bytes;
        return off;
}

static const void *place(struct placer *p, const void *src, size_t bytes)
{
        if (!src || bytes == 0)
                return NULL;            /* optional tensors (biases, rope_freqs) */
        size_t off = reserve(p, bytes);
        if (!p->base)
                return NULL;
        if (p->error == cudaSuccess)
                p->error = cudaMemcpy(p->base + off, src, bytes, cudaMemcpyHostToDevice);
        return p->base + off;
}

static const float *place_floats(struct placer *p, const float *src, size_t n)
{
        return (const float *)place(p, src, n * sizeof(float));
}

/* Rows go through a host buffer of at most this many bytes on their way to the device layout. */
#define LAYOUT_STAGING_BYTES ((size_t)32 << 20)

/* A weight in the device layout (layout.h): its rows converted a slice at a time. */
static struct rig_weight place_weight(struct placer *p, const struct rig_weight *w)
{
        struct rig_weight d = *w;
        if (!w->data)
                return d;
        d.row_bytes = gpu_row_stride(w->type, w->n_in);
        size_t off = reserve(p, d.row_bytes * w->n_out);
        d.data = p->base ? p->base + off : NULL;
        if (!p->base || w->n_out == 0 || p->error != cudaSuccess)
                return d;
        size_t rows_per_slice = LAYOUT_STAGING_BYTES / d.row_bytes ? LAYOUT_STAGING_BYTES / d.row_bytes : 1;
        uint8_t *staging = (uint8_t *)malloc(rows_per_slice * d.row_bytes);
        if (!staging) {
                p->error = cudaErrorMemoryAllocation;
                return d;
        }
        for (size_t r = 0; r < w->n_out && p->error == cudaSuccess; r += rows_per_slice) {
                size_t n = w->n_out - r < rows_per_slice ? w->n_out - r : rows_per_slice;
                gpu_layout_rows(w->type, w->n_in, n, (const uint8_t *)w->data + r * w->row_bytes, w->row_bytes, staging);
                p->error = cudaMemcpy(p->base + off + r * d.row_bytes, staging, n * d.row_bytes, cudaMemcpyHostToDevice);
        }
        free(staging);
        return d;
}

static void place_layer(struct placer *p, const struct rig_config *c, const struct rig_layer *l, struct rig_layer *d)
{
        size_t q_dim = (size_t)c->n_head * c->head_dim, kv_dim = (size_t)c->n_head_kv * c->head_dim;
        d->attn_norm = place_floats(p, l->attn_norm, c->n_embd);
        d->wq = place_weight(p, &l->wq);
        d->wk = place_weight(p, &l->wk);
        d->wv = place_weight(p, &l->wv);
        d->wo = place_weight(p, &l->wo);
        d->bq = place_floats(p, l->bq, q_dim);
        d->bk = place_floats(p, l->bk, kv_dim);
        d->bv = place_floats(p, l->bv, kv_dim);
        d->ffn_norm = place_floats(p, l->ffn_norm, c->n_embd);
        d->w_gate = place_weight(p, &l->w_gate);
        d->w_up = place_weight(p, &l->w_up);
        d->w_down = place_weight(p, &l->w_down);
}

static void place_model(struct placer *p, const struct rig_model *m, struct rig_model *d, struct rig_layer *layers)
{
        const struct rig_config *c = &m->cfg;
        /* The embedding is read a row at a time by embed (dequant.cuh): GGUF layout. A tied
         * output is a product, so it gets its own copy in the device layout, unless the type
         * keeps the GGUF layout anyway (the float types). */
        d->tok_embd = m->tok_embd;
        d->tok_embd.data = place(p, m->tok_embd.data, m->tok_embd.row_bytes * m->tok_embd.n_out);
        if (m->output.data == m->tok_embd.data && gpu_act_order_of(m->output.type) == GPU_ACT_NONE)
                d->output = d->tok_embd;
        else
                d->output = place_weight(p, &m->output);
        d->output_norm = place_floats(p, m->output_norm, c->n_embd);
        d->rope_freqs = place_floats(p, m->rope_freqs, c->head_dim / 2);
        for (uint32_t i = 0; i < c->n_layer; i++)
                place_layer(p, c, &m->layers[i], &layers[i]);
}

static int check_weight(const struct rig_weight *w, const char *what, uint32_t layer, char *err, size_t err_size)
{
        if (!w->data || gpu_type_supported(w->type))
                return 0;
        const struct rig_type_info *t = rig_type_get(w->type);
        return errmsg(err, err_size, -EINVAL, "%s of layer %u is %s: no GPU kernel for it", what, layer,
                      t ? t->name : "an unknown type");
}

static int check_model(const struct rig_model *m, enum rig_type kv_type, char *err, size_t err_size)
{
        const struct rig_config *c = &m->cfg;
        if (kv_type != RIG_TYPE_F32 && kv_type != RIG_TYPE_F16 && kv_type != RIG_TYPE_Q8_0)
                return errmsg(err, err_size, -EINVAL, "KV cache type %d: the GPU takes f32, f16 or q8_0", (int)kv_type);
        if (c->head_dim > GPU_MAX_HEAD_DIM || c->head_dim % 2 != 0 || c->n_head_kv == 0 || c->n_head % c->n_head_kv != 0)
                return errmsg(err, err_size, -EINVAL, "attention of %u heads, %u KV heads of %u: the GPU takes even head "
                              "sizes up to %u and whole groups", c->n_head, c->n_head_kv, c->head_dim, GPU_MAX_HEAD_DIM);
        if (kv_type == RIG_TYPE_Q8_0 && c->head_dim % QK8_0 != 0)
                return errmsg(err, err_size, -EINVAL, "a q8_0 KV cache needs head size a multiple of 32, not %u", c->head_dim);
        int r = 0;
        if ((r = check_weight(&m->tok_embd, "token_embd", 0, err, err_size)) < 0 ||
            (r = check_weight(&m->output, "output", 0, err, err_size)) < 0)
                return r;
        for (uint32_t i = 0; i < c->n_layer && r == 0; i++) {
                const struct rig_layer *l = &m->layers[i];
                const struct rig_weight *ws[] = { &l->wq, &l->wk, &l->wv, &l->wo, &l->w_gate, &l->w_up, &l->w_down };
                const char *names[] = { "attn_q", "attn_k", "attn_v", "attn_output", "ffn_gate", "ffn_up", "ffn_down" };
                for (size_t j = 0; j < sizeof(ws) / sizeof(ws[0]) && r == 0; j++)
                        r = check_weight(ws[j], names[j], i, err, err_size);
        }
        return r;
}

static int upload_weights(struct gpu_backend *g, const struct rig_model *m, char *err, size_t err_size)
{
        struct placer sizing = { NULL, 0, cudaSuccess };
        place_model(&sizing, m, &g->model, g->layers);
        cudaError_t e = cudaMalloc((void **)&g->weights, sizing.offset ? sizing.offset : 1);
        if (e != cudaSuccess)
                return errmsg(err, err_size, -ENOMEM, "allocating %zu MiB for weights on " VENDOR_LABEL " device %d: %s",
                              sizing.offset >> 20, g->device, cudaGetErrorString(e));
        struct placer copy = { g->weights, 0, cudaSuccess };
        place_model(&copy, m, &g->model, g->layers);
        if (copy.error != cudaSuccess)
                return errmsg(err, err_size, -EIO, "uploading weights to " VENDOR_LABEL " device %d: %s", g->device,
                              cudaGetErrorString(copy.error));
        return 0;
}

/* freq_i = base^(-2i/d), divided by rope_freqs[i] when the model has them: as the CPU does it, in
 * double. */
static int upload_rope_freqs(struct gpu_backend *g, const struct rig_model *m, char *err, size_t err_size)
{
        const struct rig_config *c = &m->cfg;
        uint32_t n_pairs = c->head_dim / 2;
        double *freqs = (double *)calloc(n_pairs ? n_pairs : 1, sizeof(double));
        if (!freqs)
                return errmsg(err, err_size, -ENOMEM, "allocating the RoPE table");
        for (uint32_t i = 0; i < n_pairs; i++) {
                freqs[i] = pow(c->rope_freq_base, -2.0 * i / c->head_dim);
                if (m->rope_freqs)
                        freqs[i] /= m->rope_freqs[i];
        }
        cudaError_t e = cudaMalloc((void **)&g->rope_freqs, (n_pairs ? n_pairs : 1) * sizeof(double));
        if (e == cudaSuccess)
                e = cudaMemcpy(g->rope_freqs, freqs, n_pairs * sizeof(double), cudaMemcpyHostToDevice);
        free(freqs);
        if (e != cudaSuccess)
                return errmsg(err, err_size, -ENOMEM, "uploading the RoPE table to " VENDOR_LABEL " device %d: %s",
                              g->device, cudaGetErrorString(e));
        return 0;
}

static int alloc_kv(struct gpu_backend *g, enum rig_type kv_type, uint32_t n_ctx, uint32_t n_seq, char *err,
                    size_t err_size)
{
        const struct rig_config *c = &g->model.cfg;
        struct rig_kv *kv = &g->kv;
        kv->type = kv_type;
        kv->n_layer = c->n_layer;
        kv->n_seq = n_seq;
        kv->n_ctx = n_ctx;
        kv->kv_dim = c->n_head_kv * c->head_dim;
        kv->row_bytes = kv_type == RIG_TYPE_F32 ? (size_t)kv->kv_dim * sizeof(float) : rig_row_bytes(kv_type, kv->kv_dim);
        size_t bytes_each = (size_t)kv->n_layer * n_seq * n_ctx * kv->row_bytes;
        cudaError_t e = cudaMalloc((void **)&kv->k, bytes_each ? bytes_each : 1);
        if (e == cudaSuccess)
                e = cudaMalloc((void **)&kv->v, bytes_each ? bytes_each : 1);
        if (e != cudaSuccess)
                return errmsg(err, err_size, -ENOMEM, "allocating a KV cache of %zu MiB on " VENDOR_LABEL " device %d: %s",
                              2 * bytes_each >> 20, g->device, cudaGetErrorString(e));
        return 0;
}

/* ---- the ops ---- */

static void gpu_free(struct rig_backend *b)
{
        struct gpu_backend *g = to_gpu(b);
        if (!g)
                return;
        if (g->launch.stream)
                cudaStreamSynchronize(g->launch.stream);
        for (size_t i = 0; i < g->n_allocs; i++)
                cudaFree(g->allocs[i]);
        free(g->allocs);
        cudaFree(g->weights);
        cudaFree(g->rope_freqs);
        cudaFree(g->kv.k);
        cudaFree(g->kv.v);
        cudaFree(g->act.q);
        cudaFree(g->act.ds);
        cudaFree(g->batch_buf);
        cudaFree(g->launch.split_ws);
        step_graph_free(&g->graph);
        if (g->profile)
                op_profile_print(g->profile, stderr);
        op_profile_free(g->profile);
        if (g->launch.stream)
                cudaStreamDestroy(g->launch.stream);
        free(g->layers);
        free(g);
}

static float *gpu_alloc(struct rig_backend *b, size_t n)
{
        struct gpu_backend *g = to_gpu(b);
        if (g->n_allocs == g->allocs_cap) {
                size_t cap = g->allocs_cap ? 2 * g->allocs_cap : 16;
                void **a = (void **)realloc(g->allocs, cap * sizeof(*a));
                if (!a)
                        return NULL;
                g->allocs = a;
                g->allocs_cap = cap;
        }
        float *p = NULL;
        if (cudaMalloc((void **)&p, (n ? n : 1) * sizeof(float)) != cudaSuccess) {
                cudaGetLastError();     /* out of memory is the caller's to report, not sticky */
                return NULL;
        }
        g->allocs[g->n_allocs++] = p;
        return p;
}

static void gpu_end_batch(struct rig_backend *b);

static int gpu_read(struct rig_backend *b, float *dst, const float *src, size_t n)
{
        struct gpu_backend *g = to_gpu(b);
        gpu_end_batch(b);               /* a read inside a step needs what the step recorded so far */
        note_error(g, cudaMemcpyAsync(dst, src, n * sizeof(float), cudaMemcpyDeviceToHost, g->launch.stream), "read");
        note_error(g, cudaStreamSynchronize(g->launch.stream), "read");
        return g->error == cudaSuccess ? 0 : -EIO;
}

/* ---- a step's ops: launched at once outside a step, recorded inside one and run at its end
 * as a graph (step_graph.h) ---- */

enum op_kind { OP_EMBED, OP_RMSNORM, OP_MATMUL, OP_ROPE, OP_ATTENTION, OP_SWIGLU, OP_ADD_RMSNORM };

/* Everything one op's launches need; zeroed before filling, so equal ops are equal bytes. */
struct gpu_op {
        enum op_kind kind;
        uint32_t n;                     /* elements; matmul: columns; rope: heads */
        uint32_t rows;                  /* rmsnorm, add_rmsnorm */
        uint32_t layer;                 /* attention */
        struct gpu_batch batch;         /* embed, rope, attention: the step's tokens */
        float *residual;                /* add_rmsnorm: x, added to, then normed into out */
        const float *a, *b, *c;         /* inputs: x, weights, ... (see launch_op) */
        float *out;
        float *out2;                    /* rope: a second vector (K after Q) of n2 heads */
        uint32_t n2;
        struct gpu_matmul_part parts[GPU_MAX_PARTS];    /* matmul: the weights on x, outputs, biases */
        uint32_t n_parts;
        enum gpu_act_order quantize;    /* matmul: quantize a into act first, in this order; rmsnorm,
                                         * add_rmsnorm, swiglu: out also into act (join_quantization) */
        uint32_t quantize_n_in;         /* rmsnorm, add_rmsnorm, swiglu: elements of a column of out */
        struct gpu_act act;             /* matmul of a quantized type: its activations */
};

static const char *op_name(enum op_kind k)
{
        static const char *names[] = { "embed", "rmsnorm", "matmul", "rope", "attention", "swiglu", "add_rmsnorm" };
        return names[k];
}

/* The profile's name of an op: a matmul by weight type and shape, the others by kind. */
static void profile_name(const struct gpu_op *op, char *out, size_t size)
{
        if (op->kind != OP_MATMUL) {
                snprintf(out, size, "%s", op_name(op->kind));
                return;
        }
        const struct rig_weight *w = &op->parts[0].w;
        const struct rig_type_info *t = rig_type_get(w->type);
        uint32_t n_out = 0;
        for (uint32_t p = 0; p < op->n_parts; p++)
                n_out += op->parts[p].w.n_out;
        snprintf(out, size, "matmul %s %ux%u x%u%s", t ? t->name : "?", n_out, w->n_in, op->n,
                 op->n_parts > 1 ? " (joined)" : "");
}

/* The quantization a producing op does besides its output (join_quantization), or NULL. */
static const struct gpu_act_out *act_out_of(const struct gpu_op *op, struct gpu_act_out *q)
{
        if (op->kind == OP_MATMUL || op->quantize == GPU_ACT_NONE)
                return NULL;
        q->order = op->quantize;
        q->n_in = op->quantize_n_in;
        q->act = op->act;
        return q;
}

static void launch_op(struct gpu_backend *g, const struct gpu_op *op)
{
        const struct gpu_launch *l = &g->launch;
        const struct rig_config *c = &g->model.cfg;
        struct gpu_act_out q;
        switch (op->kind) {
        case OP_EMBED:
                gpu_embed(l, &g->model.tok_embd, &op->batch, op->out);
                break;
        case OP_RMSNORM:
                gpu_rmsnorm(l, op->out, op->a, op->b, op->n, op->rows, c->rms_eps, act_out_of(op, &q));
                break;
        case OP_MATMUL:
                if (op->quantize != GPU_ACT_NONE)
                        gpu_quantize_act(l, op->a, op->parts[0].w.n_in, op->n, op->quantize, &op->act);
                gpu_matmul_parts(l, op->parts, op->n_parts, op->a, op->act.q ? &op->act : NULL, op->n);
                break;
        case OP_ROPE:
                gpu_rope(l, op->out, op->n, op->out2, op->n2, c->head_dim, c->rope_type, g->rope_freqs, &op->batch);
                break;
        case OP_ATTENTION:
                gpu_kv_store(l, &g->kv, op->layer, &op->batch, op->b, op->c);
                gpu_attention(l, &g->kv, op->layer, &op->batch, op->a, op->out, c->n_head, c->n_head_kv, c->head_dim);
                break;
        case OP_SWIGLU:
                gpu_swiglu(l, op->out, op->a, op->b, op->n, act_out_of(op, &q));
                break;
        case OP_ADD_RMSNORM:
                gpu_add_rmsnorm(l, op->residual, op->a, op->out, op->b, op->n, op->rows, c->rms_eps,
                                act_out_of(op, &q));
                break;
        }
}

static void run_op(void *ctx, const void *record)
{
        struct gpu_backend *g = (struct gpu_backend *)ctx;
        const struct gpu_op *op = (const struct gpu_op *)record;
        if (!g->profile) {
                launch_op(g, op);
                check_launch(g, op_name(op->kind));
                return;
        }
        char what[64];
        profile_name(op, what, sizeof(what));
        op_profile_begin(g->profile, g->launch.stream);
        launch_op(g, op);
        check_launch(g, op_name(op->kind));
        double bytes = 0;
        for (uint32_t p = 0; op->kind == OP_MATMUL && p < op->n_parts; p++)
                bytes += (double)op->parts[p].w.row_bytes * op->parts[p].w.n_out;
        op_profile_end(g->profile, g->launch.stream, what, bytes);
}

/* Inside a step the op waits for end_batch; outside (tests of single ops) it runs now. */
static void submit(struct gpu_backend *g, const struct gpu_op *op)
{
        if (op->kind != OP_MATMUL)
                forget_act(g);
        if (g->in_step) {
                if (step_graph_record(&g->graph, op) == 0)
                        return;
                /* no memory to record: what was recorded runs now, the rest of the step too */
                note_error(g, step_graph_run(&g->graph, g->launch.stream, run_op, g), "graph");
                step_graph_begin(&g->graph);
                g->in_step = false;
        }
        run_op(g, op);
}

static struct gpu_op new_op(struct gpu_backend *g, enum op_kind kind)
{
        struct gpu_op op;
        memset(&op, 0, sizeof(op));
        op.kind = kind;
        op.batch = g->batch;
        return op;
}

/* The ops that take up to two float inputs and a length. */
static void submit_simple(struct rig_backend *b, enum op_kind kind, float *out, const float *a, const float *in_b,
                          uint32_t n)
{
        struct gpu_op op = new_op(to_gpu(b), kind);
        op.out = out;
        op.a = a;
        op.b = in_b;
        op.n = n;
        submit(to_gpu(b), &op);
}

/* A batch's arrays go to the device as kernel arguments, this many tokens per launch: no host
 * buffer has to outlive the call, and a launch is cheaper than a small copy. */
#define BATCH_CHUNK 64

struct batch_chunk {
        uint32_t n;
        int32_t tokens[BATCH_CHUNK];
        uint32_t pos[BATCH_CHUNK], seq[BATCH_CHUNK];
};

__global__ void write_batch_kernel(struct batch_chunk c, int32_t *tokens, uint32_t *pos, uint32_t *seq)
{
        gpu_grid_begin();
        uint32_t i = threadIdx.x;
        if (i >= c.n)
                return;
        tokens[i] = c.tokens[i];
        pos[i] = c.pos[i];
        seq[i] = c.seq[i];
}

/* Room in batch_buf for n tokens; outside a step only (a step records its pointers). */
static bool reserve_batch(struct gpu_backend *g, uint32_t n)
{
        if (n <= g->batch_cap)
                return true;
        note_error(g, cudaStreamSynchronize(g->launch.stream), "begin_batch");
        cudaFree(g->batch_buf);
        g->batch_cap = 0;
        cudaError_t e = cudaMalloc((void **)&g->batch_buf, (size_t)n * 3 * sizeof(uint32_t));
        if (e != cudaSuccess) {
                g->batch_buf = NULL;
                note_error(g, e, "allocating a batch");
                return false;
        }
        g->batch_cap = n;
        return true;
}

static void write_batch(struct gpu_backend *g, const struct rig_batch *batch)
{
        int32_t *tokens = (int32_t *)g->batch_buf;
        uint32_t *pos = g->batch_buf + g->batch_cap, *seq = pos + g->batch_cap;
        for (uint32_t done = 0; done < batch->n; done += BATCH_CHUNK) {
                struct batch_chunk c;
                memset(&c, 0, sizeof(c));
                c.n = batch->n - done < BATCH_CHUNK ? batch->n - done : BATCH_CHUNK;
                memcpy(c.tokens, batch->tokens + done, c.n * sizeof(int32_t));
                memcpy(c.pos, batch->pos + done, c.n * sizeof(uint32_t));
                memcpy(c.seq, batch->seq + done, c.n * sizeof(uint32_t));
                gpu_launch_kernel(&g->launch, write_batch_kernel, dim3(1), dim3(BATCH_CHUNK), c, tokens + done, pos + done,
                                  seq + done);
                check_launch(g, "begin_batch");
        }
        g->batch.n = batch->n;
        g->batch.tokens = tokens;
        g->batch.pos = pos;
        g->batch.seq = seq;
}

/* Room in act for n_elems levels (and their scales); false, with the error noted, when the
 * device has no memory for it. Only between steps' kernels: a step records act's pointers. */
static bool reserve_act(struct gpu_backend *g, size_t n_elems)
{
        if (n_elems <= g->act_cap)
                return true;
        cudaFree(g->act.q);
        cudaFree(g->act.ds);
        g->act.q = NULL;
        g->act.ds = NULL;
        g->act_cap = 0;
        cudaError_t e = cudaMalloc((void **)&g->act.q, n_elems);
        if (e == cudaSuccess)
                e = cudaMalloc((void **)&g->act.ds, n_elems / 32 * sizeof(float2));
        if (e != cudaSuccess) {
                note_error(g, e, "allocating 8-bit activations");
                return false;
        }
        g->act_cap = n_elems;
        return true;
}

/* The step's last recorded op, to join the next one into; NULL outside a step or before its
 * first op. */
static struct gpu_op *last_op(struct gpu_backend *g)
{
        return g->in_step ? (struct gpu_op *)step_graph_last(&g->graph) : NULL;
}

/* A matmul of a step on the x the step's last op multiplied too, with a weight of the same
 * type and shape of rows (Q, K and V; gate and up), joins that op's launch (gpu_matmul_parts).
 * Not when that op's outputs include x (it read x before), nor when this one writes x. */
static bool join_last_matmul(struct gpu_backend *g, const struct rig_weight *w, const float *x, uint32_t n,
                             const float *bias, float *y)
{
        struct gpu_op *last = last_op(g);
        if (!last || last->kind != OP_MATMUL || last->a != x || last->n != n || last->n_parts == GPU_MAX_PARTS ||
            y == x)
                return false;
        const struct rig_weight *w0 = &last->parts[0].w;
        if (w0->type != w->type || w0->n_in != w->n_in || w0->row_bytes != w->row_bytes)
                return false;
        for (uint32_t p = 0; p < last->n_parts; p++)
                if (last->parts[p].y == x)
                        return false;
        struct gpu_matmul_part *part = &last->parts[last->n_parts++];
        part->w = *w;
        part->bias = bias;
        part->y = y;
        return true;
}

static void gpu_begin_batch(struct rig_backend *b, const struct rig_batch *batch)
{
        struct gpu_backend *g = to_gpu(b);
        RIG_ASSERT(batch->n > 0 && batch->n <= GPU_MAX_BATCH, "a batch of %u tokens (1 to %u)", batch->n, GPU_MAX_BATCH);
        for (uint32_t i = 0; i < batch->n; i++)
                RIG_ASSERT(batch->tokens[i] >= 0 && (uint32_t)batch->tokens[i] < g->model.cfg.n_vocab &&
                                   batch->pos[i] < b->n_ctx && batch->seq[i] < b->n_seq,
                           "token %d of %u at position %u of %u of sequence %u of %u", batch->tokens[i],
                           g->model.cfg.n_vocab, batch->pos[i], b->n_ctx, batch->seq[i], b->n_seq);
        if (g->in_step)
                b->ops->end_batch(b);   /* a step left open runs before the next begins */
        forget_act(g);
        if (!reserve_batch(g, batch->n)) {
                memset(&g->batch, 0, sizeof(g->batch));        /* the ops of no tokens do nothing */
                return;                 /* noted: read() reports it */
        }
        write_batch(g, batch);
        /* the 8-bit activations of the step's widest product, now: a step that had to grow them
         * would run what it recorded so far apart, without its joined launches */
        reserve_act(g, (size_t)batch->n * g->act_n_in_max);
        if (g->profile)
                op_profile_step(g->profile);
        step_graph_begin(&g->graph);
        g->in_step = true;
}

static void gpu_end_batch(struct rig_backend *b)
{
        struct gpu_backend *g = to_gpu(b);
        if (!g->in_step)
                return;
        g->in_step = false;
        note_error(g, step_graph_run(&g->graph, g->launch.stream, run_op, g), "graph");
}

static void gpu_embed_op(struct rig_backend *b, float *x)
{
        submit_simple(b, OP_EMBED, x, NULL, NULL, 0);
}

/* rmsnorm (residual NULL) and add_rmsnorm: out = norm(a) by w, rows of n; add_rmsnorm first adds
 * a to residual and norms that. */
static void submit_norm(struct rig_backend *b, enum op_kind kind, float *residual, const float *a, const float *w,
                        float *out, uint32_t n, uint32_t n_rows)
{
        struct gpu_op op = new_op(to_gpu(b), kind);
        op.residual = residual;
        op.a = a;
        op.b = w;
        op.out = out;
        op.n = n;
        op.rows = n_rows;
        submit(to_gpu(b), &op);
}

static void gpu_rmsnorm_op(struct rig_backend *b, float *out, const float *x, const float *w, uint32_t n,
                           uint32_t n_rows)
{
        submit_norm(b, OP_RMSNORM, NULL, x, w, out, n, n_rows);
}

/* The quantization of x for a matmul moves into the op that has just written x, the step's last
 * record (a norm, or swiglu; it writes x in columns of n_in), when that op quantizes nothing yet:
 * one launch fewer. After reserve_act: act is where it writes. */
static bool join_quantization(struct gpu_backend *g, const float *x, uint32_t n_in, uint32_t n, enum gpu_act_order order)
{
        struct gpu_op *last = last_op(g);
        if (!last || last->out != x || last->quantize != GPU_ACT_NONE || n_in % 32 != 0)
                return false;
        bool is_norm = last->kind == OP_RMSNORM || last->kind == OP_ADD_RMSNORM;
        if (!(is_norm && last->n == n_in && last->rows == n) &&
            !(last->kind == OP_SWIGLU && (size_t)last->n == (size_t)n_in * n))
                return false;
        last->quantize = order;
        last->quantize_n_in = n_in;
        last->act = g->act;
        return true;
}

static void gpu_matmul_op(struct rig_backend *b, const struct rig_weight *w, const float *x, uint32_t n,
                          const float *bias, float *y)
{
        struct gpu_backend *g = to_gpu(b);
        if (join_last_matmul(g, w, x, n, bias, y))
                return;
        struct gpu_op op = new_op(g, OP_MATMUL);
        op.parts[0].w = *w;
        op.parts[0].bias = bias;
        op.parts[0].y = y;
        op.n_parts = 1;
        op.a = x;
        op.n = n;
        enum gpu_act_order order = gpu_act_order_of(w->type);
        if (order != GPU_ACT_NONE) {
                bool fresh = g->act_src == x && g->act_n_in == w->n_in && g->act_n >= n && g->act_order == order;
                if (!fresh) {
                        if (g->in_step && (size_t)w->n_in * n > g->act_cap)
                                gpu_end_batch(b);       /* recorded ops use the old buffers: run them first */
                        if (!reserve_act(g, (size_t)w->n_in * n))
                                return;
                        if (!join_quantization(g, x, w->n_in, n, order))
                                op.quantize = order;
                        g->act_src = x;
                        g->act_n_in = w->n_in;
                        g->act_n = n;
                        g->act_order = order;
                }
                op.act = g->act;
        }
        submit(g, &op);
        if (y == g->act_src)
                forget_act(g);
}

/* A rope right after the rope of another vector of the step (K after Q) joins its launch. */
static void gpu_rope_op(struct rig_backend *b, float *vec, uint32_t n_heads)
{
        struct gpu_backend *g = to_gpu(b);
        struct gpu_op *last = last_op(g);
        if (last && last->kind == OP_ROPE && !last->out2 && last->out != vec) {
                last->out2 = vec;
                last->n2 = n_heads;
                return;
        }
        submit_simple(b, OP_ROPE, vec, NULL, NULL, n_heads);
}

static void gpu_attention_op(struct rig_backend *b, uint32_t layer, const float *q, const float *k, const float *v,
                             float *out)
{
        struct gpu_op op = new_op(to_gpu(b), OP_ATTENTION);
        op.layer = layer;
        op.a = q;
        op.b = k;
        op.c = v;
        op.out = out;
        submit(to_gpu(b), &op);
}

static void gpu_swiglu_op(struct rig_backend *b, float *out, const float *gate, const float *up, uint32_t n)
{
        submit_simple(b, OP_SWIGLU, out, gate, up, n);
}

/* The residual add x += y moves into the product the step has just recorded when that product
 * made y (forward.c's O and down projections): the product adds its result to x instead of
 * writing y, and the norm after it only norms, over several blocks a row (norm.cu) — y is then
 * never written (the backend contract: y is what add_rmsnorm consumes). Not when the product
 * reads x (its rows would read outputs other rows have already added to). */
static bool join_residual(struct gpu_backend *g, float *x, const float *y, uint32_t n, uint32_t n_rows)
{
        struct gpu_op *last = last_op(g);
        if (!last || last->kind != OP_MATMUL || last->n != n_rows || last->a == x)
                return false;
        struct gpu_matmul_part *made = NULL;
        for (uint32_t p = 0; p < last->n_parts; p++) {
                if (last->parts[p].y == x)
                        return false;
                if (last->parts[p].y == y && last->parts[p].w.n_out == n)
                        made = &last->parts[p];
        }
        if (!made || made->accumulate)
                return false;
        made->y = x;
        made->accumulate = true;
        return true;
}

static void gpu_add_rmsnorm_op(struct rig_backend *b, float *x, const float *y, float *out, const float *w, uint32_t n,
                               uint32_t n_rows)
{
        if (join_residual(to_gpu(b), x, y, n, n_rows))
                submit_norm(b, OP_RMSNORM, NULL, x, w, out, n, n_rows);
        else
                submit_norm(b, OP_ADD_RMSNORM, x, y, w, out, n, n_rows);
}

/* The best of five device-to-device copies of 1 GiB, timed with events on the backend's stream:
 * large enough that the L2 plays no part. */
static double gpu_copy_bandwidth(struct rig_backend *b)
{
        struct gpu_backend *g = to_gpu(b);
        const size_t n = (size_t)1 << 30;
        void *src = NULL, *dst = NULL;
        cudaEvent_t start = NULL, stop = NULL;
        double best = 0;
        if (cudaMalloc(&src, n) == cudaSuccess && cudaMalloc(&dst, n) == cudaSuccess &&
            cudaEventCreate(&start) == cudaSuccess && cudaEventCreate(&stop) == cudaSuccess &&
            cudaMemsetAsync(src, 1, n, g->launch.stream) == cudaSuccess) {
                for (int k = 0; k < 6; k++) {
                        float ms = 0;
                        cudaEventRecord(start, g->launch.stream);
                        cudaMemcpyAsync(dst, src, n, cudaMemcpyDeviceToDevice, g->launch.stream);
                        cudaEventRecord(stop, g->launch.stream);
                        if (cudaEventSynchronize(stop) != cudaSuccess ||
                            cudaEventElapsedTime(&ms, start, stop) != cudaSuccess)
                                break;
                        if (k > 0 && ms > 0 && 2.0 * n / (ms * 1e-3) > best)   /* the first warms up */
                                best = 2.0 * n / (ms * 1e-3);
                }
        }
        cudaGetLastError();     /* a failed measurement is reported as 0, not as the ops' error */
        if (start)
                cudaEventDestroy(start);
        if (stop)
                cudaEventDestroy(stop);
        cudaFree(src);
        cudaFree(dst);
        return best;
}

/* The row's best k found on the device, only they copied back (struct rig_backend_ops.top_k). */
static int gpu_top_k_op(struct rig_backend *b, float *x, uint32_t n, uint32_t k, const int32_t *ids, uint32_t n_ids,
                        float penalty, struct rig_candidate *out)
{
        struct gpu_backend *g = to_gpu(b);
        gpu_end_batch(b);               /* the step that wrote x runs first */
        if (!gpu_top_k_takes(&g->launch, n, k, n_ids))
                return -ENOTSUP;
        const struct rig_candidate *best = gpu_top_k(&g->launch, x, n, k, ids, n_ids, penalty);
        check_launch(g, "top_k");
        note_error(g, cudaMemcpyAsync(out, best, k * sizeof(*out), cudaMemcpyDeviceToHost, g->launch.stream), "top_k");
        note_error(g, cudaStreamSynchronize(g->launch.stream), "top_k");
        return g->error == cudaSuccess ? 0 : -EIO;
}

static const struct rig_backend_ops gpu_ops = {
        GPU_VENDOR_NAME,
        gpu_free,
        gpu_alloc,
        gpu_read,
        gpu_begin_batch,
        gpu_end_batch,
        gpu_embed_op,
        gpu_rmsnorm_op,
        gpu_matmul_op,
        gpu_rope_op,
        gpu_attention_op,
        gpu_swiglu_op,
        gpu_add_rmsnorm_op,
        gpu_copy_bandwidth,
        gpu_top_k_op,
};

/* ---- entry points ---- */

extern "C" int gpu_device_count(void)
{
        int n = 0;
        if (cudaGetDeviceCount(&n) != cudaSuccess) {
                cudaGetLastError();
                return 0;
        }
        return n;
}

/* For whoever tunes a card (as people edit launch parameters of other runtimes' kernels by
 * hand): RIG_GPU_MV=ROWS,UNROLL[,WARPS[,PREFETCH]], the quantized matvec's rows per group of
 * warps, chunks per step, warps per group and loads a step ahead (0 or 1) (matvec.cu), and
 * RIG_GPU_TILES_MIN_COLS=N, the columns from which products take the tile kernel. Unset or
 * unparsable, the kernels' defaults. */
static void kernel_shapes_from_env(struct gpu_launch *launch)
{
        const char *env = getenv("RIG_GPU_MV");
        unsigned rows = 0, unroll = 0, warps = 1, prefetch = 0, cols = 0, mmv = 0;
        if (env && sscanf(env, "%u,%u,%u,%u", &rows, &unroll, &warps, &prefetch) >= 2) {
                launch->mv_rows = rows;
                launch->mv_unroll = unroll;
                launch->mv_warps = warps;
                launch->mv_prefetch = prefetch;
        }
        env = getenv("RIG_GPU_MMV");
        if (env && sscanf(env, "%u", &mmv) == 1 && (mmv & (mmv - 1)) == 0 && mmv <= 16)
                launch->mmv_warps = mmv;
        env = getenv("RIG_GPU_TILES_MIN_COLS");
        if (env && sscanf(env, "%u", &cols) == 1)
                launch->tiles_min_cols = cols;
}

bool gpu_can_launch_early(int cc_major)
{
        const char *env = getenv("RIG_GPU_PDL");
        return GPU_HAS_PDL && cc_major >= 9 && !(env && strcmp(env, "0") == 0);
}

/* Scratch for the partial sums of the tile kernel's K slices: 8 slices of 64 columns of a
 * 16384-row product fit (matmul_tiles.cu takes fewer slices where they would not). */
#define SPLIT_WS_FLOATS ((size_t)8 << 20)

static int open_device(int device, struct gpu_launch *launch, char *err, size_t err_size)
{
        int n = 0;
        cudaError_t e = cudaGetDeviceCount(&n);
        if (e != cudaSuccess) {
                cudaGetLastError();
                return errmsg(err, err_size, -ENODEV, "no " VENDOR_LABEL " device: %s", cudaGetErrorString(e));
        }
        if (device < 0 || device >= n)
                return errmsg(err, err_size, -ENODEV, "no " VENDOR_LABEL " device %d: there are %d", device, n);
        cudaDeviceProp prop;
        if ((e = cudaSetDevice(device)) != cudaSuccess || (e = cudaGetDeviceProperties(&prop, device)) != cudaSuccess)
                return errmsg(err, err_size, -ENODEV, "opening " VENDOR_LABEL " device %d: %s", device,
                              cudaGetErrorString(e));
        if (prop.warpSize != 32 && prop.warpSize != 64)
                return errmsg(err, err_size, -ENODEV, VENDOR_LABEL " device %d (%s) has warps of %d", device, prop.name,
                              prop.warpSize);
        launch->warp_size = prop.warpSize;
        launch->cc_major = prop.major;
        launch->n_sm = prop.multiProcessorCount;
        launch->launches_early = gpu_can_launch_early(prop.major);
        kernel_shapes_from_env(launch);
        if ((e = cudaStreamCreateWithFlags(&launch->stream, cudaStreamNonBlocking)) != cudaSuccess)
                return errmsg(err, err_size, -ENODEV, "creating a stream on " VENDOR_LABEL " device %d: %s", device,
                              cudaGetErrorString(e));
        if ((e = cudaMalloc((void **)&launch->split_ws, SPLIT_WS_FLOATS * sizeof(float))) != cudaSuccess)
                return errmsg(err, err_size, -ENOMEM, "allocating %zu MiB of matmul scratch on " VENDOR_LABEL " device %d: %s",
                              SPLIT_WS_FLOATS * sizeof(float) >> 20, device, cudaGetErrorString(e));
        launch->split_ws_floats = SPLIT_WS_FLOATS;
        return 0;
}

extern "C" int gpu_backend_new(const struct rig_model *m, uint32_t n_ctx, uint32_t n_seq, enum rig_type kv_type,
                               int device, struct rig_backend **out, char *err, size_t err_size)
{
        int r = check_model(m, kv_type, err, err_size);
        if (r < 0)
                return r;
        if (n_ctx == 0 || n_seq == 0)
                return errmsg(err, err_size, -EINVAL, "a context of %u positions for %u sequences", n_ctx, n_seq);
        struct gpu_backend *g = (struct gpu_backend *)calloc(1, sizeof(*g));
        if (!g)
                return errmsg(err, err_size, -ENOMEM, "allocating the GPU backend");
        g->device = device;
        g->model = *m;                  /* hyperparameters, file handle; pointers replaced below */
        g->layers = (struct rig_layer *)calloc(m->cfg.n_layer ? m->cfg.n_layer : 1, sizeof(struct rig_layer));
        if (!g->layers) {
                r = errmsg(err, err_size, -ENOMEM, "allocating the GPU backend");
                goto fail;
        }
        g->model.layers = g->layers;
        if ((r = open_device(device, &g->launch, err, err_size)) < 0)
                goto fail;
        step_graph_init(&g->graph, sizeof(struct gpu_op), g->launch.launches_early);
        g->profile = op_profile_new();
        if (g->profile)
                g->graph.is_off = true;         /* each op timed alone */
        g->act_n_in_max = m->cfg.n_embd > m->cfg.n_ff ? m->cfg.n_embd : m->cfg.n_ff;
        if (m->cfg.n_head * m->cfg.head_dim > g->act_n_in_max)
                g->act_n_in_max = m->cfg.n_head * m->cfg.head_dim;
        if ((r = upload_weights(g, m, err, err_size)) < 0 ||
            (r = upload_rope_freqs(g, m, err, err_size)) < 0 ||
            (r = alloc_kv(g, kv_type, n_ctx, n_seq, err, err_size)) < 0)
                goto fail;
        g->base.ops = &gpu_ops;
        g->base.model = &g->model;
        g->base.n_ctx = n_ctx;
        g->base.n_seq = n_seq;
        *out = &g->base;
        return 0;
fail:
        cudaGetLastError();
        gpu_free(&g->base);
        return r;
}

extern "C" void gpu_backend_last_step(struct rig_backend *b, struct gpu_step_summary *out)
{
        struct gpu_backend *g = to_gpu(b);
        memset(out, 0, sizeof(*out));
        out->n_ops = g->graph.n_ops;
        for (size_t i = 0; i < g->graph.n_ops; i++) {
                const struct gpu_op *op = (const struct gpu_op *)(g->graph.ops + i * g->graph.op_bytes);
                if (op->kind == OP_MATMUL && op->quantize != GPU_ACT_NONE)
                        out->n_self_quantizing++;
                if (op->kind == OP_ADD_RMSNORM)
                        out->n_adding_apart++;
        }
}

extern "C" const char *gpu_backend_graph_failure(struct rig_backend *b)
{
        cudaError_t e = to_gpu(b)->graph.capture_error;
        return e == cudaSuccess ? NULL : cudaGetErrorString(e);
}

extern "C" void gpu_backend_write(struct rig_backend *b, void *dst, const void *src, size_t bytes)
{
        struct gpu_backend *g = to_gpu(b);
        gpu_end_batch(b);               /* in stream order with what was recorded */
        forget_act(g);
        note_error(g, cudaMemcpyAsync(dst, src, bytes, cudaMemcpyHostToDevice, g->launch.stream), "write");
        /* src may be freed or reused by the caller as soon as we return */
        note_error(g, cudaStreamSynchronize(g->launch.stream), "write");
}

extern "C" int gpu_backend_upload_weight(struct rig_backend *b, const struct rig_weight *w, struct rig_weight *out)
{
        struct gpu_backend *g = to_gpu(b);
        size_t stride = gpu_row_stride(w->type, w->n_in), bytes = stride * w->n_out;
        uint8_t *host = (uint8_t *)malloc(bytes ? bytes : 1);
        float *dev = gpu_alloc(b, (bytes + sizeof(float) - 1) / sizeof(float));
        if (!host || !dev) {
                free(host);
                return -ENOMEM;
        }
        gpu_layout_rows(w->type, w->n_in, w->n_out, w->data, w->row_bytes, host);
        gpu_backend_write(b, dev, host, bytes);
        free(host);
        *out = *w;
        out->data = dev;
        out->row_bytes = stride;
        return g->error == cudaSuccess ? 0 : -EIO;
}

extern "C" int gpu_backend_error(struct rig_backend *b, char *err, size_t err_size)
{
        struct gpu_backend *g = to_gpu(b);
        if (g->error == cudaSuccess)
                return 0;
        return errmsg(err, err_size, -EIO, "%s on " VENDOR_LABEL " device %d: %s", g->error_op, g->device,
                      cudaGetErrorString(g->error));
}
