/* health.c — the kernel log followed for GPU faults (DESIGN §4.5): every record is classified
 * (kmsg.c), kept in a bounded history, counted per GPU and kind, and moves the GPU's health
 * (ok → degraded → failed; a reset makes it recovering, and the probe after a successful reset makes
 * it ok). Holders of the GPU get a `fault` event at once. Live, /dev/kmsg is read from the oldest
 * record the kernel still has (history: no events) and then followed; under --root, <root>/dev/kmsg
 * is a growing file of kmsg records, followed with inotify, so tests append lines to fault a GPU. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/inotify.h>
#include <time.h>
#include <unistd.h>

#include <systemd/sd-journal.h>

#include "gpu_json.h"
#include "kmsg.h"
#include "log.h"
#include "rigd.h"
#include "util.h"

#define HEALTH_MAX_HISTORY 1000         /* faults kept for `gpuctl faults` */
#define HEALTH_RECORD_MAX 8192          /* a /dev/kmsg record, or a line of the root's file */

struct fault_record {
        struct fault fault;
        uint64_t line;                  /* 1-based: the how-manieth record rigd read */
        bool is_history;                /* read at start, before rigd was ready */
};

struct gpu_health_entry {
        char pci[GPU_PCI_LEN];
        enum gpu_health health;
        unsigned counts[FAULT_KIND_COUNT];
};

struct health_state {
        int fd;
        bool is_file;                   /* the root's regular file, not the kernel's device */
        sd_event_source *source;
        char pending[HEALTH_RECORD_MAX];        /* the file's unfinished last line */
        size_t n_pending;
        uint64_t n_lines;
        bool is_live;                   /* past the start: faults now raise events */
        struct fault_record history[HEALTH_MAX_HISTORY];        /* ring */
        size_t first, n_history;
        struct gpu_health_entry *gpus;
        size_t n_gpus;
};

static struct gpu_health_entry *entry_of(struct health_state *h, const char *pci)
{
        for (size_t i = 0; i < h->n_gpus; i++)
                if (streq(h->gpus[i].pci, pci))
                        return &h->gpus[i];
        struct gpu_health_entry *e = realloc(h->gpus, (h->n_gpus + 1) * sizeof(*e));
        if (!e)
                return NULL;
        h->gpus = e;
        e = &h->gpus[h->n_gpus++];
        memset(e, 0, sizeof(*e));
        strscpy(e->pci, pci, sizeof(e->pci));
        e->health = GPU_HEALTH_OK;
        return e;
}

/* What a fault does to the GPU's health; the current state when it changes nothing. */
static enum gpu_health next_health(enum gpu_health now, const struct fault *f)
{
        switch (f->kind) {
        case FAULT_GPU_RESET_BEGIN:
        case FAULT_GPU_RESET_OK:        /* ok again only after the probe that follows */
                return now == GPU_HEALTH_FAILED && f->kind == FAULT_GPU_RESET_BEGIN ? now : GPU_HEALTH_RECOVERING;
        case FAULT_GPU_RESET_FAILED:
                return GPU_HEALTH_FAILED;
        default:
                break;
        }
        if (f->kind == FAULT_NVIDIA_XID && f->xid == 79)
                return GPU_HEALTH_FAILED;       /* fallen off the bus */
        if (f->severity == FAULT_SEVERITY_ERROR && now == GPU_HEALTH_OK)
                return GPU_HEALTH_DEGRADED;
        return now;
}

static void set_health(struct rigd *d, struct gpu_health_entry *e, enum gpu_health to, const char *why)
{
        if (e->health == to)
                return;
        log_gpu(LOG_LEVEL_WARNING, e->pci, NULL, "GPU %s: health %s -> %s (%s)", e->pci, gpu_health_str(e->health),
                gpu_health_str(to), why);
        struct json_object *f = json_object_new_object();
        json_object_object_add(f, "gpu_pci", json_object_new_string(e->pci));
        json_object_object_add(f, "from", json_object_new_string(gpu_health_str(e->health)));
        json_object_object_add(f, "health", json_object_new_string(gpu_health_str(to)));
        json_object_object_add(f, "reason", json_object_new_string(why));
        e->health = to;
        server_broadcast(d, PROTO_EVENT_HEALTH, f);
        health_apply(d);
}

