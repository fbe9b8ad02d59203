/* lease.c — the lease table: grants, releases, the FIFO of waiting requests, and GPUs that go away. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lease.h"
#include "util.h"

void lease_table_init(struct lease_table *t)
{
        memset(t, 0, sizeof(*t));
}

static void free_leases(struct lease *l)
{
        while (l) {
                struct lease *next = l->next;
                free(l);
                l = next;
        }
}

void lease_table_free(struct lease_table *t)
{
        free_leases(t->leases);
        for (struct lease_waiter *w = t->waiters; w;) {
                struct lease_waiter *next = w->next;
                free(w);
                w = next;
        }
        free(t->gpus);
        free(t->reserved);
        memset(t, 0, sizeof(*t));
}

static struct lease_gpu *find_gpu(const struct lease_table *t, const char *pci)
{
        for (size_t i = 0; i < t->n_gpus; i++)
                if (streq(t->gpus[i].pci, pci))
                        return &t->gpus[i];
        return NULL;
}

const struct lease_gpu *lease_table_find_gpu(const struct lease_table *t, const char *pci)
{
        return find_gpu(t, pci);
}

size_t lease_table_count(const struct lease_table *t)
{
        size_t n = 0;
        for (const struct lease *l = t->leases; l; l = l->next)
                n++;
        return n;
}

/* Takes l out of the list and off its GPUs, then frees it. */
static void end_lease(struct lease_table *t, struct lease *l)
{
        for (struct lease **p = &t->leases; *p; p = &(*p)->next)
                if (*p == l) {
                        *p = l->next;
                        break;
                }
        for (size_t i = 0; i < l->req.count; i++) {
                struct lease_gpu *g = find_gpu(t, l->pci[i]);
                if (!g)
                        continue;       /* the GPU is gone already */
                if (g->exclusive == l)
                        g->exclusive = NULL;
                else if (g->n_shared > 0)
                        g->n_shared--;
        }
        free(l);
}

bool lease_has_gpu(const struct lease *l, const char *pci)
{
        for (size_t i = 0; i < l->req.count; i++)
                if (streq(l->pci[i], pci))
                        return true;
        return false;
}

int lease_table_set_gpus(struct lease_table *t, const struct lease_gpu *gpus, size_t n_gpus,
                         lease_revoked_fn revoked, void *userdata)
{
        struct lease_gpu *copy = calloc(n_gpus ? n_gpus : 1, sizeof(*copy));
        bool *reserved = calloc(n_gpus ? n_gpus : 1, sizeof(*reserved));
        if (!copy || !reserved) {
                free(copy);
                free(reserved);
                return -ENOMEM;
        }
        for (size_t i = 0; i < n_gpus; i++)
                copy[i] = gpus[i];

        /* Leases on a GPU that is gone end as a whole: a runtime split over two GPUs cannot go on
         * with one. Their other GPUs are freed against the old list, then the new list is taken. */
        for (size_t i = 0; i < t->n_gpus; i++) {
                const char *pci = t->gpus[i].pci;
                bool is_present = false;
                for (size_t j = 0; j < n_gpus; j++)
                        is_present |= streq(gpus[j].pci, pci);
                if (is_present)
                        continue;
                for (struct lease *l = t->leases; l;) {
                        struct lease *next = l->next;
                        if (lease_has_gpu(l, pci)) {
                                if (revoked)
                                        revoked(l, pci, userdata);
                                end_lease(t, l);
                        }
                        l = next;
                }
        }
        /* Holders carry over to the new list, as they are after the revocations. */
        for (size_t i = 0; i < n_gpus; i++) {
                const struct lease_gpu *old = find_gpu(t, copy[i].pci);
                copy[i].exclusive = old ? old->exclusive : NULL;
                copy[i].n_shared = old ? old->n_shared : 0;
        }
        free(t->gpus);
        free(t->reserved);
        t->gpus = copy;
        t->reserved = reserved;
        t->n_gpus = n_gpus;
        return 0;
}

