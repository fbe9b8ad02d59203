/* Unit tests of the GGUF reader and writer: writer → reader round trips, files built byte by
 * byte for every value type and both versions, and one test per way a file can be wrong.
 * Also a helper for tests/unit/gguf_reference.py, which checks our files with an independent
 * Python parser and our reader with files an independent Python writer made:
 *   test_gguf --write-reference PATH     write the reference model with gguf_writer
 *   test_gguf --check-python PATH        read PATH (written by gguf_reference.py) and check it */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <dirent.h>
#include <unistd.h>

#include <cmocka.h>

#include "gguf.h"

/* every cmocka test takes a state it rarely needs (CMake builds with -Wno-unused-parameter) */
#pragma GCC diagnostic ignored "-Wunused-parameter"

/* ---- building files byte by byte (independently of the writer under test) ---- */

struct bb {
        uint8_t *p;
        size_t len, cap;
};

static void bb_put(struct bb *b, const void *d, size_t n)
{
        if (b->len + n > b->cap) {
                b->cap = (b->len + n) * 2 + 64;
                b->p = realloc(b->p, b->cap);
                assert_non_null(b->p);
        }
        if (n)
                memcpy(b->p + b->len, d, n);
        b->len += n;
}

static void bb_u8(struct bb *b, uint8_t v) { bb_put(b, &v, 1); }
static void bb_u16(struct bb *b, uint16_t v) { bb_put(b, &v, 2); }
static void bb_u32(struct bb *b, uint32_t v) { bb_put(b, &v, 4); }
static void bb_u64(struct bb *b, uint64_t v) { bb_put(b, &v, 8); }
static void bb_f32(struct bb *b, float v) { bb_put(b, &v, 4); }
static void bb_f64(struct bb *b, double v) { bb_put(b, &v, 8); }
static void bb_strn(struct bb *b, const char *s, size_t n) { bb_u64(b, n); bb_put(b, s, n); }
static void bb_str(struct bb *b, const char *s) { bb_strn(b, s, strlen(s)); }
static void bb_key(struct bb *b, const char *key, uint32_t type) { bb_str(b, key); bb_u32(b, type); }
static void bb_pad(struct bb *b, size_t alignment) { while (b->len % alignment) bb_u8(b, 0); }

struct ttensor {
        const char *name;
        uint32_t n_dims;
        uint64_t ne[4];
        uint32_t type;
        uint64_t offset;
};

/* What a test file holds. Zero fields mean the usual: magic "GGUF", version 3, counts from the
 * contents, data section sized to hold every tensor. */
struct tfile {
        const char *magic;
        uint32_t version;
        void (*kvs)(struct bb *b, uint64_t *n_kv);      /* appends key/values, counts them */
        const struct ttensor *tensors;
        size_t n_tensors;
        size_t alignment;                               /* what the reader should use (key written by kvs) */
        bool set_n_kv;
        uint64_t n_kv;
        bool set_data_bytes;
        size_t data_bytes;
};

/* The test's own idea of tensor sizes, kept apart from the reader's. */
static uint64_t ttensor_bytes(const struct ttensor *t)
{
        uint64_t blk, bytes;
        switch (t->type) {
        case 0: blk = 1, bytes = 4; break;              /* F32 */
        case 1: case 30: blk = 1, bytes = 2; break;     /* F16, BF16 */
        case 2: blk = 32, bytes = 18; break;            /* Q4_0 */
        case 8: blk = 32, bytes = 34; break;            /* Q8_0 */
        case 12: blk = 256, bytes = 144; break;         /* Q4_K */
        case 13: blk = 256, bytes = 176; break;         /* Q5_K */
        case 14: blk = 256, bytes = 210; break;         /* Q6_K */
        default: return 0;
        }
        uint64_t n = t->ne[0] / blk * bytes;
        for (uint32_t i = 1; i < t->n_dims && i < 4; i++)
                n *= t->ne[i];
        return n;
}

static uint8_t pattern(size_t tensor, size_t j)
{
        return (uint8_t)(j * 7 + tensor * 13 + 1);
}

static struct bb build(const struct tfile *tf)
{
        struct bb b = { 0 }, kv = { 0 };
        uint64_t n_kv = 0;
        if (tf->kvs)
                tf->kvs(&kv, &n_kv);
        bb_put(&b, tf->magic ? tf->magic : "GGUF", 4);
        bb_u32(&b, tf->version ? tf->version : 3);
        bb_u64(&b, tf->n_tensors);
        bb_u64(&b, tf->set_n_kv ? tf->n_kv : n_kv);
        bb_put(&b, kv.p, kv.len);
        free(kv.p);
        uint64_t end = 0;
        for (size_t i = 0; i < tf->n_tensors; i++) {
                const struct ttensor *t = &tf->tensors[i];
                bb_str(&b, t->name);
                bb_u32(&b, t->n_dims);
                for (uint32_t d = 0; d < t->n_dims && d < 4; d++)
                        bb_u64(&b, t->ne[d]);
                bb_u32(&b, t->type);
                bb_u64(&b, t->offset);
                uint64_t e = t->offset + ttensor_bytes(t);
                if (e > end)
                        end = e;
        }
        bb_pad(&b, tf->alignment ? tf->alignment : 32);
        size_t data_start = b.len;
        size_t n = tf->set_data_bytes ? tf->data_bytes : end;
        for (size_t j = 0; j < n; j++)
                bb_u8(&b, 0);
        for (size_t i = 0; i < tf->n_tensors; i++) {
                const struct ttensor *t = &tf->tensors[i];
                uint64_t sz = ttensor_bytes(t);
                for (uint64_t j = 0; t->offset < b.len - data_start && j < sz && data_start + t->offset + j < b.len; j++)
                        b.p[data_start + t->offset + j] = pattern(i, j);
        }
        return b;
}

static char err[1024];

/* Opens the bytes from memory; returns the errno and leaves the message in err. */
static int open_bb(const struct bb *b, struct gguf_file **f)
{
        err[0] = '\0';
        int r = gguf_open_memory(b->p, b->len, f, err, sizeof(err));
        if (r < 0)
                assert_null(*f);
        return r;
}

static int open_tf(const struct tfile *tf)
{
        struct bb b = build(tf);
        struct gguf_file *f = NULL;
        int r = open_bb(&b, &f);
        gguf_close(f);
        free(b.p);
        return r;
}

#define assert_err_contains(frag)                                                                   \
        do {                                                                                        \
                if (!strstr(err, (frag)))                                                           \
                        fail_msg("message \"%s\" does not contain \"%s\"", err, (frag));            \
        } while (0)

static const struct ttensor two_tensors[] = {
        { "blk.0.attn_q.weight", 2, { 64, 2 }, 8, 0 },          /* Q8_0: 2 rows of 68 bytes = 136 */
        { "output_norm.weight", 1, { 5 }, 0, 160 },             /* F32: 20 bytes */
};

static void kvs_arch(struct bb *b, uint64_t *n)
{
        bb_key(b, "general.architecture", 8);
        bb_str(b, "llama");
        (*n)++;
}

static const struct tfile good = {
        .kvs = kvs_arch, .tensors = two_tensors, .n_tensors = 2,
};

/* ---- reading files built byte by byte ---- */

