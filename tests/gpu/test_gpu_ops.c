/* test_gpu_ops.c — every op of the GPU backend against the CPU reference on random inputs of
 * awkward shapes (one row, odd counts, the widest FFN rows), through struct rig_backend_ops.
 * One line per case, then "N passed, N failed"; exit 1 on any failure. Without a GPU it says
 * "skipped: no GPU" and exits 0. Built once per vendor library (test_gpu_ops_cuda, _hip). */
#include <errno.h>
#include <math.h>
#include <stddef.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backend_gpu.h"
#include "kv.h"
#include "model.h"
#include "quant.h"
#include "random_weights.h"

/* Widest head the reference keeps on the stack (the kernels take up to 256). */
#define GPU_TEST_MAX_HEAD_DIM 256

static int n_passed, n_failed;

/* ---- a model to host the ops: hyperparameters, an embedding, no layer weights ---- */

struct spec {
        uint32_t n_embd, n_vocab, n_head, n_head_kv, head_dim, n_layer;
        enum rig_type embd_type;
        enum rig_rope_type rope_type;
        bool has_rope_freqs;
};

static struct rig_model *model_from_spec(const struct spec *s)
{
        struct rig_model *m = calloc(1, sizeof(*m));
        struct rig_config *c = &m->cfg;
        c->arch = RIG_ARCH_LLAMA;
        c->n_vocab = s->n_vocab;
        c->n_embd = s->n_embd;
        c->n_layer = s->n_layer;
        c->n_head = s->n_head;
        c->n_head_kv = s->n_head_kv;
        c->head_dim = s->head_dim;
        c->n_ff = s->n_embd;
        c->n_ctx_train = 4096;
        c->rms_eps = 1e-5f;
        c->rope_freq_base = 500000.0f;
        c->rope_type = s->rope_type;
        m->tok_embd.type = s->embd_type;
        m->tok_embd.n_in = s->n_embd;
        m->tok_embd.n_out = s->n_vocab;
        m->tok_embd.row_bytes = rig_row_bytes(s->embd_type, s->n_embd);
        m->tok_embd.data = random_matrix(s->embd_type, s->n_embd, s->n_vocab);
        m->output = m->tok_embd;
        m->output_norm = random_floats(s->n_embd);
        if (s->has_rope_freqs) {
                float *f = malloc(s->head_dim / 2 * sizeof(float));
                for (uint32_t i = 0; i < s->head_dim / 2; i++)
                        f[i] = 1.0f + 4.0f * (rng_float() + 1.0f);     /* divisors in [1, 9) */
                m->rope_freqs = f;
        }
        m->layers = calloc(s->n_layer, sizeof(struct rig_layer));
        return m;
}

static void model_spec_free(struct rig_model *m)
{
        free((void *)m->tok_embd.data);
        free((void *)m->output_norm);
        free((void *)m->rope_freqs);
        free(m->layers);
        free(m);
}

static const struct spec default_spec = { 256, 3, 4, 2, 64, 1, RIG_TYPE_F32, RIG_ROPE_NORMAL, false };

static struct rig_backend *backend_for_seqs(const struct rig_model *m, uint32_t n_ctx, uint32_t n_seq,
                                           enum rig_type kv_type)
{
        struct rig_backend *b = NULL;
        char err[256];
        int r = gpu_backend_new(m, n_ctx, n_seq, kv_type, 0, &b, err, sizeof(err));
        if (r < 0) {
                printf("FAIL gpu_backend_new: %s (%d)\n", err, r);
                n_failed++;
                return NULL;
        }
        return b;
}

static struct rig_backend *backend_for(const struct rig_model *m, uint32_t n_ctx, enum rig_type kv_type)
{
        return backend_for_seqs(m, n_ctx, 1, kv_type);
}

/* A batch's arrays, for tests that build one: up to TEST_BATCH tokens. */
#define TEST_BATCH 160

struct test_batch {
        int32_t tokens[TEST_BATCH];
        uint32_t pos[TEST_BATCH], seq[TEST_BATCH];
        struct rig_batch b;
};

static const struct rig_batch *test_batch_add(struct test_batch *t, int32_t token, uint32_t pos, uint32_t seq)
{
        uint32_t i = t->b.n++;
        t->tokens[i] = token;
        t->pos[i] = pos;
        t->seq[i] = seq;
        t->b.tokens = t->tokens;
        t->b.pos = t->pos;
        t->b.seq = t->seq;
        return &t->b;
}

static float *upload(struct rig_backend *b, const void *src, size_t bytes)
{
        float *d = b->ops->alloc(b, (bytes + sizeof(float) - 1) / sizeof(float));
        if (d)
                gpu_backend_write(b, d, src, bytes);
        return d;
}

/* err is a NaN when anything was; a failed launch is a failure whatever the numbers. */
static void report(struct rig_backend *b, const char *op, const char *shape, double err, double tol)
{
        char msg[256];
        bool ok = err <= tol;
        if (gpu_backend_error(b, msg, sizeof(msg)) < 0) {
                ok = false;
                printf("     %s\n", msg);
        }
        printf("%-4s %-12s %-36s err %.3g (tol %.3g)\n", ok ? "ok" : "FAIL", op, shape, err, tol);
        if (ok)
                n_passed++;
        else
                n_failed++;
}

static double max_abs_diff(const float *a, const float *b, size_t n)
{
        double m = 0;
        for (size_t i = 0; i < n; i++) {
                double d = fabs((double)a[i] - b[i]);
                if (!(d <= m))
                        m = d;          /* NaN sticks */
        }
        return m;
}

/* ---- matmul ---- */

/* The GPU decodes exactly the CPU's values. The quantized types take activations quantized to
 * 8 bits as rig_quantize_row's Q8_0 rounds them (per 32 elements), so the reference takes x
 * through that rounding too; what remains is the order and rounding of the float sums. The
 * error is taken relative to sum |w_i x_i| of the row (what bounds any summation order's
 * rounding), so one tolerance fits every type: 1e-5 ~ 80 float ulps. Listed per type all the
 * same, so a type that ever needs its own has its place. */
static const struct { enum rig_type type; double tol; } matmul_tolerance[] = {
        { RIG_TYPE_F32, 1e-5 }, { RIG_TYPE_F16, 1e-5 }, { RIG_TYPE_BF16, 1e-5 }, { RIG_TYPE_Q4_0, 1e-5 },
        { RIG_TYPE_Q8_0, 1e-5 }, { RIG_TYPE_Q4_K, 1e-5 }, { RIG_TYPE_Q5_K, 1e-5 }, { RIG_TYPE_Q6_K, 1e-5 },
};

/* x as the GPU's kernels for type see it. */
static void activations_as_seen(enum rig_type type, const float *x, uint32_t n, float *out)
{
        if (rig_type_get(type)->block_elems == 1) {
                memcpy(out, x, n * sizeof(float));
                return;
        }
        struct block_q8_0 *q = malloc(rig_row_bytes(RIG_TYPE_Q8_0, n));
        rig_quantize_row(RIG_TYPE_Q8_0, x, q, n);
        rig_dequantize_row(RIG_TYPE_Q8_0, q, out, n);
        free(q);
}

/* Largest error of y[n_cols][n_out] against the double-precision reference; each row decoded
 * once for all the columns (4096 x 14336 x 64 takes seconds, not minutes). */
