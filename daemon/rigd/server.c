/* server.c — the Unix-socket server of DESIGN §4.3: connections, who the peer is (SO_PEERCRED),
 * the requests, and the lease replies and events. A connection's leases end when it closes: the
 * kernel closes the socket of a holder that exits or crashes, and its GPUs are free again. */
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include <systemd/sd-daemon.h>

#include "gpu_json.h"
#include "kmsg.h"
#include "log.h"
#include "powercap.h"
#include "rigd.h"
#include "util.h"

/* A lease request that waits for its GPUs. */
struct wait {
        struct conn *conn;
        struct json_object *id;         /* the request's id, for the reply */
        struct lease_waiter *waiter;
        sd_event_source *timer;
        uint32_t wait_ms;
        struct wait *next;
};

static uint64_t realtime_usec(void)
{
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

static struct json_object *rfc3339(uint64_t usec)
{
        time_t t = (time_t)(usec / 1000000u);
        struct tm tm;
        char buf[32];
        gmtime_r(&t, &tm);
        strftime(buf, sizeof(buf), "%Y-%m-%dT%H:%M:%SZ", &tm);
        return json_object_new_string(buf);
}

static void conn_close(struct conn *c);

static int on_close_later(sd_event_source *s, void *userdata)
{
        conn_close(userdata);   /* which drops this source too: sd-event pins it while it runs */
        return 0;
}

/* Writes what is queued; keeps the rest for when the socket is writable. */
static int conn_flush(struct conn *c)
{
        while (c->out_len > 0) {
                ssize_t n = send(c->fd, c->out, c->out_len, MSG_NOSIGNAL | MSG_DONTWAIT);
                if (n < 0 && errno == EINTR)
                        continue;
                if (n < 0 && errno == EAGAIN)
                        break;
                if (n < 0)
                        return -errno;
                memmove(c->out, c->out + n, c->out_len - (size_t)n);
                c->out_len -= (size_t)n;
        }
        return sd_event_source_set_io_events(c->io, EPOLLIN | (c->out_len ? EPOLLOUT : 0));
}

/* Queues one line (consumed) for the peer. A peer that lets more than RIGD_MAX_OUTPUT pile up, or
 * whose socket broke, is closed from the event loop (never under the caller's feet). */
static void conn_send(struct conn *c, char *line)
{
        if (!line) {
                log_warning("out of memory formatting a reply to pid %d", (int)c->cred.pid);
                return;
        }
        size_t len = strlen(line);
        int r = -EMSGSIZE;
        if (!c->is_dying && c->out_len + len <= RIGD_MAX_OUTPUT) {
                char *out = realloc(c->out, c->out_len + len);
                r = out ? 0 : -ENOMEM;
                if (out) {
                        memcpy(out + c->out_len, line, len);
                        c->out = out;
                        c->out_len += len;
                        r = conn_flush(c);
                }
        }
        free(line);
        if (r < 0 && !c->is_dying) {
                log_warning_errno(r, "dropping the connection of pid %d uid %u", (int)c->cred.pid, c->cred.uid);
                shutdown(c->fd, SHUT_RDWR);
                sd_event_source_set_enabled(c->io, SD_EVENT_OFF);
                sd_event_add_defer(c->rigd->event, &c->close_later, on_close_later, c);
                c->is_dying = true;
        }
}

static void reply_error(struct conn *c, struct json_object *id, int negative_errno, const char *fmt, ...)
        __attribute__((format(printf, 4, 5)));
static void reply_error(struct conn *c, struct json_object *id, int negative_errno, const char *fmt, ...)
{
        char message[512];
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(message, sizeof(message), fmt, ap);
        va_end(ap);
        conn_send(c, proto_format_error(id, proto_errno_name(negative_errno), "%s", message));
}

void server_broadcast(struct rigd *d, enum proto_event_kind kind, struct json_object *fields)
{
        for (struct conn *c = d->conns; c; c = c->next)
                if (c->events & kind)
                        conn_send(c, proto_format_event(kind, json_object_get(fields)));
        json_object_put(fields);
}

void server_lease_revoked(struct rigd *d, const struct lease *l, const char *gone_pci)
{
        log_warning("GPU %s is gone: %s of '%s' (pid %d) is revoked", gone_pci, l->id, l->req.holder, (int)l->req.pid);
        struct json_object *fields = json_object_new_object();
        json_object_object_add(fields, "lease", json_object_new_string(l->id));
        json_object_object_add(fields, "gpu_pci", json_object_new_string(gone_pci));
        json_object_object_add(fields, "reason", json_object_new_string("the GPU disappeared"));
        for (struct conn *c = d->conns; c; c = c->next)
                if (c == l->req.owner || (c->events & PROTO_EVENT_LEASE_REVOKED))
                        conn_send(c, proto_format_event(PROTO_EVENT_LEASE_REVOKED, json_object_get(fields)));
        json_object_put(fields);
}

void server_fault(struct rigd *d, const struct fault *f, uint64_t line)
{
        const struct lease *holders[PROTO_MAX_GPUS];
        size_t n_holders = 0;
        for (const struct lease *l = d->leases.leases; l && n_holders < PROTO_MAX_GPUS; l = l->next)
                for (size_t i = 0; i < l->req.count; i++)
                        if (streq(l->pci[i], f->gpu_pci))
                                holders[n_holders++] = l;
        struct json_object *fields = fault_to_json(f, line);
        for (struct conn *c = d->conns; c; c = c->next) {
                bool is_holder = false;
                for (size_t k = 0; k < n_holders; k++)
                        is_holder |= holders[k]->req.owner == c;
                if (is_holder || (c->events & PROTO_EVENT_FAULT))
                        conn_send(c, proto_format_event(PROTO_EVENT_FAULT, json_object_get(fields)));
        }
        json_object_put(fields);
}

static const struct gpu_info *gpu_by_pci(const struct rigd *d, const char *pci)
{
        for (size_t i = 0; i < d->machine->n_gpus; i++)
                if (streq(d->machine->gpus[i].pci, pci))
                        return &d->machine->gpus[i];
        return NULL;
}

static const struct lease *lease_holding(const struct rigd *d, const char *pci)
{
        for (const struct lease *l = d->leases.leases; l; l = l->next)
                for (size_t i = 0; i < l->req.count; i++)
                        if (streq(l->pci[i], pci))
                                return l;
        return NULL;
}

static struct json_object *lease_to_json(const struct rigd *d, const struct lease *l)
{
        struct json_object *o = json_object_new_object();
        struct json_object *gpus = json_object_new_array();
        struct json_object *pcis = json_object_new_array();
        for (size_t i = 0; i < l->req.count; i++) {
                const struct gpu_info *g = gpu_by_pci(d, l->pci[i]);
                json_object_array_add(gpus, g ? json_object_new_int(g->index) : NULL);
                json_object_array_add(pcis, json_object_new_string(l->pci[i]));
        }
        json_object_object_add(o, "id", json_object_new_string(l->id));
        json_object_object_add(o, "holder", json_object_new_string(l->req.holder));
        json_object_object_add(o, "pid", json_object_new_int64(l->req.pid));
        json_object_object_add(o, "uid", json_object_new_int64(l->req.uid));
        json_object_object_add(o, "gpus", gpus);
        json_object_object_add(o, "pci", pcis);
        json_object_object_add(o, "exclusive", json_object_new_boolean(l->req.is_exclusive));
        json_object_object_add(o, "since", rfc3339(l->since_usec));
        return o;
}

static void append_list(char *buf, size_t size, const char *item)
{
        size_t len = strlen(buf);
        snprintf(buf + len, size - len, "%s%s", len ? "," : "", item);
}

/* The environment that confines a process to the lease's GPUs. ROCm numbers the GPUs left by
 * ROCR_VISIBLE_DEVICES from 0, so HIP_VISIBLE_DEVICES counts 0..n-1; CUDA takes UUIDs, which
 * survive renumbering. A vendor the machine has but the lease does not gets an empty list. */
static struct json_object *lease_env(const struct rigd *d, const struct lease *l)
{
        char rocr[2048] = "", hip[512] = "", cuda[2048] = "";
        bool has_amd = false, has_nvidia = false, is_rocr_by_uuid = true;
        size_t n_amd = 0;
        for (size_t i = 0; i < d->machine->n_gpus; i++) {
                const struct gpu_info *g = &d->machine->gpus[i];
                has_amd |= g->vendor == GPU_VENDOR_AMD;
                has_nvidia |= g->vendor == GPU_VENDOR_NVIDIA;
                if (g->vendor == GPU_VENDOR_AMD && lease_holding(d, g->pci) == l)
                        is_rocr_by_uuid &= g->unique_id[0] != '\0';
        }
        for (size_t i = 0; i < d->machine->n_gpus; i++) {
                const struct gpu_info *g = &d->machine->gpus[i];
                bool is_ours = false;
                for (size_t k = 0; k < l->req.count; k++)
                        is_ours |= streq(l->pci[k], g->pci);
                if (!is_ours)
                        continue;
                char item[128];
                if (g->vendor == GPU_VENDOR_AMD) {
                        if (is_rocr_by_uuid)
                                snprintf(item, sizeof(item), "GPU-%s", g->unique_id);
                        else
                                snprintf(item, sizeof(item), "%d", g->index);   /* AMD GPUs come first, in KFD order */
                        append_list(rocr, sizeof(rocr), item);
                        snprintf(item, sizeof(item), "%zu", n_amd++);
                        append_list(hip, sizeof(hip), item);
                } else {
                        append_list(cuda, sizeof(cuda), g->unique_id[0] ? g->unique_id : g->pci);
                }
        }
        struct json_object *env = json_object_new_object();
        if (has_amd) {
                json_object_object_add(env, "ROCR_VISIBLE_DEVICES", json_object_new_string(rocr));
                json_object_object_add(env, "HIP_VISIBLE_DEVICES", json_object_new_string(hip));
        }
        if (has_nvidia)
                json_object_object_add(env, "CUDA_VISIBLE_DEVICES", json_object_new_string(cuda));
        json_object_object_add(env, "RIG_LEASE", json_object_new_string(l->id));
        return env;
}

/* What a grant returns: the lease, its GPUs (DESIGN §4.2 fields), P2P among them, the environment. */
static struct json_object *grant_to_json(const struct rigd *d, const struct lease *l)
{
        struct json_object *o = lease_to_json(d, l);
        struct json_object *gpus = json_object_new_array();
        struct json_object *p2p = json_object_new_array();
        for (size_t i = 0; i < l->req.count; i++) {
                const struct gpu_info *a = gpu_by_pci(d, l->pci[i]);
                json_object_array_add(gpus, a ? gpu_to_json(a, false) : NULL);
                struct json_object *row = json_object_new_array();
                for (size_t j = 0; j < l->req.count; j++) {
                        const struct gpu_info *b = gpu_by_pci(d, l->pci[j]);
                        const struct gpu_link *link = a && b ? machine_link(d->machine, a->index, b->index) : NULL;
                        json_object_array_add(row, json_object_new_boolean(i == j || (link && link->has_p2p)));
                }
                json_object_array_add(p2p, row);
        }
        json_object_object_add(o, "gpu_info", gpus);
        json_object_object_add(o, "p2p", p2p);
        json_object_object_add(o, "env", lease_env(d, l));
        return o;
}

static void broadcast_lease(struct rigd *d, const struct lease *l, const char *action)
{
        struct json_object *fields = lease_to_json(d, l);
        json_object_object_add(fields, "action", json_object_new_string(action));
        server_broadcast(d, PROTO_EVENT_LEASE, fields);
}

static void wait_free(struct wait *w)
{
        struct conn *c = w->conn;
        for (struct wait **p = &c->waits; *p; p = &(*p)->next)
                if (*p == w) {
                        *p = w->next;
                        break;
                }
        sd_event_source_disable_unref(w->timer);
        json_object_put(w->id);
        free(w);
}

static void on_granted(void *cookie, const struct lease *l, void *userdata)
{
        struct wait *w = cookie;
        struct rigd *d = userdata;
        log_info("granted %s to '%s' (pid %d, uid %u): %zu GPU(s)", l->id, l->req.holder, (int)l->req.pid,
                 l->req.uid, l->req.count);
        conn_send(w->conn, proto_format_result(w->id, grant_to_json(d, l)));
        broadcast_lease(d, l, "granted");
        w->waiter = NULL;       /* freed by the table after this call */
        wait_free(w);
}

void server_schedule(struct rigd *d)
{
        int r = lease_table_schedule(&d->leases, realtime_usec(), on_granted, d);
        if (r < 0)
                log_warning_errno(r, "granting waiting leases");
        power_enforce(d, "lease change");       /* idle caps follow the leases */
        rigd_update_status(d);
}

/* Why req cannot be granted now, for the EBUSY message: the first GPU it could use and who holds it. */
static void describe_busy(const struct rigd *d, const struct lease_request *req, char *buf, size_t size)
{
        size_t n_free = 0;
        const struct lease *holder = NULL;
        const char *held_pci = NULL;
        for (size_t i = 0; i < d->leases.n_gpus; i++) {
                const struct lease_gpu *g = &d->leases.gpus[i];
                bool is_wanted = req->n_named == 0;
                for (size_t k = 0; k < req->n_named; k++)
                        is_wanted |= streq(req->named[k], g->pci);
                if (!is_wanted)
                        continue;
                const struct lease *l = lease_holding(d, g->pci);
                if (!l && g->vram_free_bytes >= req->min_vram_bytes)
                        n_free++;
                else if (l && !holder) {
                        holder = l;
                        held_pci = g->pci;
                }
        }
        if (holder)
                snprintf(buf, size, "%zu GPU(s) asked for, %zu free; %s is held by %s ('%s', pid %d, uid %u)",
                         req->count, n_free, held_pci, holder->id, holder->req.holder, (int)holder->req.pid,
                         holder->req.uid);
        else
                snprintf(buf, size, "%zu GPU(s) asked for, %zu free (earlier requests wait for them, or VRAM is in use)",
                         req->count, n_free);
}

static int on_wait_timeout(sd_event_source *s, uint64_t usec, void *userdata)
{
        struct wait *w = userdata;
        struct conn *c = w->conn;
        char why[512];
        describe_busy(c->rigd, &w->waiter->req, why, sizeof(why));
        reply_error(c, w->id, -EBUSY, "still taken after waiting %u ms: %s", w->wait_ms, why);
        lease_table_cancel(&c->rigd->leases, w->waiter);
        wait_free(w);
        /* The request it was holding back may have blocked others. */
        server_schedule(c->rigd);
        return 0;
}

static int resolve_request(struct conn *c, const struct proto_lease_params *p, struct lease_request *req,
                           char *why, size_t why_size)
{
        struct rigd *d = c->rigd;
        memset(req, 0, sizeof(*req));
        req->count = p->count;
        req->min_vram_bytes = p->min_vram_bytes;
        req->is_exclusive = p->is_exclusive;
        req->pid = c->cred.pid;
        req->uid = c->cred.uid;
        req->owner = c;
        if (p->holder[0])
                strscpy(req->holder, p->holder, sizeof(req->holder));
        else
                snprintf(req->holder, sizeof(req->holder), "pid %d", (int)c->cred.pid);
        for (size_t i = 0; i < p->n_gpus; i++) {
                const struct gpu_info *g = machine_find_gpu(d->machine, p->gpus[i]);
                if (!g) {
                        snprintf(why, why_size, "no GPU matches '%s' (gpuctl list shows the indices, PCI addresses and ids)",
                                 p->gpus[i]);
                        return -ENODEV;
                }
                for (size_t k = 0; k < req->n_named; k++)
                        if (streq(req->named[k], g->pci)) {
                                snprintf(why, why_size, "'%s' names GPU %s a second time", p->gpus[i], g->pci);
                                return -EINVAL;
                        }
                strscpy(req->named[req->n_named++], g->pci, GPU_PCI_LEN);
        }
        return lease_table_check(&d->leases, req, why, why_size);
}

static bool conn_has_wait(const struct conn *c, const struct wait *w)
{
        for (const struct wait *x = c->waits; x; x = x->next)
                if (x == w)
                        return true;
        return false;
}

static void handle_lease(struct conn *c, const struct proto_request *r)
{
        struct rigd *d = c->rigd;
        if (!c->may_lease) {
                log_warning("denied a lease to uid %u pid %d: not root, not in group %s or %s", c->cred.uid,
                            (int)c->cred.pid, d->config.lease_group, d->config.admin_group);
                reply_error(c, r->id, -EPERM, "uid %u may not lease GPUs: leases are for root and the groups %s and %s",
                            c->cred.uid, d->config.lease_group, d->config.admin_group);
                return;
        }
        struct lease_request req;
        char why[512];
        int e = resolve_request(c, &r->lease, &req, why, sizeof(why));
        if (e < 0) {
                reply_error(c, r->id, e, "%s", why);
                return;
        }

        struct wait *w = calloc(1, sizeof(*w));
        if (!w) {
                reply_error(c, r->id, -ENOMEM, "out of memory");
                return;
        }
        w->conn = c;
        w->id = json_object_get(r->id);
        w->wait_ms = r->lease.wait_ms;
        w->next = c->waits;
        c->waits = w;
        w->waiter = lease_table_enqueue(&d->leases, &req, w);
        if (!w->waiter) {
                reply_error(c, r->id, -ENOMEM, "out of memory");
                wait_free(w);
                return;
        }
        server_schedule(d);
        if (!conn_has_wait(c, w))
                return;         /* granted: on_granted replied */

        if (w->wait_ms == 0) {
                describe_busy(d, &req, why, sizeof(why));
                reply_error(c, r->id, -EBUSY, "%s (wait_ms makes the request wait)", why);
                lease_table_cancel(&d->leases, w->waiter);
                wait_free(w);
                return;
        }
        int rt = sd_event_add_time_relative(d->event, &w->timer, CLOCK_MONOTONIC, (uint64_t)w->wait_ms * 1000u, 1000,
                                            on_wait_timeout, w);
        if (rt < 0) {
                reply_error(c, r->id, -ENOMEM, "cannot arm the wait timer");
                lease_table_cancel(&d->leases, w->waiter);
                wait_free(w);
        }
}

static void handle_release(struct conn *c, const struct proto_request *r)
{
        struct rigd *d = c->rigd;
        const struct lease *l = NULL;
        for (const struct lease *x = d->leases.leases; x; x = x->next)
                if (streq(x->id, r->lease_id) && x->req.owner == c)
                        l = x;
        if (l)
                broadcast_lease(d, l, "released");
        int e = lease_table_release(&d->leases, r->lease_id, c);
        if (e == -ENOENT) {
                reply_error(c, r->id, e, "no lease '%s' (it ended, or was never granted)", r->lease_id);
                return;
        }
        if (e == -EPERM) {
                reply_error(c, r->id, e, "lease '%s' belongs to another connection", r->lease_id);
                return;
        }
        struct json_object *result = json_object_new_object();
        json_object_object_add(result, "lease", json_object_new_string(r->lease_id));
        conn_send(c, proto_format_result(r->id, result));
        server_schedule(d);
}

static struct json_object *list_to_json(const struct rigd *d, bool is_brief)
{
        struct json_object *gpus = json_object_new_array();
        for (size_t i = 0; i < d->machine->n_gpus; i++) {
                const struct gpu_info *g = &d->machine->gpus[i];
                struct json_object *o = gpu_to_json(g, is_brief);
                const struct lease *l = lease_holding(d, g->pci);
                if (!is_brief)
                        json_object_object_add(o, "lease", l ? lease_to_json(d, l) : NULL);
                json_object_array_add(gpus, o);
        }
        struct json_object *result = json_object_new_object();
        json_object_object_add(result, "gpus", gpus);
        return result;
}

static struct json_object *power_to_json(struct rigd *d, const struct gpu_info *g)
{
        char source[CONFIG_WHERE_LEN + 64];
        double target = power_target(d, g, source, sizeof(source));
        double cap = NAN;
        powercap_read(d->machine, g, &cap);     /* fresh: the list's figure is from the discovery */
        struct json_object *o = gpu_power_to_json(g, cap);
        json_object_object_add(o, "target_w", json_double_or_null(target));
        json_object_object_add(o, "source", json_string_or_null(source));
        json_object_object_add(o, "leased", json_object_new_boolean(power_is_leased(d, g->pci)));
        return o;
}

static void handle_power(struct conn *c, const struct proto_request *r)
{
        struct rigd *d = c->rigd;
        const struct gpu_info *g = r->gpu[0] ? machine_find_gpu(d->machine, r->gpu) : NULL;
        if (r->gpu[0] && !g) {
                reply_error(c, r->id, -ENODEV, "no GPU matches '%s' (gpuctl list shows them)", r->gpu);
                return;
        }
        if (r->kind == PROTO_POWER_SET) {
                if (!c->is_admin) {
                        log_warning("denied a power cap change to uid %u pid %d: not root, not in group %s",
                                    c->cred.uid, (int)c->cred.pid, d->config.admin_group);
                        reply_error(c, r->id, -EPERM, "uid %u may not change power caps: that is for root and group %s",
                                    c->cred.uid, d->config.admin_group);
                        return;
                }
                char err[512];
                int e = power_set_override(d, g, r->watts, err, sizeof(err));
                if (e < 0) {
                        reply_error(c, r->id, e, "%s", err);
                        return;
                }
                log_info("uid %u pid %d set GPU %s's power cap to %.0f W", c->cred.uid, (int)c->cred.pid, g->pci, r->watts);
        }
        struct json_object *gpus = json_object_new_array();
        for (size_t i = 0; i < d->machine->n_gpus; i++)
                if (!g || g == &d->machine->gpus[i])
                        json_object_array_add(gpus, power_to_json(d, &d->machine->gpus[i]));
        struct json_object *result = json_object_new_object();
        json_object_object_add(result, "gpus", gpus);
        conn_send(c, proto_format_result(r->id, result));
}

static void handle_request(struct conn *c, const struct proto_request *r)
{
        struct rigd *d = c->rigd;
        struct json_object *result = NULL;
        switch (r->kind) {
        case PROTO_HELLO:
                result = json_object_new_object();
                json_object_object_add(result, "version", json_object_new_string(RIG_VERSION));
                json_object_object_add(result, "protocol", json_object_new_int(1));
                json_object_object_add(result, "root", json_object_new_string(d->root));
                json_object_object_add(result, "uid", json_object_new_int64(c->cred.uid));
                json_object_object_add(result, "may_lease", json_object_new_boolean(c->may_lease));
                json_object_object_add(result, "is_admin", json_object_new_boolean(c->is_admin));
                break;
        case PROTO_LIST:
                result = list_to_json(d, false);
                break;
        case PROTO_TOPO:
                result = list_to_json(d, true);
                struct json_object *links = json_object_new_array();
                for (size_t i = 0; i < d->machine->n_links; i++)
                        json_object_array_add(links, link_to_json(&d->machine->links[i]));
                json_object_object_add(result, "links", links);
                break;
        case PROTO_LEASES: {
                struct json_object *leases = json_object_new_array();
                for (const struct lease *l = d->leases.leases; l; l = l->next)
                        json_object_array_add(leases, lease_to_json(d, l));
                result = json_object_new_object();
                json_object_object_add(result, "leases", leases);
                break;
        }
        case PROTO_SUBSCRIBE:
                c->events |= r->events;
                result = json_object_new_object();
                break;
        case PROTO_LEASE:
                handle_lease(c, r);
                return;
        case PROTO_RELEASE:
                handle_release(c, r);
                return;
        case PROTO_POWER_GET:
        case PROTO_POWER_SET:
                handle_power(c, r);
                return;
        case PROTO_FAULTS:
                result = health_to_json(d);
                break;
        }
        conn_send(c, proto_format_result(r->id, result));
}

static void handle_line(struct conn *c, const char *line, size_t len)
{
        struct proto_request r;
        char err[256];
        if (proto_parse_request(line, len, &r, err, sizeof(err)) < 0) {
                log_debug("bad request from pid %d: %s", (int)c->cred.pid, err);
                reply_error(c, r.id, -EINVAL, "%s", err);
        } else {
                handle_request(c, &r);
        }
        proto_request_clear(&r);
}

static void conn_close(struct conn *c)
{
        struct rigd *d = c->rigd;
        for (struct conn **p = &d->conns; *p; p = &(*p)->next)
                if (*p == c) {
                        *p = c->next;
                        break;
                }
        while (c->waits) {
                lease_table_cancel(&d->leases, c->waits->waiter);
                wait_free(c->waits);
        }
        for (const struct lease *l = d->leases.leases; l; l = l->next)
                if (l->req.owner == c)
                        broadcast_lease(d, l, "released");
        size_t n = lease_table_release_owner(&d->leases, c);
        if (n > 0)
                log_info("connection of pid %d closed: %zu lease(s) ended", (int)c->cred.pid, n);
        sd_event_source_disable_unref(c->io);
        sd_event_source_disable_unref(c->close_later);
        close(c->fd);
        free(c->reader);
        free(c->out);
        free(c);
        if (n > 0)
                server_schedule(d);
}

static int on_conn_io(sd_event_source *s, int fd, uint32_t revents, void *userdata)
{
        struct conn *c = userdata;
        if (revents & EPOLLOUT && conn_flush(c) < 0) {
                conn_close(c);
                return 0;
        }
        if (!(revents & (EPOLLIN | EPOLLHUP | EPOLLERR)))
                return 0;

        size_t space;
        char *buf = proto_reader_space(c->reader, &space);
        ssize_t n = recv(fd, buf, space, MSG_DONTWAIT);
        if (n < 0 && (errno == EAGAIN || errno == EINTR))
                return 0;
        if (n <= 0) {
                conn_close(c);
                return 0;
        }
        proto_reader_commit(c->reader, (size_t)n);
        for (;;) {
                char *line;
                size_t len;
                int r = proto_reader_next(c->reader, &line, &len);
                if (r == 0 || c->is_dying)
                        break;
                if (r < 0)
                        reply_error(c, NULL, r, "message longer than %d bytes; it was dropped", PROTO_MAX_LINE - 1);
                else
                        handle_line(c, line, len);
        }
        return 0;
}

static bool has_group(const struct conn *c, gid_t gid)
{
        if (gid == (gid_t)-1)
                return false;
        if (c->cred.gid == gid)
                return true;
        for (size_t i = 0; i < c->n_groups; i++)
                if (c->groups[i] == gid)
                        return true;
        return false;
}

static void read_peer(struct conn *c)
{
        socklen_t len = sizeof(c->cred);
        if (getsockopt(c->fd, SOL_SOCKET, SO_PEERCRED, &c->cred, &len) < 0) {
                log_warning_errno(errno, "SO_PEERCRED; the peer gets read access only");
                c->cred.uid = (uid_t)-1;
                c->cred.gid = (gid_t)-1;
                c->cred.pid = 0;
        }
        len = sizeof(c->groups);
        if (getsockopt(c->fd, SOL_SOCKET, SO_PEERGROUPS, c->groups, &len) == 0)
                c->n_groups = len / sizeof(gid_t);
        else
                log_debug_errno(errno, "SO_PEERGROUPS of pid %d; only its primary group counts", (int)c->cred.pid);
        struct rigd *d = c->rigd;
        c->is_admin = c->cred.uid == 0 || has_group(c, d->admin_gid);
        c->may_lease = c->is_admin || has_group(c, d->lease_gid);
}

static int on_accept(sd_event_source *s, int fd, uint32_t revents, void *userdata)
{
        struct rigd *d = userdata;
        int cfd = accept4(fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (cfd < 0) {
                if (errno != EAGAIN && errno != EINTR)
                        log_warning_errno(errno, "accepting a connection");
                return 0;
        }
        struct conn *c = calloc(1, sizeof(*c));
        if (c)
                c->reader = calloc(1, sizeof(*c->reader));
        if (!c || !c->reader) {
                log_warning("out of memory accepting a connection");
                if (c)
                        free(c);
                close(cfd);
                return 0;
        }
        c->rigd = d;
        c->fd = cfd;
        read_peer(c);
        int r = sd_event_add_io(d->event, &c->io, cfd, EPOLLIN, on_conn_io, c);
        if (r < 0) {
                log_warning_errno(r, "watching a connection");
                close(cfd);
                free(c->reader);
                free(c);
                return 0;
        }
        c->next = d->conns;
        d->conns = c;
        log_debug("connection from pid %d uid %u (lease: %s, admin: %s)", (int)c->cred.pid, c->cred.uid,
                  c->may_lease ? "yes" : "no", c->is_admin ? "yes" : "no");
        return 0;
}

/* A socket file left by a rigd that died: nothing listens on it any more. */
static bool is_stale_socket(const struct sockaddr_un *addr)
{
        int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
        if (fd < 0)
                return false;
        bool is_stale = connect(fd, (const struct sockaddr *)addr, sizeof(*addr)) < 0 && errno == ECONNREFUSED;
        close(fd);
        return is_stale;
}

/* The directory (/run/rigd) when systemd did not make it: only its last level. */
static int make_socket_dir(const char *socket_path)
{
        char dir[sizeof(((struct sockaddr_un *)0)->sun_path)];
        strscpy(dir, socket_path, sizeof(dir));
        char *slash = strrchr(dir, '/');
        if (!slash || slash == dir)
                return 0;
        *slash = '\0';
        if (mkdir(dir, 0755) < 0 && errno != EEXIST)
                return log_error_errno(errno, "creating %s", dir);
        return 0;
}

/* Binds and listens under a temporary name, then renames it into place: a client that sees the
 * socket file can connect at once (between bind and listen it would be refused). */
static int bind_socket(struct rigd *d)
{
        struct sockaddr_un addr = { .sun_family = AF_UNIX }, tmp = { .sun_family = AF_UNIX };
        if (!strscpy(addr.sun_path, d->socket_path, sizeof(addr.sun_path)) ||
            snprintf(tmp.sun_path, sizeof(tmp.sun_path), "%s.new", d->socket_path) >= (int)sizeof(tmp.sun_path))
                return log_error_errno(ENAMETOOLONG, "socket path %s", d->socket_path);
        int r = make_socket_dir(d->socket_path);
        if (r < 0)
                return r;
        if (access(addr.sun_path, F_OK) == 0 && !is_stale_socket(&addr))
                return log_error_errno(EADDRINUSE, "%s: another rigd is serving it (or it is not a socket)",
                                       d->socket_path);

        int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
        if (fd < 0)
                return log_error_errno(errno, "socket");
        unlink(tmp.sun_path);
        /* Group render may connect (DESIGN §4.3); the rights are decided per request. */
        mode_t old = umask(0117);
        r = bind(fd, (const struct sockaddr *)&tmp, sizeof(tmp)) < 0 ? -errno : 0;
        umask(old);
        if (r == 0 && d->lease_gid != (gid_t)-1 && geteuid() == 0 && chown(tmp.sun_path, 0, d->lease_gid) < 0)
                log_warning_errno(errno, "giving %s to group %s", d->socket_path, d->config.lease_group);
        if (r == 0 && listen(fd, SOMAXCONN) < 0)
                r = -errno;
        if (r == 0 && rename(tmp.sun_path, addr.sun_path) < 0)
                r = -errno;
        if (r < 0) {
                unlink(tmp.sun_path);
                close(fd);
                return log_error_errno(r, "binding %s", d->socket_path);
        }
        d->listen_fd = fd;
        d->is_socket_ours = true;
        return 0;
}

int server_listen(struct rigd *d)
{
        int n = sd_listen_fds(1);
        if (n < 0)
                return log_error_errno(n, "reading the sockets systemd passed");
        if (n > 1)
                return log_error_errno(EINVAL, "systemd passed %d sockets; rigd.socket has one", n);
        if (n == 1) {
                d->listen_fd = SD_LISTEN_FDS_START;
                if (sd_is_socket_unix(d->listen_fd, SOCK_STREAM, 1, NULL, 0) <= 0)
                        return log_error_errno(EINVAL, "the socket systemd passed is not a listening Unix stream socket");
                fcntl(d->listen_fd, F_SETFL, fcntl(d->listen_fd, F_GETFL) | O_NONBLOCK);
                log_info("serving the socket systemd passed");
        } else {
                int r = bind_socket(d);
                if (r < 0)
                        return r;
                log_info("serving %s", d->socket_path);
        }
        return sd_event_add_io(d->event, &d->listen_source, d->listen_fd, EPOLLIN, on_accept, d);
}

void server_close(struct rigd *d)
{
        while (d->conns)
                conn_close(d->conns);
        d->listen_source = sd_event_source_disable_unref(d->listen_source);
        if (d->listen_fd >= 0)
                close(d->listen_fd);
        if (d->is_socket_ours)
                unlink(d->socket_path);
        d->listen_fd = -1;
}
