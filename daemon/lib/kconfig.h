/* kconfig.h — the kernel facts P2P depends on: release, build config options, IOMMU mode. */
#pragma once

#include <limits.h>
#include <stdbool.h>

struct machine;

enum kconfig_value {
        KCONFIG_UNKNOWN,        /* no config file found: cannot tell */
        KCONFIG_NO,             /* "# CONFIG_X is not set" or absent from a readable config */
        KCONFIG_YES,            /* =y */
        KCONFIG_MODULE,         /* =m */
};

enum iommu_mode {
        IOMMU_UNKNOWN,
        IOMMU_OFF,              /* no IOMMU registered */
        IOMMU_PASSTHROUGH,      /* groups of type "identity" (iommu=pt) */
        IOMMU_TRANSLATED,       /* groups of type "DMA" / "DMA-FQ" */
};

struct kernel_info {
        char osrelease[128];            /* "6.1.0-18-amd64", "" if unknown */
        char config_source[PATH_MAX];   /* the file the options were read from, relative to root */
        enum kconfig_value pci_p2pdma;      /* CONFIG_PCI_P2PDMA */
        enum kconfig_value hsa_amd_p2p;     /* CONFIG_HSA_AMD_P2P */
        enum kconfig_value dmabuf_move_notify;  /* CONFIG_DMABUF_MOVE_NOTIFY (HSA_AMD_P2P depends on it) */
        enum kconfig_value hsa_amd;         /* CONFIG_HSA_AMD (KFD itself) */
        enum iommu_mode iommu;
        char cmdline[1024];
};

/* Reads osrelease, then /proc/config.gz or /boot/config-<release>, IOMMU state and the command
 * line under the machine's root. Missing pieces leave UNKNOWN values and a warning. */
int kernel_info_read(const struct machine *m, struct kernel_info *out);

/* Parses kernel config text (the .config format); exposed for tests and the fuzzer. */
void kconfig_parse(const char *text, size_t len, struct kernel_info *out);

const char *kconfig_value_str(enum kconfig_value v);
const char *iommu_mode_str(enum iommu_mode m);
