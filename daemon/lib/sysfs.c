/* sysfs.c — strict readers for single-value kernel files under a machine's root. */
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "log.h"
#include "machine.h"
#include "sysfs.h"
#include "util.h"

int sysfs_read_file(const struct machine *m, const char *rel, size_t max, char **out, size_t *len)
{
        char path[PATH_MAX];
        if (!machine_path(m, rel, path, sizeof(path)))
                return -ENAMETOOLONG;

        _cleanup_close_ int fd = open(path, O_RDONLY | O_CLOEXEC);
        if (fd < 0)
                return -errno;

        _cleanup_free_ char *buf = malloc(max + 1);
        if (!buf)
                return -ENOMEM;

        size_t n = 0;
        while (n < max) {
                ssize_t k = read(fd, buf + n, max - n);
                if (k < 0) {
                        if (errno == EINTR)
                                continue;
                        return -errno;  /* sysfs answers EIO, ENODEV when the device is gone */
                }
                if (k == 0)
                        break;
                n += (size_t)k;
        }
        buf[n] = '\0';
        *out = buf;
        buf = NULL;
        if (len)
                *len = n;
        return 0;
}

int sysfs_read_line(const struct machine *m, const char *rel, char *buf, size_t size)
{
        _cleanup_free_ char *text = NULL;
        int r = sysfs_read_file(m, rel, 4096, &text, NULL);
        if (r < 0)
                return r;
        text[strcspn(text, "\n")] = '\0';
        if (!strscpy(buf, text, size))
                return -EFBIG;
        return 0;
}

static const char *skip_space(const char *s)
{
        while (isspace((unsigned char)*s))
                s++;
        return s;
}

static bool only_space(const char *s)
{
        return *skip_space(s) == '\0';
}

bool parse_u64(const char *s, uint64_t *out)
{
        s = skip_space(s);
        if (!isdigit((unsigned char)*s))
                return false;   /* strtoull would accept "-1" and wrap it */
        int base = (s[0] == '0' && (s[1] == 'x' || s[1] == 'X')) ? 16 : 10;
        char *end;
        errno = 0;
        unsigned long long v = strtoull(s, &end, base);
        if (errno != 0 || end == s || !only_space(end))
                return false;
        if (base == 16 && end == s + 2)
                return false;   /* a bare "0x" */
        *out = v;
        return true;
}

bool parse_s64(const char *s, int64_t *out)
{
        s = skip_space(s);
        char *end;
        errno = 0;
        long long v = strtoll(s, &end, 10);
        if (errno != 0 || end == s || !only_space(end))
                return false;
        *out = v;
        return true;
}

bool parse_devnum(const char *s, unsigned *major, unsigned *minor)
{
        unsigned a, b;
        int used = 0;
        if (sscanf(s, "%u:%u%n", &a, &b, &used) != 2 || !only_space(s + used))
                return false;
        *major = a;
        *minor = b;
        return true;
}

static int read_number(const struct machine *m, const char *rel, bool is_signed, bool warn_missing,
                       uint64_t *u, int64_t *s)
{
        _cleanup_free_ char *text = NULL;
        size_t len = 0;
        int r = sysfs_read_file(m, rel, 128, &text, &len);
        if (r == -ENOENT && !warn_missing)
                return r;
        if (r < 0)
                return log_warning_errno(r, "reading %s/%s", machine_prefix(m), rel);

        /* The kernel ends every value with a newline: without one the file was cut short
         * ("4" of "45000"), and a cut number is a wrong number. */
        if (len == 0) {
                log_warning("reading %s/%s: the file is empty; ignoring this value", machine_prefix(m), rel);
                return -EINVAL;
        }
        if (text[len - 1] != '\n') {
                log_warning("reading %s/%s: \"%s\" is truncated (no newline at the end); ignoring this value",
                            machine_prefix(m), rel, text);
                return -EINVAL;
        }
        text[len - 1] = '\0';
        bool ok = is_signed ? parse_s64(text, s) : parse_u64(text, u);
        if (!ok) {
                log_warning("reading %s/%s: \"%s\" is not a number; ignoring this value", machine_prefix(m), rel, text);
                return -EINVAL;
        }
        return 0;
}

int sysfs_read_u64(const struct machine *m, const char *rel, uint64_t *out)
{
        return read_number(m, rel, false, true, out, NULL);
}

int sysfs_read_u64_optional(const struct machine *m, const char *rel, uint64_t *out)
{
        return read_number(m, rel, false, false, out, NULL);
}

int sysfs_read_s64(const struct machine *m, const char *rel, int64_t *out)
{
        return read_number(m, rel, true, true, NULL, out);
}

bool kv_get_u64(const char *text, const char *key, uint64_t *out)
{
        size_t klen = strlen(key);
        for (const char *line = text; line && *line; ) {
                const char *eol = strchr(line, '\n');
                size_t len = eol ? (size_t)(eol - line) : strlen(line);
                if (len > klen && strncmp(line, key, klen) == 0 && line[klen] == ' ') {
                        char value[64];
                        size_t vlen = len - klen - 1;
                        if (vlen >= sizeof(value))
                                return false;
                        memcpy(value, line + klen + 1, vlen);
                        value[vlen] = '\0';
                        return parse_u64(value, out);
                }
                line = eol ? eol + 1 : NULL;
        }
        return false;
}

int sysfs_resolve_link(const struct machine *m, const char *rel, char *buf, size_t size)
{
        char path[PATH_MAX], real_root[PATH_MAX], real[PATH_MAX];
        if (!machine_path(m, rel, path, sizeof(path)))
                return -ENAMETOOLONG;
        if (!realpath(m->root, real_root))
                return -errno;
        if (!realpath(path, real))
                return -errno;

        const char *inside;
        if (streq(real_root, "/")) {
                inside = real + 1;
        } else {
                size_t n = strlen(real_root);
                if (strncmp(real, real_root, n) != 0 || real[n] != '/')
                        return -EXDEV;
                inside = real + n + 1;
        }
        if (!strscpy(buf, inside, size))
                return -ENAMETOOLONG;
        return 0;
}

int proc_devices_find(const char *text, const char *driver, unsigned *major)
{
        bool is_char = false;
        for (const char *line = text; line && *line; ) {
                const char *eol = strchr(line, '\n');
                size_t len = eol ? (size_t)(eol - line) : strlen(line);
                char buf[128];
                if (len < sizeof(buf)) {
                        memcpy(buf, line, len);
                        buf[len] = '\0';
                        unsigned num;
                        char name[64];
                        if (streq(buf, "Character devices:"))
                                is_char = true;
                        else if (streq(buf, "Block devices:"))
                                is_char = false;
                        else if (is_char && sscanf(buf, "%u %63s", &num, name) == 2 && streq(name, driver)) {
                                *major = num;
                                return 0;
                        }
                }
                line = eol ? eol + 1 : NULL;
        }
        return -ENOENT;
}

int proc_devices_major(const struct machine *m, const char *driver, unsigned *major)
{
        _cleanup_free_ char *text = NULL;
        int r = sysfs_read_file(m, "proc/devices", 65536, &text, NULL);
        if (r < 0)
                return r;
        return proc_devices_find(text, driver, major);
}