static void kvs_every_type(struct bb *b, uint64_t *n)
{
        bb_key(b, "t.u8", 0); bb_u8(b, 200);
        bb_key(b, "t.i8", 1); bb_u8(b, (uint8_t)-100);
        bb_key(b, "t.u16", 2); bb_u16(b, 60000);
        bb_key(b, "t.i16", 3); bb_u16(b, (uint16_t)-30000);
        bb_key(b, "t.u32", 4); bb_u32(b, 4000000000u);
        bb_key(b, "t.i32", 5); bb_u32(b, (uint32_t)-2000000000);
        bb_key(b, "t.f32", 6); bb_f32(b, 1.5f);
        bb_key(b, "t.bool", 7); bb_u8(b, 1);
        bb_key(b, "t.str", 8); bb_str(b, "hi");
        bb_key(b, "t.u64", 10); bb_u64(b, (1ull << 63) + 5);
        bb_key(b, "t.i64", 11); bb_u64(b, (uint64_t)-(1ll << 62));
        bb_key(b, "t.f64", 12); bb_f64(b, -0.1);
        bb_key(b, "a.u8", 9); bb_u32(b, 0); bb_u64(b, 3); bb_u8(b, 1); bb_u8(b, 2); bb_u8(b, 3);
        bb_key(b, "a.i16", 9); bb_u32(b, 3); bb_u64(b, 2); bb_u16(b, (uint16_t)-1); bb_u16(b, 7);
        bb_key(b, "a.f64", 9); bb_u32(b, 12); bb_u64(b, 2); bb_f64(b, 0.5); bb_f64(b, -2.0);
        bb_key(b, "a.bool", 9); bb_u32(b, 7); bb_u64(b, 2); bb_u8(b, 0); bb_u8(b, 1);
        bb_key(b, "a.str", 9); bb_u32(b, 8); bb_u64(b, 3); bb_str(b, "x"); bb_str(b, ""); bb_strn(b, "y\0z", 3);
        bb_key(b, "a.empty", 9); bb_u32(b, 8); bb_u64(b, 0);
        bb_key(b, "\xff\xfe not utf-8", 8); bb_str(b, "\xc3\x28");     /* keys and values are bytes */
        *n += 19;
}

static void check_every_type(const struct gguf_file *f, size_t n_kv)
{
        const struct gguf_kv *kv;
        assert_int_equal(f->n_kv, n_kv);
        assert_non_null(kv = gguf_find(f, "t.u8"));
        assert_int_equal(kv->type, GGUF_TYPE_UINT8);
        assert_int_equal(kv->v.u, 200);
        assert_int_equal(gguf_find(f, "t.i8")->v.i, -100);
        assert_int_equal(gguf_find(f, "t.u16")->v.u, 60000);
        assert_int_equal(gguf_find(f, "t.i16")->v.i, -30000);
        assert_int_equal(gguf_find(f, "t.u32")->v.u, 4000000000u);
        assert_int_equal(gguf_find(f, "t.i32")->v.i, -2000000000);
        assert_true(gguf_find(f, "t.f32")->v.f == 1.5);
        assert_int_equal(gguf_find(f, "t.bool")->v.u, 1);
        assert_true(gguf_str_eq(gguf_find(f, "t.str")->v.s, "hi"));
        assert_true(gguf_find(f, "t.u64")->v.u == (1ull << 63) + 5);
        assert_true(gguf_find(f, "t.i64")->v.i == -(1ll << 62));
        assert_true(gguf_find(f, "t.f64")->v.f == -0.1);

        kv = gguf_find(f, "a.u8");
        assert_int_equal(kv->type, GGUF_TYPE_ARRAY);
        assert_int_equal(kv->v.arr.type, GGUF_TYPE_UINT8);
        assert_int_equal(kv->v.arr.n, 3);
        assert_memory_equal(kv->v.arr.data, "\1\2\3", 3);
        kv = gguf_find(f, "a.i16");
        int16_t i16[2];
        memcpy(i16, kv->v.arr.data, 4);         /* elements may be unaligned in the file */
        assert_int_equal(i16[0], -1);
        assert_int_equal(i16[1], 7);
        kv = gguf_find(f, "a.f64");
        double f64[2];
        memcpy(f64, kv->v.arr.data, 16);
        assert_true(f64[0] == 0.5 && f64[1] == -2.0);
        kv = gguf_find(f, "a.bool");
        assert_int_equal(kv->v.arr.type, GGUF_TYPE_BOOL);
        assert_memory_equal(kv->v.arr.data, "\0\1", 2);
        kv = gguf_find(f, "a.str");
        assert_int_equal(kv->v.arr.type, GGUF_TYPE_STRING);
        assert_int_equal(kv->v.arr.n, 3);
        assert_true(gguf_str_eq(kv->v.arr.strs[0], "x"));
        assert_int_equal(kv->v.arr.strs[1].len, 0);
        assert_int_equal(kv->v.arr.strs[2].len, 3);
        assert_memory_equal(kv->v.arr.strs[2].ptr, "y\0z", 3);
        kv = gguf_find(f, "a.empty");
        assert_int_equal(kv->v.arr.n, 0);
        kv = gguf_find(f, "\xff\xfe not utf-8");
        assert_non_null(kv);
        assert_int_equal(kv->v.s.len, 2);
        assert_null(gguf_find(f, "t.u"));
        assert_null(gguf_find(f, "t.u80"));
}

static void test_reader_reads_every_value_type_v3(void **state)
{
        struct tfile tf = { .kvs = kvs_every_type };
        struct bb b = build(&tf);
        struct gguf_file *f = NULL;
        assert_int_equal(open_bb(&b, &f), 0);
        assert_int_equal(f->version, 3);
        check_every_type(f, 19);
        assert_int_equal(f->n_tensors, 0);
        gguf_close(f);
        free(b.p);
}

/* v2 and v3 have the same layout (64-bit counts and lengths since v2; v3 only allowed
 * big-endian files): a v2 file reads the same. */
static void test_reader_reads_v2_file_like_v3(void **state)
{
        struct tfile tf = good;
        tf.version = 2;
        struct bb b = build(&tf);
        struct gguf_file *f = NULL;
        assert_int_equal(open_bb(&b, &f), 0);
        assert_int_equal(f->version, 2);
        assert_int_equal(f->n_tensors, 2);
        const struct gguf_tensor *t = gguf_find_tensor(f, "output_norm.weight");
        assert_non_null(t);
        assert_int_equal(t->type, RIG_TYPE_F32);
        assert_int_equal(t->ne[0], 5);
        assert_int_equal(t->ne[1], 1);
        assert_int_equal(t->size_bytes, 20);
        assert_ptr_equal(t->data, b.p + f->data_offset + 160);
        assert_int_equal(((const uint8_t *)t->data)[3], pattern(1, 3));
        gguf_close(f);
        free(b.p);
}

