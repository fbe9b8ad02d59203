/* layout.cu — GGUF rows to the device layout of layout.h (host code, run once at upload). */
#include <string.h>

#include "layout.h"
#include "rig_assert.h"

enum gpu_act_order gpu_act_order_of(enum rig_type type)
{
        switch (type) {
        case RIG_TYPE_Q8_0:
        case RIG_TYPE_Q4_0:
                return GPU_ACT_CHUNK32;
        case RIG_TYPE_Q4_K:
        case RIG_TYPE_Q5_K:
                return GPU_ACT_CHUNK64;
        case RIG_TYPE_Q6_K:
                return GPU_ACT_Q6_K;
        default:
                return GPU_ACT_NONE;
        }
}

size_t gpu_row_stride(enum rig_type type, uint32_t n)
{
        return (rig_row_bytes(type, n) + 15) / 16 * 16;
}

/* The 16 bytes at src as piece `piece` of chunk c. */
static void put_piece(uint8_t *row, uint32_t c, uint32_t piece, uint32_t pieces, uint32_t n_chunks, const uint8_t *src)
{
        memcpy(row + piece_offset(place_of(c, n_chunks), piece, pieces), src, GPU_PIECE_BYTES);
}

static void layout_q8_0(const struct block_q8_0 *b, size_t nb, uint8_t *out)
{
        for (size_t i = 0; i < nb; i++) {
                put_piece(out, i, 0, 2, nb, (const uint8_t *)b[i].qs);
                put_piece(out, i, 1, 2, nb, (const uint8_t *)b[i].qs + 16);
                memcpy(out + nb * 32 + 2 * i, &b[i].d, 2);
        }
}

static void layout_q4_0(const struct block_q4_0 *b, size_t nb, uint8_t *out)
{
        for (size_t i = 0; i < nb; i++) {
                put_piece(out, i, 0, 1, nb, b[i].qs);
                memcpy(out + nb * 16 + 2 * i, &b[i].d, 2);
        }
}

/* The d, dmin and scales of a Q4_K or Q5_K block: its first 16 bytes. */
static void put_k45_header(uint8_t *out, size_t nb, size_t i, const void *block)
{
        memcpy(out + nb * 128 + 16 * i, block, 16);
}

static void layout_q4_K(const struct block_q4_K *b, size_t nb, uint8_t *out)
{
        size_t n_chunks = nb * 4;
        for (size_t i = 0; i < nb; i++) {
                for (int k = 0; k < 4; k++) {
                        put_piece(out, 4 * i + k, 0, 2, n_chunks, b[i].qs + 32 * k);
                        put_piece(out, 4 * i + k, 1, 2, n_chunks, b[i].qs + 32 * k + 16);
                }
                put_k45_header(out, nb, i, &b[i]);
        }
}

/* Fifth bits of sub-block j (elements l = 0..31: bit j of qh[l]) as a plane: bit 8 * (l % 4) +
 * l / 4 holds element l's. */
static uint32_t q5_plane(const uint8_t *qh, int j)
{
        uint32_t plane = 0;
        for (int l = 0; l < 32; l++)
                plane |= (uint32_t)((qh[l] >> j) & 1) << (8 * (l % 4) + l / 4);
        return plane;
}

static void layout_q5_K(const struct block_q5_K *b, size_t nb, uint8_t *out)
{
        size_t n_chunks = nb * 4;
        uint8_t *planes = out + nb * 144;
        for (size_t i = 0; i < nb; i++) {
                for (int k = 0; k < 4; k++) {
                        size_t c = 4 * i + k;
                        put_piece(out, c, 0, 2, n_chunks, b[i].qs + 32 * k);
                        put_piece(out, c, 1, 2, n_chunks, b[i].qs + 32 * k + 16);
                        uint32_t lo = q5_plane(b[i].qh, 2 * k), hi = q5_plane(b[i].qh, 2 * k + 1);
                        memcpy(planes + 8 * c, &lo, 4);
                        memcpy(planes + 8 * c + 4, &hi, 4);
                }
                put_k45_header(out, nb, i, &b[i]);
        }
}

static void layout_q6_K(const struct block_q6_K *b, size_t nb, uint8_t *out)
{
        size_t n_chunks = nb * 4;
        int8_t *scales = (int8_t *)(out + nb * 192);
        for (size_t i = 0; i < nb; i++) {
                for (int h = 0; h < 2; h++) {
                        for (int o = 0; o < 2; o++) {
                                size_t c = 4 * i + 2 * h + o;
                                put_piece(out, c, 0, 3, n_chunks, b[i].ql + 64 * h + 16 * o);
                                put_piece(out, c, 1, 3, n_chunks, b[i].ql + 64 * h + 32 + 16 * o);
                                put_piece(out, c, 2, 3, n_chunks, b[i].qh + 32 * h + 16 * o);
                                for (int r = 0; r < 4; r++)
                                        scales[4 * c + r] = b[i].scales[8 * h + 2 * r + o];
                        }
                }
                memcpy(out + nb * 208 + 2 * i, &b[i].d, 2);
        }
}

static void layout_row(enum rig_type type, size_t n, const void *src, uint8_t *dst)
{
        switch (type) {
        case RIG_TYPE_Q8_0:
                layout_q8_0((const struct block_q8_0 *)src, n / QK8_0, dst);
                return;
        case RIG_TYPE_Q4_0:
                layout_q4_0((const struct block_q4_0 *)src, n / QK4_0, dst);
                return;
        case RIG_TYPE_Q4_K:
                layout_q4_K((const struct block_q4_K *)src, n / QK_K, dst);
                return;
        case RIG_TYPE_Q5_K:
                layout_q5_K((const struct block_q5_K *)src, n / QK_K, dst);
                return;
        case RIG_TYPE_Q6_K:
                layout_q6_K((const struct block_q6_K *)src, n / QK_K, dst);
                return;
        default:
                memcpy(dst, src, rig_row_bytes(type, n));     /* the float types keep theirs */
                return;
        }
}

void gpu_layout_rows(enum rig_type type, uint32_t n, size_t n_rows, const void *src, size_t row_bytes, void *dst)
{
        const struct rig_type_info *t = rig_type_get(type);
        RIG_ASSERT(t && n % t->block_elems == 0 && row_bytes >= rig_row_bytes(type, n), "layout of %u-element rows of type %d",
                   n, (int)type);
        size_t stride = gpu_row_stride(type, n), bytes = rig_row_bytes(type, n);
        for (size_t r = 0; r < n_rows; r++) {
                uint8_t *out = (uint8_t *)dst + r * stride;
                layout_row(type, n, (const uint8_t *)src + r * row_bytes, out);
                memset(out + bytes, 0, stride - bytes);
        }
}
