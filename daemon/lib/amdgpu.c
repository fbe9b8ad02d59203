/* amdgpu.c — AMD GPUs: DRM cards bound to amdgpu, their sysfs attributes and hwmon, matched to
 * amdkfd topology nodes by PCI address; on the live system libdrm adds the marketing name and the
 * APU flag. Also how two AMD GPUs are linked and why they cannot do P2P. */
#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <amdgpu.h>
#include <amdgpu_drm.h>

#include "amdgpu_ids.h"
#include "drm.h"
#include "kfd.h"
#include "log.h"
#include "machine.h"
#include "sysfs.h"
#include "util.h"

#define PCI_VENDOR_AMD 0x1002

struct amd_state {
        struct kfd_topology kfd;
        bool has_kfd;
        unsigned kfd_major, kfd_minor;  /* /dev/kfd, 0 if unknown */
};

/* /dev/kfd's number: the kfd class device's "dev" file, else /proc/devices (minor 0). */
static void read_kfd_devnum(const struct machine *m, struct amd_state *st)
{
        char buf[32];
        int r = sysfs_read_line(m, "sys/class/kfd/kfd/dev", buf, sizeof(buf));
        if (r == 0 && parse_devnum(buf, &st->kfd_major, &st->kfd_minor))
                return;
        if (r == 0)
                log_warning("reading %s/sys/class/kfd/kfd/dev: \"%s\" is not MAJOR:MINOR", machine_prefix(m), buf);
        st->kfd_minor = 0;
        if (proc_devices_major(m, "kfd", &st->kfd_major) < 0)
                st->kfd_major = 0;
}

static struct amd_state *amd_state(const struct machine *m)
{
        return m->amd;
}

/* Reads "<dir>/<attr>" as an unsigned number; warns (naming the file) when present but garbage,
 * and when missing if is_required. */
static int read_attr_u64(const struct machine *m, const char *dir, const char *attr, bool is_required, uint64_t *out)
{
        char rel[PATH_MAX];
        snprintf(rel, sizeof(rel), "%s/%s", dir, attr);
        return is_required ? sysfs_read_u64(m, rel, out) : sysfs_read_u64_optional(m, rel, out);
}

static double read_microunits(const struct machine *m, const char *dir, const char *attr)
{
        uint64_t v;
        return read_attr_u64(m, dir, attr, false, &v) == 0 ? (double)v / 1e6 : NAN;
}

/* "8.0 GT/s PCIe" → 3. The PCIe generations double the rate, except gen1→gen2. */
static int pcie_gen_from_speed(const char *speed)
{
        static const struct { double gts; int gen; } table[] = {
                { 2.5, 1 }, { 5.0, 2 }, { 8.0, 3 }, { 16.0, 4 }, { 32.0, 5 }, { 64.0, 6 },
        };
        char *end;
        double gts = strtod(speed, &end);
        if (end == speed)
                return -1;
        for (size_t i = 0; i < ELEMENTSOF(table); i++)
                if (fabs(table[i].gts - gts) < 0.01)
                        return table[i].gen;
        return -1;
}

static void read_pcie(const struct machine *m, struct gpu_info *g)
{
        char rel[PATH_MAX], buf[64];
        uint64_t w;

        snprintf(rel, sizeof(rel), "%s/current_link_speed", g->sysfs_dir);
        if (sysfs_read_line(m, rel, buf, sizeof(buf)) == 0)
                g->pcie_gen = pcie_gen_from_speed(buf);
        snprintf(rel, sizeof(rel), "%s/max_link_speed", g->sysfs_dir);
        if (sysfs_read_line(m, rel, buf, sizeof(buf)) == 0)
                g->pcie_max_gen = pcie_gen_from_speed(buf);
        if (read_attr_u64(m, g->sysfs_dir, "current_link_width", false, &w) == 0 && w <= 32)
                g->pcie_width = (int)w;
        if (read_attr_u64(m, g->sysfs_dir, "max_link_width", false, &w) == 0 && w <= 32)
                g->pcie_max_width = (int)w;
}

