/* libFuzzer target: the GGUF reader, which takes model files from anywhere. Opens the input
 * from memory and touches every byte the reader hands out (keys, values, string tables, tensor
 * data ends), so a bounds check the reader missed shows up under ASan as a read past the input. */
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "gguf.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static volatile uint8_t sink;

static void touch(const void *p, size_t n)
{
        const uint8_t *b = p;
        uint8_t x = 0;
        for (size_t i = 0; i < n; i++)
                x ^= b[i];
        sink ^= x;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
        char err[512];
        struct gguf_file *f = NULL;
        if (gguf_open_memory(data, size, &f, err, sizeof(err)) < 0) {
                touch(err, strnlen(err, sizeof(err)));
                return 0;
        }
        for (size_t i = 0; i < f->n_kv; i++) {
                const struct gguf_kv *kv = &f->kv[i];
                touch(kv->key.ptr, kv->key.len);
                if (kv->type == GGUF_TYPE_STRING)
                        touch(kv->v.s.ptr, kv->v.s.len);
                if (kv->type == GGUF_TYPE_ARRAY && kv->v.arr.type == GGUF_TYPE_STRING) {
                        for (size_t j = 0; j < kv->v.arr.n; j++)
                                touch(kv->v.arr.strs[j].ptr, kv->v.arr.strs[j].len);
                } else if (kv->type == GGUF_TYPE_ARRAY && kv->v.arr.n) {
                        /* numeric elements: the first and last byte bound the extent */
                        static const size_t bytes[] = { 1, 1, 2, 2, 4, 4, 4, 1, 0, 0, 8, 8, 8 };
                        const uint8_t *a = kv->v.arr.data;
                        touch(a, 1);
                        touch(a + kv->v.arr.n * bytes[kv->v.arr.type] - 1, 1);
                }

                /* lookups by every key must find an entry with that key */
                if (kv->key.len < 256 && !memchr(kv->key.ptr, 0, kv->key.len)) {
                        char key[256];
                        memcpy(key, kv->key.ptr, kv->key.len);
                        key[kv->key.len] = '\0';
                        const struct gguf_kv *found = gguf_find(f, key);
                        if (!found || !gguf_str_eq(found->key, key))
                                __builtin_trap();
                        uint32_t u;
                        float x;
                        bool b;
                        struct gguf_str s;
                        gguf_get_u32(f, key, &u);
                        gguf_get_f32(f, key, &x);
                        gguf_get_bool(f, key, &b);
                        gguf_get_str(f, key, &s);
                }
        }
        for (size_t i = 0; i < f->n_tensors; i++) {
                const struct gguf_tensor *t = &f->tensors[i];
                touch(t->name.ptr, t->name.len);
                const uint8_t *d = t->data;
                if (t->size_bytes == 0 || d < data || d + t->size_bytes > data + size)
                        __builtin_trap();
                touch(d, 1);
                touch(d + t->size_bytes - 1, 1);
                if (t->name.len < 256 && !memchr(t->name.ptr, 0, t->name.len)) {
                        char name[256];
                        memcpy(name, t->name.ptr, t->name.len);
                        name[t->name.len] = '\0';
                        if (gguf_find_tensor(f, name) != t)     /* names are unique */
                                __builtin_trap();
                }
        }
        gguf_close(f);
        return 0;
}
