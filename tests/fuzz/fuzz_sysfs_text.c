/* libFuzzer target: the text parsers discovery runs on files under --root (which can be any tree
 * a user hands us): numbers, device numbers, KFD node properties, kernel config, amdgpu.ids. */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "amdgpu_ids.h"
#include "kconfig.h"
#include "kfd.h"
#include "sysfs.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
        char *text = malloc(size + 1);
        if (!text)
                return 0;
        memcpy(text, data, size);
        text[size] = '\0';

        uint64_t u;
        int64_t s;
        unsigned major, minor;
        parse_u64(text, &u);
        parse_s64(text, &s);
        parse_devnum(text, &major, &minor);
        proc_devices_find(text, "kfd", &major);

        struct kfd_node node;
        memset(&node, 0, sizeof(node));
        kfd_parse_node_properties(text, &node);
        kv_get_u64(text, "weight", &u);

        struct kernel_info k;
        memset(&k, 0, sizeof(k));
        kconfig_parse((const char *)data, size, &k);   /* takes a length: no NUL needed */

        char name[128];
        amdgpu_ids_lookup_text(text, 0x66a1, 0x02, name, sizeof(name));

        free(text);
        return 0;
}
