/* stress_leases.c — rigd under load: N client processes each do M lease → hold → release cycles on
 * their own connection to one real rigd on a fixture machine, and some are SIGKILLed while they hold
 * a lease (or while their request waits). Checks that no GPU is ever held by two clients at once,
 * that every lease has ended afterwards, that every client left alive finished all its cycles
 * without an error, and that rigd still answers and exits clean. Prints grants/s, the grant latency
 * and how long a killed holder's GPUs take to come free; never asserts on time.
 *
 *   stress_leases --rigd PATH --root FIXTURE_ROOT [OPTIONS]   starts its own rigd (or RIGD=PATH)
 *   stress_leases --socket PATH [OPTIONS]                     uses the rigd serving PATH
 *
 * Clients are processes, not threads: each has its own connection, and a lease ends when its
 * holder's socket closes, which only a killed process shows honestly. */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <math.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "client.h"
#include "proto.h"
#include "util.h"

/* The processes share atomics through MAP_SHARED memory: only lock-free ones work across them. */
_Static_assert(ATOMIC_INT_LOCK_FREE == 2 && ATOMIC_LLONG_LOCK_FREE == 2 && ATOMIC_LONG_LOCK_FREE == 2,
               "atomics in shared memory must be lock-free");

#define N_ERRNO 256             /* failed calls are counted by errno below this; the rest as 0 */
#define MAX_CONFLICTS 16        /* double grants described in full; all are counted */
#define HOLD_TO_DIE_MS 60000    /* a victim holding its lease waits this long for its SIGKILL */

struct options {
        const char *rigd_path;          /* start this rigd ... */
        const char *root;               /* ... on this fixture root */
        const char *socket_path;        /* or use the rigd serving this socket */
        int n_clients;
        int n_cycles;                   /* lease → hold → release, per client */
        int max_count;                  /* each lease asks for 1..max_count GPUs */
        int kill_percent;               /* of the clients, SIGKILLed during one of their cycles */
        int hold_us;                    /* a lease is held 0..hold_us µs */
        uint32_t wait_ms;               /* each request's wait: far above any queueing here */
        uint64_t seed;
        int deadline_s;                 /* the run gives up (and fails) after this */
};

enum victim_kind {
        VICTIM_NONE,
        VICTIM_HOLDING,                 /* killed while it holds its lease */
        VICTIM_WAITING,                 /* killed about when its request reaches rigd: waiting, or just granted */
};

enum client_phase {
        PHASE_RUNNING,
        PHASE_HOLDING_TO_DIE,           /* lease_id is written; the parent may kill now */
        PHASE_WAITING_TO_DIE,           /* its request is on the way; the parent may kill now */
        PHASE_DONE,
};

/* One client, in shared memory. */
struct client_slot {
        /* the parent's, set before the fork or before the kill */
        enum victim_kind victim;
        int kill_cycle;
        atomic_int pid;
        atomic_bool is_killed;          /* stored before the SIGKILL is sent */
        _Atomic int64_t kill_ns;        /* CLOCK_MONOTONIC when the SIGKILL was sent */
        /* the client's */
        atomic_int phase;
        atomic_int cycles_done;
        atomic_int n_grants;
        char lease_id[PROTO_LEASE_ID_LEN];      /* the lease a HOLDING victim dies with */
        _Atomic int64_t regrant_ns;     /* the first grant to another client of a GPU it died holding */
        /* the parent's, after the kill or the exit */
        int64_t freed_ns;               /* its lease's "released" event reached an observer; 0: not seen */
        bool is_reaped;
        int status;                     /* from waitpid */
};

/* A GPU granted to grantee while marked as held by holder, a client that was not killed. */
struct conflict {
        int gpu;
        int holder, grantee;            /* pids */
        char lease_id[PROTO_LEASE_ID_LEN];      /* the grantee's */
};

/* Everything the processes share: one MAP_SHARED mapping made before the fork. */
struct shared {
        atomic_int holder[PROTO_MAX_GPUS];      /* pid of the client holding each GPU, 0: free */
        _Atomic uint64_t n_errors[N_ERRNO];     /* failed calls, by errno */
        atomic_int n_bad_grants;        /* grants naming other than the GPUs asked for */
        atomic_int n_conflicts;
        struct conflict conflicts[MAX_CONFLICTS];
        atomic_flag has_first_error;
        char first_error[512];
        struct client_slot *clients;    /* [n_clients], in the same mapping */
        int64_t *latency_ns;            /* [n_clients][n_cycles], request sent → grant received; 0: none */
};

struct stress {
        struct options o;
        char pci[PROTO_MAX_GPUS][PROTO_SELECTOR_LEN];   /* the machine's GPUs, from "list" */
        size_t n_gpus;
        struct shared *sh;
        size_t sh_bytes;
        int go_fd;                      /* read end: EOF means start */
        char dir[64];                   /* our temporary directory, "" when rigd was given */
        char socket_path[128];
        char log_path[128];
        pid_t rigd_pid;                 /* 0 when we did not start it */
        int rigd_status;
        bool is_rigd_reaped;
};

