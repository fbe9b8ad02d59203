/* rigd.h — the daemon's state, shared by its parts: the event loop, the discovered machine, the
 * lease table, the connections, and the configuration. */
#pragma once

#include <stdbool.h>
#include <sys/socket.h>
#include <sys/types.h>

#include <systemd/sd-event.h>

#include "config.h"
#include "lease.h"
#include "machine.h"

#define RIGD_MAX_GROUPS 64              /* supplementary groups read from a peer */
#define RIGD_MAX_OUTPUT (1024 * 1024)   /* bytes queued for a peer that does not read: then it is dropped */

struct wait;

/* One client connection. Its leases live exactly as long as it does. */
struct conn {
        struct rigd *rigd;
        int fd;
        bool is_dying;                  /* dropped: closed from the event loop, nothing more is sent */
        sd_event_source *io;
        sd_event_source *close_later;   /* set once dying */
        struct proto_reader *reader;
        char *out;                      /* bytes not yet written */
        size_t out_len;
        struct ucred cred;              /* SO_PEERCRED */
        gid_t groups[RIGD_MAX_GROUPS];  /* SO_PEERGROUPS */
        size_t n_groups;
        bool may_lease, is_admin;
        unsigned events;                /* subscribed enum proto_event_kind bits */
        struct wait *waits;             /* lease requests of this connection still waiting */
        struct conn *next;
};

struct rigd {
        sd_event *event;
        const char *root;               /* --root, "/" by default */
        const char *config_path;        /* --config, NULL: the default set under root */
        const char *socket_path;
        struct rigd_config config;
        gid_t lease_gid, admin_gid;     /* (gid_t)-1 when the group does not exist */

        struct machine *machine;
        struct lease_table leases;
        struct conn *conns;

        int listen_fd;
        bool is_socket_ours;            /* bound by us (unlink at exit), not handed over by systemd */
        sd_event_source *listen_source;
        sd_event_source *rediscover_timer;
        void *udev_monitor;             /* uevent.c's state; NULL under --root */
};

/* server.c */
int server_listen(struct rigd *d);
void server_close(struct rigd *d);
/* Grants what waits, then tells subscribers and systemd what changed. */
void server_schedule(struct rigd *d);
/* Sends an event line (fields consumed) to every connection subscribed to kind. */
void server_broadcast(struct rigd *d, enum proto_event_kind kind, struct json_object *fields);
/* Tells the holder of l (always) and lease_revoked subscribers that l ended because gone_pci left. */
void server_lease_revoked(struct rigd *d, const struct lease *l, const char *gone_pci);

/* discovery in main.c: rediscovers the machine, revokes leases of GPUs that are gone. */
int rigd_rediscover(struct rigd *d);
/* Rediscovers after a short quiet time: a hotplug comes as a burst of uevents. */
void rigd_rediscover_soon(struct rigd *d);
void rigd_update_status(struct rigd *d);

/* uevent.c: follows GPU add/remove uevents (live system only). */
int uevent_start(struct rigd *d);
void uevent_stop(struct rigd *d);