int lease_table_check(const struct lease_table *t, const struct lease_request *req, char *why, size_t why_size)
{
        for (size_t i = 0; i < req->n_named; i++) {
                const struct lease_gpu *g = find_gpu(t, req->named[i]);
                if (!g) {
                        snprintf(why, why_size, "GPU %s is not present", req->named[i]);
                        return -ENODEV;
                }
                if (g->vram_total_bytes < req->min_vram_bytes) {
                        snprintf(why, why_size, "GPU %s has %llu bytes of VRAM, fewer than the %llu asked for",
                                 g->pci, (unsigned long long)g->vram_total_bytes,
                                 (unsigned long long)req->min_vram_bytes);
                        return -ENODEV;
                }
        }
        size_t n_big_enough = 0;
        for (size_t i = 0; i < t->n_gpus; i++)
                n_big_enough += t->gpus[i].vram_total_bytes >= req->min_vram_bytes;
        if (n_big_enough < req->count && req->min_vram_bytes == 0) {
                snprintf(why, why_size, "%zu GPU(s) asked for, but this machine has %zu", req->count, n_big_enough);
                return -ENODEV;
        }
        if (n_big_enough < req->count) {
                snprintf(why, why_size, "%zu GPU(s) asked for, but this machine has %zu with at least %llu bytes of VRAM",
                         req->count, n_big_enough, (unsigned long long)req->min_vram_bytes);
                return -ENODEV;
        }
        return 0;
}

struct lease_waiter *lease_table_enqueue(struct lease_table *t, const struct lease_request *req, void *cookie)
{
        struct lease_waiter *w = calloc(1, sizeof(*w));
        if (!w)
                return NULL;
        w->req = *req;
        w->cookie = cookie;
        struct lease_waiter **p = &t->waiters;
        while (*p)
                p = &(*p)->next;
        *p = w;
        return w;
}

static void unlink_waiter(struct lease_table *t, struct lease_waiter *w)
{
        for (struct lease_waiter **p = &t->waiters; *p; p = &(*p)->next)
                if (*p == w) {
                        *p = w->next;
                        return;
                }
}

void lease_table_cancel(struct lease_table *t, struct lease_waiter *w)
{
        unlink_waiter(t, w);
        free(w);
}

/* Whether GPU i could go to req right now, ignoring reservations. */
static bool is_free_for(const struct lease_gpu *g, const struct lease_request *req)
{
        if (g->exclusive)
                return false;
        if (req->is_exclusive && g->n_shared > 0)
                return false;
        return g->vram_free_bytes >= req->min_vram_bytes;
}

/* req->count free, unreserved GPUs of the P2P group with the fewest that suffice; 0 when no group
 * has enough. */
static size_t pick_from_one_group(struct lease_table *t, const struct lease_request *req, size_t *pick)
{
        size_t best_first = SIZE_MAX, best_free = SIZE_MAX;
        for (size_t i = 0; i < t->n_gpus; i++) {
                if (!is_free_for(&t->gpus[i], req) || t->reserved[i])
                        continue;
                size_t n_free = 0;
                bool is_group_first = true;
                for (size_t j = 0; j < t->n_gpus; j++) {
                        if (t->gpus[j].p2p_group != t->gpus[i].p2p_group)
                                continue;
                        if (!is_free_for(&t->gpus[j], req) || t->reserved[j])
                                continue;
                        is_group_first &= j >= i;
                        n_free++;
                }
                if (is_group_first && n_free >= req->count && n_free < best_free) {
                        best_first = i;
                        best_free = n_free;
                }
        }
        if (best_first == SIZE_MAX)
                return 0;
        size_t n = 0;
        unsigned group = t->gpus[best_first].p2p_group;
        for (size_t j = best_first; j < t->n_gpus && n < req->count; j++)
                if (t->gpus[j].p2p_group == group && is_free_for(&t->gpus[j], req) && !t->reserved[j])
                        pick[n++] = j;
        return n;
}