static void test_reader_finds_tensors_and_extents(void **state)
{
        struct bb b = build(&good);
        struct gguf_file *f = NULL;
        assert_int_equal(open_bb(&b, &f), 0);
        assert_int_equal(f->alignment, 32);
        assert_int_equal(f->data_offset % 32, 0);
        const struct gguf_tensor *t = gguf_find_tensor(f, "blk.0.attn_q.weight");
        assert_non_null(t);
        assert_ptr_equal(t, &f->tensors[0]);
        assert_int_equal(t->n_dims, 2);
        assert_int_equal(t->ne[0], 64);
        assert_int_equal(t->ne[1], 2);
        assert_int_equal(t->type, RIG_TYPE_Q8_0);
        assert_int_equal(t->size_bytes, 136);
        assert_null(gguf_find_tensor(f, "blk.0.attn_q"));
        struct gguf_str s;
        assert_int_equal(gguf_get_str(f, "general.architecture", &s), 0);
        assert_true(gguf_str_eq(s, "llama"));
        gguf_close(f);
        free(b.p);
}

static void kvs_getters(struct bb *b, uint64_t *n)
{
        bb_key(b, "u8", 0); bb_u8(b, 7);
        bb_key(b, "i64.neg", 11); bb_u64(b, (uint64_t)-1);
        bb_key(b, "i64.ok", 11); bb_u64(b, 4000000000u);
        bb_key(b, "u64.big", 10); bb_u64(b, 1ull << 32);
        bb_key(b, "f64", 12); bb_f64(b, 0.25);
        bb_key(b, "f64.huge", 12); bb_f64(b, 1e300);
        bb_key(b, "b", 7); bb_u8(b, 0);
        *n += 7;
}

static void test_getters_convert_integers_that_fit(void **state)
{
        struct tfile tf = { .kvs = kvs_getters };
        struct bb b = build(&tf);
        struct gguf_file *f = NULL;
        assert_int_equal(open_bb(&b, &f), 0);
        uint32_t u;
        float x;
        bool v = true;
        struct gguf_str s;
        assert_int_equal(gguf_get_u32(f, "u8", &u), 0);
        assert_int_equal(u, 7);
        assert_int_equal(gguf_get_u32(f, "i64.ok", &u), 0);
        assert_int_equal(u, 4000000000u);
        assert_int_equal(gguf_get_u32(f, "i64.neg", &u), -EINVAL);
        assert_int_equal(gguf_get_u32(f, "u64.big", &u), -EINVAL);
        assert_int_equal(gguf_get_u32(f, "f64", &u), -EINVAL);
        assert_int_equal(gguf_get_u32(f, "missing", &u), -ENOENT);
        assert_int_equal(gguf_get_f32(f, "f64", &x), 0);
        assert_true(x == 0.25f);
        assert_int_equal(gguf_get_f32(f, "f64.huge", &x), -EINVAL);
        assert_int_equal(gguf_get_f32(f, "u8", &x), -EINVAL);
        assert_int_equal(gguf_get_bool(f, "b", &v), 0);
        assert_false(v);
        assert_int_equal(gguf_get_bool(f, "u8", &v), -EINVAL);
        assert_int_equal(gguf_get_str(f, "u8", &s), -EINVAL);
        assert_int_equal(gguf_get_str(f, "nope", &s), -ENOENT);
        gguf_close(f);
        free(b.p);
}

static void kvs_align64(struct bb *b, uint64_t *n)
{
        bb_key(b, "general.alignment", 4);
        bb_u32(b, 64);
        (*n)++;
}

static void test_reader_uses_general_alignment(void **state)
{
        static const struct ttensor t[] = {
                { "a", 1, { 8 }, 0, 0 },
                { "b", 1, { 8 }, 0, 64 },
        };
        struct tfile tf = { .kvs = kvs_align64, .tensors = t, .n_tensors = 2, .alignment = 64 };
        struct bb b = build(&tf);
        struct gguf_file *f = NULL;
        assert_int_equal(open_bb(&b, &f), 0);
        assert_int_equal(f->alignment, 64);
        assert_int_equal(f->data_offset % 64, 0);
        gguf_close(f);
        free(b.p);

        /* offset 32 is aligned for the default but not for 64 */
        static const struct ttensor t2[] = { { "a", 1, { 8 }, 0, 32 } };
        tf.tensors = t2;
        tf.n_tensors = 1;
        assert_int_equal(open_tf(&tf), -EBADMSG);
        assert_err_contains("offset 32 is not a multiple of the alignment 64");
}

/* With no tensors, a file may stop right after the key/values, before the padding. */
static void test_reader_accepts_file_without_tensors_or_padding(void **state)
{
        struct tfile tf = { .kvs = kvs_arch };
        struct bb b = build(&tf);
        size_t unpadded = 24 + 8 + strlen("general.architecture") + 4 + 8 + 5;
        assert_true(b.len >= unpadded);
        b.len = unpadded;
        struct gguf_file *f = NULL;
        assert_int_equal(open_bb(&b, &f), 0);
        assert_int_equal(f->n_tensors, 0);
        gguf_close(f);
        free(b.p);
}

static void test_open_reads_file_and_names_it_in_errors(void **state)
{
        char path[] = "/tmp/rig-test-gguf-XXXXXX";
        int fd = mkstemp(path);
        assert_true(fd >= 0);
        struct bb b = build(&good);
        assert_int_equal(write(fd, b.p, b.len), (ssize_t)b.len);
        struct gguf_file *f = NULL;
        assert_int_equal(gguf_open(path, &f, err, sizeof(err)), 0);
        assert_true(f->is_mapped);
        assert_true(f->fd >= 0);
        assert_int_equal(f->size, b.len);
        assert_memory_equal(f->tensors[1].data, b.p + f->data_offset + 160, 20);
        gguf_close(f);

        assert_int_equal(ftruncate(fd, (off_t)b.len - 1), 0);
        assert_int_equal(gguf_open(path, &f, err, sizeof(err)), -EBADMSG);
        assert_null(f);
        assert_true(strncmp(err, path, strlen(path)) == 0);
        assert_err_contains("tensor 1 'output_norm.weight' extends past the end of the file");

        assert_int_equal(ftruncate(fd, 0), 0);
        assert_int_equal(gguf_open(path, &f, err, sizeof(err)), -EBADMSG);
        assert_err_contains("too short");
        close(fd);
        unlink(path);
        free(b.p);

        assert_int_equal(gguf_open("/nonexistent/rig.gguf", &f, err, sizeof(err)), -ENOENT);
        assert_err_contains("/nonexistent/rig.gguf");
        assert_int_equal(gguf_open("/tmp", &f, err, sizeof(err)), -EINVAL);
}

static void test_tokenizer_array_of_150k_strings_is_indexed(void **state)
{
        enum { N = 150000 };
        struct gguf_writer *w = gguf_writer_new();
        char **toks = malloc(N * sizeof(char *));
        for (size_t i = 0; i < N; i++)
                assert_true(asprintf(&toks[i], "tok%zu", i) > 0);
        assert_int_equal(gguf_writer_add_arr_str(w, "tokenizer.ggml.tokens", (const char *const *)toks, NULL, N), 0);
        char path[] = "/tmp/rig-test-gguf-tok-XXXXXX";
        close(mkstemp(path));
        assert_int_equal(gguf_writer_write(w, path, err, sizeof(err)), 0);
        struct gguf_file *f = NULL;
        assert_int_equal(gguf_open(path, &f, err, sizeof(err)), 0);
        const struct gguf_kv *kv = gguf_find(f, "tokenizer.ggml.tokens");
        assert_non_null(kv);
        assert_int_equal(kv->v.arr.n, N);
        for (size_t i = 0; i < N; i += 997)
                assert_true(gguf_str_eq(kv->v.arr.strs[i], toks[i]));
        assert_true(gguf_str_eq(kv->v.arr.strs[N - 1], toks[N - 1]));
        gguf_close(f);
        gguf_writer_free(w);
        unlink(path);
        for (size_t i = 0; i < N; i++)
                free(toks[i]);
        free(toks);
}

