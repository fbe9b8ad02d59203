/* faults.c — `gpuctl faults [--follow]`: rigd's fault history, each GPU's health, and live faults;
 * `gpuctl faults --classify FILE|-`: the GPU faults in a saved kernel log (dmesg, dmesg -T,
 * journalctl, /dev/kmsg records, pasted text), found by the classifier rigd's fault watch uses
 * (daemon/lib/kmsg.c), without rigd. Exit 0 when the log was read, faults or not:
 * finding faults is the verb's output, not a failure; scripts count them with --json. */
#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "client.h"
#include "gpuctl.h"
#include "kmsg.h"
#include "util.h"

/* Where the faults go as they are found: a JSON array or table rows (the table needs every row
 * before it knows its column widths), so a log's faults are held once, in their output form. */
struct sink {
        bool is_json;
        struct json_object *faults;     /* is_json */
        struct table table;             /* !is_json */
        size_t n_faults, n_lines;
};

static const char *const fault_header[] = { "LINE", "TIME", "GPU", "KIND", "SEVERITY", "TEXT" };

static void faults_usage(FILE *f)
{
        fprintf(f, "Usage: gpuctl [--json] faults --classify FILE|-   GPU faults in a saved kernel log\n"
                   "       gpuctl [--json] faults [--follow]          fault history and live faults (rigd)\n"
                   "FILE is dmesg, dmesg -T, journalctl or /dev/kmsg text; - reads standard input.\n");
}

/* A table cell of s: at most TABLE_CELL_LEN - 1 bytes, cut before a UTF-8 character, not in it. */
static void cell_text(char *cell, const char *s)
{
        size_t n = strlen(s);
        if (n >= TABLE_CELL_LEN) {
                n = TABLE_CELL_LEN - 1;
                while (n > 0 && ((unsigned char)s[n] & 0xc0) == 0x80)
                        n--;
        }
        memcpy(cell, s, n);
        cell[n] = '\0';
}

static int add_table_row(struct table *t, const struct fault *f, size_t line_no)
{
        char line[24], kind[32], text[TABLE_CELL_LEN];
        snprintf(line, sizeof(line), "%zu", line_no);
        if (f->kind == FAULT_NVIDIA_XID)
                snprintf(kind, sizeof(kind), "%s %d", fault_kind_str(f->kind), f->xid);
        else
                snprintf(kind, sizeof(kind), "%s", fault_kind_str(f->kind));
        cell_text(text, f->text + f->body);     /* the GPU has its own column */
        const char *row[] = { line, f->time[0] ? f->time : "-", f->gpu_pci[0] ? f->gpu_pci : "-",
                              kind, fault_severity_str(f->severity), text };
        return table_add_row(t, row);
}

/* Reads every line of f into the sink; returns 0 or a negative errno. */
static int classify_stream(FILE *f, struct sink *s)
{
        _cleanup_free_ char *line = NULL;
        size_t cap = 0;
        ssize_t len;
        errno = 0;
        while ((len = getline(&line, &cap, f)) >= 0) {
                s->n_lines++;
                struct fault fault;
                if (!kmsg_classify_line(line, (size_t)len, &fault))
                        continue;
                s->n_faults++;
                if (s->is_json)
                        json_object_array_add(s->faults, fault_to_json(&fault, s->n_lines));
                else if (add_table_row(&s->table, &fault, s->n_lines) < 0)
                        return -ENOMEM;
        }
        if (ferror(f))
                return errno ? -errno : -EIO;
        return 0;
}

