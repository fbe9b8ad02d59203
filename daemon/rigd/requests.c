/* requests.c — what each request of DESIGN §4.3 does: leases granted at once or waiting (with
 * their timers), releases, the grant's GPUs, P2P and environment, list/topo/leases, power caps and
 * faults; and the lease, fault and revocation events. A connection's leases end with it. */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

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

static struct json_object *rfc3339(uint64_t usec)
{
        time_t t = (time_t)(usec / 1000000u);
        struct tm tm;
        char buf[32];
        gmtime_r(&t, &tm);
        strftime(buf, sizeof(buf), "%Y-%m-%dT%H:%M:%SZ", &tm);
        return json_object_new_string(buf);
}

void requests_lease_revoked(struct rigd *d, const struct lease *l, const char *gone_pci)
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

/* Whether one of c's leases (exclusive or shared) holds the GPU. */
static bool conn_holds(const struct rigd *d, const struct conn *c, const char *pci)
{
        for (const struct lease *l = d->leases.leases; l; l = l->next)
                if (l->req.owner == c && lease_has_gpu(l, pci))
                        return true;
        return false;
}

void requests_fault(struct rigd *d, const struct fault *f, uint64_t line)
{
        struct json_object *fields = fault_to_json(f, line);
        for (struct conn *c = d->conns; c; c = c->next)
                if ((c->events & PROTO_EVENT_FAULT) || (f->gpu_pci[0] && conn_holds(d, c, f->gpu_pci)))
                        conn_send(c, proto_format_event(PROTO_EVENT_FAULT, json_object_get(fields)));
        json_object_put(fields);
}

static const struct gpu_info *gpu_by_pci(const struct rigd *d, const char *pci)
{
        for (size_t i = 0; i < d->machine->n_gpus; i++)
                if (streq(d->machine->gpus[i].pci, pci))
                        return &d->machine->gpus[i];
        return NULL;
}

/* The oldest lease on the GPU (of several shared ones, the first). */
static const struct lease *lease_holding(const struct rigd *d, const char *pci)
{
        for (const struct lease *l = d->leases.leases; l; l = l->next)
                if (lease_has_gpu(l, pci))
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
                if (g->vendor == GPU_VENDOR_AMD && lease_has_gpu(l, g->pci))
                        is_rocr_by_uuid &= g->unique_id[0] != '\0';
        }
        for (size_t i = 0; i < d->machine->n_gpus; i++) {
                const struct gpu_info *g = &d->machine->gpus[i];
                if (!lease_has_gpu(l, g->pci))
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

/* Takes a waiting request out of the queue and forgets it. */
static void wait_cancel(struct wait *w)
{
        lease_table_cancel(&w->conn->rigd->leases, w->waiter);
        wait_free(w);
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

void requests_schedule(struct rigd *d)
{
        int r = lease_table_schedule(&d->leases, now_realtime_usec(), on_granted, d);
        if (r < 0)
                log_warning_errno(r, "granting waiting leases");
        power_follow_leases(d);         /* idle caps follow the leases */
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
        conn_send_error(c, w->id, -EBUSY, "still taken after waiting %u ms: %s", w->wait_ms, why);
        wait_cancel(w);
        /* The request it was holding back may have blocked others. */
        requests_schedule(c->rigd);
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
                conn_send_error(c, r->id, -EPERM, "uid %u may not lease GPUs: leases are for root and the groups %s and %s",
                            c->cred.uid, d->config.lease_group, d->config.admin_group);
                return;
        }
        struct lease_request req;
        char why[512];
        int e = resolve_request(c, &r->lease, &req, why, sizeof(why));
        if (e < 0) {
                conn_send_error(c, r->id, e, "%s", why);
                return;
        }

        struct wait *w = calloc(1, sizeof(*w));
        if (!w) {
                conn_send_error(c, r->id, -ENOMEM, "out of memory");
                return;
        }
        w->conn = c;
        w->id = json_object_get(r->id);
        w->wait_ms = r->lease.wait_ms;
        w->next = c->waits;
        c->waits = w;
        w->waiter = lease_table_enqueue(&d->leases, &req, w);
        if (!w->waiter) {
                conn_send_error(c, r->id, -ENOMEM, "out of memory");
                wait_free(w);
                return;
        }
        requests_schedule(d);
        if (!conn_has_wait(c, w))
                return;         /* granted: on_granted replied */

        if (w->wait_ms == 0) {
                describe_busy(d, &req, why, sizeof(why));
                conn_send_error(c, r->id, -EBUSY, "%s (wait_ms makes the request wait)", why);
                wait_cancel(w);
                return;
        }
        int rt = sd_event_add_time_relative(d->event, &w->timer, CLOCK_MONOTONIC, (uint64_t)w->wait_ms * 1000u, 1000,
                                            on_wait_timeout, w);
        if (rt < 0) {
                conn_send_error(c, r->id, -ENOMEM, "cannot arm the wait timer");
                wait_cancel(w);
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
                conn_send_error(c, r->id, e, "no lease '%s' (it ended, or was never granted)", r->lease_id);
                return;
        }
        if (e == -EPERM) {
                conn_send_error(c, r->id, e, "lease '%s' belongs to another connection", r->lease_id);
                return;
        }
        struct json_object *result = json_object_new_object();
        json_object_object_add(result, "lease", json_object_new_string(r->lease_id));
        conn_send(c, proto_format_result(r->id, result));
        requests_schedule(d);
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
                conn_send_error(c, r->id, -ENODEV, "no GPU matches '%s' (gpuctl list shows them)", r->gpu);
                return;
        }
        if (r->kind == PROTO_POWER_SET) {
                if (!c->is_admin) {
                        log_warning("denied a power cap change to uid %u pid %d: not root, not in group %s",
                                    c->cred.uid, (int)c->cred.pid, d->config.admin_group);
                        conn_send_error(c, r->id, -EPERM, "uid %u may not change power caps: that is for root and group %s",
                                    c->cred.uid, d->config.admin_group);
                        return;
                }
                char err[512];
                int e = power_set_override(d, g, r->watts, err, sizeof(err));
                if (e < 0) {
                        conn_send_error(c, r->id, e, "%s", err);
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

void requests_handle_line(struct conn *c, const char *line, size_t len)
{
        struct proto_request r;
        char err[256];
        if (proto_parse_request(line, len, &r, err, sizeof(err)) < 0) {
                log_debug("bad request from pid %d: %s", (int)c->cred.pid, err);
                conn_send_error(c, r.id, -EINVAL, "%s", err);
        } else {
                handle_request(c, &r);
        }
        proto_request_clear(&r);
}

bool requests_conn_closed(struct conn *c)
{
        struct rigd *d = c->rigd;
        while (c->waits)
                wait_cancel(c->waits);
        for (const struct lease *l = d->leases.leases; l; l = l->next)
                if (l->req.owner == c)
                        broadcast_lease(d, l, "released");
        size_t n = lease_table_release_owner(&d->leases, c);
        if (n > 0)
                log_info("connection of pid %d closed: %zu lease(s) ended", (int)c->cred.pid, n);
        return n > 0;
}
