/* libFuzzer target: rigd's socket input. The bytes go through proto_reader in chunks of varying
 * size, as recv() would hand them over, and each line through proto_parse_request; every reply
 * is formatted and must come back as one line that parses to an object echoing the id. The
 * reader's lines are checked against a plain split of the same stream, so a line lost, merged or
 * cut shows up as a crash, not only a bad read. */
#include <errno.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "proto.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static struct proto_reader reader;

#define check(cond)                                                                     \
        do {                                                                            \
                if (!(cond)) {                                                          \
                        fprintf(stderr, "%s:%d: %s\n", __FILE__, __LINE__, #cond);      \
                        abort();                                                        \
                }                                                                       \
        } while (0)

/* The reference split of the stream: where the next line (or overlong line) ends. Returns
 * false at the end of the stream. */
struct expected {
        const uint8_t *stream;
        size_t total;
        size_t pos;                     /* where the next segment starts */
};

static bool expect_next(struct expected *e, size_t *start, size_t *len, bool *is_terminated)
{
        if (e->pos >= e->total)
                return false;
        const uint8_t *nl = memchr(e->stream + e->pos, '\n', e->total - e->pos);
        size_t end = nl ? (size_t)(nl - e->stream) : e->total;
        *start = e->pos;
        *len = end - e->pos;
        *is_terminated = nl != NULL;
        e->pos = end + 1;
        return true;
}

static void check_reply(char *line, struct json_object *id)
{
        check(line);
        size_t len = strlen(line);
        check(len >= 2 && line[len - 1] == '\n');
        check(memchr(line, '\n', len - 1) == NULL);
        struct json_tokener *tok = json_tokener_new();
        check(tok);
        struct json_object *o = json_tokener_parse_ex(tok, line, (int)(len - 1));
        check(json_tokener_get_error(tok) == json_tokener_success);
        json_tokener_free(tok);
        check(json_object_is_type(o, json_type_object));
        struct json_object *echoed;
        check(json_object_object_get_ex(o, "id", &echoed));
        check(id ? json_object_equal(echoed, id) : json_object_is_type(echoed, json_type_null));
        json_object_put(o);
        free(line);
}

static void handle_line(const char *line, size_t len)
{
        struct proto_request r;
        char err[256];
        err[0] = '\0';
        int rc = proto_parse_request(line, len, &r, err, sizeof(err));
        if (rc == 0) {
                check(r.kind <= PROTO_FAULTS);
                if (r.kind == PROTO_LEASE) {
                        const struct proto_lease_params *p = &r.lease;
                        check(p->count >= 1 && p->count <= PROTO_MAX_GPUS);
                        check(p->n_gpus == 0 || p->n_gpus == p->count);
                        check(p->wait_ms <= PROTO_MAX_WAIT_MS);
                        check(strnlen(p->holder, sizeof(p->holder)) < sizeof(p->holder));
                        for (size_t i = 0; i < p->n_gpus; i++) {
                                size_t n = strnlen(p->gpus[i], sizeof(p->gpus[i]));
                                check(n > 0 && n < sizeof(p->gpus[i]));
                                for (size_t j = 0; j < i; j++)
                                        check(strcmp(p->gpus[i], p->gpus[j]) != 0);
                        }
                }
                if (r.kind == PROTO_RELEASE)
                        check(r.lease_id[0] && strnlen(r.lease_id, sizeof(r.lease_id)) < sizeof(r.lease_id));
                if (r.kind == PROTO_POWER_SET)
                        check(r.gpu[0] && r.watts > 0 && r.watts < 100000);
                check(strnlen(r.gpu, sizeof(r.gpu)) < sizeof(r.gpu));
                struct json_object *result = json_object_new_object();
                json_object_object_add(result, "request", json_object_new_string(proto_request_name(r.kind)));
                check_reply(proto_format_result(r.id, result), r.id);
        } else {
                check(rc == -EINVAL);
                check(err[0] != '\0');
                check_reply(proto_format_error(r.id, proto_errno_name(rc), "%s", err), r.id);
        }
        proto_request_clear(&r);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
        if (size == 0)
                return 0;
        /* The stream: the input, with its first line (up to the first newline) repeated into an
         * overlong one when the last byte says so, so that lines longer than PROTO_MAX_LINE, and
         * what follows them, are reached from small inputs. */
        uint8_t seed = data[size - 1];
        const uint8_t *nl = memchr(data, '\n', size);
        size_t head = nl ? (size_t)(nl - data) : size;
        size_t n_repeats = (seed & 7) == 7 && head > 0 ? 1 + (PROTO_MAX_LINE + 1) / head + seed / 64 : 1;
        size_t total = head * n_repeats + (size - head);
        uint8_t *stream = malloc(total);
        if (!stream)
                return 0;
        for (size_t i = 0; i < n_repeats; i++)
                memcpy(stream + i * head, data, head);
        memcpy(stream + head * n_repeats, data + head, size - head);

        memset(&reader, 0, sizeof(reader));
        struct expected e = { stream, total, 0 };
        uint32_t rng = 0x9e3779b9u ^ seed ^ ((uint32_t)size << 8);
        size_t fed = 0;
        while (fed < total) {
                size_t space;
                char *buf = proto_reader_space(&reader, &space);
                check(space > 0);
                rng = rng * 1664525u + 1013904223u;
                /* mostly small reads, now and then as much as fits */
                size_t n = (rng >> 28) == 0 ? space : 1 + (rng >> 8) % (n_repeats > 1 ? 8192 : 300);
                n = n < space ? n : space;
                n = n < total - fed ? n : total - fed;
                memcpy(buf, stream + fed, n);
                proto_reader_commit(&reader, n);
                fed += n;

                for (;;) {
                        char *line;
                        size_t len;
                        int rc = proto_reader_next(&reader, &line, &len);
                        if (rc == 0)
                                break;
                        size_t start, want_len;
                        bool is_terminated;
                        check(expect_next(&e, &start, &want_len, &is_terminated));
                        if (rc < 0) {
                                check(rc == -EMSGSIZE);
                                check(want_len >= PROTO_MAX_LINE);
                                continue;
                        }
                        check(rc == 1);
                        check(is_terminated && want_len < PROTO_MAX_LINE);
                        check(len == want_len && line[len] == '\0');
                        check(memcmp(line, stream + start, len) == 0);
                        handle_line(line, len);
                }
        }
        /* what is left: nothing, or an unterminated line shorter than the limit */
        size_t start, want_len;
        bool is_terminated;
        if (expect_next(&e, &start, &want_len, &is_terminated))
                check(!is_terminated && want_len < PROTO_MAX_LINE);
        free(stream);
        return 0;
}
