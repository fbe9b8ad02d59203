/* gguf.c — GGUF v2/v3 reader over mmap and a streaming writer. Layout: ggml docs/gguf.md.
 * v2 and v3 have the same layout (v3 only added big-endian files, which carry no marker; we
 * read little-endian only); v1 had 32-bit counts and lengths and is refused. The reader trusts
 * nothing in the file: every count, length and extent is checked against the bytes left before
 * it is used, in arithmetic that cannot wrap, and counts are checked before anything is
 * allocated for them, so a hostile file costs at most a few times its own size in memory. */
#include <errno.h>
#include <fcntl.h>
#include <float.h>
#include <inttypes.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "gguf.h"
#include "errmsg.h"

#if !defined(__BYTE_ORDER__) || __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "gguf.c reads little-endian files by copying bytes: it needs a little-endian host"
#endif

#define GGUF_MAGIC "GGUF"
#define GGUF_HEADER_BYTES 24            /* magic, version, n_tensors, n_kv */
#define GGUF_TYPE_COUNT 13
/* The smallest a key/value can be: key length, a 1-byte key, value type, a 1-byte value. */
#define KV_MIN_BYTES (8 + 1 + 4 + 1)
/* The smallest a tensor info can be: name length, empty name, n_dims, one dim, type, offset. */
#define TENSOR_INFO_MIN_BYTES (8 + 4 + 8 + 4 + 8)
/* ggml keeps names in char[64] with the NUL: longer names make llama.cpp refuse the file. */
#define GGML_MAX_NAME 64

/* The reader's private state: the public struct first, so gguf_close can get back to it. */
struct gguf_file_priv {
        struct gguf_file pub;
        size_t *kv_by_key;              /* kv indexes sorted by key, for gguf_find */
        size_t *tensor_by_name;         /* tensor indexes sorted by name */
};

static struct gguf_file_priv *priv_of(const struct gguf_file *f)
{
        return (struct gguf_file_priv *)f;
}

static const size_t value_bytes[GGUF_TYPE_COUNT] = {
        [GGUF_TYPE_UINT8] = 1, [GGUF_TYPE_INT8] = 1, [GGUF_TYPE_UINT16] = 2, [GGUF_TYPE_INT16] = 2,
        [GGUF_TYPE_UINT32] = 4, [GGUF_TYPE_INT32] = 4, [GGUF_TYPE_FLOAT32] = 4, [GGUF_TYPE_BOOL] = 1,
        [GGUF_TYPE_UINT64] = 8, [GGUF_TYPE_INT64] = 8, [GGUF_TYPE_FLOAT64] = 8,
};

static const char *const value_type_names[GGUF_TYPE_COUNT] = {
        "uint8", "int8", "uint16", "int16", "uint32", "int32", "float32", "bool", "string", "array",
        "uint64", "int64", "float64",
};

/* ggml's names for the tensor types it defines, so an error can say what a file holds even
 * when rig cannot run it. Gaps are ids ggml has retired. */
static const char *const ggml_type_names[] = {
        [0] = "F32", [1] = "F16", [2] = "Q4_0", [3] = "Q4_1", [6] = "Q5_0", [7] = "Q5_1",
        [8] = "Q8_0", [9] = "Q8_1", [10] = "Q2_K", [11] = "Q3_K", [12] = "Q4_K", [13] = "Q5_K",
        [14] = "Q6_K", [15] = "Q8_K", [16] = "IQ2_XXS", [17] = "IQ2_XS", [18] = "IQ3_XXS",
        [19] = "IQ1_S", [20] = "IQ4_NL", [21] = "IQ3_S", [22] = "IQ2_S", [23] = "IQ4_XS",
        [24] = "I8", [25] = "I16", [26] = "I32", [27] = "I64", [28] = "F64", [29] = "IQ1_M",
        [30] = "BF16", [31] = "Q4_0_4_4", [32] = "Q4_0_4_8", [33] = "Q4_0_8_8", [34] = "TQ1_0",
        [35] = "TQ2_0", [36] = "IQ4_NL_4_4", [37] = "IQ4_NL_4_8", [38] = "IQ4_NL_8_8",
        [39] = "MXFP4",
};

static const char *ggml_type_name(uint32_t type)
{
        if (type < sizeof(ggml_type_names) / sizeof(ggml_type_names[0]))
                return ggml_type_names[type];
        return NULL;
}

static bool is_pow2(uint64_t v)
{
        return v != 0 && (v & (v - 1)) == 0;
}

static int str_cmp(struct gguf_str a, struct gguf_str b)
{
        int c = memcmp(a.ptr, b.ptr, a.len < b.len ? a.len : b.len);
        if (c != 0)
                return c;
        return (a.len > b.len) - (a.len < b.len);
}

bool gguf_str_eq(struct gguf_str s, const char *c)
{
        size_t n = strlen(c);
        return s.len == n && memcmp(s.ptr, c, n) == 0;
}

/* ---- messages ---- */

/* Names come from the file: show at most 64 bytes of one, other bytes than printable ASCII as
 * \xNN, so a message stays one readable line whatever the file holds. */
#define SHOW_BYTES 64
#define SHOW_BUF (SHOW_BYTES * 4 + 4)

static const char *show(struct gguf_str s, char *buf)
{
        size_t o = 0;
        for (size_t i = 0; i < s.len && i < SHOW_BYTES; i++) {
                unsigned char c = (unsigned char)s.ptr[i];
                if (c >= 0x20 && c < 0x7f && c != '\\' && c != '\'')
                        buf[o++] = (char)c;
                else
                        o += (size_t)snprintf(buf + o, 5, "\\x%02x", c);
        }
        if (s.len > SHOW_BYTES)
                o += (size_t)snprintf(buf + o, 4, "...");
        buf[o] = '\0';
        return buf;
}

/* What a check is about, turned into words only when it fails (tokenizer arrays have 150k
 * strings: formatting a description for each would cost more than parsing them). */
struct item {
        const char *kind;               /* "header", "kv", "tensor" */
        size_t index;
        struct gguf_str name;           /* key or tensor name once read; ptr NULL before */
        bool has_elem;
        size_t elem;                    /* array element */
};

static const char *describe(const struct item *it, char *buf, size_t size)
{
        char name[SHOW_BUF];
        int n;
        if (!it->index && strcmp(it->kind, "header") == 0)
                n = snprintf(buf, size, "header");
        else if (it->name.ptr)
                n = snprintf(buf, size, "%s %zu '%s'", it->kind, it->index, show(it->name, name));
        else
                n = snprintf(buf, size, "%s %zu", it->kind, it->index);
        if (it->has_elem && n >= 0 && (size_t)n < size)
                snprintf(buf + n, size - (size_t)n, " element %zu", it->elem);
        return buf;
}

