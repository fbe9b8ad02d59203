/* Unit tests of the kernel-log fault classifier: the corpus of real logs in
 * tests/fixtures/kmsg (every line of every file gives exactly the faults its .expected lists),
 * then each log format's prefixes and timestamps, the NVIDIA and RAS rules, and hostile input.
 * The corpus directory comes from $KMSG_CORPUS (ctest sets it) or argv[1]. */
#include <dirent.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "kmsg.h"

static const char *corpus_dir;

static int classify(const char *line, struct fault *f)
{
        memset(f, 0x5a, sizeof(*f));
        return kmsg_classify_line(line, strlen(line), f);
}

static const char *body(const struct fault *f)
{
        return f->text + f->body;
}

/* ---- the corpus ---- */

static int by_name(const void *a, const void *b)
{
        return strcmp(*(char *const *)a, *(char *const *)b);
}

/* "LINE KIND SEVERITY GPU XID TIME", as tests/fixtures/kmsg/README.md describes. */
static void format_expected(char *buf, size_t size, size_t line_no, const struct fault *f)
{
        char xid[16] = "-";
        if (f->kind == FAULT_NVIDIA_XID)
                snprintf(xid, sizeof(xid), "%d", f->xid);
        snprintf(buf, size, "%zu %s %s %s %s %s", line_no, fault_kind_str(f->kind),
                 fault_severity_str(f->severity), f->gpu_pci[0] ? f->gpu_pci : "-", xid,
                 f->time[0] ? f->time : "-");
}

struct corpus_count {
        size_t files, lines, faults;
        size_t per_prefix[4];   /* dmesg-, dmesg-T-, journal-, kmsg- */
};

/* Returns the number of mismatches, printing each. */
static size_t check_corpus_file(const char *dir, const char *name, struct corpus_count *count)
{
        char path[4096], expected_path[4096];
        snprintf(path, sizeof(path), "%s/%s", dir, name);
        snprintf(expected_path, sizeof(expected_path), "%s/%.*s.expected", dir, (int)(strlen(name) - 4), name);
        FILE *log = fopen(path, "r"), *exp = fopen(expected_path, "r");
        if (!log || !exp) {
                print_error("cannot open %s or %s\n", path, expected_path);
                if (log)
                        fclose(log);
                if (exp)
                        fclose(exp);
                return 1;
        }

        size_t mismatches = 0, line_no = 0, n_faults = 0;
        char *line = NULL, *want = NULL;
        size_t line_cap = 0, want_cap = 0;
        ssize_t len, want_len;
        while ((len = getline(&line, &line_cap, log)) >= 0) {
                line_no++;
                struct fault f;
                if (!kmsg_classify_line(line, (size_t)len, &f))
                        continue;
                n_faults++;
                char got[1024];
                format_expected(got, sizeof(got), line_no, &f);
                want_len = getline(&want, &want_cap, exp);
                if (want_len > 0 && want[want_len - 1] == '\n')
                        want[--want_len] = '\0';
                if (want_len < 0) {
                        print_error("%s:%zu: unexpected fault: %s\n", name, line_no, got);
                        mismatches++;
                } else if (strcmp(got, want) != 0) {
                        print_error("%s:%zu:\n    got      %s\n    expected %s\n", name, line_no, got, want);
                        mismatches++;
                }
        }
        while ((want_len = getline(&want, &want_cap, exp)) > 0) {
                print_error("%s: expected fault not reported: %s", name, want);
                mismatches++;
        }
        free(line);
        free(want);
        fclose(log);
        fclose(exp);

        count->files++;
        count->lines += line_no;
        count->faults += n_faults;
        if (strncmp(name, "dmesg-T-", 8) == 0)
                count->per_prefix[1] += n_faults;
        else if (strncmp(name, "dmesg-", 6) == 0)
                count->per_prefix[0] += n_faults;
        else if (strncmp(name, "journal-", 8) == 0)
                count->per_prefix[2] += n_faults;
        else if (strncmp(name, "kmsg-", 5) == 0)
                count->per_prefix[3] += n_faults;
        return mismatches;
}

static void test_corpus_gives_exactly_the_expected_faults(void **state)
{
        if (!corpus_dir)
                fail_msg("set KMSG_CORPUS to tests/fixtures/kmsg");
        DIR *d = opendir(corpus_dir);
        if (!d)
                fail_msg("cannot open the corpus %s", corpus_dir);
        char *names[256];
        size_t n = 0;
        struct dirent *de;
        while ((de = readdir(d)) && n < 256) {
                size_t len = strlen(de->d_name);
                if (len > 4 && strcmp(de->d_name + len - 4, ".log") == 0)
                        names[n++] = strdup(de->d_name);
        }
        closedir(d);
        qsort(names, n, sizeof(*names), by_name);

        struct corpus_count count = { 0 };
        size_t mismatches = 0;
        for (size_t i = 0; i < n; i++) {
                mismatches += check_corpus_file(corpus_dir, names[i], &count);
                free(names[i]);
        }
        print_message("corpus: %zu files, %zu lines, %zu faults\n", count.files, count.lines, count.faults);
        assert_int_equal(mismatches, 0);
        /* the corpus itself must not shrink unnoticed: every format, enough faults */
        assert_true(count.files >= 30);
        assert_true(count.faults >= 40);
        assert_true(count.lines - count.faults >= 60);
        for (size_t i = 0; i < 4; i++)
                assert_true(count.per_prefix[i] > 0);
}

