/* log.h — one logging interface for the daemon side: levelled messages to stderr, or to the journal
 * with structured fields when systemd connected stderr to it (rigd under systemd). The *_errno forms return -abs(err) so a caller can write
 * `return log_warning_errno(r, "reading %s", path);`. */
#pragma once

#include <stdarg.h>
#include <stdbool.h>

enum log_level { LOG_LEVEL_ERROR, LOG_LEVEL_WARNING, LOG_LEVEL_INFO, LOG_LEVEL_DEBUG };

void log_set_max_level(enum log_level level);

/* Sends messages to the journal (native protocol, with PRIORITY and the RIG_ fields) when stderr is
 * the journal stream systemd set up ($JOURNAL_STREAM names its device and inode). Returns whether. */
bool log_open_journal_if_connected(void);

/* A message about one GPU: RIG_GPU=pci (and RIG_FAULT=kind when not NULL) in the journal; on stderr
 * the same text as any message. Returns 0. */
int log_gpu(enum log_level level, const char *gpu_pci, const char *fault_kind, const char *fmt, ...)
        __attribute__((format(printf, 4, 5)));
enum log_level log_get_max_level(void);

/* Returns -abs(err) when err != 0, else 0; appends ": strerror(err)" when err != 0. */
int log_full_errno(enum log_level level, int err, const char *fmt, ...)
        __attribute__((format(printf, 3, 4)));

#define log_error(...)   log_full_errno(LOG_LEVEL_ERROR, 0, __VA_ARGS__)
#define log_warning(...) log_full_errno(LOG_LEVEL_WARNING, 0, __VA_ARGS__)
#define log_info(...)    log_full_errno(LOG_LEVEL_INFO, 0, __VA_ARGS__)
#define log_debug(...)   log_full_errno(LOG_LEVEL_DEBUG, 0, __VA_ARGS__)
#define log_error_errno(e, ...)   log_full_errno(LOG_LEVEL_ERROR, (e), __VA_ARGS__)
#define log_warning_errno(e, ...) log_full_errno(LOG_LEVEL_WARNING, (e), __VA_ARGS__)
#define log_debug_errno(e, ...)   log_full_errno(LOG_LEVEL_DEBUG, (e), __VA_ARGS__)