static double matmul_error(enum rig_type type, const uint8_t *w, uint32_t n_out, uint32_t n_in, const float *x,
                           uint32_t n_cols, const float *bias, const float *y)
{
        size_t rb = rig_row_bytes(type, n_in);
        float *row = malloc(n_in * sizeof(float)), *xs_all = malloc((size_t)n_cols * n_in * sizeof(float));
        for (uint32_t j = 0; j < n_cols; j++)
                activations_as_seen(type, x + (size_t)j * n_in, n_in, xs_all + (size_t)j * n_in);
        double err = 0;
        for (uint32_t r = 0; r < n_out; r++) {
                rig_dequantize_row(type, w + r * rb, row, n_in);
                for (uint32_t j = 0; j < n_cols; j++) {
                        const float *xs = xs_all + (size_t)j * n_in;
                        double dot = bias ? bias[r] : 0.0, mag = bias ? fabs(bias[r]) : 0.0;
                        for (uint32_t i = 0; i < n_in; i++) {
                                dot += (double)row[i] * xs[i];
                                mag += fabs((double)row[i] * xs[i]);
                        }
                        double e = fabs(y[(size_t)j * n_out + r] - dot) / (mag > 1e-30 ? mag : 1e-30);
                        if (!(e <= err))
                                err = e;
                }
        }
        free(row);
        free(xs_all);
        return err;
}

static void test_matmul(struct rig_backend *b, enum rig_type type, uint32_t n_out, uint32_t n_in, uint32_t n_cols,
                        bool has_bias, double tol)
{
        size_t rb = rig_row_bytes(type, n_in);
        uint8_t *w = random_matrix(type, n_in, n_out);
        float *x = random_floats((size_t)n_in * n_cols), *bias = random_floats(n_out);
        float *y = malloc((size_t)n_out * n_cols * sizeof(float));

        struct rig_weight hw = { w, type, n_in, n_out, rb }, dw;
        int r = gpu_backend_upload_weight(b, &hw, &dw);
        float *dx = upload(b, x, (size_t)n_in * n_cols * sizeof(float));
        float *dbias = upload(b, bias, n_out * sizeof(float));
        float *dy = b->ops->alloc(b, (size_t)n_out * n_cols);
        double err = NAN;
        if (r == 0 && dx && dbias && dy) {
                b->ops->matmul(b, &dw, dx, n_cols, has_bias ? dbias : NULL, dy);
                b->ops->read(b, y, dy, (size_t)n_out * n_cols);
                err = matmul_error(type, w, n_out, n_in, x, n_cols, has_bias ? bias : NULL, y);
        }
        const char *mma = getenv("RIG_GPU_MMA");    /* the tile kernel's path (test_matmul_tiles sets it) */
        char shape[64];
        snprintf(shape, sizeof(shape), "%s %ux%u x%u%s%s", rig_type_get(type)->name, n_out, n_in, n_cols,
                 has_bias ? " +bias" : "", mma && strcmp(mma, "0") == 0 ? " mma=0" : "");
        report(b, "matmul", shape, err, tol);
        free(w);
        free(x);
        free(bias);
        free(y);
}

/* Q, K and V of one x: the backend quantizes x once for the three; then x changes (the residual
 * add of add_rmsnorm) and the next product must see the new x, not the old quantization. */
static void test_matmul_reuses_and_forgets_x(struct rig_backend *b, enum rig_type type)
{
        const uint32_t n_in = 512, n_out = 64;
        size_t rb = rig_row_bytes(type, n_in);
        uint8_t *w = random_matrix(type, n_in, n_out);
        float *x = random_floats(n_in), *delta = random_floats(n_in), *y = malloc(n_out * sizeof(float));
        struct rig_weight hw = { w, type, n_in, n_out, rb }, dw;
        int r = gpu_backend_upload_weight(b, &hw, &dw);
        float *dx = upload(b, x, n_in * sizeof(float)), *ddelta = upload(b, delta, n_in * sizeof(float));
        float *dy = b->ops->alloc(b, n_out), *dnormed = b->ops->alloc(b, n_in), *dnorm_w = upload(b, x, n_in * sizeof(float));
        double err = NAN;
        if (r == 0 && dx && ddelta && dy && dnormed && dnorm_w) {
                b->ops->matmul(b, &dw, dx, 1, NULL, dy);
                b->ops->matmul(b, &dw, dx, 1, NULL, dy);        /* the same x: reused */
                b->ops->read(b, y, dy, n_out);
                err = matmul_error(type, w, n_out, n_in, x, 1, NULL, y);
                b->ops->add_rmsnorm(b, dx, ddelta, dnormed, dnorm_w, n_in, 1);
                b->ops->matmul(b, &dw, dx, 1, NULL, dy);
                b->ops->read(b, y, dy, n_out);
                for (uint32_t i = 0; i < n_in; i++)
                        x[i] += delta[i];
                double e = matmul_error(type, w, n_out, n_in, x, 1, NULL, y);
                err = e > err ? e : err;
        }
        char shape[64];
        snprintf(shape, sizeof(shape), "%s x reused, then changed", rig_type_get(type)->name);
        report(b, "matmul", shape, err, 1e-5);
        free(w);
        free(x);
        free(delta);
        free(y);
}

/* Largest error of got[rows][n] against the norm of each row of x by w, relative to the row's
 * largest output. */
static double rmsnorm_error(const float *x, const float *w, uint32_t n, uint32_t rows, float eps, const float *got)
{
        double err = 0;
        for (uint32_t r = 0; r < rows; r++) {
                const float *xr = x + (size_t)r * n;
                double ss = 0, top = 0, e = 0;
                for (uint32_t i = 0; i < n; i++)
                        ss += (double)xr[i] * xr[i];
                float scale = (float)(1.0 / sqrt(ss / n + eps));
                for (uint32_t i = 0; i < n; i++) {
                        float want = xr[i] * scale * w[i];
                        top = fabs(want) > top ? fabs(want) : top;
                        double d = fabs((double)got[(size_t)r * n + i] - want);
                        e = d > e || d != d ? d : e;
                }
                e /= top > 0 ? top : 1;
                if (!(e <= err))
                        err = e;
        }
        return err;
}

/* Whether the last step ran as a graph (a failed capture runs its ops one by one: correct, but
 * the joins' tests would not see what a real step does); says why not. */
static bool step_ran_as_graph(struct rig_backend *b)
{
        const char *why = gpu_backend_graph_failure(b);
        if (why)
                printf("     the step's graph capture failed: %s\n", why);
        return why == NULL;
}

/* Inside a step, products on one x join one launch (Q, K and V: weights of 37, 5 and 64 rows, one
 * with a bias); a fourth on the same x starts another launch (GPU_MAX_PARTS is 3), and a product
 * on the fourth's output (another x) one of its own. Each output against the reference. */
