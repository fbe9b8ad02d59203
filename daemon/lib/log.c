/* log.c — levelled messages to stderr; rigd adds the journal later. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"

static enum log_level max_level = LOG_LEVEL_WARNING;

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

int log_full_errno(enum log_level level, int err, const char *fmt, ...)
{
        int saved_errno = errno;
        err = abs(err);
        if (level <= max_level) {
                va_list ap;
                fprintf(stderr, "%s: ", level_prefix(level));
                va_start(ap, fmt);
                vfprintf(stderr, fmt, ap);
                va_end(ap);
                if (err != 0)
                        fprintf(stderr, ": %s", strerror(err));
                fputc('\n', stderr);
        }
        errno = saved_errno;
        return -err;
}
