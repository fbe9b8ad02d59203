/* kfd.c — reading the amdkfd topology: node properties, io_links and p2p_links. */
#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kfd.h"
#include "log.h"
#include "machine.h"
#include "sysfs.h"
#include "util.h"

#define KFD_TOPOLOGY "sys/class/kfd/kfd/topology"
#define KFD_MAX_NODES 256
#define KFD_MAX_LINKS 256
#define KFD_PROPERTIES_MAX 8192

void kfd_gfx_name(uint32_t v, char *buf, size_t size)
{
        unsigned major = v / 10000, minor = (v / 100) % 100, stepping = v % 100;
        snprintf(buf, size, "gfx%u%u%x", major, minor, stepping);
}

bool kfd_is_apu(const struct kfd_node *n)
{
        /* Integrated GPUs by gfx_target_version: Carrizo, Raven/Picasso, Renoir, Cezanne, Van Gogh,
         * Rembrandt, Raphael/Granite Ridge, Mendocino, Phoenix, Strix Point, Strix Halo, Krackan. */
        static const uint32_t apu_targets[] = {
                80001, 90002, 90009, 90012, 100303, 100305, 100306, 100307, 110003, 110004, 110500, 110501,
                110502, 110503,
        };
        if (n->cpu_cores_count > 0 && n->simd_count > 0)
                return true;
        for (size_t i = 0; i < sizeof(apu_targets) / sizeof(apu_targets[0]); i++)
                if (n->gfx_target_version == apu_targets[i])
                        return true;
        return false;
}

static void pci_from_location(uint64_t domain, uint64_t location_id, char *buf, size_t size)
{
        unsigned bus = (location_id >> 8) & 0xff, devfn = location_id & 0xff;
        snprintf(buf, size, "%04x:%02x:%02x.%x", (unsigned)(domain & 0xffff), bus, devfn >> 3, devfn & 7);
}

int kfd_parse_node_properties(const char *text, struct kfd_node *out)
{
        uint64_t v;
        out->gpu_id = 0;        /* from gpu_id file; properties lack it */
        out->gfx_target_version = kv_get_u64(text, "gfx_target_version", &v) ? (uint32_t)v : 0;
        out->cpu_cores_count = kv_get_u64(text, "cpu_cores_count", &v) ? v : 0;
        out->simd_count = kv_get_u64(text, "simd_count", &v) ? v : 0;
        out->hive_id = kv_get_u64(text, "hive_id", &v) ? v : 0;
        out->unique_id = kv_get_u64(text, "unique_id", &v) ? v : 0;
        out->local_mem_size = kv_get_u64(text, "local_mem_size", &v) ? v : 0;
        out->drm_render_minor = kv_get_u64(text, "drm_render_minor", &v) && v < 1u << 20 ? (int)v : -1;

        out->pci[0] = '\0';
        uint64_t location, domain = 0;
        if (out->simd_count > 0) {
                if (!kv_get_u64(text, "location_id", &location))
                        return -EINVAL;         /* a GPU node we cannot place */
                kv_get_u64(text, "domain", &domain);    /* absent on old kernels: domain 0 */
                pci_from_location(domain, location, out->pci, sizeof(out->pci));
        }
        return 0;
}

static int read_links(const struct machine *m, int node, const char *kind,
                      struct kfd_link **out, size_t *n_out)
{
        char rel[PATH_MAX], path[PATH_MAX];
        snprintf(rel, sizeof(rel), KFD_TOPOLOGY "/nodes/%d/%s", node, kind);
        if (!machine_path(m, rel, path, sizeof(path)))
                return -ENAMETOOLONG;
        _cleanup_closedir_ DIR *d = opendir(path);
        if (!d)
                return -errno;

        for (struct dirent *e; (e = readdir(d)); ) {
                uint64_t idx;
                if (!parse_u64(e->d_name, &idx))
                        continue;
                if (*n_out >= KFD_MAX_LINKS)
                        return log_warning_errno(E2BIG, "reading %s: more than %d links", path, KFD_MAX_LINKS);

                char lrel[PATH_MAX];
                snprintf(lrel, sizeof(lrel), "%s/%s/properties", rel, e->d_name);
                _cleanup_free_ char *text = NULL;
                int r = sysfs_read_file(m, lrel, KFD_PROPERTIES_MAX, &text, NULL);
                if (r < 0) {
                        log_warning_errno(r, "reading %s/%s", machine_prefix(m), lrel);
                        continue;
                }
                struct kfd_link l = { 0 };
                uint64_t type, to, weight, bw = 0;
                if (!kv_get_u64(text, "type", &type) || !kv_get_u64(text, "node_to", &to) ||
                    !kv_get_u64(text, "weight", &weight) || to > KFD_MAX_NODES) {
                        log_warning("reading %s/%s: no type, node_to or weight; ignoring this link",
                                    machine_prefix(m), lrel);
                        continue;
                }
                kv_get_u64(text, "max_bandwidth", &bw);
                l.type = (uint32_t)type;
                l.node_to = (int)to;
                l.weight = (uint32_t)weight;
                l.max_bandwidth_mbs = bw;

                struct kfd_link *links = realloc(*out, (*n_out + 1) * sizeof(*links));
                if (!links)
                        return -ENOMEM;
                links[(*n_out)++] = l;
                *out = links;
        }
        return 0;
}

