/* tokenize_lines.c — the C side of the oracle test: converts a tokenizer.json to GGUF metadata
 * (hf_tokenizer_to_gguf + the gguf writer), loads it back through tokenizer_load, and prints the
 * ids of each corpus line (unescaped like oracle.js) as oracle.js does. It also checks that the
 * ids decode back to the line byte for byte, and reports encoding speed on stderr.
 * Usage: tokenize_lines TOKENIZER_JSON CORPUS [--nfc]   (--nfc: compare decodes with NFC(line)) */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <utf8proc.h>

#include "gguf.h"
#include "hf_tokenizer.h"
#include "tokenizer.h"
#include "util.h"

struct line {
        char *s;
        size_t n;
};

static size_t unescape(char *s, size_t n)
{
        size_t o = 0;
        for (size_t i = 0; i < n; i++) {
                if (s[i] == '\\' && i + 1 < n && strchr("ntr\\", s[i + 1])) {
                        char c = s[++i];
                        s[o++] = c == 'n' ? '\n' : c == 't' ? '\t' : c == 'r' ? '\r' : '\\';
                } else {
                        s[o++] = s[i];
                }
        }
        return o;
}

static int read_lines(const char *path, struct line **out, size_t *n_out)
{
        _cleanup_fclose_ FILE *f = fopen(path, "re");
        struct line *v = NULL;
        size_t n = 0, cap = 0, sz = 0;
        char *buf = NULL;
        ssize_t len;

        if (!f)
                return -errno;
        while ((len = getline(&buf, &sz, f)) >= 0) {
                if (len > 0 && buf[len - 1] == '\n')
                        len--;
                if (n == cap) {
                        cap = cap ? cap * 2 : 1024;
                        v = realloc(v, cap * sizeof(*v));
                        if (!v)
                                return -ENOMEM;
                }
                v[n].s = malloc((size_t)len + 1);
                if (!v[n].s)
                        return -ENOMEM;
                memcpy(v[n].s, buf, (size_t)len);
                v[n].n = unescape(v[n].s, (size_t)len);
                n++;
        }
        free(buf);
        *out = v;
        *n_out = n;
        return 0;
}

static int make_gguf(const char *json, const char *path)
{
        struct gguf_writer *w = gguf_writer_new();
        char err[512] = "";
        size_t n_vocab = 0;
        int r;

        if (!w)
                return -ENOMEM;
        r = hf_tokenizer_to_gguf(json, w, &n_vocab, err, sizeof(err));
        if (r >= 0)
                r = gguf_writer_add_str(w, "general.architecture", "llama");
        if (r >= 0)
                r = gguf_writer_write(w, path, err, sizeof(err));
        if (r < 0)
                fprintf(stderr, "converting %s: %s (%s)\n", json, err, strerror(-r));
        gguf_writer_free(w);
        return r;
}

/* Decodes ids the way HF's decoders do for these families: every token's bytes, specials shown;
 * SentencePiece drops the one space it added at the start. */
static char *decode(const struct rig_tokenizer *t, const int32_t *ids, size_t n, bool is_spm, size_t *len)
{
        size_t cap = 64, o = 0;
        char *s = malloc(cap);
        for (size_t i = 0; s && i < n; i++) {
                size_t tl;
                tokenizer_token_text(t, ids[i], &tl);
                while (o + tl + 8 > cap)
                        s = realloc(s, cap *= 2);
                if (!s)
                        return NULL;
                o += (size_t)tokenizer_token_bytes(t, ids[i], true, s + o, cap - o);
        }
        if (s && is_spm && o > 0 && s[0] == ' ') {
                memmove(s, s + 1, o - 1);
                o--;
        }
        *len = o;
        return s;
}

