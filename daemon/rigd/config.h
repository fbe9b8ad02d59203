/* config.h — rigd's configuration: INI files (DESIGN §4.4), /etc/rig/rigd.conf and then
 * /etc/rig/rigd.conf.d/NAME.conf in name order, each later value replacing an earlier one. */
#pragma once

#define CONFIG_GROUP_LEN 64
#define CONFIG_MAX_GPU_SECTIONS 64
#define CONFIG_SELECTOR_LEN 80
#define CONFIG_WHERE_LEN 300

/* One value of a [gpu:SELECTOR] section, with where it was written (for messages). */
struct config_watts {
        double w;                               /* NAN when not set */
        char where[CONFIG_WHERE_LEN];           /* "/etc/rig/rigd.conf:4" */
};

/* [gpu:*], [gpu:0000:03:00.0] or [gpu:UNIQUE_ID]: the power policy of the GPUs it names. */
struct config_gpu {
        char selector[CONFIG_SELECTOR_LEN];     /* "*", a PCI address or a unique id */
        struct config_watts cap;                /* power_cap_watts */
        struct config_watts idle_cap;           /* idle_power_cap_watts: while no lease holds the GPU */
};

struct rigd_config {
        char lease_group[CONFIG_GROUP_LEN];     /* [rigd] lease_group: may take leases ("render") */
        char admin_group[CONFIG_GROUP_LEN];     /* [rigd] admin_group: may also change power ("rig-admin") */
        double power_check_s;                   /* [rigd] power_check_interval_s: caps re-verified this often */
        struct config_gpu gpus[CONFIG_MAX_GPU_SECTIONS];        /* in the order read */
        size_t n_gpus;
};

void config_init_defaults(struct rigd_config *c);

/* Reads one file into c. A missing file is not an error (-ENOENT is returned, nothing logged);
 * a bad line is a warning naming file:line and the rest of the file still applies. Returns the
 * number of bad lines, or a negative errno when the file could not be read. */
int config_load_file(struct rigd_config *c, const char *path);

/* The default set under root: root/etc/rig/rigd.conf, then root/etc/rig/rigd.conf.d/NAME.conf.
 * With explicit_path (--config) only that file, which must exist. */
int config_load(struct rigd_config *c, const char *root, const char *explicit_path);
