/* layout.h — how the rows of quantized weights lie in device memory for the matrix-vector
 * kernels (matvec.cu, dot_int8.cuh), and how the 8-bit activations they read are ordered.
 *
 * Why: a lane of a warp takes one chunk of a row per step (dot_int8.cuh), and a load
 * instruction is fastest when the 32 lanes' addresses form one contiguous range (4 cache-line
 * wavefronts for 512 bytes; lanes 32 or 64 bytes apart need 8 or 16). In the GGUF layout a
 * chunk's bytes are contiguous, so lane l's bytes sit a chunk apart from lane l+1's. On the
 * device each row is reordered once, at upload, so that the k-th 16-byte piece of the 32 chunks
 * of a group lie side by side:
 *
 *     row = group 0 | group 1 | ... | side arrays
 *     group g = piece 0 of chunks 32g .. 32g+m-1 | piece 1 of them | ... (m = 32, fewer in the
 *               last group), 16 bytes each
 *
 * and the per-chunk or per-block scales that do not fill 16 bytes go to side arrays after the
 * pieces (one entry per chunk or block, side by side too). Chunks per type (elements of a row):
 *   Q8_0  32 elements: 2 pieces (the 32 levels);         side: d[block] f16
 *   Q4_0  32 elements: 1 piece (the 16 nibble bytes);    side: d[block] f16
 *   Q4_K  64 elements, sub-blocks 2k and 2k+1 of a block: 2 pieces (qs[32k .. 32k+31]);
 *                                                        side: header[block] (d, dmin, scales: 16 bytes)
 *   Q5_K  as Q4_K;                                       side: header[block], and per chunk the
 *         fifth bits of its 64 levels as two 32-bit planes (low nibbles' then high nibbles'):
 *         bit 8j + i of a plane is the bit of element 4i + j of that sub-block, so word i of
 *         four levels takes it with one shift and mask
 *   Q6_K  64 elements: of half h (128 elements) of a block, l = 16o .. 16o+15 of its four runs
 *         r (elements 128h + 32r + l); 3 pieces (ql[64h + 16o ..], ql[64h + 32 + 16o ..],
 *         qh[32h + 16o ..]);                             side: the 4 run scales per chunk
 *         (int8), d[block] f16
 *
 * The activations of a product (struct gpu_act) are reordered the same way: chunk c's levels
 * (in the order its decoder takes them: natural, except Q6_K's four runs one after another) in
 * 16-byte pieces, grouped by 32 chunks. So they depend on the chunk shape (enum gpu_act_order);
 * their scales ds stay in element order, one per 32 elements.
 *
 * The float types and the embedding keep the GGUF layout. */
#pragma once

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
#include "vendor.h"             /* librig's C headers, through its C++ shim */
#else
#include "quant.h"
#endif

#ifdef __cplusplus
extern "C" {
#endif

/* Chunks of a row lie in groups of this many; a piece is 16 bytes. */
#define GPU_GROUP_CHUNKS 32
#define GPU_PIECE_BYTES 16

/* How the 8-bit activations of a product are ordered (see above). */
enum gpu_act_order {
        GPU_ACT_NONE,           /* float activations (the float types) */
        GPU_ACT_CHUNK32,        /* Q8_0, Q4_0 */
        GPU_ACT_CHUNK64,        /* Q4_K, Q5_K */
        GPU_ACT_Q6_K,
};

enum gpu_act_order gpu_act_order_of(enum rig_type type);

/* Bytes from one device row to the next for rows of n elements of type (a multiple of 16). */
size_t gpu_row_stride(enum rig_type type, uint32_t n);

/* n_rows rows of n elements, GGUF layout at src (row_bytes apart), into device layout at dst
 * (host memory, gpu_row_stride apart; padding zeroed). */
void gpu_layout_rows(enum rig_type type, uint32_t n, size_t n_rows, const void *src, size_t row_bytes, void *dst);

#ifdef __cplusplus
}

/* Where chunk c of a row (or an activation vector) of n_chunks chunks lies: piece p of P
 * pieces per chunk is at group * 512 * P + p * m16 + l16 (piece_offset). One definition for
 * the host that lays rows out and the kernels that read them. */
struct chunk_place {
        uint32_t group, l16, m16;
};

static __host__ __device__ __forceinline__ chunk_place place_of(uint32_t c, uint32_t n_chunks)
{
        chunk_place p;
        p.group = c / GPU_GROUP_CHUNKS;
        uint32_t left = n_chunks - p.group * GPU_GROUP_CHUNKS;
        p.l16 = (c % GPU_GROUP_CHUNKS) * GPU_PIECE_BYTES;
        p.m16 = (left < GPU_GROUP_CHUNKS ? left : GPU_GROUP_CHUNKS) * GPU_PIECE_BYTES;
        return p;
}

static __host__ __device__ __forceinline__ size_t piece_offset(const chunk_place &at, uint32_t p, uint32_t pieces)
{
        return (size_t)at.group * GPU_GROUP_CHUNKS * GPU_PIECE_BYTES * pieces + (size_t)p * at.m16 + at.l16;
}
#endif
