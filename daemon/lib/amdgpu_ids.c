/* amdgpu_ids.c — the libdrm amdgpu.ids name table. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "amdgpu_ids.h"
#include "machine.h"
#include "sysfs.h"
#include "util.h"

#define AMDGPU_IDS_PATH "usr/share/libdrm/amdgpu.ids"
#define AMDGPU_IDS_MAX (1u << 20)

/* "66A1,\t02,\tAMD Instinct MI60 / MI50": hex device, hex revision, name. */
static bool parse_entry(const char *line, size_t len, uint32_t *dev, uint32_t *rev, const char **name, size_t *name_len)
{
        char buf[256];
        if (len == 0 || line[0] == '#' || len >= sizeof(buf))
                return false;
        memcpy(buf, line, len);
        buf[len] = '\0';

        char *c1 = strchr(buf, ',');
        char *c2 = c1 ? strchr(c1 + 1, ',') : NULL;
        if (!c2)
                return false;
        *c1 = *c2 = '\0';
        char *end;
        unsigned long d = strtoul(buf, &end, 16);
        if (end == buf || *end)
                return false;
        unsigned long r = strtoul(c1 + 1, &end, 16);
        if (end == c1 + 1 || *end)
                return false;
        const char *n = c2 + 1;
        while (*n == ' ' || *n == '\t')
                n++;
        *dev = (uint32_t)d;
        *rev = (uint32_t)r;
        *name = line + (n - buf);
        *name_len = len - (size_t)(n - buf);
        return *name_len > 0;
}

int amdgpu_ids_lookup_text(const char *text, uint32_t device_id, uint32_t revision, char *buf, size_t size)
{
        for (const char *p = text; p && *p; ) {
                const char *eol = strchr(p, '\n');
                size_t len = eol ? (size_t)(eol - p) : strlen(p);
                if (len > 0 && p[len - 1] == '\r')
                        len--;
                uint32_t dev, rev;
                const char *name;
                size_t name_len;
                if (parse_entry(p, len, &dev, &rev, &name, &name_len) && dev == device_id && rev == revision) {
                        if (name_len >= size)
                                name_len = size - 1;
                        memcpy(buf, name, name_len);
                        buf[name_len] = '\0';
                        return 0;
                }
                p = eol ? eol + 1 : NULL;
        }
        return -ENOENT;
}

int amdgpu_ids_lookup(const struct machine *m, uint32_t device_id, uint32_t revision, char *buf, size_t size)
{
        _cleanup_free_ char *text = NULL;
        int r = sysfs_read_file(m, AMDGPU_IDS_PATH, AMDGPU_IDS_MAX, &text, NULL);
        if (r < 0)
                return r;
        return amdgpu_ids_lookup_text(text, device_id, revision, buf, size);
}
