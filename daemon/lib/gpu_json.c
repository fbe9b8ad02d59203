/* gpu_json.c — the JSON field layout of a GPU and a link (DESIGN §4.2), shared by gpuctl's output
 * and rigd's replies so both speak the same names. */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "gpu_json.h"
#include "kmsg.h"

struct json_object *json_double_or_null(double v)
{
        if (isnan(v) || isinf(v))
                return NULL;
        /* Round to what the kernel reports (mW, m°C) so output is stable and short. */
        char buf[64];
        snprintf(buf, sizeof(buf), "%.3f", v);
        char *p = buf + strlen(buf) - 1;
        while (*p == '0' && p[-1] != '.')
                *p-- = '\0';
        return json_object_new_double_s(v, buf);
}

struct json_object *json_int_or_null(long long v)
{
        return v < 0 ? NULL : json_object_new_int64(v);
}

struct json_object *json_string_or_null(const char *s)
{
        return s && *s ? json_object_new_string(s) : NULL;
}

static struct json_object *pcie_to_json(const struct gpu_info *g)
{
        if (g->pcie_gen < 0 && g->pcie_width < 0)
                return NULL;
        struct json_object *o = json_object_new_object();
        json_object_object_add(o, "gen", json_int_or_null(g->pcie_gen));
        json_object_object_add(o, "width", json_int_or_null(g->pcie_width));
        json_object_object_add(o, "max_gen", json_int_or_null(g->pcie_max_gen));
        json_object_object_add(o, "max_width", json_int_or_null(g->pcie_max_width));
        return o;
}

struct json_object *gpu_to_json(const struct gpu_info *g, bool is_brief)
{
        struct json_object *o = json_object_new_object();
        json_object_object_add(o, "index", json_object_new_int(g->index));
        json_object_object_add(o, "vendor", json_object_new_string(gpu_vendor_str(g->vendor)));
        json_object_object_add(o, "pci", json_object_new_string(g->pci));
        json_object_object_add(o, "name", json_string_or_null(g->name));
        json_object_object_add(o, "arch", json_string_or_null(g->arch));
        json_object_object_add(o, "unique_id", json_string_or_null(g->unique_id));
        if (is_brief)
                return o;
        json_object_object_add(o, "kfd_gpu_id", g->kfd_node >= 0 ? json_object_new_int64(g->kfd_gpu_id) : NULL);
        json_object_object_add(o, "render_node", json_string_or_null(g->render_node));
        json_object_object_add(o, "card_node", json_string_or_null(g->card_node));
        struct json_object *nodes = json_object_new_array();
        for (size_t i = 0; i < g->n_dev_nodes; i++) {
                char dev[32];
                snprintf(dev, sizeof(dev), "%u:%u", g->dev_nodes[i].major, g->dev_nodes[i].minor);
                struct json_object *n = json_object_new_object();
                json_object_object_add(n, "path", json_object_new_string(g->dev_nodes[i].path));
                json_object_object_add(n, "dev", json_object_new_string(dev));
                json_object_array_add(nodes, n);
        }
        json_object_object_add(o, "dev_nodes", nodes);
        json_object_object_add(o, "vram_total_bytes", json_object_new_int64((int64_t)g->vram_total_bytes));
        json_object_object_add(o, "vram_used_bytes", json_object_new_int64((int64_t)g->vram_used_bytes));
        json_object_object_add(o, "vis_vram_total_bytes", json_object_new_int64((int64_t)g->vis_vram_total_bytes));
        json_object_object_add(o, "gtt_total_bytes", json_object_new_int64((int64_t)g->gtt_total_bytes));
        json_object_object_add(o, "is_apu", json_object_new_boolean(g->is_apu));
        json_object_object_add(o, "power_w", json_double_or_null(g->power_w));
        json_object_object_add(o, "power_cap_w", json_double_or_null(g->power_cap_w));
        json_object_object_add(o, "power_cap_min_w", json_double_or_null(g->power_cap_min_w));
        json_object_object_add(o, "power_cap_max_w", json_double_or_null(g->power_cap_max_w));
        json_object_object_add(o, "power_cap_default_w", json_double_or_null(g->power_cap_default_w));
        json_object_object_add(o, "temp_c", json_double_or_null(g->temp_c));
        json_object_object_add(o, "pcie", pcie_to_json(g));
        json_object_object_add(o, "numa_node", json_int_or_null(g->numa_node));
        json_object_object_add(o, "hive_id", g->hive_id ? json_object_new_int64((int64_t)g->hive_id) : NULL);
        json_object_object_add(o, "health", json_object_new_string(gpu_health_str(g->health)));
        json_object_object_add(o, "lease", NULL);
        return o;
}

struct json_object *link_to_json(const struct gpu_link *l)
{
        struct json_object *o = json_object_new_object();
        json_object_object_add(o, "a", json_object_new_int(l->a));
        json_object_object_add(o, "b", json_object_new_int(l->b));
        json_object_object_add(o, "type", json_object_new_string(link_type_str(l->type)));
        json_object_object_add(o, "p2p", json_object_new_boolean(l->has_p2p));
        json_object_object_add(o, "hops", json_int_or_null(l->hops));
        json_object_object_add(o, "bandwidth_gbps", json_double_or_null(l->bandwidth_gbps));
        struct json_object *reasons = json_object_new_array();
        for (size_t i = 0; i < l->n_reasons; i++)
                json_object_array_add(reasons, json_object_new_string(l->reasons[i]));
        json_object_object_add(o, "reasons", reasons);
        return o;
}

struct json_object *gpu_power_to_json(const struct gpu_info *g, double power_cap_w)
{
        struct json_object *o = json_object_new_object();
        json_object_object_add(o, "index", json_object_new_int(g->index));
        json_object_object_add(o, "pci", json_object_new_string(g->pci));
        json_object_object_add(o, "name", json_string_or_null(g->name));
        json_object_object_add(o, "power_w", json_double_or_null(g->power_w));
        json_object_object_add(o, "power_cap_w", json_double_or_null(power_cap_w));
        json_object_object_add(o, "power_cap_min_w", json_double_or_null(g->power_cap_min_w));
        json_object_object_add(o, "power_cap_max_w", json_double_or_null(g->power_cap_max_w));
        json_object_object_add(o, "power_cap_default_w", json_double_or_null(g->power_cap_default_w));
        return o;
}

struct json_object *fault_to_json(const struct fault *f, uint64_t line)
{
        struct json_object *o = json_object_new_object();
        json_object_object_add(o, "line", json_object_new_int64((int64_t)line));
        json_object_object_add(o, "time", json_string_or_null(f->time));
        json_object_object_add(o, "gpu_pci", json_string_or_null(f->gpu_pci));
        json_object_object_add(o, "kind", json_object_new_string(fault_kind_str(f->kind)));
        json_object_object_add(o, "severity", json_object_new_string(fault_severity_str(f->severity)));
        json_object_object_add(o, "xid", json_int_or_null(f->xid));
        json_object_object_add(o, "text", json_object_new_string(f->text));
        return o;
}
