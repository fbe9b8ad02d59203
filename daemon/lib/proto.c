/* proto.c — parsing requests and formatting replies and events of rigd's line protocol, and the
 * bounded line splitter both ends read with. The peer may be any local process: every field is
 * checked for type and range, and unknown fields are refused by name so a typo is not a default. */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "proto.h"
#include "util.h"

static const char *const request_names[] = {
        [PROTO_HELLO] = "hello",
        [PROTO_LIST] = "list",
        [PROTO_TOPO] = "topo",
        [PROTO_LEASE] = "lease",
        [PROTO_RELEASE] = "release",
        [PROTO_LEASES] = "leases",
        [PROTO_SUBSCRIBE] = "subscribe",
        [PROTO_POWER_GET] = "power_get",
        [PROTO_POWER_SET] = "power_set",
        [PROTO_FAULTS] = "faults",
};

static const struct {
        enum proto_event_kind kind;
        const char *name;
} event_names[] = {
        { PROTO_EVENT_LEASE_REVOKED, "lease_revoked" },
        { PROTO_EVENT_HOTPLUG, "hotplug" },
        { PROTO_EVENT_LEASE, "lease" },
        { PROTO_EVENT_POWER, "power" },
        { PROTO_EVENT_FAULT, "fault" },
        { PROTO_EVENT_HEALTH, "health" },
};

/* The fields each request may carry besides "id" and "request". */
static const char *const lease_fields[] = { "count", "gpus", "min_vram_bytes", "exclusive", "wait_ms", "holder", NULL };
static const char *const release_fields[] = { "lease", NULL };
static const char *const subscribe_fields[] = { "events", NULL };
static const char *const power_get_fields[] = { "gpu", NULL };
static const char *const power_set_fields[] = { "gpu", "watts", NULL };
static const char *const no_fields[] = { NULL };

static const struct {
        int err;
        const char *name;
} errno_names[] = {
        { EPERM, "EPERM" },   { EBUSY, "EBUSY" },   { EINVAL, "EINVAL" },     { ENODEV, "ENODEV" },
        { ENOENT, "ENOENT" }, { ENOMEM, "ENOMEM" }, { ETIMEDOUT, "ETIMEDOUT" }, { EMSGSIZE, "EMSGSIZE" },
        { EIO, "EIO" },       { ENOTSUP, "ENOTSUP" }, { ERANGE, "ERANGE" },
};

const char *proto_request_name(enum proto_request_kind kind)
{
        return kind < ELEMENTSOF(request_names) ? request_names[kind] : "?";
}

const char *proto_event_name(enum proto_event_kind kind)
{
        for (size_t i = 0; i < ELEMENTSOF(event_names); i++)
                if (event_names[i].kind == kind)
                        return event_names[i].name;
        return "?";
}

const char *proto_errno_name(int negative_errno)
{
        for (size_t i = 0; i < ELEMENTSOF(errno_names); i++)
                if (errno_names[i].err == -negative_errno)
                        return errno_names[i].name;
        return "EIO";
}

int proto_errno_from_name(const char *name)
{
        for (size_t i = 0; i < ELEMENTSOF(errno_names); i++)
                if (streq(errno_names[i].name, name))
                        return -errno_names[i].err;
        return 0;
}