static void handle_fault(struct rigd *d, const struct fault *f)
{
        struct health_state *h = d->health;
        uint64_t line = h->n_lines;
        struct fault_record *rec = &h->history[(h->first + h->n_history) % HEALTH_MAX_HISTORY];
        if (h->n_history == HEALTH_MAX_HISTORY) {
                rec = &h->history[h->first];
                h->first = (h->first + 1) % HEALTH_MAX_HISTORY;
        } else {
                h->n_history++;
        }
        rec->fault = *f;
        rec->line = line;
        rec->is_history = !h->is_live;

        struct gpu_health_entry *e = f->gpu_pci[0] ? entry_of(h, f->gpu_pci) : NULL;
        if (e)
                e->counts[f->kind]++;
        if (!h->is_live) {
                /* History counts, but an old fault says nothing of the GPU now: health starts ok. */
                return;
        }
        enum log_level level = f->severity == FAULT_SEVERITY_ERROR ? LOG_LEVEL_ERROR
                             : f->severity == FAULT_SEVERITY_WARNING ? LOG_LEVEL_WARNING : LOG_LEVEL_INFO;
        log_gpu(level, f->gpu_pci[0] ? f->gpu_pci : NULL, fault_kind_str(f->kind), "GPU %s: %s: %s",
                f->gpu_pci[0] ? f->gpu_pci : "(unnamed)", fault_kind_str(f->kind), f->text);
        requests_fault(d, f, line);
        if (!e)
                return;
        set_health(d, e, next_health(e->health, f), fault_kind_str(f->kind));
        if (f->kind == FAULT_GPU_RESET_OK)
                rigd_rediscover_soon(d);        /* the probe: caps again, and ok if the GPU is there */
}

static void handle_line(struct rigd *d, const char *line, size_t len)
{
        struct health_state *h = d->health;
        if (len > 0 && line[0] == ' ')
                return;         /* a kmsg record's KEY=VALUE continuation */
        h->n_lines++;
        struct fault f;
        if (kmsg_classify_line(line, len, &f) == 1)
                handle_fault(d, &f);
}

/* /dev/kmsg hands out one record per read. */
static void read_device(struct rigd *d)
{
        struct health_state *h = d->health;
        char buf[HEALTH_RECORD_MAX];
        for (;;) {
                ssize_t n = read(h->fd, buf, sizeof(buf) - 1);
                if (n < 0 && errno == EPIPE)
                        continue;       /* records were overwritten before we read them */
                if (n < 0 && errno == EINTR)
                        continue;
                if (n <= 0)
                        return;
                size_t len = (size_t)n;
                const char *nl = memchr(buf, '\n', len);
                handle_line(d, buf, nl ? (size_t)(nl - buf) : len);
        }
}

/* The root's file: whatever was appended since the last read, split into lines. */
static void read_file(struct rigd *d)
{
        struct health_state *h = d->health;
        for (;;) {
                ssize_t n = read(h->fd, h->pending + h->n_pending, sizeof(h->pending) - h->n_pending);
                if (n < 0 && errno == EINTR)
                        continue;
                if (n <= 0)
                        return;
                h->n_pending += (size_t)n;
                char *start = h->pending, *end = h->pending + h->n_pending, *nl;
                while ((nl = memchr(start, '\n', (size_t)(end - start)))) {
                        handle_line(d, start, (size_t)(nl - start));
                        start = nl + 1;
                }
                h->n_pending = (size_t)(end - start);
                memmove(h->pending, start, h->n_pending);
                if (h->n_pending == sizeof(h->pending)) {
                        handle_line(d, h->pending, h->n_pending);       /* an overlong line: as far as it goes */
                        h->n_pending = 0;
                }
        }
}

static void read_log(struct rigd *d)
{
        struct health_state *h = d->health;
        if (h->is_file)
                read_file(d);
        else
                read_device(d);
}

static int on_device(sd_event_source *s, int fd, uint32_t revents, void *userdata)
{
        read_log(userdata);
        return 0;
}

static int on_file(sd_event_source *s, const struct inotify_event *event, void *userdata)
{
        read_log(userdata);
        return 0;
}

/* The journal's kernel messages of the newest boot, as history: they reach further back than the
 * kernel's ring buffer. Live, the system journal; under --root, <root>/var/log/journal. Returns how
 * many records were read (0: no journal, or nothing in it). */
static uint64_t read_journal_history(struct rigd *d)
{
        sd_journal *j = NULL;
        char dir[4096];
        snprintf(dir, sizeof(dir), "%s/var/log/journal", d->root);
        int r = streq(d->root, "/") ? sd_journal_open(&j, SD_JOURNAL_LOCAL_ONLY | SD_JOURNAL_SYSTEM)
                                    : access(dir, F_OK) == 0 ? sd_journal_open_directory(&j, dir, 0) : -ENOENT;
        if (r < 0)
                return 0;
        /* The newest kernel record names the boot whose history counts. */
        sd_id128_t boot;
        const void *data;
        size_t len;
        char match[64];
        if (sd_journal_add_match(j, "_TRANSPORT=kernel", 0) < 0 || sd_journal_seek_tail(j) < 0 ||
            sd_journal_previous(j) <= 0 || sd_journal_get_monotonic_usec(j, NULL, &boot) < 0) {
                sd_journal_close(j);
                return 0;
        }
        snprintf(match, sizeof(match), "_BOOT_ID=" SD_ID128_FORMAT_STR, SD_ID128_FORMAT_VAL(boot));
        sd_journal_add_match(j, match, 0);
        uint64_t n = 0;
        SD_JOURNAL_FOREACH(j) {
                if (sd_journal_get_data(j, "MESSAGE", &data, &len) < 0 || len < 8)
                        continue;
                /* As /dev/kmsg would give it: its time since boot, then the message. */
                uint64_t usec = 0;
                sd_id128_t entry_boot;  /* with NULL here the call fails for any boot but this one */
                sd_journal_get_monotonic_usec(j, &usec, &entry_boot);
                char line[HEALTH_RECORD_MAX];
                int n_line = snprintf(line, sizeof(line), "[%5llu.%06llu] %.*s", (unsigned long long)(usec / 1000000),
                                      (unsigned long long)(usec % 1000000), (int)(len - 8), (const char *)data + 8);
                handle_line(d, line, n_line < (int)sizeof(line) ? (size_t)n_line : sizeof(line) - 1);
                n++;
        }
        sd_journal_close(j);
        return n;
}

