/* kconfig.c — kernel release, build options (/proc/config.gz or /boot/config-<release>),
 * IOMMU mode and command line: the kernel facts that decide whether GPUs can do P2P. */
#include <dirent.h>
#include <errno.h>
#include <stddef.h>
#include <string.h>
#include <zlib.h>

#include "kconfig.h"
#include "log.h"
#include "machine.h"
#include "sysfs.h"
#include "util.h"

#define KCONFIG_MAX_BYTES (16u << 20)   /* real configs are ~300 KiB; refuse absurd files */

const char *kconfig_value_str(enum kconfig_value v)
{
        switch (v) {
        case KCONFIG_UNKNOWN: return "unknown";
        case KCONFIG_NO:      return "n";
        case KCONFIG_YES:     return "y";
        case KCONFIG_MODULE:  return "m";
        }
        return "unknown";
}

const char *iommu_mode_str(enum iommu_mode m)
{
        switch (m) {
        case IOMMU_UNKNOWN:     return "unknown";
        case IOMMU_OFF:         return "off";
        case IOMMU_PASSTHROUGH: return "passthrough";
        case IOMMU_TRANSLATED:  return "translated";
        }
        return "unknown";
}

struct kconfig_option {
        const char *name;
        size_t offset;
};

static const struct kconfig_option options[] = {
        { "CONFIG_PCI_P2PDMA",  offsetof(struct kernel_info, pci_p2pdma) },
        { "CONFIG_HSA_AMD_P2P", offsetof(struct kernel_info, hsa_amd_p2p) },
        { "CONFIG_HSA_AMD",     offsetof(struct kernel_info, hsa_amd) },
        { "CONFIG_DMABUF_MOVE_NOTIFY", offsetof(struct kernel_info, dmabuf_move_notify) },
};

static enum kconfig_value *option_slot(struct kernel_info *k, const struct kconfig_option *o)
{
        return (enum kconfig_value *)((char *)k + o->offset);
}

/* One line: "CONFIG_X=y", "CONFIG_X=m", "CONFIG_X=\"...\"", or "# CONFIG_X is not set". */
static void parse_line(const char *line, size_t len, struct kernel_info *out)
{
        for (size_t i = 0; i < ELEMENTSOF(options); i++) {
                const char *name = options[i].name;
                size_t n = strlen(name);
                if (len > n + 1 && memcmp(line, name, n) == 0 && line[n] == '=') {
                        char v = line[n + 1];
                        *option_slot(out, &options[i]) = v == 'y' ? KCONFIG_YES : v == 'm' ? KCONFIG_MODULE : KCONFIG_NO;
                        return;
                }
                static const char unset_suffix[] = " is not set";
                if (len == n + 2 + sizeof(unset_suffix) - 1 && memcmp(line, "# ", 2) == 0 &&
                    memcmp(line + 2, name, n) == 0 && memcmp(line + 2 + n, unset_suffix, sizeof(unset_suffix) - 1) == 0) {
                        *option_slot(out, &options[i]) = KCONFIG_NO;
                        return;
                }
        }
}

void kconfig_parse(const char *text, size_t len, struct kernel_info *out)
{
        /* A readable config that does not mention an option means the option is off. */
        for (size_t i = 0; i < ELEMENTSOF(options); i++)
                *option_slot(out, &options[i]) = KCONFIG_NO;

        const char *p = text, *end = text + len;
        while (p < end) {
                const char *eol = memchr(p, '\n', (size_t)(end - p));
                size_t n = eol ? (size_t)(eol - p) : (size_t)(end - p);
                parse_line(p, n, out);
                p += n + 1;
        }
}

static int read_gzip(const char *path, char **out, size_t *len)
{
        gzFile f = gzopen(path, "rb");
        if (!f)
                return errno ? -errno : -ENOMEM;

        size_t cap = 1u << 20, n = 0;
        char *buf = malloc(cap);
        if (!buf) {
                gzclose(f);
                return -ENOMEM;
        }
        for (;;) {
                if (n == cap) {
                        if (cap >= KCONFIG_MAX_BYTES) {
                                free(buf);
                                gzclose(f);
                                return -EFBIG;
                        }
                        char *bigger = realloc(buf, cap * 2);
                        if (!bigger) {
                                free(buf);
                                gzclose(f);
                                return -ENOMEM;
                        }
                        buf = bigger;
                        cap *= 2;
                }
                int k = gzread(f, buf + n, (unsigned)(cap - n));
                if (k < 0) {
                        free(buf);
                        gzclose(f);
                        return -EIO;    /* truncated or not gzip */
                }
                if (k == 0)
                        break;
                n += (size_t)k;
        }
        gzclose(f);
        *out = buf;
        *len = n;
        return 0;
}

