/* quant.h — the weight types of GGUF files: ids, block layouts (bit-exact with the GGUF/ggml
 * format), and the conversions between them and float. Shared by the CPU backend, the GPU
 * kernels (later) and rig synth. */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Type ids as stored in GGUF tensor infos (ggml_type). Only these are supported; others are
 * recognised by name so errors can say what a file holds. */
enum rig_type {
        RIG_TYPE_F32 = 0,
        RIG_TYPE_F16 = 1,
        RIG_TYPE_Q4_0 = 2,
        RIG_TYPE_Q8_0 = 8,
        RIG_TYPE_Q4_K = 12,
        RIG_TYPE_Q5_K = 13,
        RIG_TYPE_Q6_K = 14,
        RIG_TYPE_Q8_K = 15,     /* activations only: the partner of the K types in dot products */
        RIG_TYPE_BF16 = 30,
};

#define QK4_0 32
#define QK8_0 32
#define QK_K 256
#define K_SCALE_SIZE 12

/* Half-precision values are stored as raw bits. */
typedef uint16_t rig_half;

struct block_q4_0 {
        rig_half d;                     /* scale */
        uint8_t qs[QK4_0 / 2];          /* nibbles: low = element j, high = element j + 16 */
};

struct block_q8_0 {
        rig_half d;
        int8_t qs[QK8_0];
};

struct block_q4_K {
        rig_half d;                     /* super-block scale for the 6-bit scales */
        rig_half dmin;                  /* super-block scale for the 6-bit mins */
        uint8_t scales[K_SCALE_SIZE];   /* 8 scales + 8 mins, 6 bits each, packed */
        uint8_t qs[QK_K / 2];
};

struct block_q5_K {
        rig_half d;
        rig_half dmin;
        uint8_t scales[K_SCALE_SIZE];
        uint8_t qh[QK_K / 8];           /* 5th bit of each element */
        uint8_t qs[QK_K / 2];
};

struct block_q6_K {
        uint8_t ql[QK_K / 2];           /* low 4 bits */
        uint8_t qh[QK_K / 4];           /* high 2 bits */
        int8_t scales[QK_K / 16];       /* 8-bit scales of 16-element groups */
        rig_half d;
};

/* Activations for the K types: never stored in files, so the layout is rig's own (not ggml's
 * one-scale-per-256 block). Element e of sub-block j (32 elements, the K types' sub-block) is
 * d * m[j] * qs[e]: one float scale per block times an integer multiplier per sub-block. The
 * multiplier keeps 8-bit activation error at the level of a float scale per 32 (Q8_0's), and
 * being an integer it folds into the weights' integer sub-block scales, so a whole block of
 * products accumulates in int32 and meets a float once. 320 bytes = 5 cache lines, qs first:
 * in a 64-byte-aligned row every 32-byte load of qs stays inside one line. */
#define Q8_K_MAX_MULT 64
struct block_q8_K {
        int8_t qs[QK_K];                /* -127..127 */
        int16_t bsums[QK_K / 16];       /* sums of groups of 16 qs (without m), for the K types' mins */
        int16_t m[QK_K / 32];           /* multiplier of sub-block j, 1..Q8_K_MAX_MULT */
        float d;                        /* block scale */
        uint8_t pad[12];
};

_Static_assert(sizeof(struct block_q4_0) == 18, "q4_0 layout");
_Static_assert(sizeof(struct block_q8_0) == 34, "q8_0 layout");
_Static_assert(sizeof(struct block_q4_K) == 144, "q4_K layout");
_Static_assert(sizeof(struct block_q5_K) == 176, "q5_K layout");
_Static_assert(sizeof(struct block_q6_K) == 210, "q6_K layout");
_Static_assert(sizeof(struct block_q8_K) == 320, "q8_K layout");

struct rig_type_info {
        const char *name;               /* "Q4_K" */
        size_t block_elems;             /* elements per block (1 for float types) */
        size_t block_bytes;
        bool is_weight;                 /* may appear as a model weight we can run */
};

/* NULL for an id we do not know or support. */
const struct rig_type_info *rig_type_get(uint32_t type);

/* Bytes of a row of n elements; 0 if n is not a multiple of the block size. */
size_t rig_row_bytes(enum rig_type type, size_t n);

float rig_half_to_float(rig_half h);
rig_half rig_float_to_half(float f);
float rig_bf16_to_float(uint16_t h);
uint16_t rig_float_to_bf16(float f);

/* One row of n elements (n a multiple of the block size) to float. */
void rig_dequantize_row(enum rig_type type, const void *src, float *dst, size_t n);

/* One row of float to the type (for rig synth and for activations: Q8_0, Q8_K). Reference
 * quality: nearest values, like the format's own reference quantizers. */
void rig_quantize_row(enum rig_type type, const float *src, void *dst, size_t n);

/* Dot products of a weight row with an activation row already converted to
 * rig_vec_dot_type(weight type): the fused inner loop of matrix-vector products. */
enum rig_type rig_vec_dot_type(enum rig_type weight_type);
float rig_vec_dot(enum rig_type weight_type, const void *w, const void *x, size_t n);
