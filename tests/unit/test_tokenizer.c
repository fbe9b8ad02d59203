/* test_tokenizer.c — the tokenizer on tiny hand-made vocabularies written through the GGUF writer:
 * merge order, byte fallback, special tokens on and off, BOS/EOS, and streaming partial UTF-8.
 * Agreement with real tokenizers is tests/tokenizer's job (the npm oracle). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "gguf.h"
#include "tokenizer.h"

struct tok_fixture {
        struct gguf_file *file;
        struct rig_tokenizer *tok;
};

/* GPT-2's byte → character table, written independently of tokenizer.c. */
static void byte_char(unsigned b, char *out)
{
        unsigned cp = b, n = 0;
        if (!((b >= 0x21 && b <= 0x7e) || (b >= 0xa1 && b <= 0xac) || b >= 0xae)) {
                for (unsigned c = 0; c < b; c++)
                        if (!((c >= 0x21 && c <= 0x7e) || (c >= 0xa1 && c <= 0xac) || c >= 0xae))
                                n++;
                cp = 256 + n;
        }
        if (cp < 0x80) {
                out[0] = (char)cp;
                out[1] = 0;
        } else {
                out[0] = (char)(0xc0 | (cp >> 6));
                out[1] = (char)(0x80 | (cp & 0x3f));
                out[2] = 0;
        }
}

/* Writes w to a temp file and loads the tokenizer from it. */
static struct tok_fixture load(struct gguf_writer *w)
{
        char path[] = "/tmp/rig-test-tok-XXXXXX", err[256] = "";
        struct tok_fixture fx = { 0 };
        int fd = mkstemp(path);

        assert_true(fd >= 0);
        close(fd);
        assert_int_equal(gguf_writer_add_str(w, "general.architecture", "llama"), 0);
        assert_int_equal(gguf_writer_write(w, path, err, sizeof(err)), 0);
        gguf_writer_free(w);
        assert_int_equal(gguf_open(path, &fx.file, err, sizeof(err)), 0);
        unlink(path);
        if (tokenizer_load(fx.file, &fx.tok, err, sizeof(err)) < 0)
                fail_msg("tokenizer_load: %s", err);
        return fx;
}

static void unload(struct tok_fixture *fx)
{
        tokenizer_free(fx->tok);
        gguf_close(fx->file);
}

/* Byte-level BPE: ids 0..255 are the byte characters, then extra tokens, merges as given. */
static struct tok_fixture bpe_vocab(const char *const *extra, const int32_t *extra_types, size_t n_extra,
                                    const char *const *merges, size_t n_merges, bool add_bos, bool add_eos)
{
        struct gguf_writer *w = gguf_writer_new();
        size_t n = 256 + n_extra;
        char bytes[256][4];
        const char **tokens = calloc(n, sizeof(*tokens));
        int32_t *types = calloc(n, sizeof(*types));

        for (unsigned b = 0; b < 256; b++) {
                byte_char(b, bytes[b]);
                tokens[b] = bytes[b];
                types[b] = 1;
        }
        for (size_t i = 0; i < n_extra; i++) {
                tokens[256 + i] = extra[i];
                types[256 + i] = extra_types ? extra_types[i] : 1;
        }
        assert_int_equal(gguf_writer_add_str(w, "tokenizer.ggml.model", "gpt2"), 0);
        assert_int_equal(gguf_writer_add_str(w, "tokenizer.ggml.pre", "default"), 0);
        assert_int_equal(gguf_writer_add_arr_str(w, "tokenizer.ggml.tokens", tokens, NULL, n), 0);
        assert_int_equal(gguf_writer_add_arr_i32(w, "tokenizer.ggml.token_type", types, n), 0);
        assert_int_equal(gguf_writer_add_arr_str(w, "tokenizer.ggml.merges", merges, NULL, n_merges), 0);
        assert_int_equal(gguf_writer_add_u32(w, "tokenizer.ggml.bos_token_id", 256), 0);
        assert_int_equal(gguf_writer_add_u32(w, "tokenizer.ggml.eos_token_id", 257), 0);
        assert_int_equal(gguf_writer_add_bool(w, "tokenizer.ggml.add_bos_token", add_bos), 0);
        assert_int_equal(gguf_writer_add_bool(w, "tokenizer.ggml.add_eos_token", add_eos), 0);
        free(tokens);
        free(types);
        return load(w);
}

static void assert_ids(const struct rig_tokenizer *t, const char *text, bool add_special, bool parse_special,
                       const int32_t *want, size_t n_want)
{
        int32_t *ids = NULL;
        size_t n = 0;

        assert_int_equal(tokenizer_encode(t, text, strlen(text), add_special, parse_special, &ids, &n), 0);
        if (n != n_want)
                fail_msg("\"%s\": %zu ids, want %zu", text, n, n_want);
        for (size_t i = 0; i < n; i++)
                if (ids[i] != want[i])
                        fail_msg("\"%s\": id %zu is %d, want %d", text, i, ids[i], want[i]);
        free(ids);
}

