/* kmsg.h — the kernel-log fault classifier: one log line in, at most one GPU fault out.
 * Stateless and allocation-free, so rigd can run it on every /dev/kmsg record and gpuctl on
 * pasted text. Which lines are faults, and why each severity: kmsg.c and
 * tests/fixtures/kmsg/README.md. */
#pragma once

#include <stddef.h>

enum fault_kind { FAULT_MES_TIMEOUT, FAULT_MES_QUEUE_ADD_FAILED, FAULT_RING_TIMEOUT, FAULT_PAGE_FAULT,
                  FAULT_GPU_RESET_BEGIN, FAULT_GPU_RESET_OK, FAULT_GPU_RESET_FAILED, FAULT_VRAM_LOST,
                  FAULT_RAS_ERROR, FAULT_SMU_FAILURE, FAULT_NVIDIA_XID };
enum fault_severity { FAULT_SEVERITY_INFO, FAULT_SEVERITY_WARNING, FAULT_SEVERITY_ERROR };

#define FAULT_KIND_COUNT (FAULT_NVIDIA_XID + 1)

struct fault {
        enum fault_kind kind;
        enum fault_severity severity;
        char gpu_pci[16];       /* "0000:03:00.0"; "" when the line names no GPU */
        int xid;                /* NVIDIA Xid number, -1 otherwise */
        char time[40];          /* the line's own timestamp ("[  123.456789]" → "123.456789", dmesg -T
                                 * and journal dates as text, /dev/kmsg µs as seconds); "" if none */
        char text[512];         /* the kernel's message: log-format prefixes (timestamp, host,
                                 * "kernel:", kmsg header) stripped, the driver's own prefix kept;
                                 * control bytes and invalid UTF-8 replaced by '?', cut at 511 bytes
                                 * on a character boundary */
        unsigned short body;    /* offset in text where the driver's words start, after
                                 * "amdgpu 0000:03:00.0: amdgpu: " or "NVRM: " (for narrow tables) */
};

const char *fault_kind_str(enum fault_kind k);          /* "mes_timeout", ... as DESIGN §4.5 */
const char *fault_severity_str(enum fault_severity s);  /* "info", "warning", "error" */

/* 1 with *out filled when the line reports a GPU fault, 0 when it does not (out is then left
 * in an unspecified state). Accepts plain dmesg ("[  123.456] amdgpu 0000:03:00.0: ..."),
 * dmesg -T ("[Mon Nov 20 10:00:00 2023] ..."), dmesg -r ("<3>[  123.456] ..."), journalctl short
 * ("Nov 20 10:00:00 host kernel: ...", any month spelling), short-precise, short-iso(-precise),
 * short-monotonic, syslog files ("... kernel: [  123.456] ..."), raw /dev/kmsg records
 * ("6,1234,5678901,-;amdgpu ...") and bare messages. Lines from anything but the kernel (a
 * journal identifier other than "kernel", a kmsg/dmesg -r facility other than 0) are never
 * faults, nor are indented continuation lines (/dev/kmsg's " KEY=value", dmesg's wrapped
 * multi-line messages). line need not be NUL-terminated; a trailing "\n" or "\r\n" is ignored;
 * NUL bytes and invalid UTF-8 are harmless. */
int kmsg_classify_line(const char *line, size_t len, struct fault *out);