/* ---- writer round trips ---- */

struct fill_ctx {
        size_t tensor;
        int calls;
};

static int fill_pattern(void *ctx, void *dst, size_t size)
{
        struct fill_ctx *c = ctx;
        for (size_t j = 0; j < size; j++)
                ((uint8_t *)dst)[j] = pattern(c->tensor, j);
        c->calls++;
        return 0;
}

static int fill_fails(void *ctx, void *dst, size_t size)
{
        return -EIO;
}

struct wt {
        const char *name;
        enum rig_type type;
        uint32_t n_dims;
        uint64_t ne[4];
        size_t bytes;
};

/* The model both the round-trip test and gguf_reference.py check: the same names, types,
 * shapes and data pattern are written out in gguf_reference.py. */
static const struct wt ref_tensors[] = {
        { "token_embd.weight", RIG_TYPE_Q8_0, 2, { 64, 6 }, 2 * 34 * 6 },
        { "blk.0.attn_norm.weight", RIG_TYPE_F32, 1, { 64 }, 256 },
        { "blk.0.attn_q.weight", RIG_TYPE_Q4_K, 2, { 256, 3 }, 144 * 3 },
        { "blk.0.ffn_down.weight", RIG_TYPE_Q6_K, 2, { 256, 2 }, 210 * 2 },
        { "blk.0.ffn_up.weight", RIG_TYPE_Q5_K, 4, { 256, 1, 1, 2 }, 176 * 2 },
        { "blk.0.attn_k.weight", RIG_TYPE_Q4_0, 2, { 32, 5 }, 18 * 5 },
        { "blk.0.attn_v.weight", RIG_TYPE_BF16, 3, { 32, 2, 3 }, 2 * 32 * 6 },
        { "output.weight", RIG_TYPE_F16, 2, { 3, 7 }, 2 * 21 },
};
#define N_REF_TENSORS (sizeof(ref_tensors) / sizeof(ref_tensors[0]))

static const char *const ref_tokens[] = { "<unk>", "<s>", "</s>", "", "a\0b", "\xe2\x96\x81the" };
static const size_t ref_token_lens[] = { 5, 3, 4, 0, 3, 6 };
static const float ref_scores[] = { 0.0f, -1.5f, 2.25f, 3.0f, -0.5f, 0.125f };
static const int32_t ref_types[] = { 2, 3, 3, 1, 1, 1 };

static int write_reference(const char *path, struct fill_ctx *ctx, char *msg, size_t msg_size)
{
        struct gguf_writer *w = gguf_writer_new();
        if (!w)
                return -ENOMEM;
        int r = 0;
        r = r < 0 ? r : gguf_writer_add_str(w, "general.architecture", "llama");
        r = r < 0 ? r : gguf_writer_add_u32(w, "rig.test.u32", 4000000000u);
        r = r < 0 ? r : gguf_writer_add_i32(w, "rig.test.i32", -123456);
        r = r < 0 ? r : gguf_writer_add_f32(w, "rig.test.f32", 0.15625f);
        r = r < 0 ? r : gguf_writer_add_bool(w, "rig.test.true", true);
        r = r < 0 ? r : gguf_writer_add_bool(w, "rig.test.false", false);
        r = r < 0 ? r : gguf_writer_add_str(w, "rig.test.utf8", "h\xc3\xa9llo \xe2\x9c\x93");
        r = r < 0 ? r : gguf_writer_add_arr_str(w, "tokenizer.ggml.tokens", ref_tokens, ref_token_lens, 6);
        r = r < 0 ? r : gguf_writer_add_arr_f32(w, "tokenizer.ggml.scores", ref_scores, 6);
        r = r < 0 ? r : gguf_writer_add_arr_i32(w, "tokenizer.ggml.token_type", ref_types, 6);
        r = r < 0 ? r : gguf_writer_add_arr_i32(w, "rig.test.empty", NULL, 0);
        /* half the tensors through fill callbacks, half from buffers */
        uint8_t *bufs[N_REF_TENSORS] = { 0 };
        for (size_t i = 0; r >= 0 && i < N_REF_TENSORS; i++) {
                const struct wt *t = &ref_tensors[i];
                ctx[i].tensor = i;
                if (i % 2 == 0) {
                        r = gguf_writer_add_tensor(w, t->name, t->type, t->n_dims, t->ne, fill_pattern, &ctx[i]);
                        continue;
                }
                bufs[i] = malloc(t->bytes);
                fill_pattern(&ctx[i], bufs[i], t->bytes);
                ctx[i].calls = 0;
                r = gguf_writer_add_tensor_data(w, t->name, t->type, t->n_dims, t->ne, bufs[i]);
        }
        if (r >= 0)
                r = gguf_writer_write(w, path, msg, msg_size);
        gguf_writer_free(w);
        for (size_t i = 0; i < N_REF_TENSORS; i++)
                free(bufs[i]);
        return r;
}

static void check_reference(const struct gguf_file *f)
{
        assert_int_equal(f->version, 3);
        assert_int_equal(f->n_kv, 11);
        assert_int_equal(f->alignment, 32);
        uint32_t u;
        float x;
        bool v;
        struct gguf_str s;
        assert_int_equal(gguf_get_str(f, "general.architecture", &s), 0);
        assert_true(gguf_str_eq(s, "llama"));
        assert_int_equal(gguf_get_u32(f, "rig.test.u32", &u), 0);
        assert_int_equal(u, 4000000000u);
        assert_int_equal(gguf_find(f, "rig.test.i32")->type, GGUF_TYPE_INT32);
        assert_int_equal(gguf_find(f, "rig.test.i32")->v.i, -123456);
        assert_int_equal(gguf_get_f32(f, "rig.test.f32", &x), 0);
        assert_true(x == 0.15625f);
        assert_int_equal(gguf_get_bool(f, "rig.test.true", &v), 0);
        assert_true(v);
        assert_int_equal(gguf_get_bool(f, "rig.test.false", &v), 0);
        assert_false(v);
        assert_int_equal(gguf_get_str(f, "rig.test.utf8", &s), 0);
        assert_true(gguf_str_eq(s, "h\xc3\xa9llo \xe2\x9c\x93"));
        const struct gguf_kv *kv = gguf_find(f, "tokenizer.ggml.tokens");
        assert_int_equal(kv->v.arr.n, 6);
        for (size_t i = 0; i < 6; i++) {
                assert_int_equal(kv->v.arr.strs[i].len, ref_token_lens[i]);
                assert_memory_equal(kv->v.arr.strs[i].ptr, ref_tokens[i], ref_token_lens[i]);
        }
        kv = gguf_find(f, "tokenizer.ggml.scores");
        assert_int_equal(kv->v.arr.type, GGUF_TYPE_FLOAT32);
        assert_memory_equal(kv->v.arr.data, ref_scores, sizeof(ref_scores));
        kv = gguf_find(f, "tokenizer.ggml.token_type");
        assert_int_equal(kv->v.arr.type, GGUF_TYPE_INT32);
        assert_memory_equal(kv->v.arr.data, ref_types, sizeof(ref_types));
        assert_int_equal(gguf_find(f, "rig.test.empty")->v.arr.n, 0);

        assert_int_equal(f->n_tensors, N_REF_TENSORS);
        uint64_t offset = 0;
        for (size_t i = 0; i < N_REF_TENSORS; i++) {
                const struct wt *w = &ref_tensors[i];
                const struct gguf_tensor *t = &f->tensors[i];
                assert_true(gguf_str_eq(t->name, w->name));
                assert_ptr_equal(gguf_find_tensor(f, w->name), t);
                assert_int_equal(t->type, w->type);
                assert_int_equal(t->n_dims, w->n_dims);
                for (uint32_t d = 0; d < 4; d++)
                        assert_int_equal(t->ne[d], d < w->n_dims ? w->ne[d] : 1);
                assert_int_equal(t->size_bytes, w->bytes);
                assert_int_equal(t->offset, offset);
                for (size_t j = 0; j < w->bytes; j++)
                        if (((const uint8_t *)t->data)[j] != pattern(i, j))
                                fail_msg("tensor %zu byte %zu", i, j);
                offset += (w->bytes + 31) / 32 * 32;
        }
        /* the last tensor is padded too, as ggml writes it */
        assert_int_equal(f->size, f->data_offset + offset);
}

