/* The live discovery path (libudev enumeration, root "/") run inside a umockdev testbed holding a
 * fixture machine's /sys must find exactly what the --root path finds reading the fixture tree.
 * Run under umockdev-wrapper (its preload library redirects /sys and /dev to the testbed). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <umockdev.h>

#include "machine.h"

static int failures;

#define EXPECT(cond, ...) do {                                                  \
        if (!(cond)) {                                                          \
                fprintf(stderr, "FAIL %s:%d: ", __FILE__, __LINE__);            \
                fprintf(stderr, __VA_ARGS__);                                   \
                fputc('\n', stderr);                                            \
                failures++;                                                     \
        }                                                                       \
} while (0)

static bool same_double(double a, double b)
{
        return (isnan(a) && isnan(b)) || a == b;
}

static void compare_gpu(const struct gpu_info *live, const struct gpu_info *root)
{
        const char *pci = root->pci;
        EXPECT(strcmp(live->pci, root->pci) == 0, "GPU %d: pci %s vs %s", root->index, live->pci, root->pci);
        EXPECT(strcmp(live->name, root->name) == 0, "%s: name '%s' vs '%s'", pci, live->name, root->name);
        EXPECT(strcmp(live->arch, root->arch) == 0, "%s: arch %s vs %s", pci, live->arch, root->arch);
        EXPECT(strcmp(live->unique_id, root->unique_id) == 0, "%s: unique_id", pci);
        EXPECT(strcmp(live->render_node, root->render_node) == 0, "%s: render %s vs %s", pci, live->render_node, root->render_node);
        EXPECT(strcmp(live->card_node, root->card_node) == 0, "%s: card node", pci);
        EXPECT(live->n_dev_nodes == root->n_dev_nodes, "%s: device node count", pci);
        for (size_t i = 0; i < root->n_dev_nodes && i < live->n_dev_nodes; i++)
                EXPECT(strcmp(live->dev_nodes[i].path, root->dev_nodes[i].path) == 0 &&
                       live->dev_nodes[i].major == root->dev_nodes[i].major &&
                       live->dev_nodes[i].minor == root->dev_nodes[i].minor, "%s: device node %zu", pci, i);
        EXPECT(strcmp(live->sysfs_dir, root->sysfs_dir) == 0, "%s: sysfs dir %s vs %s", pci, live->sysfs_dir, root->sysfs_dir);
        EXPECT(live->kfd_node == root->kfd_node && live->kfd_gpu_id == root->kfd_gpu_id, "%s: kfd node", pci);
        EXPECT(live->vram_total_bytes == root->vram_total_bytes, "%s: vram", pci);
        EXPECT(live->vram_used_bytes == root->vram_used_bytes, "%s: vram used", pci);
        EXPECT(live->gtt_total_bytes == root->gtt_total_bytes, "%s: gtt", pci);
        EXPECT(live->is_apu == root->is_apu, "%s: is_apu", pci);
        EXPECT(same_double(live->power_cap_w, root->power_cap_w), "%s: cap %f vs %f", pci, live->power_cap_w, root->power_cap_w);
        EXPECT(same_double(live->power_cap_max_w, root->power_cap_max_w), "%s: cap max", pci);
        EXPECT(same_double(live->power_w, root->power_w), "%s: power", pci);
        EXPECT(same_double(live->temp_c, root->temp_c), "%s: temp", pci);
        EXPECT(live->pcie_gen == root->pcie_gen && live->pcie_width == root->pcie_width, "%s: pcie", pci);
        EXPECT(live->numa_node == root->numa_node, "%s: numa", pci);
}

int main(int argc, char **argv)
{
        if (argc != 2) {
                fprintf(stderr, "usage: %s FIXTURE_ROOT (run under umockdev-wrapper)\n", argv[0]);
                return 2;
        }
        const char *fixture = argv[1];
        UMockdevTestbed *tb = umockdev_testbed_new();
        const char *sys_dir = umockdev_testbed_get_sys_dir(tb);

        /* Proof that /sys is redirected: otherwise the live path would read this machine's /sys. */
        char marker[4096];
        snprintf(marker, sizeof(marker), "%s/rig-testbed-marker", sys_dir);
        FILE *f = fopen(marker, "w");
        if (!f || fclose(f) != 0 || access("/sys/rig-testbed-marker", F_OK) != 0) {
                fprintf(stderr, "/sys is not redirected to the testbed: run under umockdev-wrapper\n");
                return 1;
        }

        /* The testbed's /sys becomes the fixture's sys tree: real layout, relative symlinks. */
        char cmd[8192];
        snprintf(cmd, sizeof(cmd), "cp -a '%s/sys/.' '%s/'", fixture, sys_dir);
        if (system(cmd) != 0) {
                fprintf(stderr, "copying %s/sys into the testbed failed\n", fixture);
                return 1;
        }

        struct machine *live = NULL, *root = NULL;
        int r = machine_discover("/", &live);
        EXPECT(r == 0, "live discovery under umockdev: %s", strerror(-r));
        r = machine_discover(fixture, &root);
        EXPECT(r == 0, "discovery under --root %s: %s", fixture, strerror(-r));
        if (!live || !root)
                return 1;

        EXPECT(root->n_gpus > 0, "the fixture has GPUs");
        EXPECT(live->n_gpus == root->n_gpus, "GPU count: libudev %zu, sysfs %zu", live->n_gpus, root->n_gpus);
        for (size_t i = 0; i < root->n_gpus && i < live->n_gpus; i++)
                compare_gpu(&live->gpus[i], &root->gpus[i]);

        printf("%zu GPUs compared: %s\n", root->n_gpus, failures ? "MISMATCH" : "identical");
        machine_free(live);
        machine_free(root);
        g_object_unref(tb);
        return failures ? 1 : 0;
}
