/* tokenizer.c — the two tokenizer kinds GGUF files carry: SentencePiece-style BPE by score
 * ("llama": Llama 2, Mistral) and byte-level BPE by merge rank ("gpt2": Llama 3, Qwen 2/2.5/3),
 * matching Hugging Face tokenizers id for id (tests/tokenizer checks it against the npm ports). */
#define PCRE2_CODE_UNIT_WIDTH 8

#include "tokenizer.h"

#include <errno.h>
#include <pcre2.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <utf8proc.h>

#include "gguf.h"
#include "util.h"
#include "errmsg.h"

enum tok_kind { TOK_SPM, TOK_BPE };


/* Pre-tokenizer patterns. HF writes the contraction group as (?i:'s|...); the npm port (and
 * llama.cpp) match it ASCII-only, so we spell the cases out: "ſ" and "K" (Kelvin) must not fold. */
#define RE_CONTRACTIONS "(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])"
static const char RE_LLAMA3[] = RE_CONTRACTIONS "|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}"
                                "| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+";
static const char RE_QWEN2[] = RE_CONTRACTIONS "|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}"
                               "| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+";
static const char RE_GPT2[] = "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)|\\s+";

struct tok_special {
        int32_t id;
        uint32_t len;
};

struct rig_tokenizer {
        enum tok_kind kind;
        size_t n_vocab;
        char **text;            /* [n_vocab] NUL-terminated copies (the file may be closed) */
        uint32_t *text_len;
        float *score;           /* SPM only */
        uint8_t *type;
        char **out;             /* [n_vocab] the bytes a normal/byte token prints */
        uint32_t *out_len;

        /* vocabulary text → id, open addressing, capacity a power of two */
        int32_t *vocab_slot;
        size_t vocab_mask;

        /* BPE merges: (left id, right id) → rank, open addressing */
        uint64_t *merge_key;
        uint32_t *merge_rank;
        size_t merge_mask;
        size_t n_merges;

        /* special/control/user-defined tokens matched in text, longest first */
        struct tok_special *specials;
        size_t n_specials;

        int32_t byte_token[256];        /* SPM: <0xXX>; BPE: the token of the byte's mapped char */
        int32_t bos, eos, eot, eom, unk, pad;
        bool add_bos, add_eos, add_space_prefix, ignore_merges, nfc;
        pcre2_code *re;
};

/* ---- UTF-8 and the GPT-2 byte table ---- */

static size_t utf8_len(uint8_t c)
{
        if (c < 0x80)
                return 1;
        if ((c & 0xe0) == 0xc0)
                return 2;
        if ((c & 0xf0) == 0xe0)
                return 3;
        if ((c & 0xf8) == 0xf0)
                return 4;
        return 0;       /* continuation byte or invalid lead */
}

/* Length of the valid UTF-8 sequence at s (n bytes available), 0 if invalid or truncated. */
static size_t utf8_valid_seq(const uint8_t *s, size_t n)
{
        size_t l = utf8_len(s[0]);
        uint32_t cp;

        if (l == 0 || l > n)
                return 0;
        if (l == 1)
                return 1;
        cp = s[0] & (0xff >> (l + 1));
        for (size_t i = 1; i < l; i++) {
                if ((s[i] & 0xc0) != 0x80)
                        return 0;
                cp = (cp << 6) | (s[i] & 0x3f);
        }
        if ((l == 2 && cp < 0x80) || (l == 3 && cp < 0x800) || (l == 4 && cp < 0x10000) ||
            cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))
                return 0;
        return l;
}

/* The code point of a sequence utf8_valid_seq accepted (l bytes). */
static uint32_t utf8_decode(const uint8_t *s, size_t l)
{
        uint32_t cp = l == 1 ? s[0] : s[0] & (0xffu >> (l + 1));
        for (size_t i = 1; i < l; i++)
                cp = (cp << 6) | (s[i] & 0x3f);
        return cp;
}

static size_t utf8_put(uint32_t cp, char *o)
{
        if (cp < 0x80) {
                o[0] = (char)cp;
                return 1;
        }
        if (cp < 0x800) {
                o[0] = (char)(0xc0 | (cp >> 6));
                o[1] = (char)(0x80 | (cp & 0x3f));
                return 2;
        }
        if (cp < 0x10000) {
                o[0] = (char)(0xe0 | (cp >> 12));
                o[1] = (char)(0x80 | ((cp >> 6) & 0x3f));
                o[2] = (char)(0x80 | (cp & 0x3f));
                return 3;
        }
        o[0] = (char)(0xf0 | (cp >> 18));
        o[1] = (char)(0x80 | ((cp >> 12) & 0x3f));
        o[2] = (char)(0x80 | ((cp >> 6) & 0x3f));
        o[3] = (char)(0x80 | (cp & 0x3f));
        return 4;
}

/* GPT-2's bytes_to_unicode: printable Latin-1 bytes stand for themselves, the other 68 bytes
 * are moved to U+0100.. in byte order, so every byte is a visible character. */
