/* kfd.h — the amdkfd topology (/sys/class/kfd/kfd/topology): CPU and GPU nodes, and the links
 * the kernel reports between them (io_links always, p2p_links only on P2P-capable kernels). */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct machine;

enum kfd_link_type {
        KFD_LINK_PCIE = 2,      /* CRAT_IOLINK_TYPE_PCIEXPRESS */
        KFD_LINK_XGMI = 11,     /* CRAT_IOLINK_TYPE_XGMI */
};

#define KFD_XGMI_HOP_WEIGHT 15  /* kernel: weight = 15 × hops for XGMI */

struct kfd_link {
        uint32_t type;
        int node_to;
        uint32_t weight;
        uint64_t max_bandwidth_mbs;     /* MB/s as the kernel reports it, 0 if unknown */
};

struct kfd_node {
        int id;                         /* the directory number */
        uint32_t gpu_id;                /* 0 for CPU-only nodes */
        char pci[16];                   /* from domain + location_id; "" for CPU nodes */
        uint32_t gfx_target_version;
        uint64_t cpu_cores_count, simd_count;
        uint64_t hive_id;
        uint64_t unique_id;
        uint64_t local_mem_size;
        int drm_render_minor;           /* -1 if absent */
        struct kfd_link *io_links;
        size_t n_io_links;
        struct kfd_link *p2p_links;
        size_t n_p2p_links;
        bool has_io_links;              /* the io_links directory was readable */
};

struct kfd_topology {
        struct kfd_node *nodes;
        size_t n_nodes;
};

/* Reads every node under root. -ENOENT when there is no KFD (no amdkfd loaded); a node that
 * cannot be read is skipped with a warning naming the file. */
int kfd_topology_read(const struct machine *m, struct kfd_topology *out);
void kfd_topology_free(struct kfd_topology *t);

const struct kfd_node *kfd_find_node(const struct kfd_topology *t, int id);
const struct kfd_node *kfd_find_gpu_by_pci(const struct kfd_topology *t, const char *pci);

/* The link from node `from` to node `to` in io_links (is_p2p false) or p2p_links (true). */
const struct kfd_link *kfd_find_link(const struct kfd_node *from, int to, bool is_p2p);

/* 90006 → "gfx906", 90010 → "gfx90a", 110000 → "gfx1100", 110501 → "gfx1151". */
void kfd_gfx_name(uint32_t gfx_target_version, char *buf, size_t size);

/* Whether a GPU node is an APU's integrated GPU. KFD has no APU flag (ROCm asks the driver through
 * the DRM ioctl): older kernels put the CPU cores in the GPU's node; newer ones give the iGPU a
 * node of its own, known here by its gfx target. */
bool kfd_is_apu(const struct kfd_node *n);

/* Parses a node's "properties" text; exposed for the fuzzer and unit tests. */
int kfd_parse_node_properties(const char *text, struct kfd_node *out);
