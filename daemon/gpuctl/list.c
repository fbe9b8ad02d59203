/* list.c — `gpuctl list`: one row per GPU. */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "client.h"
#include "gpuctl.h"
#include "log.h"
#include "machine.h"
#include "util.h"

static void format_watts(double w, char *buf, size_t size)
{
        if (isnan(w))
                snprintf(buf, size, "-");
        else
                snprintf(buf, size, "%.0f W", w);
}

static void format_cap(const struct gpu_info *g, char *buf, size_t size)
{
        if (isnan(g->power_cap_w)) {
                snprintf(buf, size, "-");
                return;
        }
        if (isnan(g->power_cap_min_w) || isnan(g->power_cap_max_w))
                snprintf(buf, size, "%.0f W", g->power_cap_w);
        else
                snprintf(buf, size, "%.0f W (%.0f-%.0f)", g->power_cap_w, g->power_cap_min_w, g->power_cap_max_w);
}

static const char *lease_cell(struct json_object *leases, const struct gpu_info *g, char *buf, size_t size)
{
        struct json_object *l, *id, *holder;
        if (!json_object_object_get_ex(leases, g->pci, &l))
                return "-";
        json_object_object_get_ex(l, "id", &id);
        json_object_object_get_ex(l, "holder", &holder);
        snprintf(buf, size, "%s (%s)", json_object_get_string(holder), json_object_get_string(id));
        return buf;
}

/* The LEASE column appears only when rigd answered: without it, who holds a GPU is unknown. */
static void print_table(const struct machine *m, struct json_object *leases)
{
        static const char *const header[] = { "GPU", "PCI", "NAME", "ARCH", "VRAM", "USED", "POWER", "CAP (MIN-MAX)",
                                              "TEMP", "PCIE", "NODE", "LEASE" };
        struct table t;
        if (table_init(&t, ELEMENTSOF(header) - (leases ? 0 : 1), header) < 0)
                return;
        for (size_t i = 0; i < m->n_gpus; i++) {
                const struct gpu_info *g = &m->gpus[i];
                char idx[16], vram[32], used[32], power[32], cap[64], temp[32], pcie[32];
                snprintf(idx, sizeof(idx), "%d", g->index);
                format_bytes(g->vram_total_bytes, vram, sizeof(vram));
                format_bytes(g->vram_used_bytes, used, sizeof(used));
                if (g->is_apu)
                        strncat(vram, " (APU)", sizeof(vram) - strlen(vram) - 1);
                format_watts(g->power_w, power, sizeof(power));
                format_cap(g, cap, sizeof(cap));
                if (isnan(g->temp_c))
                        snprintf(temp, sizeof(temp), "-");
                else
                        snprintf(temp, sizeof(temp), "%.0f°C", g->temp_c);
                if (g->pcie_gen > 0 && g->pcie_width > 0)
                        snprintf(pcie, sizeof(pcie), "gen%d x%d", g->pcie_gen, g->pcie_width);
                else
                        snprintf(pcie, sizeof(pcie), "-");
                const char *node = g->render_node[0] ? g->render_node : "-";
                char lease[TABLE_CELL_LEN];
                const char *row[] = { idx, g->pci, g->name, g->arch[0] ? g->arch : "-", vram, used, power, cap, temp,
                                      pcie, node, lease_cell(leases, g, lease, sizeof(lease)) };
                table_add_row(&t, row);
        }
        table_print(&t);
        table_free(&t);
}

/* rigd's leases ({"PCI": LEASE}) when a rigd answers on the socket and serves this same root;
 * NULL otherwise (no rigd is no error: list works without it). */
static struct json_object *rigd_leases_by_pci(const struct gpuctl *ctl)
{
        struct rigd_client *c = gpuctl_connect_same_root(ctl);
        if (!c)
                return NULL;
        struct json_object *result = NULL, *leases, *by_pci = NULL;
        char err[256];
        if (rigd_client_call(c, "leases", NULL, 2000, &result, err, sizeof(err)) < 0 ||
            !json_object_object_get_ex(result, "leases", &leases))
                goto done;
        by_pci = json_object_new_object();
        for (size_t i = 0; i < json_object_array_length(leases); i++) {
                struct json_object *l = json_object_array_get_idx(leases, i), *pcis;
                if (!json_object_object_get_ex(l, "pci", &pcis))
                        continue;
                for (size_t k = 0; k < json_object_array_length(pcis); k++)
                        json_object_object_add(by_pci, json_object_get_string(json_object_array_get_idx(pcis, k)),
                                               json_object_get(l));
        }
done:
        json_object_put(result);
        rigd_client_free(c);
        return by_pci;
}

int verb_list(const struct gpuctl *ctl, int argc, char **argv)
{
        struct machine *m;
        int r = machine_discover(ctl->root, &m);
        if (r < 0) {
                log_error_errno(r, "discovering GPUs under %s", ctl->root);
                return 1;
        }

        struct json_object *leases = rigd_leases_by_pci(ctl);
        if (ctl->is_json) {
                struct json_object *gpus = json_object_new_array();
                for (size_t i = 0; i < m->n_gpus; i++) {
                        struct json_object *g = gpu_to_json(&m->gpus[i], false), *l;
                        if (json_object_object_get_ex(leases, m->gpus[i].pci, &l))
                                json_object_object_add(g, "lease", json_object_get(l));
                        json_object_array_add(gpus, g);
                }
                struct json_object *o = json_object_new_object();
                json_object_object_add(o, "gpus", gpus);
                json_print(o);
        } else if (m->n_gpus == 0) {
                printf("No GPU found on this machine: no amdgpu device in /sys/class/drm and no NVIDIA GPU "
                       "through NVML or /proc/driver/nvidia.\n");
        } else {
                print_table(m, leases);
        }
        json_object_put(leases);
        machine_free(m);
        return 0;
}