static void read_memory(const struct machine *m, struct gpu_info *g)
{
        read_attr_u64(m, g->sysfs_dir, "mem_info_vram_total", true, &g->vram_total_bytes);
        read_attr_u64(m, g->sysfs_dir, "mem_info_vram_used", true, &g->vram_used_bytes);
        read_attr_u64(m, g->sysfs_dir, "mem_info_vis_vram_total", true, &g->vis_vram_total_bytes);
        read_attr_u64(m, g->sysfs_dir, "mem_info_gtt_total", true, &g->gtt_total_bytes);
        read_attr_u64(m, g->sysfs_dir, "mem_info_gtt_used", true, &g->gtt_used_bytes);
}

/* Edge temperature if the chip has that sensor (unknown if it is unreadable, not some other
 * sensor's value), else junction: MI300 has no edge sensor. */
static double read_temperature(const struct machine *m, const char *hwmon)
{
        double junction = NAN;
        for (int i = 1; i <= 3; i++) {
                char rel[PATH_MAX], label[32], attr[32];
                snprintf(rel, sizeof(rel), "%s/temp%d_label", hwmon, i);
                if (sysfs_read_line(m, rel, label, sizeof(label)) < 0)
                        label[0] = '\0';
                bool is_edge = streq(label, "edge") || (!label[0] && i == 1);
                if (!is_edge && !streq(label, "junction"))
                        continue;
                snprintf(attr, sizeof(attr), "temp%d_input", i);
                uint64_t v;
                double c = read_attr_u64(m, hwmon, attr, false, &v) == 0 ? (double)v / 1000.0 : NAN;
                if (is_edge)
                        return c;
                junction = c;
        }
        return junction;
}

static void read_hwmon(const struct machine *m, struct gpu_info *g)
{
        char rel[PATH_MAX], path[PATH_MAX];
        snprintf(rel, sizeof(rel), "%s/hwmon", g->sysfs_dir);
        if (!machine_path(m, rel, path, sizeof(path)))
                return;
        _cleanup_closedir_ DIR *d = opendir(path);
        if (!d) {
                log_warning_errno(errno, "reading %s: power and temperature unknown", path);
                return;
        }
        for (struct dirent *e; (e = readdir(d)); ) {
                if (startswith(e->d_name, "hwmon")) {
                        snprintf(g->hwmon_dir, sizeof(g->hwmon_dir), "%s/%s", rel, e->d_name);
                        break;
                }
        }
        if (!g->hwmon_dir[0])
                return;

        /* power1_average on older kernels/chips, power1_input where the SMU reports instant power */
        g->power_w = read_microunits(m, g->hwmon_dir, "power1_average");
        if (isnan(g->power_w))
                g->power_w = read_microunits(m, g->hwmon_dir, "power1_input");
        g->power_cap_w = read_microunits(m, g->hwmon_dir, "power1_cap");
        g->power_cap_min_w = read_microunits(m, g->hwmon_dir, "power1_cap_min");
        g->power_cap_max_w = read_microunits(m, g->hwmon_dir, "power1_cap_max");
        g->power_cap_default_w = read_microunits(m, g->hwmon_dir, "power1_cap_default");
        g->temp_c = read_temperature(m, g->hwmon_dir);
}

static void read_unique_id(const struct machine *m, struct gpu_info *g)
{
        char rel[PATH_MAX], buf[64];
        snprintf(rel, sizeof(rel), "%s/unique_id", g->sysfs_dir);
        if (sysfs_read_line(m, rel, buf, sizeof(buf)) < 0 || !buf[0])
                return;
        for (const char *p = buf; *p; p++)
                if (!isxdigit((unsigned char)*p)) {
                        log_warning("reading %s/%s: \"%s\" is not a hex id; ignoring it", machine_prefix(m), rel, buf);
                        return;
                }
        strscpy(g->unique_id, buf, sizeof(g->unique_id));
}

static void read_name(const struct machine *m, struct gpu_info *g)
{
        if (amdgpu_ids_lookup(m, g->pci_device, g->pci_revision, g->name, sizeof(g->name)) == 0)
                return;
        char rel[PATH_MAX];
        snprintf(rel, sizeof(rel), "%s/product_name", g->sysfs_dir);
        if (sysfs_read_line(m, rel, g->name, sizeof(g->name)) == 0 && g->name[0])
                return;
        snprintf(g->name, sizeof(g->name), "AMD GPU %04x:%04x", g->pci_vendor, g->pci_device);
}

/* Live only: libdrm's amdgpu query interface through the render node (name, APU flag, heaps). Under umockdev or in a
 * container without the node this fails, and the sysfs answers stand. */