static void test_matmul_joined(struct rig_backend *b, enum rig_type type, uint32_t n_cols, double tol)
{
        enum { N_W = 4 };
        const uint32_t n_in = 512, n_outs[N_W] = { 37, 5, 64, 512 };
        size_t rb = rig_row_bytes(type, n_in);
        uint8_t *w[N_W];
        struct rig_weight dw[N_W];
        float *dy[N_W], *y[N_W];
        float *x = random_floats((size_t)n_in * n_cols), *bias = random_floats(n_outs[1]);
        float *dx = upload(b, x, (size_t)n_in * n_cols * sizeof(float)), *dbias = upload(b, bias, n_outs[1] * sizeof(float));
        float *z = malloc((size_t)n_outs[0] * n_cols * sizeof(float)), *dz = b->ops->alloc(b, (size_t)n_outs[0] * n_cols);
        bool is_ready = dx && dbias && dz;
        for (int k = 0; k < N_W; k++) {
                w[k] = random_matrix(type, n_in, n_outs[k]);
                struct rig_weight hw = { w[k], type, n_in, n_outs[k], rb };
                is_ready &= gpu_backend_upload_weight(b, &hw, &dw[k]) == 0;
                dy[k] = b->ops->alloc(b, (size_t)n_outs[k] * n_cols);
                y[k] = malloc((size_t)n_outs[k] * n_cols * sizeof(float));
                is_ready &= dy[k] != NULL;
        }
        double err = NAN;
        struct gpu_step_summary step = { 0 };
        bool is_quantized = rig_type_get(type)->block_elems > 1;
        if (is_ready) {
                struct test_batch tb = { 0 };
                const struct rig_batch *batch = NULL;
                for (uint32_t j = 0; j < n_cols; j++)
                        batch = test_batch_add(&tb, 1, j, 0);
                /* a product before the step sizes the 8-bit activations: a step that must grow
                 * them runs what it has recorded apart */
                b->ops->matmul(b, &dw[3], dx, n_cols, NULL, dy[3]);
                b->ops->begin_batch(b, batch);
                for (int k = 0; k < N_W; k++)
                        b->ops->matmul(b, &dw[k], dx, n_cols, k == 1 ? dbias : NULL, dy[k]);
                b->ops->matmul(b, &dw[0], dy[3], n_cols, NULL, dz);
                b->ops->end_batch(b);
                gpu_backend_last_step(b, &step);
                err = 0;
                for (int k = 0; k < N_W; k++) {
                        b->ops->read(b, y[k], dy[k], (size_t)n_outs[k] * n_cols);
                        double e = matmul_error(type, w[k], n_outs[k], n_in, x, n_cols, k == 1 ? bias : NULL, y[k]);
                        err = e > err || e != e ? e : err;
                }
                b->ops->read(b, z, dz, (size_t)n_outs[0] * n_cols);
                double e = matmul_error(type, w[0], n_outs[0], n_in, y[3], n_cols, NULL, z);
                err = e > err || e != e ? e : err;
        }
        /* three launches: the first three joined, the fourth, the fifth; x quantized once for the
         * four, once for the fifth; the step ran as a graph */
        if (step.n_ops != 3 || step.n_self_quantizing != (is_quantized ? 2u : 0u)) {
                printf("     %zu launches (want 3), %zu quantizing (want %u)\n", step.n_ops, step.n_self_quantizing,
                       is_quantized ? 2 : 0);
                err = NAN;
        }
        if (!step_ran_as_graph(b))
                err = NAN;
        char shape[64];
        snprintf(shape, sizeof(shape), "%s 4 on one x, 1 on the 4th's y, x%u", rig_type_get(type)->name, n_cols);
        report(b, "matmul step", shape, err, tol);
        for (int k = 0; k < N_W; k++) {
                free(w[k]);
                free(y[k]);
        }
        free(x);
        free(bias);
        free(z);
}

/* Products after the kernels that wrote their x, in one step: the quantization of x moves into
 * rmsnorm, add_rmsnorm and swiglu (one order each); a second product on the same x of a type
 * that reads another order (Q4_K_M's Q6_K V after Q and K) quantizes x itself. n_cols columns;
 * each output against the reference on x as the GPU wrote it. */
static void test_quantization_joined(struct rig_backend *b, enum rig_type type, enum rig_type other, uint32_t n_cols,
                                     double tol)
{
        enum { N_W = 3, N_X = 4 };
        const uint32_t n_in = 512, n_ff = 1024;
        const enum rig_type types[N_W] = { type, other, type };
        const uint32_t n_outs[N_W] = { 37, 29, 37 }, n_ins[N_W] = { n_in, n_in, n_ff };
        uint8_t *w[N_W];
        struct rig_weight dw[N_W];
        bool is_ready = true;
        for (int k = 0; k < N_W; k++) {
                w[k] = random_matrix(types[k], n_ins[k], n_outs[k]);
                struct rig_weight hw = { w[k], types[k], n_ins[k], n_outs[k], rig_row_bytes(types[k], n_ins[k]) };
                is_ready &= gpu_backend_upload_weight(b, &hw, &dw[k]) == 0;
        }
        size_t nx = (size_t)n_in * n_cols, nf = (size_t)n_ff * n_cols;
        float *x = random_floats(nx), *delta = random_floats(nx), *norm_w = random_floats(n_in);
        float *gate = random_floats(nf), *up = random_floats(nf);
        float *dx = upload(b, x, nx * sizeof(float)), *ddelta = upload(b, delta, nx * sizeof(float));
        float *dnorm_w = upload(b, norm_w, n_in * sizeof(float)), *dgate = upload(b, gate, nf * sizeof(float));
        float *dup = upload(b, up, nf * sizeof(float));
        float *dxn1 = b->ops->alloc(b, nx), *dxn2 = b->ops->alloc(b, nx), *dh = b->ops->alloc(b, nf);
        float *dy[N_X], *y[N_X];
        const uint32_t y_rows[N_X] = { n_outs[0], n_outs[0], n_outs[1], n_outs[2] };
        for (int k = 0; k < N_X; k++) {
                dy[k] = b->ops->alloc(b, (size_t)y_rows[k] * n_cols);
                y[k] = malloc((size_t)y_rows[k] * n_cols * sizeof(float));
                is_ready &= dy[k] != NULL;
        }
        float *xn1 = malloc(nx * sizeof(float)), *xn2 = malloc(nx * sizeof(float)), *h = malloc(nf * sizeof(float));
        double err = NAN;
        if (is_ready && dx && ddelta && dnorm_w && dgate && dup && dxn1 && dxn2 && dh) {
                struct test_batch tb = { 0 };
                const struct rig_batch *batch = NULL;
                for (uint32_t j = 0; j < n_cols; j++)
                        batch = test_batch_add(&tb, 1, j, 0);
                b->ops->matmul(b, &dw[1], dx, n_cols, NULL, dy[2]);     /* size the activations (above) */
                b->ops->matmul(b, &dw[2], dgate, n_cols, NULL, dy[3]);
                b->ops->begin_batch(b, batch);
                b->ops->rmsnorm(b, dxn1, dx, dnorm_w, n_in, n_cols);
                b->ops->matmul(b, &dw[0], dxn1, n_cols, NULL, dy[0]);
                b->ops->add_rmsnorm(b, dx, ddelta, dxn2, dnorm_w, n_in, n_cols);
                b->ops->matmul(b, &dw[0], dxn2, n_cols, NULL, dy[1]);
                b->ops->matmul(b, &dw[1], dxn2, n_cols, NULL, dy[2]);
                b->ops->swiglu(b, dh, dgate, dup, n_ff * n_cols);
                b->ops->matmul(b, &dw[2], dh, n_cols, NULL, dy[3]);
                b->ops->end_batch(b);
                struct gpu_step_summary step;
                gpu_backend_last_step(b, &step);
                b->ops->read(b, xn1, dxn1, nx);
                b->ops->read(b, xn2, dxn2, nx);
                b->ops->read(b, h, dh, nf);
                const float *xs[N_X] = { xn1, xn2, xn2, h };
                const int wk[N_X] = { 0, 0, 1, 2 };
                err = 0;
                for (int k = 0; k < N_X; k++) {
                        b->ops->read(b, y[k], dy[k], (size_t)y_rows[k] * n_cols);
                        double e = matmul_error(types[wk[k]], w[wk[k]], y_rows[k], n_ins[wk[k]], xs[k], n_cols, NULL, y[k]);
                        err = e > err || e != e ? e : err;
                }
                /* seven ops; only the product of the other order quantizes its x itself */
                if (step.n_ops != 7 || step.n_self_quantizing != 1) {
                        printf("     %zu ops (want 7), %zu quantizing (want 1)\n", step.n_ops, step.n_self_quantizing);
                        err = NAN;
                }
        }
        char shape[80];
        snprintf(shape, sizeof(shape), "%s (+%s) after norms, swiglu x%u", rig_type_get(type)->name,
                 rig_type_get(other)->name, n_cols);
        report(b, "matmul step", shape, err, tol);
        for (int k = 0; k < N_W; k++)
                free(w[k]);
        for (int k = 0; k < N_X; k++)
                free(y[k]);
        free(x);
        free(delta);
        free(norm_w);
        free(gate);
        free(up);
        free(xn1);
        free(xn2);
        free(h);
}

