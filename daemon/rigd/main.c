/* main.c — rigd: options, the sd-event loop, discovery and its refreshes, signals, and what it
 * tells systemd (READY, STATUS, WATCHDOG). */
#include <errno.h>
#include <getopt.h>
#include <grp.h>
#include <limits.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <systemd/sd-daemon.h>

#include "log.h"
#include "rigd.h"
#include "util.h"

#define REDISCOVER_QUIET_USEC (200 * 1000)      /* a hotplug arrives as a burst of uevents */

static void usage(FILE *f)
{
        fprintf(f, "Usage: rigd [--root DIR] [--config FILE] [--socket PATH] [--foreground] [-v]\n\n"
                   "Finds the GPUs and leases them to runtimes over a Unix socket.\n\n"
                   "  --root DIR     read /sys, /proc, /etc/rig under DIR (a recorded machine), default /\n"
                   "  --config FILE  only this config file (default: /etc/rig/rigd.conf and rigd.conf.d/*.conf)\n"
                   "  --socket PATH  default /run/rigd/rigd.sock (ignored when systemd passes the socket)\n"
                   "  --foreground   accepted for compatibility: rigd never forks\n"
                   "  -v, --verbose  debug messages\n");
}

/* A group name or number to its gid; (gid_t)-1 (with a warning) when there is no such group. */
static gid_t resolve_group(const char *name)
{
        char *end;
        unsigned long n = strtoul(name, &end, 10);
        if (*name && *end == '\0')
                return (gid_t)n;
        struct group *g = getgrnam(name);
        if (g)
                return g->gr_gid;
        log_warning("group '%s' does not exist: only root and the other configured group qualify", name);
        return (gid_t)-1;
}

static void load_config(struct rigd *d)
{
        config_load(&d->config, d->root, d->config_path);
        d->lease_gid = resolve_group(d->config.lease_group);
        d->admin_gid = resolve_group(d->config.admin_group);
}

void rigd_update_status(struct rigd *d)
{
        size_t n_waiting = 0;
        for (const struct lease_waiter *w = d->leases.waiters; w; w = w->next)
                n_waiting++;
        size_t n_leased = 0;
        for (size_t i = 0; i < d->leases.n_gpus; i++)
                n_leased += d->leases.gpus[i].exclusive || d->leases.gpus[i].n_shared;
        sd_notifyf(0, "STATUS=%zu GPU(s), %zu leased, %zu lease(s), %zu waiting", d->machine ? d->machine->n_gpus : 0,
                   n_leased, lease_table_count(&d->leases), n_waiting);
}

static void on_revoked(const struct lease *l, const char *gone_pci, void *userdata)
{
        requests_lease_revoked(userdata, l, gone_pci);
}

static bool machine_has(const struct machine *m, const char *pci)
{
        for (size_t i = 0; m && i < m->n_gpus; i++)
                if (streq(m->gpus[i].pci, pci))
                        return true;
        return false;
}

static void broadcast_hotplug(struct rigd *d, const struct machine *from, const struct machine *to, const char *action)
{
        for (size_t i = 0; to && i < to->n_gpus; i++) {
                if (machine_has(from, to->gpus[i].pci))
                        continue;
                log_info("GPU %s %s", to->gpus[i].pci, streq(action, "add") ? "appeared" : "is gone");
                struct json_object *fields = json_object_new_object();
                json_object_object_add(fields, "action", json_object_new_string(action));
                json_object_object_add(fields, "gpu_pci", json_object_new_string(to->gpus[i].pci));
                server_broadcast(d, PROTO_EVENT_HOTPLUG, fields);
        }
}

/* Connected sets of the P2P links: GPUs of one set can be leased together for a row split. */
static void assign_p2p_groups(const struct machine *m, struct lease_gpu *gpus)
{
        for (size_t i = 0; i < m->n_gpus; i++)
                gpus[i].p2p_group = (unsigned)i;
        for (bool is_changed = true; is_changed;) {     /* a handful of GPUs: plain relaxation */
                is_changed = false;
                for (size_t k = 0; k < m->n_links; k++) {
                        const struct gpu_link *l = &m->links[k];
                        if (!l->has_p2p)
                                continue;
                        unsigned low = gpus[l->a].p2p_group < gpus[l->b].p2p_group ? gpus[l->a].p2p_group
                                                                                  : gpus[l->b].p2p_group;
                        is_changed |= gpus[l->a].p2p_group != low || gpus[l->b].p2p_group != low;
                        gpus[l->a].p2p_group = gpus[l->b].p2p_group = low;
                }
        }
}