static void query_libdrm(struct gpu_info *g)
{
        if (!g->render_node[0])
                return;
        _cleanup_close_ int fd = open(g->render_node, O_RDWR | O_CLOEXEC);
        if (fd < 0) {
                log_debug_errno(errno, "opening %s; using sysfs only", g->render_node);
                return;
        }
        uint32_t major, minor;
        amdgpu_device_handle dev;
        int r = amdgpu_device_initialize(fd, &major, &minor, &dev);
        if (r < 0) {
                log_debug_errno(r, "amdgpu_device_initialize(%s)", g->render_node);
                return;
        }
        const char *name = amdgpu_get_marketing_name(dev);
        if (name && *name)
                strscpy(g->name, name, sizeof(g->name));
        struct amdgpu_gpu_info info;
        if (amdgpu_query_gpu_info(dev, &info) == 0 && (info.ids_flags & AMDGPU_IDS_FLAGS_FUSION))
                g->is_apu = true;
        /* The driver's heaps: sysfs totals stay the answer (both paths must agree); the heaps
         * fill in what sysfs could not give. */
        struct drm_amdgpu_memory_info mem;
        if (amdgpu_query_info(dev, AMDGPU_INFO_MEMORY, sizeof(mem), &mem) == 0) {
                if (!g->vram_total_bytes)
                        g->vram_total_bytes = mem.vram.total_heap_size;
                if (!g->vis_vram_total_bytes)
                        g->vis_vram_total_bytes = mem.cpu_accessible_vram.total_heap_size;
                if (!g->gtt_total_bytes)
                        g->gtt_total_bytes = mem.gtt.total_heap_size;
                log_debug("%s: libdrm heaps: VRAM %llu (usable %llu), visible %llu, GTT %llu bytes", g->pci,
                          (unsigned long long)mem.vram.total_heap_size, (unsigned long long)mem.vram.usable_heap_size,
                          (unsigned long long)mem.cpu_accessible_vram.total_heap_size,
                          (unsigned long long)mem.gtt.total_heap_size);
        }
        amdgpu_device_deinitialize(dev);
}

static void apply_kfd_node(const struct amd_state *st, const struct kfd_node *n, struct gpu_info *g)
{
        if (st->kfd_major)
                gpu_add_dev_node(g, "/dev/kfd", st->kfd_major, st->kfd_minor);
        g->kfd_node = n->id;
        g->kfd_gpu_id = n->gpu_id;
        g->hive_id = n->hive_id;
        if (n->gfx_target_version)
                kfd_gfx_name(n->gfx_target_version, g->arch, sizeof(g->arch));
        if (kfd_is_apu(n))
                g->is_apu = true;
        if (!g->unique_id[0] && n->unique_id)
                snprintf(g->unique_id, sizeof(g->unique_id), "%016llx", (unsigned long long)n->unique_id);
}

static int read_gpu(const struct machine *m, const struct drm_card *card, struct gpu_info *g)
{
        uint64_t v = 0;
        gpu_info_init(g);
        g->vendor = GPU_VENDOR_AMD;
        strscpy(g->pci, card->pci, sizeof(g->pci));
        strscpy(g->sysfs_dir, card->device_dir, sizeof(g->sysfs_dir));

        int r = read_attr_u64(m, g->sysfs_dir, "vendor", true, &v);
        if (r == -ENOENT)
                return -ENODEV;         /* the device went away under us */
        if (r == 0)
                g->pci_vendor = (uint32_t)v;
        if (read_attr_u64(m, g->sysfs_dir, "device", true, &v) == 0)
                g->pci_device = (uint32_t)v;
        if (read_attr_u64(m, g->sysfs_dir, "revision", true, &v) == 0)
                g->pci_revision = (uint32_t)v;

        unsigned maj = 0, min = 0;
        snprintf(g->card_node, sizeof(g->card_node), "/dev/dri/%s", card->name);
        char name[32];
        if (drm_find_minor(m, g->sysfs_dir, "renderD", name, sizeof(name), &maj, &min) == 0) {
                snprintf(g->render_node, sizeof(g->render_node), "/dev/dri/%s", name);
                gpu_add_dev_node(g, g->render_node, maj, min);
        }
        if (drm_find_minor(m, g->sysfs_dir, "card", name, sizeof(name), &maj, &min) == 0)
                gpu_add_dev_node(g, g->card_node, maj, min);

        int64_t numa;
        char rel[PATH_MAX];
        snprintf(rel, sizeof(rel), "%s/numa_node", g->sysfs_dir);
        if (sysfs_read_s64(m, rel, &numa) == 0 && numa >= 0 && numa < 4096)
                g->numa_node = (int)numa;

        read_memory(m, g);
        read_pcie(m, g);
        read_hwmon(m, g);
        read_unique_id(m, g);
        read_name(m, g);
        return 0;
}

