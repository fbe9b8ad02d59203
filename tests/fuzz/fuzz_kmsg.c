/* libFuzzer target: the kernel-log fault classifier, fed a whole "log" (split at newlines, as
 * gpuctl faults --classify reads one) and the buffer as one line (as a /dev/kmsg record of any
 * length). Checks what the classifier promises about struct fault, not only that it survives. */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "kmsg.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check_utf8(const char *s)
{
        const unsigned char *p = (const unsigned char *)s;
        while (*p) {
                size_t n = *p < 0x80 ? 1 : (*p & 0xe0) == 0xc0 ? 2 : (*p & 0xf0) == 0xe0 ? 3 : (*p & 0xf8) == 0xf0 ? 4 : 0;
                if (n == 0 || (*p < 0x20 && *p != 0))
                        abort();
                for (size_t i = 1; i < n; i++)
                        if ((p[i] & 0xc0) != 0x80)
                                abort();
                p += n;
        }
}

static void check(const char *line, size_t len)
{
        struct fault f;
        if (!kmsg_classify_line(line, len, &f))
                return;
        if ((unsigned)f.kind >= FAULT_KIND_COUNT || (unsigned)f.severity > FAULT_SEVERITY_ERROR)
                abort();
        if (!memchr(f.text, '\0', sizeof(f.text)) || !memchr(f.time, '\0', sizeof(f.time)) ||
            !memchr(f.gpu_pci, '\0', sizeof(f.gpu_pci)))
                abort();
        size_t pci_len = strlen(f.gpu_pci);
        if (pci_len != 0 && (pci_len != 12 || f.gpu_pci[4] != ':' || f.gpu_pci[7] != ':' || f.gpu_pci[10] != '.'))
                abort();
        if ((f.kind == FAULT_NVIDIA_XID) != (f.xid >= 0))
                abort();
        if (f.body > strlen(f.text))
                abort();
        check_utf8(f.text);
        check_utf8(f.time);
        if (strcmp(fault_kind_str(f.kind), "unknown") == 0 || strcmp(fault_severity_str(f.severity), "unknown") == 0)
                abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
        /* a copy of exactly size bytes: ASan catches any read past the line */
        char *buf = malloc(size ? size : 1);
        if (!buf)
                return 0;
        memcpy(buf, data, size);
        check(buf, size);
        for (size_t start = 0; start < size;) {
                const char *nl = memchr(buf + start, '\n', size - start);
                size_t end = nl ? (size_t)(nl - buf) + 1 : size;
                check(buf + start, end - start);
                start = end;
        }
        free(buf);
        return 0;
}
