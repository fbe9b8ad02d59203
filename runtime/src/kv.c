/* kv.c — key/value cache storage and conversion. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "kv.h"

static size_t row_bytes(enum rig_type type, uint32_t kv_dim)
{
        if (type == RIG_TYPE_F32)
                return (size_t)kv_dim * sizeof(float);
        return rig_row_bytes(type, kv_dim);
}

size_t kv_bytes(enum rig_type type, uint32_t n_layer, size_t n_pos, uint32_t kv_dim)
{
        return 2 * (size_t)n_layer * n_pos * row_bytes(type, kv_dim);
}

int kv_init(struct rig_kv *kv, enum rig_type type, uint32_t n_layer, uint32_t n_seq, uint32_t n_ctx, uint32_t kv_dim)
{
        memset(kv, 0, sizeof(*kv));
        if (type != RIG_TYPE_F32 && type != RIG_TYPE_F16 && type != RIG_TYPE_Q8_0)
                return -EINVAL;
        if (n_seq == 0 || n_ctx == 0)
                return -EINVAL;
        size_t rb = row_bytes(type, kv_dim);
        if (rb == 0)
                return -EINVAL;
        kv->type = type;
        kv->n_layer = n_layer;
        kv->n_seq = n_seq;
        kv->n_ctx = n_ctx;
        kv->kv_dim = kv_dim;
        kv->row_bytes = rb;
        size_t half = (size_t)n_layer * n_seq * n_ctx * rb;
        kv->k = malloc(half);
        kv->v = malloc(half);
        if (!kv->k || !kv->v) {
                kv_free(kv);
                return -ENOMEM;
        }
        return 0;
}

void kv_free(struct rig_kv *kv)
{
        free(kv->k);
        free(kv->v);
        kv->k = kv->v = NULL;
}

size_t kv_row_index(const struct rig_kv *kv, uint32_t layer, uint32_t seq, uint32_t pos)
{
        return ((size_t)layer * kv->n_seq + seq) * kv->n_ctx + pos;
}

static uint8_t *row(uint8_t *base, const struct rig_kv *kv, uint32_t layer, uint32_t seq, uint32_t pos)
{
        return base + kv_row_index(kv, layer, seq, pos) * kv->row_bytes;
}

static void store_row(const struct rig_kv *kv, uint8_t *dst, const float *src)
{
        if (kv->type == RIG_TYPE_F32)
                memcpy(dst, src, kv->row_bytes);
        else
                rig_quantize_row(kv->type, src, dst, kv->kv_dim);
}

static void load_slice(const struct rig_kv *kv, const uint8_t *row_start, uint32_t start, uint32_t n, float *dst)
{
        if (kv->type == RIG_TYPE_F32) {
                memcpy(dst, (const float *)row_start + start, (size_t)n * sizeof(float));
                return;
        }
        rig_dequantize_row(kv->type, row_start + rig_row_bytes(kv->type, start), dst, n);
}

void kv_store(struct rig_kv *kv, uint32_t layer, uint32_t seq, uint32_t pos, const float *k, const float *v)
{
        store_row(kv, row(kv->k, kv, layer, seq, pos), k);
        store_row(kv, row(kv->v, kv, layer, seq, pos), v);
}

void kv_load_k(const struct rig_kv *kv, uint32_t layer, uint32_t seq, uint32_t pos, uint32_t start, uint32_t n,
               float *out)
{
        load_slice(kv, row(kv->k, kv, layer, seq, pos), start, n, out);
}

void kv_load_v(const struct rig_kv *kv, uint32_t layer, uint32_t seq, uint32_t pos, uint32_t start, uint32_t n,
               float *out)
{
        load_slice(kv, row(kv->v, kv, layer, seq, pos), start, n, out);
}

int kv_type_from_name(const char *name, enum rig_type *out)
{
        if (strcmp(name, "f32") == 0)
                *out = RIG_TYPE_F32;
        else if (strcmp(name, "f16") == 0)
                *out = RIG_TYPE_F16;
        else if (strcmp(name, "q8_0") == 0)
                *out = RIG_TYPE_Q8_0;
        else
                return -EINVAL;
        return 0;
}
