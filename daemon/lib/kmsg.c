/* kmsg.c — the kernel-log fault classifier (DESIGN §4.5). A line goes through two steps:
 * the envelope (dmesg / journal / syslog / /dev/kmsg prefixes: where the message starts, its
 * timestamp, whether the kernel wrote it), then the message rules (amdgpu and NVRM wording).
 * Lines are spans (pointer + end), never NUL-terminated strings: a log can hold NUL bytes.
 *
 * Rules are anchored, not searched for: a message is only looked at when it starts with the
 * driver's own prefix ("amdgpu", "[drm", "NVRM: "), so ordinary kernel noise costs a few byte
 * compares, and userspace text that quotes a fault (a journal line of "ollama[123]: ... NVRM:
 * Xid ...") is never one. Only the first line of a multi-line report is the fault: a page
 * fault's "in page starting at address", "VM_L2_PROTECTION_FAULT_STATUS" and the rest, a MES
 * timeout's "failed to remove hardware queue", the "Process information" after a ring timeout,
 * match nothing.
 *
 * Severities (error: work on the GPU was lost or the GPU needs a reset/replacement; warning:
 * one process or request failed, or a recovery started; info: the hardware or driver fixed it):
 *   mes_timeout, mes_queue_add_failed   error    the scheduler firmware stopped answering
 *   ring_timeout                        error    a job hung; "but soft recovered": warning
 *   page_fault                          warning  one process touched unmapped memory
 *   gpu_reset_begin                     warning  the jobs in flight are lost, recovery starts
 *   gpu_reset_ok                        info     "GPU reset(N) succeeded!"
 *   gpu_reset_failed                    error
 *   vram_lost                           error    every buffer in VRAM is gone
 *   ras_error                           uncorrectable: error; deferred: warning;
 *                                       corrected: info ("no user action is needed")
 *   smu_failure                         error    the power-management firmware stopped answering
 *   nvidia_xid                          per Xid: xid_severity() below */
#include <stdbool.h>
#include <stdint.h>
#include <string.h>

#include "kmsg.h"

struct span {
        const char *p, *end;
};

static const char *const kind_names[] = {
        [FAULT_MES_TIMEOUT] = "mes_timeout",
        [FAULT_MES_QUEUE_ADD_FAILED] = "mes_queue_add_failed",
        [FAULT_RING_TIMEOUT] = "ring_timeout",
        [FAULT_PAGE_FAULT] = "page_fault",
        [FAULT_GPU_RESET_BEGIN] = "gpu_reset_begin",
        [FAULT_GPU_RESET_OK] = "gpu_reset_ok",
        [FAULT_GPU_RESET_FAILED] = "gpu_reset_failed",
        [FAULT_VRAM_LOST] = "vram_lost",
        [FAULT_RAS_ERROR] = "ras_error",
        [FAULT_SMU_FAILURE] = "smu_failure",
        [FAULT_NVIDIA_XID] = "nvidia_xid",
};

const char *fault_kind_str(enum fault_kind k)
{
        if ((unsigned)k >= FAULT_KIND_COUNT)
                return "unknown";
        return kind_names[k];
}

const char *fault_severity_str(enum fault_severity s)
{
        switch (s) {
        case FAULT_SEVERITY_INFO:    return "info";
        case FAULT_SEVERITY_WARNING: return "warning";
        case FAULT_SEVERITY_ERROR:   return "error";
        }
        return "unknown";
}

/* ---- span helpers: every read is bounded by s->end ---- */

static size_t span_len(const struct span *s)
{
        return (size_t)(s->end - s->p);
}

#define LIT(s) (s), (sizeof(s) - 1)

static bool has_prefix(const struct span *s, const char *lit, size_t n)
{
        return span_len(s) >= n && memcmp(s->p, lit, n) == 0;
}

/* Consumes lit when s starts with it. */
static bool skip(struct span *s, const char *lit, size_t n)
{
        if (!has_prefix(s, lit, n))
                return false;
        s->p += n;
        return true;
}

static bool contains(const struct span *s, const char *lit, size_t n)
{
        return memmem(s->p, span_len(s), lit, n) != NULL;
}

static bool is_digit(char c)
{
        return c >= '0' && c <= '9';
}

static bool is_hex(char c)
{
        return is_digit(c) || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F');
}

static bool is_alpha(char c)
{
        return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
}