static char tmpdir[256];

static int setup_tmpdir(void **state)
{
        snprintf(tmpdir, sizeof(tmpdir), "/tmp/rig-test-gguf-dir-XXXXXX");
        return mkdtemp(tmpdir) ? 0 : -1;
}

static int teardown_tmpdir(void **state)
{
        DIR *d = opendir(tmpdir);
        struct dirent *e;
        while (d && (e = readdir(d))) {
                char p[512];
                if (e->d_name[0] == '.')
                        continue;
                snprintf(p, sizeof(p), "%s/%s", tmpdir, e->d_name);
                unlink(p);
        }
        if (d)
                closedir(d);
        rmdir(tmpdir);
        return 0;
}

static size_t dir_entries(void)
{
        size_t n = 0;
        DIR *d = opendir(tmpdir);
        struct dirent *e;
        while (d && (e = readdir(d)))
                n += e->d_name[0] != '.';
        if (d)
                closedir(d);
        return n;
}

static void test_writer_round_trip_keeps_values_and_tensors(void **state)
{
        char path[512];
        snprintf(path, sizeof(path), "%s/model.gguf", tmpdir);
        struct fill_ctx ctx[N_REF_TENSORS] = { 0 };
        assert_int_equal(write_reference(path, ctx, err, sizeof(err)), 0);
        for (size_t i = 0; i < N_REF_TENSORS; i += 2)
                assert_int_equal(ctx[i].calls, 1);
        struct gguf_file *f = NULL;
        if (gguf_open(path, &f, err, sizeof(err)) < 0)
                fail_msg("%s", err);
        check_reference(f);
        gguf_close(f);
        assert_int_equal(dir_entries(), 1);     /* no temporary file left behind */
        struct stat st;
        assert_int_equal(stat(path, &st), 0);
        assert_int_equal(st.st_mode & 0777, 0644);
        unlink(path);
}

static void test_writer_custom_alignment_pads_to_it(void **state)
{
        char path[512];
        snprintf(path, sizeof(path), "%s/aligned.gguf", tmpdir);
        struct gguf_writer *w = gguf_writer_new();
        static const float a[3] = { 1, 2, 3 };
        uint64_t ne = 3;
        assert_int_equal(gguf_writer_add_u32(w, "general.alignment", 48), -EINVAL);
        assert_int_equal(gguf_writer_add_u32(w, "general.alignment", 128), 0);
        assert_int_equal(gguf_writer_add_tensor_data(w, "a", RIG_TYPE_F32, 1, &ne, a), 0);
        assert_int_equal(gguf_writer_add_tensor_data(w, "b", RIG_TYPE_F32, 1, &ne, a), 0);
        assert_int_equal(gguf_writer_write(w, path, err, sizeof(err)), 0);
        gguf_writer_free(w);
        struct gguf_file *f = NULL;
        assert_int_equal(gguf_open(path, &f, err, sizeof(err)), 0);
        assert_int_equal(f->alignment, 128);
        assert_int_equal(f->data_offset % 128, 0);
        assert_int_equal(f->tensors[1].offset, 128);
        assert_int_equal(f->size, f->data_offset + 256);
        assert_memory_equal(f->tensors[1].data, a, sizeof(a));
        gguf_close(f);
        unlink(path);
}

static void test_writer_refuses_bad_input(void **state)
{
        struct gguf_writer *w = gguf_writer_new();
        uint64_t ne[4] = { 32, 2, 1, 1 };
        static uint8_t data[4096];
        char longname[80];
        memset(longname, 'x', sizeof(longname) - 1);
        longname[sizeof(longname) - 1] = '\0';
        assert_int_equal(gguf_writer_add_u32(w, "k", 1), 0);
        assert_int_equal(gguf_writer_add_str(w, "k", "again"), -EEXIST);
        assert_int_equal(gguf_writer_add_u32(w, "", 1), -EINVAL);
        assert_int_equal(gguf_writer_add_i32(w, "general.alignment", 32), -EINVAL);
        assert_int_equal(gguf_writer_add_tensor_data(w, "t", RIG_TYPE_Q8_0, 2, ne, data), 0);
        assert_int_equal(gguf_writer_add_tensor_data(w, "t", RIG_TYPE_Q8_0, 2, ne, data), -EEXIST);
        assert_int_equal(gguf_writer_add_tensor_data(w, "u", RIG_TYPE_Q8_0, 0, ne, data), -EINVAL);
        assert_int_equal(gguf_writer_add_tensor_data(w, "u", RIG_TYPE_Q8_0, 5, ne, data), -EINVAL);
        assert_int_equal(gguf_writer_add_tensor_data(w, "u", RIG_TYPE_Q4_K, 2, ne, data), -EINVAL);
        assert_int_equal(gguf_writer_add_tensor_data(w, "u", RIG_TYPE_Q8_K, 2, ne, data), -EOPNOTSUPP);
        assert_int_equal(gguf_writer_add_tensor_data(w, "u", (enum rig_type)17, 2, ne, data), -EOPNOTSUPP);
        assert_int_equal(gguf_writer_add_tensor_data(w, longname, RIG_TYPE_F32, 2, ne, data), -ENAMETOOLONG);
        uint64_t zero[2] = { 32, 0 };
        assert_int_equal(gguf_writer_add_tensor_data(w, "u", RIG_TYPE_F32, 2, zero, data), -EINVAL);
        uint64_t huge[4] = { 1ull << 40, 1ull << 40, 1, 1 };
        assert_int_equal(gguf_writer_add_tensor_data(w, "u", RIG_TYPE_F32, 2, huge, data), -EOVERFLOW);
        gguf_writer_free(w);
}

