/* layout.cu — GGUF rows to the device layout of layout.h (host code, run once at upload). */
#include <string.h>

#include "layout.h"
#include "rig_assert.h"

/* Where the f16 scale sits in a block of a split type, and the block's size; 0 for the types
 * kept as they are. */
struct split_rule {
        enum rig_type type;
        size_t block_bytes, d_offset;
};

static const struct split_rule split_rules[] = {
        { RIG_TYPE_Q8_0, sizeof(struct block_q8_0), 0 },
        { RIG_TYPE_Q4_0, sizeof(struct block_q4_0), 0 },
        { RIG_TYPE_Q6_K, sizeof(struct block_q6_K), offsetof(struct block_q6_K, d) },
};

static const struct split_rule *split_rule_of(enum rig_type type)
{
        for (size_t i = 0; i < sizeof(split_rules) / sizeof(split_rules[0]); i++)
                if (split_rules[i].type == type)
                        return &split_rules[i];
        return NULL;
}

static size_t round_up_16(size_t n)
{
        return (n + 15) / 16 * 16;
}

size_t gpu_row_stride(enum rig_type type, uint32_t n)
{
        return round_up_16(rig_row_bytes(type, n));
}

/* One row: payloads (the block without its 2 scale bytes) first, then the scales. */
static void split_row(const struct split_rule *s, size_t nb, const uint8_t *src, uint8_t *dst)
{
        size_t payload = s->block_bytes - 2;
        uint8_t *scales = dst + nb * payload;
        for (size_t b = 0; b < nb; b++) {
                const uint8_t *blk = src + b * s->block_bytes;
                memcpy(dst + b * payload, blk, s->d_offset);
                memcpy(dst + b * payload + s->d_offset, blk + s->d_offset + 2, payload - s->d_offset);
                memcpy(scales + 2 * b, blk + s->d_offset, 2);
        }
}

void gpu_layout_rows(enum rig_type type, uint32_t n, size_t n_rows, const void *src, size_t row_bytes, void *dst)
{
        const struct rig_type_info *t = rig_type_get(type);
        RIG_ASSERT(t && n % t->block_elems == 0 && row_bytes >= rig_row_bytes(type, n), "layout of %u-element rows of type %d",
                   n, (int)type);
        size_t stride = gpu_row_stride(type, n), bytes = rig_row_bytes(type, n);
        const struct split_rule *s = split_rule_of(type);
        for (size_t r = 0; r < n_rows; r++) {
                const uint8_t *in = (const uint8_t *)src + r * row_bytes;
                uint8_t *out = (uint8_t *)dst + r * stride;
                if (s)
                        split_row(s, n / t->block_elems, in, out);
                else
                        memcpy(out, in, bytes);
                memset(out + bytes, 0, stride - bytes);
        }
}