/* ---- formats: where the message starts, what the timestamp is ---- */

static void test_plain_dmesg_strips_timestamp_keeps_driver_prefix(void **state)
{
        struct fault f;
        assert_int_equal(classify("[  123.456789] amdgpu 0000:03:00.0: amdgpu: GPU reset begin!\n", &f), 1);
        assert_int_equal(f.kind, FAULT_GPU_RESET_BEGIN);
        assert_int_equal(f.severity, FAULT_SEVERITY_WARNING);
        assert_string_equal(f.gpu_pci, "0000:03:00.0");
        assert_int_equal(f.xid, -1);
        assert_string_equal(f.time, "123.456789");
        assert_string_equal(f.text, "amdgpu 0000:03:00.0: amdgpu: GPU reset begin!");
        assert_string_equal(body(&f), "GPU reset begin!");
}

static void test_dmesg_T_keeps_the_date_as_text(void **state)
{
        struct fault f;
        assert_int_equal(classify("[Mon Nov 20 10:00:00 2023] amdgpu 0000:03:00.0: amdgpu: GPU reset(3) succeeded!", &f), 1);
        assert_int_equal(f.kind, FAULT_GPU_RESET_OK);
        assert_int_equal(f.severity, FAULT_SEVERITY_INFO);
        assert_string_equal(f.time, "Mon Nov 20 10:00:00 2023");
        assert_int_equal(classify("[Sat Jan  7 14:25:56 2023] [drm] VRAM is lost due to GPU reset!", &f), 1);
        assert_string_equal(f.time, "Sat Jan  7 14:25:56 2023");
        assert_string_equal(f.gpu_pci, "");
        assert_string_equal(f.text, "[drm] VRAM is lost due to GPU reset!");
}

static void test_dmesg_raw_level_prefix_and_facility(void **state)
{
        struct fault f;
        assert_int_equal(classify("<3>[   10.5] amdgpu 0000:03:00.0: SMU is in hanged state, failed to send smu message!", &f), 1);
        assert_int_equal(f.kind, FAULT_SMU_FAILURE);
        assert_string_equal(f.time, "10.5");
        /* <14> is facility user: a process wrote it to /dev/kmsg */
        assert_int_equal(classify("<14>[   10.5] NVRM: Xid (PCI:0000:01:00): 79, GPU has fallen off the bus.", &f), 0);
}

static void test_journal_short_formats(void **state)
{
        struct fault f;
        assert_int_equal(classify("Nov 20 10:00:00 gpu-host kernel: amdgpu 0000:03:00.0: amdgpu: MES failed to respond to msg=REMOVE_QUEUE", &f), 1);
        assert_int_equal(f.kind, FAULT_MES_TIMEOUT);
        assert_string_equal(f.time, "Nov 20 10:00:00");
        assert_string_equal(f.text, "amdgpu 0000:03:00.0: amdgpu: MES failed to respond to msg=REMOVE_QUEUE");
        /* short-precise */
        assert_int_equal(classify("Nov 20 10:00:00.123456 gpu-host kernel: [drm] VRAM is lost due to GPU reset!", &f), 1);
        assert_string_equal(f.time, "Nov 20 10:00:00.123456");
        /* syslog's padded day and the kernel's own timestamp after "kernel:" */
        assert_int_equal(classify("Dec  2 11:38:47 worker4 kernel: [  219.470994] NVRM: Xid (PCI:0000:07:00): 48, pid='<unknown>', name=<unknown>, DBE", &f), 1);
        assert_string_equal(f.time, "Dec  2 11:38:47");
        assert_string_equal(f.text, "NVRM: Xid (PCI:0000:07:00): 48, pid='<unknown>', name=<unknown>, DBE");
        /* another language's month, and no host name (journalctl --no-hostname) */
        assert_int_equal(classify("kvě 25 19:29:48 kernel: amdgpu 0000:01:00.0: ring sdma0 timeout, signaled seq=309, emitted seq=313", &f), 1);
        assert_string_equal(f.time, "kvě 25 19:29:48");
}

static void test_journal_iso_and_monotonic_formats(void **state)
{
        struct fault f;
        assert_int_equal(classify("2023-11-20T10:00:00+0100 gpu-host kernel: amdgpu 0000:03:00.0: amdgpu: GPU reset begin!", &f), 1);
        assert_string_equal(f.time, "2023-11-20T10:00:00+0100");
        assert_int_equal(classify("2024-06-06T10:26:53.958539+08:00 kernel: amdgpu 0000:03:00.0: amdgpu: GPU reset(1) failed", &f), 1);
        assert_int_equal(f.kind, FAULT_GPU_RESET_FAILED);
        assert_string_equal(f.time, "2024-06-06T10:26:53.958539+08:00");
        assert_int_equal(classify("2023-11-20T10:00:00.5Z h kernel: [drm] VRAM is lost due to GPU reset!", &f), 1);
        assert_string_equal(f.time, "2023-11-20T10:00:00.5Z");
        /* journalctl -o short-monotonic */
        assert_int_equal(classify("[  312.522692] gpu-host kernel: amdgpu 0000:28:00.0: ring gfx_0.0.0 timeout, signaled seq=57638, emitted seq=57641", &f), 1);
        assert_int_equal(f.kind, FAULT_RING_TIMEOUT);
        assert_string_equal(f.time, "312.522692");
        assert_string_equal(f.gpu_pci, "0000:28:00.0");
        /* dmesg --time-format=iso: a decimal comma and no host or ident */
        assert_int_equal(classify("2023-11-20T10:00:00,123456+01:00 amdgpu 0000:03:00.0: amdgpu: GPU reset begin!", &f), 1);
        assert_string_equal(f.time, "2023-11-20T10:00:00,123456+01:00");
}