static void test_writer_failed_write_leaves_old_file_and_no_temp(void **state)
{
        char path[512];
        snprintf(path, sizeof(path), "%s/model.gguf", tmpdir);
        FILE *old = fopen(path, "w");
        fputs("old", old);
        fclose(old);

        struct gguf_writer *w = gguf_writer_new();
        uint64_t ne = 32;
        assert_int_equal(gguf_writer_add_tensor(w, "broken", RIG_TYPE_F32, 1, &ne, fill_fails, NULL), 0);
        assert_int_equal(gguf_writer_write(w, path, err, sizeof(err)), -EIO);
        assert_err_contains("broken");
        gguf_writer_free(w);

        assert_int_equal(dir_entries(), 1);
        char buf[8] = { 0 };
        old = fopen(path, "r");
        assert_non_null(fgets(buf, sizeof(buf), old));
        fclose(old);
        assert_string_equal(buf, "old");
        unlink(path);

        char missing[600];
        snprintf(missing, sizeof(missing), "%s/no/such/dir/m.gguf", tmpdir);
        w = gguf_writer_new();
        assert_int_equal(gguf_writer_write(w, missing, err, sizeof(err)), -ENOENT);
        gguf_writer_free(w);
}

/* ---- each way a file can be wrong ---- */

static void test_every_truncation_is_refused(void **state)
{
        struct bb b = build(&good);
        for (size_t n = 0; n < b.len; n++) {
                struct gguf_file *f = NULL;
                struct bb cut = { .p = b.p, .len = n };
                int r = open_bb(&cut, &f);
                if (r != -EBADMSG)
                        fail_msg("prefix of %zu of %zu bytes: %d (%s)", n, b.len, r, err);
        }
        struct bb cut = { .p = b.p, .len = 30 };
        struct gguf_file *f = NULL;
        assert_int_equal(open_bb(&cut, &f), -EBADMSG);
        assert_err_contains("key/value count 1 at offset 16 cannot fit in the 6 bytes after the header");
        free(b.p);

        /* with counts that fit, the message says what was cut and where */
        struct tfile tf = { .kvs = kvs_every_type };
        b = build(&tf);
        struct bb kv = { 0 };
        uint64_t n_kv = 0;
        kvs_every_type(&kv, &n_kv);
        size_t end = 24 + kv.len;               /* build() pads after this */
        free(kv.p);
        cut = (struct bb){ .p = b.p, .len = end - 1 };
        assert_int_equal(open_bb(&cut, &f), -EBADMSG);
        assert_err_contains("kv 18 '\\xff\\xfe not utf-8': string length at offset");
        assert_err_contains("is 2 bytes long but only 1 bytes are left in the file (truncated?)");
        cut.len = end - 5;
        assert_int_equal(open_bb(&cut, &f), -EBADMSG);
        assert_err_contains("kv 18 '\\xff\\xfe not utf-8': string length at offset");
        assert_err_contains("needs 8 bytes but the file ends at");
        free(b.p);
}

static void test_bad_magic_is_refused(void **state)
{
        struct tfile tf = good;
        tf.magic = "GGML";
        assert_int_equal(open_tf(&tf), -EBADMSG);
        assert_err_contains("not a GGUF file");
        assert_err_contains("47 47 4d 4c");
}

static void test_version_1_is_refused(void **state)
{
        struct tfile tf = good;
        tf.version = 1;
        assert_int_equal(open_tf(&tf), -EOPNOTSUPP);
        assert_err_contains("GGUF v1");
}

static void test_big_endian_file_gets_its_own_message(void **state)
{
        struct tfile tf = good;
        tf.version = 0x03000000;
        assert_int_equal(open_tf(&tf), -EOPNOTSUPP);
        assert_err_contains("big-endian");
        assert_err_contains("(v3)");
}

static void test_unknown_version_is_refused(void **state)
{
        struct tfile tf = good;
        tf.version = 4;
        assert_int_equal(open_tf(&tf), -EOPNOTSUPP);
        assert_err_contains("unsupported GGUF version 4");
}

static void kvs_unknown_type(struct bb *b, uint64_t *n)
{
        kvs_arch(b, n);
        bb_key(b, "x.weird", 13);
        bb_u32(b, 0);
        (*n)++;
}

static void test_unknown_value_type_is_refused(void **state)
{
        struct tfile tf = good;
        tf.kvs = kvs_unknown_type;
        assert_int_equal(open_tf(&tf), -EBADMSG);
        assert_err_contains("kv 1 'x.weird': unknown value type 13 at offset");
}

static void kvs_unknown_elem_type(struct bb *b, uint64_t *n)
{
        bb_key(b, "x.arr", 9);
        bb_u32(b, 99);
        bb_u64(b, 0);
        (*n)++;
}

static void test_unknown_array_element_type_is_refused(void **state)
{
        struct tfile tf = good;
        tf.kvs = kvs_unknown_elem_type;
        assert_int_equal(open_tf(&tf), -EBADMSG);
        assert_err_contains("kv 0 'x.arr': unknown array element type 99");
}

static void kvs_nested(struct bb *b, uint64_t *n)
{
        bb_key(b, "x.nested", 9);
        bb_u32(b, 9);
        bb_u64(b, 1);
        bb_u32(b, 4);
        bb_u64(b, 1);
        bb_u32(b, 5);
        (*n)++;
}

static void test_nested_array_is_refused(void **state)
{
        struct tfile tf = good;
        tf.kvs = kvs_nested;
        assert_int_equal(open_tf(&tf), -EOPNOTSUPP);
        assert_err_contains("kv 0 'x.nested': nested arrays");
}

static void test_unsupported_tensor_type_is_named(void **state)
{
        struct ttensor t[] = { { "blk.0.attn_q.weight", 2, { 256, 2 }, 17, 0 } };
        struct tfile tf = { .tensors = t, .n_tensors = 1, .set_data_bytes = true, .data_bytes = 4096 };
        assert_int_equal(open_tf(&tf), -EOPNOTSUPP);
        assert_err_contains("tensor 0 'blk.0.attn_q.weight': tensor type IQ2_XS (17) at offset");
        assert_err_contains("is not supported");
        t[0].type = 15;         /* Q8_K: activations only */
        assert_int_equal(open_tf(&tf), -EOPNOTSUPP);
        assert_err_contains("Q8_K (15)");
        t[0].type = 4;          /* retired by ggml: no name */
        assert_int_equal(open_tf(&tf), -EOPNOTSUPP);
        assert_err_contains("unknown tensor type 4");
        t[0].type = 1000;
        assert_int_equal(open_tf(&tf), -EOPNOTSUPP);
        assert_err_contains("unknown tensor type 1000");
}

static void test_n_dims_zero_or_over_four_is_refused(void **state)
{
        struct ttensor t[] = { { "a", 0, { 0 }, 0, 0 } };
        struct tfile tf = { .tensors = t, .n_tensors = 1, .set_data_bytes = true, .data_bytes = 64 };
        assert_int_equal(open_tf(&tf), -EBADMSG);
        assert_err_contains("tensor 0 'a': n_dims 0 at offset");
        t[0].n_dims = 5;        /* the builder writes 4 dims, the reader stops at n_dims */
        assert_int_equal(open_tf(&tf), -EBADMSG);
        assert_err_contains("n_dims 5");
}

static void test_zero_dimension_is_refused(void **state)
{
        struct ttensor t[] = { { "a", 3, { 4, 0, 2 }, 0, 0 } };
        struct tfile tf = { .tensors = t, .n_tensors = 1, .set_data_bytes = true, .data_bytes = 64 };
        assert_int_equal(open_tf(&tf), -EBADMSG);
        assert_err_contains("tensor 0 'a': dimension 1 at offset");
        assert_err_contains("is 0");
}

