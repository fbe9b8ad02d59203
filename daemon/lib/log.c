/* log.c — levelled messages to stderr, or to the journal with structured fields. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <syslog.h>

#define SD_JOURNAL_SUPPRESS_LOCATION    /* CODE_FILE= of log.c would say nothing */
#include <systemd/sd-journal.h>

#include "log.h"

static enum log_level max_level = LOG_LEVEL_WARNING;
static bool is_journal;

void log_set_max_level(enum log_level level)
{
        max_level = level;
}

enum log_level log_get_max_level(void)
{
        return max_level;
}

static const char *level_prefix(enum log_level level)
{
        switch (level) {
        case LOG_LEVEL_ERROR:   return "error";
        case LOG_LEVEL_WARNING: return "warning";
        case LOG_LEVEL_INFO:    return "info";
        case LOG_LEVEL_DEBUG:   return "debug";
        }
        return "?";
}

bool log_open_journal_if_connected(void)
{
        const char *stream = getenv("JOURNAL_STREAM");
        unsigned long long dev, ino;
        struct stat st;
        is_journal = stream && sscanf(stream, "%llu:%llu", &dev, &ino) == 2 && fstat(STDERR_FILENO, &st) == 0 &&
                     st.st_dev == (dev_t)dev && st.st_ino == (ino_t)ino;
        return is_journal;
}

static int syslog_priority(enum log_level level)
{
        switch (level) {
        case LOG_LEVEL_ERROR:   return LOG_ERR;
        case LOG_LEVEL_WARNING: return LOG_WARNING;
        case LOG_LEVEL_INFO:    return LOG_INFO;
        case LOG_LEVEL_DEBUG:   return LOG_DEBUG;
        }
        return LOG_INFO;
}

static void emit(enum log_level level, const char *gpu_pci, const char *fault_kind, const char *text)
{
        if (!is_journal) {
                fprintf(stderr, "%s: %s\n", level_prefix(level), text);
                return;
        }
        /* Fields that are absent are left out, not sent empty. */
        char gpu[64], fault[64];
        snprintf(gpu, sizeof(gpu), "RIG_GPU=%s", gpu_pci ? gpu_pci : "");
        snprintf(fault, sizeof(fault), "RIG_FAULT=%s", fault_kind ? fault_kind : "");
        sd_journal_send("MESSAGE=%s", text, "PRIORITY=%d", syslog_priority(level),
                        gpu_pci ? gpu : fault_kind ? fault : NULL, gpu_pci && fault_kind ? fault : NULL, NULL);
}

int log_full_errno(enum log_level level, int err, const char *fmt, ...)
{
        int saved_errno = errno;
        err = abs(err);
        if (level <= max_level) {
                char text[2048];
                va_list ap;
                va_start(ap, fmt);
                int n = vsnprintf(text, sizeof(text), fmt, ap);
                va_end(ap);
                if (err != 0 && n >= 0 && (size_t)n < sizeof(text))
                        snprintf(text + n, sizeof(text) - (size_t)n, ": %s", strerror(err));
                emit(level, NULL, NULL, text);
        }
        errno = saved_errno;
        return -err;
}

int log_gpu(enum log_level level, const char *gpu_pci, const char *fault_kind, const char *fmt, ...)
{
        int saved_errno = errno;
        if (level <= max_level) {
                char text[2048];
                va_list ap;
                va_start(ap, fmt);
                vsnprintf(text, sizeof(text), fmt, ap);
                va_end(ap);
                emit(level, gpu_pci, fault_kind, text);
        }
        errno = saved_errno;
        return 0;
}
