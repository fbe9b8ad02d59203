/* client.c — the blocking rigd client: one JSON line out, lines in until the reply with our id;
 * events met on the way are kept in order for rigd_client_next_event(). */
#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "client.h"
#include "proto.h"
#include "util.h"

#define CLIENT_MAX_QUEUED_EVENTS 1024   /* a caller that never reads events loses the oldest */

struct rigd_client {
        int fd;
        int64_t next_id;
        struct proto_reader reader;
        struct json_object *events[CLIENT_MAX_QUEUED_EVENTS];  /* ring buffer */
        size_t first_event, n_events;
};

int rigd_client_connect(const char *socket_path, struct rigd_client **out)
{
        struct sockaddr_un addr = { .sun_family = AF_UNIX };
        if (!strscpy(addr.sun_path, socket_path, sizeof(addr.sun_path)))
                return -ENAMETOOLONG;
        struct rigd_client *c = calloc(1, sizeof(*c));
        if (!c)
                return -ENOMEM;
        c->fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
        if (c->fd < 0 || connect(c->fd, (const struct sockaddr *)&addr, sizeof(addr)) < 0) {
                int r = -errno;
                if (c->fd >= 0)
                        close(c->fd);
                free(c);
                return r;
        }
        c->next_id = 1;
        *out = c;
        return 0;
}

void rigd_client_free(struct rigd_client *c)
{
        if (!c)
                return;
        close(c->fd);
        for (size_t i = 0; i < c->n_events; i++)
                json_object_put(c->events[(c->first_event + i) % CLIENT_MAX_QUEUED_EVENTS]);
        free(c);
}

int rigd_client_fd(const struct rigd_client *c)
{
        return c->fd;
}

