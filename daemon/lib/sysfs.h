/* sysfs.h — reading single-value kernel files (sysfs, procfs) under a machine's root.
 * The readers are strict: a value with trailing garbage, an empty file, a value cut short (no
 * final newline, which the kernel always writes) or a number out of range is an error, reported as a warning that names the file, because a half-parsed number is worse
 * than none. A missing file is -ENOENT; callers decide whether that is worth a warning. */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct machine;

/* Reads the first line of root/rel into buf (newline stripped). -ENOENT, -EIO, -EFBIG... */
int sysfs_read_line(const struct machine *m, const char *rel, char *buf, size_t size);

/* Reads a whole small file (at most max bytes) into a NUL-terminated malloc'd buffer. */
int sysfs_read_file(const struct machine *m, const char *rel, size_t max, char **out, size_t *len);

/* Decimal or 0x-hex unsigned / signed integer, surrounding whitespace allowed. Garbage warns. */
int sysfs_read_u64(const struct machine *m, const char *rel, uint64_t *out);
int sysfs_read_s64(const struct machine *m, const char *rel, int64_t *out);

/* Like sysfs_read_u64, but a missing file is silent (-ENOENT returned, no warning): for
 * attributes that only some chips or kernels have. */
int sysfs_read_u64_optional(const struct machine *m, const char *rel, uint64_t *out);

/* Parses a whole string as an unsigned integer (base 10, or 16 with 0x); false on garbage. */
bool parse_u64(const char *s, uint64_t *out);
bool parse_s64(const char *s, int64_t *out);

/* "226:128" → dev_t; false on garbage. */
bool parse_devnum(const char *s, unsigned *major, unsigned *minor);

/* Looks up key in KFD-style "key value" lines; false if absent or not a number. */
bool kv_get_u64(const char *text, const char *key, uint64_t *out);

/* Resolves the symlink root/rel to a path relative to root (no leading slash) in buf.
 * Targets that would leave the root are refused (-EXDEV). */
int sysfs_resolve_link(const struct machine *m, const char *rel, char *buf, size_t size);

/* The major number /proc/devices gives a character driver ("kfd", "nvidia-uvm"); -ENOENT if absent. */
int proc_devices_major(const struct machine *m, const char *driver, unsigned *major);

/* Parses /proc/devices text; exposed for tests and the fuzzer. */
int proc_devices_find(const char *text, const char *driver, unsigned *major);
