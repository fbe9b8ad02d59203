/* rigd.h — the daemon's state, shared by its parts: the event loop, the discovered machine, the
 * lease table, the connections, and the configuration. */
#pragma once

#include <stdbool.h>
#include <stdint.h>
#include <sys/socket.h>
#include <sys/types.h>

#include <systemd/sd-event.h>

#include "config.h"
#include "lease.h"
#include "machine.h"

#define RIGD_MAX_GROUPS 64              /* supplementary groups read from a peer */
#define RIGD_MAX_OUTPUT (1024 * 1024)   /* bytes queued for a peer that does not read: then it is dropped */

struct wait;
struct health_state;
struct fault;

/* What power.c remembers of one GPU (by PCI address: it survives rediscovery). */
struct power_gpu {
        char pci[GPU_PCI_LEN];
        double applied_w;               /* the cap rigd last set or found in force; NAN: none yet */
        double override_w;              /* set at run time by an admin; NAN: the config decides */
        double refused_w;               /* a target that could not be set (said once); NAN */
        uint64_t checked_usec;          /* CLOCK_REALTIME of the last check that found applied_w */
        bool is_unreadable_logged;
};

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
        sd_event_source *power_timer;
        struct power_gpu *power;
        size_t n_power;
        void *udev_monitor;             /* uevent.c's state; NULL under --root */
        struct health_state *health;    /* health.c's state */
};

/* server.c: the socket and its connections */
int server_listen(struct rigd *d);
void server_close(struct rigd *d);
/* Queues one line (consumed; NULL is out of memory) for the peer. */
void conn_send(struct conn *c, char *line);
void conn_send_error(struct conn *c, struct json_object *id, int negative_errno, const char *fmt, ...)
        __attribute__((format(printf, 4, 5)));
/* Sends an event line (fields consumed) to every connection subscribed to kind. */
void server_broadcast(struct rigd *d, enum proto_event_kind kind, struct json_object *fields);

/* requests.c: what the requests do */
void requests_handle_line(struct conn *c, const char *line, size_t len);
/* Cancels c's waiting requests and ends its leases; true when a lease ended. */
bool requests_conn_closed(struct conn *c);
/* Grants what waits, keeps the caps in step with the leases, tells systemd. */
void requests_schedule(struct rigd *d);
/* Tells the holders of the fault's GPU (always) and fault subscribers. */
void requests_fault(struct rigd *d, const struct fault *f, uint64_t line);
/* Tells the holder of l (always) and lease_revoked subscribers that l ended because gone_pci left. */
void requests_lease_revoked(struct rigd *d, const struct lease *l, const char *gone_pci);

/* discovery in main.c: rediscovers the machine, revokes leases of GPUs that are gone. */
int rigd_rediscover(struct rigd *d);
/* Rediscovers after a short quiet time: a hotplug comes as a burst of uevents. */
void rigd_rediscover_soon(struct rigd *d);
void rigd_update_status(struct rigd *d);

/* power.c */
int power_start(struct rigd *d);                /* the periodic check; again after a reload */
void power_stop(struct rigd *d);
/* Every named GPU checked (its cap read) and brought to its target. */
void power_enforce(struct rigd *d, const char *occasion);
/* Only GPUs whose target moved since it was set (idle <-> leased): cheap enough for every grant. */
void power_follow_leases(struct rigd *d);
bool power_is_leased(const struct rigd *d, const char *pci);
/* The cap rigd keeps on g now (NAN: g is left alone) and, in source, why. */
double power_target(struct rigd *d, const struct gpu_info *g, char *source, size_t source_size);
/* An admin's cap for g, kept until the next reload: -ERANGE/-ENOTSUP/-EIO with err. */
int power_set_override(struct rigd *d, const struct gpu_info *g, double watts, char *err, size_t err_size);

/* health.c: the kernel log followed for faults. */
int health_start(struct rigd *d);
void health_stop(struct rigd *d);
void health_apply(struct rigd *d);              /* health states into d->machine's GPUs */
void health_after_probe(struct rigd *d);        /* recovering GPUs present after a rediscovery are ok */
struct json_object *health_to_json(struct rigd *d);     /* the `faults` reply */

/* uevent.c: follows GPU add/remove uevents (live system only). */
int uevent_start(struct rigd *d);
void uevent_stop(struct rigd *d);