int rigd_rediscover(struct rigd *d)
{
        struct machine *m;
        int r = machine_discover(d->root, &m);
        if (r < 0)
                return log_error_errno(r, "discovering GPUs under %s; keeping the last discovery", d->root);

        struct lease_gpu *gpus = calloc(m->n_gpus ? m->n_gpus : 1, sizeof(*gpus));
        if (!gpus) {
                machine_free(m);
                return log_error_errno(ENOMEM, "rediscovery");
        }
        for (size_t i = 0; i < m->n_gpus; i++) {
                const struct gpu_info *g = &m->gpus[i];
                strscpy(gpus[i].pci, g->pci, sizeof(gpus[i].pci));
                gpus[i].vram_total_bytes = g->vram_total_bytes;
                gpus[i].vram_free_bytes =
                        g->vram_total_bytes > g->vram_used_bytes ? g->vram_total_bytes - g->vram_used_bytes : 0;
        }
        assign_p2p_groups(m, gpus);
        struct machine *old = d->machine;
        bool is_first = !old;
        r = lease_table_set_gpus(&d->leases, gpus, m->n_gpus, on_revoked, d);
        free(gpus);
        if (r < 0) {
                machine_free(m);
                return log_error_errno(r, "rediscovery");
        }
        d->machine = m;
        if (!is_first) {        /* the first discovery is no hotplug */
                broadcast_hotplug(d, old, m, "add");
                broadcast_hotplug(d, m, old, "remove");
        }
        machine_free(old);
        health_after_probe(d);
        /* Every named GPU to its cap: new ones, and ones a reset set back to the default. */
        power_enforce(d, is_first ? "start" : "rediscovery");
        requests_schedule(d);
        return 0;
}

static int on_rediscover_timer(sd_event_source *s, uint64_t usec, void *userdata)
{
        rigd_rediscover(userdata);
        return 0;
}

void rigd_rediscover_soon(struct rigd *d)
{
        if (d->rediscover_timer) {
                sd_event_source_set_time_relative(d->rediscover_timer, REDISCOVER_QUIET_USEC);
                sd_event_source_set_enabled(d->rediscover_timer, SD_EVENT_ONESHOT);
                return;
        }
        int r = sd_event_add_time_relative(d->event, &d->rediscover_timer, CLOCK_MONOTONIC, REDISCOVER_QUIET_USEC, 10000,
                                           on_rediscover_timer, d);
        if (r < 0)
                log_warning_errno(r, "arming the rediscovery timer; rediscovering now");
        if (r < 0)
                rigd_rediscover(d);
}

static int on_sighup(sd_event_source *s, const struct signalfd_siginfo *si, void *userdata)
{
        struct rigd *d = userdata;
        sd_notify(0, "RELOADING=1");
        log_info("SIGHUP: reloading the configuration and rediscovering the GPUs");
        load_config(d);
        for (size_t i = 0; i < d->n_power; i++)
                d->power[i].override_w = NAN;   /* caps set at run time last until a reload */
        rigd_rediscover(d);
        power_start(d);
        sd_notify(0, "READY=1");
        return 0;
}

static int on_sigterm(sd_event_source *s, const struct signalfd_siginfo *si, void *userdata)
{
        struct rigd *d = userdata;
        sd_notify(0, "STOPPING=1");
        log_info("signal %u: stopping; every lease ends with its connection", si->ssi_signo);
        return sd_event_exit(d->event, 0);
}

enum { OPT_ROOT = 0x100, OPT_CONFIG, OPT_SOCKET, OPT_FOREGROUND, OPT_VERSION };

