/* gguf.h — GGUF v2/v3 files: a reader over mmap that bounds-checks every offset, size, count,
 * string length and tensor extent before use, and a writer (for rig synth) that produces files
 * other GGUF readers load. Format: magic "GGUF", version, tensor count, metadata count, metadata
 * key/values, tensor infos, padding to general.alignment (default 32), tensor data. */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "quant.h"

enum gguf_type {
        GGUF_TYPE_UINT8 = 0,
        GGUF_TYPE_INT8 = 1,
        GGUF_TYPE_UINT16 = 2,
        GGUF_TYPE_INT16 = 3,
        GGUF_TYPE_UINT32 = 4,
        GGUF_TYPE_INT32 = 5,
        GGUF_TYPE_FLOAT32 = 6,
        GGUF_TYPE_BOOL = 7,
        GGUF_TYPE_STRING = 8,
        GGUF_TYPE_ARRAY = 9,
        GGUF_TYPE_UINT64 = 10,
        GGUF_TYPE_INT64 = 11,
        GGUF_TYPE_FLOAT64 = 12,
};

#define GGUF_DEFAULT_ALIGNMENT 32
#define GGUF_MAX_DIMS 4

/* A string inside the mapped file: not NUL-terminated. */
struct gguf_str {
        const char *ptr;
        size_t len;
};

struct gguf_kv {
        struct gguf_str key;
        enum gguf_type type;
        union {
                uint64_t u;             /* UINT8..UINT64 and BOOL */
                int64_t i;              /* INT8..INT64 */
                double f;               /* FLOAT32, FLOAT64 */
                struct gguf_str s;      /* STRING */
                struct {
                        enum gguf_type type;    /* element type (not ARRAY: nested arrays are refused) */
                        size_t n;
                        const void *data;       /* elements as stored (little endian), numeric types */
                        struct gguf_str *strs;  /* STRING elements, indexed (owned by the file) */
                } arr;
        } v;
};

struct gguf_tensor {
        struct gguf_str name;
        uint32_t n_dims;
        uint64_t ne[GGUF_MAX_DIMS];     /* ne[0] is the row length (contiguous); unused dims are 1 */
        enum rig_type type;
        uint64_t offset;                /* from the start of the data section */
        size_t size_bytes;
        const void *data;               /* inside the mapping */
};

struct gguf_file {
        uint32_t version;
        size_t n_kv;
        struct gguf_kv *kv;
        size_t n_tensors;
        struct gguf_tensor *tensors;
        size_t alignment;
        size_t data_offset;             /* start of the tensor data section */
        const uint8_t *base;            /* the whole file */
        size_t size;
        int fd;                         /* -1 when opened from memory */
        bool is_mapped;
};

/* Opens and validates a file. On failure returns a negative errno and writes a message that
 * names the file, what is wrong and where (byte offset) into err. */
int gguf_open(const char *path, struct gguf_file **out, char *err, size_t err_size);

/* The same over a buffer the caller keeps alive (tests, the fuzzer). */
int gguf_open_memory(const void *data, size_t size, struct gguf_file **out, char *err, size_t err_size);

void gguf_close(struct gguf_file *f);

const struct gguf_kv *gguf_find(const struct gguf_file *f, const char *key);
const struct gguf_tensor *gguf_find_tensor(const struct gguf_file *f, const char *name);

/* Typed getters: 0, -ENOENT (absent) or -EINVAL (wrong type / out of range). Integers of any
 * width are accepted when the value fits. */
int gguf_get_u32(const struct gguf_file *f, const char *key, uint32_t *out);
int gguf_get_f32(const struct gguf_file *f, const char *key, float *out);
int gguf_get_bool(const struct gguf_file *f, const char *key, bool *out);
int gguf_get_str(const struct gguf_file *f, const char *key, struct gguf_str *out);
bool gguf_str_eq(struct gguf_str s, const char *c);

/* ---- writer ---- */

struct gguf_writer;

struct gguf_writer *gguf_writer_new(void);
void gguf_writer_free(struct gguf_writer *w);
int gguf_writer_add_u32(struct gguf_writer *w, const char *key, uint32_t v);
int gguf_writer_add_i32(struct gguf_writer *w, const char *key, int32_t v);
int gguf_writer_add_f32(struct gguf_writer *w, const char *key, float v);
int gguf_writer_add_bool(struct gguf_writer *w, const char *key, bool v);
int gguf_writer_add_str(struct gguf_writer *w, const char *key, const char *v);
int gguf_writer_add_arr_str(struct gguf_writer *w, const char *key, const char *const *v, const size_t *lens, size_t n);
int gguf_writer_add_arr_i32(struct gguf_writer *w, const char *key, const int32_t *v, size_t n);
int gguf_writer_add_arr_f32(struct gguf_writer *w, const char *key, const float *v, size_t n);
/* Tensors are written in the order added. Their bytes come from fill(ctx, dst, size) called by
 * gguf_writer_write, one tensor at a time, so a multi-gigabyte model never sits in memory whole;
 * fill returns 0 or a negative errno. gguf_writer_add_tensor_data copies from a buffer that must
 * stay valid until the write. */
typedef int (*gguf_fill_fn)(void *ctx, void *dst, size_t size);
int gguf_writer_add_tensor(struct gguf_writer *w, const char *name, enum rig_type type, uint32_t n_dims,
                           const uint64_t *ne, gguf_fill_fn fill, void *ctx);
int gguf_writer_add_tensor_data(struct gguf_writer *w, const char *name, enum rig_type type, uint32_t n_dims,
                                const uint64_t *ne, const void *data);
/* Writes version 3 with general.alignment (32 unless set). */
int gguf_writer_write(struct gguf_writer *w, const char *path, char *err, size_t err_size);
