/* amdgpu_ids.h — marketing names from libdrm's amdgpu.ids table ("66A1,\t02,\tAMD Instinct MI60 / MI50"),
 * read from the machine's root so fixture trees carry their own copy. */
#pragma once

#include <stddef.h>
#include <stdint.h>

struct machine;

/* Looks up device_id + revision; 0 and the name in buf, or -ENOENT. */
int amdgpu_ids_lookup(const struct machine *m, uint32_t device_id, uint32_t revision, char *buf, size_t size);

/* Same lookup over table text already in memory; for tests and the fuzzer. */
int amdgpu_ids_lookup_text(const char *text, uint32_t device_id, uint32_t revision, char *buf, size_t size);
