/* gpu.h — what discovery knows about one GPU, and the table each vendor implements.
 * Every figure that could not be read is NAN (doubles), 0 (byte counts) or -1 (ints), so output
 * can print null instead of a made-up value. */
#pragma once

#include <stdbool.h>
#include <stdint.h>
#include <stddef.h>
#include <sys/types.h>

struct machine;

enum gpu_vendor_id {
        GPU_VENDOR_AMD,
        GPU_VENDOR_NVIDIA,
};

enum gpu_health {
        GPU_HEALTH_OK,
        GPU_HEALTH_DEGRADED,
        GPU_HEALTH_FAILED,
        GPU_HEALTH_RECOVERING,
};

#define GPU_PCI_LEN 16          /* "0000:03:00.0" + NUL, padded */
#define GPU_MAX_DEV_NODES 6

struct gpu_dev_node {
        char path[40];                  /* "/dev/dri/renderD128" */
        unsigned major, minor;
};

struct gpu_info {
        int index;                      /* position in the machine's list, stable for one discovery */
        enum gpu_vendor_id vendor;
        char pci[GPU_PCI_LEN];          /* domain:bus:dev.fn, lower-case hex */
        char name[128];                 /* marketing name, e.g. "AMD Instinct MI60 / MI50" */
        char arch[32];                  /* "gfx906", "gfx1100", "sm_90" */
        char unique_id[80];             /* amdgpu unique_id (hex) or NVIDIA UUID ("GPU-...") */
        uint32_t pci_vendor, pci_device, pci_revision;

        /* AMD: KFD node and DRM nodes; empty / -1 on NVIDIA */
        int kfd_node;                   /* topology node number, -1 if none */
        uint32_t kfd_gpu_id;
        uint64_t hive_id;               /* XGMI hive, 0 if none */
        char render_node[32];           /* "/dev/dri/renderD128" */
        char card_node[32];             /* "/dev/dri/card0" */

        /* Every device node a process needs to use this GPU (render, card and /dev/kfd; or
         * /dev/nvidiaN, nvidiactl, nvidia-uvm), with numbers from sysfs "dev" files and
         * /proc/devices: what container passthrough must allow. */
        struct gpu_dev_node dev_nodes[GPU_MAX_DEV_NODES];
        size_t n_dev_nodes;

        uint64_t vram_total_bytes, vram_used_bytes;
        uint64_t vis_vram_total_bytes;  /* CPU-visible part of VRAM (BAR); == vram on large BAR */
        uint64_t gtt_total_bytes, gtt_used_bytes;
        bool is_apu;

        double power_w;                 /* current draw */
        double power_cap_w, power_cap_min_w, power_cap_max_w, power_cap_default_w;
        double temp_c;                  /* edge (AMD) / core (NVIDIA) */

        int pcie_gen, pcie_width;       /* current link; -1 if unknown */
        int pcie_max_gen, pcie_max_width;
        int numa_node;                  /* -1 if the platform does not say */

        char sysfs_dir[256];            /* PCI device dir relative to root: "sys/devices/pci0000:00/..." */
        char hwmon_dir[320];            /* relative to root, "" if none */

        enum gpu_health health;
};

/* Link between two GPUs of one machine, from the topology pass. */
enum link_type {
        LINK_NONE,
        LINK_PCIE,
        LINK_XGMI,
        LINK_NVLINK,
};

#define LINK_MAX_REASONS 8
#define LINK_REASON_LEN 200

struct gpu_link {
        int a, b;                       /* GPU indices, a < b */
        enum link_type type;
        bool has_p2p;
        int hops;                       /* -1 if unknown */
        double bandwidth_gbps;          /* GB/s (bytes), NAN if unknown */
        size_t n_reasons;               /* why P2P is not possible; empty when has_p2p */
        char reasons[LINK_MAX_REASONS][LINK_REASON_LEN];
};

/* One vendor's discovery. discover() appends the GPUs it finds with machine_add_gpu(); it returns
 * 0 when nothing of this vendor is present (not an error), a negative errno only when the whole
 * vendor pass could not run. Problems with one GPU or one file are warnings, never fatal.
 * link() fills the pair's link when both GPUs belong to this vendor; it returns -ENOENT to let
 * the topology pass fall back to its generic PCIe answer. */
struct gpu_vendor {
        const char *name;
        int (*discover)(struct machine *m);
        int (*link)(const struct machine *m, const struct gpu_info *a, const struct gpu_info *b,
                    struct gpu_link *out);
        void (*release)(struct machine *m);     /* frees what discover() kept in the machine */
};

extern const struct gpu_vendor gpu_vendor_amd;
extern const struct gpu_vendor gpu_vendor_nvidia;

const char *gpu_vendor_str(enum gpu_vendor_id v);
const char *gpu_health_str(enum gpu_health h);
const char *link_type_str(enum link_type t);

/* Sets every field to its "unknown" value. */
void gpu_info_init(struct gpu_info *g);

/* GB/s of a PCIe link after line coding; NAN for an unknown generation or width. */
double pcie_link_gbps(int gen, int width);

/* Appends a device node; extra nodes beyond GPU_MAX_DEV_NODES are dropped. */
void gpu_add_dev_node(struct gpu_info *g, const char *path, unsigned major, unsigned minor);

/* Appends a reason to a link (formatted, truncated to LINK_REASON_LEN); extra reasons are dropped. */
void link_add_reason(struct gpu_link *l, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