/* forward.c's residual add after the O and down projections: inside a step the product that
 * makes y adds it into x itself and the add_rmsnorm after it only norms (the step has no add of
 * its own). x less its old value against the product's reference, the normed x against the norm
 * of x as the GPU left it, and a product on the normed x. n_in 2048: the tile kernel (from 24
 * columns) splits K, so its slices' sum adds too. */
static void test_residual_joined(struct rig_backend *b, enum rig_type type, uint32_t n_cols, double tol)
{
        const uint32_t n_in = 2048, n_embd = 512, n_out2 = 37;
        uint8_t *w = random_matrix(type, n_in, n_embd), *w2 = random_matrix(type, n_embd, n_out2);
        struct rig_weight hw = { w, type, n_in, n_embd, rig_row_bytes(type, n_in) }, dw;
        struct rig_weight hw2 = { w2, type, n_embd, n_out2, rig_row_bytes(type, n_embd) }, dw2;
        bool is_ready = gpu_backend_upload_weight(b, &hw, &dw) == 0 && gpu_backend_upload_weight(b, &hw2, &dw2) == 0;
        size_t na = (size_t)n_in * n_cols, nx = (size_t)n_embd * n_cols, ny = (size_t)n_out2 * n_cols;
        float *a = random_floats(na), *x = random_floats(nx), *norm_w = random_floats(n_embd);
        float *da = upload(b, a, na * sizeof(float)), *dx = upload(b, x, nx * sizeof(float));
        float *dnorm_w = upload(b, norm_w, n_embd * sizeof(float));
        float *dproj = b->ops->alloc(b, nx), *dxn = b->ops->alloc(b, nx), *dy2 = b->ops->alloc(b, ny);
        float *got_x = malloc(nx * sizeof(float)), *added = malloc(nx * sizeof(float));
        float *xn = malloc(nx * sizeof(float)), *y2 = malloc(ny * sizeof(float));
        double err = NAN;
        if (is_ready && da && dx && dnorm_w && dproj && dxn && dy2) {
                struct test_batch tb = { 0 };
                const struct rig_batch *batch = NULL;
                for (uint32_t j = 0; j < n_cols; j++)   /* no attention: any positions in the cache */
                        batch = test_batch_add(&tb, 1, j % b->n_ctx, 0);
                b->ops->matmul(b, &dw, da, n_cols, NULL, dproj);        /* size the activations */
                b->ops->begin_batch(b, batch);
                b->ops->matmul(b, &dw, da, n_cols, NULL, dproj);
                b->ops->add_rmsnorm(b, dx, dproj, dxn, dnorm_w, n_embd, n_cols);
                b->ops->matmul(b, &dw2, dxn, n_cols, NULL, dy2);
                b->ops->end_batch(b);
                struct gpu_step_summary step;
                gpu_backend_last_step(b, &step);
                b->ops->read(b, got_x, dx, nx);
                b->ops->read(b, xn, dxn, nx);
                b->ops->read(b, y2, dy2, ny);
                for (size_t i = 0; i < nx; i++)
                        added[i] = got_x[i] - x[i];
                err = matmul_error(type, w, n_embd, n_in, a, n_cols, NULL, added);
                double e_norm = rmsnorm_error(got_x, norm_w, n_embd, n_cols, b->model->cfg.rms_eps, xn);
                double e = matmul_error(type, w2, n_out2, n_embd, xn, n_cols, NULL, y2);
                err = e > err || e != e ? e : err;
                if (!(e_norm <= 2.4e-7) || step.n_adding_apart != 0 || step.n_ops != 3) {
                        printf("     norm error %.3g (want <= 2.4e-7), %zu adds apart (want 0), %zu ops (want 3)\n",
                               e_norm, step.n_adding_apart, step.n_ops);
                        err = NAN;
                }
                if (!step_ran_as_graph(b))
                        err = NAN;
        }
        char shape[64];
        snprintf(shape, sizeof(shape), "%s add joined into the product, x%u", rig_type_get(type)->name, n_cols);
        report(b, "matmul step", shape, err, tol);
        free(w);
        free(w2);
        free(a);
        free(x);
        free(norm_w);
        free(got_x);
        free(added);
        free(xn);
        free(y2);
}

/* The tile kernel on tensor cores, then on its dp4a path (RIG_GPU_MMA=0, read at each call): tile
 * tails of rows and columns, a last step of 128 elements running past the row's end (Q8_0 / Q4_0,
 * n_in 96), several tiles each way, and once a Llama 8B FFN down projection of 64 tokens. */
static void test_matmul_tiles(struct rig_backend *b, enum rig_type type, const uint32_t *col_counts, size_t n_counts,
                              double tol)
{
        for (int path = 0; path < 2; path++) {
                setenv("RIG_GPU_MMA", path == 0 ? "1" : "0", 1);
                for (size_t i = 0; i < n_counts; i++)
                        test_matmul(b, type, 37, 512, col_counts[i], i % 2 == 0, tol);
                if (rig_type_get(type)->block_elems == 32)
                        test_matmul(b, type, 129, 96, 20, false, tol);
                test_matmul(b, type, 300, 4096, 37, true, tol);
                if (type == RIG_TYPE_Q4_K)
                        test_matmul(b, type, 4096, 14336, 64, false, tol);
        }
        unsetenv("RIG_GPU_MMA");
}

/* Products of a few columns: for the quantized types on tensor cores (where the device has them;
 * tiles of 16 rows and 8 or 16 columns, steps of 4 chunks: rows, columns and chunks past the end
 * of the last) and then on the dp4a path (RIG_GPU_MMA=0, read at each call); once a Llama 8B FFN
 * down projection of 8 sequences. */
static void test_matmul_cols(struct rig_backend *b, enum rig_type type, const uint32_t *col_counts, size_t n_counts,
                             double tol)
{
        bool is_quantized = rig_type_get(type)->block_elems > 1;
        for (int path = 0; path < (is_quantized ? 2 : 1); path++) {
                if (is_quantized)
                        setenv("RIG_GPU_MMA", path == 0 ? "1" : "0", 1);
                for (size_t i = 0; i < n_counts; i++)
                        test_matmul(b, type, 37, 512, col_counts[i], i % 2 == 0, tol);
                if (is_quantized) {     /* 3 chunks of 32, 5 steps of 64 */
                        uint32_t n_in = rig_type_get(type)->block_elems == 32 ? 96 : 1280;
                        test_matmul(b, type, 21, n_in, 5, true, tol);
                        test_matmul(b, type, 21, n_in, 11, false, tol);
                }
                if (type == RIG_TYPE_Q4_K && path == 0)
                        test_matmul(b, type, 4096, 14336, 8, false, tol);
        }
        unsetenv("RIG_GPU_MMA");
}

/* A backend opened with the environment variable name set to value (the kernel shapes read when
 * a backend opens); NULL where none opens. */
