/* hf_tokenizer.c — converts a Hugging Face tokenizer.json to GGUF tokenizer metadata the way
 * llama.cpp's convert_hf_to_gguf.py does, so a synthetic model tokenizes like the real one. */
#include "hf_tokenizer.h"

#include <errno.h>
#include <json-c/json.h>
#include <libgen.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "gguf.h"
#include "util.h"
#include "errmsg.h"
#include "tokenizer.h"

/* The Split regexes of the families we know, exactly as tokenizer.json spells them. */
static const char RE_LLAMA3_JSON[] = "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}"
                                     "| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+";
static const char RE_QWEN2_JSON[] = "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}"
                                    "| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+";


struct hf_vocab {
        size_t n;
        const char **text;      /* [n] pointers into the json objects, or into pad_names */
        size_t *len;
        int32_t *type;
        float *score;
        char **pad_names;       /* "[PAD{i}]" for ids nothing names */
        const char **merges;    /* "a b" */
        char **merge_owned;
        size_t n_merges;
        const char *pre;        /* NULL for "llama" */
        bool is_spm;
};

static void json_putp(struct json_object **o)
{
        if (*o)
                json_object_put(*o);
}

static void hf_vocab_done(struct hf_vocab *v)
{
        for (size_t i = 0; v->pad_names && i < v->n; i++)
                free(v->pad_names[i]);
        for (size_t i = 0; v->merge_owned && i < v->n_merges; i++)
                free(v->merge_owned[i]);
        free(v->pad_names);
        free(v->merge_owned);
        free(v->merges);
        free(v->text);
        free(v->len);
        free(v->type);
        free(v->score);
}

static struct json_object *get(struct json_object *o, const char *key)
{
        struct json_object *v = NULL;
        if (!o || !json_object_object_get_ex(o, key, &v))
                return NULL;
        return v;
}

static const char *get_str(struct json_object *o, const char *key)
{
        struct json_object *v = get(o, key);
        return v && json_object_is_type(v, json_type_string) ? json_object_get_string(v) : NULL;
}

/* The Split regex inside pre_tokenizer (alone or in a Sequence), or NULL. */
static const char *find_split_regex(struct json_object *pre)
{
        struct json_object *list = get(pre, "pretokenizers");
        const char *type = get_str(pre, "type");

        if (type && streq(type, "Split"))
                return get_str(get(pre, "pattern"), "Regex");
        if (!list || !json_object_is_type(list, json_type_array))
                return NULL;
        for (size_t i = 0; i < json_object_array_length(list); i++) {
                const char *re = find_split_regex(json_object_array_get_idx(list, i));
                if (re)
                        return re;
        }
        return NULL;
}

static bool mentions_metaspace(struct json_object *root)
{
        /* Llama 2: normalizer Replace " " → "▁" (legacy) or a Metaspace pre-tokenizer */
        const char *s = json_object_to_json_string_ext(get(root, "normalizer"), JSON_C_TO_STRING_NOSLASHESCAPE);
        const char *p = json_object_to_json_string_ext(get(root, "pre_tokenizer"), JSON_C_TO_STRING_NOSLASHESCAPE);
        return (s && (strstr(s, "\\u2581") || strstr(s, "\xe2\x96\x81"))) || (p && strstr(p, "Metaspace"));
}

static int detect_family(struct json_object *root, struct hf_vocab *v, const char *path, char *err, size_t err_size)
{
        struct json_object *model = get(root, "model");
        struct json_object *bf = get(model, "byte_fallback");
        const char *type = get_str(model, "type");
        const char *re;

        if (!type || !streq(type, "BPE"))
                return errmsg(err, err_size, -EOPNOTSUPP, "%s: model.type is %s, only BPE is supported", path,
                            type ? type : "missing");
        if (bf && json_object_get_boolean(bf)) {
                if (!mentions_metaspace(root))
                        return errmsg(err, err_size, -EOPNOTSUPP, "%s: byte_fallback BPE without \"▁\" spaces "
                                    "is not a Llama 2 style tokenizer", path);
                v->is_spm = true;
                return 0;
        }
        re = find_split_regex(get(root, "pre_tokenizer"));
        if (re && streq(re, RE_LLAMA3_JSON))
                v->pre = "llama-bpe";
        else if (re && streq(re, RE_QWEN2_JSON))
                v->pre = "qwen2";
        else
                return errmsg(err, err_size, -EOPNOTSUPP, "%s: pre-tokenizer regex %s is not one we know "
                            "(Llama 3, Qwen 2)", path, re ? re : "(none)");
        return 0;
}