/* Consumes 1..max digits; the value saturates at INT32_MAX. */
static bool skip_digits(struct span *s, size_t max, long long *value)
{
        size_t n = 0;
        long long v = 0;
        while (s->p < s->end && is_digit(*s->p) && n < max) {
                if (v < INT32_MAX)
                        v = v * 10 + (*s->p - '0');
                s->p++;
                n++;
        }
        if (value)
                *value = v > INT32_MAX ? INT32_MAX : v;
        return n > 0;
}

static bool skip_hex(struct span *s, size_t n)
{
        if (span_len(s) < n)
                return false;
        for (size_t i = 0; i < n; i++)
                if (!is_hex(s->p[i]))
                        return false;
        s->p += n;
        return true;
}

/* "hh:mm:ss" */
static bool skip_clock(struct span *s)
{
        struct span t = *s;
        if (!skip_digits(&t, 2, NULL) || !skip(&t, LIT(":")) || !skip_digits(&t, 2, NULL) ||
            !skip(&t, LIT(":")) || !skip_digits(&t, 2, NULL))
                return false;
        *s = t;
        return true;
}

/* A PCI address "dddd:bb:dd.f" → out (12 chars + NUL), lower-cased. */
static bool parse_pci(struct span *s, char out[16])
{
        struct span t = *s;
        if (!skip_hex(&t, 4) || !skip(&t, LIT(":")) || !skip_hex(&t, 2) || !skip(&t, LIT(":")) ||
            !skip_hex(&t, 2) || !skip(&t, LIT(".")) || !skip_hex(&t, 1))
                return false;
        for (size_t i = 0; i < 12; i++) {
                char c = s->p[i];
                out[i] = c >= 'A' && c <= 'F' ? (char)(c - 'A' + 'a') : c;
        }
        out[12] = '\0';
        *s = t;
        return true;
}

/* ---- the envelope ---- */

struct envelope {
        struct span msg;        /* the kernel's message */
        struct span time;       /* the timestamp as written; empty if none */
        bool is_kmsg_usec;      /* time holds /dev/kmsg's microseconds (digits) */
};

/* Consumes "[...] " when its content is a dmesg timestamp: plain ("[  123.456789]"), relative
 * ("[  +0.000123]"), dmesg -T ("[Mon Nov 20 10:00:00 2023]") or dmesg -H ("[Nov20 10:00]").
 * Anything else in brackets ("[drm]", "[gfxhub]") is part of the message. */
static bool skip_bracket_time(struct span *s, struct span *time)
{
        if (!has_prefix(s, LIT("[")))
                return false;
        size_t max = span_len(s) < 48 ? span_len(s) : 48;
        const char *close = memchr(s->p, ']', max);
        if (!close)
                return false;
        struct span c = { s->p + 1, close };
        bool is_numeric = c.p < c.end, has_digit = false;
        for (const char *q = c.p; q < c.end; q++) {
                has_digit |= is_digit(*q);
                if (!is_digit(*q) && !strchr(" .+:,-", *q))
                        is_numeric = false;
        }
        bool is_time = is_numeric && has_digit;
        if (!is_time && span_len(&c) >= 11 && is_alpha(c.p[0]) && is_alpha(c.p[1]) && is_alpha(c.p[2])) {
                struct span t = { c.p + 3, c.end };
                if (skip(&t, LIT(" ")) && span_len(&t) >= 4 && is_alpha(t.p[0])) {
                        /* ctime: "Mon Nov 20 10:00:00 2023", day padded with a space */
                        t.p += 3;
                        while (skip(&t, LIT(" ")))
                                ;
                        is_time = skip_digits(&t, 2, NULL) && skip(&t, LIT(" ")) && skip_clock(&t) &&
                                  skip(&t, LIT(" ")) && skip_digits(&t, 4, NULL) && t.p == t.end;
                } else {
                        /* dmesg -H: "Nov20 10:00" */
                        t = (struct span){ c.p + 3, c.end };
                        is_time = skip_digits(&t, 2, NULL) && skip(&t, LIT(" ")) && skip_digits(&t, 2, NULL) &&
                                  skip(&t, LIT(":")) && skip_digits(&t, 2, NULL) && t.p == t.end;
                }
        }
        if (!is_time)
                return false;
        while (c.p < c.end && *c.p == ' ')
                c.p++;
        while (c.end > c.p && c.end[-1] == ' ')
                c.end--;
        *time = c;
        s->p = close + 1;
        skip(s, LIT(" "));
        return true;
}