static int classify_file(bool is_json, const char *path)
{
        bool is_stdin = streq(path, "-");
        const char *name = is_stdin ? "standard input" : path;
        FILE *f = is_stdin ? stdin : fopen(path, "re");
        if (!f) {
                fprintf(stderr, "gpuctl faults: cannot read %s: %s\n", path, strerror(errno));
                return 1;
        }
        struct sink s = { .is_json = is_json };
        if (is_json)
                s.faults = json_object_new_array();
        else if (table_init(&s.table, ELEMENTSOF(fault_header), fault_header) < 0)
                abort();        /* six columns always fit */
        int r = classify_stream(f, &s);
        if (!is_stdin)
                fclose(f);
        if (r < 0) {
                fprintf(stderr, "gpuctl faults: reading %s: %s\n", name, strerror(-r));
        } else if (is_json) {
                struct json_object *o = json_object_new_object();
                json_object_object_add(o, "faults", s.faults);
                s.faults = NULL;
                json_print(o);
        } else if (s.n_faults == 0) {
                printf("No GPU faults in %s (%zu lines).\n", name, s.n_lines);
        } else {
                table_print(&s.table);
        }
        json_object_put(s.faults);
        if (!is_json)
                table_free(&s.table);
        return r < 0 ? 1 : 0;
}

/* A table row of a fault as rigd sends it (JSON). */
static void add_json_row(struct table *t, struct json_object *f)
{
        char kind[48], text[TABLE_CELL_LEN];
        const char *xid = json_field_str(f, "xid");
        snprintf(kind, sizeof(kind), "%s%s%s", json_field_str_or_dash(f, "kind"), xid ? " " : "", xid ? xid : "");
        cell_text(text, json_field_str_or_dash(f, "text"));
        const char *row[] = { json_field_str_or_dash(f, "line"), json_field_str_or_dash(f, "time"),
                              json_field_str_or_dash(f, "gpu_pci"), kind, json_field_str_or_dash(f, "severity"), text };
        table_add_row(t, row);
}

static void print_rigd_faults(struct json_object *result)
{
        struct json_object *faults, *gpus;
        struct table t;
        if (json_object_object_get_ex(result, "faults", &faults) && json_object_array_length(faults) > 0 &&
            table_init(&t, ELEMENTSOF(fault_header), fault_header) == 0) {
                for (size_t i = 0; i < json_object_array_length(faults); i++)
                        add_json_row(&t, json_object_array_get_idx(faults, i));
                table_print(&t);
                table_free(&t);
                putchar('\n');
        } else {
                printf("No GPU faults in the kernel log rigd has read.\n\n");
        }
        static const char *const header[] = { "GPU", "PCI", "HEALTH", "FAULTS" };
        if (!json_object_object_get_ex(result, "gpus", &gpus) || table_init(&t, ELEMENTSOF(header), header) < 0)
                return;
        for (size_t i = 0; i < json_object_array_length(gpus); i++) {
                struct json_object *g = json_object_array_get_idx(gpus, i), *counts;
                char list[TABLE_CELL_LEN] = "";
                if (json_object_object_get_ex(g, "counts", &counts)) {
                        json_object_object_foreach(counts, kind, n) {
                                size_t len = strlen(list);
                                snprintf(list + len, sizeof(list) - len, "%s%s %s", len ? ", " : "", kind,
                                         json_object_get_string(n));
                        }
                }
                const char *row[] = { json_field_str_or_dash(g, "index"), json_field_str_or_dash(g, "pci"),
                                      json_field_str_or_dash(g, "health"), list[0] ? list : "-" };
                table_add_row(&t, row);
        }
        table_print(&t);
        table_free(&t);
}