static uint32_t byte_to_cp(uint8_t b)
{
        uint32_t n = 0;

        if ((b >= 0x21 && b <= 0x7e) || (b >= 0xa1 && b <= 0xac) || b >= 0xae)
                return b;
        for (uint32_t c = 0; c < b; c++)
                if (!((c >= 0x21 && c <= 0x7e) || (c >= 0xa1 && c <= 0xac) || c >= 0xae))
                        n++;
        return 256 + n;
}

/* Inverse of byte_to_cp: -1 when cp is no byte's character. */
static int cp_to_byte(uint32_t cp)
{
        static int16_t table[324];
        static bool ready;

        if (!ready) {   /* idempotent, so a race only fills it twice with the same values */
                for (size_t i = 0; i < ELEMENTSOF(table); i++)
                        table[i] = -1;
                for (int b = 0; b < 256; b++)
                        table[byte_to_cp((uint8_t)b)] = (int16_t)b;
                ready = true;
        }
        return cp < ELEMENTSOF(table) ? table[cp] : -1;
}

/* ---- hash maps ---- */

static uint64_t hash_bytes(const char *s, size_t n)
{
        uint64_t h = 1469598103934665603ull;    /* FNV-1a */
        for (size_t i = 0; i < n; i++)
                h = (h ^ (uint8_t)s[i]) * 1099511628211ull;
        return h;
}

static uint64_t hash_u64(uint64_t x)
{
        x ^= x >> 33;
        x *= 0xff51afd7ed558ccdull;
        x ^= x >> 33;
        return x;
}

static size_t pow2_at_least(size_t n)
{
        size_t c = 16;
        while (c < n)
                c <<= 1;
        return c;
}

static int32_t vocab_find(const struct rig_tokenizer *t, const char *s, size_t n)
{
        for (size_t i = hash_bytes(s, n) & t->vocab_mask;; i = (i + 1) & t->vocab_mask) {
                int32_t id = t->vocab_slot[i];
                if (id < 0)
                        return -1;
                if (t->text_len[id] == n && memcmp(t->text[id], s, n) == 0)
                        return id;
        }
}

static int vocab_index(struct rig_tokenizer *t)
{
        size_t cap = pow2_at_least(t->n_vocab * 2);

        t->vocab_slot = malloc(cap * sizeof(*t->vocab_slot));
        if (!t->vocab_slot)
                return -ENOMEM;
        memset(t->vocab_slot, 0xff, cap * sizeof(*t->vocab_slot));
        t->vocab_mask = cap - 1;
        for (size_t id = 0; id < t->n_vocab; id++) {
                /* duplicates keep the first id, as llama.cpp's map does */
                if (vocab_find(t, t->text[id], t->text_len[id]) >= 0)
                        continue;
                size_t i = hash_bytes(t->text[id], t->text_len[id]) & t->vocab_mask;
                while (t->vocab_slot[i] >= 0)
                        i = (i + 1) & t->vocab_mask;
                t->vocab_slot[i] = (int32_t)id;
        }
        return 0;
}

static int64_t merge_find(const struct rig_tokenizer *t, int32_t a, int32_t b)
{
        uint64_t key = ((uint64_t)(uint32_t)a << 32) | (uint32_t)b;

        if (!t->merge_key)
                return -1;
        for (size_t i = hash_u64(key) & t->merge_mask;; i = (i + 1) & t->merge_mask) {
                if (t->merge_key[i] == UINT64_MAX)
                        return -1;
                if (t->merge_key[i] == key)
                        return t->merge_rank[i];
        }
}

/* ---- loading ---- */

static int load_merges(struct rig_tokenizer *t, const struct gguf_file *f, char *err, size_t err_size)
{
        const struct gguf_kv *kv = gguf_find(f, "tokenizer.ggml.merges");
        size_t cap;

        if (!kv || kv->type != GGUF_TYPE_ARRAY || kv->v.arr.type != GGUF_TYPE_STRING)
                return errmsg(err, err_size, -EINVAL, "tokenizer.ggml.merges: missing or not an array of strings");
        cap = pow2_at_least(kv->v.arr.n * 2);
        t->merge_key = malloc(cap * sizeof(*t->merge_key));
        t->merge_rank = malloc(cap * sizeof(*t->merge_rank));
        if (!t->merge_key || !t->merge_rank)
                return -ENOMEM;
        memset(t->merge_key, 0xff, cap * sizeof(*t->merge_key));
        t->merge_mask = cap - 1;
        for (size_t r = 0; r < kv->v.arr.n; r++) {
                struct gguf_str s = kv->v.arr.strs[r];
                /* "a b": tokens never contain a plain space in byte-level BPE (it is "Ġ"),
                 * so the first space separates the two halves */
                const char *sp = memchr(s.ptr + (s.len > 0), ' ', s.len > 0 ? s.len - 1 : 0);
                if (!sp)
                        return errmsg(err, err_size, -EINVAL, "tokenizer.ggml.merges[%zu]: no space in \"%.*s\"",
                                    r, (int)s.len, s.ptr);
                int32_t a = vocab_find(t, s.ptr, (size_t)(sp - s.ptr));
                int32_t b = vocab_find(t, sp + 1, s.len - (size_t)(sp - s.ptr) - 1);
                if (a < 0 || b < 0)
                        continue;       /* llama.cpp keeps them, but they can never apply */
                uint64_t key = ((uint64_t)(uint32_t)a << 32) | (uint32_t)b;
                size_t i = hash_u64(key) & t->merge_mask;
                while (t->merge_key[i] != UINT64_MAX && t->merge_key[i] != key)
                        i = (i + 1) & t->merge_mask;
                if (t->merge_key[i] == key)
                        continue;       /* a repeated merge keeps its first (best) rank */
                t->merge_key[i] = key;
                t->merge_rank[i] = (uint32_t)r;
        }
        t->n_merges = kv->v.arr.n;
        return 0;
}