/* After the date of a journal or syslog line: "host ident: " or "ident: " (--no-hostname).
 * Returns 1 when ident is the kernel (s then at the message), 0 for another writer, -1 when
 * the line does not go on like a journal line. */
static int skip_host_ident(struct span *s)
{
        for (int token = 0; token < 2; token++) {
                const char *q = s->p;
                size_t max = span_len(s) < 256 ? span_len(s) : 256;
                const char *sp = memchr(q, ' ', max);
                const char *tok_end = sp ? sp : (span_len(s) <= 256 ? s->end : NULL);
                if (!tok_end || tok_end == q)
                        return -1;
                if (tok_end[-1] == ':') {
                        bool is_kernel = tok_end - q == 7 && memcmp(q, "kernel:", 7) == 0;
                        s->p = sp ? sp + 1 : s->end;
                        return is_kernel ? 1 : 0;
                }
                if (!sp)
                        return -1;
                s->p = sp + 1;          /* that was the host */
        }
        return -1;
}

/* Journal dates: short "Nov 20 10:00:00" (any month spelling: "kvě", "maj"), short-precise
 * "Nov 20 10:00:00.123456", short-iso "2023-11-20T10:00:00+0100" and short-iso-precise
 * "2023-11-20T10:00:00.123456+01:00". Sets *is_dmesg_iso for dmesg --time-format=iso
 * ("2023-11-20T10:00:00,123456+01:00", decimal comma), which has no host or ident. */
static bool skip_journal_date(struct span *s, bool *is_dmesg_iso)
{
        struct span t = *s;
        *is_dmesg_iso = false;
        if (span_len(&t) >= 20 && is_digit(t.p[0]) && is_digit(t.p[3]) && t.p[4] == '-') {
                if (!skip_digits(&t, 4, NULL) || !skip(&t, LIT("-")) || !skip_digits(&t, 2, NULL) ||
                    !skip(&t, LIT("-")) || !skip_digits(&t, 2, NULL) || !skip(&t, LIT("T")) ||
                    !skip_clock(&t))
                        return false;
                if (skip(&t, LIT(",")))
                        *is_dmesg_iso = true;
                else
                        skip(&t, LIT("."));
                skip_digits(&t, 9, NULL);
                if (!skip(&t, LIT("Z")) && (skip(&t, LIT("+")) || skip(&t, LIT("-")))) {
                        if (!skip_digits(&t, 2, NULL))
                                return false;
                        skip(&t, LIT(":"));
                        skip_digits(&t, 2, NULL);
                }
        } else {
                size_t n = 0;
                while (t.p < t.end && n < 12 && (is_alpha(*t.p) || (unsigned char)*t.p >= 0x80 || *t.p == '.')) {
                        t.p++;
                        n++;
                }
                if (n == 0 || !skip(&t, LIT(" ")))
                        return false;
                skip(&t, LIT(" "));     /* syslog pads the day: "Dec  2" */
                if (!skip_digits(&t, 2, NULL) || !skip(&t, LIT(" ")) || !skip_clock(&t))
                        return false;
                if (skip(&t, LIT(".")) && !skip_digits(&t, 9, NULL))
                        return false;
        }
        if (!has_prefix(&t, LIT(" ")))
                return false;
        *s = t;
        return true;
}

/* Consumes "P,SEQ,USEC,FLAGS[,...];" of a /dev/kmsg record; *prio is (facility << 3) | level. */
static bool skip_kmsg_header(struct span *s, long long *prio, struct span *usec)
{
        struct span t = *s;
        if (!skip_digits(&t, 4, prio) || !skip(&t, LIT(",")) || !skip_digits(&t, 20, NULL) ||
            !skip(&t, LIT(",")))
                return false;
        usec->p = t.p;
        if (!skip_digits(&t, 20, NULL))
                return false;
        usec->end = t.p;
        if (!skip(&t, LIT(",")))
                return false;
        size_t max = span_len(&t) < 64 ? span_len(&t) : 64;
        const char *semi = memchr(t.p, ';', max);
        if (!semi || memchr(t.p, ' ', (size_t)(semi - t.p)))
                return false;
        s->p = semi + 1;
        return true;
}