static int compare_amd(const void *pa, const void *pb)
{
        const struct gpu_info *a = pa, *b = pb;
        /* ROCm numbers devices in KFD node order; GPUs without a node go last. */
        if ((a->kfd_node < 0) != (b->kfd_node < 0))
                return a->kfd_node < 0 ? 1 : -1;
        if (a->kfd_node != b->kfd_node)
                return a->kfd_node - b->kfd_node;
        return strcmp(a->pci, b->pci);
}

static void warn_unmatched_kfd_nodes(const struct machine *m, const struct kfd_topology *t,
                                     const struct gpu_info *found, size_t n_found)
{
        for (size_t i = 0; i < t->n_nodes; i++) {
                const struct kfd_node *n = &t->nodes[i];
                if (n->gpu_id == 0)
                        continue;
                bool matched = false;
                for (size_t j = 0; j < n_found; j++)
                        matched |= found[j].kfd_node == n->id;
                if (!matched)
                        log_warning("%s/sys/class/kfd/kfd/topology/nodes/%d names a GPU at %s, but no amdgpu DRM "
                                    "device is there (it vanished or failed to probe); skipping it",
                                    machine_prefix(m), n->id, n->pci);
        }
}

static int amd_discover(struct machine *m)
{
        struct amd_state *st = calloc(1, sizeof(*st));
        if (!st)
                return -ENOMEM;
        m->amd = st;

        int r = kfd_topology_read(m, &st->kfd);
        if (r == -ENOMEM)
                return r;
        st->has_kfd = r == 0;
        if (st->has_kfd)
                read_kfd_devnum(m, st);

        struct drm_cards cards;
        r = drm_cards_enumerate(m, &cards);
        if (r < 0)
                return r;

        _cleanup_free_ struct gpu_info *found = calloc(cards.n_cards ? cards.n_cards : 1, sizeof(*found));
        if (!found) {
                drm_cards_free(&cards);
                return -ENOMEM;
        }
        size_t n_found = 0;
        for (size_t i = 0; i < cards.n_cards; i++) {
                if (!streq(cards.cards[i].driver, "amdgpu"))
                        continue;
                struct gpu_info *g = &found[n_found];
                if (read_gpu(m, &cards.cards[i], g) < 0) {
                        log_warning("%s/%s vanished while it was being read; skipping it",
                                    machine_prefix(m), cards.cards[i].device_dir);
                        continue;
                }
                const struct kfd_node *node = st->has_kfd ? kfd_find_gpu_by_pci(&st->kfd, g->pci) : NULL;
                if (node)
                        apply_kfd_node(st, node, g);
                if (m->is_live)
                        query_libdrm(g);
                n_found++;
        }
        drm_cards_free(&cards);

        if (st->has_kfd)
                warn_unmatched_kfd_nodes(m, &st->kfd, found, n_found);

        if (n_found > 0)
                qsort(found, n_found, sizeof(*found), compare_amd);
        for (size_t i = 0; i < n_found; i++)
                if (!machine_add_gpu(m, &found[i]))
                        return -ENOMEM;
        return 0;
}

static double pcie_pair_gbps(const struct gpu_info *a, const struct gpu_info *b)
{
        int gen = a->pcie_gen < b->pcie_gen ? a->pcie_gen : b->pcie_gen;
        int width = a->pcie_width < b->pcie_width ? a->pcie_width : b->pcie_width;
        return pcie_link_gbps(gen, width);
}

/* The CPU node a GPU's PCIe io_link goes to, or -1. */
static int cpu_node_of(const struct kfd_topology *t, const struct kfd_node *gpu)
{
        for (size_t i = 0; i < gpu->n_io_links; i++) {
                const struct kfd_node *to = kfd_find_node(t, gpu->io_links[i].node_to);
                if (gpu->io_links[i].type == KFD_LINK_PCIE && to && to->gpu_id == 0)
                        return to->id;
        }
        return -1;
}

