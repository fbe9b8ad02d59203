/* synth.h — rig synth: GGUF files of real model shapes with random weights (deterministic per
 * seed) and a real tokenizer, for tests and benchmarks where no weights can be downloaded. */
#pragma once

#include <stddef.h>
#include <stdint.h>

struct synth_shape {
        const char *name;               /* "llama3-8b" */
        const char *arch;               /* "llama" | "qwen2" */
        uint32_t n_embd, n_ff, n_layer, n_head, n_head_kv, head_dim;
        uint32_t n_vocab;               /* used when no tokenizer is given (0: the byte vocabulary) */
        uint32_t n_ctx;
        float rope_base, rms_eps;
        int has_rope_freqs;             /* Llama 3.1 scaling factors (rope_freqs.weight) */
        int is_tied;                    /* output shares token_embd */
};

const struct synth_shape *synth_find_shape(const char *name);
/* Names, NULL-terminated, for usage messages. */
const char *const *synth_shape_names(void);

/* "F16", "Q8_0", "Q4_K_M", ...; -EINVAL for an unknown name. */
struct synth_type;
const struct synth_type *synth_find_type(const char *name);

struct synth_options {
        const struct synth_shape *shape;
        const struct synth_type *type;
        const char *tokenizer_json;     /* NULL: byte vocabulary */
        uint64_t seed;
        const char *out_path;
        int is_progress;                /* print progress on stderr */
};

/* Writes the file. err names what went wrong. */
int synth_write(const struct synth_options *o, char *err, size_t err_size);