/* Returns false for lines the kernel did not write and for continuation lines. */
static bool parse_envelope(const char *line, size_t len, struct envelope *env)
{
        struct span s = { line, line + len };
        while (s.end > s.p && (s.end[-1] == '\n' || s.end[-1] == '\r'))
                s.end--;
        env->time = (struct span){ s.p, s.p };
        env->is_kmsg_usec = false;

        bool is_indented = false;
        while (s.p < s.end && (*s.p == ' ' || *s.p == '\t')) {
                s.p++;
                is_indented = true;
        }
        if (s.p == s.end)
                return false;

        long long prio;
        struct span usec;
        if (is_digit(*s.p) && skip_kmsg_header(&s, &prio, &usec)) {
                if (is_indented || prio >= 8)   /* facility != kernel: a process wrote it */
                        return false;
                env->time = usec;
                env->is_kmsg_usec = true;
                env->msg = s;
                return true;
        }
        if (*s.p == '<') {                      /* dmesg -r: "<3>[  123.456] ..." */
                struct span t = s;
                t.p++;
                if (skip_digits(&t, 4, &prio) && skip(&t, LIT(">"))) {
                        if (prio >= 8)
                                return false;
                        s = t;
                        skip_bracket_time(&s, &env->time);
                        env->msg = s;
                        return true;
                }
        }
        if (*s.p == '[') {
                if (!skip_bracket_time(&s, &env->time)) {
                        if (is_indented)
                                return false;
                        env->msg = s;   /* "[drm] ..." with no timestamp */
                        return true;
                }
                /* journalctl -o short-monotonic: "[  123.456789] host kernel: ..." */
                struct span t = s;
                const char *sp = memchr(t.p, ' ', span_len(&t) < 256 ? span_len(&t) : 256);
                if (sp) {
                        t.p = sp + 1;
                        if (skip(&t, LIT("kernel: ")))
                                s = t;
                }
                env->msg = s;
                return true;
        }
        bool is_dmesg_iso;
        struct span date_start = s;
        if (skip_journal_date(&s, &is_dmesg_iso)) {
                env->time = (struct span){ date_start.p, s.p };
                s.p++;                  /* the space after the date */
                if (!is_dmesg_iso) {
                        if (skip_host_ident(&s) != 1)
                                return false;
                        /* syslog files keep the kernel's own timestamp: "kernel: [  123.456] ..." */
                        struct span ignored;
                        skip_bracket_time(&s, &ignored);
                }
                env->msg = s;
                return true;
        }
        if (skip(&s, LIT("kernel: "))) {
                /* a journal or syslog line with its date and host cut off */
                skip_bracket_time(&s, &env->time);
                env->msg = s;
                return true;
        }
        if (is_indented)
                return false;   /* a wrapped continuation of the line before */
        env->msg = s;
        return true;
}

/* ---- the message rules ---- */

struct verdict {
        enum fault_kind kind;
        enum fault_severity severity;
        int xid;
};

/* NVIDIA's Xid catalog (docs.nvidia.com/deploy/xid-errors, "Resolution Bucket"): error where
 * the GPU needs a reset, a reboot or a replacement; warning where the application (or one
 * channel) failed and restarting it is the fix — 13 graphics exception, 31 MMU fault, 43 GPU
 * stopped processing, 45 preemptive cleanup, 8/109 timeouts — and where memory errors were
 * caught by the hardware: 63 (row remap pending, takes effect at the next reset) and 94
 * (contained ECC error, only the process that touched it is killed). Unknown Xids: warning. */
static enum fault_severity xid_severity(long long xid)
{
        switch (xid) {
        case 48:        /* double-bit ECC error */
        case 61:        /* internal micro-controller breakpoint/warning */
        case 62:        /* internal micro-controller halt */
        case 64:        /* ECC page retirement / row remapping failure */
        case 74:        /* NVLink error */
        case 79:        /* GPU has fallen off the bus */
        case 95:        /* uncontained ECC error */
        case 119:       /* GSP RPC timeout */
        case 120:       /* GSP error */
        case 140:       /* ECC unrecovered error */
        case 154:       /* GPU recovery action changed: reset or reboot required */
                return FAULT_SEVERITY_ERROR;
        default:
                return FAULT_SEVERITY_WARNING;
        }
}