static void explain_no_p2p(const struct machine *m, const struct gpu_info *a, const struct gpu_info *b,
                           struct gpu_link *l)
{
        const struct kernel_info *k = &m->kernel;
        const char *rel = k->osrelease[0] ? k->osrelease : "this kernel";

        if (k->hsa_amd_p2p == KCONFIG_NO)
                link_add_reason(l, "CONFIG_HSA_AMD_P2P is not set in %s", rel);
        if (k->pci_p2pdma == KCONFIG_NO)
                link_add_reason(l, "CONFIG_PCI_P2PDMA is not set in %s", rel);
        if (k->hsa_amd_p2p == KCONFIG_UNKNOWN)
                link_add_reason(l, "cannot tell whether %s has CONFIG_HSA_AMD_P2P: no /proc/config.gz or /boot/config-%s", rel, rel);

        const struct gpu_info *pair[2] = { a, b };
        for (int i = 0; i < 2; i++) {
                const struct gpu_info *g = pair[i];
                if (g->vis_vram_total_bytes && g->vram_total_bytes && g->vis_vram_total_bytes < g->vram_total_bytes)
                        link_add_reason(l, "GPU %d (%s) shows only %llu MiB of its %llu MiB VRAM through its BAR "
                                        "(small BAR: enable Above 4G Decoding and Resizable BAR in the firmware)",
                                        g->index, g->pci, (unsigned long long)(g->vis_vram_total_bytes >> 20),
                                        (unsigned long long)(g->vram_total_bytes >> 20));
        }
        if (k->iommu == IOMMU_TRANSLATED)
                link_add_reason(l, "the IOMMU translates DMA (groups of type DMA/DMA-FQ): boot with iommu=pt");
}

static int amd_link(const struct machine *m, const struct gpu_info *a, const struct gpu_info *b, struct gpu_link *l)
{
        const struct amd_state *st = amd_state(m);
        l->type = LINK_PCIE;
        l->bandwidth_gbps = pcie_pair_gbps(a, b);
        l->hops = -1;

        const struct kfd_node *na = st && st->has_kfd ? kfd_find_node(&st->kfd, a->kfd_node) : NULL;
        const struct kfd_node *nb = st && st->has_kfd ? kfd_find_node(&st->kfd, b->kfd_node) : NULL;
        if (!na || !nb) {
                link_add_reason(l, "amdkfd has no topology node for GPU %d (%s): is the amdgpu driver built with "
                                "CONFIG_HSA_AMD and /dev/kfd present?", !na ? a->index : b->index, !na ? a->pci : b->pci);
                return 0;
        }

        const struct kfd_link *xgmi = kfd_find_link(na, nb->id, false);
        if (xgmi && xgmi->type == KFD_LINK_XGMI) {
                l->type = LINK_XGMI;
                l->has_p2p = true;
                l->hops = xgmi->weight >= KFD_XGMI_HOP_WEIGHT ? (int)(xgmi->weight / KFD_XGMI_HOP_WEIGHT) : 1;
                l->bandwidth_gbps = xgmi->max_bandwidth_mbs ? (double)xgmi->max_bandwidth_mbs / 1000.0 : NAN;
                return 0;
        }

        int ca = cpu_node_of(&st->kfd, na), cb = cpu_node_of(&st->kfd, nb);
        if (ca >= 0 && cb >= 0)
                l->hops = ca == cb ? 2 : 3;     /* GPU→CPU→GPU, or across the CPU interconnect */

        /* The kernel's own verdict: it creates p2p_links only for peers it will map. */
        l->has_p2p = kfd_find_link(na, nb->id, true) && kfd_find_link(nb, na->id, true);
        if (l->has_p2p)
                return 0;

        explain_no_p2p(m, a, b, l);
        link_add_reason(l, "the kernel lists no p2p_links between KFD nodes %d and %d", na->id, nb->id);
        return 0;
}

static void amd_release(struct machine *m)
{
        struct amd_state *st = m->amd;
        if (!st)
                return;
        kfd_topology_free(&st->kfd);
        free(st);
        m->amd = NULL;
}

const struct gpu_vendor gpu_vendor_amd = {
        .name = "amd",
        .discover = amd_discover,
        .link = amd_link,
        .release = amd_release,
};