static void test_row_not_multiple_of_block_is_refused(void **state)
{
        struct ttensor t[] = { { "q", 2, { 100, 2 }, 12, 0 } };
        struct tfile tf = { .tensors = t, .n_tensors = 1, .set_data_bytes = true, .data_bytes = 1024 };
        assert_int_equal(open_tf(&tf), -EBADMSG);
        assert_err_contains("tensor 0 'q': row length 100 is not a multiple of the Q4_K block size 256");
}

static void test_size_overflow_is_refused(void **state)
{
        struct ttensor t[] = { { "big", 4, { 1ull << 32, 1ull << 16, 1ull << 16, 2 }, 0, 0 } };
        struct tfile tf = { .tensors = t, .n_tensors = 1, .set_data_bytes = true, .data_bytes = 64 };
        assert_int_equal(open_tf(&tf), -EOVERFLOW);
        assert_err_contains("tensor 0 'big': size of [4294967296, 65536, 65536, 2] F32 overflows");
        t[0].n_dims = 1;
        t[0].ne[0] = 1ull << 63;
        assert_int_equal(open_tf(&tf), -EOVERFLOW);
        assert_err_contains("more than ggml can hold");
        /* fits size_t, but not in the file */
        t[0].n_dims = 2;
        t[0].ne[0] = 1ull << 30;
        t[0].ne[1] = 1ull << 20;
        assert_int_equal(open_tf(&tf), -EBADMSG);
        assert_err_contains("extends past the end of the file");
}

static void test_tensor_past_end_is_refused(void **state)
{
        struct tfile tf = good;
        tf.set_data_bytes = true;
        tf.data_bytes = 170;    /* output_norm.weight needs 160..180 */
        struct bb b = build(&tf);
        struct gguf_file *f = NULL;
        assert_int_equal(open_bb(&b, &f), -EBADMSG);
        char want[200];
        size_t data_offset = b.len - 170;
        snprintf(want, sizeof(want),
                 "<memory>: tensor 1 'output_norm.weight' extends past the end of the file (offset %zu, 20 bytes, file %zu bytes)",
                 data_offset + 160, b.len);
        assert_string_equal(err, want);
        free(b.p);

        /* an offset so large that data_offset + offset wraps */
        struct ttensor t[] = { { "far", 1, { 8 }, 0, UINT64_MAX - 31 } };
        struct tfile tf2 = { .tensors = t, .n_tensors = 1, .set_data_bytes = true, .data_bytes = 64 };
        assert_int_equal(open_tf(&tf2), -EBADMSG);
        assert_err_contains("tensor 0 'far' extends past the end of the file");
}

static void test_overlapping_tensors_are_refused(void **state)
{
        static const struct ttensor t[] = {
                { "a", 1, { 16 }, 0, 0 },       /* 64 bytes: 0..64 */
                { "b", 1, { 16 }, 0, 128 },
                { "c", 1, { 8 }, 0, 32 },       /* 32..64 lies inside a */
        };
        struct tfile tf = { .tensors = t, .n_tensors = 3 };
        assert_int_equal(open_tf(&tf), -EBADMSG);
        assert_err_contains("tensor 0 'a'");
        assert_err_contains("overlaps tensor 2 'c'");
}

static void test_misaligned_offset_is_refused(void **state)
{
        static const struct ttensor t[] = { { "a", 1, { 4 }, 0, 16 } };
        struct tfile tf = { .tensors = t, .n_tensors = 1 };
        assert_int_equal(open_tf(&tf), -EBADMSG);
        assert_err_contains("tensor 0 'a': offset 16 is not a multiple of the alignment 32");
}

static void kvs_duplicate(struct bb *b, uint64_t *n)
{
        kvs_arch(b, n);
        bb_key(b, "x", 4);
        bb_u32(b, 1);
        kvs_arch(b, n);
        (*n)++;
}

static void test_duplicate_keys_are_refused(void **state)
{
        struct tfile tf = good;
        tf.kvs = kvs_duplicate;
        assert_int_equal(open_tf(&tf), -EBADMSG);
        assert_err_contains("duplicate key 'general.architecture' (kv 0 at offset 24 and kv 2 at offset");
}

static void test_duplicate_tensor_names_are_refused(void **state)
{
        static const struct ttensor t[] = {
                { "w", 1, { 8 }, 0, 0 },
                { "v", 1, { 8 }, 0, 32 },
                { "w", 1, { 8 }, 0, 64 },
        };
        struct tfile tf = { .tensors = t, .n_tensors = 3 };
        assert_int_equal(open_tf(&tf), -EBADMSG);
        assert_err_contains("duplicate tensor name: tensor 0 'w'");
        assert_err_contains("and tensor 2");
}

static void kvs_empty_key(struct bb *b, uint64_t *n)
{
        bb_key(b, "", 4);
        bb_u32(b, 1);
        (*n)++;
}

static void test_empty_key_is_refused(void **state)
{
        struct tfile tf = good;
        tf.kvs = kvs_empty_key;
        assert_int_equal(open_tf(&tf), -EBADMSG);
        assert_err_contains("kv 0 at offset 24 has an empty key");
}

static void test_absurd_counts_are_refused_before_allocating(void **state)
{
        struct tfile tf = good;
        tf.set_n_kv = true;
        tf.n_kv = UINT64_MAX / 2;
        assert_int_equal(open_tf(&tf), -EBADMSG);
        assert_err_contains("key/value count 9223372036854775807 at offset 16 cannot fit");
        tf = good;
        struct bb b = build(&tf);
        uint64_t n_tensors = 1ull << 40;
        memcpy(b.p + 8, &n_tensors, 8);
        struct gguf_file *f = NULL;
        assert_int_equal(open_bb(&b, &f), -EBADMSG);
        assert_err_contains("tensor count 1099511627776 at offset 8 cannot fit");
        free(b.p);
}

static void kvs_absurd_str_array(struct bb *b, uint64_t *n)
{
        bb_key(b, "tokenizer.ggml.tokens", 9);
        bb_u32(b, 8);
        bb_u64(b, 1ull << 60);
        bb_str(b, "a");
        (*n)++;
}

static void kvs_absurd_u32_array(struct bb *b, uint64_t *n)
{
        bb_key(b, "x.arr", 9);
        bb_u32(b, 4);
        bb_u64(b, UINT64_MAX / 2);
        bb_u32(b, 1);
        (*n)++;
}

static void test_absurd_array_counts_are_refused(void **state)
{
        struct tfile tf = good;
        tf.kvs = kvs_absurd_str_array;
        assert_int_equal(open_tf(&tf), -EBADMSG);
        assert_err_contains("kv 0 'tokenizer.ggml.tokens': array of 1152921504606846976 string at offset");
        assert_err_contains("cannot fit in the");
        tf.kvs = kvs_absurd_u32_array;
        assert_int_equal(open_tf(&tf), -EBADMSG);
        assert_err_contains("array of 9223372036854775807 uint32");
}

static void kvs_align_48(struct bb *b, uint64_t *n)
{
        bb_key(b, "general.alignment", 4);
        bb_u32(b, 48);
        (*n)++;
}

static void kvs_align_0(struct bb *b, uint64_t *n)
{
        bb_key(b, "general.alignment", 4);
        bb_u32(b, 0);
        (*n)++;
}

