/* power.c — power caps kept, not merely set: each GPU a config line names (or an admin set at run
 * time) gets its cap at start, after every discovery (hotplug, reset, SIGHUP), when its lease state
 * changes (idle cap while unleased), and at every periodic check, which also notices and reverts a
 * cap someone else changed. A GPU nothing names is never touched. */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "log.h"
#include "powercap.h"
#include "rigd.h"
#include "util.h"

#define POWER_TOLERANCE_W 0.5   /* hwmon rounds to its own step; closer than this is equal */

static struct power_gpu *power_gpu_of(struct rigd *d, const char *pci)
{
        for (size_t i = 0; i < d->n_power; i++)
                if (streq(d->power[i].pci, pci))
                        return &d->power[i];
        struct power_gpu *p = realloc(d->power, (d->n_power + 1) * sizeof(*p));
        if (!p)
                return NULL;
        d->power = p;
        p = &d->power[d->n_power++];
        memset(p, 0, sizeof(*p));
        strscpy(p->pci, pci, sizeof(p->pci));
        p->applied_w = p->override_w = p->refused_w = NAN;
        return p;
}

static bool selector_names(const char *selector, const struct gpu_info *g)
{
        if (strcasecmp(selector, g->pci) == 0)
                return true;
        return g->unique_id[0] && strcasecmp(selector, g->unique_id) == 0;
}

/* The configured value for g: a section naming g beats [gpu:*]; among equals the last read wins. */
static const struct config_watts *configured(const struct rigd_config *c, const struct gpu_info *g, bool is_idle)
{
        const struct config_watts *best = NULL;
        bool is_best_specific = false;
        for (size_t i = 0; i < c->n_gpus; i++) {
                const struct config_gpu *s = &c->gpus[i];
                const struct config_watts *v = is_idle ? &s->idle_cap : &s->cap;
                bool is_specific = selector_names(s->selector, g);
                if (isnan(v->w) || (!is_specific && !streq(s->selector, "*")) || (is_best_specific && !is_specific))
                        continue;
                best = v;
                is_best_specific = is_specific;
        }
        return best;
}

bool power_is_leased(const struct rigd *d, const char *pci)
{
        const struct lease_gpu *g = lease_table_find_gpu(&d->leases, pci);
        return g && (g->exclusive || g->n_shared > 0);
}

double power_target(struct rigd *d, const struct gpu_info *g, char *source, size_t source_size)
{
        struct power_gpu *p = power_gpu_of(d, g->pci);
        if (p && !isnan(p->override_w)) {
                snprintf(source, source_size, "set at run time (gpuctl power --set)");
                return p->override_w;
        }
        const struct config_watts *v = power_is_leased(d, g->pci) ? NULL : configured(&d->config, g, true);
        if (v) {
                snprintf(source, source_size, "idle_power_cap_watts, %s", v->where);
                return v->w;
        }
        v = configured(&d->config, g, false);
        if (v) {
                snprintf(source, source_size, "power_cap_watts, %s", v->where);
                return v->w;
        }
        source[0] = '\0';
        return NAN;
}

static void format_clock(uint64_t usec, char *buf, size_t size)
{
        time_t t = (time_t)(usec / 1000000u);
        struct tm tm;
        localtime_r(&t, &tm);
        strftime(buf, size, "%H:%M:%S", &tm);
}

static void announce(struct rigd *d, const struct gpu_info *g, double from_w, double to_w, const char *why)
{
        struct json_object *f = json_object_new_object();
        json_object_object_add(f, "gpu_pci", json_object_new_string(g->pci));
        json_object_object_add(f, "from_w", isnan(from_w) ? NULL : json_object_new_double(from_w));
        json_object_object_add(f, "power_cap_w", json_object_new_double(to_w));
        json_object_object_add(f, "reason", json_object_new_string(why));
        server_broadcast(d, PROTO_EVENT_POWER, f);
}