static int fail(char *err, size_t err_size, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static int fail(char *err, size_t err_size, const char *fmt, ...)
{
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(err, err_size, fmt, ap);
        va_end(ap);
        return -EINVAL;
}

static bool is_known_field(const char *key, const char *const *fields)
{
        if (streq(key, "id") || streq(key, "request"))
                return true;
        for (size_t i = 0; fields[i]; i++)
                if (streq(key, fields[i]))
                        return true;
        return false;
}

static int check_fields(struct json_object *o, const char *const *fields, char *err, size_t err_size)
{
        json_object_object_foreach(o, key, value) {
                (void)value;
                if (!is_known_field(key, fields))
                        return fail(err, err_size, "unknown field '%.64s'", key);
        }
        return 0;
}

/* An integer field in [min, max]; absent leaves *out as it is. */
static int get_int(struct json_object *o, const char *key, int64_t min, int64_t max, int64_t *out, char *err,
                   size_t err_size)
{
        struct json_object *v;
        if (!json_object_object_get_ex(o, key, &v))
                return 0;
        if (!json_object_is_type(v, json_type_int))
                return fail(err, err_size, "'%s' must be an integer", key);
        errno = 0;
        int64_t n = json_object_get_int64(v);
        if (errno != 0 || n < min || n > max)
                return fail(err, err_size, "'%s' must be between %lld and %lld", key, (long long)min, (long long)max);
        *out = n;
        return 0;
}

/* A string field of at most size - 1 bytes; absent leaves out as it is. */
static int get_string(struct json_object *o, const char *key, char *out, size_t size, char *err, size_t err_size)
{
        struct json_object *v;
        if (!json_object_object_get_ex(o, key, &v))
                return 0;
        if (!json_object_is_type(v, json_type_string))
                return fail(err, err_size, "'%s' must be a string", key);
        const char *s = json_object_get_string(v);
        size_t len = (size_t)json_object_get_string_len(v);
        if (len >= size || strlen(s) != len)
                return fail(err, err_size, "'%s' must be a string of at most %zu bytes without NUL", key, size - 1);
        memcpy(out, s, len + 1);
        return 0;
}

static int get_selector(struct json_object *v, char *out, char *err, size_t err_size)
{
        if (json_object_is_type(v, json_type_int)) {
                int64_t n = json_object_get_int64(v);
                if (n < 0 || n >= 100000)
                        return fail(err, err_size, "GPU index %lld is out of range", (long long)n);
                snprintf(out, PROTO_SELECTOR_LEN, "%lld", (long long)n);
                return 0;
        }
        if (!json_object_is_type(v, json_type_string))
                return fail(err, err_size, "each of 'gpus' must be an index, a PCI address or a unique id");
        const char *s = json_object_get_string(v);
        size_t len = (size_t)json_object_get_string_len(v);
        if (len == 0 || len >= PROTO_SELECTOR_LEN || strlen(s) != len)
                return fail(err, err_size, "a GPU selector must be 1 to %d bytes", PROTO_SELECTOR_LEN - 1);
        memcpy(out, s, len + 1);
        return 0;
}

static int parse_lease(struct json_object *o, struct proto_lease_params *p, char *err, size_t err_size)
{
        p->is_exclusive = true;
        struct json_object *gpus;
        if (json_object_object_get_ex(o, "gpus", &gpus)) {
                if (!json_object_is_type(gpus, json_type_array))
                        return fail(err, err_size, "'gpus' must be an array of GPU selectors");
                size_t n = json_object_array_length(gpus);
                if (n == 0 || n > PROTO_MAX_GPUS)
                        return fail(err, err_size, "'gpus' must name 1 to %d GPUs", PROTO_MAX_GPUS);
                for (size_t i = 0; i < n; i++) {
                        int r = get_selector(json_object_array_get_idx(gpus, i), p->gpus[i], err, err_size);
                        if (r < 0)
                                return r;
                        for (size_t j = 0; j < i; j++)
                                if (streq(p->gpus[j], p->gpus[i]))
                                        return fail(err, err_size, "GPU '%s' is named twice", p->gpus[i]);
                }
                p->n_gpus = n;
        }

        int64_t count = (int64_t)(p->n_gpus ? p->n_gpus : 1);
        int r = get_int(o, "count", 1, PROTO_MAX_GPUS, &count, err, err_size);
        if (r < 0)
                return r;
        if (p->n_gpus && (size_t)count != p->n_gpus)
                return fail(err, err_size, "'count' is %lld but 'gpus' names %zu", (long long)count, p->n_gpus);
        p->count = (size_t)count;

        int64_t min_vram = 0, wait_ms = 0;
        r = get_int(o, "min_vram_bytes", 0, INT64_MAX, &min_vram, err, err_size);
        if (r < 0)
                return r;
        r = get_int(o, "wait_ms", 0, PROTO_MAX_WAIT_MS, &wait_ms, err, err_size);
        if (r < 0)
                return r;
        p->min_vram_bytes = (uint64_t)min_vram;
        p->wait_ms = (uint32_t)wait_ms;

        struct json_object *v;
        if (json_object_object_get_ex(o, "exclusive", &v)) {
                if (!json_object_is_type(v, json_type_boolean))
                        return fail(err, err_size, "'exclusive' must be true or false");
                p->is_exclusive = json_object_get_boolean(v);
        }
        return get_string(o, "holder", p->holder, sizeof(p->holder), err, err_size);
}

static int parse_subscribe(struct json_object *o, unsigned *events, char *err, size_t err_size)
{
        struct json_object *list;
        if (!json_object_object_get_ex(o, "events", &list) || !json_object_is_type(list, json_type_array))
                return fail(err, err_size, "'events' must be an array of event names");
        size_t n = json_object_array_length(list);
        for (size_t i = 0; i < n; i++) {
                struct json_object *v = json_object_array_get_idx(list, i);
                const char *name = json_object_is_type(v, json_type_string) ? json_object_get_string(v) : "";
                unsigned bit = 0;
                for (size_t j = 0; j < ELEMENTSOF(event_names); j++)
                        if (streq(event_names[j].name, name))
                                bit = event_names[j].kind;
                if (!bit)
                        return fail(err, err_size, "unknown event '%.64s' (known: lease_revoked, hotplug, lease, power, fault, health)", name);
                *events |= bit;
        }
        return 0;
}

static int parse_power(struct json_object *o, struct proto_request *r, char *err, size_t err_size)
{
        struct json_object *v;
        if (json_object_object_get_ex(o, "gpu", &v)) {
                int e = get_selector(v, r->gpu, err, err_size);
                if (e < 0)
                        return e;
        }
        if (r->kind == PROTO_POWER_GET)
                return 0;
        if (!r->gpu[0])
                return fail(err, err_size, "'power_set' needs \"gpu\": an index, a PCI address or a unique id");
        if (!json_object_object_get_ex(o, "watts", &v) ||
            !(json_object_is_type(v, json_type_int) || json_object_is_type(v, json_type_double)))
                return fail(err, err_size, "'power_set' needs \"watts\": a number");
        r->watts = json_object_get_double(v);
        if (!(r->watts > 0 && r->watts < 100000))
                return fail(err, err_size, "'watts' must be between 0 and 100000");
        return 0;
}

static int parse_kind(struct json_object *o, enum proto_request_kind *kind, char *err, size_t err_size)
{
        struct json_object *v;
        if (!json_object_object_get_ex(o, "request", &v) || !json_object_is_type(v, json_type_string))
                return fail(err, err_size, "missing \"request\" (one of hello, list, topo, lease, release, leases, "
                                           "subscribe, power_get, power_set, faults)");
        const char *name = json_object_get_string(v);
        for (size_t i = 0; i < ELEMENTSOF(request_names); i++)
                if (streq(request_names[i], name)) {
                        *kind = (enum proto_request_kind)i;
                        return 0;
                }
        return fail(err, err_size, "unknown request '%.64s'", name);
}

static struct json_object *parse_object(const char *line, size_t len, char *err, size_t err_size)
{
        if (len >= PROTO_MAX_LINE) {
                fail(err, err_size, "message longer than %d bytes", PROTO_MAX_LINE - 1);
                return NULL;
        }
        /* A bare 42 or true would read as "ends early": the tokenizer waits for more digits. */
        size_t first = 0;
        while (first < len && (line[first] == ' ' || line[first] == '\t' || line[first] == '\r'))
                first++;
        if (first < len && line[first] != '{') {
                fail(err, err_size, "a request must be a JSON object");
                return NULL;
        }
        struct json_tokener *tok = json_tokener_new_ex(PROTO_MAX_DEPTH);
        if (!tok) {
                snprintf(err, err_size, "out of memory");
                return NULL;
        }
        struct json_object *o = json_tokener_parse_ex(tok, line, (int)len);
        enum json_tokener_error jerr = json_tokener_get_error(tok);
        size_t used = json_tokener_get_parse_end(tok);
        json_tokener_free(tok);
        if (!o || jerr != json_tokener_success) {
                json_object_put(o);
                fail(err, err_size, "not valid JSON: %s",
                     jerr == json_tokener_continue ? "the message ends early" : json_tokener_error_desc(jerr));
                return NULL;
        }
        for (; used < len; used++)
                if (line[used] != ' ' && line[used] != '\t' && line[used] != '\r') {
                        json_object_put(o);
                        fail(err, err_size, "trailing data after the JSON object");
                        return NULL;
                }
        if (!json_object_is_type(o, json_type_object)) {
                json_object_put(o);
                fail(err, err_size, "a request must be a JSON object");
                return NULL;
        }
        return o;
}

int proto_parse_request(const char *line, size_t len, struct proto_request *out, char *err, size_t err_size)
{
        memset(out, 0, sizeof(*out));
        struct json_object *o = parse_object(line, len, err, err_size);
        if (!o)
                return -EINVAL;

        struct json_object *id;
        if (json_object_object_get_ex(o, "id", &id)) {
                if (!json_object_is_type(id, json_type_int) && !json_object_is_type(id, json_type_string)) {
                        json_object_put(o);
                        return fail(err, err_size, "'id' must be an integer or a string");
                }
                /* Copied whole (a string with NUL, an integer past INT64_MAX), so the reply's id is
                 * byte for byte the request's; the reply outlives the request object. */
                if (json_object_deep_copy(id, &out->id, NULL) < 0) {
                        json_object_put(o);
                        return fail(err, err_size, "out of memory");
                }
        }

        int r = parse_kind(o, &out->kind, err, err_size);
        if (r == 0) {
                const char *const *fields = out->kind == PROTO_LEASE     ? lease_fields
                                          : out->kind == PROTO_RELEASE   ? release_fields
                                          : out->kind == PROTO_SUBSCRIBE ? subscribe_fields
                                          : out->kind == PROTO_POWER_GET ? power_get_fields
                                          : out->kind == PROTO_POWER_SET ? power_set_fields
                                                                         : no_fields;
                r = check_fields(o, fields, err, err_size);
        }
        if (r == 0 && out->kind == PROTO_LEASE)
                r = parse_lease(o, &out->lease, err, err_size);
        if (r == 0 && out->kind == PROTO_RELEASE) {
                r = get_string(o, "lease", out->lease_id, sizeof(out->lease_id), err, err_size);
                if (r == 0 && !out->lease_id[0])
                        r = fail(err, err_size, "'release' needs the \"lease\" id that 'lease' returned");
        }
        if (r == 0 && out->kind == PROTO_SUBSCRIBE)
                r = parse_subscribe(o, &out->events, err, err_size);
        if (r == 0 && (out->kind == PROTO_POWER_GET || out->kind == PROTO_POWER_SET))
                r = parse_power(o, out, err, err_size);
        json_object_put(o);
        return r;
}

void proto_request_clear(struct proto_request *r)
{
        json_object_put(r->id);
        r->id = NULL;
}

static char *format_line(struct json_object *o)
{
        if (!o)
                return NULL;
        const char *s = json_object_to_json_string_ext(o, JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE);
        char *line = NULL;
        if (!s || asprintf(&line, "%s\n", s) < 0)
                line = NULL;
        json_object_put(o);
        return line;
}

static struct json_object *reply_object(struct json_object *id)
{
        struct json_object *o = json_object_new_object();
        if (o)
                json_object_object_add(o, "id", json_object_get(id));
        return o;
}

char *proto_format_result(struct json_object *id, struct json_object *result)
{
        struct json_object *o = reply_object(id);
        if (!o) {
                json_object_put(result);
                return NULL;
        }
        json_object_object_add(o, "result", result ? result : json_object_new_object());
        return format_line(o);
}

char *proto_format_error(struct json_object *id, const char *code, const char *fmt, ...)
{
        char message[512];
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(message, sizeof(message), fmt, ap);
        va_end(ap);

        struct json_object *o = reply_object(id);
        struct json_object *e = json_object_new_object();
        if (!o || !e) {
                json_object_put(o);
                json_object_put(e);
                return NULL;
        }
        json_object_object_add(e, "code", json_object_new_string(code));
        json_object_object_add(e, "message", json_object_new_string(message));
        json_object_object_add(o, "error", e);
        return format_line(o);
}

char *proto_format_event(enum proto_event_kind kind, struct json_object *fields)
{
        struct json_object *o = fields ? fields : json_object_new_object();
        if (!o)
                return NULL;
        json_object_object_add(o, "event", json_object_new_string(proto_event_name(kind)));
        return format_line(o);
}

char *proto_reader_space(struct proto_reader *r, size_t *size)
{
        if (r->start > 0) {
                memmove(r->buf, r->buf + r->start, r->len - r->start);
                r->len -= r->start;
                r->scanned -= r->start;
                r->start = 0;
        }
        *size = sizeof(r->buf) - r->len;
        return r->buf + r->len;
}

void proto_reader_commit(struct proto_reader *r, size_t n)
{
        r->len += n;
}

int proto_reader_next(struct proto_reader *r, char **line, size_t *len)
{
        for (;;) {
                /* Bytes before scanned hold no newline: a line trickling in is searched once. */
                size_t from = r->scanned > r->start ? r->scanned : r->start;
                char *nl = memchr(r->buf + from, '\n', r->len - from);
                if (nl && r->is_discarding) {
                        r->start = r->scanned = (size_t)(nl + 1 - r->buf);
                        r->is_discarding = false;
                        continue;
                }
                if (nl) {
                        *nl = '\0';
                        *line = r->buf + r->start;
                        *len = (size_t)(nl - *line);
                        r->start = r->scanned = (size_t)(nl + 1 - r->buf);
                        return 1;
                }
                r->scanned = r->len;
                if (r->is_discarding) {
                        r->start = r->len = r->scanned = 0;
                        return 0;
                }
                if (r->start == 0 && r->len == sizeof(r->buf)) {
                        /* A full buffer without a newline: the line is too long. */
                        r->start = r->len = r->scanned = 0;
                        r->is_discarding = true;
                        return -EMSGSIZE;
                }
                return 0;
        }
}