static int set_token(struct hf_vocab *v, int64_t id, const char *s, size_t len, const char *path, char *err,
                     size_t err_size)
{
        if (id < 0 || (uint64_t)id >= v->n)
                return errmsg(err, err_size, -EINVAL, "%s: token id %lld out of range", path, (long long)id);
        v->text[id] = s;
        v->len[id] = len;
        return 0;
}

/* The largest id used in model.vocab and added_tokens, so ids nothing names become pads. */
static int64_t max_id(struct json_object *vocab, struct json_object *added)
{
        int64_t m = -1;
        json_object_object_foreach(vocab, k, val) {
                (void)k;
                if (json_object_get_int64(val) > m)
                        m = json_object_get_int64(val);
        }
        for (size_t i = 0; added && i < json_object_array_length(added); i++) {
                int64_t id = json_object_get_int64(get(json_object_array_get_idx(added, i), "id"));
                if (id > m)
                        m = id;
        }
        return m;
}

static bool is_byte_token(const char *s, size_t n)
{
        return n == 6 && strncmp(s, "<0x", 3) == 0 && s[5] == '>' && strchr("0123456789ABCDEFabcdef", s[3]) &&
               strchr("0123456789ABCDEFabcdef", s[4]) && s[3] && s[4];
}

/* llama.cpp's does_token_look_special: added tokens not marked special that still act as control */
static bool looks_special(const char *s)
{
        size_t n = strlen(s);
        if (streq(s, "<pad>") || streq(s, "<mask>") || streq(s, "<2mass>") || streq(s, "[@BOS@]"))
                return true;
        if (n >= 4 && startswith(s, "<|") && strcmp(s + n - 2, "|>") == 0)
                return true;
        return n >= 8 && startswith(s, "<unused") && s[n - 1] == '>';
}

static int read_vocab(struct json_object *root, struct hf_vocab *v, const char *path, char *err, size_t err_size)
{
        struct json_object *vocab = get(get(root, "model"), "vocab");
        struct json_object *added = get(root, "added_tokens");
        const char *unk = get_str(get(root, "model"), "unk_token");
        int64_t m;
        int r;

        if (!vocab || !json_object_is_type(vocab, json_type_object))
                return errmsg(err, err_size, -EINVAL, "%s: model.vocab missing", path);
        if (added && !json_object_is_type(added, json_type_array))
                added = NULL;
        m = max_id(vocab, added);
        if (m < 0 || m >= INT32_MAX)
                return errmsg(err, err_size, -EINVAL, "%s: empty or oversized vocabulary", path);
        /* Ids are dense in real vocabularies (a few padding holes at the end at most): a file
         * whose largest id far exceeds its entry count would make us allocate for nothing. */
        size_t n_entries = (size_t)json_object_object_length(vocab) + (added ? json_object_array_length(added) : 0);
        if ((size_t)m + 1 > n_entries + 1024)
                return errmsg(err, err_size, -EINVAL, "%s: largest token id %lld but only %zu tokens: ids must be dense",
                              path, (long long)m, n_entries);
        v->n = (size_t)m + 1;
        v->text = calloc(v->n, sizeof(*v->text));
        v->len = calloc(v->n, sizeof(*v->len));
        v->type = calloc(v->n, sizeof(*v->type));
        v->score = calloc(v->n, sizeof(*v->score));
        v->pad_names = calloc(v->n, sizeof(*v->pad_names));
        if (!v->text || !v->len || !v->type || !v->score || !v->pad_names)
                return -ENOMEM;
        json_object_object_foreach(vocab, key, val) {
                r = set_token(v, json_object_get_int64(val), key, strlen(key), path, err, err_size);
                if (r < 0)
                        return r;
                v->type[json_object_get_int64(val)] =
                        v->is_spm && is_byte_token(key, strlen(key)) ? TT_BYTE : TT_NORMAL;
        }
        for (size_t i = 0; added && i < json_object_array_length(added); i++) {
                struct json_object *a = json_object_array_get_idx(added, i);
                const char *content = get_str(a, "content");
                int64_t id = json_object_get_int64(get(a, "id"));
                if (!content)
                        return errmsg(err, err_size, -EINVAL, "%s: added_tokens[%zu] has no content", path, i);
                r = set_token(v, id, content, strlen(content), path, err, err_size);
                if (r < 0)
                        return r;
                if (v->is_spm)
                        v->type[id] = unk && streq(content, unk) ? TT_UNKNOWN : TT_CONTROL;
                else
                        v->type[id] = json_object_get_boolean(get(a, "special")) || looks_special(content)
                                              ? TT_CONTROL : TT_USER_DEFINED;
        }
        for (size_t id = 0; id < v->n; id++) {
                if (v->text[id])
                        continue;
                if (asprintf(&v->pad_names[id], "[PAD%zu]", id) < 0)
                        return -ENOMEM;
                v->text[id] = v->pad_names[id];
                v->len[id] = strlen(v->pad_names[id]);
                v->type[id] = TT_UNUSED;
        }
        return 0;
}

