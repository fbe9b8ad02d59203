/* machine.c — one discovery of a machine: runs every vendor's pass, then the topology pass. */
#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "log.h"
#include "machine.h"
#include "topo.h"
#include "util.h"

static const struct gpu_vendor *const vendors[] = {
        &gpu_vendor_amd,
        &gpu_vendor_nvidia,
};

const char *gpu_vendor_str(enum gpu_vendor_id v)
{
        return v == GPU_VENDOR_AMD ? "amd" : "nvidia";
}

const char *gpu_health_str(enum gpu_health h)
{
        switch (h) {
        case GPU_HEALTH_OK:         return "ok";
        case GPU_HEALTH_DEGRADED:   return "degraded";
        case GPU_HEALTH_FAILED:     return "failed";
        case GPU_HEALTH_RECOVERING: return "recovering";
        }
        return "unknown";
}

const char *link_type_str(enum link_type t)
{
        switch (t) {
        case LINK_NONE:   return "none";
        case LINK_PCIE:   return "pcie";
        case LINK_XGMI:   return "xgmi";
        case LINK_NVLINK: return "nvlink";
        }
        return "none";
}

void gpu_info_init(struct gpu_info *g)
{
        memset(g, 0, sizeof(*g));
        g->index = -1;
        g->kfd_node = -1;
        g->power_w = g->power_cap_w = g->power_cap_min_w = NAN;
        g->power_cap_max_w = g->power_cap_default_w = g->temp_c = NAN;
        g->pcie_gen = g->pcie_width = g->pcie_max_gen = g->pcie_max_width = -1;
        g->numa_node = -1;
        g->health = GPU_HEALTH_OK;
}

double pcie_link_gbps(int gen, int width)
{
        static const double per_lane[] = { 0, 0.25, 0.5, 0.985, 1.969, 3.938, 7.563 };
        if (gen < 1 || gen > 6 || width < 1)
                return NAN;
        return per_lane[gen] * width;
}

void gpu_add_dev_node(struct gpu_info *g, const char *path, unsigned major, unsigned minor)
{
        if (g->n_dev_nodes >= GPU_MAX_DEV_NODES)
                return;
        struct gpu_dev_node *n = &g->dev_nodes[g->n_dev_nodes++];
        strscpy(n->path, path, sizeof(n->path));
        n->major = major;
        n->minor = minor;
}

void link_add_reason(struct gpu_link *l, const char *fmt, ...)
{
        if (l->n_reasons >= LINK_MAX_REASONS)
                return;
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(l->reasons[l->n_reasons], LINK_REASON_LEN, fmt, ap);
        va_end(ap);
        l->n_reasons++;
}

char *machine_path(const struct machine *m, const char *rel, char *buf, size_t size)
{
        while (*rel == '/')
                rel++;
        int n = m->is_live ? snprintf(buf, size, "/%s", rel) : snprintf(buf, size, "%s/%s", m->root, rel);
        if (n < 0 || (size_t)n >= size) {
                errno = ENAMETOOLONG;
                return NULL;
        }
        return buf;
}

struct gpu_info *machine_add_gpu(struct machine *m, const struct gpu_info *g)
{
        struct gpu_info *gpus = realloc(m->gpus, (m->n_gpus + 1) * sizeof(*gpus));
        if (!gpus)
                return NULL;
        m->gpus = gpus;
        struct gpu_info *stored = &gpus[m->n_gpus];
        *stored = *g;
        stored->index = (int)m->n_gpus;
        m->n_gpus++;
        return stored;
}

static int set_root(struct machine *m, const char *root)
{
        if (!root || !*root)
                root = "/";
        if (!strscpy(m->root, root, sizeof(m->root)))
                return -ENAMETOOLONG;
        size_t n = strlen(m->root);
        while (n > 1 && m->root[n - 1] == '/')
                m->root[--n] = '\0';
        m->is_live = streq(m->root, "/");

        struct stat st;
        if (stat(m->root, &st) < 0)
                return -errno;
        return S_ISDIR(st.st_mode) ? 0 : -ENOTDIR;
}

int machine_discover(const char *root, struct machine **out)
{
        struct machine *m = calloc(1, sizeof(*m));
        if (!m)
                return -ENOMEM;

        int r = set_root(m, root);
        if (r < 0)
                goto fail;

        kernel_info_read(m, &m->kernel);        /* gaps are warnings, never fatal */

        for (size_t i = 0; i < ELEMENTSOF(vendors); i++) {
                r = vendors[i]->discover(m);
                if (r == -ENOMEM)
                        goto fail;
                if (r < 0)
                        log_warning_errno(r, "%s discovery failed; its GPUs are not listed", vendors[i]->name);
        }

        r = topo_build(m, vendors, ELEMENTSOF(vendors));
        if (r < 0)
                goto fail;

        *out = m;
        return 0;
fail:
        machine_free(m);
        return r;
}

void machine_free(struct machine *m)
{
        if (!m)
                return;
        for (size_t i = 0; i < ELEMENTSOF(vendors); i++)
                if (vendors[i]->release)
                        vendors[i]->release(m);
        free(m->gpus);
        free(m->links);
        free(m);
}

static bool pci_matches(const char *pci, const char *selector)
{
        if (strcasecmp(pci, selector) == 0)
                return true;
        /* "03:00.0" means domain 0000 */
        return strlen(selector) == 7 && startswith(pci, "0000:") && strcasecmp(pci + 5, selector) == 0;
}

const struct gpu_info *machine_find_gpu(const struct machine *m, const char *selector)
{
        char *end;
        long idx = strtol(selector, &end, 10);
        if (*selector && *end == '\0')
                return idx >= 0 && (size_t)idx < m->n_gpus ? &m->gpus[idx] : NULL;

        for (size_t i = 0; i < m->n_gpus; i++) {
                const struct gpu_info *g = &m->gpus[i];
                if (pci_matches(g->pci, selector))
                        return g;
                if (g->unique_id[0] && strcasecmp(g->unique_id, selector) == 0)
                        return g;
        }
        return NULL;
}

const struct gpu_link *machine_link(const struct machine *m, int i, int j)
{
        if (i > j) {
                int t = i; i = j; j = t;
        }
        if (i == j || i < 0 || (size_t)j >= m->n_gpus)
                return NULL;
        for (size_t k = 0; k < m->n_links; k++)
                if (m->links[k].a == i && m->links[k].b == j)
                        return &m->links[k];
        return NULL;
}

const char *machine_prefix(const struct machine *m)
{
        return m->is_live ? "" : m->root;
}