static const struct option options[] = {
        { "root",       required_argument, NULL, OPT_ROOT },
        { "config",     required_argument, NULL, OPT_CONFIG },
        { "socket",     required_argument, NULL, OPT_SOCKET },
        { "foreground", no_argument,       NULL, OPT_FOREGROUND },
        { "verbose",    no_argument,       NULL, 'v' },
        { "help",       no_argument,       NULL, 'h' },
        { "version",    no_argument,       NULL, OPT_VERSION },
        { 0 }
};

/* Returns -1 to go on, else an exit code. */
static int parse_options(struct rigd *d, int argc, char **argv)
{
        int c;
        while ((c = getopt_long(argc, argv, "vh", options, NULL)) != -1) {
                switch (c) {
                case OPT_ROOT:       d->root = optarg; break;
                case OPT_CONFIG:     d->config_path = optarg; break;
                case OPT_SOCKET:     d->socket_path = optarg; break;
                case OPT_FOREGROUND: break;
                case 'v':            log_set_max_level(LOG_LEVEL_DEBUG); break;
                case 'h':            usage(stdout); return 0;
                case OPT_VERSION:    puts("rigd " RIG_VERSION); return 0;
                default:             usage(stderr); return 2;
                }
        }
        if (optind < argc) {
                fprintf(stderr, "rigd: unexpected argument '%s'\n", argv[optind]);
                return 2;
        }
        return -1;
}

static int setup(struct rigd *d)
{
        int r = sd_event_default(&d->event);
        if (r < 0)
                return log_error_errno(r, "creating the event loop");
        sigset_t mask;
        sigemptyset(&mask);
        sigaddset(&mask, SIGTERM);
        sigaddset(&mask, SIGINT);
        sigaddset(&mask, SIGHUP);
        sigprocmask(SIG_BLOCK, &mask, NULL);
        if ((r = sd_event_add_signal(d->event, NULL, SIGTERM, on_sigterm, d)) < 0 ||
            (r = sd_event_add_signal(d->event, NULL, SIGINT, on_sigterm, d)) < 0 ||
            (r = sd_event_add_signal(d->event, NULL, SIGHUP, on_sighup, d)) < 0)
                return log_error_errno(r, "watching signals");
        /* WATCHDOG=1 at half of WatchdogSec, from the loop itself: a hung loop stops the pings. */
        r = sd_event_set_watchdog(d->event, true);
        if (r < 0)
                return log_error_errno(r, "enabling the watchdog");

        load_config(d);
        r = rigd_rediscover(d);
        if (r < 0)
                return r;
        r = server_listen(d);
        if (r < 0)
                return r;
        r = power_start(d);
        if (r < 0)
                return r;
        r = health_start(d);
        if (r < 0)
                return r;
        health_apply(d);
        if (streq(d->root, "/"))
                uevent_start(d);        /* without it rigd still serves; SIGHUP rediscovers */
        return 0;
}

int main(int argc, char **argv)
{
        log_set_max_level(LOG_LEVEL_INFO);
        log_open_journal_if_connected();
        struct rigd d = { .root = "/", .socket_path = "/run/rigd/rigd.sock", .listen_fd = -1 };
        lease_table_init(&d.leases);
        int r = parse_options(&d, argc, argv);
        if (r >= 0)
                return r;

        /* Canonical, so clients can tell whether rigd describes the machine they look at. */
        char root[PATH_MAX];
        if (!realpath(d.root, root)) {
                fprintf(stderr, "rigd: --root %s: %s\n", d.root, strerror(errno));
                return 1;
        }
        d.root = root;
        r = setup(&d);
        if (r == 0) {
                log_info("ready: %zu GPU(s)", d.machine->n_gpus);
                sd_notify(0, "READY=1");
                rigd_update_status(&d);
                r = sd_event_loop(d.event);
                if (r < 0)
                        log_error_errno(r, "event loop");
        }
        uevent_stop(&d);
        server_close(&d);
        power_stop(&d);
        health_stop(&d);
        sd_event_source_disable_unref(d.rediscover_timer);
        lease_table_free(&d.leases);
        machine_free(d.machine);
        sd_event_unref(d.event);
        return r < 0 ? 1 : 0;
}
