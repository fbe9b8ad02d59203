/* lease.c — `gpuctl leases` (who holds what) and `gpuctl lease -n N -- CMD...` (run CMD holding a
 * lease: its environment confines CMD to the leased GPUs, the lease ends when CMD exits, and
 * CMD's exit code is gpuctl's). Both talk to rigd through the client library. */
#include <errno.h>
#include <getopt.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include "client.h"
#include "gpuctl.h"
#include "proto.h"
#include "util.h"

#define LEASE_MAX_SELECTORS 64

static int connect_rigd(const struct gpuctl *ctl, struct rigd_client **c)
{
        int r = rigd_client_connect(ctl->socket, c);
        if (r < 0)
                fprintf(stderr, "gpuctl: cannot reach rigd at %s: %s (is it running? systemctl start rigd.socket)\n",
                        ctl->socket, strerror(-r));
        return r;
}

static void print_leases(struct json_object *leases)
{
        static const char *const header[] = { "LEASE", "HOLDER", "PID", "UID", "GPUS", "MODE", "SINCE" };
        struct table t;
        if (table_init(&t, ELEMENTSOF(header), header) < 0)
                return;
        size_t n = json_object_array_length(leases);
        for (size_t i = 0; i < n; i++) {
                struct json_object *l = json_object_array_get_idx(leases, i), *gpus, *excl;
                char list[TABLE_CELL_LEN] = "";
                if (json_object_object_get_ex(l, "gpus", &gpus))
                        for (size_t k = 0; k < json_object_array_length(gpus); k++) {
                                size_t len = strlen(list);
                                snprintf(list + len, sizeof(list) - len, "%s%s", k ? "," : "",
                                         json_object_get_string(json_object_array_get_idx(gpus, k)));
                        }
                bool is_exclusive = json_object_object_get_ex(l, "exclusive", &excl) && json_object_get_boolean(excl);
                const char *row[] = { json_field_str_or_dash(l, "id"), json_field_str_or_dash(l, "holder"),
                                      json_field_str_or_dash(l, "pid"), json_field_str_or_dash(l, "uid"), list,
                                      is_exclusive ? "exclusive" : "shared", json_field_str_or_dash(l, "since") };
                table_add_row(&t, row);
        }
        if (n == 0)
                puts("No leases.");
        else
                table_print(&t);
        table_free(&t);
}

int verb_leases(const struct gpuctl *ctl, int argc, char **argv)
{
        if (argc > 0) {
                fprintf(stderr, "gpuctl leases: unexpected argument '%s'\n", argv[0]);
                return 2;
        }
        struct rigd_client *c;
        if (connect_rigd(ctl, &c) < 0)
                return 1;
        struct json_object *result = NULL, *leases;
        char err[512];
        int r = rigd_client_call(c, "leases", NULL, 10000, &result, err, sizeof(err));
        rigd_client_free(c);
        if (r < 0) {
                fprintf(stderr, "gpuctl leases: %s\n", err);
                return 1;
        }
        if (!json_object_object_get_ex(result, "leases", &leases) || !json_object_is_type(leases, json_type_array)) {
                fprintf(stderr, "gpuctl leases: rigd's answer has no lease list\n");
                json_object_put(result);
                return 1;
        }
        if (ctl->is_json) {
                json_print(result);
                return 0;
        }
        print_leases(leases);
        json_object_put(result);
        return 0;
}

/* "16G", "512MiB", "1000000": bytes (K/M/G/T are powers of 1024, as VRAM sizes are). */
static bool parse_size(const char *s, uint64_t *out)
{
        char *end;
        errno = 0;
        unsigned long long n = strtoull(s, &end, 10);
        if (errno || end == s || *s == '-')
                return false;
        static const char units[] = "KMGT";
        const char *u = *end ? strchr(units, *end) : NULL;
        if (*end && !u)
                return false;
        if (u) {
                for (const char *p = units; p <= u; p++) {
                        if (n > UINT64_MAX / 1024)
                                return false;
                        n *= 1024;
                }
                end++;
                if (*end == 'i')
                        end++;
                if (*end == 'B')
                        end++;
        }
        *out = n;
        return *end == '\0';
}

static bool parse_uint(const char *s, unsigned long max, unsigned long *out)
{
        char *end;
        errno = 0;
        unsigned long n = strtoul(s, &end, 10);
        if (errno || end == s || *end || *s == '-' || n > max)
                return false;
        *out = n;
        return true;
}