/* Merges are "a b" strings in older files and ["a", "b"] pairs in newer ones; GGUF keeps "a b". */
static int read_merges(struct json_object *root, struct hf_vocab *v, const char *path, char *err, size_t err_size)
{
        struct json_object *merges = get(get(root, "model"), "merges");
        size_t n;

        if (!merges || !json_object_is_type(merges, json_type_array))
                return errmsg(err, err_size, -EINVAL, "%s: model.merges missing", path);
        n = json_object_array_length(merges);
        v->merges = calloc(n + 1, sizeof(*v->merges));
        v->merge_owned = calloc(n + 1, sizeof(*v->merge_owned));
        if (!v->merges || !v->merge_owned)
                return -ENOMEM;
        v->n_merges = n;
        for (size_t i = 0; i < n; i++) {
                struct json_object *m = json_object_array_get_idx(merges, i);
                if (json_object_is_type(m, json_type_string)) {
                        v->merges[i] = json_object_get_string(m);
                } else if (json_object_is_type(m, json_type_array) && json_object_array_length(m) == 2) {
                        if (asprintf(&v->merge_owned[i], "%s %s",
                                     json_object_get_string(json_object_array_get_idx(m, 0)),
                                     json_object_get_string(json_object_array_get_idx(m, 1))) < 0)
                                return -ENOMEM;
                        v->merges[i] = v->merge_owned[i];
                } else {
                        return errmsg(err, err_size, -EINVAL, "%s: model.merges[%zu] is neither \"a b\" nor [a, b]",
                                    path, i);
                }
        }
        return 0;
}

/* SentencePiece scores for a BPE vocabulary given as merges: the HF converter lists every pair
 * whose concatenation is a piece, ordered by that piece's score, so score = -(first rank that
 * makes the piece) replays the same merge order in llama.cpp's score-driven SPM. */
static int spm_scores(struct hf_vocab *v)
{
        struct json_object *index = json_object_new_object();
        if (!index)
                return -ENOMEM;
        for (size_t id = 0; id < v->n; id++) {
                v->score[id] = v->type[id] == TT_NORMAL && v->len[id] > 0 ? -1e9f : 0.0f;
                if (v->type[id] == TT_NORMAL)
                        json_object_object_add(index, v->text[id], json_object_new_int64((int64_t)id));
        }
        for (size_t r = 0; r < v->n_merges; r++) {
                _cleanup_free_ char *joined = strdup(v->merges[r]);
                struct json_object *idv;
                char *sp = joined ? strchr(joined + (joined[0] != 0), ' ') : NULL;
                if (!joined)
                        goto oom;
                if (!sp)
                        continue;
                memmove(sp, sp + 1, strlen(sp + 1) + 1);
                if (!json_object_object_get_ex(index, joined, &idv))
                        continue;
                int64_t id = json_object_get_int64(idv);
                if (v->score[id] == -1e9f)
                        v->score[id] = -(float)r;
        }
        /* single characters are never merge results; they score like the best piece */
        json_object_put(index);
        return 0;
oom:
        json_object_put(index);
        return -ENOMEM;
}

/* tokenizer_config.json's bos_token etc. are a string or {"content": ...}. */
static const char *config_token(struct json_object *cfg, const char *key)
{
        struct json_object *o = get(cfg, key);
        if (!o)
                return NULL;
        if (json_object_is_type(o, json_type_string))
                return json_object_get_string(o);
        return get_str(o, "content");
}

static int64_t find_id(const struct hf_vocab *v, const char *s)
{
        /* prefer the highest id: added tokens come last and win over a vocab duplicate */
        for (size_t id = v->n; s && id-- > 0;)
                if (v->len[id] == strlen(s) && memcmp(v->text[id], s, v->len[id]) == 0)
                        return (int64_t)id;
        return -1;
}

