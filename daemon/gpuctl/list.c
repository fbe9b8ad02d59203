/* list.c — `gpuctl list`: one row per GPU. */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "gpuctl.h"
#include "log.h"
#include "machine.h"

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

static void print_table(const struct machine *m)
{
        static const char *const header[] = { "GPU", "PCI", "NAME", "ARCH", "VRAM", "USED", "POWER", "CAP (MIN-MAX)",
                                              "TEMP", "PCIE", "NODE" };
        struct table t;
        if (table_init(&t, sizeof(header) / sizeof(header[0]), header) < 0)
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
                const char *row[] = { idx, g->pci, g->name, g->arch[0] ? g->arch : "-", vram, used, power, cap, temp,
                                      pcie, node };
                table_add_row(&t, row);
        }
        table_print(&t);
        table_free(&t);
}

int verb_list(const struct gpuctl *ctl, int argc, char **argv)
{
        struct machine *m;
        int r = machine_discover(ctl->root, &m);
        if (r < 0) {
                log_error_errno(r, "discovering GPUs under %s", ctl->root);
                return 1;
        }

        if (ctl->is_json) {
                struct json_object *gpus = json_object_new_array();
                for (size_t i = 0; i < m->n_gpus; i++)
                        json_object_array_add(gpus, gpu_to_json(&m->gpus[i], false));
                struct json_object *o = json_object_new_object();
                json_object_object_add(o, "gpus", gpus);
                json_print(o);
        } else if (m->n_gpus == 0) {
                printf("No GPU found on this machine: no amdgpu device in /sys/class/drm and no NVIDIA GPU "
                       "through NVML or /proc/driver/nvidia.\n");
        } else {
                print_table(m);
        }
        machine_free(m);
        return 0;
}