static void lease_usage(FILE *f)
{
        fprintf(f, "Usage: gpuctl lease [-n N | --gpus SEL[,SEL...]] [--min-vram BYTES] [--shared] [--wait MS]\n"
                   "                    [--holder NAME] -- CMD [ARG...]\n"
                   "Runs CMD holding a lease of N GPUs (1 by default), with ROCR_VISIBLE_DEVICES,\n"
                   "HIP_VISIBLE_DEVICES and CUDA_VISIBLE_DEVICES set to them. The lease ends when CMD\n"
                   "exits; gpuctl exits with CMD's code (128 + the signal that killed it).\n");
}

static pid_t child_pid;

static void forward_signal(int sig)
{
        if (child_pid > 0)
                kill(child_pid, sig);
}

/* Sets the grant's environment in this process, for CMD to inherit. */
static int apply_env(struct json_object *grant)
{
        struct json_object *env;
        if (!json_object_object_get_ex(grant, "env", &env) || !json_object_is_type(env, json_type_object)) {
                fprintf(stderr, "gpuctl lease: rigd's grant has no environment\n");
                return -EPROTO;
        }
        json_object_object_foreach(env, key, value) {
                if (setenv(key, json_object_get_string(value), 1) < 0)
                        return -errno;
        }
        return 0;
}

static void describe_grant(struct json_object *grant)
{
        struct json_object *pci;
        fprintf(stderr, "gpuctl: holding %s:", json_field_str_or_dash(grant, "id"));
        if (json_object_object_get_ex(grant, "pci", &pci))
                for (size_t i = 0; i < json_object_array_length(pci); i++)
                        fprintf(stderr, " %s", json_object_get_string(json_object_array_get_idx(pci, i)));
        fputc('\n', stderr);
}

/* Waits for the child while reading rigd's events: a revoked lease is said at once. Returns the
 * child's wait status. */
static int wait_child(struct rigd_client *c, pid_t pid)
{
        int pidfd = (int)syscall(SYS_pidfd_open, pid, 0);
        bool is_rigd_open = true;
        for (;;) {
                struct pollfd p[2] = { { .fd = pidfd, .events = POLLIN },
                                       { .fd = is_rigd_open ? rigd_client_fd(c) : -1, .events = POLLIN } };
                /* Without pidfd (old kernels) waitpid is polled once a second. */
                int r = poll(p, 2, pidfd < 0 ? 1000 : -1);
                if (r < 0 && errno != EINTR)
                        break;
                int status;
                if (waitpid(pid, &status, WNOHANG) == pid) {
                        if (pidfd >= 0)
                                close(pidfd);
                        return status;
                }
                if (r <= 0 || !(p[1].revents & (POLLIN | POLLHUP)))
                        continue;
                struct json_object *event;
                int e = rigd_client_next_event(c, 0, &event);
                if (e < 0) {
                        fprintf(stderr, "gpuctl: rigd closed the connection: the lease is gone, the command runs on\n");
                        is_rigd_open = false;
                } else if (e > 0) {
                        if (streq(json_field_str_or_dash(event, "event"), "lease_revoked"))
                                fprintf(stderr, "gpuctl: lease %s revoked: GPU %s %s\n",
                                        json_field_str_or_dash(event, "lease"), json_field_str_or_dash(event, "gpu_pci"),
                                        json_field_str_or_dash(event, "reason"));
                        json_object_put(event);
                }
        }
        int status = 0;
        while (waitpid(pid, &status, 0) < 0 && errno == EINTR)
                ;
        if (pidfd >= 0)
                close(pidfd);
        return status;
}

static int run_holding(struct rigd_client *c, struct json_object *grant, char **cmd)
{
        if (apply_env(grant) < 0)
                return 1;
        describe_grant(grant);
        fflush(NULL);
        pid_t pid = fork();
        if (pid < 0) {
                perror("gpuctl lease: fork");
                return 1;
        }
        if (pid == 0) {
                /* The rigd socket is close-on-exec: the lease ends with gpuctl, never with CMD's children. */
                execvp(cmd[0], cmd);
                fprintf(stderr, "gpuctl lease: running %s: %s\n", cmd[0], strerror(errno));
                _exit(127);
        }
        child_pid = pid;
        struct sigaction sa = { .sa_handler = forward_signal, .sa_flags = SA_RESTART };
        sigemptyset(&sa.sa_mask);
        sigaction(SIGINT, &sa, NULL);
        sigaction(SIGTERM, &sa, NULL);
        sigaction(SIGHUP, &sa, NULL);
        int status = wait_child(c, pid);
        if (WIFEXITED(status))
                return WEXITSTATUS(status);
        return WIFSIGNALED(status) ? 128 + WTERMSIG(status) : 1;
}

