/* topo.c — the pairwise link table, and the checks that apply to any vendor (root complexes). */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "gpu.h"
#include "log.h"
#include "machine.h"
#include "sysfs.h"
#include "topo.h"
#include "util.h"

/* "sys/devices/pci0000:40/0000:40:01.1/0000:41:00.0" → "pci0000:40" in buf. */
static bool root_complex(const char *sysfs_dir, char *buf, size_t size)
{
        const char *p = strstr(sysfs_dir, "devices/pci");
        if (!p)
                return false;
        p += strlen("devices/");
        size_t n = strcspn(p, "/");
        if (n >= size)
                return false;
        memcpy(buf, p, n);
        buf[n] = '\0';
        return true;
}

/* The kernel's pci_p2pdma allows traffic between root ports of different host bridges only on
 * whitelisted hosts: every AMD Zen host, and some Intel Xeon generations. */
static bool host_bridge_allows_p2p(const struct machine *m, const char *rc)
{
        static const unsigned intel_whitelist[] = { 0x3c00, 0x2f00, 0x2030, 0x2031, 0x2032, 0x2033, 0x2020, 0x09a2 };
        char domain_bus[16];
        if (sscanf(rc, "pci%15s", domain_bus) != 1)
                return false;
        char rel[PATH_MAX];
        uint64_t vendor, device;
        snprintf(rel, sizeof(rel), "sys/devices/%s/%s:00.0/vendor", rc, domain_bus);
        if (sysfs_read_u64_optional(m, rel, &vendor) < 0)
                return false;
        if (vendor == 0x1022)
                return true;
        snprintf(rel, sizeof(rel), "sys/devices/%s/%s:00.0/device", rc, domain_bus);
        if (vendor != 0x8086 || sysfs_read_u64_optional(m, rel, &device) < 0)
                return false;
        for (size_t i = 0; i < ELEMENTSOF(intel_whitelist); i++)
                if (device == intel_whitelist[i])
                        return true;
        return false;
}

static void check_root_complexes(const struct machine *m, const struct gpu_info *a, const struct gpu_info *b,
                                 struct gpu_link *l)
{
        char ra[32], rb[32];
        if (!root_complex(a->sysfs_dir, ra, sizeof(ra)) || !root_complex(b->sysfs_dir, rb, sizeof(rb)) || streq(ra, rb))
                return;
        if (host_bridge_allows_p2p(m, ra) && host_bridge_allows_p2p(m, rb))
                return;
        link_add_reason(l, "GPU %d and GPU %d sit under different PCI root complexes (%s, %s) whose host bridge the "
                        "kernel does not whitelist for P2P", a->index, b->index, ra, rb);
}

static void init_link(struct gpu_link *l, int a, int b)
{
        memset(l, 0, sizeof(*l));
        l->a = a;
        l->b = b;
        l->type = LINK_PCIE;
        l->hops = -1;
        l->bandwidth_gbps = NAN;
}

static void link_pair(const struct machine *m, const struct gpu_vendor *const *vendors, size_t n_vendors,
                      const struct gpu_info *a, const struct gpu_info *b, struct gpu_link *l)
{
        init_link(l, a->index, b->index);
        if (a->vendor != b->vendor) {
                link_add_reason(l, "GPU %d is %s and GPU %d is %s: P2P needs two GPUs of one vendor and driver",
                                a->index, gpu_vendor_str(a->vendor), b->index, gpu_vendor_str(b->vendor));
                return;
        }
        for (size_t i = 0; i < n_vendors; i++) {
                if (!streq(vendors[i]->name, gpu_vendor_str(a->vendor)) || !vendors[i]->link)
                        continue;
                if (vendors[i]->link(m, a, b, l) == 0) {
                        if (!l->has_p2p && l->type == LINK_PCIE)
                                check_root_complexes(m, a, b, l);
                        return;
                }
                init_link(l, a->index, b->index);
        }
        link_add_reason(l, "no %s topology source answered for this pair", gpu_vendor_str(a->vendor));
}

int topo_build(struct machine *m, const struct gpu_vendor *const *vendors, size_t n_vendors)
{
        size_t n = m->n_gpus;
        m->n_links = 0;
        if (n < 2)
                return 0;
        m->links = calloc(n * (n - 1) / 2, sizeof(*m->links));
        if (!m->links)
                return -ENOMEM;
        for (size_t i = 0; i < n; i++)
                for (size_t j = i + 1; j < n; j++)
                        link_pair(m, vendors, n_vendors, &m->gpus[i], &m->gpus[j], &m->links[m->n_links++]);
        return 0;
}