static struct rig_backend *backend_with(const struct rig_model *m, const char *name, const char *value)
{
        setenv(name, value, 1);
        struct rig_backend *b = backend_for(m, 16, RIG_TYPE_F32);
        if (b)
                printf("     %s=%s\n", name, value);
        return b;
}

/* Every shape of the quantized matvec (rows a group, chunks a step, warps a group: RIG_GPU_MV,
 * read when a backend opens): rows past the end of the last group, rows with fewer chunks than
 * a step takes. */
static void test_matvec_shapes(const struct rig_model *m, enum rig_type type, double tol)
{
        uint32_t rows, unroll, warps, prefetch;
        for (size_t i = 0; gpu_matvec_shape(i, &rows, &unroll, &warps, &prefetch); i++) {
                char shape[32];
                snprintf(shape, sizeof(shape), "%u,%u,%u,%u", rows, unroll, warps, prefetch);
                struct rig_backend *b = backend_with(m, "RIG_GPU_MV", shape);
                if (!b)
                        continue;
                test_matmul(b, type, 37, 4096, 1, true, tol);
                test_matmul(b, type, 3, 256, 1, false, tol);
                test_matmul(b, type, 130, 14336, 1, false, tol);
                b->ops->free(b);
        }
        unsetenv("RIG_GPU_MV");
}

/* The tensor-core matvec with each block size (RIG_GPU_MMV=WARPS, read when a backend opens;
 * the kernel picks one by shape otherwise): warps splitting few steps, one or two tiles of 8
 * columns, rows past the last tile. Where the device has no tensor cores these take dp4a. */
static void test_mma_warps(const struct rig_model *m, enum rig_type type, double tol)
{
        for (uint32_t warps = 1; warps <= 16; warps *= 2) {
                char value[8];
                snprintf(value, sizeof(value), "%u", warps);
                struct rig_backend *b = backend_with(m, "RIG_GPU_MMV", value);
                if (!b)
                        continue;
                test_matmul(b, type, 37, 4096, 5, true, tol);
                test_matmul(b, type, 130, 14336, 13, false, tol);
                b->ops->free(b);
        }
        unsetenv("RIG_GPU_MMV");
}

static void test_matmul_all(void)
{
        /* n_out x n_in: one row, odd row counts (a partial block of rows), the shapes of a Llama
         * 8B (4096, 14336); n_in not a multiple of 8 takes the float types' scalar kernels. */
        static const uint32_t k_shapes[][2] = { { 1, 256 }, { 7, 512 }, { 33, 4096 }, { 256, 14336 } };
        static const uint32_t q32_shapes[][2] = { { 1, 32 }, { 3, 96 }, { 17, 4128 } };
        static const uint32_t float_shapes[][2] = { { 1, 1 }, { 5, 100 }, { 3, 7 }, { 9, 8 } };
        /* every kernel instance (1..8 columns), more than one launch of matvec.cu holds (13), the
         * tensor-core matvec's two tiles of 8 columns (13, 16) */
        static const uint32_t col_counts[] = { 2, 3, 4, 5, 6, 7, 8, 13, 16 };
        /* the tile kernel of the quantized types (from GPU_TILES_MIN_COLS = 24 columns, tiles of
         * 128 rows x 64 columns): one partial tile, a full one, two with the second partial */
        static const uint32_t tile_col_counts[] = { 24, 25, 64, 100 };

        struct rig_model *m = model_from_spec(&default_spec);
        for (size_t t = 0; t < sizeof(matmul_tolerance) / sizeof(matmul_tolerance[0]); t++) {
                enum rig_type type = matmul_tolerance[t].type;
                double tol = matmul_tolerance[t].tol;
                struct rig_backend *b = backend_for(m, 16, RIG_TYPE_F32);
                if (!b)
                        continue;
                for (size_t i = 0; i < sizeof(k_shapes) / sizeof(k_shapes[0]); i++)
                        test_matmul(b, type, k_shapes[i][0], k_shapes[i][1], 1, false, tol);
                test_matmul(b, type, 5, 256, 1, true, tol);
                test_matmul_cols(b, type, col_counts, sizeof(col_counts) / sizeof(col_counts[0]), tol);
                if (rig_type_get(type)->block_elems <= 32)
                        for (size_t i = 0; i < sizeof(q32_shapes) / sizeof(q32_shapes[0]); i++)
                                test_matmul(b, type, q32_shapes[i][0], q32_shapes[i][1], 1, false, tol);
                if (rig_type_get(type)->block_elems == 1)
                        for (size_t i = 0; i < sizeof(float_shapes) / sizeof(float_shapes[0]); i++)
                                test_matmul(b, type, float_shapes[i][0], float_shapes[i][1], 3, false, tol);
                else
                        test_matmul_reuses_and_forgets_x(b, type);
                test_matmul_joined(b, type, 1, tol);
                test_matmul_joined(b, type, 3, tol);
                test_matmul_joined(b, type, 5, tol);     /* Q8_0, Q4_0 on tensor cores too */
                enum rig_type other = type == RIG_TYPE_Q6_K ? RIG_TYPE_Q4_K : RIG_TYPE_Q6_K;
                test_quantization_joined(b, type, other, 1, tol);
                test_quantization_joined(b, type, other, 3, tol);
                /* one column (matvec), 8 (tensor cores for the quantized types), 40 (tiles) */
                test_residual_joined(b, type, 1, tol);
                test_residual_joined(b, type, 8, tol);
                if (rig_type_get(type)->block_elems > 1)
                        test_residual_joined(b, type, 40, tol);
                if (type == RIG_TYPE_Q4_K)      /* more rows than multiprocessors: a norm block a row */
                        test_residual_joined(b, type, 140, tol);
                if (rig_type_get(type)->block_elems > 1)
                        test_matmul_tiles(b, type, tile_col_counts, sizeof(tile_col_counts) / sizeof(tile_col_counts[0]),
                                          tol);
                b->ops->free(b);
                if (rig_type_get(type)->block_elems > 1) {
                        test_matvec_shapes(m, type, tol);
                        test_mma_warps(m, type, tol);
                }
        }
        model_spec_free(m);
}

/* ---- embed: bit-exact with rig_dequantize_row (tolerance 0) ---- */

static void test_embed(enum rig_type type, uint32_t n_embd)
{
        struct spec s = default_spec;
        s.embd_type = type;
        s.n_embd = n_embd;
        s.n_vocab = 5;
        struct rig_model *m = model_from_spec(&s);
        /* (5 tokens: the batch below holds each, one twice) */
        struct rig_backend *b = backend_for(m, 16, RIG_TYPE_F32);
        if (!b) {
                model_spec_free(m);
                return;
        }
        /* one batch: every token, one twice, out of order */
        static const int32_t tokens[] = { 4, 0, 2, 2, 1, 3 };
        const uint32_t n_tok = sizeof(tokens) / sizeof(tokens[0]);
        float *got = malloc(n_tok * n_embd * sizeof(float)), *want = malloc(n_embd * sizeof(float));
        float *dx = b->ops->alloc(b, (size_t)n_tok * n_embd);
        double err = NAN;
        if (dx) {
                err = 0;
                struct test_batch tb = { .b.n = 0 };
                for (uint32_t i = 0; i < n_tok; i++)
                        test_batch_add(&tb, tokens[i], i, 0);
                b->ops->begin_batch(b, &tb.b);
                b->ops->embed(b, dx);
                b->ops->end_batch(b);
                b->ops->read(b, got, dx, (size_t)n_tok * n_embd);
                for (uint32_t i = 0; i < n_tok; i++) {
                        const float *row = got + (size_t)i * n_embd;
                        rig_dequantize_row(type, (const uint8_t *)m->tok_embd.data + tokens[i] * m->tok_embd.row_bytes,
                                           want, n_embd);
                        double e = memcmp(row, want, n_embd * sizeof(float)) == 0 ? 0.0 : max_abs_diff(row, want, n_embd);
                        if (e > err)
                                err = e > 0 ? e : 1e-300;       /* a differing bit pattern counts */
                }
        }
        char shape[64];
        snprintf(shape, sizeof(shape), "%s n_embd %u", rig_type_get(type)->name, n_embd);
        report(b, "embed", shape, err, 0.0);
        free(got);
        free(want);
        b->ops->free(b);
        model_spec_free(m);
}