static void test_journal_lines_of_processes_are_never_faults(void **state)
{
        struct fault f;
        assert_int_equal(classify("Nov 20 10:00:00 gpu-host ollama[6500]: NVRM: Xid (PCI:0000:01:00): 79, pid=1, GPU has fallen off the bus.", &f), 0);
        assert_int_equal(classify("Nov 20 10:00:00 gpu-host python3[12]: amdgpu 0000:03:00.0: amdgpu: GPU reset begin!", &f), 0);
        assert_int_equal(classify("2023-11-20T10:00:00+0100 gpu-host rigd[1]: [drm] VRAM is lost due to GPU reset!", &f), 0);
        /* a quoted fault in the middle of a kernel line is not the kernel reporting it */
        assert_int_equal(classify("[ 5.0] audit: comm=\"sh\" cmd=\"echo NVRM: Xid (PCI:0000:01:00): 79, x\"", &f), 0);
}

static void test_kmsg_record_microseconds_become_seconds(void **state)
{
        struct fault f;
        assert_int_equal(classify("3,1874,2480727732,-;amdgpu 0000:0e:00.0: amdgpu: [gfxhub] page fault (src_id:0 ring:173 vmid:8 pasid:32791)\n", &f), 1);
        assert_int_equal(f.kind, FAULT_PAGE_FAULT);
        assert_string_equal(f.time, "2480.727732");
        assert_string_equal(f.gpu_pci, "0000:0e:00.0");
        assert_int_equal(classify("4,1,42,-,caller=T1;amdgpu 0000:0e:00.0: amdgpu: GPU reset begin!", &f), 1);
        assert_string_equal(f.time, "0.000042");
        assert_int_equal(classify("4,2,0005678901,c;amdgpu 0000:0e:00.0: amdgpu: GPU reset begin!", &f), 1);
        assert_string_equal(f.time, "5.678901");
}

static void test_kmsg_continuations_and_user_records_are_not_faults(void **state)
{
        struct fault f;
        assert_int_equal(classify(" SUBSYSTEM=pci", &f), 0);
        assert_int_equal(classify(" DEVICE=+pci:0000:0e:00.0", &f), 0);
        /* a dictionary value that happens to read like a fault is still a continuation */
        assert_int_equal(classify(" amdgpu 0000:0e:00.0: amdgpu: GPU reset begin!", &f), 0);
        /* facility 1 (user): "12,..." ; facility 3 (daemon): "30,..." */
        assert_int_equal(classify("12,77,5000000,-;NVRM: Xid (PCI:0000:01:00): 79, GPU has fallen off the bus.", &f), 0);
        assert_int_equal(classify("30,78,5000000,-;amdgpu 0000:03:00.0: amdgpu: GPU reset begin!", &f), 0);
}

static void test_indented_lines_with_a_timestamp_are_classified(void **state)
{
        struct fault f;
        /* logs pasted as a markdown code block keep their timestamps */
        assert_int_equal(classify("    Jul 23 10:14:27 dom0 kernel: [drm:amdgpu_job_timedout [amdgpu]] *ERROR* GPU Recovery Failed: -110", &f), 1);
        assert_int_equal(f.kind, FAULT_GPU_RESET_FAILED);
        assert_string_equal(f.time, "Jul 23 10:14:27");
        /* dmesg's wrapped continuation of a multi-line message has none */
        assert_int_equal(classify("               NVRM: fallen off the bus and is not responding to commands.", &f), 0);
}

static void test_bare_messages_and_line_endings(void **state)
{
        struct fault f;
        assert_int_equal(classify("amdgpu 0000:2d:00.0: VRAM is lost due to GPU reset!\r\n", &f), 1);
        assert_int_equal(f.kind, FAULT_VRAM_LOST);
        assert_string_equal(f.time, "");
        assert_string_equal(f.text, "amdgpu 0000:2d:00.0: VRAM is lost due to GPU reset!");
        assert_int_equal(classify("kernel: NVRM: Xid (PCI:0000:dc:00): 45, pid=1, name=python3, Ch 00000001", &f), 1);
        assert_int_equal(f.xid, 45);
}

/* ---- the rules ---- */

