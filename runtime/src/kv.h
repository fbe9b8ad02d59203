/* kv.h — the attention key/value cache: per layer and sequence, one row of n_head_kv × head_dim
 * values per position, stored as F32, F16 or Q8_0 (rig logits uses F32; run/serve default to
 * F16). Sequences (batched decode, a server's parallel slots) each have n_ctx positions. */
#pragma once

#include <stddef.h>
#include <stdint.h>

#include "quant.h"

struct rig_kv {
        enum rig_type type;
        uint32_t n_layer, n_seq, n_ctx, kv_dim;
        size_t row_bytes;
        uint8_t *k, *v;                 /* [n_layer][n_seq][n_ctx][row_bytes] */
};

/* -EINVAL for a type that cannot hold a row of kv_dim (Q8_0 needs a multiple of 32), or no
 * sequences or positions. */
int kv_init(struct rig_kv *kv, enum rig_type type, uint32_t n_layer, uint32_t n_seq, uint32_t n_ctx, uint32_t kv_dim);
void kv_free(struct rig_kv *kv);
/* Bytes of a cache of n_pos positions (over all sequences). */
size_t kv_bytes(enum rig_type type, uint32_t n_layer, size_t n_pos, uint32_t kv_dim);
/* The row of (layer, seq, pos) counted from k or v. */
size_t kv_row_index(const struct rig_kv *kv, uint32_t layer, uint32_t seq, uint32_t pos);

void kv_store(struct rig_kv *kv, uint32_t layer, uint32_t seq, uint32_t pos, const float *k, const float *v);
/* Elements [start, start + n) of position pos's row, as float. start and n are multiples of the
 * type's block (32 for Q8_0): one KV head's slice, head_dim wide. */
void kv_load_k(const struct rig_kv *kv, uint32_t layer, uint32_t seq, uint32_t pos, uint32_t start, uint32_t n,
               float *out);
void kv_load_v(const struct rig_kv *kv, uint32_t layer, uint32_t seq, uint32_t pos, uint32_t start, uint32_t n,
               float *out);

/* "f32", "f16", "q8_0" → type; -EINVAL otherwise. */
int kv_type_from_name(const char *name, enum rig_type *out);