static int load_tokens(struct rig_tokenizer *t, const struct gguf_file *f, char *err, size_t err_size)
{
        const struct gguf_kv *tok = gguf_find(f, "tokenizer.ggml.tokens");
        const struct gguf_kv *typ = gguf_find(f, "tokenizer.ggml.token_type");
        const struct gguf_kv *sc = gguf_find(f, "tokenizer.ggml.scores");
        size_t n;

        if (!tok || tok->type != GGUF_TYPE_ARRAY || tok->v.arr.type != GGUF_TYPE_STRING || tok->v.arr.n == 0)
                return errmsg(err, err_size, -EINVAL, "tokenizer.ggml.tokens: missing or not an array of strings");
        n = tok->v.arr.n;
        if (n > INT32_MAX)
                return errmsg(err, err_size, -EINVAL, "tokenizer.ggml.tokens: %zu tokens is too many", n);
        if (typ && (typ->type != GGUF_TYPE_ARRAY || typ->v.arr.n != n ||
                    (typ->v.arr.type != GGUF_TYPE_INT32 && typ->v.arr.type != GGUF_TYPE_UINT32)))
                return errmsg(err, err_size, -EINVAL, "tokenizer.ggml.token_type: not %zu 32-bit integers", n);
        if (sc && (sc->type != GGUF_TYPE_ARRAY || sc->v.arr.n != n || sc->v.arr.type != GGUF_TYPE_FLOAT32))
                return errmsg(err, err_size, -EINVAL, "tokenizer.ggml.scores: not %zu float32 values", n);
        if (t->kind == TOK_SPM && !sc)
                return errmsg(err, err_size, -EINVAL, "tokenizer.ggml.scores: missing (needed by model \"llama\")");

        t->n_vocab = n;
        t->text = calloc(n, sizeof(*t->text));
        t->text_len = calloc(n, sizeof(*t->text_len));
        t->type = calloc(n, sizeof(*t->type));
        t->score = calloc(n, sizeof(*t->score));
        t->out = calloc(n, sizeof(*t->out));
        t->out_len = calloc(n, sizeof(*t->out_len));
        if (!t->text || !t->text_len || !t->type || !t->score || !t->out || !t->out_len)
                return -ENOMEM;
        for (size_t i = 0; i < n; i++) {
                struct gguf_str s = tok->v.arr.strs[i];
                t->text[i] = malloc(s.len + 1);
                if (!t->text[i])
                        return -ENOMEM;
                memcpy(t->text[i], s.ptr, s.len);
                t->text[i][s.len] = '\0';
                t->text_len[i] = (uint32_t)s.len;
                t->type[i] = TT_NORMAL;
                if (typ) {
                        int32_t v;
                        memcpy(&v, (const uint8_t *)typ->v.arr.data + 4 * i, 4);      /* little endian hosts only */
                        t->type[i] = (v >= TT_NORMAL && v <= TT_BYTE) ? (uint8_t)v : TT_NORMAL;
                }
                if (sc)
                        memcpy(&t->score[i], (const uint8_t *)sc->v.arr.data + 4 * i, 4);
        }
        return 0;
}

static int hexval(char c)
{
        if (c >= '0' && c <= '9')
                return c - '0';
        if (c >= 'a' && c <= 'f')
                return c - 'a' + 10;
        if (c >= 'A' && c <= 'F')
                return c - 'A' + 10;
        return -1;
}

/* "<0xAB>" → 0xAB, else -1 */
static int parse_byte_token(const char *s, size_t n)
{
        if (n != 6 || s[0] != '<' || s[1] != '0' || s[2] != 'x' || s[5] != '>')
                return -1;
        if (hexval(s[3]) < 0 || hexval(s[4]) < 0)
                return -1;
        return hexval(s[3]) * 16 + hexval(s[4]);
}

/* What each token prints: SPM turns "▁" into a space and <0xXX> into the byte; byte-level BPE
 * maps each character back through the GPT-2 table. Special tokens are handled at output time. */