static int64_t now_ns(void)
{
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static void sleep_ns(int64_t ns)
{
        struct timespec ts = { .tv_sec = ns / 1000000000, .tv_nsec = ns % 1000000000 };
        while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
                ;
}

static uint64_t rand_next(uint64_t *s)
{
        /* xorshift64*: each client's own stream, reproducible from --seed */
        *s ^= *s >> 12;
        *s ^= *s << 25;
        *s ^= *s >> 27;
        return *s * 0x2545F4914F6CDD1DULL;
}

static uint64_t rand_seed(uint64_t seed, uint64_t stream)
{
        uint64_t s = (seed + 1) * 0x9E3779B97F4A7C15ULL ^ (stream + 1) * 0xBF58476D1CE4E5B9ULL;
        return s ? s : 1;
}

static const char *errno_name(int e)
{
        const char *name = e > 0 ? strerrorname_np(e) : NULL;
        return name ? name : "other";
}

/* ---- the clients ---- */

static void note_error(struct shared *sh, int r, const char *what, const char *err)
{
        int e = -r;
        atomic_fetch_add(&sh->n_errors[e > 0 && e < N_ERRNO ? e : 0], 1);
        if (!atomic_flag_test_and_set(&sh->has_first_error))
                snprintf(sh->first_error, sizeof(sh->first_error), "pid %d, %s: %s (%s)", (int)getpid(), what, err,
                         errno_name(e));
}

/* A reply that is no reply: the connection cannot carry another call. */
static bool is_transport_error(int r)
{
        return r == -ETIMEDOUT || r == -ECONNRESET || r == -EPROTO || r == -EPIPE || r == -ENOTCONN;
}

static struct client_slot *killed_client(struct stress *s, int pid)
{
        for (int i = 0; i < s->o.n_clients; i++) {
                struct client_slot *c = &s->sh->clients[i];
                if (atomic_load(&c->pid) == pid && atomic_load(&c->is_killed))
                        return c;
        }
        return NULL;
}

static void note_regrant(struct client_slot *dead, int64_t granted_ns)
{
        int64_t old = atomic_load(&dead->regrant_ns);
        while ((old == 0 || granted_ns < old) && !atomic_compare_exchange_weak(&dead->regrant_ns, &old, granted_ns))
                ;
}

/* Marks the granted GPUs as held by pid. Why this cannot give a false alarm: a client clears its
 * marks before it sends its release, so a GPU rigd grants after a release is unmarked by then (the
 * release and the grant pass through rigd's socket, which orders them). The one other way a GPU
 * comes free is its holder's socket closing, and the only holders that die here are the ones the
 * parent kills: it records them in is_killed before it sends the SIGKILL, and rigd can only see the
 * socket close after that. A dead holder never clears its marks, so its pid found on a GPU is not a
 * double grant. Any other pid found is one (or a client that died of something else, which the
 * parent sorts out from the exit statuses). */
static void gpus_mark(struct stress *s, const int *gpus, size_t n, int pid, int64_t granted_ns, const char *lease_id)
{
        struct shared *sh = s->sh;
        for (size_t i = 0; i < n; i++) {
                int old = 0;
                while (!atomic_compare_exchange_strong(&sh->holder[gpus[i]], &old, pid)) {
                        struct client_slot *dead = killed_client(s, old);
                        if (dead) {
                                note_regrant(dead, granted_ns);
                                continue;       /* old is the dead pid: take its mark over */
                        }
                        int k = atomic_fetch_add(&sh->n_conflicts, 1);
                        if (k < MAX_CONFLICTS) {
                                struct conflict *c = &sh->conflicts[k];
                                c->gpu = gpus[i];
                                c->holder = old;
                                c->grantee = pid;
                                strscpy(c->lease_id, lease_id, sizeof(c->lease_id));
                        }
                        break;
                }
        }
}

static void gpus_unmark(struct shared *sh, const int *gpus, size_t n, int pid)
{
        for (size_t i = 0; i < n; i++) {
                int expected = pid;     /* not ours after a conflict: leave the other mark */
                atomic_compare_exchange_strong(&sh->holder[gpus[i]], &expected, 0);
        }
}

static int gpu_index(const struct stress *s, const char *pci)
{
        for (size_t i = 0; i < s->n_gpus; i++)
                if (streq(s->pci[i], pci))
                        return (int)i;
        return -1;
}

/* The grant's lease id (false when it has none) and its GPUs as indices into s->pci; *is_valid
 * tells whether they are count distinct GPUs of this machine. */
static bool grant_parse(const struct stress *s, struct json_object *grant, size_t count, char *id, size_t id_size,
                        int *gpus, bool *is_valid)
{
        struct json_object *v, *pci;
        *is_valid = false;
        if (!json_object_object_get_ex(grant, "id", &v) || !json_object_is_type(v, json_type_string) ||
            !strscpy(id, json_object_get_string(v), id_size))
                return false;
        if (!json_object_object_get_ex(grant, "pci", &pci) || !json_object_is_type(pci, json_type_array) ||
            json_object_array_length(pci) != count)
                return true;
        for (size_t i = 0; i < count; i++) {
                struct json_object *p = json_object_array_get_idx(pci, i);
                int g = json_object_is_type(p, json_type_string) ? gpu_index(s, json_object_get_string(p)) : -1;
                if (g < 0)
                        return true;
                for (size_t j = 0; j < i; j++)
                        if (gpus[j] == g)
                                return true;
                gpus[i] = g;
        }
        *is_valid = true;
        return true;
}

/* One client process: n_cycles of lease → hold → release on one connection. Returns its exit code;
 * what went wrong is counted in shared memory. */
static int client_run(struct stress *s, int index)
{
        struct shared *sh = s->sh;
        struct client_slot *me = &sh->clients[index];
        int pid = (int)getpid();
        uint64_t rng = rand_seed(s->o.seed, (uint64_t)index);
        char err[512], holder[64];
        snprintf(holder, sizeof(holder), "stress client %d", index);

        struct rigd_client *c;
        int r = rigd_client_connect(s->socket_path, &c);
        if (r < 0) {
                note_error(sh, r, "connecting", s->socket_path);
                return 1;
        }
        prctl(PR_SET_TIMERSLACK, 1000UL);      /* ns: a 20 µs hold sleeps 20 µs, not the default 50 more */
        char byte;
        while (read(s->go_fd, &byte, 1) < 0 && errno == EINTR)
                ;       /* EOF: the parent has forked everyone */
        close(s->go_fd);

        for (int cycle = 0; cycle < s->o.n_cycles; cycle++) {
                bool is_kill_cycle = me->victim != VICTIM_NONE && cycle == me->kill_cycle;
                struct rigd_lease_options lo = {
                        .count = 1 + (size_t)(rand_next(&rng) % (uint64_t)s->o.max_count),
                        .wait_ms = s->o.wait_ms,
                        .holder = holder,
                };
                int64_t hold_ns = (int64_t)(rand_next(&rng) % (uint64_t)(s->o.hold_us + 1)) * 1000;
                if (is_kill_cycle && me->victim == VICTIM_WAITING)
                        atomic_store(&me->phase, PHASE_WAITING_TO_DIE);

                struct json_object *grant = NULL;
                int64_t t0 = now_ns();
                r = rigd_client_lease(c, &lo, &grant, err, sizeof(err));
                int64_t t1 = now_ns();
                if (r < 0) {
                        note_error(sh, r, "lease", err);
                        if (is_transport_error(r))
                                break;
                        continue;
                }
                atomic_fetch_add(&me->n_grants, 1);
                sh->latency_ns[(size_t)index * (size_t)s->o.n_cycles + (size_t)cycle] = t1 - t0;

                char id[PROTO_LEASE_ID_LEN];
                int gpus[PROTO_MAX_GPUS];
                bool is_valid;
                bool has_id = grant_parse(s, grant, lo.count, id, sizeof(id), gpus, &is_valid);
                json_object_put(grant);
                if (!is_valid)
                        atomic_fetch_add(&sh->n_bad_grants, 1);
                if (!has_id) {
                        note_error(sh, -EPROTO, "lease", "a grant without a lease id");
                        break;
                }
                size_t n = is_valid ? lo.count : 0;
                gpus_mark(s, gpus, n, pid, t1, id);

                if (is_kill_cycle && me->victim == VICTIM_HOLDING) {
                        strscpy(me->lease_id, id, sizeof(me->lease_id));
                        atomic_store(&me->phase, PHASE_HOLDING_TO_DIE);
                        sleep_ns((int64_t)HOLD_TO_DIE_MS * 1000000);
                        fprintf(stderr, "client %d (pid %d): held %s for %d ms and was never killed\n", index, pid,
                                id, HOLD_TO_DIE_MS);
                        rigd_client_free(c);
                        return 3;
                }
                if (hold_ns > 0)
                        sleep_ns(hold_ns);
                gpus_unmark(sh, gpus, n, pid);
                r = rigd_client_release(c, id, err, sizeof(err));
                if (r < 0) {
                        note_error(sh, r, "release", err);
                        if (is_transport_error(r))
                                break;
                        continue;
                }
                atomic_fetch_add(&me->cycles_done, 1);
        }
        rigd_client_free(c);
        atomic_store(&me->phase, PHASE_DONE);
        return 0;
}

/* ---- rigd ---- */

static int rigd_start(struct stress *s)
{
        strscpy(s->dir, "/tmp/stress-leases.XXXXXX", sizeof(s->dir));
        if (!mkdtemp(s->dir)) {
                int r = -errno;
                fprintf(stderr, "creating a directory under /tmp: %s\n", strerror(-r));
                s->dir[0] = '\0';
                return r;
        }
        snprintf(s->socket_path, sizeof(s->socket_path), "%s/rigd.sock", s->dir);
        snprintf(s->log_path, sizeof(s->log_path), "%s/rigd.log", s->dir);
        fflush(stdout);
        fflush(stderr);
        pid_t parent = getpid();
        pid_t pid = fork();
        if (pid < 0) {
                int r = -errno;
                fprintf(stderr, "fork: %s\n", strerror(-r));
                return r;
        }
        if (pid == 0) {
                /* A run cut short (ctest's TIMEOUT) must not leave rigd behind. */
                if (prctl(PR_SET_PDEATHSIG, SIGTERM) < 0 || getppid() != parent)
                        _exit(127);
                int fd = open(s->log_path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
                if (fd >= 0) {
                        dup2(fd, STDOUT_FILENO);        /* rigd logs every grant: 10⁴ lines */
                        dup2(fd, STDERR_FILENO);
                }
                execl(s->o.rigd_path, s->o.rigd_path, "--root", s->o.root, "--socket", s->socket_path, (char *)NULL);
                fprintf(stderr, "executing %s: %s\n", s->o.rigd_path, strerror(errno));
                _exit(127);
        }
        s->rigd_pid = pid;
        return 0;
}

static bool rigd_is_alive(struct stress *s)
{
        if (!s->rigd_pid)
                return true;    /* not ours: the calls tell */
        if (!s->is_rigd_reaped && waitpid(s->rigd_pid, &s->rigd_status, WNOHANG) == s->rigd_pid)
                s->is_rigd_reaped = true;
        return !s->is_rigd_reaped;
}

static void print_rigd_log(const struct stress *s)
{
        if (!s->rigd_pid)
                return;
        FILE *f = fopen(s->log_path, "re");
        if (!f)
                return;
        char buf[4096];
        fseek(f, 0, SEEK_END);
        long size = ftell(f);
        fseek(f, size > (long)sizeof(buf) - 1 ? size - (long)sizeof(buf) + 1 : 0, SEEK_SET);
        size_t n = fread(buf, 1, sizeof(buf) - 1, f);
        buf[n] = '\0';
        fclose(f);
        fprintf(stderr, "--- the end of rigd's log (%s) ---\n%s--- end ---\n", s->log_path, buf);
}

/* Connects and says hello, retrying while a rigd we started comes up (slow under ASan). */
static int rigd_connect(struct stress *s, int timeout_ms, struct rigd_client **out)
{
        int64_t deadline = now_ns() + (int64_t)timeout_ms * 1000000;
        for (;;) {
                struct rigd_client *c;
                int r = rigd_client_connect(s->socket_path, &c);
                if (r == 0) {
                        struct json_object *result = NULL;
                        char err[512];
                        r = rigd_client_call(c, "hello", NULL, 10000, &result, err, sizeof(err));
                        json_object_put(result);
                        if (r == 0) {
                                *out = c;
                                return 0;
                        }
                        rigd_client_free(c);
                        fprintf(stderr, "hello to %s: %s\n", s->socket_path, err);
                        return r;
                }
                if ((r != -ENOENT && r != -ECONNREFUSED) || !rigd_is_alive(s) || now_ns() > deadline) {
                        fprintf(stderr, "connecting to %s: %s%s\n", s->socket_path, strerror(-r),
                                rigd_is_alive(s) ? "" : " (rigd exited)");
                        return r;
                }
                sleep_ns(20 * 1000000);
        }
}

/* The machine's GPUs, by PCI address, from "list". */
static int rigd_read_gpus(struct stress *s, struct rigd_client *c)
{
        struct json_object *result = NULL, *gpus;
        char err[512];
        int r = rigd_client_call(c, "list", NULL, 10000, &result, err, sizeof(err));
        if (r < 0) {
                fprintf(stderr, "list: %s\n", err);
                return r;
        }
        r = 0;
        if (!json_object_object_get_ex(result, "gpus", &gpus) || !json_object_is_type(gpus, json_type_array))
                r = -EPROTO;
        for (size_t i = 0; r == 0 && i < json_object_array_length(gpus) && i < PROTO_MAX_GPUS; i++) {
                struct json_object *pci;
                if (!json_object_object_get_ex(json_object_array_get_idx(gpus, i), "pci", &pci) ||
                    !json_object_is_type(pci, json_type_string))
                        r = -EPROTO;
                else
                        strscpy(s->pci[s->n_gpus++], json_object_get_string(pci), sizeof(s->pci[0]));
        }
        json_object_put(result);
        if (r < 0)
                fprintf(stderr, "list: a reply without the GPUs' PCI addresses\n");
        return r;
}

/* The leases rigd lists: how many (0 or more), or a negative errno. */
static int rigd_count_leases(struct rigd_client *c, struct json_object **leases_out)
{
        struct json_object *result = NULL, *leases;
        char err[512];
        int r = rigd_client_call(c, "leases", NULL, 10000, &result, err, sizeof(err));
        if (r < 0) {
                fprintf(stderr, "leases: %s\n", err);
                return r;
        }
        if (!json_object_object_get_ex(result, "leases", &leases) || !json_object_is_type(leases, json_type_array)) {
                json_object_put(result);
                return -EPROTO;
        }
        r = (int)json_object_array_length(leases);
        if (leases_out)
                *leases_out = json_object_get(leases);
        json_object_put(result);
        return r;
}

/* The CPU time rigd has used (user + system), or -1 when we did not start it. */
static int64_t rigd_cpu_ns(const struct stress *s)
{
        if (!s->rigd_pid || s->is_rigd_reaped)
                return -1;
        char path[64], buf[1024];
        snprintf(path, sizeof(path), "/proc/%d/stat", (int)s->rigd_pid);
        FILE *f = fopen(path, "re");
        if (!f)
                return -1;
        size_t n = fread(buf, 1, sizeof(buf) - 1, f);
        fclose(f);
        buf[n] = '\0';
        const char *p = strrchr(buf, ')');      /* the name in parentheses may hold spaces */
        unsigned long long utime, stime;
        if (!p || sscanf(p + 1, " %*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %llu %llu", &utime, &stime) != 2)
                return -1;
        return (int64_t)((utime + stime) * (1000000000ULL / (unsigned long long)sysconf(_SC_CLK_TCK)));
}

/* SIGTERM, then its exit status; SIGKILL after 30 s. */
static int rigd_stop(struct stress *s)
{
        if (!s->rigd_pid || s->is_rigd_reaped)
                return 0;
        kill(s->rigd_pid, SIGTERM);
        int64_t deadline = now_ns() + 30 * (int64_t)1000000000;
        while (rigd_is_alive(s) && now_ns() < deadline)
                sleep_ns(10 * 1000000);
        if (rigd_is_alive(s)) {
                kill(s->rigd_pid, SIGKILL);
                waitpid(s->rigd_pid, &s->rigd_status, 0);
                s->is_rigd_reaped = true;
                fprintf(stderr, "FAIL: rigd did not stop within 30 s of SIGTERM\n");
                return -ETIMEDOUT;
        }
        return 0;
}

/* ---- the parent ---- */

static int client_by_pid(const struct stress *s, pid_t pid)
{
        for (int i = 0; i < s->o.n_clients; i++)
                if (atomic_load(&s->sh->clients[i].pid) == pid)
                        return i;
        return -1;
}

static bool json_has_string(struct json_object *o, const char *key, const char *want)
{
        struct json_object *v;
        return json_object_object_get_ex(o, key, &v) && json_object_is_type(v, json_type_string) &&
               streq(json_object_get_string(v), want);
}

/* Kills a victim. For one that holds its lease, "kill → GPU free" is measured by an observer
 * connection subscribed to lease events before the kill: rigd sends "released" for each lease of
 * a connection when it handles the close, right before it frees the GPUs and grants them again
 * (one turn of its loop), so the event's arrival is when the GPUs came free plus one hop over the
 * socket. Polling "leases"
 * instead would measure the poll interval and queue behind the clients' requests. The first
 * grant of one of its GPUs to another client is timed as well (gpus_mark); that one includes the
 * wait for the head of the FIFO, which may need more GPUs than just came free. */
static void victim_kill(struct stress *s, int index)
{
        struct client_slot *v = &s->sh->clients[index];
        bool is_holding = atomic_load(&v->phase) == PHASE_HOLDING_TO_DIE;
        struct rigd_client *observer = NULL;
        if (is_holding && rigd_client_connect(s->socket_path, &observer) == 0) {
                struct json_object *f = json_object_new_object(), *events = json_object_new_array(), *result = NULL;
                char err[512];
                json_object_array_add(events, json_object_new_string("lease"));
                json_object_object_add(f, "events", events);
                if (rigd_client_call(observer, "subscribe", f, 10000, &result, err, sizeof(err)) < 0) {
                        fprintf(stderr, "subscribe: %s; kill → free of client %d not measured\n", err, index);
                        rigd_client_free(observer);
                        observer = NULL;
                }
                json_object_put(result);
        }

        atomic_store(&v->is_killed, true);
        int64_t t_kill = now_ns();
        atomic_store(&v->kill_ns, t_kill);
        kill(atomic_load(&v->pid), SIGKILL);
        if (!observer)
                return;

        int64_t deadline = t_kill + 10 * (int64_t)1000000000;
        while (now_ns() < deadline) {
                struct json_object *ev = NULL;
                int r = rigd_client_next_event(observer, (int)((deadline - now_ns()) / 1000000) + 1, &ev);
                if (r <= 0)
                        break;
                bool is_it = json_has_string(ev, "action", "released") && json_has_string(ev, "id", v->lease_id);
                json_object_put(ev);
                if (is_it) {
                        v->freed_ns = now_ns();
                        break;
                }
        }
        if (!v->freed_ns)
                fprintf(stderr, "no \"released\" event for %s of killed client %d within 10 s\n", v->lease_id, index);
        rigd_client_free(observer);
}

static void kill_all_clients(struct stress *s)
{
        for (int i = 0; i < s->o.n_clients; i++) {
                struct client_slot *c = &s->sh->clients[i];
                if (!c->is_reaped && atomic_load(&c->pid) > 0) {
                        atomic_store(&c->is_killed, true);
                        kill(atomic_load(&c->pid), SIGKILL);
                }
        }
}

/* Reaps clients, kills victims when they are ready, until every client is gone. Returns false
 * when the run had to be cut short (rigd died, or the deadline passed). */
static bool clients_supervise(struct stress *s, int64_t deadline)
{
        int n_left = s->o.n_clients;
        bool is_ok = true;
        while (n_left > 0) {
                int status;
                pid_t pid;
                while ((pid = waitpid(-1, &status, WNOHANG)) > 0) {
                        if (s->rigd_pid && pid == s->rigd_pid) {
                                s->is_rigd_reaped = true;
                                s->rigd_status = status;
                                fprintf(stderr, "FAIL: rigd exited during the run (status 0x%x)\n", status);
                                kill_all_clients(s);
                                is_ok = false;
                                continue;
                        }
                        int i = client_by_pid(s, pid);
                        if (i < 0)
                                continue;
                        s->sh->clients[i].is_reaped = true;
                        s->sh->clients[i].status = status;
                        n_left--;
                }
                for (int i = 0; i < s->o.n_clients && is_ok; i++) {
                        struct client_slot *c = &s->sh->clients[i];
                        int phase = atomic_load(&c->phase);
                        if (!c->is_reaped && !atomic_load(&c->is_killed) &&
                            (phase == PHASE_HOLDING_TO_DIE || phase == PHASE_WAITING_TO_DIE))
                                victim_kill(s, i);
                }
                if (is_ok && now_ns() > deadline) {
                        fprintf(stderr, "FAIL: %d client(s) still running after %d s; killing them\n", n_left,
                                s->o.deadline_s);
                        for (int i = 0, n = 0; i < s->o.n_clients && n < 10; i++) {
                                struct client_slot *c = &s->sh->clients[i];
                                if (c->is_reaped)
                                        continue;
                                fprintf(stderr, "  client %d (pid %d): %d of %d cycles, phase %d\n", i,
                                        atomic_load(&c->pid), atomic_load(&c->cycles_done), s->o.n_cycles,
                                        atomic_load(&c->phase));
                                n++;
                        }
                        kill_all_clients(s);
                        is_ok = false;
                }
                if (n_left > 0)
                        sleep_ns(1000000);
        }
        return is_ok;
}

static int by_value(const void *a, const void *b)
{
        int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
        return (x > y) - (x < y);
}

/* The q-quantile of sorted t[0..n), nearest rank. */
static double quantile_ms(const int64_t *t, size_t n, double q)
{
        if (n == 0)
                return 0;
        size_t k = (size_t)ceil(q * (double)n);
        k = k == 0 ? 0 : k - 1;
        return (double)t[k < n ? k : n - 1] / 1e6;
}

static void print_spread(const char *what, int64_t *t, size_t n)
{
        qsort(t, n, sizeof(*t), by_value);
        if (n == 0)
                printf("%s: none measured\n", what);
        else
                printf("%s: n=%zu, median %.2f ms, max %.2f ms\n", what, n, quantile_ms(t, n, 0.5),
                       quantile_ms(t, n, 1.0));
}

/* Chooses the victims: kill_percent of the clients, every fourth of them killed about when its
 * request reaches rigd (waiting in the queue, or at any point just after), the rest while holding. */
static void victims_choose(struct stress *s)
{
        uint64_t rng = rand_seed(s->o.seed, UINT64_MAX);
        int n_victims = s->o.n_clients * s->o.kill_percent / 100;
        for (int k = 0; k < n_victims; k++) {
                int i;
                do
                        i = (int)(rand_next(&rng) % (uint64_t)s->o.n_clients);
                while (s->sh->clients[i].victim != VICTIM_NONE);
                s->sh->clients[i].victim = k % 4 == 3 ? VICTIM_WAITING : VICTIM_HOLDING;
                s->sh->clients[i].kill_cycle = (int)(rand_next(&rng) % (uint64_t)s->o.n_cycles);
        }
}

static int shared_map(struct stress *s)
{
        size_t n = (size_t)s->o.n_clients;
        size_t off_clients = (sizeof(struct shared) + 63) / 64 * 64;
        size_t off_latency = off_clients + (n * sizeof(struct client_slot) + 63) / 64 * 64;
        s->sh_bytes = off_latency + n * (size_t)s->o.n_cycles * sizeof(int64_t);
        void *p = mmap(NULL, s->sh_bytes, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
        if (p == MAP_FAILED) {
                fprintf(stderr, "mmap of %zu bytes: %s\n", s->sh_bytes, strerror(errno));
                return -errno;
        }
        /* An anonymous mapping is zeroed: every atomic starts at 0, every phase at PHASE_RUNNING. */
        s->sh = p;
        s->sh->clients = (struct client_slot *)((char *)p + off_clients);
        s->sh->latency_ns = (int64_t *)((char *)p + off_latency);
        atomic_flag_clear(&s->sh->has_first_error);
        return 0;
}

/* Every check after the run; returns the number that failed. */
static int results_check(struct stress *s, bool is_run_ok)
{
        struct shared *sh = s->sh;
        int n_failed = !is_run_ok;

        /* Double grants, told apart from a holder that died of something other than our SIGKILL. */
        int n_conflicts = atomic_load(&sh->n_conflicts);
        for (int k = 0; k < n_conflicts && k < MAX_CONFLICTS; k++) {
                const struct conflict *c = &sh->conflicts[k];
                int i = client_by_pid(s, c->holder);
                bool has_crashed = i >= 0 && !atomic_load(&sh->clients[i].is_killed) && sh->clients[i].is_reaped &&
                                   WIFSIGNALED(sh->clients[i].status);
                fprintf(stderr, "FAIL: GPU %s granted to pid %d (%s) while pid %d held it%s\n", s->pci[c->gpu],
                        c->grantee, c->lease_id, c->holder,
                        has_crashed ? " — that holder died of a signal nobody sent (below)" : ": a double grant");
        }
        if (n_conflicts > MAX_CONFLICTS)
                fprintf(stderr, "FAIL: %d such grants in all\n", n_conflicts);
        n_failed += n_conflicts > 0;
        if (atomic_load(&sh->n_bad_grants)) {
                fprintf(stderr, "FAIL: %d grant(s) named other GPUs than asked for (count, unknown or repeated)\n",
                        atomic_load(&sh->n_bad_grants));
                n_failed++;
        }

        /* Every client either was killed by us, or exited 0 after all its cycles. */
        int n_killed = 0, n_killed_holding = 0, n_incomplete = 0;
        for (int i = 0; i < s->o.n_clients; i++) {
                const struct client_slot *c = &sh->clients[i];
                if (atomic_load(&c->is_killed)) {
                        n_killed++;
                        n_killed_holding += c->victim == VICTIM_HOLDING;
                        if (!WIFSIGNALED(c->status) || WTERMSIG(c->status) != SIGKILL)
                                fprintf(stderr, "note: client %d was to be killed but ended with status 0x%x\n", i,
                                        c->status);
                        continue;
                }
                bool is_clean = WIFEXITED(c->status) && WEXITSTATUS(c->status) == 0;
                if (!is_clean || atomic_load(&c->cycles_done) != s->o.n_cycles) {
                        if (n_incomplete < 10)
                                fprintf(stderr, "FAIL: client %d (pid %d) %s %d: %d of %d cycles\n", i,
                                        atomic_load(&c->pid), WIFSIGNALED(c->status) ? "died of signal" : "exited",
                                        WIFSIGNALED(c->status) ? WTERMSIG(c->status) : WEXITSTATUS(c->status),
                                        atomic_load(&c->cycles_done), s->o.n_cycles);
                        n_incomplete++;
                }
        }
        n_failed += n_incomplete > 0;

        /* Errors: with wait_ms far above any queueing here, rigd owes every request a grant and
         * every release a yes, so no error code is expected. */
        uint64_t n_errors = 0;
        for (int e = 0; e < N_ERRNO; e++)
                n_errors += atomic_load(&sh->n_errors[e]);
        if (n_errors) {
                fprintf(stderr, "FAIL: %" PRIu64 " failed call(s):", n_errors);
                for (int e = 0; e < N_ERRNO; e++)
                        if (atomic_load(&sh->n_errors[e]))
                                fprintf(stderr, " %s %" PRIu64, errno_name(e), (uint64_t)atomic_load(&sh->n_errors[e]));
                fprintf(stderr, "\n  the first: %s\n", sh->first_error);
                n_failed++;
        }
        printf("errors: %s\n", n_errors ? "see above" : "none");
        printf("clients killed: %d (%d while holding a lease), %d of %d left alive finished all %d cycles\n",
               n_killed, n_killed_holding, s->o.n_clients - n_killed - n_incomplete, s->o.n_clients - n_killed,
               s->o.n_cycles);

        /* rigd: alive, answering, every lease ended (the closes of the killed clients are handled
         * in rigd's own time, so poll a while), and every GPU grantable at once. */
        struct rigd_client *c = NULL;
        if (!rigd_is_alive(s) || rigd_connect(s, 5000, &c) < 0) {
                fprintf(stderr, "FAIL: rigd is gone after the run\n");
                return n_failed + 1;
        }
        int n_leases = -1;
        int64_t deadline = now_ns() + 5 * (int64_t)1000000000;
        struct json_object *leases = NULL;
        for (;;) {
                json_object_put(leases);
                leases = NULL;
                n_leases = rigd_count_leases(c, &leases);
                if (n_leases <= 0 || now_ns() > deadline)
                        break;
                sleep_ns(20 * 1000000);
        }
        if (n_leases != 0) {
                fprintf(stderr, "FAIL: rigd still lists %d lease(s) 5 s after the last client ended: %s\n", n_leases,
                        leases ? json_object_to_json_string_ext(leases, JSON_C_TO_STRING_PLAIN) : "(no answer)");
                n_failed++;
        } else {
                printf("leases after the run: none\n");
                struct rigd_lease_options lo = { .count = s->n_gpus, .holder = "stress: the whole machine" };
                struct json_object *grant = NULL, *id;
                char err[512];
                int r = rigd_client_lease(c, &lo, &grant, err, sizeof(err));
                if (r < 0) {
                        fprintf(stderr, "FAIL: all %zu GPUs at once, without waiting: %s\n", s->n_gpus, err);
                        n_failed++;
                } else if (json_object_object_get_ex(grant, "id", &id) && json_object_is_type(id, json_type_string)) {
                        r = rigd_client_release(c, json_object_get_string(id), err, sizeof(err));
                        if (r < 0) {
                                fprintf(stderr, "FAIL: releasing the whole machine: %s\n", err);
                                n_failed++;
                        }
                }
                json_object_put(grant);
        }
        json_object_put(leases);
        rigd_client_free(c);
        return n_failed;
}

static void results_print(struct stress *s, int64_t elapsed_ns)
{
        struct shared *sh = s->sh;
        size_t n_lat = 0, n_all = (size_t)s->o.n_clients * (size_t)s->o.n_cycles;
        int64_t *lat = malloc(n_all * sizeof(*lat));
        int64_t *freed = malloc((size_t)s->o.n_clients * sizeof(*freed));
        int64_t *regrant = malloc((size_t)s->o.n_clients * sizeof(*regrant));
        if (!lat || !freed || !regrant) {
                free(lat);
                free(freed);
                free(regrant);
                return;
        }
        for (size_t i = 0; i < n_all; i++)
                if (sh->latency_ns[i] > 0)
                        lat[n_lat++] = sh->latency_ns[i];
        size_t n_freed = 0, n_regrant = 0;
        for (int i = 0; i < s->o.n_clients; i++) {
                const struct client_slot *c = &sh->clients[i];
                int64_t t_kill = atomic_load(&c->kill_ns);
                if (c->victim != VICTIM_HOLDING || !t_kill)
                        continue;
                if (c->freed_ns)
                        freed[n_freed++] = c->freed_ns - t_kill;
                if (atomic_load(&c->regrant_ns))
                        regrant[n_regrant++] = atomic_load(&c->regrant_ns) - t_kill;
        }
        qsort(lat, n_lat, sizeof(*lat), by_value);
        double seconds = (double)elapsed_ns / 1e9;
        printf("grants: %zu in %.2f s: %.0f grants/s\n", n_lat, seconds, seconds > 0 ? (double)n_lat / seconds : 0);
        printf("grant latency (request sent → grant received): p50 %.2f ms, p99 %.2f ms, max %.2f ms\n",
               quantile_ms(lat, n_lat, 0.5), quantile_ms(lat, n_lat, 0.99), quantile_ms(lat, n_lat, 1.0));
        print_spread("kill → GPU free (SIGKILL sent → rigd's \"released\" event received)", freed, n_freed);
        print_spread("kill → its GPU granted again (SIGKILL sent → another client's grant received)", regrant,
                     n_regrant);
        free(lat);
        free(freed);
        free(regrant);
}

static void usage(FILE *f)
{
        fprintf(f, "Usage: stress_leases (--rigd PATH --root DIR | --socket PATH) [OPTIONS]\n\n"
                   "  --rigd PATH        the rigd to start (default: $RIGD)\n"
                   "  --root DIR         the fixture machine it serves (tests/fixtures/machines/NAME/root)\n"
                   "  --socket PATH      use the rigd serving PATH instead of starting one\n"
                   "  --clients N        client processes (200)\n"
                   "  --cycles N         lease → hold → release cycles each (50)\n"
                   "  --max-count N      each lease asks for 1..N GPUs (4, at most the machine's)\n"
                   "  --kill-percent P   clients SIGKILLed during one of their cycles (10)\n"
                   "  --hold-us N        a lease is held 0..N µs (100)\n"
                   "  --wait-ms N        each request's wait_ms (60000)\n"
                   "  --seed N           (1)\n"
                   "  --deadline-s N     give up and fail after N s (300)\n");
}

static int parse_options(struct options *o, int argc, char **argv)
{
        static const struct option options[] = {
                { "rigd", required_argument, NULL, 'r' },
                { "root", required_argument, NULL, 'R' },
                { "socket", required_argument, NULL, 's' },
                { "clients", required_argument, NULL, 'c' },
                { "cycles", required_argument, NULL, 'n' },
                { "max-count", required_argument, NULL, 'k' },
                { "kill-percent", required_argument, NULL, 'K' },
                { "hold-us", required_argument, NULL, 'H' },
                { "wait-ms", required_argument, NULL, 'w' },
                { "seed", required_argument, NULL, 'S' },
                { "deadline-s", required_argument, NULL, 'd' },
                { "help", no_argument, NULL, 'h' },
                { 0 }
        };
        *o = (struct options){ .rigd_path = getenv("RIGD"), .n_clients = 200, .n_cycles = 50, .max_count = 4,
                               .kill_percent = 10, .hold_us = 100, .wait_ms = 60000, .seed = 1, .deadline_s = 300 };
        int ch;
        while ((ch = getopt_long(argc, argv, "h", options, NULL)) != -1) {
                char *end = NULL;
                long long v = optarg ? strtoll(optarg, &end, 10) : 0;
                bool is_number = optarg && *optarg && *end == '\0' && v >= 0 && v <= INT32_MAX;
                switch (ch) {
                case 'r': o->rigd_path = optarg; continue;
                case 'R': o->root = optarg; continue;
                case 's': o->socket_path = optarg; continue;
                case 'h': usage(stdout); exit(0);
                case '?': usage(stderr); return -EINVAL;
                }
                if (!is_number) {
                        fprintf(stderr, "stress_leases: '%s' is not a number\n", optarg);
                        return -EINVAL;
                }
                switch (ch) {
                case 'c': o->n_clients = (int)v; break;
                case 'n': o->n_cycles = (int)v; break;
                case 'k': o->max_count = (int)v; break;
                case 'K': o->kill_percent = (int)v; break;
                case 'H': o->hold_us = (int)v; break;
                case 'w': o->wait_ms = (uint32_t)v; break;
                case 'S': o->seed = (uint64_t)v; break;
                case 'd': o->deadline_s = (int)v; break;
                }
        }
        if (optind < argc || (!o->socket_path && (!o->rigd_path || !o->root)) || o->n_clients < 1 ||
            o->n_cycles < 1 || o->max_count < 1 || o->kill_percent > 100 || o->wait_ms > PROTO_MAX_WAIT_MS) {
                usage(stderr);
                return -EINVAL;
        }
        return 0;
}

int main(int argc, char **argv)
{
        struct stress s = { .go_fd = -1 };
        if (parse_options(&s.o, argc, argv) < 0)
                return 2;
        signal(SIGPIPE, SIG_IGN);
        setvbuf(stdout, NULL, _IOLBF, 0);       /* the numbers and the failures in the order they came */

        struct rigd_client *c = NULL;
        if (s.o.socket_path)
                strscpy(s.socket_path, s.o.socket_path, sizeof(s.socket_path));
        else if (rigd_start(&s) < 0)
                return 1;
        int r = rigd_connect(&s, 30000, &c);
        if (r == 0)
                r = rigd_read_gpus(&s, c);
        rigd_client_free(c);    /* the clients must not inherit it */
        if (r == 0 && s.n_gpus == 0) {
                fprintf(stderr, "rigd serves no GPUs\n");
                r = -ENODEV;
        }
        if (r == 0)
                r = shared_map(&s);
        if (r < 0) {
                print_rigd_log(&s);
                rigd_stop(&s);
                return 1;
        }
        if ((size_t)s.o.max_count > s.n_gpus)
                s.o.max_count = (int)s.n_gpus;
        victims_choose(&s);

        printf("stress.leases: %d clients × %d cycles against %s%s on %zu GPUs; each lease 1..%d GPU(s), held "
               "0..%d µs, wait_ms %u; %d%% of the clients killed; seed %" PRIu64 "\n",
               s.o.n_clients, s.o.n_cycles, s.rigd_pid ? "rigd on " : "the rigd at ",
               s.rigd_pid ? s.o.root : s.socket_path, s.n_gpus, s.o.max_count, s.o.hold_us, s.o.wait_ms,
               s.o.kill_percent, s.o.seed);
        fflush(stdout);
        fflush(stderr);

        /* Every client connects, then blocks on the pipe until the parent closes its end: the
         * clock starts with all of them connected. */
        int go[2];
        if (pipe2(go, O_CLOEXEC) < 0) {
                fprintf(stderr, "pipe: %s\n", strerror(errno));
                rigd_stop(&s);
                return 1;
        }
        s.go_fd = go[0];
        int n_forked = 0;
        pid_t parent = getpid();
        for (int i = 0; i < s.o.n_clients; i++) {
                pid_t pid = fork();
                if (pid < 0) {
                        fprintf(stderr, "fork of client %d: %s\n", i, strerror(errno));
                        break;
                }
                if (pid == 0) {
                        close(go[1]);
                        if (prctl(PR_SET_PDEATHSIG, SIGKILL) < 0 || getppid() != parent)
                                _exit(127);
                        atomic_store(&s.sh->clients[i].pid, (int)getpid());
                        exit(client_run(&s, i));
                }
                atomic_store(&s.sh->clients[i].pid, (int)pid);
                n_forked++;
        }
        close(go[0]);
        if (n_forked < s.o.n_clients) {
                close(go[1]);
                kill_all_clients(&s);
                for (int i = 0; i < n_forked; i++)
                        waitpid(atomic_load(&s.sh->clients[i].pid), NULL, 0);
                rigd_stop(&s);
                return 1;
        }
        int64_t t_start = now_ns(), cpu_start = rigd_cpu_ns(&s);
        close(go[1]);
        bool is_run_ok = clients_supervise(&s, t_start + (int64_t)s.o.deadline_s * 1000000000);
        int64_t elapsed = now_ns() - t_start, cpu = rigd_cpu_ns(&s);

        results_print(&s, elapsed);
        if (cpu_start >= 0 && cpu >= 0)     /* near 100%: rigd's one thread is what limits grants/s */
                printf("rigd's CPU time during the run: %.2f s, %.0f%% of one core\n", (double)(cpu - cpu_start) / 1e9,
                       100.0 * (double)(cpu - cpu_start) / (double)elapsed);
        int n_failed = results_check(&s, is_run_ok);
        if (rigd_stop(&s) < 0)
                n_failed++;
        if (s.rigd_pid && (!WIFEXITED(s.rigd_status) || WEXITSTATUS(s.rigd_status) != 0)) {
                fprintf(stderr, "FAIL: rigd ended with status 0x%x (exit %d, signal %d)\n", s.rigd_status,
                        WIFEXITED(s.rigd_status) ? WEXITSTATUS(s.rigd_status) : -1,
                        WIFSIGNALED(s.rigd_status) ? WTERMSIG(s.rigd_status) : 0);
                n_failed++;
        }
        if (n_failed) {
                print_rigd_log(&s);     /* and the directory stays, with the whole log */
        } else if (s.rigd_pid) {
                unlink(s.log_path);
                unlink(s.socket_path);
                rmdir(s.dir);
        }
        printf("%s\n", n_failed ? "FAILED" : "ok");
        munmap(s.sh, s.sh_bytes);
        return n_failed ? 1 : 0;
}
