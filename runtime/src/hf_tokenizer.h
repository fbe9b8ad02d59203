/* hf_tokenizer.h — a Hugging Face tokenizer.json (+ tokenizer_config.json beside it) turned into
 * the tokenizer.ggml.* keys llama.cpp's converter writes, for rig synth --tokenizer and the tests. */
#pragma once

#include <stddef.h>

struct gguf_writer;

/* Detects the family (byte-level BPE with the Llama 3 or Qwen 2 regex → "gpt2" + "llama-bpe" /
 * "qwen2"; BPE with byte_fallback and "▁" → "llama" with scores) and adds model, pre, tokens,
 * token_type, merges or scores, special ids and add_bos/add_eos to w. *n_vocab gets the count.
 * Returns 0 or a negative errno with err naming the file and what is wrong. */
int hf_tokenizer_to_gguf(const char *tokenizer_json_path, struct gguf_writer *w, size_t *n_vocab, char *err,
                         size_t err_size);