static void kvs_align_u64(struct bb *b, uint64_t *n)
{
        bb_key(b, "general.alignment", 10);
        bb_u64(b, 32);
        (*n)++;
}

static void test_alignment_not_power_of_two_is_refused(void **state)
{
        struct tfile tf = good;
        tf.kvs = kvs_align_48;
        assert_int_equal(open_tf(&tf), -EBADMSG);
        assert_err_contains("general.alignment 48 (kv at offset 24) is not a power of two");
        tf.kvs = kvs_align_0;
        assert_int_equal(open_tf(&tf), -EBADMSG);
        assert_err_contains("general.alignment 0");
        tf.kvs = kvs_align_u64;
        assert_int_equal(open_tf(&tf), -EBADMSG);
        assert_err_contains("general.alignment (kv at offset 24) is a uint64; the format says uint32");
}

static void kvs_bad_bool(struct bb *b, uint64_t *n)
{
        bb_key(b, "x.flag", 7);
        bb_u8(b, 2);
        (*n)++;
}

static void test_bool_other_than_0_or_1_is_refused(void **state)
{
        struct tfile tf = good;
        tf.kvs = kvs_bad_bool;
        assert_int_equal(open_tf(&tf), -EBADMSG);
        assert_err_contains("kv 0 'x.flag': bool value 2 at offset");
}

static void test_names_from_the_file_are_escaped_in_messages(void **state)
{
        static const struct ttensor t[] = { { "a\nb'\x01", 1, { 4 }, 0, 16 } };
        struct tfile tf = { .tensors = t, .n_tensors = 1 };
        assert_int_equal(open_tf(&tf), -EBADMSG);
        assert_err_contains("tensor 0 'a\\x0ab\\x27\\x01': offset 16");
}

/* ---- the helper modes for gguf_reference.py ---- */

/* What gguf_reference.py writes with its own writer: the key/values of kvs_every_type plus
 * general.alignment = 64, and three tensors holding pattern() bytes. */
static void check_python(const struct gguf_file *f)
{
        static const struct {
                const char *name;
                enum rig_type type;
                uint32_t n_dims;
                uint64_t ne0, ne1, offset;
                size_t bytes;
        } want[] = {
                { "w", RIG_TYPE_Q8_0, 2, 32, 2, 0, 68 },
                { "v", RIG_TYPE_F32, 1, 5, 1, 128, 20 },
                { "k", RIG_TYPE_Q4_K, 1, 256, 1, 192, 144 },
        };
        check_every_type(f, 20);
        assert_int_equal(f->alignment, 64);
        assert_int_equal(f->data_offset % 64, 0);
        assert_int_equal(f->n_tensors, 3);
        for (size_t i = 0; i < 3; i++) {
                const struct gguf_tensor *t = &f->tensors[i];
                assert_true(gguf_str_eq(t->name, want[i].name));
                assert_int_equal(t->type, want[i].type);
                assert_int_equal(t->n_dims, want[i].n_dims);
                assert_int_equal(t->ne[0], want[i].ne0);
                assert_int_equal(t->ne[1], want[i].ne1);
                assert_int_equal(t->offset, want[i].offset);
                assert_int_equal(t->size_bytes, want[i].bytes);
                for (size_t j = 0; j < want[i].bytes; j++)
                        assert_int_equal(((const uint8_t *)t->data)[j], pattern(i, j));
        }
}

static void test_python_file(void **state)
{
        struct gguf_file *f = NULL;
        if (gguf_open(*state, &f, err, sizeof(err)) < 0)
                fail_msg("%s", err);
        printf("%s: GGUF v%u, %zu key/values, %zu tensors: as written\n", (const char *)*state, f->version, f->n_kv, f->n_tensors);
        check_python(f);
        gguf_close(f);
}

/* cmocka turns failed asserts into a failed test with the line, outside a test they abort. */
static int check_python_file(const char *path)
{
        const struct CMUnitTest tests[] = {
                cmocka_unit_test_prestate(test_python_file, (void *)path),
        };
        return cmocka_run_group_tests_name("python-written file", tests, NULL, NULL);
}

int main(int argc, char **argv)
{
        if (argc == 3 && strcmp(argv[1], "--write-reference") == 0) {
                struct fill_ctx ctx[N_REF_TENSORS] = { 0 };
                if (write_reference(argv[2], ctx, err, sizeof(err)) < 0) {
                        fprintf(stderr, "%s\n", err);
                        return 1;
                }
                return 0;
        }
        if (argc == 3 && strcmp(argv[1], "--check-python") == 0)
                return check_python_file(argv[2]);

        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_reader_reads_every_value_type_v3),
                cmocka_unit_test(test_reader_reads_v2_file_like_v3),
                cmocka_unit_test(test_reader_finds_tensors_and_extents),
                cmocka_unit_test(test_getters_convert_integers_that_fit),
                cmocka_unit_test(test_reader_uses_general_alignment),
                cmocka_unit_test(test_reader_accepts_file_without_tensors_or_padding),
                cmocka_unit_test(test_open_reads_file_and_names_it_in_errors),
                cmocka_unit_test(test_tokenizer_array_of_150k_strings_is_indexed),
                cmocka_unit_test(test_writer_round_trip_keeps_values_and_tensors),
                cmocka_unit_test(test_writer_custom_alignment_pads_to_it),
                cmocka_unit_test(test_writer_refuses_bad_input),
                cmocka_unit_test(test_writer_failed_write_leaves_old_file_and_no_temp),
                cmocka_unit_test(test_every_truncation_is_refused),
                cmocka_unit_test(test_bad_magic_is_refused),
                cmocka_unit_test(test_version_1_is_refused),
                cmocka_unit_test(test_big_endian_file_gets_its_own_message),
                cmocka_unit_test(test_unknown_version_is_refused),
                cmocka_unit_test(test_unknown_value_type_is_refused),
                cmocka_unit_test(test_unknown_array_element_type_is_refused),
                cmocka_unit_test(test_nested_array_is_refused),
                cmocka_unit_test(test_unsupported_tensor_type_is_named),
                cmocka_unit_test(test_n_dims_zero_or_over_four_is_refused),
                cmocka_unit_test(test_zero_dimension_is_refused),
                cmocka_unit_test(test_row_not_multiple_of_block_is_refused),
                cmocka_unit_test(test_size_overflow_is_refused),
                cmocka_unit_test(test_tensor_past_end_is_refused),
                cmocka_unit_test(test_overlapping_tensors_are_refused),
                cmocka_unit_test(test_misaligned_offset_is_refused),
                cmocka_unit_test(test_duplicate_keys_are_refused),
                cmocka_unit_test(test_duplicate_tensor_names_are_refused),
                cmocka_unit_test(test_empty_key_is_refused),
                cmocka_unit_test(test_absurd_counts_are_refused_before_allocating),
                cmocka_unit_test(test_absurd_array_counts_are_refused),
                cmocka_unit_test(test_alignment_not_power_of_two_is_refused),
                cmocka_unit_test(test_bool_other_than_0_or_1_is_refused),
                cmocka_unit_test(test_names_from_the_file_are_escaped_in_messages),
        };
        return cmocka_run_group_tests(tests, setup_tmpdir, teardown_tmpdir);
}
