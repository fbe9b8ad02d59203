/* errmsg.h — how the runtime's loaders report: a negative errno for the program and a sentence
 * for the person, written into a caller's buffer ("tensor blk.0.attn_q.weight is missing"). */
#pragma once

#include <stddef.h>

/* Formats into err (when err and size are non-zero) and returns code, so a caller can write
 * `return errmsg(err, size, -EINVAL, "metadata %s is missing", key);`. */
int errmsg(char *err, size_t size, int code, const char *fmt, ...) __attribute__((format(printf, 4, 5)));
