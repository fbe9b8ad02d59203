/* bench_kmsg.c — what classifying the kernel log costs: a million lines of mixed log (ordinary
 * kernel noise with amdgpu/NVRM/drm chatter that is not a fault, 1% GPU faults, in every format
 * the classifier reads: dmesg, dmesg -T, journalctl short and short-iso, /dev/kmsg), classified
 * REPS times. Prints lines/s (best and median of the reps), MB/s and the faults found. Never
 * asserts on time.
 *
 *   bench_kmsg [reps] [FILE]   default 5 reps over the generated log; FILE: its lines instead
 *   bench_kmsg --save FILE     write the generated log to FILE (to time gpuctl faults --classify) */
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "kmsg.h"

enum { N_LINES = 1000000, FAULT_EVERY = 100 };

/* Real kernel lines (tests/fixtures/kmsg and the reports it cites), without their timestamps. */
static const char *const noise[] = {
        "usb 1-5: new low-speed USB device number 88 using xhci_hcd",
        "usb 1-5: New USB device found, idVendor=ffff, idProduct=0000, bcdDevice= 1.00",
        "hid-generic 0003:FFFF:0000.0059: hiddev97,hidraw1: USB HID v1.00 Device [APC by S.E.     SMV3000CAI] on usb-0000:00:14.0-5/input0",
        "EXT4-fs (md127p3): re-mounted 0f3cd65a-338b-4574-bba3-ecef214e1917 r/w. Quota mode: none.",
        "mlx5_core 0000:ab:00.0 mlx5_5: Port: 1 Link ACTIVE",
        "workqueue: ib_cache_event_task [ib_core] hogged CPU for >10000us 4 times, consider switching to WQ_UNBOUND",
        "iwlwifi 0000:04:00.0: Error sending STATISTICS_CMD: time out after 2000ms.",
        "sched: RT throttling activated",
        "rfkill: input handler enabled",
        "Lockdown: systemd-logind: hibernation is restricted; see man kernel_lockdown.7",
        "pcieport 0000:00:01.1: AER: aer_layer=Data Link Layer, aer_agent=Receiver ID",
        "audit: type=1400 audit(1700000000.123:42): apparmor=\"DENIED\" operation=\"open\" profile=\"snap.firefox\"",
        "IPv6: ADDRCONF(NETDEV_CHANGE): enp5s0: link becomes ready",
        "nvme nvme0: 32/0/0 default/read/poll queues",
        "show_signal_msg: 2 callbacks suppressed",
        "tokio-rt-worker[3976]: segfault at 29c ip 0000758b29614d2c sp 0000758b099fe2e0 error 6 in libwayland-client.so.0.23.1[758b29612000+6000]",
        "fbcon: Taking over console",
        "nvidia-nvlink: Nvlink Core is being initialized, major device number 235",
        "kfd kfd: amdgpu: added device 1002:73bf",
        "[drm] amdgpu kernel modesetting enabled.",
        "[drm] PCIE GART of 512M enabled (table at 0x0000008000900000).",
        "[drm] kiq ring mec 2 pipe 1 q 0",
        "[drm:amdgpu_dm_commit_planes [amdgpu]] *ERROR* Waiting for fences timed out!",
        "amdgpu: Virtual CRAT table created for CPU",
        "amdgpu: Failed to quiesce KFD",
        "amdgpu 0000:03:00.0: amdgpu: ring gfx_0.0.0 uses VM inv eng 0 on hub 0",
        "amdgpu 0000:03:00.0: amdgpu: SMU is resumed successfully!",
        "amdgpu 0000:03:00.0: amdgpu: Failed to export SMU metrics table!",
        "amdgpu 0000:03:00.0: amdgpu:   in page starting at address 0x00007febd6383000 from client 10",
        "amdgpu 0000:03:00.0: amdgpu: GCVM_L2_PROTECTION_FAULT_STATUS:0x00841B5B",
        "amdgpu 0000:03:00.0: amdgpu: \t MORE_FAULTS: 0x1",
        "amdgpu 0000:03:00.0: amdgpu: RAS: optional ras ta ucode is not available",
        "amdgpu 0000:03:00.0: Fence fallback timer expired on ring gfx_0.0.0",
        "amdgpu 0000:03:00.0: amdgpu: GPU reset succeeded, trying to resume",
        "amdgpu 0000:c3:00.0: amdgpu: socket: 0, die: 0, 3 uncorrectable hardware errors detected in total in umc block",
        "NVRM: GPU at PCI:0000:01:00: GPU-8a47641b-dff6-f09f-618c-c3eb58fb430d",
        "NVRM: loading NVIDIA UNIX Open Kernel Module for x86_64  570.158.01  Release Build",
        "nvidia-nvswitch1: SXid (PCI:0000:06:00.0): 20034, Fatal, Link 48 LTSSM Fault Up",
        "Code: 4c 8b 35 c2 7a 03 00 49 8b 36 e8 0a 51 03 00 49 8b 36 bf 0a 00 00 00 e8 1d 52 03 00 48 89 1d fe b5",
};