/* Fills pick with indices of free, unreserved GPUs for req: the named ones, or count of one P2P
 * group, or the first count;
 * returns how many it found (up to req->count). */
static size_t pick_gpus(struct lease_table *t, const struct lease_request *req, size_t *pick)
{
        size_t n = 0;
        if (req->n_named > 0) {
                for (size_t k = 0; k < req->n_named; k++) {
                        struct lease_gpu *g = find_gpu(t, req->named[k]);
                        size_t i = g ? (size_t)(g - t->gpus) : 0;
                        if (g && is_free_for(g, req) && !t->reserved[i])
                                pick[n++] = i;
                }
                return n;
        }
        n = pick_from_one_group(t, req, pick);
        if (n == req->count)
                return n;
        n = 0;
        for (size_t i = 0; i < t->n_gpus && n < req->count; i++)
                if (is_free_for(&t->gpus[i], req) && !t->reserved[i])
                        pick[n++] = i;
        return n;
}

static struct lease *grant(struct lease_table *t, const struct lease_request *req, const size_t *pick,
                           uint64_t now_usec)
{
        struct lease *l = calloc(1, sizeof(*l));
        if (!l)
                return NULL;
        l->req = *req;
        l->since_usec = now_usec;
        snprintf(l->id, sizeof(l->id), "lease-%llu", (unsigned long long)++t->n_granted);
        for (size_t k = 0; k < req->count; k++) {
                struct lease_gpu *g = &t->gpus[pick[k]];
                strscpy(l->pci[k], g->pci, sizeof(l->pci[k]));
                if (req->is_exclusive)
                        g->exclusive = l;
                else
                        g->n_shared++;
        }
        struct lease **p = &t->leases;
        while (*p)
                p = &(*p)->next;
        *p = l;
        return l;
}

int lease_table_schedule(struct lease_table *t, uint64_t now_usec, lease_granted_fn granted, void *userdata)
{
        size_t pick[PROTO_MAX_GPUS];
        bool is_count_blocked = false;
        if (t->n_gpus > 0)      /* reserved is NULL before the first set_gpus */
                memset(t->reserved, 0, t->n_gpus * sizeof(*t->reserved));

        for (struct lease_waiter *w = t->waiters; w;) {
                struct lease_waiter *next = w->next;
                const struct lease_request *req = &w->req;
                bool is_named = req->n_named > 0;
                if (!is_named && is_count_blocked) {
                        w = next;
                        continue;
                }
                size_t n = pick_gpus(t, req, pick);
                if (n < req->count) {
                        /* Keep what this request waits for away from later ones. */
                        for (size_t k = 0; k < req->n_named; k++) {
                                struct lease_gpu *g = find_gpu(t, req->named[k]);
                                if (g)
                                        t->reserved[g - t->gpus] = true;
                        }
                        for (size_t k = 0; !is_named && k < n; k++)
                                t->reserved[pick[k]] = true;
                        is_count_blocked |= !is_named;
                        w = next;
                        continue;
                }
                struct lease *l = grant(t, req, pick, now_usec);
                if (!l)
                        return -ENOMEM;
                unlink_waiter(t, w);
                if (granted)
                        granted(w->cookie, l, userdata);
                free(w);
                w = next;
        }
        return 0;
}

int lease_table_release(struct lease_table *t, const char *id, const void *owner)
{
        for (struct lease *l = t->leases; l; l = l->next) {
                if (!streq(l->id, id))
                        continue;
                if (l->req.owner != owner)
                        return -EPERM;
                end_lease(t, l);
                return 0;
        }
        return -ENOENT;
}

size_t lease_table_release_owner(struct lease_table *t, const void *owner)
{
        size_t n = 0;
        for (struct lease *l = t->leases; l;) {
                struct lease *next = l->next;
                if (l->req.owner == owner) {
                        end_lease(t, l);
                        n++;
                }
                l = next;
        }
        return n;
}
