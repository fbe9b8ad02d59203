/* doctor.c — host checks: kernel P2P options, large BAR, IOMMU, driver and MES firmware,
 * device access, GPUs that also drive a display, GPU faults in the kernel log. Each failing check
 * names its dkms-notes page. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "doctor.h"
#include "kmsg.h"
#include "machine.h"
#include "sysfs.h"
#include "util.h"

const char *verdict_str(enum verdict v)
{
        switch (v) {
        case VERDICT_OK:   return "ok";
        case VERDICT_WARN: return "warn";
        case VERDICT_FAIL: return "fail";
        }
        return "fail";
}

static struct doctor_check *add_check(struct doctor_report *r, const char *name)
{
        struct doctor_check *checks = realloc(r->checks, (r->n_checks + 1) * sizeof(*checks));
        if (!checks)
                return NULL;
        r->checks = checks;
        struct doctor_check *c = &checks[r->n_checks++];
        memset(c, 0, sizeof(*c));
        strscpy(c->name, name, sizeof(c->name));
        return c;
}

/* Appends to a bounded text field; silently truncates (these are messages, not data). */
static void append(char *buf, size_t size, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static void append(char *buf, size_t size, const char *fmt, ...)
{
        size_t used = strlen(buf);
        if (used + 1 >= size)
                return;
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(buf + used, size - used, fmt, ap);
        va_end(ap);
}

static size_t count_vendor(const struct machine *m, enum gpu_vendor_id v)
{
        size_t n = 0;
        for (size_t i = 0; i < m->n_gpus; i++)
                n += m->gpus[i].vendor == v;
        return n;
}

static int check_gpus(const struct machine *m, struct doctor_report *r)
{
        struct doctor_check *c = add_check(r, "gpus");
        if (!c)
                return -ENOMEM;
        if (m->n_gpus == 0) {
                c->verdict = VERDICT_WARN;
                snprintf(c->detail, sizeof(c->detail), "no GPU found");
                snprintf(c->fix, sizeof(c->fix), "check that the driver is loaded (lsmod | grep -e amdgpu -e nvidia) "
                         "and what it logged (dmesg | grep -i -e amdgpu -e nvrm); see dkms-notes/amdgpu-dkms.md");
                return 0;
        }
        snprintf(c->detail, sizeof(c->detail), "%zu GPU(s): %zu amd, %zu nvidia", m->n_gpus,
                 count_vendor(m, GPU_VENDOR_AMD), count_vendor(m, GPU_VENDOR_NVIDIA));
        return 0;
}

static int check_kfd(const struct machine *m, struct doctor_report *r)
{
        if (count_vendor(m, GPU_VENDOR_AMD) == 0)
                return 0;
        struct doctor_check *c = add_check(r, "amdkfd");
        if (!c)
                return -ENOMEM;
        for (size_t i = 0; i < m->n_gpus; i++) {
                const struct gpu_info *g = &m->gpus[i];
                if (g->vendor == GPU_VENDOR_AMD && g->kfd_node < 0) {
                        c->verdict = VERDICT_FAIL;
                        append(c->detail, sizeof(c->detail), "GPU %d (%s) has no amdkfd topology node; ", g->index, g->pci);
                }
        }
        if (c->verdict == VERDICT_OK) {
                snprintf(c->detail, sizeof(c->detail), "every AMD GPU has an amdkfd node: ROCm/HIP can use them");
                return 0;
        }
        append(c->detail, sizeof(c->detail), "ROCm cannot use these GPUs");
        snprintf(c->fix, sizeof(c->fix), "use a kernel with CONFIG_HSA_AMD=y (amdkfd), check dmesg for kfd errors; "
                 "see dkms-notes/amdgpu-dkms.md");
        return 0;
}

/* Is any pair of AMD GPUs linked over PCIe (where the P2P kernel options matter)? */
static bool has_amd_pcie_pair(const struct machine *m)
{
        for (size_t i = 0; i < m->n_links; i++) {
                const struct gpu_link *l = &m->links[i];
                if (l->type == LINK_PCIE && m->gpus[l->a].vendor == GPU_VENDOR_AMD && m->gpus[l->b].vendor == GPU_VENDOR_AMD)
                        return true;
        }
        return false;
}

static int check_p2p_config(const struct machine *m, struct doctor_report *r)
{
        struct doctor_check *c = add_check(r, "p2p-kernel-config");
        if (!c)
                return -ENOMEM;
        const struct kernel_info *k = &m->kernel;
        const char *rel = k->osrelease[0] ? k->osrelease : "the running kernel";
        snprintf(c->detail, sizeof(c->detail), "%s (%s): CONFIG_PCI_P2PDMA=%s, CONFIG_DMABUF_MOVE_NOTIFY=%s, "
                 "CONFIG_HSA_AMD_P2P=%s", rel, k->config_source[0] ? k->config_source : "no config file found",
                 kconfig_value_str(k->pci_p2pdma), kconfig_value_str(k->dmabuf_move_notify),
                 kconfig_value_str(k->hsa_amd_p2p));
        if (!has_amd_pcie_pair(m)) {
                append(c->detail, sizeof(c->detail), "; no pair of AMD GPUs on PCIe, so P2P over PCIe is not needed");
                return 0;
        }
        bool is_missing = k->pci_p2pdma == KCONFIG_NO || k->hsa_amd_p2p == KCONFIG_NO;
        bool is_unknown = k->pci_p2pdma == KCONFIG_UNKNOWN || k->hsa_amd_p2p == KCONFIG_UNKNOWN;
        if (is_missing) {
                c->verdict = VERDICT_FAIL;
                append(c->detail, sizeof(c->detail), "; without both, GPUs cannot copy to each other directly: "
                       "row split (-sm row) fails and layer split bounces through host memory");
                snprintf(c->fix, sizeof(c->fix), "boot a kernel built with CONFIG_PCI_P2PDMA=y, CONFIG_DMABUF_MOVE_NOTIFY=y "
                         "and CONFIG_HSA_AMD_P2P=y (Proxmox's and Ubuntu 24.04's kernels have them; Debian 12's do not): "
                         "see dkms-notes/p2p-kernel.md");
        } else if (is_unknown) {
                c->verdict = VERDICT_WARN;
                snprintf(c->fix, sizeof(c->fix), "install the kernel's config (/boot/config-%s) or enable CONFIG_IKCONFIG_PROC "
                         "so the P2P options can be checked: see dkms-notes/p2p-kernel.md", rel);
        }
        return 0;
}

static int check_large_bar(const struct machine *m, struct doctor_report *r)
{
        if (count_vendor(m, GPU_VENDOR_AMD) == 0)
                return 0;
        struct doctor_check *c = add_check(r, "large-bar");
        if (!c)
                return -ENOMEM;
        for (size_t i = 0; i < m->n_gpus; i++) {
                const struct gpu_info *g = &m->gpus[i];
                if (g->vendor != GPU_VENDOR_AMD || g->is_apu || !g->vis_vram_total_bytes)
                        continue;
                if (g->vis_vram_total_bytes < g->vram_total_bytes) {
                        c->verdict = VERDICT_FAIL;
                        append(c->detail, sizeof(c->detail), "GPU %d (%s): %llu of %llu MiB CPU-visible; ", g->index, g->pci,
                               (unsigned long long)(g->vis_vram_total_bytes >> 20), (unsigned long long)(g->vram_total_bytes >> 20));
                }
        }
        if (c->verdict == VERDICT_OK) {
                snprintf(c->detail, sizeof(c->detail), "all VRAM is CPU-visible (large BAR) on every discrete AMD GPU");
                return 0;
        }
        append(c->detail, sizeof(c->detail), "small BAR blocks P2P and slows uploads");
        snprintf(c->fix, sizeof(c->fix), "enable Above 4G Decoding and Resizable BAR in the firmware setup: "
                 "see dkms-notes/large-bar.md");
        return 0;
}

static int check_iommu(const struct machine *m, struct doctor_report *r)
{
        struct doctor_check *c = add_check(r, "iommu");
        if (!c)
                return -ENOMEM;
        enum iommu_mode mode = m->kernel.iommu;
        snprintf(c->detail, sizeof(c->detail), "IOMMU %s", iommu_mode_str(mode));
        if (mode == IOMMU_TRANSLATED && m->n_gpus > 1) {
                c->verdict = VERDICT_WARN;
                append(c->detail, sizeof(c->detail), ": every GPU-to-GPU DMA is remapped, which ROCm multi-GPU "
                       "setups hang or slow down on");
                snprintf(c->fix, sizeof(c->fix), "add iommu=pt to the kernel command line (what ROCm asks for on "
                         "Instinct cards; on Radeon cards check afterwards that gpuctl topo still shows P2P): "
                         "see dkms-notes/iommu.md");
        }
        return 0;
}

static int check_driver(const struct machine *m, struct doctor_report *r)
{
        if (count_vendor(m, GPU_VENDOR_AMD) == 0)
                return 0;
        struct doctor_check *c = add_check(r, "amdgpu-driver");
        if (!c)
                return -ENOMEM;
        char version[64];
        if (sysfs_read_line(m, "sys/module/amdgpu/version", version, sizeof(version)) == 0 && version[0])
                snprintf(c->detail, sizeof(c->detail), "amdgpu from DKMS, version %s", version);
        else
                snprintf(c->detail, sizeof(c->detail), "in-tree amdgpu of kernel %s",
                         m->kernel.osrelease[0] ? m->kernel.osrelease : "(unknown release)");
        return 0;
}

/* The kernel schedules queues through MES on gfx11 and gfx12 only (MI300 still uses the HWS);
 * those report its firmware in fw_version/mes_fw_version. */
static bool has_mes(const struct gpu_info *g)
{
        return startswith(g->arch, "gfx11") || startswith(g->arch, "gfx12");
}

static int check_mes(const struct machine *m, struct doctor_report *r)
{
        struct doctor_check *c = NULL;
        for (size_t i = 0; i < m->n_gpus; i++) {
                const struct gpu_info *g = &m->gpus[i];
                if (g->vendor != GPU_VENDOR_AMD || !has_mes(g))
                        continue;
                if (!c && !(c = add_check(r, "mes-firmware")))
                        return -ENOMEM;
                char rel[PATH_MAX], version[32];
                snprintf(rel, sizeof(rel), "%s/fw_version/mes_fw_version", g->sysfs_dir);
                if (sysfs_read_line(m, rel, version, sizeof(version)) == 0) {
                        append(c->detail, sizeof(c->detail), "GPU %d (%s) MES %s; ", g->index, g->arch, version);
                } else {
                        c->verdict = VERDICT_WARN;
                        append(c->detail, sizeof(c->detail), "GPU %d (%s): MES firmware version unreadable; ", g->index, g->arch);
                }
        }
        if (c && c->verdict != VERDICT_OK)
                snprintf(c->fix, sizeof(c->fix), "update the GPU firmware (Debian: firmware-amd-graphics from backports, "
                         "or amdgpu-dkms-firmware): see dkms-notes/mes-firmware.md");
        return 0;
}

/* Connectors live under the card: <pci>/drm/card0/card0-DP-1/status. */
static bool card_has_connected_connector(const struct machine *m, const char *card_rel)
{
        char path[PATH_MAX];
        if (!machine_path(m, card_rel, path, sizeof(path)))
                return false;
        _cleanup_closedir_ DIR *d = opendir(path);
        if (!d)
                return false;
        for (struct dirent *e; (e = readdir(d)); ) {
                if (!startswith(e->d_name, "card") || !strchr(e->d_name, '-'))
                        continue;       /* connectors are card0-DP-1, card0-HDMI-A-1, ... */
                char rel[PATH_MAX], status[32];
                snprintf(rel, sizeof(rel), "%s/%s/status", card_rel, e->d_name);
                if (sysfs_read_line(m, rel, status, sizeof(status)) == 0 && streq(status, "connected"))
                        return true;
        }
        return false;
}

static bool drives_display(const struct machine *m, const struct gpu_info *g)
{
        char rel[PATH_MAX], path[PATH_MAX];
        snprintf(rel, sizeof(rel), "%s/drm", g->sysfs_dir);
        if (!machine_path(m, rel, path, sizeof(path)))
                return false;
        _cleanup_closedir_ DIR *d = opendir(path);
        if (!d)
                return false;
        for (struct dirent *e; (e = readdir(d)); ) {
                if (!startswith(e->d_name, "card") || strchr(e->d_name, '-'))
                        continue;
                char card_rel[PATH_MAX];
                snprintf(card_rel, sizeof(card_rel), "%s/%s", rel, e->d_name);
                if (card_has_connected_connector(m, card_rel))
                        return true;
        }
        return false;
}

static int check_display(const struct machine *m, struct doctor_report *r)
{
        struct doctor_check *c = add_check(r, "display");
        if (!c)
                return -ENOMEM;
        for (size_t i = 0; i < m->n_gpus; i++) {
                const struct gpu_info *g = &m->gpus[i];
                if (g->vendor == GPU_VENDOR_AMD && !g->is_apu && drives_display(m, g)) {
                        c->verdict = VERDICT_WARN;
                        append(c->detail, sizeof(c->detail), "GPU %d (%s) drives a connected display; ", g->index, g->pci);
                }
        }
        if (c->verdict == VERDICT_OK) {
                snprintf(c->detail, sizeof(c->detail), "no compute GPU drives a display");
                return 0;
        }
        append(c->detail, sizeof(c->detail), "desktop work on a compute GPU provokes MES and ring timeouts");
        snprintf(c->fix, sizeof(c->fix), "connect the display to the integrated GPU or a separate card: "
                 "see dkms-notes/display.md");
        return 0;
}

/* Live only: device nodes are not part of a fixture tree. */
static int check_device_access(const struct machine *m, struct doctor_report *r)
{
        if (!m->is_live || count_vendor(m, GPU_VENDOR_AMD) == 0)
                return 0;
        struct doctor_check *c = add_check(r, "device-access");
        if (!c)
                return -ENOMEM;
        if (access("/dev/kfd", R_OK | W_OK) < 0) {
                c->verdict = VERDICT_FAIL;
                append(c->detail, sizeof(c->detail), "/dev/kfd: %s; ", strerror(errno));
        }
        for (size_t i = 0; i < m->n_gpus; i++) {
                const struct gpu_info *g = &m->gpus[i];
                if (g->vendor == GPU_VENDOR_AMD && g->render_node[0] && access(g->render_node, R_OK | W_OK) < 0) {
                        c->verdict = VERDICT_FAIL;
                        append(c->detail, sizeof(c->detail), "%s: %s; ", g->render_node, strerror(errno));
                }
        }
        if (c->verdict == VERDICT_OK) {
                snprintf(c->detail, sizeof(c->detail), "this user can open /dev/kfd and every render node");
                return 0;
        }
        snprintf(c->fix, sizeof(c->fix), "add the user to the render and video groups (usermod -aG render,video USER, "
                 "then log in again): see dkms-notes/device-access.md");
        return 0;
}

#define FAULT_TALLY_MAX 32

struct fault_tally {
        char gpu_pci[16];
        enum fault_kind kind;
        unsigned n;
};

struct fault_count {
        struct fault_tally tally[FAULT_TALLY_MAX];
        size_t n_tally;
        unsigned n_errors, n_faults;
        uint64_t n_lines;
};

static void count_fault(struct fault_count *fc, const char *line, size_t len)
{
        struct fault f;
        fc->n_lines++;
        if (kmsg_classify_line(line, len, &f) != 1)
                return;
        fc->n_faults++;
        fc->n_errors += f.severity == FAULT_SEVERITY_ERROR;
        for (size_t i = 0; i < fc->n_tally; i++)
                if (fc->tally[i].kind == f.kind && streq(fc->tally[i].gpu_pci, f.gpu_pci)) {
                        fc->tally[i].n++;
                        return;
                }
        if (fc->n_tally == FAULT_TALLY_MAX)
                return;
        struct fault_tally *t = &fc->tally[fc->n_tally++];
        strscpy(t->gpu_pci, f.gpu_pci, sizeof(t->gpu_pci));
        t->kind = f.kind;
        t->n = 1;
}

/* The kernel log as the kernel still holds it: /dev/kmsg hands out a record a read (and would
 * wait at the end, so it is read without blocking); under a root, a file of such records. */
static void read_kernel_log(int fd, bool is_live, struct fault_count *fc)
{
        if (is_live) {
                char rec[8192];
                ssize_t n;
                while ((n = read(fd, rec, sizeof(rec))) > 0 || (n < 0 && (errno == EPIPE || errno == EINTR)))
                        if (n > 0 && rec[0] != ' ')
                                count_fault(fc, rec, (size_t)n);
                return;
        }
        FILE *f = fdopen(dup(fd), "re");
        if (!f)
                return;
        _cleanup_free_ char *line = NULL;
        size_t cap = 0;
        ssize_t len;
        while ((len = getline(&line, &cap, f)) >= 0)
                if (len > 0 && line[0] != ' ')
                        count_fault(fc, line, (size_t)len);
        fclose(f);
}

static int check_recent_faults(const struct machine *m, struct doctor_report *r)
{
        char path[4096];
        if (!machine_path(m, "dev/kmsg", path, sizeof(path)))
                return 0;
        _cleanup_close_ int fd = open(path, O_RDONLY | O_CLOEXEC | (m->is_live ? O_NONBLOCK : 0));
        if (fd < 0 && errno == ENOENT)
                return 0;       /* a recorded machine without a kernel log */
        struct doctor_check *c = add_check(r, "gpu-faults");
        if (!c)
                return -ENOMEM;
        if (fd < 0) {
                c->verdict = VERDICT_WARN;
                snprintf(c->detail, sizeof(c->detail), "cannot read %s: %s", path, strerror(errno));
                snprintf(c->fix, sizeof(c->fix), "run gpuctl doctor as root to check the kernel log for GPU faults");
                return 0;
        }
        struct fault_count fc = { 0 };
        read_kernel_log(fd, m->is_live, &fc);
        if (fc.n_faults == 0) {
                snprintf(c->detail, sizeof(c->detail), "no GPU faults in the kernel log (%llu lines)",
                         (unsigned long long)fc.n_lines);
                return 0;
        }
        c->verdict = fc.n_errors > 0 ? VERDICT_WARN : VERDICT_OK;
        append(c->detail, sizeof(c->detail), "%u GPU fault(s) in the kernel log (%llu lines): ", fc.n_faults,
               (unsigned long long)fc.n_lines);
        for (size_t i = 0; i < fc.n_tally; i++)
                append(c->detail, sizeof(c->detail), "%s%s %s x%u", i ? ", " : "",
                       fc.tally[i].gpu_pci[0] ? fc.tally[i].gpu_pci : "(no GPU named)",
                       fault_kind_str(fc.tally[i].kind), fc.tally[i].n);
        if (c->verdict == VERDICT_WARN)
                snprintf(c->fix, sizeof(c->fix), "read the lines with `journalctl -k -b | gpuctl faults --classify -` "
                         "(or `gpuctl faults` where rigd runs); for MES and ring timeouts, dkms-notes/mes-firmware.md "
                         "says what helps");
        return 0;
}

int doctor_run(const struct machine *m, struct doctor_report *out)
{
        static int (*const checks[])(const struct machine *, struct doctor_report *) = {
                check_gpus, check_kfd, check_p2p_config, check_large_bar, check_iommu,
                check_driver, check_mes, check_display, check_device_access, check_recent_faults,
        };
        memset(out, 0, sizeof(*out));
        for (size_t i = 0; i < ELEMENTSOF(checks); i++) {
                int r = checks[i](m, out);
                if (r < 0) {
                        doctor_report_free(out);
                        return r;
                }
        }
        return 0;
}

void doctor_report_free(struct doctor_report *r)
{
        free(r->checks);
        r->checks = NULL;
        r->n_checks = 0;
}

enum verdict doctor_worst(const struct doctor_report *r)
{
        enum verdict worst = VERDICT_OK;
        for (size_t i = 0; i < r->n_checks; i++)
                if (r->checks[i].verdict > worst)
                        worst = r->checks[i].verdict;
        return worst;
}