static const char *const faults[] = {
        "amdgpu 0000:03:00.0: amdgpu: MES failed to respond to msg=REMOVE_QUEUE",
        "amdgpu: failed to add hardware queue to MES, doorbell=0x1000",
        "amdgpu 0000:28:00.0: ring gfx_0.0.0 timeout, signaled seq=57638, emitted seq=57641",
        "[drm:amdgpu_job_timedout [amdgpu]] *ERROR* ring sdma0 timeout, signaled seq=1255, emitted seq=1257",
        "amdgpu 0000:0e:00.0: amdgpu: [gfxhub] page fault (src_id:0 ring:173 vmid:8 pasid:32791)",
        "amdgpu 0000:08:00.0: amdgpu: GPU reset begin!",
        "amdgpu 0000:08:00.0: amdgpu: GPU reset(2) succeeded!",
        "amdgpu 0000:e3:00.0: amdgpu: GPU reset(1) failed",
        "[drm] VRAM is lost due to GPU reset!",
        "amdgpu 0000:1c:00.0: {1}uncorrectable hardware error(ERREVENT_ATHUB_INTERRUPT) detected!",
        "amdgpu 0000:0b:00.0: amdgpu: SMU: I'm not done with your previous command: SMN_C2PMSG_66:0x00000012 SMN_C2PMSG_82:0x00000005",
        "NVRM: Xid (PCI:0000:07:00): 48, pid='<unknown>', name=<unknown>, An uncorrectable double bit error (DBE) has been detected on GPU in the framebuffer",
        "NVRM: Xid (PCI:0000:01:00): 79, pid='<unknown>', name=<unknown>, GPU has fallen off the bus.",
        "NVRM: Xid (PCI:0000:cb:00): 13, pid='<unknown>', name=<unknown>, Graphics SM Warp Exception on (GPC 7, TPC 7, SM 0): Illegal Instruction Parameter",
};

#define ELEMENTS(a) (sizeof(a) / sizeof((a)[0]))

struct log {
        char *buf;
        size_t size, cap, n_lines;
        size_t *start, *len;
};

static void append(struct log *l, const char *s, size_t n)
{
        if (l->size + n > l->cap) {
                l->cap = (l->size + n) * 2;
                l->buf = realloc(l->buf, l->cap);
                if (!l->buf) {
                        perror("bench_kmsg");
                        exit(1);
                }
        }
        memcpy(l->buf + l->size, s, n);
        l->size += n;
}

static uint32_t next(uint32_t *state)
{
        *state = *state * 1664525u + 1013904223u;
        return *state >> 8;
}

/* One line in one of five formats; t is seconds since boot. */
static void generate_line(struct log *l, const char *msg, unsigned format, double t, uint32_t *rng)
{
        static const char *const months[] = { "Jan", "Feb", "Mar", "Nov", "Dec", "kvě" };
        static const char *const days[] = { "Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun" };
        char line[512];
        int s = (int)t;
        int n;
        switch (format) {
        case 0:
                n = snprintf(line, sizeof(line), "[%12.6f] %s\n", t, msg);
                break;
        case 1:
                n = snprintf(line, sizeof(line), "[%s Nov %2d %02d:%02d:%02d 2023] %s\n", days[s / 86400 % 7],
                             1 + s / 86400 % 28, s / 3600 % 24, s / 60 % 60, s % 60, msg);
                break;
        case 2:
                /* one journal line in eight is from a process, not the kernel */
                n = snprintf(line, sizeof(line), "%s %2d %02d:%02d:%02d gpu-node-7 %s: %s\n",
                             months[next(rng) % ELEMENTS(months)], 1 + s / 86400 % 28, s / 3600 % 24, s / 60 % 60,
                             s % 60, next(rng) % 8 ? "kernel" : "systemd[1]", msg);
                break;
        case 3:
                n = snprintf(line, sizeof(line), "2023-11-%02dT%02d:%02d:%02d.%06d+01:00 gpu-node-7 kernel: %s\n",
                             1 + s / 86400 % 28, s / 3600 % 24, s / 60 % 60, s % 60, (int)((t - s) * 1e6), msg);
                break;
        default:
                n = snprintf(line, sizeof(line), "%u,%zu,%lld,-;%s\n", 3 + next(rng) % 4, l->n_lines,
                             (long long)(t * 1e6), msg);
                break;
        }
        if (n >= (int)sizeof(line))
                n = sizeof(line) - 1;
        append(l, line, (size_t)n);
        l->n_lines++;
        if (format == 4 && (msg[0] == 'a' || msg[0] == 'N')) {
                append(l, " SUBSYSTEM=pci\n", 15);      /* dev_printk's dictionary line */
                l->n_lines++;
        }
}