static int add_specials(struct gguf_writer *w, const struct hf_vocab *v, struct json_object *root,
                        struct json_object *cfg)
{
        static const struct { const char *cfg, *key; } ids[] = {
                { "bos_token", "tokenizer.ggml.bos_token_id" },
                { "eos_token", "tokenizer.ggml.eos_token_id" },
                { "unk_token", "tokenizer.ggml.unknown_token_id" },
                { "pad_token", "tokenizer.ggml.padding_token_id" },
        };
        int r = 0;

        for (size_t i = 0; r >= 0 && i < ELEMENTSOF(ids); i++) {
                const char *s = config_token(cfg, ids[i].cfg);
                if (!s && streq(ids[i].cfg, "unk_token"))
                        s = get_str(get(root, "model"), "unk_token");
                int64_t id = find_id(v, s);
                if (id >= 0)
                        r = gguf_writer_add_u32(w, ids[i].key, (uint32_t)id);
        }
        struct json_object *b = get(cfg, "add_bos_token"), *e = get(cfg, "add_eos_token");
        if (r >= 0 && b && json_object_is_type(b, json_type_boolean))
                r = gguf_writer_add_bool(w, "tokenizer.ggml.add_bos_token", json_object_get_boolean(b));
        if (r >= 0 && e && json_object_is_type(e, json_type_boolean))
                r = gguf_writer_add_bool(w, "tokenizer.ggml.add_eos_token", json_object_get_boolean(e));
        return r;
}

static int write_keys(struct gguf_writer *w, const struct hf_vocab *v)
{
        int r = gguf_writer_add_str(w, "tokenizer.ggml.model", v->is_spm ? "llama" : "gpt2");
        if (r >= 0 && !v->is_spm)
                r = gguf_writer_add_str(w, "tokenizer.ggml.pre", v->pre);
        if (r >= 0 && v->is_spm)
                r = gguf_writer_add_str(w, "tokenizer.ggml.pre", "default");
        if (r >= 0)
                r = gguf_writer_add_arr_str(w, "tokenizer.ggml.tokens", v->text, v->len, v->n);
        if (r >= 0 && v->is_spm)
                r = gguf_writer_add_arr_f32(w, "tokenizer.ggml.scores", v->score, v->n);
        if (r >= 0)
                r = gguf_writer_add_arr_i32(w, "tokenizer.ggml.token_type", v->type, v->n);
        if (r >= 0 && !v->is_spm)
                r = gguf_writer_add_arr_str(w, "tokenizer.ggml.merges", v->merges, NULL, v->n_merges);
        return r;
}

static struct json_object *load_config_beside(const char *json_path)
{
        _cleanup_free_ char *copy = strdup(json_path);
        _cleanup_free_ char *cfg_path = NULL;
        if (!copy || asprintf(&cfg_path, "%s/tokenizer_config.json", dirname(copy)) < 0)
                return NULL;
        if (access(cfg_path, R_OK) < 0)
                return NULL;
        return json_object_from_file(cfg_path);
}

int hf_tokenizer_to_gguf(const char *tokenizer_json_path, struct gguf_writer *w, size_t *n_vocab, char *err,
                         size_t err_size)
{
        _cleanup_(json_putp) struct json_object *root = json_object_from_file(tokenizer_json_path);
        _cleanup_(json_putp) struct json_object *cfg = NULL;
        struct hf_vocab v = { 0 };
        int r;

        if (err && err_size)
                err[0] = '\0';
        if (!root)
                return errmsg(err, err_size, -EINVAL, "reading %s: %s", tokenizer_json_path, json_util_get_last_err());
        cfg = load_config_beside(tokenizer_json_path);
        r = detect_family(root, &v, tokenizer_json_path, err, err_size);
        if (r >= 0)
                r = read_vocab(root, &v, tokenizer_json_path, err, err_size);
        if (r >= 0)
                r = read_merges(root, &v, tokenizer_json_path, err, err_size);
        if (r >= 0 && v.is_spm)
                r = spm_scores(&v);
        if (r >= 0)
                r = write_keys(w, &v);
        if (r >= 0)
                r = add_specials(w, &v, root, cfg);
        if (r == -ENOMEM)
                errmsg(err, err_size, r, "converting %s: out of memory", tokenizer_json_path);
        else if (r < 0 && err && !err[0])
                errmsg(err, err_size, r, "converting %s: %s", tokenizer_json_path, strerror(-r));
        if (r >= 0 && n_vocab)
                *n_vocab = v.n;
        hf_vocab_done(&v);
        return r < 0 ? r : 0;
}