static void test_embed_all(void)
{
        static const enum rig_type types[] = { RIG_TYPE_F32, RIG_TYPE_F16, RIG_TYPE_BF16, RIG_TYPE_Q4_0,
                                               RIG_TYPE_Q8_0, RIG_TYPE_Q4_K, RIG_TYPE_Q5_K, RIG_TYPE_Q6_K };
        for (size_t i = 0; i < sizeof(types) / sizeof(types[0]); i++) {
                test_embed(types[i], 4096);
                if (rig_type_get(types[i])->block_elems == 1)
                        test_embed(types[i], 100);
                else if (rig_type_get(types[i])->block_elems == 32)
                        test_embed(types[i], 96);
                else
                        test_embed(types[i], 256);
        }
}

/* ---- rmsnorm: the CPU formula; sums in double on both sides, tolerance 2 float ulps of the
 * largest output ---- */

/* rows of n, each scaled differently so each needs its own sum */
static void test_rmsnorm(struct rig_backend *b, uint32_t n, uint32_t rows)
{
        size_t total = (size_t)n * rows;
        float *x = random_floats(total), *w = random_floats(n);
        float *got = malloc(total * sizeof(float));
        for (size_t i = 0; i < total; i++)
                x[i] *= (float)(1 + i / n);
        float *dx = upload(b, x, total * sizeof(float)), *dw = upload(b, w, n * sizeof(float));
        float *dout = b->ops->alloc(b, total);
        double err = NAN;
        if (dx && dw && dout) {
                b->ops->rmsnorm(b, dout, dx, dw, n, rows);
                b->ops->read(b, got, dout, total);
                err = rmsnorm_error(x, w, n, rows, b->model->cfg.rms_eps, got);
        }
        char shape[32];
        snprintf(shape, sizeof(shape), "n %u x%u", n, rows);
        report(b, "rmsnorm", shape, err, 2.4e-7);
        free(x);
        free(w);
        free(got);
}

/* ---- rope: cos and sin in double on both sides; tolerance 1e-6 of |x| (1..2 ulps) ---- */

static void rope_reference(const struct rig_model *m, float *vec, uint32_t n_heads, uint32_t pos)
{
        const struct rig_config *c = &m->cfg;
        uint32_t d = c->head_dim, half = d / 2;
        for (uint32_t i = 0; i < half; i++) {
                double freq = pow(c->rope_freq_base, -2.0 * i / d);
                if (m->rope_freqs)
                        freq /= m->rope_freqs[i];
                double angle = pos * freq;
                float cs = (float)cos(angle), sn = (float)sin(angle);
                for (uint32_t h = 0; h < n_heads; h++) {
                        float *head = vec + h * d;
                        uint32_t a = c->rope_type == RIG_ROPE_NEOX ? i : 2 * i;
                        uint32_t bb = c->rope_type == RIG_ROPE_NEOX ? i + half : 2 * i + 1;
                        float x0 = head[a], x1 = head[bb];
                        head[a] = x0 * cs - x1 * sn;
                        head[bb] = x0 * sn + x1 * cs;
                }
        }
}

static void test_rope(enum rig_rope_type type, bool has_rope_freqs, uint32_t head_dim, uint32_t n_heads)
{
        struct spec s = default_spec;
        s.rope_type = type;
        s.has_rope_freqs = has_rope_freqs;
        s.head_dim = head_dim;
        s.n_head = n_heads;
        s.n_head_kv = 1;
        struct rig_model *m = model_from_spec(&s);
        const uint32_t n_ctx = 8192;
        struct rig_backend *b = backend_for(m, n_ctx, RIG_TYPE_F32);
        if (!b) {
                model_spec_free(m);
                return;
        }
        /* each position alone, then all of them as the rows of one batch; a second vector of
         * other heads (K after Q) roped in the same step, so in the same launch */
        static const uint32_t positions[] = { 0, 1, 17, 8191 };
        const uint32_t n_positions = sizeof(positions) / sizeof(positions[0]);
        const uint32_t n_heads2 = n_heads > 1 ? n_heads / 2 : 1;
        size_t n = (size_t)n_heads * head_dim, n2 = (size_t)n_heads2 * head_dim;
        for (uint32_t p = 0; p <= n_positions; p++) {
                uint32_t first = p < n_positions ? p : 0, rows = p < n_positions ? 1 : n_positions;
                float *x = random_floats(n * rows), *got = malloc(n * rows * sizeof(float));
                float *x2 = random_floats(n2 * rows), *got2 = malloc(n2 * rows * sizeof(float));
                float *dx = upload(b, x, n * rows * sizeof(float)), *dx2 = upload(b, x2, n2 * rows * sizeof(float));
                double err = NAN;
                if (dx && dx2) {
                        struct test_batch tb = { .b.n = 0 };
                        for (uint32_t r = 0; r < rows; r++)
                                test_batch_add(&tb, 0, positions[first + r], 0);
                        b->ops->begin_batch(b, &tb.b);
                        b->ops->rope(b, dx, n_heads);
                        b->ops->rope(b, dx2, n_heads2);
                        b->ops->end_batch(b);
                        struct gpu_step_summary step;
                        gpu_backend_last_step(b, &step);
                        b->ops->read(b, got, dx, n * rows);
                        b->ops->read(b, got2, dx2, n2 * rows);
                        for (uint32_t r = 0; r < rows; r++) {
                                rope_reference(m, x + r * n, n_heads, positions[first + r]);
                                rope_reference(m, x2 + r * n2, n_heads2, positions[first + r]);
                        }
                        err = max_abs_diff(got, x, n * rows);
                        double e2 = max_abs_diff(got2, x2, n2 * rows);
                        err = e2 > err || e2 != e2 ? e2 : err;
                        if (step.n_ops != 1) {
                                printf("     %zu launches for the two vectors (want 1)\n", step.n_ops);
                                err = NAN;
                        }
                }
                char shape[80], where[32];
                if (rows == 1)
                        snprintf(where, sizeof(where), "pos %u", positions[first]);
                else
                        snprintf(where, sizeof(where), "%u rows, pos 0..8191", rows);
                snprintf(shape, sizeof(shape), "%s%s %ux%u +%u %s", type == RIG_ROPE_NEOX ? "neox" : "normal",
                         has_rope_freqs ? "+freqs" : "", n_heads, head_dim, n_heads2, where);
                report(b, "rope", shape, err, 1e-6);
                free(x);
                free(got);
                free(x2);
                free(got2);
        }
        b->ops->free(b);
        model_spec_free(m);
}

/* ---- attention: the CPU cache (kv.c) and a plain softmax in double ---- */

