/* powercap.c — reading and writing one GPU's power cap. Writes are range-checked here, before the
 * kernel sees them: amdgpu answers an out-of-range value with a bare EINVAL. */
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "nvidia.h"
#include "powercap.h"
#include "sysfs.h"
#include "util.h"

static int hwmon_cap_path(const struct machine *m, const struct gpu_info *g, char *rel, size_t rel_size,
                          char *path, size_t path_size)
{
        if (!g->hwmon_dir[0])
                return -ENODATA;
        snprintf(rel, rel_size, "%s/power1_cap", g->hwmon_dir);
        return machine_path(m, rel, path, path_size) ? 0 : -ENAMETOOLONG;
}

int powercap_read(const struct machine *m, const struct gpu_info *g, double *cap_w)
{
        if (g->vendor == GPU_VENDOR_NVIDIA)
                return nvidia_power_limit_read(m, g, cap_w);
        char rel[512], path[4096];
        int r = hwmon_cap_path(m, g, rel, sizeof(rel), path, sizeof(path));
        if (r < 0)
                return r;
        uint64_t uw;
        r = sysfs_read_u64_optional(m, rel, &uw);
        if (r < 0)
                return r == -ENOENT ? -ENODATA : r;
        *cap_w = (double)uw / 1e6;
        return 0;
}

static int write_hwmon(const struct machine *m, const struct gpu_info *g, double cap_w, char *err, size_t err_size)
{
        char rel[512], path[4096];
        int r = hwmon_cap_path(m, g, rel, sizeof(rel), path, sizeof(path));
        if (r < 0) {
                snprintf(err, err_size, "GPU %s has no hwmon power cap", g->pci);
                return -ENOTSUP;
        }
        char value[32];
        int len = snprintf(value, sizeof(value), "%llu\n", (unsigned long long)llround(cap_w * 1e6));
        int fd = open(path, O_WRONLY | O_CLOEXEC | O_TRUNC);
        if (fd < 0) {
                r = -errno;
                snprintf(err, err_size, "opening %s: %s", path, strerror(-r));
                return r;
        }
        ssize_t n = write(fd, value, (size_t)len);
        r = n == len ? 0 : n < 0 ? -errno : -EIO;
        if (close(fd) < 0 && r == 0)
                r = -errno;
        if (r < 0)
                snprintf(err, err_size, "writing %s to %s: %s", value, path, strerror(-r));
        return r;
}

int powercap_check_range(const struct gpu_info *g, double cap_w, char *err, size_t err_size)
{
        if (isnan(g->power_cap_min_w) || isnan(g->power_cap_max_w)) {
                snprintf(err, err_size, "GPU %s reports no power cap range: its cap is not changed", g->pci);
                return -ENOTSUP;
        }
        if (!(cap_w >= g->power_cap_min_w && cap_w <= g->power_cap_max_w)) {
                snprintf(err, err_size, "%.0f W is outside GPU %s's power cap range of %.0f-%.0f W", cap_w, g->pci,
                         g->power_cap_min_w, g->power_cap_max_w);
                return -ERANGE;
        }
        return 0;
}

int powercap_write(const struct machine *m, const struct gpu_info *g, double cap_w, char *err, size_t err_size)
{
        int r = powercap_check_range(g, cap_w, err, err_size);
        if (r < 0)
                return r;
        if (g->vendor == GPU_VENDOR_NVIDIA)
                return nvidia_power_limit_write(m, g, cap_w, err, err_size);
        return write_hwmon(m, g, cap_w, err, err_size);
}
