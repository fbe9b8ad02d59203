/* config.h — rigd's configuration: INI files (DESIGN §4.4), /etc/rig/rigd.conf and then
 * /etc/rig/rigd.conf.d/NAME.conf in name order, each later value replacing an earlier one. */
#pragma once

#define CONFIG_GROUP_LEN 64

struct rigd_config {
        char lease_group[CONFIG_GROUP_LEN];     /* [rigd] lease_group: may take leases ("render") */
        char admin_group[CONFIG_GROUP_LEN];     /* [rigd] admin_group: may also change power ("rig-admin") */
};

void config_init_defaults(struct rigd_config *c);

/* Reads one file into c. A missing file is not an error (-ENOENT is returned, nothing logged);
 * a bad line is a warning naming file:line and the rest of the file still applies. Returns the
 * number of bad lines, or a negative errno when the file could not be read. */
int config_load_file(struct rigd_config *c, const char *path);

/* The default set under root: root/etc/rig/rigd.conf, then root/etc/rig/rigd.conf.d/NAME.conf.
 * With explicit_path (--config) only that file, which must exist. */
int config_load(struct rigd_config *c, const char *root, const char *explicit_path);