static void test_amdgpu_prefix_forms_name_the_gpu_or_none(void **state)
{
        struct fault f;
        assert_int_equal(classify("[ 1.0] [drm:amdgpu_job_timedout [amdgpu]] *ERROR* ring gfx timeout, signaled seq=1837318, emitted seq=1837320", &f), 1);
        assert_string_equal(f.gpu_pci, "");
        assert_string_equal(body(&f), "ring gfx timeout, signaled seq=1837318, emitted seq=1837320");
        assert_int_equal(classify("[ 1.0] amdgpu: failed to add hardware queue to MES, doorbell=0x1000", &f), 1);
        assert_int_equal(f.kind, FAULT_MES_QUEUE_ADD_FAILED);
        assert_string_equal(f.gpu_pci, "");
        assert_int_equal(classify("[ 1.0] amdgpu 0000:04:00.0: [drm:amdgpu_job_timedout [amdgpu]] *ERROR* ring sdma0 timeout, signaled seq=1, emitted seq=2", &f), 1);
        assert_string_equal(f.gpu_pci, "0000:04:00.0");
        /* drm_err() */
        assert_int_equal(classify("[ 1.0] amdgpu 0000:33:00.0: [drm] *ERROR* ring gfx_0.0.0 timeout, signaled seq=5, emitted seq=7", &f), 1);
        assert_int_equal(f.kind, FAULT_RING_TIMEOUT);
        assert_string_equal(f.gpu_pci, "0000:33:00.0");
        assert_int_equal(classify("[ 1.0] amdgpu 0000:33:00.0: [drm] *ERROR* [CRTC:72:crtc-0] flip_done timed out", &f), 0);
        /* builtin amdgpu: no module name in the function tag */
        assert_int_equal(classify("[ 1.0] [drm:mes_v11_0_submit_pkt_and_poll_completion] *ERROR* MES failed to response msg=3", &f), 1);
        assert_int_equal(f.kind, FAULT_MES_TIMEOUT);
        /* the PCI address is lower-cased */
        assert_int_equal(classify("[ 1.0] amdgpu 0000:C3:00.0: amdgpu: GPU reset begin!", &f), 1);
        assert_string_equal(f.gpu_pci, "0000:c3:00.0");
}

static void test_page_fault_first_line_only(void **state)
{
        struct fault f;
        assert_int_equal(classify("[ 1] amdgpu 0000:0b:00.0: amdgpu: [gfxhub] page fault (src_id:0 ring:24 vmid:8 pasid:32770, for process python pid 1796 thread python pid 1796)", &f), 1);
        assert_int_equal(f.kind, FAULT_PAGE_FAULT);
        assert_int_equal(f.severity, FAULT_SEVERITY_WARNING);
        assert_int_equal(classify("[ 1] amdgpu 0000:04:00.0: amdgpu: [gfxhub0] retry page fault (src_id:0 ring:0 vmid:3 pasid:32770)", &f), 1);
        assert_int_equal(classify("[ 1] amdgpu 0000:09:00.0: [gfxhub] VMC page fault (src_id:0 ring:24 vmid:1 pasid:32769)", &f), 1);
        assert_int_equal(classify("[ 1] amdgpu 0000:23:00.0: GPU fault detected: 146 0x02821014 for process plasmashell pid 1570", &f), 1);
        static const char *const follow_ups[] = {
                "[ 1] amdgpu 0000:0b:00.0: amdgpu:   in page starting at address 0x00007f5279bab000 from client 0x1b (UTCL2)",
                "[ 1] amdgpu 0000:0b:00.0: amdgpu: VM_L2_PROTECTION_FAULT_STATUS:0x00301031",
                "[ 1] amdgpu 0000:0b:00.0: amdgpu: \t Faulty UTCL2 client ID: TCP (0x8)",
                "[ 1] amdgpu 0000:0b:00.0: amdgpu: \t MORE_FAULTS: 0x1",
                "[ 1] amdgpu 0000:0b:00.0: amdgpu: \t WALKER_ERROR: 0x0",
                "[ 1] amdgpu 0000:0b:00.0: amdgpu: \t PERMISSION_FAULTS: 0x3",
                "[ 1] amdgpu 0000:0b:00.0: amdgpu: \t MAPPING_ERROR: 0x0",
                "[ 1] amdgpu 0000:0b:00.0: amdgpu: \t RW: 0x0",
                "[ 1] amdgpu 0000:0b:00.0: amdgpu:  for process pt_main_thread pid 12924 thread pt_main_thread pid 12924)",
                "[ 1] amdgpu 0000:0b:00.0:   VM_CONTEXT1_PROTECTION_FAULT_ADDR   0x0013FC9D",
                "[ 1] gmc_v10_0_process_interrupt: 41 callbacks suppressed",
        };
        for (size_t i = 0; i < sizeof(follow_ups) / sizeof(*follow_ups); i++)
                assert_int_equal(classify(follow_ups[i], &f), 0);
}

static void test_resets_begin_ok_failed(void **state)
{
        struct fault f;
        assert_int_equal(classify("amdgpu 0000:28:00.0: GPU reset begin!. Source:  1", &f), 1);
        assert_int_equal(f.kind, FAULT_GPU_RESET_BEGIN);
        assert_int_equal(classify("amdgpu 0000:c6:00.0: amdgpu: GPU reset(12) succeeded!", &f), 1);
        assert_int_equal(f.kind, FAULT_GPU_RESET_OK);
        assert_int_equal(f.severity, FAULT_SEVERITY_INFO);
        assert_int_equal(classify("amdgpu 0000:e3:00.0: amdgpu: GPU reset end with ret = -62", &f), 1);
        assert_int_equal(f.kind, FAULT_GPU_RESET_FAILED);
        assert_int_equal(classify("amdgpu 0000:e3:00.0: amdgpu: ASIC reset failed with error, -110 for drm dev, 0000:e3:00.0", &f), 1);
        assert_int_equal(f.kind, FAULT_GPU_RESET_FAILED);
        /* the intermediate step and per-queue resets are not GPU resets */
        assert_int_equal(classify("amdgpu 0000:28:00.0: GPU reset succeeded, trying to resume", &f), 0);
        assert_int_equal(classify("amdgpu 0000:c2:00.0: Ring gfx_0.0.0 reset succeeded", &f), 0);
        assert_int_equal(classify("amdgpu 0000:03:00.0: amdgpu: reset via MES failed and try pipe reset -110", &f), 0);
        assert_int_equal(classify("amdgpu 0000:03:00.0: amdgpu: GPU recovery disabled.", &f), 0);
        assert_int_equal(classify("amdgpu 0000:03:00.0: amdgpu: GPU reset end with ret = 0", &f), 0);
}