static int read_node(const struct machine *m, int id, struct kfd_node *out)
{
        char rel[PATH_MAX];
        memset(out, 0, sizeof(*out));
        out->id = id;
        out->drm_render_minor = -1;

        snprintf(rel, sizeof(rel), KFD_TOPOLOGY "/nodes/%d/properties", id);
        _cleanup_free_ char *text = NULL;
        int r = sysfs_read_file(m, rel, KFD_PROPERTIES_MAX, &text, NULL);
        if (r < 0)
                return log_warning_errno(r, "reading %s/%s", machine_prefix(m), rel);
        r = kfd_parse_node_properties(text, out);
        if (r < 0)
                return log_warning_errno(r, "reading %s/%s: a GPU node without location_id", machine_prefix(m), rel);

        snprintf(rel, sizeof(rel), KFD_TOPOLOGY "/nodes/%d/gpu_id", id);
        uint64_t gpu_id;
        r = sysfs_read_u64(m, rel, &gpu_id);
        if (r < 0)
                return r;       /* warned; without gpu_id the node cannot be addressed */
        out->gpu_id = (uint32_t)gpu_id;

        r = read_links(m, id, "io_links", &out->io_links, &out->n_io_links);
        if (r == -ENOMEM)
                return r;
        out->has_io_links = r == 0;
        if (r < 0)
                log_warning_errno(r, "reading %s/" KFD_TOPOLOGY "/nodes/%d/io_links", machine_prefix(m), id);

        r = read_links(m, id, "p2p_links", &out->p2p_links, &out->n_p2p_links);
        if (r == -ENOMEM)
                return r;
        return 0;       /* p2p_links is absent on kernels without CONFIG_HSA_AMD_P2P: normal */
}

static void node_free(struct kfd_node *n)
{
        free(n->io_links);
        free(n->p2p_links);
}

static int compare_nodes(const void *a, const void *b)
{
        return ((const struct kfd_node *)a)->id - ((const struct kfd_node *)b)->id;
}

int kfd_topology_read(const struct machine *m, struct kfd_topology *out)
{
        memset(out, 0, sizeof(*out));
        char path[PATH_MAX];
        if (!machine_path(m, KFD_TOPOLOGY "/nodes", path, sizeof(path)))
                return -ENAMETOOLONG;
        _cleanup_closedir_ DIR *d = opendir(path);
        if (!d)
                return -errno;

        for (struct dirent *e; (e = readdir(d)); ) {
                uint64_t id;
                if (!parse_u64(e->d_name, &id) || id >= KFD_MAX_NODES)
                        continue;
                struct kfd_node node;
                int r = read_node(m, (int)id, &node);
                if (r == -ENOMEM) {
                        node_free(&node);
                        kfd_topology_free(out);
                        return r;
                }
                if (r < 0) {
                        node_free(&node);
                        continue;
                }
                struct kfd_node *nodes = realloc(out->nodes, (out->n_nodes + 1) * sizeof(*nodes));
                if (!nodes) {
                        node_free(&node);
                        kfd_topology_free(out);
                        return -ENOMEM;
                }
                nodes[out->n_nodes++] = node;
                out->nodes = nodes;
        }
        if (out->n_nodes > 0)
                qsort(out->nodes, out->n_nodes, sizeof(*out->nodes), compare_nodes);
        return 0;
}

void kfd_topology_free(struct kfd_topology *t)
{
        if (!t)
                return;
        for (size_t i = 0; i < t->n_nodes; i++)
                node_free(&t->nodes[i]);
        free(t->nodes);
        t->nodes = NULL;
        t->n_nodes = 0;
}

const struct kfd_node *kfd_find_node(const struct kfd_topology *t, int id)
{
        for (size_t i = 0; i < t->n_nodes; i++)
                if (t->nodes[i].id == id)
                        return &t->nodes[i];
        return NULL;
}

const struct kfd_node *kfd_find_gpu_by_pci(const struct kfd_topology *t, const char *pci)
{
        for (size_t i = 0; i < t->n_nodes; i++)
                if (t->nodes[i].gpu_id != 0 && streq(t->nodes[i].pci, pci))
                        return &t->nodes[i];
        return NULL;
}

const struct kfd_link *kfd_find_link(const struct kfd_node *from, int to, bool is_p2p)
{
        const struct kfd_link *links = is_p2p ? from->p2p_links : from->io_links;
        size_t n = is_p2p ? from->n_p2p_links : from->n_io_links;
        for (size_t i = 0; i < n; i++)
                if (links[i].node_to == to)
                        return &links[i];
        return NULL;
}
