/* rig_assert.h — preconditions only a programmer can break (shapes handed to kernels). The
 * message names the shapes involved; never used on input from files, sockets or users. */
#pragma once

#include <stdio.h>
#include <stdlib.h>

#define RIG_ASSERT(cond, ...)                                                                   \
        do {                                                                                    \
                if (!(cond)) {                                                                  \
                        fprintf(stderr, "rig: %s:%d: assertion '%s' failed: ", __FILE__, __LINE__, #cond); \
                        fprintf(stderr, __VA_ARGS__);                                           \
                        fputc('\n', stderr);                                                    \
                        abort();                                                                \
                }                                                                               \
        } while (0)