static void test_ring_timeout_soft_recovered_is_a_warning(void **state)
{
        struct fault f;
        assert_int_equal(classify("[drm:amdgpu_job_timedout [amdgpu]] *ERROR* ring gfx timeout, but soft recovered", &f), 1);
        assert_int_equal(f.kind, FAULT_RING_TIMEOUT);
        assert_int_equal(f.severity, FAULT_SEVERITY_WARNING);
        assert_int_equal(classify("amdgpu 0000:c5:00.0: amdgpu: ring gfx_0.0.0 uses VM inv eng 0 on hub 0", &f), 0);
        assert_int_equal(classify("amdgpu 0000:04:00.0: [drm:amdgpu_ring_test_helper [amdgpu]] *ERROR* ring sdma0 test failed (-110)", &f), 0);
        assert_int_equal(classify("amdgpu 0000:c2:00.0: Fence fallback timer expired on ring gfx_0.0.0", &f), 0);
}

static void test_ras_corrected_is_info_uncorrected_is_error(void **state)
{
        struct fault f;
        /* amdgpu_ras.c's formats, old and new */
        assert_int_equal(classify("amdgpu 0000:c3:00.0: amdgpu: socket: 0, die: 1, 2 new correctable hardware errors detected in umc block", &f), 1);
        assert_int_equal(f.kind, FAULT_RAS_ERROR);
        assert_int_equal(f.severity, FAULT_SEVERITY_INFO);
        assert_int_equal(classify("amdgpu 0000:0b:00.0: 1048560 correctable hardware errors detected in umc block", &f), 1);
        assert_int_equal(f.severity, FAULT_SEVERITY_INFO);
        assert_int_equal(classify("amdgpu 0000:c3:00.0: amdgpu: 3 correctable hardware errors detected in gfx block, no user action is needed.", &f), 1);
        assert_int_equal(f.severity, FAULT_SEVERITY_INFO);
        assert_int_equal(classify("amdgpu 0000:c3:00.0: amdgpu: socket: 0, die: 0, 1 new uncorrectable hardware errors detected in umc block", &f), 1);
        assert_int_equal(f.severity, FAULT_SEVERITY_ERROR);
        assert_int_equal(classify("amdgpu 0000:c3:00.0: amdgpu: {7} socket: 0, die: 0, 1 new uncorrectable hardware errors detected in umc block", &f), 1);
        assert_int_equal(f.severity, FAULT_SEVERITY_ERROR);
        assert_int_equal(classify("amdgpu: 2 uncorrectable hardware errors detected in UMC block", &f), 1);
        assert_int_equal(f.severity, FAULT_SEVERITY_ERROR);
        assert_string_equal(f.gpu_pci, "");
        assert_int_equal(classify("amdgpu 0000:c3:00.0: amdgpu: socket: 0, die: 0, 4 new deferred hardware errors detected in umc block", &f), 1);
        assert_int_equal(f.severity, FAULT_SEVERITY_WARNING);
        assert_int_equal(classify("amdgpu 0000:08:00.0: {1}uncorrectable hardware error(ERREVENT_ATHUB_INTERRUPT) detected!", &f), 1);
        assert_int_equal(f.severity, FAULT_SEVERITY_ERROR);
        /* the running total that follows each report, and the all-clear */
        assert_int_equal(classify("amdgpu 0000:c3:00.0: amdgpu: socket: 0, die: 0, 3 uncorrectable hardware errors detected in total in umc block", &f), 0);
        assert_int_equal(classify("amdgpu 0000:c3:00.0: amdgpu: 0 uncorrectable hardware errors detected in umc block", &f), 0);
        /* RAS and ECC that are not errors */
        assert_int_equal(classify("amdgpu 0000:30:00.0: amdgpu: RAS: optional ras ta ucode is not available", &f), 0);
        assert_int_equal(classify("amdgpu 0000:e3:00.0: amdgpu: MEM ECC is active.", &f), 0);
        assert_int_equal(classify("amdgpu 0000:e3:00.0: amdgpu: ras disable gfx failed poison:0 ret:-22", &f), 0);
        assert_int_equal(classify("[    0.876279] RAS: Correctable Errors collector initialized.", &f), 0);
        assert_int_equal(classify("amdgpu 0000:42:00.0: {1}[Hardware Error]: Accelerator Check Architecture events logged", &f), 0);
}