struct parser {
        const uint8_t *base;
        size_t size;
        size_t pos;
        const char *name;               /* the file, for messages */
        char *err;
        size_t err_size;
};

static int fail(struct parser *p, int r, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

static int fail(struct parser *p, int r, const char *fmt, ...)
{
        if (!p->err || p->err_size == 0)
                return r;
        int n = snprintf(p->err, p->err_size, "%s: ", p->name);
        if (n < 0 || (size_t)n >= p->err_size)
                return r;
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(p->err + n, p->err_size - (size_t)n, fmt, ap);
        va_end(ap);
        return r;
}

/* ---- reading ---- */

static int need(struct parser *p, const struct item *it, const char *field, uint64_t n)
{
        if (n <= p->size - p->pos)
                return 0;
        char d[SHOW_BUF + 64];
        return fail(p, -EBADMSG,
                    "%s: %s at offset %zu needs %" PRIu64 " bytes but the file ends at %zu (truncated?)",
                    describe(it, d, sizeof(d)), field, p->pos, n, p->size);
}

static int read_u32(struct parser *p, const struct item *it, const char *field, uint32_t *out)
{
        int r = need(p, it, field, 4);
        if (r < 0)
                return r;
        memcpy(out, p->base + p->pos, 4);
        p->pos += 4;
        return 0;
}

static int read_u64(struct parser *p, const struct item *it, const char *field, uint64_t *out)
{
        int r = need(p, it, field, 8);
        if (r < 0)
                return r;
        memcpy(out, p->base + p->pos, 8);
        p->pos += 8;
        return 0;
}

static int read_str(struct parser *p, const struct item *it, const char *field, struct gguf_str *out)
{
        uint64_t len;
        size_t at = p->pos;
        int r = read_u64(p, it, field, &len);
        if (r < 0)
                return r;
        if (len > p->size - p->pos) {
                char d[SHOW_BUF + 64];
                return fail(p, -EBADMSG,
                            "%s: %s at offset %zu is %" PRIu64 " bytes long but only %zu bytes are left in the file (truncated?)",
                            describe(it, d, sizeof(d)), field, at, len, p->size - p->pos);
        }
        out->ptr = (const char *)p->base + p->pos;
        out->len = (size_t)len;
        p->pos += (size_t)len;
        return 0;
}

/* A scalar of a fixed-size type into the union of kv. */
static int read_scalar(struct parser *p, const struct item *it, enum gguf_type type, struct gguf_kv *kv)
{
        size_t at = p->pos;
        int r = need(p, it, "value", value_bytes[type]);
        if (r < 0)
                return r;
        const uint8_t *s = p->base + p->pos;
        p->pos += value_bytes[type];
        switch (type) {
        case GGUF_TYPE_UINT8: kv->v.u = s[0]; break;
        case GGUF_TYPE_INT8: kv->v.i = (int8_t)s[0]; break;
        case GGUF_TYPE_UINT16: { uint16_t v; memcpy(&v, s, 2); kv->v.u = v; break; }
        case GGUF_TYPE_INT16: { int16_t v; memcpy(&v, s, 2); kv->v.i = v; break; }
        case GGUF_TYPE_UINT32: { uint32_t v; memcpy(&v, s, 4); kv->v.u = v; break; }
        case GGUF_TYPE_INT32: { int32_t v; memcpy(&v, s, 4); kv->v.i = v; break; }
        case GGUF_TYPE_UINT64: { uint64_t v; memcpy(&v, s, 8); kv->v.u = v; break; }
        case GGUF_TYPE_INT64: { int64_t v; memcpy(&v, s, 8); kv->v.i = v; break; }
        case GGUF_TYPE_FLOAT32: { float v; memcpy(&v, s, 4); kv->v.f = v; break; }
        case GGUF_TYPE_FLOAT64: { double v; memcpy(&v, s, 8); kv->v.f = v; break; }
        case GGUF_TYPE_BOOL:
                /* The format defines 0 and 1 only; anything else means a broken writer. */
                if (s[0] > 1) {
                        char d[SHOW_BUF + 64];
                        return fail(p, -EBADMSG, "%s: bool value %u at offset %zu is neither 0 nor 1",
                                    describe(it, d, sizeof(d)), s[0], at);
                }
                kv->v.u = s[0];
                break;
        default:
                return -EINVAL; /* callers pass fixed-size types only */
        }
        return 0;
}

static int check_value_type(struct parser *p, const struct item *it, uint32_t type, size_t at, bool in_array)
{
        char d[SHOW_BUF + 64];
        if (type >= GGUF_TYPE_COUNT)
                return fail(p, -EBADMSG, "%s: unknown %s type %" PRIu32 " at offset %zu",
                            describe(it, d, sizeof(d)), in_array ? "array element" : "value", type, at);
        if (in_array && type == GGUF_TYPE_ARRAY)
                return fail(p, -EOPNOTSUPP, "%s: nested arrays (at offset %zu) are not supported",
                            describe(it, d, sizeof(d)), at);
        return 0;
}

static int read_array(struct parser *p, struct item *it, struct gguf_kv *kv)
{
        char d[SHOW_BUF + 64];
        uint32_t type;
        uint64_t n;
        size_t at = p->pos;
        int r = read_u32(p, it, "array element type", &type);
        if (r < 0)
                return r;
        r = check_value_type(p, it, type, at, true);
        if (r < 0)
                return r;
        at = p->pos;
        r = read_u64(p, it, "array length", &n);
        if (r < 0)
                return r;

        /* Before allocating anything: each element takes at least this many bytes of the file. */
        size_t min_bytes = type == GGUF_TYPE_STRING ? 8 : value_bytes[type];
        size_t left = p->size - p->pos;
        if (n > left / min_bytes)
                return fail(p, -EBADMSG,
                            "%s: array of %" PRIu64 " %s at offset %zu cannot fit in the %zu bytes left in the file",
                            describe(it, d, sizeof(d)), n, value_type_names[type], at, left);

        kv->v.arr.type = (enum gguf_type)type;
        kv->v.arr.n = (size_t)n;
        kv->v.arr.data = p->base + p->pos;
        if (type != GGUF_TYPE_STRING) {
                if (type == GGUF_TYPE_BOOL)
                        for (size_t i = 0; i < n; i++)
                                if (p->base[p->pos + i] > 1) {
                                        it->has_elem = true;
                                        it->elem = i;
                                        return fail(p, -EBADMSG, "%s: bool value %u at offset %zu is neither 0 nor 1",
                                                    describe(it, d, sizeof(d)), p->base[p->pos + i], p->pos + i);
                                }
                p->pos += (size_t)n * value_bytes[type];
                return 0;
        }

        if (n == 0)
                return 0;
        kv->v.arr.strs = calloc((size_t)n, sizeof(struct gguf_str));
        if (!kv->v.arr.strs)
                return fail(p, -ENOMEM, "%s: out of memory indexing %" PRIu64 " strings",
                            describe(it, d, sizeof(d)), n);
        it->has_elem = true;
        for (size_t i = 0; i < n; i++) {
                it->elem = i;
                r = read_str(p, it, "string length", &kv->v.arr.strs[i]);
                if (r < 0)
                        return r;
        }
        it->has_elem = false;
        return 0;
}

static int read_kv(struct parser *p, size_t index, struct gguf_kv *kv)
{
        struct item it = { .kind = "kv", .index = index };
        size_t at = p->pos;
        int r = read_str(p, &it, "key length", &kv->key);
        if (r < 0)
                return r;
        if (kv->key.len == 0)
                return fail(p, -EBADMSG, "kv %zu at offset %zu has an empty key", index, at);
        it.name = kv->key;

        uint32_t type;
        at = p->pos;
        r = read_u32(p, &it, "value type", &type);
        if (r < 0)
                return r;
        r = check_value_type(p, &it, type, at, false);
        if (r < 0)
                return r;
        kv->type = (enum gguf_type)type;
        if (type == GGUF_TYPE_STRING)
                return read_str(p, &it, "string length", &kv->v.s);
        if (type == GGUF_TYPE_ARRAY)
                return read_array(p, &it, kv);
        return read_scalar(p, &it, kv->type, kv);
}

/* Offsets of an item's start, for messages: the key or name is preceded by its u64 length. */
static size_t offset_of(const struct parser *p, struct gguf_str s)
{
        return (size_t)((const uint8_t *)s.ptr - p->base) - 8;
}

static int cmp_kv_by_key(const void *a, const void *b, void *ctx)
{
        const struct gguf_file *f = ctx;
        size_t i = *(const size_t *)a, j = *(const size_t *)b;
        int c = str_cmp(f->kv[i].key, f->kv[j].key);
        return c ? c : (i > j) - (i < j);
}

static int cmp_tensor_by_name(const void *a, const void *b, void *ctx)
{
        const struct gguf_file *f = ctx;
        size_t i = *(const size_t *)a, j = *(const size_t *)b;
        int c = str_cmp(f->tensors[i].name, f->tensors[j].name);
        return c ? c : (i > j) - (i < j);
}

static int cmp_tensor_by_offset(const void *a, const void *b, void *ctx)
{
        const struct gguf_file *f = ctx;
        size_t i = *(const size_t *)a, j = *(const size_t *)b;
        uint64_t x = f->tensors[i].offset, y = f->tensors[j].offset;
        if (x != y)
                return (x > y) - (x < y);
        return (i > j) - (i < j);
}

static size_t *sorted_index(size_t n, int (*cmp)(const void *, const void *, void *), void *ctx)
{
        size_t *idx = malloc((n ? n : 1) * sizeof(size_t));
        if (!idx)
                return NULL;
        for (size_t i = 0; i < n; i++)
                idx[i] = i;
        qsort_r(idx, n, sizeof(size_t), cmp, ctx);    /* glibc's is a merge sort: n log n always */
        return idx;
}

static int read_alignment(struct parser *p, struct gguf_file *f)
{
        const struct gguf_kv *kv = gguf_find(f, "general.alignment");
        f->alignment = GGUF_DEFAULT_ALIGNMENT;
        if (!kv)
                return 0;
        size_t at = offset_of(p, kv->key);
        if (kv->type != GGUF_TYPE_UINT32)
                return fail(p, -EBADMSG, "general.alignment (kv at offset %zu) is a %s; the format says uint32",
                            at, value_type_names[kv->type]);
        if (!is_pow2(kv->v.u))
                return fail(p, -EBADMSG, "general.alignment %" PRIu64 " (kv at offset %zu) is not a power of two",
                            kv->v.u, at);
        f->alignment = (size_t)kv->v.u;
        return 0;
}

static int read_tensor_info(struct parser *p, size_t index, struct gguf_tensor *t)
{
        char d[SHOW_BUF + 64];
        struct item it = { .kind = "tensor", .index = index };
        int r = read_str(p, &it, "name length", &t->name);
        if (r < 0)
                return r;
        it.name = t->name;

        size_t at = p->pos;
        r = read_u32(p, &it, "n_dims", &t->n_dims);
        if (r < 0)
                return r;
        if (t->n_dims == 0 || t->n_dims > GGUF_MAX_DIMS)
                return fail(p, -EBADMSG, "%s: n_dims %" PRIu32 " at offset %zu is not between 1 and %d",
                            describe(&it, d, sizeof(d)), t->n_dims, at, GGUF_MAX_DIMS);
        for (uint32_t i = 0; i < GGUF_MAX_DIMS; i++)
                t->ne[i] = 1;
        for (uint32_t i = 0; i < t->n_dims; i++) {
                at = p->pos;
                r = read_u64(p, &it, "dimension", &t->ne[i]);
                if (r < 0)
                        return r;
                if (t->ne[i] == 0)
                        return fail(p, -EBADMSG, "%s: dimension %" PRIu32 " at offset %zu is 0",
                                    describe(&it, d, sizeof(d)), i, at);
                /* ggml holds dimensions as int64_t */
                if (t->ne[i] > INT64_MAX)
                        return fail(p, -EOVERFLOW, "%s: dimension %" PRIu32 " at offset %zu is %" PRIu64 ", more than ggml can hold",
                                    describe(&it, d, sizeof(d)), i, at, t->ne[i]);
        }

        uint32_t type;
        at = p->pos;
        r = read_u32(p, &it, "type", &type);
        if (r < 0)
                return r;
        const struct rig_type_info *info = rig_type_get(type);
        if (!info || !info->is_weight) {
                const char *name = ggml_type_name(type);
                if (name)
                        return fail(p, -EOPNOTSUPP, "%s: tensor type %s (%" PRIu32 ") at offset %zu is not supported",
                                    describe(&it, d, sizeof(d)), name, type, at);
                return fail(p, -EOPNOTSUPP, "%s: unknown tensor type %" PRIu32 " at offset %zu",
                            describe(&it, d, sizeof(d)), type, at);
        }
        t->type = (enum rig_type)type;

        r = read_u64(p, &it, "offset", &t->offset);
        if (r < 0)
                return r;

        if (t->ne[0] % info->block_elems != 0)
                return fail(p, -EBADMSG, "%s: row length %" PRIu64 " is not a multiple of the %s block size %zu",
                            describe(&it, d, sizeof(d)), t->ne[0], info->name, info->block_elems);

        /* elements must fit ggml's int64_t; bytes must fit size_t */
        uint64_t rows = 1, elems, bytes;
        bool overflow = false;
        for (uint32_t i = 1; i < GGUF_MAX_DIMS; i++)
                overflow |= __builtin_mul_overflow(rows, t->ne[i], &rows);
        overflow |= __builtin_mul_overflow(rows, t->ne[0], &elems) || elems > INT64_MAX;
        overflow |= __builtin_mul_overflow(t->ne[0] / info->block_elems, (uint64_t)info->block_bytes, &bytes);
        overflow |= __builtin_mul_overflow(bytes, rows, &bytes) || bytes > SIZE_MAX;
        if (overflow)
                return fail(p, -EOVERFLOW, "%s: size of [%" PRIu64 ", %" PRIu64 ", %" PRIu64 ", %" PRIu64 "] %s overflows",
                            describe(&it, d, sizeof(d)), t->ne[0], t->ne[1], t->ne[2], t->ne[3], info->name);
        t->size_bytes = (size_t)bytes;
        return 0;
}

static int check_tensor_extents(struct parser *p, struct gguf_file *f)
{
        char d[SHOW_BUF + 64], d2[SHOW_BUF + 64];
        for (size_t i = 0; i < f->n_tensors; i++) {
                struct gguf_tensor *t = &f->tensors[i];
                struct item it = { .kind = "tensor", .index = i, .name = t->name };
                if (t->offset % f->alignment != 0)
                        return fail(p, -EBADMSG, "%s: offset %" PRIu64 " is not a multiple of the alignment %zu",
                                    describe(&it, d, sizeof(d)), t->offset, f->alignment);
                bool inside = f->data_offset <= p->size && t->offset <= p->size - f->data_offset &&
                              t->size_bytes <= p->size - f->data_offset - (size_t)t->offset;
                if (!inside) {
                        uint64_t abs;
                        if (__builtin_add_overflow(t->offset, (uint64_t)f->data_offset, &abs))
                                return fail(p, -EBADMSG,
                                            "%s extends past the end of the file (offset %" PRIu64 " into the data section at %zu, %zu bytes, file %zu bytes)",
                                            describe(&it, d, sizeof(d)), t->offset, f->data_offset, t->size_bytes, p->size);
                        return fail(p, -EBADMSG,
                                    "%s extends past the end of the file (offset %" PRIu64 ", %zu bytes, file %zu bytes)",
                                    describe(&it, d, sizeof(d)), abs, t->size_bytes, p->size);
                }
                t->data = p->base + f->data_offset + t->offset;
        }

        size_t *by_offset = sorted_index(f->n_tensors, cmp_tensor_by_offset, f);
        if (!by_offset)
                return fail(p, -ENOMEM, "out of memory sorting %zu tensors", f->n_tensors);
        for (size_t k = 0; k + 1 < f->n_tensors; k++) {
                const struct gguf_tensor *a = &f->tensors[by_offset[k]], *b = &f->tensors[by_offset[k + 1]];
                if (a->offset + a->size_bytes <= b->offset)     /* both inside the file: no wrap */
                        continue;
                struct item ia = { .kind = "tensor", .index = by_offset[k], .name = a->name };
                struct item ib = { .kind = "tensor", .index = by_offset[k + 1], .name = b->name };
                int r = fail(p, -EBADMSG,
                             "%s (offset %zu, %zu bytes) overlaps %s (offset %zu, %zu bytes)",
                             describe(&ia, d, sizeof(d)), f->data_offset + (size_t)a->offset, a->size_bytes,
                             describe(&ib, d2, sizeof(d2)), f->data_offset + (size_t)b->offset, b->size_bytes);
                free(by_offset);
                return r;
        }
        free(by_offset);
        return 0;
}

static int parse(struct parser *p, struct gguf_file_priv *fp)
{
        struct gguf_file *f = &fp->pub;
        struct item header = { .kind = "header" };
        char d[SHOW_BUF + 64], d2[SHOW_BUF + 64];
        int r;

        if (p->size < 4)
                return fail(p, -EBADMSG, "file is %zu bytes, too short for a GGUF header (truncated?)", p->size);
        if (memcmp(p->base, GGUF_MAGIC, 4) != 0)
                return fail(p, -EBADMSG, "not a GGUF file: magic at offset 0 is %02x %02x %02x %02x, expected \"GGUF\"",
                            p->base[0], p->base[1], p->base[2], p->base[3]);
        p->pos = 4;
        r = read_u32(p, &header, "version", &f->version);
        if (r < 0)
                return r;
        /* A file written on a big-endian host reads as 0x03000000 here: no low bits set. */
        if (f->version != 0 && (f->version & 0xffff) == 0)
                return fail(p, -EOPNOTSUPP, "version field at offset 4 reads 0x%08" PRIx32 ": a big-endian GGUF file (v%" PRIu32 "), which is not supported; convert it on a little-endian host",
                            f->version, __builtin_bswap32(f->version));
        if (f->version == 1)
                return fail(p, -EOPNOTSUPP, "GGUF v1 (32-bit counts) is not supported; convert the file to v3");
        if (f->version != 2 && f->version != 3)
                return fail(p, -EOPNOTSUPP, "unsupported GGUF version %" PRIu32 " at offset 4 (supported: 2, 3)", f->version);

        uint64_t n_tensors, n_kv;
        r = read_u64(p, &header, "tensor count", &n_tensors);
        if (r < 0)
                return r;
        r = read_u64(p, &header, "key/value count", &n_kv);
        if (r < 0)
                return r;

        /* Counts are checked against the bytes that could hold them before anything is allocated. */
        size_t left = p->size - p->pos;
        if (n_kv > left / KV_MIN_BYTES)
                return fail(p, -EBADMSG, "key/value count %" PRIu64 " at offset 16 cannot fit in the %zu bytes after the header (each takes at least %d)",
                            n_kv, left, KV_MIN_BYTES);
        if (n_tensors > left / TENSOR_INFO_MIN_BYTES)
                return fail(p, -EBADMSG, "tensor count %" PRIu64 " at offset 8 cannot fit in the %zu bytes after the header (each takes at least %d)",
                            n_tensors, left, TENSOR_INFO_MIN_BYTES);

        f->kv = calloc(n_kv ? (size_t)n_kv : 1, sizeof(struct gguf_kv));
        if (!f->kv)
                return fail(p, -ENOMEM, "out of memory for %" PRIu64 " key/values", n_kv);
        for (size_t i = 0; i < n_kv; i++) {
                f->n_kv = i + 1;        /* so gguf_close frees the string tables read so far */
                r = read_kv(p, i, &f->kv[i]);
                if (r < 0)
                        return r;
        }
        f->n_kv = (size_t)n_kv;

        fp->kv_by_key = sorted_index(f->n_kv, cmp_kv_by_key, f);
        if (!fp->kv_by_key)
                return fail(p, -ENOMEM, "out of memory indexing %zu keys", f->n_kv);
        for (size_t k = 0; k + 1 < f->n_kv; k++) {
                size_t i = fp->kv_by_key[k], j = fp->kv_by_key[k + 1];
                if (str_cmp(f->kv[i].key, f->kv[j].key) == 0)
                        return fail(p, -EBADMSG, "duplicate key '%s' (kv %zu at offset %zu and kv %zu at offset %zu)",
                                    show(f->kv[i].key, d), i, offset_of(p, f->kv[i].key), j, offset_of(p, f->kv[j].key));
        }
        r = read_alignment(p, f);
        if (r < 0)
                return r;

        left = p->size - p->pos;
        if (n_tensors > left / TENSOR_INFO_MIN_BYTES)
                return fail(p, -EBADMSG, "tensor count %" PRIu64 " at offset 8 cannot fit in the %zu bytes after the key/values at %zu (each takes at least %d)",
                            n_tensors, left, p->pos, TENSOR_INFO_MIN_BYTES);
        f->tensors = calloc(n_tensors ? (size_t)n_tensors : 1, sizeof(struct gguf_tensor));
        if (!f->tensors)
                return fail(p, -ENOMEM, "out of memory for %" PRIu64 " tensor infos", n_tensors);
        f->n_tensors = (size_t)n_tensors;
        for (size_t i = 0; i < f->n_tensors; i++) {
                r = read_tensor_info(p, i, &f->tensors[i]);
                if (r < 0)
                        return r;
        }

        fp->tensor_by_name = sorted_index(f->n_tensors, cmp_tensor_by_name, f);
        if (!fp->tensor_by_name)
                return fail(p, -ENOMEM, "out of memory indexing %zu tensors", f->n_tensors);
        for (size_t k = 0; k + 1 < f->n_tensors; k++) {
                size_t i = fp->tensor_by_name[k], j = fp->tensor_by_name[k + 1];
                if (str_cmp(f->tensors[i].name, f->tensors[j].name) == 0) {
                        struct item ii = { .kind = "tensor", .index = i, .name = f->tensors[i].name };
                        return fail(p, -EBADMSG, "duplicate tensor name: %s (info at offset %zu) and tensor %zu (info at offset %zu)",
                                    describe(&ii, d2, sizeof(d2)), offset_of(p, f->tensors[i].name), j,
                                    offset_of(p, f->tensors[j].name));
                }
        }

        /* The data section starts at the next multiple of the alignment. With no tensors it
         * may lie past the end of a file that stops right after the infos: that is allowed. */
        if (p->pos > SIZE_MAX - (f->alignment - 1))
                return fail(p, -EOVERFLOW, "data section offset overflows");
        f->data_offset = (p->pos + f->alignment - 1) & ~(f->alignment - 1);
        return check_tensor_extents(p, f);
}

static int open_common(const uint8_t *base, size_t size, const char *name, int fd, bool is_mapped,
                       struct gguf_file **out, char *err, size_t err_size)
{
        struct gguf_file_priv *fp = calloc(1, sizeof(*fp));
        if (!fp) {
                if (is_mapped)
                        munmap((void *)base, size);
                if (fd >= 0)
                        close(fd);
                if (err && err_size)
                        snprintf(err, err_size, "%s: out of memory", name);
                return -ENOMEM;
        }
        struct gguf_file *f = &fp->pub;
        f->base = base;
        f->size = size;
        f->fd = fd;
        f->is_mapped = is_mapped;
        f->alignment = GGUF_DEFAULT_ALIGNMENT;

        struct parser p = { .base = base, .size = size, .name = name, .err = err, .err_size = err_size };
        int r = parse(&p, fp);
        if (r < 0) {
                gguf_close(f);
                return r;
        }
        *out = f;
        return 0;
}

int gguf_open(const char *path, struct gguf_file **out, char *err, size_t err_size)
{
        *out = NULL;
        int fd = open(path, O_RDONLY | O_CLOEXEC);
        if (fd < 0) {
                int r = -errno;
                if (err && err_size)
                        snprintf(err, err_size, "opening %s: %s", path, strerror(-r));
                return r;
        }
        struct stat st;
        if (fstat(fd, &st) < 0) {
                int r = -errno;
                close(fd);
                if (err && err_size)
                        snprintf(err, err_size, "reading %s: %s", path, strerror(-r));
                return r;
        }
        if (!S_ISREG(st.st_mode)) {
                close(fd);
                if (err && err_size)
                        snprintf(err, err_size, "%s: not a regular file", path);
                return -EINVAL;
        }
        if ((uint64_t)st.st_size > SIZE_MAX) {
                close(fd);
                if (err && err_size)
                        snprintf(err, err_size, "%s: %jd bytes is too large to map", path, (intmax_t)st.st_size);
                return -EFBIG;
        }
        size_t size = (size_t)st.st_size;
        if (size == 0)          /* mmap refuses length 0; the parser reports the short file */
                return open_common((const uint8_t *)"", 0, path, fd, false, out, err, err_size);

        /* MAP_PRIVATE: nobody writing the file later can change bytes we already checked through
         * our own stores; a file truncated under us still faults (SIGBUS), as with any mmap. */
        void *base = mmap(NULL, size, PROT_READ, MAP_PRIVATE, fd, 0);
        if (base == MAP_FAILED) {
                int r = -errno;
                close(fd);
                if (err && err_size)
                        snprintf(err, err_size, "mapping %s: %s", path, strerror(-r));
                return r;
        }
        return open_common(base, size, path, fd, true, out, err, err_size);
}

int gguf_open_memory(const void *data, size_t size, struct gguf_file **out, char *err, size_t err_size)
{
        *out = NULL;
        if (!data)
                data = "";
        return open_common(data, size, "<memory>", -1, false, out, err, err_size);
}

void gguf_close(struct gguf_file *f)
{
        if (!f)
                return;
        struct gguf_file_priv *fp = priv_of(f);
        for (size_t i = 0; f->kv && i < f->n_kv; i++)
                if (f->kv[i].type == GGUF_TYPE_ARRAY)
                        free(f->kv[i].v.arr.strs);
        free(f->kv);
        free(f->tensors);
        free(fp->kv_by_key);
        free(fp->tensor_by_name);
        if (f->is_mapped)
                munmap((void *)f->base, f->size);
        if (f->fd >= 0)
                close(f->fd);
        free(fp);
}

static int cmp_c_str(struct gguf_str s, const char *c, size_t n)
{
        return str_cmp(s, (struct gguf_str){ c, n });
}

const struct gguf_kv *gguf_find(const struct gguf_file *f, const char *key)
{
        const struct gguf_file_priv *fp = priv_of(f);
        if (!f || !key || !fp->kv_by_key)
                return NULL;
        size_t n = strlen(key), lo = 0, hi = f->n_kv;
        while (lo < hi) {
                size_t mid = lo + (hi - lo) / 2;
                const struct gguf_kv *kv = &f->kv[fp->kv_by_key[mid]];
                int c = cmp_c_str(kv->key, key, n);
                if (c == 0)
                        return kv;
                if (c < 0)
                        lo = mid + 1;
                else
                        hi = mid;
        }
        return NULL;
}

const struct gguf_tensor *gguf_find_tensor(const struct gguf_file *f, const char *name)
{
        const struct gguf_file_priv *fp = priv_of(f);
        if (!f || !name || !fp->tensor_by_name)
                return NULL;
        size_t n = strlen(name), lo = 0, hi = f->n_tensors;
        while (lo < hi) {
                size_t mid = lo + (hi - lo) / 2;
                const struct gguf_tensor *t = &f->tensors[fp->tensor_by_name[mid]];
                int c = cmp_c_str(t->name, name, n);
                if (c == 0)
                        return t;
                if (c < 0)
                        lo = mid + 1;
                else
                        hi = mid;
        }
        return NULL;
}

static bool is_unsigned_type(enum gguf_type t)
{
        return t == GGUF_TYPE_UINT8 || t == GGUF_TYPE_UINT16 || t == GGUF_TYPE_UINT32 || t == GGUF_TYPE_UINT64;
}

static bool is_signed_type(enum gguf_type t)
{
        return t == GGUF_TYPE_INT8 || t == GGUF_TYPE_INT16 || t == GGUF_TYPE_INT32 || t == GGUF_TYPE_INT64;
}

int gguf_get_u32(const struct gguf_file *f, const char *key, uint32_t *out)
{
        const struct gguf_kv *kv = gguf_find(f, key);
        if (!kv)
                return -ENOENT;
        if (is_unsigned_type(kv->type) && kv->v.u <= UINT32_MAX) {
                *out = (uint32_t)kv->v.u;
                return 0;
        }
        if (is_signed_type(kv->type) && kv->v.i >= 0 && kv->v.i <= (int64_t)UINT32_MAX) {
                *out = (uint32_t)kv->v.i;
                return 0;
        }
        return -EINVAL;
}

int gguf_get_f32(const struct gguf_file *f, const char *key, float *out)
{
        const struct gguf_kv *kv = gguf_find(f, key);
        if (!kv)
                return -ENOENT;
        if (kv->type != GGUF_TYPE_FLOAT32 && kv->type != GGUF_TYPE_FLOAT64)
                return -EINVAL;
        /* a float64 beyond float's range would be undefined to convert */
        if (kv->v.f > FLT_MAX || kv->v.f < -FLT_MAX)
                return -EINVAL;
        *out = (float)kv->v.f;  /* NaN passes through: the caller decides what it means */
        return 0;
}

int gguf_get_bool(const struct gguf_file *f, const char *key, bool *out)
{
        const struct gguf_kv *kv = gguf_find(f, key);
        if (!kv)
                return -ENOENT;
        if (kv->type != GGUF_TYPE_BOOL)
                return -EINVAL;
        *out = kv->v.u != 0;
        return 0;
}

int gguf_get_str(const struct gguf_file *f, const char *key, struct gguf_str *out)
{
        const struct gguf_kv *kv = gguf_find(f, key);
        if (!kv)
                return -ENOENT;
        if (kv->type != GGUF_TYPE_STRING)
                return -EINVAL;
        *out = kv->v.s;
        return 0;
}

/* ---- writer ---- */

struct buf {
        uint8_t *p;
        size_t len, cap;
};

static int buf_put(struct buf *b, const void *data, size_t n)
{
        if (n > SIZE_MAX - b->len)
                return -ENOMEM;
        if (b->len + n > b->cap) {
                size_t cap = b->cap ? b->cap : 256;
                while (cap < b->len + n)
                        cap = cap > SIZE_MAX / 2 ? b->len + n : cap * 2;
                uint8_t *p = realloc(b->p, cap);
                if (!p)
                        return -ENOMEM;
                b->p = p;
                b->cap = cap;
        }
        if (n)
                memcpy(b->p + b->len, data, n);
        b->len += n;
        return 0;
}

static int buf_u32(struct buf *b, uint32_t v) { return buf_put(b, &v, 4); }
static int buf_u64(struct buf *b, uint64_t v) { return buf_put(b, &v, 8); }

static int buf_str(struct buf *b, const char *s, size_t len)
{
        int r = buf_u64(b, len);
        return r < 0 ? r : buf_put(b, s, len);
}

/* A key/value is encoded when added, so the caller's buffers need not outlive the call. */
struct wkv {
        char *key;
        struct buf bytes;               /* key, type and value as they go in the file */
};

struct wtensor {
        char *name;
        enum rig_type type;
        uint32_t n_dims;
        uint64_t ne[GGUF_MAX_DIMS];
        size_t size_bytes;
        gguf_fill_fn fill;              /* NULL: copy from data */
        void *ctx;
        const void *data;
};

struct gguf_writer {
        struct wkv *kv;
        size_t n_kv, cap_kv;
        struct wtensor *tensors;
        size_t n_tensors, cap_tensors;
        size_t alignment;
};

struct gguf_writer *gguf_writer_new(void)
{
        struct gguf_writer *w = calloc(1, sizeof(*w));
        if (w)
                w->alignment = GGUF_DEFAULT_ALIGNMENT;
        return w;
}

void gguf_writer_free(struct gguf_writer *w)
{
        if (!w)
                return;
        for (size_t i = 0; i < w->n_kv; i++) {
                free(w->kv[i].key);
                free(w->kv[i].bytes.p);
        }
        for (size_t i = 0; i < w->n_tensors; i++)
                free(w->tensors[i].name);
        free(w->kv);
        free(w->tensors);
        free(w);
}

static int grow(void **arr, size_t *cap, size_t n, size_t elem)
{
        if (n < *cap)
                return 0;
        size_t c = *cap ? *cap * 2 : 16;
        if (c > SIZE_MAX / elem)
                return -ENOMEM;
        void *p = realloc(*arr, c * elem);
        if (!p)
                return -ENOMEM;
        *arr = p;
        *cap = c;
        return 0;
}

/* Starts a key/value: checks the key, encodes it and the type. The caller appends the value and
 * calls kv_commit, or kv_abort on failure. */
static int kv_begin(struct gguf_writer *w, const char *key, enum gguf_type type, struct wkv *out)
{
        if (!w || !key || !*key)
                return -EINVAL;
        for (size_t i = 0; i < w->n_kv; i++)
                if (strcmp(w->kv[i].key, key) == 0)
                        return -EEXIST;
        /* readers (ggml, gguf-py) take general.alignment only as a uint32 */
        if (strcmp(key, "general.alignment") == 0 && type != GGUF_TYPE_UINT32)
                return -EINVAL;
        *out = (struct wkv){ .key = strdup(key) };
        if (!out->key)
                return -ENOMEM;
        int r = buf_str(&out->bytes, key, strlen(key));
        if (r >= 0)
                r = buf_u32(&out->bytes, type);
        if (r < 0) {
                free(out->key);
                free(out->bytes.p);
        }
        return r;
}

static int kv_commit(struct gguf_writer *w, struct wkv *kv, int r)
{
        if (r >= 0)
                r = grow((void **)&w->kv, &w->cap_kv, w->n_kv, sizeof(*w->kv));
        if (r < 0) {
                free(kv->key);
                free(kv->bytes.p);
                return r;
        }
        w->kv[w->n_kv++] = *kv;
        return 0;
}

static int add_scalar(struct gguf_writer *w, const char *key, enum gguf_type type, const void *v, size_t n)
{
        struct wkv kv;
        int r = kv_begin(w, key, type, &kv);
        if (r < 0)
                return r;
        return kv_commit(w, &kv, buf_put(&kv.bytes, v, n));
}

int gguf_writer_add_u32(struct gguf_writer *w, const char *key, uint32_t v)
{
        if (key && strcmp(key, "general.alignment") == 0 && !is_pow2(v))
                return -EINVAL;
        int r = add_scalar(w, key, GGUF_TYPE_UINT32, &v, 4);
        if (r >= 0 && strcmp(key, "general.alignment") == 0)
                w->alignment = v;
        return r;
}

int gguf_writer_add_i32(struct gguf_writer *w, const char *key, int32_t v)
{
        return add_scalar(w, key, GGUF_TYPE_INT32, &v, 4);
}

int gguf_writer_add_f32(struct gguf_writer *w, const char *key, float v)
{
        return add_scalar(w, key, GGUF_TYPE_FLOAT32, &v, 4);
}

int gguf_writer_add_bool(struct gguf_writer *w, const char *key, bool v)
{
        uint8_t b = v ? 1 : 0;
        return add_scalar(w, key, GGUF_TYPE_BOOL, &b, 1);
}

int gguf_writer_add_str(struct gguf_writer *w, const char *key, const char *v)
{
        if (!v)
                return -EINVAL;
        struct wkv kv;
        int r = kv_begin(w, key, GGUF_TYPE_STRING, &kv);
        if (r < 0)
                return r;
        return kv_commit(w, &kv, buf_str(&kv.bytes, v, strlen(v)));
}

static int add_array(struct gguf_writer *w, const char *key, enum gguf_type type, const void *v, size_t n)
{
        if (n && !v)
                return -EINVAL;
        struct wkv kv;
        int r = kv_begin(w, key, GGUF_TYPE_ARRAY, &kv);
        if (r < 0)
                return r;
        r = buf_u32(&kv.bytes, type);
        if (r >= 0)
                r = buf_u64(&kv.bytes, n);
        if (r >= 0)
                r = n > SIZE_MAX / value_bytes[type] ? -ENOMEM : buf_put(&kv.bytes, v, n * value_bytes[type]);
        return kv_commit(w, &kv, r);
}

int gguf_writer_add_arr_i32(struct gguf_writer *w, const char *key, const int32_t *v, size_t n)
{
        return add_array(w, key, GGUF_TYPE_INT32, v, n);
}

int gguf_writer_add_arr_f32(struct gguf_writer *w, const char *key, const float *v, size_t n)
{
        return add_array(w, key, GGUF_TYPE_FLOAT32, v, n);
}

/* lens may be NULL: then each string is NUL-terminated. With lens, strings may hold any bytes. */
int gguf_writer_add_arr_str(struct gguf_writer *w, const char *key, const char *const *v, const size_t *lens, size_t n)
{
        if (n && !v)
                return -EINVAL;
        for (size_t i = 0; i < n; i++)
                if (!v[i])
                        return -EINVAL;
        struct wkv kv;
        int r = kv_begin(w, key, GGUF_TYPE_ARRAY, &kv);
        if (r < 0)
                return r;
        r = buf_u32(&kv.bytes, GGUF_TYPE_STRING);
        if (r >= 0)
                r = buf_u64(&kv.bytes, n);
        for (size_t i = 0; r >= 0 && i < n; i++)
                r = buf_str(&kv.bytes, v[i], lens ? lens[i] : strlen(v[i]));
        return kv_commit(w, &kv, r);
}

static int add_tensor(struct gguf_writer *w, const char *name, enum rig_type type, uint32_t n_dims,
                      const uint64_t *ne, gguf_fill_fn fill, void *ctx, const void *data)
{
        if (!w || !name || !*name || !ne || n_dims == 0 || n_dims > GGUF_MAX_DIMS)
                return -EINVAL;
        if (strlen(name) >= GGML_MAX_NAME)
                return -ENAMETOOLONG;
        const struct rig_type_info *info = rig_type_get(type);
        if (!info || !info->is_weight)
                return -EOPNOTSUPP;
        for (size_t i = 0; i < w->n_tensors; i++)
                if (strcmp(w->tensors[i].name, name) == 0)
                        return -EEXIST;

        struct wtensor t = { .type = type, .n_dims = n_dims, .fill = fill, .ctx = ctx, .data = data };
        uint64_t rows = 1, bytes;
        for (uint32_t i = 0; i < GGUF_MAX_DIMS; i++) {
                t.ne[i] = i < n_dims ? ne[i] : 1;
                if (t.ne[i] == 0 || t.ne[i] > INT64_MAX)
                        return -EINVAL;
        }
        if (t.ne[0] % info->block_elems != 0)
                return -EINVAL;
        bool overflow = false;
        for (uint32_t i = 1; i < GGUF_MAX_DIMS; i++)
                overflow |= __builtin_mul_overflow(rows, t.ne[i], &rows);
        overflow |= __builtin_mul_overflow(t.ne[0] / info->block_elems, (uint64_t)info->block_bytes, &bytes);
        overflow |= __builtin_mul_overflow(bytes, rows, &bytes) || bytes > SIZE_MAX - 4096;
        if (overflow)
                return -EOVERFLOW;
        t.size_bytes = (size_t)bytes;

        int r = grow((void **)&w->tensors, &w->cap_tensors, w->n_tensors, sizeof(*w->tensors));
        if (r < 0)
                return r;
        t.name = strdup(name);
        if (!t.name)
                return -ENOMEM;
        w->tensors[w->n_tensors++] = t;
        return 0;
}

int gguf_writer_add_tensor(struct gguf_writer *w, const char *name, enum rig_type type, uint32_t n_dims,
                           const uint64_t *ne, gguf_fill_fn fill, void *ctx)
{
        if (!fill)
                return -EINVAL;
        return add_tensor(w, name, type, n_dims, ne, fill, ctx, NULL);
}

int gguf_writer_add_tensor_data(struct gguf_writer *w, const char *name, enum rig_type type, uint32_t n_dims,
                                const uint64_t *ne, const void *data)
{
        if (!data)
                return -EINVAL;
        return add_tensor(w, name, type, n_dims, ne, NULL, NULL, data);
}

static size_t pad_to(size_t n, size_t alignment)
{
        return (alignment - n % alignment) % alignment;
}

/* Header, key/values and tensor infos, padded to the alignment: everything before the data. */
static int build_meta(const struct gguf_writer *w, struct buf *b)
{
        static const uint8_t zeros[256];
        int r = buf_put(b, GGUF_MAGIC, 4);
        if (r >= 0)
                r = buf_u32(b, 3);
        if (r >= 0)
                r = buf_u64(b, w->n_tensors);
        if (r >= 0)
                r = buf_u64(b, w->n_kv);
        for (size_t i = 0; r >= 0 && i < w->n_kv; i++)
                r = buf_put(b, w->kv[i].bytes.p, w->kv[i].bytes.len);
        /* each tensor's data starts aligned and is padded to the alignment, as ggml writes it */
        uint64_t offset = 0;
        for (size_t i = 0; r >= 0 && i < w->n_tensors; i++) {
                const struct wtensor *t = &w->tensors[i];
                r = buf_str(b, t->name, strlen(t->name));
                if (r >= 0)
                        r = buf_u32(b, t->n_dims);
                for (uint32_t d = 0; r >= 0 && d < t->n_dims; d++)
                        r = buf_u64(b, t->ne[d]);
                if (r >= 0)
                        r = buf_u32(b, t->type);
                if (r >= 0)
                        r = buf_u64(b, offset);
                uint64_t padded = t->size_bytes + pad_to(t->size_bytes, w->alignment);
                if (r >= 0 && __builtin_add_overflow(offset, padded, &offset))
                        r = -EOVERFLOW;
        }
        for (size_t n = pad_to(b->len, w->alignment); r >= 0 && n > 0;) {
                size_t k = n < sizeof(zeros) ? n : sizeof(zeros);
                r = buf_put(b, zeros, k);
                n -= k;
        }
        return r;
}

static int write_zeros(FILE *out, size_t n)
{
        static const uint8_t zeros[256];
        while (n > 0) {
                size_t k = n < sizeof(zeros) ? n : sizeof(zeros);
                if (fwrite(zeros, 1, k, out) != k)
                        return -EIO;
                n -= k;
        }
        return 0;
}

/* Writes the data of every tensor, each one padded to the alignment. Tensors with a fill
 * callback go through one buffer sized for the largest of them. */
static int write_tensors(const struct gguf_writer *w, FILE *out, const char *path, char *err, size_t err_size)
{
        size_t max = 0;
        for (size_t i = 0; i < w->n_tensors; i++)
                if (w->tensors[i].fill && w->tensors[i].size_bytes > max)
                        max = w->tensors[i].size_bytes;
        uint8_t *scratch = NULL;
        if (max) {
                scratch = malloc(max);
                if (!scratch)
                        return errmsg(err, err_size, -ENOMEM, "writing %s: out of memory for a %zu-byte tensor", path, max);
        }
        int r = 0;
        for (size_t i = 0; r >= 0 && i < w->n_tensors; i++) {
                const struct wtensor *t = &w->tensors[i];
                const void *src = t->data;
                if (t->fill) {
                        r = t->fill(t->ctx, scratch, t->size_bytes);
                        if (r < 0) {
                                errmsg(err, err_size, r, "writing %s: filling tensor '%s': %s", path, t->name, strerror(-r));
                                break;
                        }
                        src = scratch;
                }
                errno = 0;
                if (fwrite(src, 1, t->size_bytes, out) != t->size_bytes || write_zeros(out, pad_to(t->size_bytes, w->alignment)) < 0) {
                        r = errno ? -errno : -EIO;
                        errmsg(err, err_size, r, "writing %s: tensor '%s': %s", path, t->name, strerror(-r));
                }
        }
        free(scratch);
        return r;
}

int gguf_writer_write(struct gguf_writer *w, const char *path, char *err, size_t err_size)
{
        if (!w || !path)
                return errmsg(err, err_size, -EINVAL, "gguf_writer_write: no writer or path");
        struct buf meta = { 0 };
        int r = build_meta(w, &meta);
        if (r < 0) {
                free(meta.p);
                return errmsg(err, err_size, r, "writing %s: %s", path, strerror(-r));
        }

        /* A temporary file beside the target, renamed over it at the end: readers never see a
         * half-written model, and a failed write leaves what was there before. */
        char *tmp = NULL;
        if (asprintf(&tmp, "%s.tmp-XXXXXX", path) < 0) {
                free(meta.p);
                return errmsg(err, err_size, -ENOMEM, "writing %s: out of memory", path);
        }
        int fd = mkostemp(tmp, O_CLOEXEC);
        if (fd < 0) {
                r = -errno;
                errmsg(err, err_size, r, "writing %s: creating %s: %s", path, tmp, strerror(-r));
                free(tmp);
                free(meta.p);
                return r;
        }
        (void)fchmod(fd, 0644);         /* mkstemp makes 0600; a model is meant to be shared */
        FILE *out = fdopen(fd, "wb");
        if (!out) {
                r = -errno;
                close(fd);
                errmsg(err, err_size, r, "writing %s: %s", tmp, strerror(-r));
                goto fail;
        }
        errno = 0;
        if (fwrite(meta.p, 1, meta.len, out) != meta.len) {
                r = errno ? -errno : -EIO;
                errmsg(err, err_size, r, "writing %s: %s", tmp, strerror(-r));
                fclose(out);
                goto fail;
        }
        r = write_tensors(w, out, path, err, err_size);
        if (r < 0) {
                fclose(out);
                goto fail;
        }
        errno = 0;
        if (fflush(out) != 0 || fsync(fileno(out)) < 0) {
                r = errno ? -errno : -EIO;
                errmsg(err, err_size, r, "writing %s: %s", tmp, strerror(-r));
                fclose(out);
                goto fail;
        }
        if (fclose(out) != 0) {
                r = errno ? -errno : -EIO;
                errmsg(err, err_size, r, "writing %s: %s", tmp, strerror(-r));
                goto fail;
        }
        if (rename(tmp, path) < 0) {
                r = -errno;
                errmsg(err, err_size, r, "renaming %s to %s: %s", tmp, path, strerror(-r));
                goto fail;
        }
        free(tmp);
        free(meta.p);
        return 0;

fail:
        unlink(tmp);
        free(tmp);
        free(meta.p);
        return r;
}