/* After "NVRM: ". "Xid (PCI:0000:01:00): 79, ..." (also "Xid (0000:03:00): 14" of old drivers,
 * "Xid (PCI:0000:01:00 GPU-I:05): 94" under MIG); "GPU at 0000:01:00.0 has fallen off the bus.",
 * "GPU 0000:91:00.0: GPU has fallen off the bus." and the multi-line "The NVIDIA GPU
 * 0000:b3:00.0 ... fallen off the bus", which carry no Xid, are Xid 79: NVIDIA's number for it. */
static bool classify_nvrm(struct span b, struct verdict *v, char pci[16])
{
        if (skip(&b, LIT("Xid ("))) {
                skip(&b, LIT("PCI:"));
                struct span t = b;
                if (!skip_hex(&t, 4) || !skip(&t, LIT(":")) || !skip_hex(&t, 2) || !skip(&t, LIT(":")) ||
                    !skip_hex(&t, 2))
                        return false;
                char fn = '0';
                if (skip(&t, LIT("."))) {
                        if (t.p == t.end || !is_hex(*t.p))
                                return false;
                        fn = *t.p++;
                }
                size_t max = span_len(&t) < 64 ? span_len(&t) : 64;
                const char *close = memchr(t.p, ')', max);
                if (!close || (close != t.p && *t.p != ' '))
                        return false;
                t.p = close + 1;
                long long xid;
                if (!skip(&t, LIT(": ")) || !skip_digits(&t, 5, &xid) || !skip(&t, LIT(",")))
                        return false;
                for (size_t i = 0; i < 10; i++) {
                        char c = b.p[i];
                        pci[i] = c >= 'A' && c <= 'F' ? (char)(c - 'A' + 'a') : c;
                }
                pci[10] = '.';
                pci[11] = fn;
                pci[12] = '\0';
                *v = (struct verdict){ FAULT_NVIDIA_XID, xid_severity(xid), (int)xid };
                return true;
        }
        if (skip(&b, LIT("The NVIDIA GPU "))) {
                /* one /dev/kmsg record: "...GPU 0000:b3:00.0\x0aNVRM: (PCI ID: 10de:26b5) installed
                 * in this system has\x0aNVRM: fallen off the bus and is not responding..." */
                if (parse_pci(&b, pci) && contains(&b, LIT("fallen off the bus"))) {
                        *v = (struct verdict){ FAULT_NVIDIA_XID, FAULT_SEVERITY_ERROR, 79 };
                        return true;
                }
                return false;
        }
        if (skip(&b, LIT("GPU "))) {
                bool is_at = skip(&b, LIT("at "));
                if (!parse_pci(&b, pci))
                        return false;
                if (is_at ? has_prefix(&b, LIT(" has fallen off the bus")) :
                            has_prefix(&b, LIT(": GPU has fallen off the bus"))) {
                        *v = (struct verdict){ FAULT_NVIDIA_XID, FAULT_SEVERITY_ERROR, 79 };
                        return true;
                }
        }
        return false;
}

/* "[gfxhub] page fault (", "[gfxhub0] retry page fault (", "[mmhub0] no-retry page fault (",
 * "[gfxhub] VMC page fault (" (4.x) */
static bool is_vm_page_fault(struct span b)
{
        if (!skip(&b, LIT("[")))
                return false;
        size_t n = 0;
        while (b.p < b.end && n <= 16 && (is_alpha(*b.p) || is_digit(*b.p) || *b.p == '_')) {
                b.p++;
                n++;
        }
        if (n == 0 || n > 16 || !skip(&b, LIT("] ")))
                return false;
        if (!skip(&b, LIT("retry ")) && !skip(&b, LIT("no-retry ")))
                skip(&b, LIT("VMC "));
        return has_prefix(&b, LIT("page fault ("));
}

/* RAS error counts: "[socket: 0, die: 1, ]N [new ]{uncorrectable|deferred|correctable}
 * hardware errors detected in X block". The "... in total in X block" line that accompanies
 * each report repeats it as a running sum, and a count of 0 is the all-clear: neither is a
 * fault. */