static void test_smu_failures_and_healthy_smu_lines(void **state)
{
        struct fault f;
        static const char *const failures[] = {
                "amdgpu 0000:0b:00.0: amdgpu: SMU: I'm not done with your previous command: SMN_C2PMSG_66:0x00000024 SMN_C2PMSG_82:0x00000001",
                "amdgpu 0000:03:00.0: SMU is in hanged state, failed to send smu message!",
                "amdgpu 0000:03:00.0: SMU: No response msg_reg: 6 resp_reg: 0",
                "amdgpu 0000:07:00.0: amdgpu: SMU: response:0xFFFFFFFF for index:18 param:0x00000005 message:TransferTableSmu2Dram?",
                "amdgpu 0000:e3:00.0: amdgpu: Failed to send message 0x26, response 0x0",
                "amdgpu 0000:04:00.0: amdgpu: Msg issuing pre-check failed and SMU may be not in the right state!",
                "amdgpu 0000:04:00.0: amdgpu: message: TransferTableSmu2Dram (28) \tparam: 0x00000007 is timeout (no response)",
        };
        for (size_t i = 0; i < sizeof(failures) / sizeof(*failures); i++) {
                assert_int_equal(classify(failures[i], &f), 1);
                assert_int_equal(f.kind, FAULT_SMU_FAILURE);
                assert_int_equal(f.severity, FAULT_SEVERITY_ERROR);
        }
        assert_int_equal(classify("amdgpu 0000:0b:00.0: amdgpu: SMU is resumed successfully!", &f), 0);
        assert_int_equal(classify("amdgpu 0000:0b:00.0: amdgpu: SMU driver if version not matched", &f), 0);
        assert_int_equal(classify("amdgpu 0000:0b:00.0: amdgpu: Failed to export SMU metrics table!", &f), 0);
}

static void test_nvidia_xid_pci_and_number(void **state)
{
        struct fault f;
        assert_int_equal(classify("[ 1.0] NVRM: Xid (PCI:0000:01:00): 79, pid='<unknown>', name=<unknown>, GPU has fallen off the bus.", &f), 1);
        assert_int_equal(f.kind, FAULT_NVIDIA_XID);
        assert_string_equal(f.gpu_pci, "0000:01:00.0");
        assert_int_equal(f.xid, 79);
        assert_string_equal(body(&f), "Xid (PCI:0000:01:00): 79, pid='<unknown>', name=<unknown>, GPU has fallen off the bus.");
        /* MIG instance, domain != 0, upper-case hex, the old form without "PCI:" */
        assert_int_equal(classify("NVRM: Xid (PCI:0000:01:00 GPU-I:05): 94, pid=7194, Contained: CE User Channel (0x9). RST: No, D-RST: No", &f), 1);
        assert_string_equal(f.gpu_pci, "0000:01:00.0");
        assert_int_equal(classify("NVRM: Xid (PCI:0019:01:00): 149, NETIR Fatal XC0 i0 Link -1 (0x000fe406 0x00000000)", &f), 1);
        assert_string_equal(f.gpu_pci, "0019:01:00.0");
        assert_int_equal(f.xid, 149);
        assert_int_equal(classify("NVRM: Xid (PCI:0000:3B:00): 13, pid=1, Graphics Exception", &f), 1);
        assert_string_equal(f.gpu_pci, "0000:3b:00.0");
        assert_int_equal(classify("NVRM: Xid (0000:03:00): 14, Channel 00000001", &f), 1);
        assert_string_equal(f.gpu_pci, "0000:03:00.0");
        assert_int_equal(f.xid, 14);
        /* off the bus without an Xid */
        assert_int_equal(classify("NVRM: GPU 0000:91:00.0: GPU has fallen off the bus.", &f), 1);
        assert_int_equal(f.xid, 79);
        assert_int_equal(classify("3,9,1843308145,-;NVRM: The NVIDIA GPU 0000:b3:00.0\\x0aNVRM: (PCI ID: 10de:26b5) installed in this system has\\x0aNVRM: fallen off the bus and is not responding to commands.", &f), 1);
        assert_string_equal(f.gpu_pci, "0000:b3:00.0");
        assert_int_equal(f.xid, 79);
        assert_int_equal(f.severity, FAULT_SEVERITY_ERROR);
}

static void test_nvidia_xid_severity_follows_the_catalog(void **state)
{
        static const struct { int xid; enum fault_severity severity; } table[] = {
                { 13, FAULT_SEVERITY_WARNING }, { 31, FAULT_SEVERITY_WARNING }, { 43, FAULT_SEVERITY_WARNING },
                { 45, FAULT_SEVERITY_WARNING }, { 63, FAULT_SEVERITY_WARNING }, { 94, FAULT_SEVERITY_WARNING },
                { 109, FAULT_SEVERITY_WARNING }, { 48, FAULT_SEVERITY_ERROR }, { 64, FAULT_SEVERITY_ERROR },
                { 74, FAULT_SEVERITY_ERROR }, { 79, FAULT_SEVERITY_ERROR }, { 95, FAULT_SEVERITY_ERROR },
                { 119, FAULT_SEVERITY_ERROR }, { 154, FAULT_SEVERITY_ERROR }, { 9999, FAULT_SEVERITY_WARNING },
        };
        for (size_t i = 0; i < sizeof(table) / sizeof(*table); i++) {
                char line[128];
                struct fault f;
                snprintf(line, sizeof(line), "NVRM: Xid (PCI:0000:01:00): %d, pid=1, name=x, test", table[i].xid);
                assert_int_equal(classify(line, &f), 1);
                assert_int_equal(f.xid, table[i].xid);
                if (f.severity != table[i].severity)
                        fail_msg("Xid %d: severity %s", table[i].xid, fault_severity_str(f.severity));
        }
}