static int build_outputs(struct rig_tokenizer *t)
{
        for (size_t id = 0; id < t->n_vocab; id++) {
                const char *s = t->text[id];
                size_t n = t->text_len[id], o = 0;
                char *dst = malloc(n + 1);

                if (!dst)
                        return -ENOMEM;
                if (t->type[id] == TT_BYTE && parse_byte_token(s, n) >= 0) {
                        dst[o++] = (char)parse_byte_token(s, n);
                } else if (t->type[id] != TT_NORMAL) {
                        memcpy(dst, s, n);
                        o = n;
                } else if (t->kind == TOK_SPM) {
                        for (size_t i = 0; i < n;) {
                                if (i + 3 <= n && memcmp(s + i, "\xe2\x96\x81", 3) == 0) {
                                        dst[o++] = ' ';
                                        i += 3;
                                } else {
                                        dst[o++] = s[i++];
                                }
                        }
                } else {
                        for (size_t i = 0; i < n;) {
                                size_t l = utf8_valid_seq((const uint8_t *)s + i, n - i);
                                uint32_t cp;
                                int b;
                                if (l == 0) {
                                        dst[o++] = s[i++];
                                        continue;
                                }
                                cp = utf8_decode((const uint8_t *)s + i, l);
                                b = cp_to_byte(cp);
                                if (b >= 0) {
                                        dst[o++] = (char)b;
                                } else {        /* not from the table: print it as it is */
                                        memcpy(dst + o, s + i, l);
                                        o += l;
                                }
                                i += l;
                        }
                }
                t->out[id] = dst;
                t->out_len[id] = (uint32_t)o;
        }
        return 0;
}

static int cmp_special(const void *a, const void *b)
{
        const struct tok_special *x = a, *y = b;
        if (x->len != y->len)
                return x->len > y->len ? -1 : 1;
        return x->id < y->id ? -1 : x->id > y->id;
}

static int build_specials(struct rig_tokenizer *t)
{
        t->specials = calloc(t->n_vocab, sizeof(*t->specials));
        if (!t->specials)
                return -ENOMEM;
        for (size_t id = 0; id < t->n_vocab; id++) {
                uint8_t ty = t->type[id];
                if ((ty == TT_CONTROL || ty == TT_USER_DEFINED || ty == TT_UNKNOWN) && t->text_len[id] > 0)
                        t->specials[t->n_specials++] = (struct tok_special){ (int32_t)id, t->text_len[id] };
        }
        qsort(t->specials, t->n_specials, sizeof(*t->specials), cmp_special);
        return 0;
}

static int build_byte_tokens(struct rig_tokenizer *t)
{
        for (int b = 0; b < 256; b++) {
                char s[8];
                size_t n;
                if (t->kind == TOK_SPM)
                        n = (size_t)snprintf(s, sizeof(s), "<0x%02X>", b);
                else
                        n = utf8_put(byte_to_cp((uint8_t)b), s);
                t->byte_token[b] = vocab_find(t, s, n);
        }
        return 0;
}

static int32_t get_id(const struct gguf_file *f, const struct rig_tokenizer *t, const char *key)
{
        uint32_t v;
        if (gguf_get_u32(f, key, &v) < 0 || v >= t->n_vocab)
                return -1;
        return (int32_t)v;
}

static void load_flags(struct rig_tokenizer *t, const struct gguf_file *f)
{
        bool b;

        t->bos = get_id(f, t, "tokenizer.ggml.bos_token_id");
        t->eos = get_id(f, t, "tokenizer.ggml.eos_token_id");
        t->eot = get_id(f, t, "tokenizer.ggml.eot_token_id");
        t->eom = get_id(f, t, "tokenizer.ggml.eom_token_id");
        t->unk = get_id(f, t, "tokenizer.ggml.unknown_token_id");
        t->pad = get_id(f, t, "tokenizer.ggml.padding_token_id");
        /* defaults as llama.cpp has them per model/pre; the keys override */
        t->add_bos = t->kind == TOK_SPM || t->ignore_merges;
        t->add_eos = false;
        t->add_space_prefix = t->kind == TOK_SPM;
        if (gguf_get_bool(f, "tokenizer.ggml.add_bos_token", &b) == 0)
                t->add_bos = b;
        if (gguf_get_bool(f, "tokenizer.ggml.add_eos_token", &b) == 0)
                t->add_eos = b;
        if (gguf_get_bool(f, "tokenizer.ggml.add_space_prefix", &b) == 0)
                t->add_space_prefix = b;
}

static int load_pre(struct rig_tokenizer *t, const struct gguf_file *f, char *err, size_t err_size)
{
        struct gguf_str pre = { "default", 7 };
        const char *pattern = RE_GPT2;
        int code;
        PCRE2_SIZE off;

        (void)gguf_get_str(f, "tokenizer.ggml.pre", &pre);
        if (gguf_str_eq(pre, "llama-bpe") || gguf_str_eq(pre, "llama3") || gguf_str_eq(pre, "llama-v3")) {
                pattern = RE_LLAMA3;
                t->ignore_merges = true;        /* HF "ignore_merges": a word in the vocab is one token */
        } else if (gguf_str_eq(pre, "qwen2")) {
                pattern = RE_QWEN2;
                t->nfc = true;                  /* Qwen's tokenizer.json normalizer is NFC */
        } else if (!gguf_str_eq(pre, "default") && !gguf_str_eq(pre, "gpt-2") && !gguf_str_eq(pre, "gpt2")) {
                return errmsg(err, err_size, -EOPNOTSUPP, "tokenizer.ggml.pre: \"%.*s\" is not supported "
                            "(llama-bpe, qwen2, default)", (int)pre.len, pre.ptr);
        }
        t->re = pcre2_compile((PCRE2_SPTR)pattern, PCRE2_ZERO_TERMINATED, PCRE2_UTF | PCRE2_UCP, &code, &off, NULL);
        if (!t->re)
                return errmsg(err, err_size, -EINVAL, "compiling the pre-tokenizer pattern: error %d at %zu", code,
                            (size_t)off);
        (void)pcre2_jit_compile(t->re, PCRE2_JIT_COMPLETE);     /* the interpreter is the fallback */
        return 0;
}

