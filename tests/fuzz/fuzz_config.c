/* libFuzzer target: rigd.conf, which an administrator (or a package) writes. config_load_file takes
 * a path, so each input is written to one temporary file, made once per process. Whatever the
 * file says, the groups that come out must be group names: the defaults or a value that passed. */
#include <fcntl.h>
#include <math.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "config.h"
#include "log.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static char path[64];
static int fd = -1;

static void remove_file(void)
{
        if (fd >= 0)
                unlink(path);
}

static bool is_group_name(const char *v, size_t size)
{
        size_t len = strnlen(v, size);
        if (len == 0 || len == size)
                return false;
        for (const char *p = v; *p; p++)
                if (!(*p == '-' || *p == '_' || *p == '.' || (*p >= '0' && *p <= '9') || (*p >= 'a' && *p <= 'z') ||
                      (*p >= 'A' && *p <= 'Z')))
                        return false;
        return true;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
        if (fd < 0) {
                snprintf(path, sizeof(path), "/tmp/rig-fuzz-config-%d-XXXXXX", (int)getpid());
                fd = mkstemp(path);
                if (fd < 0)
                        abort();
                atexit(remove_file);
                log_set_max_level(LOG_LEVEL_ERROR);     /* every bad line warns: keep the output readable */
        }
        if (ftruncate(fd, 0) < 0 || pwrite(fd, data, size, 0) != (ssize_t)size)
                abort();

        struct rigd_config c;
        config_init_defaults(&c);
        int r = config_load_file(&c, path);
        if (r < 0)
                abort();                /* the file is there: only a bad line count can come back */
        if (!is_group_name(c.lease_group, sizeof(c.lease_group)) || !is_group_name(c.admin_group, sizeof(c.admin_group)))
                abort();
        /* What power caps read: watts are NAN (unset) or positive and bounded, selectors non-empty. */
        if (c.n_gpus > CONFIG_MAX_GPU_SECTIONS || !(c.power_check_s >= 0.05 && c.power_check_s <= 3600))
                abort();
        for (size_t i = 0; i < c.n_gpus; i++) {
                const struct config_gpu *g = &c.gpus[i];
                size_t len = strnlen(g->selector, sizeof(g->selector));
                if (len == 0 || len == sizeof(g->selector))
                        abort();
                if (!(isnan(g->cap.w) || (g->cap.w > 0 && g->cap.w <= 1e6)) ||
                    !(isnan(g->idle_cap.w) || (g->idle_cap.w > 0 && g->idle_cap.w <= 1e6)))
                        abort();
        }
        return 0;
}