static void test_nvidia_lookalikes_are_not_faults(void **state)
{
        struct fault f;
        static const char *const lines[] = {
                "[ 1.0] NVRM: loading NVIDIA UNIX Open Kernel Module for x86_64  570.158.01  Release Build",
                "[ 1.0] NVRM: GPU at PCI:0000:01:00: GPU-8a47641b-dff6-f09f-618c-c3eb58fb430d",
                "[ 1.0] nvidia-nvswitch1: SXid (PCI:0000:06:00.0): 20034, Fatal, Link 48 LTSSM Fault Up",
                "[ 1.0] NVRM: GPU 0000:0a:00.0: RmInitAdapter failed! (0x24:0x72:1568)",
                "[ 1.0] NVRM: Xid (PCI:0000:01:00): , missing number",
                "[ 1.0] NVRM: Xid (PCI:0000:01): 79, short address",
                "[ 1.0] NVRM: Xid (PCI:0000:01:00)",
                "[ 1.0] NVRM: Xid (PCI:0000:01:00):79 no space",
                "[ 1.0] NVRM: The NVIDIA GPU 0000:b3:00.0",
                "[ 1.0] nvidia-modeset: Loading NVIDIA UNIX Open Kernel Mode Setting Driver",
        };
        for (size_t i = 0; i < sizeof(lines) / sizeof(*lines); i++)
                if (classify(lines[i], &f))
                        fail_msg("flagged: %s", lines[i]);
}

static void test_amdgpu_lookalikes_are_not_faults(void **state)
{
        struct fault f;
        static const char *const lines[] = {
                "[    1.0] amdgpu: ring gfx uses VM inv eng 0 on hub 0",
                "[    1.0] amdgpu 0000:03:00.0: amdgpu: MES enabled",
                "[    1.0] amdgpu 0000:03:00.0: amdgpu: GPU recovery disabled.",
                "[    0.0] Kernel command line: BOOT_IMAGE=/vmlinuz amdgpu.gpu_recovery=1 amdgpu.ras_enable=0",
                "[    1.0] amdgpu 0000:03:00.0: amdgpu: RAS INFO: ras initialized successfully, hardware ability[0x0] ras_mask[0x0]",
                "[    1.0] amdgpu 0000:03:00.0: amdgpu: RAS: ras_controller is not supported",
                "[    1.0] amdgpu 0000:03:00.0: amdgpu: ECC is active.",
                "[    1.0] amdgpu 0000:03:00.0: amdgpu: SMU is initialized successfully!",
                "[    1.0] amdgpu 0000:03:00.0: amdgpu: [drm] AMDGPU device coredump file has been created",
                "[    1.0] amdgpu 0000:03:00.0: [drm] device wedged, but recovered through reset",
                "[    1.0] radeon 0000:01:00.0: ring 0 stalled for more than 10000msec",
                "[    1.0] i915 0000:00:02.0: [drm] GPU HANG: ecode 9:1:85dffffb, in Xorg [1141]",
                "[    1.0] amdgpu 0000:03:00.0: amdgpu: [gfxhub] VM_L2_PROTECTION_FAULT_STATUS:0x00000000",
                "[    1.0] amdgpu 0000:03:00.0: amdgpu: ring gfx_0.0.0 timeout",
        };
        for (size_t i = 0; i < sizeof(lines) / sizeof(*lines); i++)
                if (classify(lines[i], &f))
                        fail_msg("flagged: %s", lines[i]);
}

static void test_kind_and_severity_names_match_the_design(void **state)
{
        static const char *const names[] = { "mes_timeout", "mes_queue_add_failed", "ring_timeout",
                "page_fault", "gpu_reset_begin", "gpu_reset_ok", "gpu_reset_failed", "vram_lost",
                "ras_error", "smu_failure", "nvidia_xid" };
        assert_int_equal(FAULT_KIND_COUNT, sizeof(names) / sizeof(*names));
        for (int k = 0; k < FAULT_KIND_COUNT; k++)
                assert_string_equal(fault_kind_str((enum fault_kind)k), names[k]);
        assert_string_equal(fault_kind_str((enum fault_kind)99), "unknown");
        assert_string_equal(fault_severity_str(FAULT_SEVERITY_INFO), "info");
        assert_string_equal(fault_severity_str(FAULT_SEVERITY_WARNING), "warning");
        assert_string_equal(fault_severity_str(FAULT_SEVERITY_ERROR), "error");
}

/* ---- hostile input ---- */

static bool is_valid_utf8(const char *s)
{
        const unsigned char *p = (const unsigned char *)s;
        while (*p) {
                size_t n = *p < 0x80 ? 1 : (*p & 0xe0) == 0xc0 ? 2 : (*p & 0xf0) == 0xe0 ? 3 : (*p & 0xf8) == 0xf0 ? 4 : 0;
                if (n == 0)
                        return false;
                for (size_t i = 1; i < n; i++)
                        if ((p[i] & 0xc0) != 0x80)
                                return false;
                p += n;
        }
        return true;
}