/* Brings one GPU to its target. */
static void enforce_gpu(struct rigd *d, const struct gpu_info *g, const char *occasion)
{
        char source[CONFIG_WHERE_LEN + 64];
        double target = power_target(d, g, source, sizeof(source));
        struct power_gpu *p = power_gpu_of(d, g->pci);
        if (isnan(target) || !p)
                return;
        double current;
        int r = powercap_read(d->machine, g, &current);
        if (r < 0) {
                if (!p->is_unreadable_logged)
                        log_warning_errno(r, "GPU %s: reading its power cap; %s asks for %.0f W", g->pci, source, target);
                p->is_unreadable_logged = true;
                return;
        }
        p->is_unreadable_logged = false;
        uint64_t now = now_realtime_usec();
        if (fabs(current - target) < POWER_TOLERANCE_W) {
                p->applied_w = target;
                p->checked_usec = now;
                return;
        }
        if (!isnan(p->applied_w) && fabs(current - p->applied_w) >= POWER_TOLERANCE_W) {
                char since[16], seen[16];
                format_clock(p->checked_usec, since, sizeof(since));
                format_clock(now, seen, sizeof(seen));
                log_warning("GPU %s: power cap changed outside rigd, to %.0f W from the %.0f W rigd set (between %s "
                            "and %s); setting %.0f W again (%s)", g->pci, current, p->applied_w, since, seen, target,
                            source);
        }
        char err[512];
        r = powercap_write(d->machine, g, target, err, sizeof(err));
        if (r < 0) {
                /* Said once per value: the periodic check would repeat it every few seconds. */
                if (!(fabs(p->refused_w - target) < POWER_TOLERANCE_W))
                        log_warning("GPU %s: not setting %.0f W (%s): %s", g->pci, target, source, err);
                p->refused_w = target;
                return;
        }
        p->refused_w = NAN;
        log_info("GPU %s: power cap %.0f W -> %.0f W (%s; %s)", g->pci, current, target, source, occasion);
        announce(d, g, current, target, occasion);
        p->applied_w = target;
        p->checked_usec = now;
}

void power_enforce(struct rigd *d, const char *occasion)
{
        if (d->config.n_gpus == 0 && d->n_power == 0)
                return;         /* nothing is named: nothing is touched */
        for (size_t i = 0; d->machine && i < d->machine->n_gpus; i++)
                enforce_gpu(d, &d->machine->gpus[i], occasion);
}

void power_follow_leases(struct rigd *d)
{
        for (size_t i = 0; d->machine && i < d->machine->n_gpus; i++) {
                const struct gpu_info *g = &d->machine->gpus[i];
                char source[CONFIG_WHERE_LEN + 64];
                double target = power_target(d, g, source, sizeof(source));
                struct power_gpu *p = power_gpu_of(d, g->pci);
                /* Unchanged targets are left to the periodic check: a grant reads no sysfs file. */
                if (isnan(target) || !p || fabs(target - p->applied_w) < POWER_TOLERANCE_W ||
                    fabs(target - p->refused_w) < POWER_TOLERANCE_W)
                        continue;
                enforce_gpu(d, g, "lease change");
        }
}

int power_set_override(struct rigd *d, const struct gpu_info *g, double watts, char *err, size_t err_size)
{
        int r = powercap_check_range(g, watts, err, err_size);
        if (r < 0)
                return r;       /* refused before it is kept: the config's value stays in force */
        struct power_gpu *p = power_gpu_of(d, g->pci);
        if (!p)
                return -ENOMEM;
        p->override_w = watts;
        p->refused_w = NAN;
        enforce_gpu(d, g, "on request");
        return isnan(p->refused_w) ? 0 : -EIO;
}

static int on_power_timer(sd_event_source *s, uint64_t usec, void *userdata)
{
        struct rigd *d = userdata;
        power_enforce(d, "periodic check");
        return sd_event_source_set_time_relative(s, (uint64_t)(d->config.power_check_s * 1e6));
}

int power_start(struct rigd *d)
{
        uint64_t period = (uint64_t)(d->config.power_check_s * 1e6);
        if (d->power_timer) {
                sd_event_source_set_time_relative(d->power_timer, period);
                return 0;
        }
        int r = sd_event_add_time_relative(d->event, &d->power_timer, CLOCK_MONOTONIC, period, 10000, on_power_timer, d);
        if (r < 0)
                return log_error_errno(r, "arming the power cap check");
        return sd_event_source_set_enabled(d->power_timer, SD_EVENT_ON);
}

void power_stop(struct rigd *d)
{
        d->power_timer = sd_event_source_disable_unref(d->power_timer);
        free(d->power);
        d->power = NULL;
        d->n_power = 0;
}