int tokenizer_load(const struct gguf_file *f, struct rig_tokenizer **out, char *err, size_t err_size)
{
        struct rig_tokenizer *t;
        struct gguf_str model;
        int r;

        if (gguf_get_str(f, "tokenizer.ggml.model", &model) < 0)
                return errmsg(err, err_size, -EINVAL, "tokenizer.ggml.model: missing");
        t = calloc(1, sizeof(*t));
        if (!t)
                return -ENOMEM;
        if (gguf_str_eq(model, "llama")) {
                t->kind = TOK_SPM;
        } else if (gguf_str_eq(model, "gpt2")) {
                t->kind = TOK_BPE;
        } else {
                tokenizer_free(t);
                return errmsg(err, err_size, -EOPNOTSUPP, "tokenizer.ggml.model: \"%.*s\" is not supported (llama, gpt2)",
                            (int)model.len, model.ptr);
        }
        r = load_tokens(t, f, err, err_size);
        if (r >= 0)
                r = vocab_index(t);
        if (r >= 0 && t->kind == TOK_BPE)
                r = load_merges(t, f, err, err_size);
        if (r >= 0 && t->kind == TOK_BPE)
                r = load_pre(t, f, err, err_size);
        if (r >= 0)
                r = build_outputs(t);
        if (r >= 0)
                r = build_specials(t);
        if (r >= 0)
                r = build_byte_tokens(t);
        if (r < 0) {
                if (r == -ENOMEM)
                        errmsg(err, err_size, r, "loading the tokenizer: out of memory");
                tokenizer_free(t);
                return r;
        }
        load_flags(t, f);
        *out = t;
        return 0;
}

void tokenizer_free(struct rig_tokenizer *t)
{
        if (!t)
                return;
        for (size_t i = 0; i < t->n_vocab; i++) {
                if (t->text)
                        free(t->text[i]);
                if (t->out)
                        free(t->out[i]);
        }
        free(t->text);
        free(t->text_len);
        free(t->score);
        free(t->type);
        free(t->out);
        free(t->out_len);
        free(t->vocab_slot);
        free(t->merge_key);
        free(t->merge_rank);
        free(t->specials);
        if (t->re)
                pcre2_code_free(t->re);
        free(t);
}

size_t tokenizer_n_vocab(const struct rig_tokenizer *t) { return t->n_vocab; }
int32_t tokenizer_bos(const struct rig_tokenizer *t) { return t->bos; }
int32_t tokenizer_eos(const struct rig_tokenizer *t) { return t->eos; }

bool tokenizer_is_eog(const struct rig_tokenizer *t, int32_t id)
{
        static const char *const names[] = { "<|eot_id|>", "<|eom_id|>", "<|im_end|>", "<|end|>",
                                             "<|endoftext|>", "<end_of_turn>", "<|end_of_text|>" };

        if (id < 0 || (size_t)id >= t->n_vocab)
                return false;
        if (id == t->eos || id == t->eot || id == t->eom)
                return true;
        /* files from older converters lack eot/eom ids: llama.cpp recognises these by text */
        if (t->type[id] != TT_CONTROL)
                return false;
        for (size_t i = 0; i < ELEMENTSOF(names); i++)
                if (streq(t->text[id], names[i]))
                        return true;
        return false;
}

/* ---- encoding ---- */

struct ids {
        int32_t *v;
        size_t n, cap;
};

static int ids_push(struct ids *ids, int32_t id)
{
        if (ids->n == ids->cap) {
                size_t cap = ids->cap ? ids->cap * 2 : 64;
                int32_t *v = realloc(ids->v, cap * sizeof(*v));
                if (!v)
                        return -ENOMEM;
                ids->v = v;
                ids->cap = cap;
        }
        ids->v[ids->n++] = id;
        return 0;
}

/* A symbol is a byte range [start, start+n) of the word being merged, linked to its neighbours. */
struct sym {
        uint32_t start, n;
        int32_t prev, next;
        int32_t id;             /* BPE: the symbol's token */
};

/* A candidate merge of symbols left and left's next. Lower key first, then leftmost. */
struct bigram {
        int64_t key;            /* BPE: merge rank; SPM: -score, scaled */
        double score;
        int32_t left, right;
        uint32_t n;             /* combined length when queued: stale if the symbols changed */
};

struct heap {
        struct bigram *v;
        size_t n, cap;
};

static bool bigram_before(const struct bigram *a, const struct bigram *b)
{
        if (a->score != b->score)
                return a->score < b->score;
        return a->left < b->left;
}