static void attention_reference(const struct rig_kv *kv, uint32_t layer, uint32_t seq, uint32_t pos, const float *q,
                                float *out, uint32_t n_head, uint32_t n_head_kv, uint32_t d)
{
        uint32_t group = n_head / n_head_kv;
        double *scores = malloc((pos + 1) * sizeof(double));
        float *row = malloc(d * sizeof(float));
        for (uint32_t h = 0; h < n_head; h++) {
                uint32_t start = h / group * d;
                double mx = -INFINITY, sum = 0;
                for (uint32_t t = 0; t <= pos; t++) {
                        kv_load_k(kv, layer, seq, t, start, d, row);
                        double dot = 0;
                        for (uint32_t i = 0; i < d; i++)
                                dot += (double)q[h * d + i] * row[i];
                        scores[t] = dot / sqrt((double)d);
                        mx = scores[t] > mx ? scores[t] : mx;
                }
                for (uint32_t t = 0; t <= pos; t++) {
                        scores[t] = exp(scores[t] - mx);
                        sum += scores[t];
                }
                double acc[GPU_TEST_MAX_HEAD_DIM] = { 0 };
                for (uint32_t t = 0; t <= pos; t++) {
                        kv_load_v(kv, layer, seq, t, start, d, row);
                        for (uint32_t i = 0; i < d; i++)
                                acc[i] += scores[t] / sum * row[i];
                }
                for (uint32_t i = 0; i < d; i++)
                        out[h * d + i] = (float)acc[i];
        }
        free(scores);
        free(row);
}

/* Tolerance per KV type, of max |V| (1): the GPU stores the same F16 / Q8_0 values as kv.c
 * (same roundings), so what is left is float sums and expf against a double reference. */
static double attention_tolerance(enum rig_type kv_type)
{
        switch (kv_type) {
        case RIG_TYPE_F16:
                return 2e-6;
        case RIG_TYPE_Q8_0:
                return 2e-6;
        default:
                return 2e-6;
        }
}

/* n_seq sequences of n_pos positions each, chunk positions of every sequence per step (one
 * batch of n_seq * chunk tokens: a prompt's tokens attend to the earlier ones of the same step,
 * never to another sequence's). */
static void test_attention(enum rig_type kv_type, uint32_t n_head, uint32_t n_head_kv, uint32_t head_dim, uint32_t n_pos,
                           uint32_t n_seq, uint32_t chunk)
{
        struct spec s = default_spec;
        s.n_head = n_head;
        s.n_head_kv = n_head_kv;
        s.head_dim = head_dim;
        s.n_layer = 2;
        struct rig_model *m = model_from_spec(&s);
        struct rig_backend *b = backend_for_seqs(m, n_pos, n_seq, kv_type);
        struct rig_kv kv;
        uint32_t q_dim = n_head * head_dim, kv_dim = n_head_kv * head_dim, layer = 1, rows = n_seq * chunk;
        if (!b || rows > TEST_BATCH || kv_init(&kv, kv_type, 2, n_seq, n_pos, kv_dim) < 0) {
                if (b)
                        b->ops->free(b);
                model_spec_free(m);
                return;
        }
        float *dq = b->ops->alloc(b, rows * q_dim), *dk = b->ops->alloc(b, rows * kv_dim);
        float *dv = b->ops->alloc(b, rows * kv_dim), *dout = b->ops->alloc(b, rows * q_dim);
        float *got = malloc(rows * q_dim * sizeof(float)), *want = malloc(q_dim * sizeof(float));
        double err = dq && dk && dv && dout ? 0.0 : NAN;
        for (uint32_t first = 0; first < n_pos && err == err; first += chunk) {
                struct test_batch tb = { .b.n = 0 };
                for (uint32_t j = 0; j < n_seq; j++)
                        for (uint32_t pos = first; pos < first + chunk && pos < n_pos; pos++)
                                test_batch_add(&tb, 0, pos, j);
                uint32_t n = tb.b.n;
                float *q = random_floats(n * q_dim), *k = random_floats(n * kv_dim), *v = random_floats(n * kv_dim);
                for (uint32_t i = 0; i < n * q_dim; i++)
                        q[i] *= 4.0f;   /* peaked softmax: the running max matters */
                gpu_backend_write(b, dq, q, n * q_dim * sizeof(float));
                gpu_backend_write(b, dk, k, n * kv_dim * sizeof(float));
                gpu_backend_write(b, dv, v, n * kv_dim * sizeof(float));
                b->ops->begin_batch(b, &tb.b);
                b->ops->attention(b, layer, dq, dk, dv, dout);
                b->ops->end_batch(b);
                b->ops->read(b, got, dout, n * q_dim);
                for (uint32_t i = 0; i < n; i++)
                        kv_store(&kv, layer, tb.seq[i], tb.pos[i], k + i * kv_dim, v + i * kv_dim);
                for (uint32_t i = 0; i < n; i++) {
                        attention_reference(&kv, layer, tb.seq[i], tb.pos[i], q + i * q_dim, want, n_head, n_head_kv,
                                            head_dim);
                        double e = max_abs_diff(got + i * q_dim, want, q_dim);
                        if (!(e <= err))
                                err = e;
                }
                free(q);
                free(k);
                free(v);
        }
        char shape[80];
        const char *kv_name = kv_type == RIG_TYPE_F32 ? "f32" : kv_type == RIG_TYPE_F16 ? "f16" : "q8_0";
        snprintf(shape, sizeof(shape), "kv %s %u/%u heads of %u, pos 0..%u", kv_name, n_head, n_head_kv, head_dim,
                 n_pos - 1);
        if (rows > 1)
                snprintf(shape + strlen(shape), sizeof(shape) - strlen(shape), " %ux%u/step", n_seq, chunk);
        report(b, "attention", shape, err, attention_tolerance(kv_type));
        free(got);
        free(want);
        kv_free(&kv);
        b->ops->free(b);
        model_spec_free(m);
}

static void test_attention_all(void)
{
        static const enum rig_type kv_types[] = { RIG_TYPE_F32, RIG_TYPE_F16, RIG_TYPE_Q8_0 };
        for (size_t i = 0; i < sizeof(kv_types) / sizeof(kv_types[0]); i++) {
                test_attention(kv_types[i], 1, 1, 64, 1, 1, 1);
                test_attention(kv_types[i], 8, 2, 128, 70, 1, 1);       /* groups of 4; more positions than warps */
                test_attention(kv_types[i], 7, 7, 64, 5, 1, 1);
                test_attention(kv_types[i], 4, 1, 256, 300, 1, 1);
                if (kv_types[i] != RIG_TYPE_Q8_0)
                        test_attention(kv_types[i], 3, 1, 80, 33, 1, 1);        /* head not a multiple of the warp */
                test_attention(kv_types[i], 8, 2, 128, 70, 1, 16);      /* a prompt, 16 tokens a step */
                test_attention(kv_types[i], 8, 2, 128, 40, 3, 1);       /* batched decode of 3 sequences */
                test_attention(kv_types[i], 4, 1, 64, 21, 2, 8);        /* 2 prompts at once, a partial last step */
                /* caches longer than a slice of positions (128): decode takes the slices side by
                 * side, then merges them; a prompt of 64 a step over 2 sequences too */
                test_attention(kv_types[i], 8, 2, 128, 700, 1, 1);
                test_attention(kv_types[i], 4, 2, 64, 600, 2, 30);
                test_attention(kv_types[i], 6, 2, 64, 300, 1, 1);       /* groups of 3: a head a block */
        }
}

/* ---- swiglu, add_rmsnorm ---- */

