/* power.c — `gpuctl power [GPU] [--set WATTS]`: the caps and what rigd keeps them at; --set
 * changes one (through rigd when it runs, which then keeps it; else written directly, as root). */
#include <errno.h>
#include <getopt.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "client.h"
#include "gpuctl.h"
#include "log.h"
#include "machine.h"
#include "powercap.h"
#include "util.h"

static double field_double(struct json_object *o, const char *key)
{
        struct json_object *v;
        return json_object_object_get_ex(o, key, &v) && v ? json_object_get_double(v) : NAN;
}

static void format_w(double w, char *buf, size_t size)
{
        if (isnan(w))
                snprintf(buf, size, "-");
        else
                snprintf(buf, size, "%.0f W", w);
}

static void print_power(struct json_object *gpus, bool has_rigd)
{
        static const char *const header[] = { "GPU", "PCI", "POWER", "CAP", "MIN-MAX", "DEFAULT", "KEPT AT", "BECAUSE" };
        struct table t;
        if (table_init(&t, ELEMENTSOF(header) - (has_rigd ? 0 : 2), header) < 0)
                return;
        for (size_t i = 0; i < json_object_array_length(gpus); i++) {
                struct json_object *g = json_object_array_get_idx(gpus, i);
                char idx[16], power[32], cap[32], range[48], def[32], target[32];
                snprintf(idx, sizeof(idx), "%s", json_field_str(g, "index"));
                format_w(field_double(g, "power_w"), power, sizeof(power));
                format_w(field_double(g, "power_cap_w"), cap, sizeof(cap));
                double lo = field_double(g, "power_cap_min_w"), hi = field_double(g, "power_cap_max_w");
                if (isnan(lo) || isnan(hi))
                        snprintf(range, sizeof(range), "-");
                else
                        snprintf(range, sizeof(range), "%.0f-%.0f W", lo, hi);
                format_w(field_double(g, "power_cap_default_w"), def, sizeof(def));
                format_w(field_double(g, "target_w"), target, sizeof(target));
                const char *source = json_field_str(g, "source");
                const char *row[] = { idx, json_field_str(g, "pci"), power, cap, range, def, target,
                                      source ? source : "not named in rigd.conf: left alone" };
                table_add_row(&t, row);
        }
        table_print(&t);
        table_free(&t);
}

/* Without rigd: the discovered caps, in the shape rigd answers power_get with. */
static struct json_object *discovered_power(const struct machine *m, const struct gpu_info *only)
{
        struct json_object *gpus = json_object_new_array();
        for (size_t i = 0; i < m->n_gpus; i++) {
                const struct gpu_info *g = &m->gpus[i];
                if (only && only != g)
                        continue;
                json_object_array_add(gpus, gpu_power_to_json(g, g->power_cap_w));
        }
        return gpus;
}

/* Sets a cap without rigd: root writes the hwmon file (or NVML) itself. */
static int set_directly(const struct gpuctl *ctl, const char *selector, double watts)
{
        struct machine *m;
        int r = machine_discover(ctl->root, &m);
        if (r < 0) {
                log_error_errno(r, "discovering GPUs under %s", ctl->root);
                return 1;
        }
        const struct gpu_info *g = machine_find_gpu(m, selector);
        char err[512];
        if (!g)
                snprintf(err, sizeof(err), "no GPU matches '%s' (gpuctl list shows them)", selector);
        else if (geteuid() != 0)
                snprintf(err, sizeof(err), "setting a power cap needs root (or rigd running and group rig-admin)");
        else if (powercap_write(m, g, watts, err, sizeof(err)) == 0)
                err[0] = '\0';
        if (err[0]) {
                fprintf(stderr, "gpuctl power: %s\n", err);
                machine_free(m);
                return 1;
        }
        printf("GPU %s: power cap set to %.0f W (rigd is not running: nothing keeps it after a reset)\n", g->pci, watts);
        machine_free(m);
        return 0;
}

static int show_directly(const struct gpuctl *ctl, const char *selector)
{
        struct machine *m;
        int r = machine_discover(ctl->root, &m);
        if (r < 0) {
                log_error_errno(r, "discovering GPUs under %s", ctl->root);
                return 1;
        }
        const struct gpu_info *g = selector ? machine_find_gpu(m, selector) : NULL;
        if (selector && !g) {
                fprintf(stderr, "gpuctl power: no GPU matches '%s' (gpuctl list shows them)\n", selector);
                machine_free(m);
                return 1;
        }
        struct json_object *gpus = discovered_power(m, g);
        machine_free(m);
        if (ctl->is_json) {
                struct json_object *o = json_object_new_object();
                json_object_object_add(o, "gpus", gpus);
                json_print(o);
                return 0;
        }
        print_power(gpus, false);
        json_object_put(gpus);
        return 0;
}

static int through_rigd(const struct gpuctl *ctl, struct rigd_client *c, const char *selector, double watts)
{
        struct json_object *f = json_object_new_object(), *result = NULL, *gpus;
        if (selector)
                json_object_object_add(f, "gpu", json_object_new_string(selector));
        if (!isnan(watts))
                json_object_object_add(f, "watts", json_object_new_double(watts));
        char err[512];
        int r = rigd_client_call(c, isnan(watts) ? "power_get" : "power_set", f, 10000, &result, err, sizeof(err));
        if (r < 0) {
                fprintf(stderr, "gpuctl power: %s\n", err);
                return 1;
        }
        if (!json_object_object_get_ex(result, "gpus", &gpus)) {
                fprintf(stderr, "gpuctl power: rigd's answer has no GPU list\n");
                json_object_put(result);
                return 1;
        }
        if (ctl->is_json) {
                json_print(result);
                return 0;
        }
        print_power(gpus, true);
        json_object_put(result);
        return 0;
}

static const struct option power_options[] = {
        { "set",  required_argument, NULL, 's' },
        { "help", no_argument,       NULL, 'h' },
        { 0 }
};

int verb_power(const struct gpuctl *ctl, int argc, char **argv)
{
        double watts = NAN;
        int opt;
        optind = 0;
        while ((opt = getopt_long(argc, argv, "h", power_options, NULL)) != -1) {
                char *end;
                switch (opt) {
                case 's':
                        watts = strtod(optarg, &end);
                        if (end == optarg || *end || !(watts > 0)) {
                                fprintf(stderr, "gpuctl power: --set wants watts, not '%s'\n", optarg);
                                return 2;
                        }
                        break;
                case 'h':
                        printf("Usage: gpuctl power [GPU] [--set WATTS]\n");
                        return 0;
                default:
                        return 2;
                }
        }
        if (argc - optind > 1) {
                fprintf(stderr, "gpuctl power: unexpected argument '%s'\n", argv[optind + 1]);
                return 2;
        }
        const char *selector = optind < argc ? argv[optind] : NULL;
        if (!isnan(watts) && !selector) {
                fprintf(stderr, "gpuctl power: --set needs the GPU (gpuctl power 0 --set 190)\n");
                return 2;
        }
        struct rigd_client *c = gpuctl_connect_same_root(ctl);
        if (c) {
                int r = through_rigd(ctl, c, selector, watts);
                rigd_client_free(c);
                return r;
        }
        return isnan(watts) ? show_directly(ctl, selector) : set_directly(ctl, selector, watts);
}
