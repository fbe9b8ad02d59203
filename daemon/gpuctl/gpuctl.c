/* gpuctl.c — the command line for GPU discovery (and, with rigd, leases and power):
 * global options, then one verb. */
#include <getopt.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "client.h"

#include "gpuctl.h"
#include "log.h"
#include "util.h"

struct verb {
        const char *name;
        int (*run)(const struct gpuctl *ctl, int argc, char **argv);
        const char *help;
        bool has_own_options;   /* gets argv from its own name on; global options go before it */
};

static const struct verb verbs[] = {
        { "list",   verb_list,   "one row per GPU", false },
        { "topo",   verb_topo,   "P2P matrix, link types, and why each pair is or is not P2P-capable", false },
        { "doctor", verb_doctor, "host checks with a verdict and a fix for each", false },
        { "leases", verb_leases, "who holds which GPU (asks rigd)", false },
        { "lease",  verb_lease,  "run a command holding a lease: lease -n N [--min-vram B] -- CMD...", true },
        { "power",  verb_power,  "power caps and what rigd keeps them at: power [GPU] [--set WATTS]", true },
        { "faults", verb_faults, "GPU faults and health (rigd); faults --classify FILE|- reads a saved log", true },
};

static void usage(FILE *f)
{
        fprintf(f, "Usage: gpuctl [--root DIR] [--socket PATH] [--json] [-v] VERB ...\n\nVerbs:\n");
        for (size_t i = 0; i < ELEMENTSOF(verbs); i++)
                fprintf(f, "  %-8s %s\n", verbs[i].name, verbs[i].help);
        fprintf(f, "\nOptions:\n"
                   "  --root DIR     read /sys, /proc, /boot under DIR (a recorded machine), default /\n"
                   "  --socket PATH  rigd's socket, default /run/rigd/rigd.sock\n"
                   "  --json         machine-readable output\n"
                   "  -v, --verbose  debug messages on stderr\n"
                   "Exit codes: 0 ok, 1 failure, 2 usage.\n");
}

struct rigd_client *gpuctl_connect_same_root(const struct gpuctl *ctl)
{
        struct rigd_client *c;
        if (rigd_client_connect(ctl->socket, &c) < 0)
                return NULL;
        struct json_object *hello = NULL;
        char err[256], ours[PATH_MAX], theirs[PATH_MAX];
        const char *root = NULL;
        bool is_same = rigd_client_call(c, "hello", NULL, 2000, &hello, err, sizeof(err)) == 0 &&
                       (root = json_field_str(hello, "root")) && realpath(ctl->root, ours) && realpath(root, theirs) &&
                       streq(ours, theirs);
        json_object_put(hello);
        if (!is_same) {
                rigd_client_free(c);
                return NULL;
        }
        return c;
}

enum { OPT_ROOT = 0x100, OPT_SOCKET, OPT_JSON, OPT_VERSION };

static const struct option options[] = {
        { "root",    required_argument, NULL, OPT_ROOT },
        { "socket",  required_argument, NULL, OPT_SOCKET },
        { "json",    no_argument,       NULL, OPT_JSON },
        { "verbose", no_argument,       NULL, 'v' },
        { "help",    no_argument,       NULL, 'h' },
        { "version", no_argument,       NULL, OPT_VERSION },
        { 0 }
};

/* Parses global options (also accepted after the verb: `gpuctl list --json`). Returns -1 to
 * continue, else an exit code. */
static int parse_options(struct gpuctl *ctl, int argc, char **argv)
{
        int c;
        while ((c = getopt_long(argc, argv, "+vh", options, NULL)) != -1) {
                switch (c) {
                case OPT_ROOT:    ctl->root = optarg; break;
                case OPT_SOCKET:  ctl->socket = optarg; break;
                case OPT_JSON:    ctl->is_json = true; break;
                case 'v':         log_set_max_level(LOG_LEVEL_DEBUG); break;
                case 'h':         usage(stdout); return 0;
                case OPT_VERSION: puts("gpuctl " RIG_VERSION); return 0;
                default:          usage(stderr); return 2;
                }
        }
        return -1;
}

int main(int argc, char **argv)
{
        struct gpuctl ctl = { .root = "/", .socket = "/run/rigd/rigd.sock" };
        int r = parse_options(&ctl, argc, argv);
        if (r >= 0)
                return r;
        if (optind >= argc) {
                usage(stderr);
                return 2;
        }

        const char *name = argv[optind];
        const struct verb *verb = NULL;
        for (size_t i = 0; i < ELEMENTSOF(verbs); i++)
                if (streq(verbs[i].name, name))
                        verb = &verbs[i];
        if (!verb) {
                fprintf(stderr, "gpuctl: unknown verb '%s'\n\n", name);
                usage(stderr);
                return 2;
        }

        int verb_argc = argc - optind;
        char **verb_argv = argv + optind;
        if (verb->has_own_options)
                return verb->run(&ctl, verb_argc, verb_argv);
        optind = 1;     /* the verb's own arguments: global options may follow it */
        r = parse_options(&ctl, verb_argc, verb_argv);
        if (r >= 0)
                return r;
        if (optind < verb_argc) {
                fprintf(stderr, "gpuctl %s: unexpected argument '%s'\n", name, verb_argv[optind]);
                return 2;
        }
        return verb->run(&ctl, verb_argc - optind, verb_argv + optind);
}