static bool classify_ras_count(struct span b, struct verdict *v)
{
        if (skip(&b, LIT("socket: "))) {
                if (!skip_digits(&b, 4, NULL) || !skip(&b, LIT(", die: ")) || !skip_digits(&b, 4, NULL) ||
                    !skip(&b, LIT(", ")))
                        return false;
        }
        long long count;
        if (!skip_digits(&b, 20, &count) || !skip(&b, LIT(" ")) || count == 0)
                return false;
        skip(&b, LIT("new "));
        enum fault_severity sev;
        if (skip(&b, LIT("uncorrectable ")))
                sev = FAULT_SEVERITY_ERROR;
        else if (skip(&b, LIT("deferred ")))
                sev = FAULT_SEVERITY_WARNING;
        else if (skip(&b, LIT("correctable ")))
                sev = FAULT_SEVERITY_INFO;
        else
                return false;
        if (!skip(&b, LIT("hardware errors detected in ")) || has_prefix(&b, LIT("total ")))
                return false;
        *v = (struct verdict){ FAULT_RAS_ERROR, sev, -1 };
        return true;
}

/* "ring gfx_0.0.0 timeout, signaled seq=..." and "ring gfx timeout, but soft recovered" */
static bool classify_ring(struct span b, struct verdict *v)
{
        if (!skip(&b, LIT("ring ")))
                return false;
        size_t n = 0;
        while (b.p < b.end && *b.p != ' ' && n < 40) {
                b.p++;
                n++;
        }
        if (n == 0 || !skip(&b, LIT(" timeout, ")))
                return false;
        if (has_prefix(&b, LIT("signaled seq=")))
                *v = (struct verdict){ FAULT_RING_TIMEOUT, FAULT_SEVERITY_ERROR, -1 };
        else if (has_prefix(&b, LIT("but soft recovered")))
                *v = (struct verdict){ FAULT_RING_TIMEOUT, FAULT_SEVERITY_WARNING, -1 };
        else
                return false;
        return true;
}

#define VERDICT(k, s) (*v = (struct verdict){ (k), (s), -1 }, true)