static int heap_push(struct heap *h, struct bigram b)
{
        size_t i;

        if (h->n == h->cap) {
                size_t cap = h->cap ? h->cap * 2 : 64;
                struct bigram *v = realloc(h->v, cap * sizeof(*v));
                if (!v)
                        return -ENOMEM;
                h->v = v;
                h->cap = cap;
        }
        i = h->n++;
        while (i > 0 && bigram_before(&b, &h->v[(i - 1) / 2])) {
                h->v[i] = h->v[(i - 1) / 2];
                i = (i - 1) / 2;
        }
        h->v[i] = b;
        return 0;
}

static struct bigram heap_pop(struct heap *h)
{
        struct bigram top = h->v[0], last = h->v[--h->n];
        size_t i = 0;

        for (;;) {
                size_t c = 2 * i + 1;
                if (c >= h->n)
                        break;
                if (c + 1 < h->n && bigram_before(&h->v[c + 1], &h->v[c]))
                        c++;
                if (!bigram_before(&h->v[c], &last))
                        break;
                h->v[i] = h->v[c];
                i = c;
        }
        if (h->n)
                h->v[i] = last;
        return top;
}

struct merger {
        const struct rig_tokenizer *t;
        const char *word;
        struct sym *syms;
        size_t n_syms;
        struct heap heap;
};

/* Queues the merge of symbol l with its right neighbour if the vocabulary allows it: BPE by the
 * rank of the (left, right) merge, SPM by the score of the concatenation (higher first). */
static int try_bigram(struct merger *m, int32_t l)
{
        const struct rig_tokenizer *t = m->t;
        struct bigram b;
        int32_t r;

        if (l < 0 || (r = m->syms[l].next) < 0)
                return 0;
        b.left = l;
        b.right = r;
        b.n = m->syms[l].n + m->syms[r].n;
        if (t->kind == TOK_BPE) {
                int64_t rank = merge_find(t, m->syms[l].id, m->syms[r].id);
                if (rank < 0)
                        return 0;
                b.score = (double)rank;
        } else {
                int32_t id = vocab_find(t, m->word + m->syms[l].start, b.n);
                if (id < 0)
                        return 0;
                b.score = -(double)t->score[id];
        }
        b.key = 0;
        return heap_push(&m->heap, b);
}

static int merge_run(struct merger *m)
{
        int r;

        for (size_t i = 0; i + 1 < m->n_syms; i++) {
                r = try_bigram(m, (int32_t)i);
                if (r < 0)
                        return r;
        }
        while (m->heap.n) {
                struct bigram b = heap_pop(&m->heap);
                struct sym *l = &m->syms[b.left], *rs = &m->syms[b.right];

                if (l->n == 0 || rs->n == 0 || l->next != b.right || l->n + rs->n != b.n)
                        continue;       /* one side was merged since this was queued */
                l->n += rs->n;
                if (m->t->kind == TOK_BPE)
                        l->id = vocab_find(m->t, m->word + l->start, l->n);
                rs->n = 0;
                l->next = rs->next;
                if (rs->next >= 0)
                        m->syms[rs->next].prev = b.left;
                r = try_bigram(m, l->prev);
                if (r >= 0)
                        r = try_bigram(m, b.left);
                if (r < 0)
                        return r;
        }
        return 0;
}

/* Splits word into UTF-8 characters (invalid bytes stand alone), merges, and appends the tokens. */
static int merge_word(const struct rig_tokenizer *t, const char *word, size_t len, struct ids *out)
{
        struct merger m = { .t = t, .word = word };
        int r = 0;

        m.syms = malloc(len * sizeof(*m.syms));
        if (!m.syms)
                return -ENOMEM;
        for (size_t i = 0; i < len;) {
                size_t l = utf8_valid_seq((const uint8_t *)word + i, len - i);
                if (l == 0)
                        l = 1;
                m.syms[m.n_syms] = (struct sym){ (uint32_t)i, (uint32_t)l, (int32_t)m.n_syms - 1,
                                                 (int32_t)m.n_syms + 1, -1 };
                if (t->kind == TOK_BPE)
                        m.syms[m.n_syms].id = vocab_find(t, word + i, l);
                m.n_syms++;
                i += l;
        }
        if (m.n_syms)
                m.syms[m.n_syms - 1].next = -1;
        r = merge_run(&m);
        for (int32_t s = 0; r >= 0 && s >= 0 && m.n_syms; s = m.syms[s].next) {
                int32_t id = vocab_find(t, word + m.syms[s].start, m.syms[s].n);
                if (id >= 0) {
                        r = ids_push(out, id);
                        continue;
                }
                /* not in the vocabulary: SentencePiece falls back to <0xXX> per byte */
                for (uint32_t k = 0; r >= 0 && k < m.syms[s].n; k++) {
                        int32_t bid = t->byte_token[(uint8_t)word[m.syms[s].start + k]];
                        if (bid < 0)
                                bid = t->unk;
                        if (bid >= 0)
                                r = ids_push(out, bid);
                }
        }
        free(m.syms);
        free(m.heap.v);
        return r;
}

/* SPM: the whole fragment is one word, spaces escaped to "▁", with a leading "▁" when the
 * fragment starts the text or follows a special token (add_space_prefix). */
