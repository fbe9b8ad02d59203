/* lease.h — who holds which GPU: exclusive and shared leases, and the queue of requests waiting
 * for GPUs. Bookkeeping only (no sockets, no clock), so its rules are tested on their own; the
 * server decides when a wait times out or a holder is gone. GPUs are named by PCI address, which
 * survives a rediscovery; indices do not. */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "gpu.h"
#include "proto.h"

/* What the table knows of one GPU. */
struct lease_gpu {
        char pci[GPU_PCI_LEN];
        uint64_t vram_total_bytes;
        uint64_t vram_free_bytes;       /* at the last discovery */
        unsigned p2p_group;             /* GPUs of one group reach each other by P2P (a connected set of
                                         * the topology's P2P links); a count request is served from one
                                         * group when it can be */
        const struct lease *exclusive;  /* its exclusive holder, or NULL */
        size_t n_shared;                /* shared leases on it */
};

/* A request with its GPUs resolved to PCI addresses. */
struct lease_request {
        size_t count;                   /* GPUs wanted */
        char named[PROTO_MAX_GPUS][GPU_PCI_LEN];        /* exactly these, when n_named > 0 */
        size_t n_named;
        uint64_t min_vram_bytes;
        bool is_exclusive;
        char holder[PROTO_HOLDER_LEN];
        pid_t pid;
        uid_t uid;
        const void *owner;              /* the connection: its leases end with it */
};

struct lease {
        char id[PROTO_LEASE_ID_LEN];
        struct lease_request req;
        char pci[PROTO_MAX_GPUS][GPU_PCI_LEN];  /* the GPUs granted, req.count of them */
        uint64_t since_usec;            /* CLOCK_REALTIME, set by the caller of schedule */
        struct lease *next;
};

struct lease_waiter {
        struct lease_request req;
        void *cookie;                   /* the caller's pending reply */
        struct lease_waiter *next;
};

struct lease_table {
        struct lease_gpu *gpus;
        size_t n_gpus;
        bool *reserved;                 /* scratch of schedule(), n_gpus */
        struct lease *leases;           /* oldest first */
        struct lease_waiter *waiters;   /* FIFO: oldest first */
        uint64_t n_granted;             /* ever; names the next lease */
};

void lease_table_init(struct lease_table *t);
void lease_table_free(struct lease_table *t);

/* Called for each lease that loses a GPU (the lease ends as a whole) before it is freed. */
typedef void (*lease_revoked_fn)(const struct lease *l, const char *gone_pci, void *userdata);

/* Replaces the GPU list after a discovery: GPUs still present keep their holders; leases on a
 * GPU that is gone are revoked. Returns 0 or -ENOMEM (the table is then unchanged). */
int lease_table_set_gpus(struct lease_table *t, const struct lease_gpu *gpus, size_t n_gpus,
                         lease_revoked_fn revoked, void *userdata);

/* -ENODEV with the reason in why when no state of the leases could ever grant req (a GPU that is
 * not there, fewer GPUs than asked with that much VRAM); 0 when it can be granted now or later. */
int lease_table_check(const struct lease_table *t, const struct lease_request *req, char *why, size_t why_size);

/* Queues req behind every earlier request. NULL when memory ran out. */
struct lease_waiter *lease_table_enqueue(struct lease_table *t, const struct lease_request *req, void *cookie);
void lease_table_cancel(struct lease_table *t, struct lease_waiter *w);

/* Grants what can be granted, oldest request first. A count request gets GPUs of one P2P group
 * when a group has enough free (the group with the fewest that suffice, so larger groups stay whole
 * for larger requests), else the lowest-numbered free ones. A waiter for named GPUs that are taken
 * keeps them reserved from later requests; a waiter for a count that cannot be met reserves the
 * free GPUs it could use and holds back every later count request, so a request for four GPUs is
 * not starved by a stream of requests for one. For each grant granted() runs with the waiter's
 * cookie and the new lease; the waiter is freed after it. Returns -ENOMEM when a lease could not
 * be allocated (its waiter stays queued). */
typedef void (*lease_granted_fn)(void *cookie, const struct lease *l, void *userdata);
int lease_table_schedule(struct lease_table *t, uint64_t now_usec, lease_granted_fn granted, void *userdata);

/* Ends one lease of owner: 0, -ENOENT (no such lease) or -EPERM (another connection's). */
int lease_table_release(struct lease_table *t, const char *id, const void *owner);

/* Ends every lease of owner; returns how many. */
size_t lease_table_release_owner(struct lease_table *t, const void *owner);

bool lease_has_gpu(const struct lease *l, const char *pci);
const struct lease_gpu *lease_table_find_gpu(const struct lease_table *t, const char *pci);
size_t lease_table_count(const struct lease_table *t);
