/* proto.h — rigd's wire protocol (DESIGN §4.3): one JSON object per line over a Unix stream
 * socket. Requests carry "id" and "request"; replies echo the id with "result" or "error";
 * events carry "event" and no id. Everything here is bounded: a line is at most PROTO_MAX_LINE
 * bytes, a request names at most PROTO_MAX_GPUS GPUs, and parsing never trusts the peer. */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <json-c/json.h>

#define PROTO_MAX_LINE (64 * 1024)      /* bytes of one message, newline included */
#define PROTO_MAX_GPUS 64               /* GPUs one lease may name or count */
#define PROTO_SELECTOR_LEN 80           /* an index, PCI address or unique id, NUL included */
#define PROTO_HOLDER_LEN 128            /* the holder's self-description, NUL included */
#define PROTO_LEASE_ID_LEN 32
#define PROTO_MAX_WAIT_MS (3600 * 1000) /* a request waits at most an hour for its GPUs */
#define PROTO_MAX_DEPTH 8               /* JSON nesting: requests are flat */

enum proto_request_kind {
        PROTO_HELLO,
        PROTO_LIST,
        PROTO_TOPO,
        PROTO_LEASE,
        PROTO_RELEASE,
        PROTO_LEASES,
        PROTO_SUBSCRIBE,
        PROTO_POWER_GET,
        PROTO_POWER_SET,
        PROTO_FAULTS,
};

/* Events a connection may subscribe to; lease_revoked always reaches the holder. */
enum proto_event_kind {
        PROTO_EVENT_LEASE_REVOKED = 1u << 0,
        PROTO_EVENT_HOTPLUG = 1u << 1,
        PROTO_EVENT_LEASE = 1u << 2,    /* any grant or release: what `gpuctl leases --follow` would show */
        PROTO_EVENT_POWER = 1u << 3,    /* a cap set or restored */
        PROTO_EVENT_FAULT = 1u << 4,    /* a GPU fault in the kernel log; holders get it unasked */
        PROTO_EVENT_HEALTH = 1u << 5,   /* a GPU's health changed */
};

struct proto_lease_params {
        size_t count;                   /* GPUs wanted; equals n_gpus when GPUs are named */
        char gpus[PROTO_MAX_GPUS][PROTO_SELECTOR_LEN];  /* selectors as sent, n_gpus of them */
        size_t n_gpus;
        uint64_t min_vram_bytes;        /* free VRAM each GPU must have; 0: any */
        bool is_exclusive;              /* default true; shared leases may share a GPU */
        uint32_t wait_ms;               /* 0: answer at once (EBUSY when taken) */
        char holder[PROTO_HOLDER_LEN];  /* "" when not given */
};

struct proto_request {
        struct json_object *id;         /* owned; NULL when the request had none (replies say null) */
        enum proto_request_kind kind;
        struct proto_lease_params lease;        /* PROTO_LEASE */
        char lease_id[PROTO_LEASE_ID_LEN];      /* PROTO_RELEASE */
        unsigned events;                        /* PROTO_SUBSCRIBE: enum proto_event_kind bits */
        char gpu[PROTO_SELECTOR_LEN];           /* PROTO_POWER_GET (optional), PROTO_POWER_SET */
        double watts;                           /* PROTO_POWER_SET */
};

/* Parses one line (without its newline). On failure returns -EINVAL with a message for the peer
 * in err, and, when the line was an object with an id, that id in out->id so the error reply can
 * echo it. Free with proto_request_clear() in every case. */
int proto_parse_request(const char *line, size_t len, struct proto_request *out, char *err, size_t err_size);
void proto_request_clear(struct proto_request *r);

const char *proto_request_name(enum proto_request_kind kind);
const char *proto_event_name(enum proto_event_kind kind);

/* Reply and event lines: newly allocated, newline-terminated JSON, or NULL when memory ran out.
 * result and fields are consumed (their reference is taken over); id is not. */
char *proto_format_result(struct json_object *id, struct json_object *result);
char *proto_format_error(struct json_object *id, const char *code, const char *fmt, ...)
        __attribute__((format(printf, 3, 4)));
char *proto_format_event(enum proto_event_kind kind, struct json_object *fields);

/* The error code names of the protocol ("EBUSY") for a negative errno, and back (0 if unknown). */
const char *proto_errno_name(int negative_errno);
int proto_errno_from_name(const char *name);

/* Splits a byte stream into lines of at most PROTO_MAX_LINE bytes. A longer line is reported
 * once (-EMSGSIZE) and its bytes dropped up to its newline, so one bad message costs only itself. */
struct proto_reader {
        char buf[PROTO_MAX_LINE];
        size_t start, len;              /* unread bytes are buf[start, len) */
        size_t scanned;                 /* buf[start, scanned) has no newline */
        bool is_discarding;             /* inside an overlong line: drop up to its newline */
};

/* Where the next read may write, and how much. */
char *proto_reader_space(struct proto_reader *r, size_t *size);
void proto_reader_commit(struct proto_reader *r, size_t n);

/* 1 with the next line in *line (NUL-terminated in place, valid until the next call), 0 when no
 * whole line is buffered, -EMSGSIZE for an overlong line. */
int proto_reader_next(struct proto_reader *r, char **line, size_t *len);