static void test_overlong_line_is_truncated_on_a_character_boundary(void **state)
{
        /* 3-byte characters (€) so the 511-byte cut falls inside one */
        char line[4096];
        int n = snprintf(line, sizeof(line), "[ 1.0] amdgpu 0000:03:00.0: amdgpu: GPU reset begin! ");
        for (int i = 0; i < 1000 && n + 3 < (int)sizeof(line); i++)
                n += snprintf(line + n, sizeof(line) - (size_t)n, "\xe2\x82\xac");
        struct fault f;
        assert_int_equal(kmsg_classify_line(line, (size_t)n, &f), 1);
        size_t len = strlen(f.text);
        assert_true(len <= sizeof(f.text) - 1);
        assert_true(len >= sizeof(f.text) - 4);
        assert_true(is_valid_utf8(f.text));
        assert_true(f.body < len);
        assert_string_equal(body(&f), f.text + strlen("amdgpu 0000:03:00.0: amdgpu: "));

        /* an overlong timestamp bracket is not a timestamp */
        char big[600];
        memset(big, '1', sizeof(big));
        big[0] = '[';
        big[sizeof(big) - 1] = '\0';
        assert_int_equal(classify(big, &f), 0);
}

static void test_nul_bytes_and_invalid_utf8_do_not_crash(void **state)
{
        struct fault f;
        static const char with_nul[] = "[ 1.0] amdgpu 0000:03:00.0: amdgpu: GPU reset begin! \0tail\xff";
        assert_int_equal(kmsg_classify_line(with_nul, sizeof(with_nul) - 1, &f), 1);
        assert_string_equal(f.text, "amdgpu 0000:03:00.0: amdgpu: GPU reset begin! ?tail?");
        static const char nul_in_prefix[] = "[ 1.0]\0amdgpu 0000:03:00.0: amdgpu: GPU reset begin!";
        assert_int_equal(kmsg_classify_line(nul_in_prefix, sizeof(nul_in_prefix) - 1, &f), 0);
        static const char bad[] = "[ 1.0] amdgpu 0000:03:00.0: amdgpu: GPU reset begin! \xc0\xaf \xed\xa0\x80 \xf5\x80 \xe2\x82 \x1b[31m";
        assert_int_equal(classify(bad, &f), 1);
        assert_true(is_valid_utf8(f.text));
        assert_null(strchr(f.text, '\x1b'));
        assert_int_equal(classify("[Mon \xff\xfe 20 10:00:00 2023] amdgpu 0000:03:00.0: GPU reset begin!", &f), 0);
        /* a line that is not NUL-terminated: the classifier must stay inside len */
        char *exact = malloc(24);
        memcpy(exact, "NVRM: Xid (PCI:0000:01:0", 24);
        assert_int_equal(kmsg_classify_line(exact, 24, &f), 0);
        memcpy(exact, "3,1,2,-;amdgpu 0000:03:0", 24);
        assert_int_equal(kmsg_classify_line(exact, 24, &f), 0);
        free(exact);
}

static void test_empty_and_degenerate_lines(void **state)
{
        struct fault f;
        assert_int_equal(kmsg_classify_line(NULL, 0, &f), 0);
        assert_int_equal(kmsg_classify_line("", 0, &f), 0);
        static const char *const lines[] = { "\n", "\r\n", "   ", "[", "[]", "[ 1.0]", "[ 1.0] ", "<3>", "3,1,2,-;",
                "Nov 20 10:00:00", "Nov 20 10:00:00 host kernel:", "amdgpu", "amdgpu 0000:03:00.0:",
                "amdgpu 0000:03:00.0: amdgpu: ", "[drm:", "[drm:x [amdgpu]]", "NVRM: ", "kernel: ", "{1}" };
        for (size_t i = 0; i < sizeof(lines) / sizeof(*lines); i++)
                assert_int_equal(classify(lines[i], &f), 0);
}

int main(int argc, char **argv)
{
        corpus_dir = argc > 1 ? argv[1] : getenv("KMSG_CORPUS");
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_corpus_gives_exactly_the_expected_faults),
                cmocka_unit_test(test_plain_dmesg_strips_timestamp_keeps_driver_prefix),
                cmocka_unit_test(test_dmesg_T_keeps_the_date_as_text),
                cmocka_unit_test(test_dmesg_raw_level_prefix_and_facility),
                cmocka_unit_test(test_journal_short_formats),
                cmocka_unit_test(test_journal_iso_and_monotonic_formats),
                cmocka_unit_test(test_journal_lines_of_processes_are_never_faults),
                cmocka_unit_test(test_kmsg_record_microseconds_become_seconds),
                cmocka_unit_test(test_kmsg_continuations_and_user_records_are_not_faults),
                cmocka_unit_test(test_indented_lines_with_a_timestamp_are_classified),
                cmocka_unit_test(test_bare_messages_and_line_endings),
                cmocka_unit_test(test_amdgpu_prefix_forms_name_the_gpu_or_none),
                cmocka_unit_test(test_page_fault_first_line_only),
                cmocka_unit_test(test_resets_begin_ok_failed),
                cmocka_unit_test(test_ring_timeout_soft_recovered_is_a_warning),
                cmocka_unit_test(test_ras_corrected_is_info_uncorrected_is_error),
                cmocka_unit_test(test_smu_failures_and_healthy_smu_lines),
                cmocka_unit_test(test_nvidia_xid_pci_and_number),
                cmocka_unit_test(test_nvidia_xid_severity_follows_the_catalog),
                cmocka_unit_test(test_nvidia_lookalikes_are_not_faults),
                cmocka_unit_test(test_amdgpu_lookalikes_are_not_faults),
                cmocka_unit_test(test_kind_and_severity_names_match_the_design),
                cmocka_unit_test(test_overlong_line_is_truncated_on_a_character_boundary),
                cmocka_unit_test(test_nul_bytes_and_invalid_utf8_do_not_crash),
                cmocka_unit_test(test_empty_and_degenerate_lines),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