static const char *const SPECIALS_ABC[] = { "<s>", "</s>", "ab", "bc", "abc" };
static const int32_t SPECIAL_TYPES_ABC[] = { 3, 3, 1, 1, 1 };

static void test_lower_merge_rank_applies_first(void **state)
{
        /* "b c" outranks "a b": abc → a + bc, and no "a bc" merge exists */
        static const char *const merges[] = { "b c", "a b", "ab c" };
        struct tok_fixture fx = bpe_vocab(SPECIALS_ABC, SPECIAL_TYPES_ABC, 5, merges, 3, false, false);
        assert_ids(fx.tok, "abc", false, true, (int32_t[]){ 'a', 256 + 3 }, 2);
        unload(&fx);
}

static void test_merges_chain_to_the_whole_word(void **state)
{
        static const char *const merges[] = { "a b", "ab c", "b c" };
        struct tok_fixture fx = bpe_vocab(SPECIALS_ABC, SPECIAL_TYPES_ABC, 5, merges, 3, false, false);
        assert_ids(fx.tok, "abc", false, true, (int32_t[]){ 256 + 4 }, 1);
        /* pre-tokenizer splits on the space: " abc" is "Ġ" + ... with no merges for Ġ */
        assert_ids(fx.tok, "abc abc", false, true, (int32_t[]){ 256 + 4, ' ', 256 + 4 }, 3);
        unload(&fx);
}

static void test_special_text_is_a_token_only_when_parsed(void **state)
{
        static const char *const merges[] = { "a b" };
        struct tok_fixture fx = bpe_vocab(SPECIALS_ABC, SPECIAL_TYPES_ABC, 5, merges, 1, false, false);
        assert_ids(fx.tok, "a<s>b", false, true, (int32_t[]){ 'a', 256, 'b' }, 3);
        assert_ids(fx.tok, "a<s>b", false, false, (int32_t[]){ 'a', '<', 's', '>', 'b' }, 5);
        /* longest match: "</s>" wins over nothing shorter at the same place */
        assert_ids(fx.tok, "</s>", false, true, (int32_t[]){ 257 }, 1);
        unload(&fx);
}

static void test_bos_and_eos_follow_the_metadata(void **state)
{
        static const char *const merges[] = { "a b" };
        struct tok_fixture fx = bpe_vocab(SPECIALS_ABC, SPECIAL_TYPES_ABC, 5, merges, 1, true, true);
        assert_ids(fx.tok, "ab", true, true, (int32_t[]){ 256, 256 + 2, 257 }, 3);
        assert_ids(fx.tok, "ab", false, true, (int32_t[]){ 256 + 2 }, 1);
        assert_int_equal(tokenizer_bos(fx.tok), 256);
        assert_int_equal(tokenizer_eos(fx.tok), 257);
        assert_true(tokenizer_is_eog(fx.tok, 257));
        assert_false(tokenizer_is_eog(fx.tok, 'a'));
        unload(&fx);
}

static void test_control_tokens_print_only_when_asked(void **state)
{
        static const char *const merges[] = { "a b" };
        struct tok_fixture fx = bpe_vocab(SPECIALS_ABC, SPECIAL_TYPES_ABC, 5, merges, 1, false, false);
        char buf[16];
        assert_int_equal(tokenizer_token_bytes(fx.tok, 256, false, buf, sizeof(buf)), 0);
        assert_int_equal(tokenizer_token_bytes(fx.tok, 256, true, buf, sizeof(buf)), 3);
        assert_memory_equal(buf, "<s>", 3);
        assert_int_equal(tokenizer_token_bytes(fx.tok, ' ', false, buf, sizeof(buf)), 1);      /* "Ġ" → " " */
        assert_int_equal(buf[0], ' ');
        assert_int_equal(tokenizer_token_bytes(fx.tok, 100000, false, buf, sizeof(buf)), -1);
        unload(&fx);
}