static int read_config(const struct machine *m, struct kernel_info *k)
{
        char path[PATH_MAX];
        _cleanup_free_ char *text = NULL;
        size_t len = 0;

        if (machine_path(m, "proc/config.gz", path, sizeof(path)) && access(path, R_OK) == 0) {
                int r = read_gzip(path, &text, &len);
                if (r < 0)
                        return log_warning_errno(r, "reading %s", path);
                strscpy(k->config_source, "/proc/config.gz", sizeof(k->config_source));
        } else if (k->osrelease[0]) {
                char rel[PATH_MAX];
                snprintf(rel, sizeof(rel), "boot/config-%s", k->osrelease);
                int r = sysfs_read_file(m, rel, KCONFIG_MAX_BYTES, &text, &len);
                if (r == -ENOENT)
                        return -ENOENT;         /* reported by the caller and by doctor */
                if (r < 0)
                        return log_warning_errno(r, "reading %s/%s", machine_prefix(m), rel);
                snprintf(k->config_source, sizeof(k->config_source), "/%s", rel);
        } else {
                return -ENOENT;
        }
        kconfig_parse(text, len, k);
        return 0;
}

static enum iommu_mode group_type_mode(const char *type)
{
        if (streq(type, "identity"))
                return IOMMU_PASSTHROUGH;
        if (startswith(type, "DMA"))
                return IOMMU_TRANSLATED;       /* "DMA", "DMA-FQ" */
        return IOMMU_UNKNOWN;
}

/* Machine-wide: off when no IOMMU registered itself; else the mode of the groups (translated wins). */
static enum iommu_mode read_iommu(const struct machine *m)
{
        char path[PATH_MAX];
        if (!machine_path(m, "sys/class/iommu", path, sizeof(path)))
                return IOMMU_UNKNOWN;
        _cleanup_closedir_ DIR *d = opendir(path);
        if (!d)
                return IOMMU_OFF;       /* no IOMMU subsystem: no translation */
        bool any = false;
        for (struct dirent *e; (e = readdir(d)); )
                if (e->d_name[0] != '.')
                        any = true;
        if (!any)
                return IOMMU_OFF;

        if (!machine_path(m, "sys/kernel/iommu_groups", path, sizeof(path)))
                return IOMMU_UNKNOWN;
        _cleanup_closedir_ DIR *g = opendir(path);
        if (!g)
                return IOMMU_UNKNOWN;
        enum iommu_mode mode = IOMMU_UNKNOWN;
        for (struct dirent *e; (e = readdir(g)); ) {
                if (e->d_name[0] == '.')
                        continue;
                char rel[PATH_MAX], type[32];
                snprintf(rel, sizeof(rel), "sys/kernel/iommu_groups/%s/type", e->d_name);
                if (sysfs_read_line(m, rel, type, sizeof(type)) < 0)
                        continue;
                enum iommu_mode gm = group_type_mode(type);
                if (gm == IOMMU_TRANSLATED)
                        return IOMMU_TRANSLATED;
                if (gm != IOMMU_UNKNOWN)
                        mode = gm;
        }
        return mode;
}

int kernel_info_read(const struct machine *m, struct kernel_info *out)
{
        memset(out, 0, sizeof(*out));
        int r = sysfs_read_line(m, "proc/sys/kernel/osrelease", out->osrelease, sizeof(out->osrelease));
        if (r < 0) {
                out->osrelease[0] = '\0';
                log_warning_errno(r, "reading %s/proc/sys/kernel/osrelease", machine_prefix(m));
        }
        if (read_config(m, out) < 0)
                log_debug("no kernel config under %s (/proc/config.gz, /boot/config-%s)", m->root, out->osrelease);

        out->iommu = read_iommu(m);

        if (sysfs_read_line(m, "proc/cmdline", out->cmdline, sizeof(out->cmdline)) < 0)
                out->cmdline[0] = '\0';
        return 0;
}