static void generate(struct log *l, size_t *n_faults)
{
        uint32_t rng = 12345;
        double t = 5.0;
        *n_faults = 0;
        for (size_t i = 0; l->n_lines < N_LINES; i++) {
                bool is_fault = i % FAULT_EVERY == FAULT_EVERY - 1;
                const char *msg = is_fault ? faults[next(&rng) % ELEMENTS(faults)] : noise[next(&rng) % ELEMENTS(noise)];
                unsigned format = next(&rng) % 5;
                size_t before = l->size;
                generate_line(l, msg, format, t, &rng);
                /* a journal fault line another process wrote is not a fault */
                if (is_fault && !(format == 2 && strstr(l->buf + before, "systemd[1]: ")))
                        (*n_faults)++;
                t += (next(&rng) % 1000) * 1e-4;
        }
}

static void index_lines(struct log *l)
{
        size_t n = 0;
        for (size_t i = 0; i < l->size; i++)
                n += l->buf[i] == '\n';
        l->start = malloc((n + 1) * sizeof(size_t));
        l->len = malloc((n + 1) * sizeof(size_t));
        n = 0;
        for (size_t i = 0; i < l->size;) {
                const char *nl = memchr(l->buf + i, '\n', l->size - i);
                size_t end = nl ? (size_t)(nl - l->buf) + 1 : l->size;
                l->start[n] = i;
                l->len[n] = end - i;
                n++;
                i = end;
        }
        l->n_lines = n;
}

static double now_s(void)
{
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static int by_value(const void *a, const void *b)
{
        double x = *(const double *)a, y = *(const double *)b;
        return (x > y) - (x < y);
}

int main(int argc, char **argv)
{
        if (argc == 3 && strcmp(argv[1], "--save") == 0) {
                struct log l = { 0 };
                size_t n_faults;
                generate(&l, &n_faults);
                FILE *f = fopen(argv[2], "w");
                if (!f || fwrite(l.buf, 1, l.size, f) != l.size || fclose(f) != 0) {
                        perror(argv[2]);
                        return 1;
                }
                printf("%s: %zu lines, %zu faults\n", argv[2], l.n_lines, n_faults);
                free(l.buf);
                return 0;
        }
        int reps = argc > 1 ? atoi(argv[1]) : 5;
        if (reps < 1)
                reps = 1;
        struct log l = { 0 };
        size_t n_expected = 0;
        if (argc > 2) {
                FILE *f = fopen(argv[2], "r");
                if (!f) {
                        perror(argv[2]);
                        return 1;
                }
                char chunk[65536];
                size_t n;
                while ((n = fread(chunk, 1, sizeof(chunk), f)) > 0)
                        append(&l, chunk, n);
                fclose(f);
        } else {
                generate(&l, &n_expected);
        }
        index_lines(&l);

        double *secs = malloc((size_t)reps * sizeof(double));
        size_t n_found = 0, per_kind[FAULT_KIND_COUNT] = { 0 };
        for (int r = 0; r < reps; r++) {
                size_t found = 0;
                struct fault f;
                double t0 = now_s();
                for (size_t i = 0; i < l.n_lines; i++)
                        if (kmsg_classify_line(l.buf + l.start[i], l.len[i], &f)) {
                                found++;
                                if (r == 0)
                                        per_kind[f.kind]++;
                        }
                secs[r] = now_s() - t0;
                n_found = found;
        }
        qsort(secs, (size_t)reps, sizeof(*secs), by_value);
        double best = secs[0], median = secs[reps / 2];

        printf("log: %zu lines, %.1f MB (%s)\n", l.n_lines, (double)l.size / 1e6,
               argc > 2 ? argv[2] : "generated: 5 formats, 1% faults, /dev/kmsg dictionary lines");
        if (argc > 2)
                printf("faults found: %zu\n", n_found);
        else
                printf("faults found: %zu (generated: %zu)\n", n_found, n_expected);
        for (int k = 0; k < FAULT_KIND_COUNT; k++)
                if (per_kind[k])
                        printf("  %-22s %zu\n", fault_kind_str((enum fault_kind)k), per_kind[k]);
        printf("classify, %d reps: best %.1f ms, median %.1f ms\n", reps, best * 1e3, median * 1e3);
        printf("lines/s: best %.2f M, median %.2f M; %.0f ns/line; %.0f MB/s\n", (double)l.n_lines / best / 1e6,
               (double)l.n_lines / median / 1e6, best / (double)l.n_lines * 1e9, (double)l.size / best / 1e6);
        free(secs);
        free(l.start);
        free(l.len);
        free(l.buf);
        return 0;
}