static void test_stream_holds_back_half_an_emoji(void **state)
{
        /* 😀 is F0 9F 98 80: two tokens of two bytes each */
        char t1[8], t2[8], a[4], b[4];
        byte_char(0xf0, a);
        byte_char(0x9f, b);
        snprintf(t1, sizeof(t1), "%s%s", a, b);
        byte_char(0x98, a);
        byte_char(0x80, b);
        snprintf(t2, sizeof(t2), "%s%s", a, b);
        const char *extra[] = { "<s>", "</s>", t1, t2 };
        struct tok_fixture fx = bpe_vocab(extra, (int32_t[]){ 3, 3, 1, 1 }, 4, NULL, 0, false, false);
        struct tokenizer_stream s = { 0 };
        char out[16];

        assert_int_equal(tokenizer_stream_push(fx.tok, &s, 'x', out, sizeof(out)), 1);
        assert_int_equal(tokenizer_stream_push(fx.tok, &s, 258, out, sizeof(out)), 0);
        assert_int_equal(tokenizer_stream_push(fx.tok, &s, 259, out, sizeof(out)), 4);
        assert_memory_equal(out, "\xf0\x9f\x98\x80", 4);
        /* half an emoji at the end comes out as U+FFFD */
        assert_int_equal(tokenizer_stream_push(fx.tok, &s, 258, out, sizeof(out)), 0);
        assert_int_equal(tokenizer_stream_flush(&s, out, sizeof(out)), 3);
        assert_memory_equal(out, "\xef\xbf\xbd", 3);
        unload(&fx);
}

/* SentencePiece: <unk> <s> </s>, 256 byte tokens, then pieces with scores. */
static struct tok_fixture spm_vocab(void)
{
        static const char *const pieces[] = { "\xe2\x96\x81", "\xe2\x96\x81" "a", "b", "\xe2\x96\x81" "ab", "a" };
        static const float piece_scores[] = { -1, -2, -3, -4, -5 };
        struct gguf_writer *w = gguf_writer_new();
        size_t n = 3 + 256 + 5;
        const char **tokens = calloc(n, sizeof(*tokens));
        int32_t *types = calloc(n, sizeof(*types));
        float *scores = calloc(n, sizeof(*scores));
        char bytes[256][8];

        tokens[0] = "<unk>";
        tokens[1] = "<s>";
        tokens[2] = "</s>";
        types[0] = 2;
        types[1] = types[2] = 3;
        for (int b = 0; b < 256; b++) {
                snprintf(bytes[b], sizeof(bytes[b]), "<0x%02X>", b);
                tokens[3 + b] = bytes[b];
                types[3 + b] = 6;
        }
        for (int i = 0; i < 5; i++) {
                tokens[259 + i] = pieces[i];
                types[259 + i] = 1;
                scores[259 + i] = piece_scores[i];
        }
        assert_int_equal(gguf_writer_add_str(w, "tokenizer.ggml.model", "llama"), 0);
        assert_int_equal(gguf_writer_add_arr_str(w, "tokenizer.ggml.tokens", tokens, NULL, n), 0);
        assert_int_equal(gguf_writer_add_arr_i32(w, "tokenizer.ggml.token_type", types, n), 0);
        assert_int_equal(gguf_writer_add_arr_f32(w, "tokenizer.ggml.scores", scores, n), 0);
        assert_int_equal(gguf_writer_add_u32(w, "tokenizer.ggml.bos_token_id", 1), 0);
        assert_int_equal(gguf_writer_add_u32(w, "tokenizer.ggml.eos_token_id", 2), 0);
        free(tokens);
        free(types);
        free(scores);
        return load(w);
}

static void test_spm_prefixes_a_space_and_falls_back_to_bytes(void **state)
{
        struct tok_fixture fx = spm_vocab();
        /* "ab€" → "▁ab€": ▁ab, then € (E2 82 AC) has no piece → three byte tokens */
        assert_ids(fx.tok, "ab\xe2\x82\xac", false, true, (int32_t[]){ 262, 3 + 0xe2, 3 + 0x82, 3 + 0xac }, 4);
        /* BOS by default for SentencePiece; "<s>" text after it gets its own ▁ prefix rule */
        assert_ids(fx.tok, "ab", true, true, (int32_t[]){ 1, 262 }, 2);
        assert_ids(fx.tok, "<s>b", false, true, (int32_t[]){ 1, 259, 261 }, 3);
        unload(&fx);
}

static void test_spm_decodes_spaces_and_bytes(void **state)
{
        struct tok_fixture fx = spm_vocab();
        char buf[16];
        assert_int_equal(tokenizer_token_bytes(fx.tok, 262, false, buf, sizeof(buf)), 3);
        assert_memory_equal(buf, " ab", 3);
        assert_int_equal(tokenizer_token_bytes(fx.tok, 3 + 0x0a, false, buf, sizeof(buf)), 1);
        assert_int_equal(buf[0], '\n');
        unload(&fx);
}

int main(void)
{
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_lower_merge_rank_applies_first),
                cmocka_unit_test(test_merges_chain_to_the_whole_word),
                cmocka_unit_test(test_special_text_is_a_token_only_when_parsed),
                cmocka_unit_test(test_bos_and_eos_follow_the_metadata),
                cmocka_unit_test(test_control_tokens_print_only_when_asked),
                cmocka_unit_test(test_stream_holds_back_half_an_emoji),
                cmocka_unit_test(test_spm_prefixes_a_space_and_falls_back_to_bytes),
                cmocka_unit_test(test_spm_decodes_spaces_and_bytes),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