/* b: the amdgpu message after its prefixes. */
static bool classify_amdgpu(struct span b, struct verdict *v)
{
        if (b.p == b.end)
                return false;
        switch (*b.p) {
        case 'M':
                if (skip(&b, LIT("MES"))) {
                        /* "MES failed to respond to msg=REMOVE_QUEUE", "MES(1) failed ...",
                         * "MES failed to response msg=3" (6.2–6.7) */
                        if (skip(&b, LIT("(")) && !(skip_digits(&b, 3, NULL) && skip(&b, LIT(")"))))
                                return false;
                        if (has_prefix(&b, LIT(" failed to respond to msg=")) ||
                            has_prefix(&b, LIT(" failed to response msg=")))
                                return VERDICT(FAULT_MES_TIMEOUT, FAULT_SEVERITY_ERROR);
                        return false;
                }
                if (has_prefix(&b, LIT("Msg issuing pre-check failed")))
                        return VERDICT(FAULT_SMU_FAILURE, FAULT_SEVERITY_ERROR);
                return false;
        case 'f':
                if (has_prefix(&b, LIT("failed to add hardware queue to MES")))
                        return VERDICT(FAULT_MES_QUEUE_ADD_FAILED, FAULT_SEVERITY_ERROR);
                return false;
        case 'r':
                return classify_ring(b, v);
        case '[':
                if (is_vm_page_fault(b))
                        return VERDICT(FAULT_PAGE_FAULT, FAULT_SEVERITY_WARNING);
                return false;
        case 'G':
                if (has_prefix(&b, LIT("GPU reset begin!")))
                        return VERDICT(FAULT_GPU_RESET_BEGIN, FAULT_SEVERITY_WARNING);
                if (skip(&b, LIT("GPU reset("))) {
                        if (!skip_digits(&b, 10, NULL))
                                return false;
                        if (has_prefix(&b, LIT(") succeeded!")))
                                return VERDICT(FAULT_GPU_RESET_OK, FAULT_SEVERITY_INFO);
                        if (has_prefix(&b, LIT(") failed")))
                                return VERDICT(FAULT_GPU_RESET_FAILED, FAULT_SEVERITY_ERROR);
                        return false;
                }
                if (skip(&b, LIT("GPU reset end with ret ="))) {
                        skip(&b, LIT(" "));
                        bool is_negative = skip(&b, LIT("-"));
                        long long ret;
                        if (skip_digits(&b, 10, &ret) && (ret != 0 || is_negative))
                                return VERDICT(FAULT_GPU_RESET_FAILED, FAULT_SEVERITY_ERROR);
                        return false;
                }
                if (has_prefix(&b, LIT("GPU Recovery Failed: ")))
                        return VERDICT(FAULT_GPU_RESET_FAILED, FAULT_SEVERITY_ERROR);
                if (has_prefix(&b, LIT("GPU fault detected: ")))     /* gmc v6–v8 */
                        return VERDICT(FAULT_PAGE_FAULT, FAULT_SEVERITY_WARNING);
                return false;
        case 'A':
                if (has_prefix(&b, LIT("ASIC reset failed with error")))
                        return VERDICT(FAULT_GPU_RESET_FAILED, FAULT_SEVERITY_ERROR);
                return false;
        case 'V':
                if (has_prefix(&b, LIT("VRAM is lost due to GPU reset")))
                        return VERDICT(FAULT_VRAM_LOST, FAULT_SEVERITY_ERROR);
                return false;
        case 'u':
                /* "uncorrectable hardware error(ERREVENT_ATHUB_INTERRUPT) detected!" */
                if (has_prefix(&b, LIT("uncorrectable hardware error(")))
                        return VERDICT(FAULT_RAS_ERROR, FAULT_SEVERITY_ERROR);
                return false;
        case 's':
        case '0': case '1': case '2': case '3': case '4':
        case '5': case '6': case '7': case '8': case '9':
                return classify_ras_count(b, v);
        case 'S':
                /* The SMU mailbox did not answer; "SMU is resumed successfully!", "SMU driver if
                 * version not matched" are not faults. */
                if (has_prefix(&b, LIT("SMU: I'm not done with your previous command")) ||
                    has_prefix(&b, LIT("SMU is in hanged state")) ||
                    has_prefix(&b, LIT("SMU: No response")) ||
                    has_prefix(&b, LIT("SMU: response:")) ||
                    has_prefix(&b, LIT("SMU: I'm very busy for your command")))
                        return VERDICT(FAULT_SMU_FAILURE, FAULT_SEVERITY_ERROR);
                return false;
        case 'F':
                /* Vega's powerplay: "Failed to send message 0x26, response 0x0" */
                if (has_prefix(&b, LIT("Failed to send message 0x")))
                        return VERDICT(FAULT_SMU_FAILURE, FAULT_SEVERITY_ERROR);
                return false;
        case 'm':
                /* Renoir: "message: TransferTableSmu2Dram (28) \tparam: 0x00000007 is timeout (no response)" */
                if (has_prefix(&b, LIT("message: ")) && contains(&b, LIT(" is timeout (no response)")))
                        return VERDICT(FAULT_SMU_FAILURE, FAULT_SEVERITY_ERROR);
                return false;
        default:
                return false;
        }
}

/* Strips the amdgpu/drm prefixes of m: "amdgpu 0000:03:00.0: ", "amdgpu: ", "[drm] ",
 * "[drm] *ERROR* ", "[drm:func [amdgpu]] *ERROR* ", RAS's event number "{1}", in the
 * combinations the kernel stacks them. Returns false when m is not an amdgpu/drm message. */
static bool strip_amdgpu_prefix(struct span *m, char pci[16])
{
        bool is_amdgpu = false;
        pci[0] = '\0';
        if (skip(m, LIT("amdgpu "))) {
                if (!parse_pci(m, pci) || !skip(m, LIT(": ")))
                        return false;
                is_amdgpu = true;
        }
        for (;;) {
                if (skip(m, LIT("amdgpu: "))) {
                        is_amdgpu = true;
                } else if (skip(m, LIT("[drm] "))) {
                        skip(m, LIT("*ERROR* "));       /* drm_err(): "amdgpu 0000:..: [drm] *ERROR* ..." */
                        is_amdgpu = true;
                } else if (has_prefix(m, LIT("[drm:"))) {
                        size_t max = span_len(m) < 160 ? span_len(m) : 160;
                        const char *close = memmem(m->p, max, "] ", 2);
                        if (!close)
                                return false;
                        m->p = close + 2;
                        skip(m, LIT("*ERROR* "));
                        is_amdgpu = true;
                } else if (is_amdgpu && has_prefix(m, LIT("{"))) {
                        struct span t = *m;
                        t.p++;
                        if (!skip_digits(&t, 20, NULL) || !skip(&t, LIT("}")))
                                break;
                        skip(&t, LIT(" "));     /* "{1}uncorrectable ...", "{7} socket: 0, ..." */
                        *m = t;
                } else {
                        break;
                }
        }
        return is_amdgpu;
}

