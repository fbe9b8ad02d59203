/* client.h — talking to rigd (DESIGN §4.3): connect, call, and read events. Blocking, one
 * request in flight at a time, which is all gpuctl and the runtime need; events that arrive while
 * a call waits for its reply are queued for rigd_client_next_event(). */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <json-c/json.h>

struct rigd_client;

/* Connects to rigd's socket. -ENOENT / -ECONNREFUSED mean no rigd runs there. */
int rigd_client_connect(const char *socket_path, struct rigd_client **out);
void rigd_client_free(struct rigd_client *c);
int rigd_client_fd(const struct rigd_client *c);

/* Sends {"request": name, ...fields} (fields consumed, may be NULL) and waits up to timeout_ms
 * (-1: for ever) for its reply. 0 with *result (owned by the caller); or the negative errno of the
 * error code rigd answered (-EBUSY, -EPERM, ...) with rigd's message in err; or a transport error
 * (-ETIMEDOUT, -ECONNRESET, -EPROTO for a reply that is not the protocol) described in err. */
int rigd_client_call(struct rigd_client *c, const char *name, struct json_object *fields, int timeout_ms,
                     struct json_object **result, char *err, size_t err_size);

/* The next event: a queued one, else one read within timeout_ms (0: only what is there, -1: wait
 * for one). 1 with
 * *event (owned by the caller), 0 when none came, or a negative errno when the connection broke. */
int rigd_client_next_event(struct rigd_client *c, int timeout_ms, struct json_object **event);

/* A lease request (DESIGN §4.3 "lease"): count GPUs, or the named ones. */
struct rigd_lease_options {
        size_t count;
        const char *const *gpus;        /* selectors, n_gpus of them; NULL for any */
        size_t n_gpus;
        uint64_t min_vram_bytes;
        bool is_shared;                 /* the default is exclusive */
        uint32_t wait_ms;
        const char *holder;             /* NULL: rigd names it after the pid */
};

/* Takes a lease; *grant is rigd's result (id, gpus, p2p, env). The lease lasts until released or
 * until the client is freed. */
int rigd_client_lease(struct rigd_client *c, const struct rigd_lease_options *o, struct json_object **grant,
                      char *err, size_t err_size);
int rigd_client_release(struct rigd_client *c, const char *lease_id, char *err, size_t err_size);
