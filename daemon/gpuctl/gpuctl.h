/* gpuctl.h — what the verbs share: the global options and the output helpers. */
#pragma once

#include <stdbool.h>

#include <json-c/json.h>

#include "gpu.h"
#include "gpu_json.h"

struct gpuctl {
        const char *root;       /* --root, "/" by default */
        const char *socket;     /* --socket (used by the rigd verbs) */
        bool is_json;           /* --json */
};

/* Each verb returns the process exit code: 0 ok, 1 failure, 2 usage. */
int verb_list(const struct gpuctl *ctl, int argc, char **argv);
int verb_topo(const struct gpuctl *ctl, int argc, char **argv);
int verb_doctor(const struct gpuctl *ctl, int argc, char **argv);
int verb_leases(const struct gpuctl *ctl, int argc, char **argv);
/* argv[0] is "lease": it parses its own options, then "--" and the command. */
int verb_lease(const struct gpuctl *ctl, int argc, char **argv);
int verb_power(const struct gpuctl *ctl, int argc, char **argv);        /* argv[0] is "power" */
int verb_faults(const struct gpuctl *ctl, int argc, char **argv);       /* argv[0] is "faults" */

struct rigd_client;
/* A connection to rigd when one answers on ctl->socket and serves the same root as ctl (a rigd
 * describing another machine must not be asked); NULL otherwise. */
struct rigd_client *gpuctl_connect_same_root(const struct gpuctl *ctl);

/* o[key] as text: NULL, or "-" for tables, when absent or null. */
const char *json_field_str(struct json_object *o, const char *key);
const char *json_field_str_or_dash(struct json_object *o, const char *key);

/* Prints obj pretty (for people piping to jq, still valid JSON) and drops the reference. */
void json_print(struct json_object *obj);

/* "16.0 GiB"; "-" when 0. */
void format_bytes(unsigned long long bytes, char *buf, size_t size);

/* An aligned text table: cells are copied, columns padded to their widest cell. */
#define TABLE_MAX_COLS 16
#define TABLE_CELL_LEN 96

struct table {
        size_t n_cols, n_rows;
        char (*cells)[TABLE_MAX_COLS][TABLE_CELL_LEN];  /* [n_rows][col] */
};

int table_init(struct table *t, size_t n_cols, const char *const *header);
int table_add_row(struct table *t, const char *const *cells);
void table_print(const struct table *t);
void table_free(struct table *t);