/* ---- output ---- */

/* Copies src into dst[size] as valid UTF-8: control bytes become '?' (a tab a space), and so
 * does every byte of an invalid sequence — one byte out for each byte in; stops before a
 * character that would not fit. Returns the number of source bytes consumed. */
static size_t copy_text(char *dst, size_t size, const char *src, const char *end, size_t *written)
{
        size_t o = 0;
        const unsigned char *p = (const unsigned char *)src, *e = (const unsigned char *)end;
        while (p < e) {
                unsigned c = *p;
                size_t n = 1;
                if (c >= 0x80) {
                        unsigned lo = 0x80, hi = 0xbf;
                        if (c >= 0xc2 && c <= 0xdf)
                                n = 2;
                        else if (c >= 0xe0 && c <= 0xef)
                                n = 3, lo = c == 0xe0 ? 0xa0 : 0x80, hi = c == 0xed ? 0x9f : 0xbf;
                        else if (c >= 0xf0 && c <= 0xf4)
                                n = 4, lo = c == 0xf0 ? 0x90 : 0x80, hi = c == 0xf4 ? 0x8f : 0xbf;
                        else
                                n = 0;
                        bool is_valid = n > 0 && (size_t)(e - p) >= n && p[1] >= lo && p[1] <= hi;
                        for (size_t i = 2; is_valid && i < n; i++)
                                is_valid = p[i] >= 0x80 && p[i] <= 0xbf;
                        if (!is_valid) {
                                if (o + 1 >= size)
                                        break;
                                dst[o++] = '?';
                                p++;
                                continue;
                        }
                        if (o + n >= size)
                                break;
                        memcpy(dst + o, p, n);
                        o += n;
                        p += n;
                        continue;
                }
                if (o + 1 >= size)
                        break;
                dst[o++] = c == '\t' ? ' ' : (c < 0x20 || c == 0x7f) ? '?' : (char)c;
                p++;
        }
        dst[o] = '\0';
        *written = o;
        return (size_t)((const char *)p - src);
}

/* /dev/kmsg's microseconds "5678901" → "5.678901", dmesg's way of writing the same clock. */
static void format_usec(char out[40], struct span us)
{
        while (span_len(&us) > 7 && *us.p == '0')
                us.p++;
        size_t n = span_len(&us);
        if (n > 30)
                n = 30, us.p = us.end - 30;
        char digits[32];
        size_t pad = n < 7 ? 7 - n : 0;
        memset(digits, '0', pad);
        memcpy(digits + pad, us.p, n);
        n += pad;
        memcpy(out, digits, n - 6);
        out[n - 6] = '.';
        memcpy(out + n - 5, digits + n - 6, 6);
        out[n + 1] = '\0';
}

int kmsg_classify_line(const char *line, size_t len, struct fault *out)
{
        struct envelope env;
        if (!line || !parse_envelope(line, len, &env))
                return 0;
        struct span m = env.msg, b = m;
        struct verdict v;
        char pci[16] = "";
        if (m.p == m.end)
                return 0;
        switch (*m.p) {
        case 'a':
        case '[':
                if (!strip_amdgpu_prefix(&b, pci) || !classify_amdgpu(b, &v))
                        return 0;
                break;
        case 'N':
                if (!skip(&b, LIT("NVRM: ")) || !classify_nvrm(b, &v, pci))
                        return 0;
                break;
        default:
                return 0;
        }

        out->kind = v.kind;
        out->severity = v.severity;
        out->xid = v.xid;
        memcpy(out->gpu_pci, pci, sizeof(out->gpu_pci));
        size_t written;
        if (env.is_kmsg_usec)
                format_usec(out->time, env.time);
        else
                copy_text(out->time, sizeof(out->time), env.time.p, env.time.end, &written);
        copy_text(out->text, sizeof(out->text), m.p, m.end, &written);
        /* copy_text maps each byte it keeps to one byte, so the offset carries over */
        size_t body = (size_t)(b.p - m.p);
        out->body = (unsigned short)(body < written ? body : written);
        return 1;
}