enum { OPT_GPUS = 0x100, OPT_MIN_VRAM, OPT_SHARED, OPT_WAIT, OPT_HOLDER };

static const struct option lease_options[] = {
        { "count",    required_argument, NULL, 'n' },
        { "gpus",     required_argument, NULL, OPT_GPUS },
        { "min-vram", required_argument, NULL, OPT_MIN_VRAM },
        { "shared",   no_argument,       NULL, OPT_SHARED },
        { "wait",     required_argument, NULL, OPT_WAIT },
        { "holder",   required_argument, NULL, OPT_HOLDER },
        { "help",     no_argument,       NULL, 'h' },
        { 0 }
};

/* Splits "0,2,0000:03:00.0" in place into selectors. */
static bool split_selectors(char *list, const char **out, size_t *n)
{
        for (char *save = NULL, *s = strtok_r(list, ",", &save); s; s = strtok_r(NULL, ",", &save)) {
                if (*n == LEASE_MAX_SELECTORS)
                        return false;
                out[(*n)++] = s;
        }
        return *n > 0;
}

int verb_lease(const struct gpuctl *ctl, int argc, char **argv)
{
        struct rigd_lease_options o = { .count = 1 };
        const char *selectors[LEASE_MAX_SELECTORS];
        unsigned long n;
        int opt;
        optind = 0;     /* getopt starts afresh on this verb's arguments (argv[0] is "lease") */
        while ((opt = getopt_long(argc, argv, "+n:h", lease_options, NULL)) != -1) {
                switch (opt) {
                case 'n':
                        if (!parse_uint(optarg, PROTO_MAX_GPUS, &n) || n == 0) {
                                fprintf(stderr, "gpuctl lease: -n wants 1 to %d GPUs, not '%s'\n", PROTO_MAX_GPUS, optarg);
                                return 2;
                        }
                        o.count = n;
                        break;
                case OPT_GPUS:
                        if (!split_selectors(optarg, selectors, &o.n_gpus)) {
                                fprintf(stderr, "gpuctl lease: --gpus wants 1 to %d selectors separated by commas\n",
                                        LEASE_MAX_SELECTORS);
                                return 2;
                        }
                        o.gpus = selectors;
                        break;
                case OPT_MIN_VRAM:
                        if (!parse_size(optarg, &o.min_vram_bytes)) {
                                fprintf(stderr, "gpuctl lease: --min-vram wants bytes (16G, 512MiB, ...), not '%s'\n", optarg);
                                return 2;
                        }
                        break;
                case OPT_SHARED:
                        o.is_shared = true;
                        break;
                case OPT_WAIT:
                        if (!parse_uint(optarg, 3600 * 1000, &n)) {
                                fprintf(stderr, "gpuctl lease: --wait wants milliseconds up to an hour, not '%s'\n", optarg);
                                return 2;
                        }
                        o.wait_ms = (uint32_t)n;
                        break;
                case OPT_HOLDER:
                        o.holder = optarg;
                        break;
                case 'h':
                        lease_usage(stdout);
                        return 0;
                default:
                        lease_usage(stderr);
                        return 2;
                }
        }
        char **cmd = argv + optind;
        if (!*cmd) {
                fprintf(stderr, "gpuctl lease: no command to run (gpuctl lease -n 1 -- CMD...)\n");
                return 2;
        }

        struct rigd_client *c;
        if (connect_rigd(ctl, &c) < 0)
                return 1;
        char holder[128];
        if (!o.holder) {
                snprintf(holder, sizeof(holder), "gpuctl lease -- %s", cmd[0]);
                o.holder = holder;
        }
        struct json_object *grant = NULL;
        char err[512];
        int r = rigd_client_lease(c, &o, &grant, err, sizeof(err));
        if (r < 0) {
                fprintf(stderr, "gpuctl lease: %s\n", err);
                rigd_client_free(c);
                return 1;
        }
        int code = run_holding(c, grant, cmd);
        json_object_put(grant);
        rigd_client_free(c);    /* closing the connection ends the lease */
        return code;
}
