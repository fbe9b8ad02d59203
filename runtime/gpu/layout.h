/* layout.h — how weight rows lie in device memory. Q4_K and Q5_K blocks (144 and 176 bytes) and
 * the float types keep the GGUF layout: every block starts 16-byte aligned, so a lane reads its
 * bytes with 16-byte loads. Q8_0, Q4_0 and Q6_K blocks (34, 18 and 210 bytes) are only 2-byte
 * aligned in a GGUF row; on the device each row is split into its blocks' payloads (all bytes
 * but the f16 scale d: 32, 16 and 208 bytes, multiples of 16), one after another, then the nb
 * scales d as an f16 array:
 *
 *     row = payload[0] payload[1] ... payload[nb-1] d[0] d[1] ... d[nb-1]
 *
 * Rows are padded to a multiple of 16 bytes (struct rig_weight's row_bytes on the device is that
 * stride). The decoders in dequant.cuh and dot_int8.cuh read this layout. */
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

/* Bytes from one device row to the next for rows of n elements of type. */
size_t gpu_row_stride(enum rig_type type, uint32_t n);

/* n_rows rows of n elements, GGUF layout at src (row_bytes apart), into device layout at dst
 * (host memory, gpu_row_stride apart; padding zeroed). */
void gpu_layout_rows(enum rig_type type, uint32_t n, size_t n_rows, const void *src, size_t row_bytes, void *dst);

#ifdef __cplusplus
}
#endif
