/* powercap.h — a GPU's power cap read fresh and written: amdgpu's hwmon power1_cap (microwatts,
 * under the machine's root, so tests write fixture trees) or NVML's power management limit. */
#pragma once

#include <stddef.h>

#include "machine.h"

/* The cap in force now, in watts. -ENODATA when the GPU has no cap to read (an APU, no hwmon). */
int powercap_read(const struct machine *m, const struct gpu_info *g, double *cap_w);

/* 0 when cap_w is within the card's discovered [min, max]; else -ERANGE (or -ENOTSUP: no range
 * reported) with the limits in err. */
int powercap_check_range(const struct gpu_info *g, double cap_w, char *err, size_t err_size);

/* Sets the cap. -ERANGE (with the card's limits in err) outside [power_cap_min_w, power_cap_max_w]
 * as discovered; -ENOTSUP where the GPU has no writable cap; else 0 or the write's errno, described
 * in err naming the file or NVML call. */
int powercap_write(const struct machine *m, const struct gpu_info *g, double cap_w, char *err, size_t err_size);