static int encode_spm(const struct rig_tokenizer *t, const char *s, size_t n, bool prefix, struct ids *out)
{
        size_t cap = 3 * (n + 1), o = 0;
        _cleanup_free_ char *w = malloc(cap);

        if (!w)
                return -ENOMEM;
        if (prefix) {
                memcpy(w, "\xe2\x96\x81", 3);
                o = 3;
        }
        for (size_t i = 0; i < n; i++) {
                if (s[i] == ' ') {
                        memcpy(w + o, "\xe2\x96\x81", 3);
                        o += 3;
                } else {
                        w[o++] = s[i];
                }
        }
        return merge_word(t, w, o, out);
}

/* One pre-token of byte-level BPE: map bytes to the GPT-2 characters, then merge. */
static int encode_bpe_word(const struct rig_tokenizer *t, const char *s, size_t n, struct ids *out)
{
        char stackbuf[256];
        char *w = n * 2 <= sizeof(stackbuf) ? stackbuf : malloc(n * 2);
        size_t o = 0;
        int32_t id;
        int r;

        if (!w)
                return -ENOMEM;
        for (size_t i = 0; i < n; i++)
                o += utf8_put(byte_to_cp((uint8_t)s[i]), w + o);
        if (t->ignore_merges && (id = vocab_find(t, w, o)) >= 0)
                r = ids_push(out, id);
        else
                r = merge_word(t, w, o, out);
        if (w != stackbuf)
                free(w);
        return r;
}

/* Runs the pre-tokenizer regex over a valid UTF-8 run; text between matches (none with the
 * patterns above, which cover everything) is a pre-token too, as HF's Split "Isolated" does. */
static int split_valid(const struct rig_tokenizer *t, const char *s, size_t n, pcre2_match_data *md, struct ids *out)
{
        size_t pos = 0, emitted = 0;
        int r;

        while (pos < n) {
                int rc = pcre2_match(t->re, (PCRE2_SPTR)s, n, pos, PCRE2_NO_UTF_CHECK, md, NULL);
                if (rc < 0)
                        break;
                PCRE2_SIZE *ov = pcre2_get_ovector_pointer(md);
                if (ov[1] == ov[0]) {   /* empty match: step one character */
                        size_t l = utf8_valid_seq((const uint8_t *)s + pos, n - pos);
                        pos += l ? l : 1;
                        continue;
                }
                if (ov[0] > emitted && (r = encode_bpe_word(t, s + emitted, ov[0] - emitted, out)) < 0)
                        return r;
                if ((r = encode_bpe_word(t, s + ov[0], ov[1] - ov[0], out)) < 0)
                        return r;
                emitted = pos = ov[1];
        }
        if (emitted < n)
                return encode_bpe_word(t, s + emitted, n - emitted, out);
        return 0;
}

/* Byte-level BPE of a text fragment: NFC if the tokenizer asks, then pre-tokenize. Invalid
 * UTF-8 (which HF cannot even receive) is passed byte by byte so nothing is lost. */
static int encode_bpe(const struct rig_tokenizer *t, const char *s, size_t n, struct ids *out)
{
        _cleanup_free_ utf8proc_uint8_t *norm = NULL;
        pcre2_match_data *md;
        size_t i = 0;
        int r = 0;

        if (t->nfc && n > 0) {
                utf8proc_ssize_t m = utf8proc_map((const utf8proc_uint8_t *)s, (utf8proc_ssize_t)n, &norm,
                                                  UTF8PROC_STABLE | UTF8PROC_COMPOSE);
                if (m >= 0) {
                        s = (const char *)norm;
                        n = (size_t)m;
                }
        }
        md = pcre2_match_data_create_from_pattern(t->re, NULL);
        if (!md)
                return -ENOMEM;
        while (i < n && r >= 0) {
                size_t j = i, l;
                while (j < n && (l = utf8_valid_seq((const uint8_t *)s + j, n - j)) > 0)
                        j += l;
                if (j > i)
                        r = split_valid(t, s + i, j - i, md, out);
                if (r >= 0 && j < n)
                        r = encode_bpe_word(t, s + j, 1, out);
                i = j + 1;
        }
        pcre2_match_data_free(md);
        return r;
}

/* Leftmost, then longest special token at or after pos: its id and start, or -1. */
static int32_t find_special(const struct rig_tokenizer *t, const char *s, size_t n, size_t pos, bool parse_special,
                            size_t *at)
{
        /* Plain mode matches nothing, user-defined tokens (<think>, <tool_call>) included: text a
         * server takes from a client must not become tokens that steer the model. */
        if (!parse_special)
                return -1;
        for (size_t i = pos; i < n; i++) {
                for (size_t k = 0; k < t->n_specials; k++) {
                        const struct tok_special *sp = &t->specials[k];
                        if (sp->len > n - i || t->text[sp->id][0] != s[i])
                                continue;
                        if (memcmp(t->text[sp->id], s + i, sp->len) == 0) {
                                *at = i;
                                return sp->id;
                        }
                }
        }
        return -1;
}