int health_start(struct rigd *d)
{
        struct health_state *h = calloc(1, sizeof(*h));
        if (!h)
                return log_error_errno(ENOMEM, "the fault watch");
        h->fd = -1;
        d->health = h;
        bool is_live = streq(d->root, "/");
        char path[4096];
        snprintf(path, sizeof(path), "%s/dev/kmsg", is_live ? "" : d->root);
        h->fd = open(path, O_RDONLY | O_CLOEXEC | (is_live ? O_NONBLOCK : 0));
        if (h->fd < 0) {
                /* No kernel log is no reason to stop serving leases. */
                log_warning_errno(errno, "opening %s: GPU faults are not followed", path);
                return 0;
        }
        h->is_file = !is_live;
        /* History from the journal when it has any (then the log is followed from its end, so no
         * record counts twice), else what the kernel's ring buffer, or the root's file, still holds. */
        uint64_t n_journal = read_journal_history(d);
        if (n_journal > 0)
                lseek(h->fd, 0, SEEK_END);
        else
                read_log(d);
        h->is_live = true;
        int r = h->is_file ? sd_event_add_inotify(d->event, &h->source, path, IN_MODIFY | IN_CLOSE_WRITE, on_file, d)
                           : sd_event_add_io(d->event, &h->source, h->fd, EPOLLIN, on_device, d);
        if (r < 0)
                return log_warning_errno(r, "following %s: GPU faults are not followed", path);
        log_info("following %s: %llu line(s) of history (from %s), %zu fault(s) in it", path,
                 (unsigned long long)h->n_lines, n_journal > 0 ? "the journal" : "the kernel log", h->n_history);
        return 0;
}

void health_stop(struct rigd *d)
{
        struct health_state *h = d->health;
        if (!h)
                return;
        sd_event_source_disable_unref(h->source);
        if (h->fd >= 0)
                close(h->fd);
        free(h->gpus);
        free(h);
        d->health = NULL;
}

void health_apply(struct rigd *d)
{
        struct health_state *h = d->health;
        for (size_t i = 0; h && d->machine && i < d->machine->n_gpus; i++) {
                struct gpu_info *g = &d->machine->gpus[i];
                struct gpu_health_entry *e = entry_of(h, g->pci);
                g->health = e ? e->health : GPU_HEALTH_OK;
        }
}

void health_after_probe(struct rigd *d)
{
        struct health_state *h = d->health;
        for (size_t i = 0; h && d->machine && i < d->machine->n_gpus; i++) {
                struct gpu_health_entry *e = entry_of(h, d->machine->gpus[i].pci);
                if (e && e->health == GPU_HEALTH_RECOVERING)
                        set_health(d, e, GPU_HEALTH_OK, "reset done and the GPU answers the probe");
        }
        health_apply(d);
}

struct json_object *health_to_json(struct rigd *d)
{
        struct health_state *h = d->health;
        struct json_object *faults = json_object_new_array();
        for (size_t i = 0; h && i < h->n_history; i++) {
                const struct fault_record *rec = &h->history[(h->first + i) % HEALTH_MAX_HISTORY];
                struct json_object *o = fault_to_json(&rec->fault, rec->line);
                json_object_object_add(o, "history", json_object_new_boolean(rec->is_history));
                json_object_array_add(faults, o);
        }
        struct json_object *gpus = json_object_new_array();
        for (size_t i = 0; d->machine && i < d->machine->n_gpus; i++) {
                const struct gpu_info *g = &d->machine->gpus[i];
                struct gpu_health_entry *e = h ? entry_of(h, g->pci) : NULL;
                struct json_object *o = json_object_new_object(), *counts = json_object_new_object();
                for (size_t k = 0; e && k < ELEMENTSOF(e->counts); k++)
                        if (e->counts[k])
                                json_object_object_add(counts, fault_kind_str((enum fault_kind)k),
                                                       json_object_new_int64(e->counts[k]));
                json_object_object_add(o, "index", json_object_new_int(g->index));
                json_object_object_add(o, "pci", json_object_new_string(g->pci));
                json_object_object_add(o, "health", json_object_new_string(gpu_health_str(g->health)));
                json_object_object_add(o, "counts", counts);
                json_object_array_add(gpus, o);
        }
        struct json_object *o = json_object_new_object();
        json_object_object_add(o, "following", json_object_new_boolean(h && h->source));
        json_object_object_add(o, "faults", faults);
        json_object_object_add(o, "gpus", gpus);
        return o;
}