static void test_swiglu(struct rig_backend *b, uint32_t n)
{
        float *gate = random_floats(n), *up = random_floats(n), *got = malloc(n * sizeof(float));
        for (uint32_t i = 0; i < n; i++)
                gate[i] *= 20.0f;       /* both tails of silu */
        float *dg = upload(b, gate, n * sizeof(float)), *du = upload(b, up, n * sizeof(float)), *dout = b->ops->alloc(b, n);
        double err = NAN;
        if (dg && du && dout) {
                b->ops->swiglu(b, dout, dg, du, n);
                b->ops->read(b, got, dout, n);
                err = 0;
                for (uint32_t i = 0; i < n; i++) {
                        double want = gate[i] / (1.0 + exp(-(double)gate[i])) * up[i];
                        double e = fabs(got[i] - want) / (fabs(want) > 1e-3 ? fabs(want) : 1e-3);
                        if (!(e <= err))
                                err = e;
                }
        }
        char shape[32];
        snprintf(shape, sizeof(shape), "n %u", n);
        report(b, "swiglu", shape, err, 1e-6);      /* relative: expf and the division, a few ulps */
        free(gate);
        free(up);
        free(got);
}

/* x += y exactly (one rounding), then the norm of the new x as test_rmsnorm's reference. */
static void test_add_rmsnorm(struct rig_backend *b, uint32_t n, uint32_t rows)
{
        size_t total = (size_t)n * rows;
        float *x = random_floats(total), *y = random_floats(total), *w = random_floats(n);
        float *got_x = malloc(total * sizeof(float)), *got = malloc(total * sizeof(float));
        float *dx = upload(b, x, total * sizeof(float)), *dy = upload(b, y, total * sizeof(float));
        float *dw = upload(b, w, n * sizeof(float)), *dout = b->ops->alloc(b, total);
        double err_x = NAN, err = NAN;
        if (dx && dy && dw && dout) {
                b->ops->add_rmsnorm(b, dx, dy, dout, dw, n, rows);
                b->ops->read(b, got_x, dx, total);
                b->ops->read(b, got, dout, total);
                for (size_t i = 0; i < total; i++)
                        x[i] += y[i];
                err_x = max_abs_diff(got_x, x, total);
                err = rmsnorm_error(x, w, n, rows, b->model->cfg.rms_eps, got);
        }
        char shape[32];
        snprintf(shape, sizeof(shape), "n %u x%u", n, rows);
        report(b, "add (x)", shape, err_x, 0.0);        /* one rounding, exact */
        report(b, "add_rmsnorm", shape, err, 2.4e-7);
        free(x);
        free(y);
        free(w);
        free(got_x);
        free(got);
}

/* ---- top_k: exactly the host's rig_penalize and rig_top_k ---- */

/* The best k of a row of n with few distinct values (ties everywhere: the order among equals is
 * by id), after penalizing n_ids ids (some outside the row: skipped); or, where the kernels do
 * not take that many, -ENOTSUP (the session then reads the row). */
static void test_top_k(struct rig_backend *b, uint32_t n, uint32_t k, uint32_t n_ids, bool is_taken)
{
        float *x = random_floats(n);
        for (uint32_t i = 0; i < n; i++)
                x[i] = roundf(x[i] * 16.0f) / 16.0f;
        int32_t *ids = malloc((n_ids + 1) * sizeof(*ids));
        for (uint32_t i = 0; i < n_ids; i++)
                ids[i] = i % 7 == 6 ? (int32_t)(n + i) : (int32_t)((i * 2654435761u) % n);
        struct rig_candidate *got = calloc(k, sizeof(*got)), *want = calloc(k, sizeof(*want));
        float *dx = upload(b, x, (size_t)n * sizeof(float));
        double err = NAN;
        if (dx) {
                int r = b->ops->top_k(b, dx, n, k, ids, n_ids, 1.3f, got);
                rig_penalize(x, n, ids, n_ids, 1.3f);
                rig_top_k(x, n, k, want);
                if (r == (is_taken ? 0 : -ENOTSUP))
                        err = 0;
                for (uint32_t i = 0; is_taken && r == 0 && i < k; i++)
                        if (got[i].id != want[i].id || got[i].logit != want[i].logit)
                                err += 1;       /* candidates out of place */
        }
        char shape[64];
        snprintf(shape, sizeof(shape), "best %u of %u, %u penalized%s", k, n, n_ids, is_taken ? "" : ": refused");
        report(b, "top_k", shape, err, 0.0);
        free(x);
        free(ids);
        free(got);
        free(want);
}

static void test_top_k_all(struct rig_backend *b)
{
        test_top_k(b, 128256, 1, 0, true);      /* greedy over llama3's vocabulary */
        test_top_k(b, 128256, 40, 64, true);    /* the default chain's 40, its window of 64 */
        test_top_k(b, 128256, 128, 10, true);   /* the most a 128k row gives: 32 slices x 128 */
        test_top_k(b, 151936, 100, 5, true);    /* qwen2's vocabulary, a partial last slice */
        test_top_k(b, 1000, 40, 3, true);
        test_top_k(b, 5, 5, 1, true);
        test_top_k(b, 4096, 4096, 0, true);     /* one slice, all of it */
        test_top_k(b, 128256, 129, 0, false);
        test_top_k(b, 1000, 40, 300, false);    /* a window longer than the kernels take */
}

/* The ops on rows: norms, swiglu, the residual add, the best of a row. */
static void test_elementwise_all(void)
{
        struct rig_model *m = model_from_spec(&default_spec);
        struct rig_backend *b = backend_for(m, 16, RIG_TYPE_F32);
        if (!b) {
                model_spec_free(m);
                return;
        }
        static const uint32_t norm_sizes[] = { 1, 7, 4096, 5120, 8191 };
        for (size_t i = 0; i < sizeof(norm_sizes) / sizeof(norm_sizes[0]); i++)
                test_rmsnorm(b, norm_sizes[i], 1);
        test_rmsnorm(b, 4096, 5);
        test_rmsnorm(b, 7, 3);
        test_rmsnorm(b, 4096, 200);     /* more rows than multiprocessors: a block a row */
        test_rmsnorm(b, 16416, 2);      /* wider than any model's embedding so far */
        static const uint32_t sizes[] = { 1, 7, 4097, 14336, 16416 };
        for (size_t i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++) {
                test_swiglu(b, sizes[i]);
                test_add_rmsnorm(b, sizes[i], 1);
        }
        test_add_rmsnorm(b, 4096, 7);
        test_top_k_all(b);
        b->ops->free(b);
        model_spec_free(m);
}


/* ---- backend errors ---- */

/* A model or KV type the GPU does not take is refused with -EINVAL and a sentence. */
static void test_refused(const struct spec *s, enum rig_type kv_type, const char *what)
{
        struct rig_model *m = model_from_spec(s);
        struct rig_backend *b = NULL;
        char err[256] = "";
        int r = gpu_backend_new(m, 16, 1, kv_type, 0, &b, err, sizeof(err));
        bool ok = r == -EINVAL && err[0];
        printf("%-4s %-12s %-36s %s\n", ok ? "ok" : "FAIL", "new", what, err);
        if (ok)
                n_passed++;
        else
                n_failed++;
        if (r == 0)
                b->ops->free(b);
        model_spec_free(m);
}

int main(void)
{
        if (gpu_device_count() == 0) {
                printf("skipped: no GPU\n");
                return 0;
        }
        test_matmul_all();
        test_embed_all();
        test_elementwise_all();
        test_rope(RIG_ROPE_NORMAL, false, 128, 32);
        test_rope(RIG_ROPE_NEOX, false, 128, 7);
        test_rope(RIG_ROPE_NORMAL, true, 64, 1);
        test_rope(RIG_ROPE_NEOX, true, 128, 8);
        test_attention_all();
        test_refused(&default_spec, RIG_TYPE_Q4_K, "kv q4_K refused");
        printf("%d passed, %d failed\n", n_passed, n_failed);
        return n_failed ? 1 : 0;
}