/* Prints rigd's fault and health events as they come, one line each, until rigd goes away. */
static int follow_faults(struct rigd_client *c, bool is_json)
{
        struct json_object *events = json_object_new_array(), *result = NULL;
        json_object_array_add(events, json_object_new_string("fault"));
        json_object_array_add(events, json_object_new_string("health"));
        struct json_object *f = json_object_new_object();
        json_object_object_add(f, "events", events);
        char err[512];
        if (rigd_client_call(c, "subscribe", f, 10000, &result, err, sizeof(err)) < 0) {
                fprintf(stderr, "gpuctl faults: %s\n", err);
                return 1;
        }
        json_object_put(result);
        fprintf(stderr, "gpuctl: following rigd's GPU faults (Ctrl-C stops)\n");
        for (;;) {
                struct json_object *e;
                int r = rigd_client_next_event(c, -1, &e);
                if (r < 0) {
                        fprintf(stderr, "gpuctl faults: rigd closed the connection\n");
                        return 1;
                }
                if (is_json)
                        puts(json_object_to_json_string_ext(e, JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE));
                else if (streq(json_field_str_or_dash(e, "event"), "health"))
                        printf("GPU %s: health %s -> %s (%s)\n", json_field_str_or_dash(e, "gpu_pci"),
                               json_field_str_or_dash(e, "from"), json_field_str_or_dash(e, "health"),
                               json_field_str_or_dash(e, "reason"));
                else
                        printf("%s  %s  %s  %s  %s\n", json_field_str_or_dash(e, "time"),
                               json_field_str_or_dash(e, "gpu_pci"), json_field_str_or_dash(e, "kind"),
                               json_field_str_or_dash(e, "severity"), json_field_str_or_dash(e, "text"));
                fflush(stdout);
                json_object_put(e);
        }
}

/* Fault history, health and live faults come from rigd's fault watch. */
static int show_live_faults(const struct gpuctl *ctl, bool is_json, bool is_follow)
{
        struct rigd_client *c = gpuctl_connect_same_root(ctl);
        if (!c) {
                fprintf(stderr, "gpuctl faults: no rigd serving this machine answers at %s: live faults come from "
                                "its fault watch (to classify a saved log: gpuctl faults --classify FILE|-)\n",
                        ctl->socket);
                return 1;
        }
        int code;
        if (is_follow) {
                code = follow_faults(c, is_json);
        } else {
                struct json_object *result = NULL;
                char err[512];
                code = rigd_client_call(c, "faults", NULL, 10000, &result, err, sizeof(err)) < 0;
                if (code)
                        fprintf(stderr, "gpuctl faults: %s\n", err);
                else if (is_json)
                        json_print(json_object_get(result));
                else
                        print_rigd_faults(result);
                json_object_put(result);
        }
        rigd_client_free(c);
        return code;
}

enum { OPT_CLASSIFY = 0x100, OPT_FOLLOW, OPT_JSON };

static const struct option faults_options[] = {
        { "classify", required_argument, NULL, OPT_CLASSIFY },
        { "follow",   no_argument,       NULL, OPT_FOLLOW },
        { "json",     no_argument,       NULL, OPT_JSON },
        { "help",     no_argument,       NULL, 'h' },
        { 0 }
};

int verb_faults(const struct gpuctl *ctl, int argc, char **argv)
{
        const char *path = NULL;
        bool is_json = ctl->is_json, is_follow = false;
        int opt;
        optind = 0;     /* getopt starts afresh on this verb's arguments (argv[0] is "faults") */
        while ((opt = getopt_long(argc, argv, "+h", faults_options, NULL)) != -1) {
                switch (opt) {
                case OPT_CLASSIFY:
                        path = optarg;
                        break;
                case OPT_FOLLOW:
                        is_follow = true;
                        break;
                case OPT_JSON:          /* `gpuctl faults --classify F --json`, as DESIGN §4.2 writes it */
                        is_json = true;
                        break;
                case 'h':
                        faults_usage(stdout);
                        return 0;
                default:
                        faults_usage(stderr);
                        return 2;
                }
        }
        if (optind < argc) {
                fprintf(stderr, "gpuctl faults: unexpected argument '%s'\n", argv[optind]);
                faults_usage(stderr);
                return 2;
        }
        if (path && is_follow) {
                fprintf(stderr, "gpuctl faults: --follow watches rigd, --classify reads a file: not both\n");
                return 2;
        }
        if (path)
                return classify_file(is_json, path);
        return show_live_faults(ctl, is_json, is_follow);
}