static bool roundtrips(const struct rig_tokenizer *t, const struct line *l, const int32_t *ids, size_t n,
                       bool is_spm, bool nfc)
{
        _cleanup_free_ char *d = NULL;
        _cleanup_free_ utf8proc_uint8_t *norm = NULL;
        const char *want = l->s;
        size_t want_n = l->n, dn = 0;

        if (nfc) {
                utf8proc_ssize_t m = utf8proc_map((const utf8proc_uint8_t *)l->s, (utf8proc_ssize_t)l->n, &norm,
                                                  UTF8PROC_STABLE | UTF8PROC_COMPOSE);
                if (m >= 0) {
                        want = (const char *)norm;
                        want_n = (size_t)m;
                }
        }
        d = decode(t, ids, n, is_spm, &dn);
        return d && dn == want_n && memcmp(d, want, dn) == 0;
}

static bool has_control(const struct rig_tokenizer *t, const int32_t *ids, size_t n)
{
        char plain[256], shown[256];
        for (size_t i = 0; i < n; i++) {
                /* special tokens print differently with and without show_special */
                int a = tokenizer_token_bytes(t, ids[i], false, plain, sizeof(plain));
                int b = tokenizer_token_bytes(t, ids[i], true, shown, sizeof(shown));
                if (a != b || memcmp(plain, shown, (size_t)a) != 0)
                        return true;
        }
        return false;
}

int main(int argc, char **argv)
{
        char tmp[] = "/tmp/rig-tok-XXXXXX", err[512] = "";
        struct gguf_file *f = NULL;
        struct rig_tokenizer *t = NULL;
        struct line *lines = NULL;
        size_t n_lines = 0, rt_fail = 0;
        struct gguf_str model;
        struct timespec a, b;
        double enc_s = 0;
        bool is_spm, nfc = argc > 3 && streq(argv[3], "--nfc");
        int fd, r;

        if (argc < 3) {
                fprintf(stderr, "usage: %s TOKENIZER_JSON CORPUS [--nfc]\n", argv[0]);
                return 2;
        }
        fd = mkstemp(tmp);
        if (fd < 0)
                return 1;
        close(fd);
        r = make_gguf(argv[1], tmp);
        if (r >= 0 && (r = gguf_open(tmp, &f, err, sizeof(err))) < 0)
                fprintf(stderr, "%s\n", err);
        unlink(tmp);
        if (r >= 0 && (r = tokenizer_load(f, &t, err, sizeof(err))) < 0)
                fprintf(stderr, "loading the tokenizer: %s\n", err);
        if (r >= 0 && (r = read_lines(argv[2], &lines, &n_lines)) < 0)
                fprintf(stderr, "reading %s: %s\n", argv[2], strerror(-r));
        if (r < 0)
                return 1;
        is_spm = gguf_get_str(f, "tokenizer.ggml.model", &model) == 0 && gguf_str_eq(model, "llama");
        for (size_t i = 0; i < n_lines; i++) {
                int32_t *ids = NULL;
                size_t n = 0;
                clock_gettime(CLOCK_MONOTONIC, &a);
                r = tokenizer_encode(t, lines[i].s, lines[i].n, false, true, &ids, &n);
                clock_gettime(CLOCK_MONOTONIC, &b);
                enc_s += (double)(b.tv_sec - a.tv_sec) + (double)(b.tv_nsec - a.tv_nsec) * 1e-9;
                if (r < 0) {
                        fprintf(stderr, "line %zu: encoding failed: %s\n", i + 1, strerror(-r));
                        return 1;
                }
                for (size_t k = 0; k < n; k++)
                        printf(k ? " %d" : "%d", ids[k]);
                printf("\n");
                if (is_spm && has_control(t, ids, n)) {
                        /* HF adds "▁" after every special token too, so SPM text around one
                         * cannot come back unchanged: nothing to compare */
                } else if (!roundtrips(t, &lines[i], ids, n, is_spm, nfc)) {
                        rt_fail++;
                        fprintf(stderr, "line %zu: decode(encode(line)) differs from the line\n", i + 1);
                }
                free(ids);
        }
        fprintf(stderr, "%zu lines, %.1f ms encoding, %.0f lines/s, %zu round-trip failures\n", n_lines,
                enc_s * 1e3, enc_s > 0 ? (double)n_lines / enc_s : 0.0, rt_fail);
        for (size_t i = 0; i < n_lines; i++)
                free(lines[i].s);
        free(lines);
        tokenizer_free(t);
        gguf_close(f);
        return rt_fail ? 3 : 0;
}
