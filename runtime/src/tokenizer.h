/* tokenizer.h — tokenizers from GGUF metadata: SentencePiece-style (tokenizer.ggml.model "llama")
 * and byte-level BPE ("gpt2") with the pre-tokenizer named by tokenizer.ggml.pre ("llama-bpe",
 * "qwen2", ...); special and control tokens; detokenization that round-trips bytes. */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct gguf_file;
struct rig_tokenizer;

/* Token types as GGUF stores them in tokenizer.ggml.token_type. */
enum tok_type {
        TT_NORMAL = 1,
        TT_UNKNOWN = 2,
        TT_CONTROL = 3,
        TT_USER_DEFINED = 4,
        TT_UNUSED = 5,
        TT_BYTE = 6,
};

/* Builds the tokenizer from the file's tokenizer.ggml.* keys. err names the key that is wrong. */
int tokenizer_load(const struct gguf_file *f, struct rig_tokenizer **out, char *err, size_t err_size);
void tokenizer_free(struct rig_tokenizer *t);

size_t tokenizer_n_vocab(const struct rig_tokenizer *t);
int32_t tokenizer_bos(const struct rig_tokenizer *t);   /* -1 if none */
int32_t tokenizer_eos(const struct rig_tokenizer *t);
bool tokenizer_is_eog(const struct rig_tokenizer *t, int32_t id);   /* end of generation: eos, eot, ... */

/* Encodes text (UTF-8, len bytes). add_special: BOS/EOS as the metadata asks
 * (tokenizer.ggml.add_bos_token / add_eos_token). parse_special: text of special and control
 * tokens becomes those tokens (as Hugging Face tokenizers do); false treats it as plain text,
 * which a server must do with untrusted content. *ids is malloc'd. */
int tokenizer_encode(const struct rig_tokenizer *t, const char *text, size_t len, bool add_special,
                     bool parse_special, int32_t **ids, size_t *n_ids);

/* The token's text as stored in the vocabulary ("Ġthe", "▁the", "<0x0A>"). */
const char *tokenizer_token_text(const struct rig_tokenizer *t, int32_t id, size_t *len);

/* The bytes a token stands for in output ("Ġthe" → " the", "<0x0A>" → "\n"); control tokens give
 * their text only when show_special. Returns the byte count written (at most size), or -1 for a
 * bad id. May be a partial UTF-8 sequence: stream through struct tokenizer_stream. */
int tokenizer_token_bytes(const struct rig_tokenizer *t, int32_t id, bool show_special, char *buf, size_t size);

/* Streaming detokenizer: holds back an incomplete UTF-8 sequence until the token that completes
 * it arrives, so every piece printed is valid UTF-8 and the concatenation equals the bytes. */
struct tokenizer_stream {
        char pending[8];
        size_t n_pending;
};

/* Appends token id; writes the printable bytes to out (up to size), returns their count or -1. */
int tokenizer_stream_push(const struct rig_tokenizer *t, struct tokenizer_stream *s, int32_t id, char *out, size_t size);
/* Flushes what is pending at the end (invalid trailing bytes as U+FFFD). */
int tokenizer_stream_flush(struct tokenizer_stream *s, char *out, size_t size);