static int encode_fragment(const struct rig_tokenizer *t, const char *s, size_t n, bool prev_special, struct ids *out)
{
        if (n == 0)
                return 0;
        if (t->kind == TOK_SPM)
                return encode_spm(t, s, n, t->add_space_prefix && prev_special, out);
        return encode_bpe(t, s, n, out);
}

int tokenizer_encode(const struct rig_tokenizer *t, const char *text, size_t len, bool add_special,
                     bool parse_special, int32_t **ids, size_t *n_ids)
{
        struct ids out = { 0 };
        bool prev_special = true;       /* SPM: the text's start gets the "▁" prefix */
        size_t pos = 0;
        int r = 0;

        if (add_special && t->add_bos && t->bos >= 0)
                r = ids_push(&out, t->bos);
        while (r >= 0 && pos < len) {
                size_t at = len;
                int32_t sid = t->n_specials ? find_special(t, text, len, pos, parse_special, &at) : -1;
                if (sid < 0)
                        at = len;
                r = encode_fragment(t, text + pos, at - pos, prev_special, &out);
                if (at > pos)
                        prev_special = false;
                if (r < 0 || sid < 0)
                        break;
                r = ids_push(&out, sid);
                prev_special = true;
                pos = at + t->text_len[sid];
        }
        if (r >= 0 && add_special && t->add_eos && t->eos >= 0)
                r = ids_push(&out, t->eos);
        if (r < 0) {
                free(out.v);
                return r;
        }
        *ids = out.v;
        *n_ids = out.n;
        return 0;
}

/* ---- decoding ---- */

const char *tokenizer_token_text(const struct rig_tokenizer *t, int32_t id, size_t *len)
{
        if (id < 0 || (size_t)id >= t->n_vocab)
                return NULL;
        if (len)
                *len = t->text_len[id];
        return t->text[id];
}

static const char *token_out(const struct rig_tokenizer *t, int32_t id, bool show_special, size_t *n)
{
        switch (t->type[id]) {
        case TT_CONTROL:
        case TT_UNUSED:
                *n = show_special ? t->text_len[id] : 0;
                return t->text[id];
        case TT_UNKNOWN:
                if (show_special) {
                        *n = t->text_len[id];
                        return t->text[id];
                }
                *n = 3;         /* what llama.cpp prints for an unknown piece: ▅ */
                return "\xe2\x96\x85";
        default:
                *n = t->out_len[id];
                return t->out[id];
        }
}

int tokenizer_token_bytes(const struct rig_tokenizer *t, int32_t id, bool show_special, char *buf, size_t size)
{
        const char *p;
        size_t n;

        if (id < 0 || (size_t)id >= t->n_vocab)
                return -1;
        p = token_out(t, id, show_special, &n);
        if (n > size)
                n = size;
        memcpy(buf, p, n);
        return (int)n;
}

static const char REPLACEMENT[] = "\xef\xbf\xbd";

/* Appends b (n bytes) to out; false when it does not fit. */
static bool put(char *out, size_t size, size_t *o, const char *b, size_t n)
{
        if (*o + n > size)
                return false;
        memcpy(out + *o, b, n);
        *o += n;
        return true;
}

/* Emits the complete sequences of in[0..n), invalid bytes as U+FFFD, and keeps an incomplete
 * tail (a valid prefix of a sequence) in s->pending. */
static int stream_emit(struct tokenizer_stream *s, const uint8_t *in, size_t n, char *out, size_t size)
{
        size_t o = 0, i = 0;

        s->n_pending = 0;
        while (i < n) {
                size_t l = utf8_valid_seq(in + i, n - i);
                if (l > 0) {
                        if (!put(out, size, &o, (const char *)in + i, l))
                                return -1;
                        i += l;
                        continue;
                }
                size_t want = utf8_len(in[i]), k = 1;
                while (want > 1 && i + k < n && k < want && (in[i + k] & 0xc0) == 0x80)
                        k++;
                if (want > 1 && i + k == n && k < want) {       /* a prefix: wait for the rest */
                        memcpy(s->pending, in + i, k);
                        s->n_pending = k;
                        break;
                }
                if (!put(out, size, &o, REPLACEMENT, 3))
                        return -1;
                i++;
        }
        return (int)o;
}

int tokenizer_stream_push(const struct rig_tokenizer *t, struct tokenizer_stream *s, int32_t id, char *out, size_t size)
{
        _cleanup_free_ uint8_t *buf = NULL;
        const char *p;
        size_t n;

        if (id < 0 || (size_t)id >= t->n_vocab || s->n_pending > sizeof(s->pending))
                return -1;
        p = token_out(t, id, false, &n);
        buf = malloc(s->n_pending + n + 1);
        if (!buf)
                return -1;
        memcpy(buf, s->pending, s->n_pending);
        memcpy(buf + s->n_pending, p, n);
        return stream_emit(s, buf, s->n_pending + n, out, size);
}

int tokenizer_stream_flush(struct tokenizer_stream *s, char *out, size_t size)
{
        size_t o = 0;

        if (s->n_pending > 0 && !put(out, size, &o, REPLACEMENT, 3))
                return -1;
        s->n_pending = 0;
        return (int)o;
}