static int64_t now_ms(void)
{
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static int send_all(int fd, const char *buf, size_t len)
{
        while (len > 0) {
                ssize_t n = send(fd, buf, len, MSG_NOSIGNAL);
                if (n < 0 && errno == EINTR)
                        continue;
                if (n < 0)
                        return -errno;
                buf += n;
                len -= (size_t)n;
        }
        return 0;
}

/* The next whole line as a JSON object, waiting until deadline_ms (-1: for ever). 1 with *out,
 * 0 on timeout, negative errno when the connection broke or the line is not JSON. */
static int read_message(struct rigd_client *c, int64_t deadline_ms, struct json_object **out)
{
        for (;;) {
                char *line;
                size_t len;
                int r = proto_reader_next(&c->reader, &line, &len);
                if (r < 0)
                        return -EPROTO;
                if (r > 0) {
                        struct json_object *o = json_tokener_parse(line);
                        if (!o || !json_object_is_type(o, json_type_object)) {
                                json_object_put(o);
                                return -EPROTO;
                        }
                        *out = o;
                        return 1;
                }
                int timeout = -1;
                if (deadline_ms >= 0) {
                        int64_t left = deadline_ms - now_ms();
                        timeout = left > 0 ? (int)left : 0;
                }
                struct pollfd p = { .fd = c->fd, .events = POLLIN };
                r = poll(&p, 1, timeout);
                if (r < 0 && errno == EINTR)
                        continue;
                if (r < 0)
                        return -errno;
                if (r == 0)
                        return 0;
                size_t space;
                char *buf = proto_reader_space(&c->reader, &space);
                ssize_t n = recv(c->fd, buf, space, 0);
                if (n < 0 && errno == EINTR)
                        continue;
                if (n < 0)
                        return -errno;
                if (n == 0)
                        return -ECONNRESET;
                proto_reader_commit(&c->reader, (size_t)n);
        }
}

static void queue_event(struct rigd_client *c, struct json_object *event)
{
        if (c->n_events == CLIENT_MAX_QUEUED_EVENTS) {
                json_object_put(c->events[c->first_event]);
                c->first_event = (c->first_event + 1) % CLIENT_MAX_QUEUED_EVENTS;
                c->n_events--;
        }
        c->events[(c->first_event + c->n_events) % CLIENT_MAX_QUEUED_EVENTS] = event;
        c->n_events++;
}

static int transport_error(int r, char *err, size_t err_size)
{
        if (r == -EPROTO)
                snprintf(err, err_size, "rigd sent something that is not its protocol");
        else if (r == -ECONNRESET)
                snprintf(err, err_size, "rigd closed the connection");
        else
                snprintf(err, err_size, "talking to rigd: %s", strerror(-r));
        return r;
}

/* The error object of a reply, as a negative errno and its message. */
static int reply_error(struct json_object *e, char *err, size_t err_size)
{
        struct json_object *code = NULL, *message = NULL;
        json_object_object_get_ex(e, "code", &code);
        json_object_object_get_ex(e, "message", &message);
        snprintf(err, err_size, "%s", message ? json_object_get_string(message) : "rigd refused");
        int r = code ? proto_errno_from_name(json_object_get_string(code)) : 0;
        return r ? r : -EIO;
}

int rigd_client_call(struct rigd_client *c, const char *name, struct json_object *fields, int timeout_ms,
                     struct json_object **result, char *err, size_t err_size)
{
        struct json_object *request = fields ? fields : json_object_new_object();
        int64_t id = c->next_id++;
        json_object_object_add(request, "id", json_object_new_int64(id));
        json_object_object_add(request, "request", json_object_new_string(name));
        char *line = NULL;
        int r = asprintf(&line, "%s\n", json_object_to_json_string_ext(request, JSON_C_TO_STRING_PLAIN));
        json_object_put(request);
        if (r < 0)
                return -ENOMEM;
        r = send_all(c->fd, line, strlen(line));
        free(line);
        if (r < 0)
                return transport_error(r, err, err_size);

        int64_t deadline = timeout_ms < 0 ? -1 : now_ms() + timeout_ms;
        for (;;) {
                struct json_object *msg;
                r = read_message(c, deadline, &msg);
                if (r == 0) {
                        snprintf(err, err_size, "rigd did not answer '%s' within %d ms", name, timeout_ms);
                        return -ETIMEDOUT;
                }
                if (r < 0)
                        return transport_error(r, err, err_size);
                struct json_object *v;
                if (json_object_object_get_ex(msg, "event", &v)) {
                        queue_event(c, msg);
                        continue;
                }
                if (!json_object_object_get_ex(msg, "id", &v) || json_object_get_int64(v) != id) {
                        json_object_put(msg);   /* an error about an earlier, broken line */
                        continue;
                }
                if (json_object_object_get_ex(msg, "error", &v)) {
                        r = reply_error(v, err, err_size);
                        json_object_put(msg);
                        return r;
                }
                if (!json_object_object_get_ex(msg, "result", &v)) {
                        json_object_put(msg);
                        return transport_error(-EPROTO, err, err_size);
                }
                *result = json_object_get(v);
                json_object_put(msg);
                return 0;
        }
}

int rigd_client_next_event(struct rigd_client *c, int timeout_ms, struct json_object **event)
{
        int64_t deadline = timeout_ms < 0 ? -1 : now_ms() + timeout_ms;
        while (c->n_events == 0) {
                struct json_object *msg;
                int r = read_message(c, deadline, &msg);
                if (r <= 0)
                        return r;
                struct json_object *v;
                if (json_object_object_get_ex(msg, "event", &v))
                        queue_event(c, msg);
                else
                        json_object_put(msg);   /* a late reply nobody waits for */
        }
        *event = c->events[c->first_event];
        c->first_event = (c->first_event + 1) % CLIENT_MAX_QUEUED_EVENTS;
        c->n_events--;
        return 1;
}

int rigd_client_lease(struct rigd_client *c, const struct rigd_lease_options *o, struct json_object **grant,
                      char *err, size_t err_size)
{
        struct json_object *f = json_object_new_object();
        if (!f)
                return -ENOMEM;
        if (o->n_gpus > 0) {
                struct json_object *gpus = json_object_new_array();
                for (size_t i = 0; i < o->n_gpus; i++)
                        json_object_array_add(gpus, json_object_new_string(o->gpus[i]));
                json_object_object_add(f, "gpus", gpus);
        } else {
                json_object_object_add(f, "count", json_object_new_int64((int64_t)(o->count ? o->count : 1)));
        }
        if (o->min_vram_bytes)
                json_object_object_add(f, "min_vram_bytes", json_object_new_int64((int64_t)o->min_vram_bytes));
        if (o->is_shared)
                json_object_object_add(f, "exclusive", json_object_new_boolean(false));
        if (o->wait_ms)
                json_object_object_add(f, "wait_ms", json_object_new_int64(o->wait_ms));
        if (o->holder)
                json_object_object_add(f, "holder", json_object_new_string(o->holder));
        /* A waiting request is answered within its wait; a little more covers the round trip. */
        return rigd_client_call(c, "lease", f, (int)o->wait_ms + 10000, grant, err, err_size);
}

int rigd_client_release(struct rigd_client *c, const char *lease_id, char *err, size_t err_size)
{
        struct json_object *f = json_object_new_object();
        if (!f)
                return -ENOMEM;
        json_object_object_add(f, "lease", json_object_new_string(lease_id));
        struct json_object *result = NULL;
        int r = rigd_client_call(c, "release", f, 10000, &result, err, err_size);
        json_object_put(result);
        return r;
}
