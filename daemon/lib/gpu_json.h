/* gpu_json.h — a GPU and a link as JSON objects with the stable field names of DESIGN §4.2. */
#pragma once

#include <stdbool.h>
#include <stdint.h>

#include <json-c/json.h>

#include "gpu.h"

/* A NAN double and a negative int become null: unknown is not zero. */
struct json_object *json_double_or_null(double v);
struct json_object *json_int_or_null(long long v);
struct json_object *json_string_or_null(const char *s);

/* The "lease" field is null; rigd sets it for GPUs a lease holds. */
struct json_object *gpu_to_json(const struct gpu_info *g, bool is_brief);
struct json_object *link_to_json(const struct gpu_link *l);

/* The power fields of `power_get` (DESIGN §4.2 names), with the cap as read now. */
struct json_object *gpu_power_to_json(const struct gpu_info *g, double power_cap_w);

/* A fault as `faults --json` and rigd's `fault` event write it (DESIGN §4.2); line is 1-based. */
struct fault;
struct json_object *fault_to_json(const struct fault *f, uint64_t line);
