/* machine.h — one discovery of one machine (live, or a fixture tree under --root): its GPUs,
 * the links between them, and the kernel facts that decide P2P. */
#pragma once

#include <limits.h>
#include <stdbool.h>
#include <stddef.h>

#include "gpu.h"
#include "kconfig.h"

struct machine {
        char root[PATH_MAX];            /* "/" or a fixture tree, no trailing slash except "/" */
        bool is_live;                   /* root is "/": libudev and libdrm may be used */

        struct gpu_info *gpus;
        size_t n_gpus;
        struct gpu_link *links;         /* every pair a < b, in order (0,1) (0,2) ... (1,2) ... */
        size_t n_links;

        struct kernel_info kernel;

        void *amd;                      /* vendor-private state, owned by that vendor's release() */
        void *nvidia;
};

/* Discovers everything under root. Warnings about single files go to the log; the call fails
 * only when memory runs out or root itself cannot be read. */
int machine_discover(const char *root, struct machine **out);
void machine_free(struct machine *m);

/* Appends a copy of g, sets its index, and returns the stored copy (NULL on ENOMEM). */
struct gpu_info *machine_add_gpu(struct machine *m, const struct gpu_info *g);

/* root + "/" + rel, into buf. rel has no leading slash ("sys/class/drm"). Returns buf, or NULL
 * (with errno ENAMETOOLONG) when it does not fit. */
char *machine_path(const struct machine *m, const char *rel, char *buf, size_t size);

/* Finds a GPU by selector: index ("0"), PCI address ("0000:03:00.0" or "03:00.0"), or unique id. */
const struct gpu_info *machine_find_gpu(const struct machine *m, const char *selector);

/* The link between GPUs i and j (either order), NULL if i == j or out of range. */
const struct gpu_link *machine_link(const struct machine *m, int i, int j);

/* The root as a prefix for messages: "" on the live system, else the fixture path, so that
 * "%s/%s", machine_prefix(m), rel names the real file either way. */
const char *machine_prefix(const struct machine *m);
