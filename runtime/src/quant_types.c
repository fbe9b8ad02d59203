/* quant_types.c — the table of weight types rig knows: ids as stored in GGUF tensor infos and
 * their block layouts. Kept apart from quant.c so the GGUF reader links without the kernels. */
#include <stdint.h>

#include "quant.h"

static const struct rig_type_info types[] = {
        [RIG_TYPE_F32] = { "F32", 1, 4, true },
        [RIG_TYPE_F16] = { "F16", 1, 2, true },
        [RIG_TYPE_Q4_0] = { "Q4_0", QK4_0, sizeof(struct block_q4_0), true },
        [RIG_TYPE_Q8_0] = { "Q8_0", QK8_0, sizeof(struct block_q8_0), true },
        [RIG_TYPE_Q4_K] = { "Q4_K", QK_K, sizeof(struct block_q4_K), true },
        [RIG_TYPE_Q5_K] = { "Q5_K", QK_K, sizeof(struct block_q5_K), true },
        [RIG_TYPE_Q6_K] = { "Q6_K", QK_K, sizeof(struct block_q6_K), true },
        [RIG_TYPE_Q8_K] = { "Q8_K", QK_K, sizeof(struct block_q8_K), false },
        [RIG_TYPE_BF16] = { "BF16", 1, 2, true },
};

const struct rig_type_info *rig_type_get(uint32_t type)
{
        if (type >= sizeof(types) / sizeof(types[0]) || !types[type].name)
                return NULL;
        return &types[type];
}

size_t rig_row_bytes(enum rig_type type, size_t n)
{
        const struct rig_type_info *t = rig_type_get(type);
        if (!t || n % t->block_elems != 0)
                return 0;
        size_t blocks = n / t->block_elems;
        if (blocks > SIZE_MAX / t->block_bytes)
                return 0;       /* callers treat 0 as "no such row"; a wrapped size would be worse */
        return blocks * t->block_bytes;
}
