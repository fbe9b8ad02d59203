/* nvml_record.c — nvml-record: asks the real libnvidia-ml.so.1 every question rig's NVIDIA discovery
 * asks and writes the answers as a replay file for libnvml-replay.so (format in README.md).
 *   nvml-record [OUT.json]      (stdout without OUT; RIG_NVML_LIBRARY picks another NVML) */
#include <dlfcn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <json-c/json.h>

#include "nvidia.h"

static struct {
        void *dl;
        nvml_error_string_fn nvmlErrorString;
#define X(name, args) nvmlReturn_t (*name) args;
        NVML_FUNCTIONS(X)
#undef X
} nvml;

#define CALL(fn, ...) (nvml.fn ? nvml.fn(__VA_ARGS__) : NVML_ERROR_FUNCTION_NOT_FOUND)

static json_object *error_answer(nvmlReturn_t r)
{
        json_object *o = json_object_new_object();
        const char *name = nvml_return_name(r);
        json_object_object_add(o, "error", name ? json_object_new_string(name) : json_object_new_int(r));
        return o;
}

static json_object *hex(unsigned int v)
{
        char buf[16];
        snprintf(buf, sizeof(buf), "0x%08x", v);
        return json_object_new_string(buf);
}

static json_object *pci_answer(const nvmlPciInfo_t *p)
{
        json_object *o = json_object_new_object();
        char bus_id[sizeof(p->busId) + 1], legacy[sizeof(p->busIdLegacy) + 1];
        snprintf(bus_id, sizeof(bus_id), "%.*s", (int)sizeof(p->busId), p->busId);
        snprintf(legacy, sizeof(legacy), "%.*s", (int)sizeof(p->busIdLegacy), p->busIdLegacy);
        json_object_object_add(o, "busId", json_object_new_string(bus_id));
        json_object_object_add(o, "busIdLegacy", json_object_new_string(legacy));
        json_object_object_add(o, "domain", json_object_new_int64(p->domain));
        json_object_object_add(o, "bus", json_object_new_int64(p->bus));
        json_object_object_add(o, "device", json_object_new_int64(p->device));
        json_object_object_add(o, "pciDeviceId", hex(p->pciDeviceId));
        json_object_object_add(o, "pciSubSystemId", hex(p->pciSubSystemId));
        return o;
}

static void add_uint(json_object *dev, const char *key, nvmlReturn_t r, unsigned int v)
{
        json_object_object_add(dev, key, r == NVML_SUCCESS ? json_object_new_int64(v) : error_answer(r));
}

static void add_string(json_object *dev, const char *key, nvmlReturn_t r, const char *s)
{
        json_object_object_add(dev, key, r == NVML_SUCCESS ? json_object_new_string(s) : error_answer(r));
}

/* Per-link answers as an array indexed by link; one error object when every link gave the same
 * error (the usual answer of a PCIe-only board). */
static json_object *collapse_links(json_object *links, const nvmlReturn_t *errs)
{
        for (unsigned l = 1; l < NVML_NVLINK_MAX_LINKS; l++)
                if (errs[l] != errs[0])
                        return links;
        if (errs[0] == NVML_SUCCESS)
                return links;
        json_object_put(links);
        return error_answer(errs[0]);
}

static void record_nvlinks(nvmlDevice_t h, json_object *dev)
{
        json_object *states = json_object_new_array(), *remotes = json_object_new_array();
        nvmlReturn_t state_errs[NVML_NVLINK_MAX_LINKS], remote_errs[NVML_NVLINK_MAX_LINKS];
        for (unsigned l = 0; l < NVML_NVLINK_MAX_LINKS; l++) {
                nvmlEnableState_t active = NVML_FEATURE_DISABLED;
                nvmlReturn_t r = CALL(nvmlDeviceGetNvLinkState, h, l, &active);
                state_errs[l] = r;
                json_object_array_add(states, r != NVML_SUCCESS ? error_answer(r) :
                                      json_object_new_string(active == NVML_FEATURE_ENABLED ? "NVML_FEATURE_ENABLED" :
                                                             "NVML_FEATURE_DISABLED"));
                nvmlPciInfo_t pci;
                memset(&pci, 0, sizeof(pci));
                r = CALL(nvmlDeviceGetNvLinkRemotePciInfo_v2, h, l, &pci);
                remote_errs[l] = r;
                json_object_array_add(remotes, r == NVML_SUCCESS ? pci_answer(&pci) : error_answer(r));
        }
        json_object_object_add(dev, "nvmlDeviceGetNvLinkState", collapse_links(states, state_errs));
        json_object_object_add(dev, "nvmlDeviceGetNvLinkRemotePciInfo_v2", collapse_links(remotes, remote_errs));
}

static json_object *record_device(unsigned i, nvmlDevice_t *handle)
{
        json_object *dev = json_object_new_object();
        nvmlDevice_t h = NULL;
        nvmlReturn_t r = nvml.nvmlDeviceGetHandleByIndex_v2(i, &h);
        *handle = r == NVML_SUCCESS ? h : NULL;
        if (r != NVML_SUCCESS) {
                json_object_object_add(dev, "nvmlDeviceGetHandleByIndex_v2", error_answer(r));
                return dev;
        }

        nvmlPciInfo_t pci;
        memset(&pci, 0, sizeof(pci));
        r = CALL(nvmlDeviceGetPciInfo_v3, h, &pci);
        json_object_object_add(dev, "nvmlDeviceGetPciInfo_v3", r == NVML_SUCCESS ? pci_answer(&pci) : error_answer(r));

        char name[NVML_DEVICE_NAME_V2_BUFFER_SIZE] = "", uuid[NVML_DEVICE_UUID_V2_BUFFER_SIZE] = "";
        add_string(dev, "nvmlDeviceGetName", CALL(nvmlDeviceGetName, h, name, sizeof(name)), name);
        add_string(dev, "nvmlDeviceGetUUID", CALL(nvmlDeviceGetUUID, h, uuid, sizeof(uuid)), uuid);

        int major = 0, minor = 0;
        r = CALL(nvmlDeviceGetCudaComputeCapability, h, &major, &minor);
        if (r == NVML_SUCCESS) {
                json_object *cc = json_object_new_object();
                json_object_object_add(cc, "major", json_object_new_int(major));
                json_object_object_add(cc, "minor", json_object_new_int(minor));
                json_object_object_add(dev, "nvmlDeviceGetCudaComputeCapability", cc);
        } else {
                json_object_object_add(dev, "nvmlDeviceGetCudaComputeCapability", error_answer(r));
        }

        nvmlMemory_t mem;
        r = CALL(nvmlDeviceGetMemoryInfo, h, &mem);
        if (r == NVML_SUCCESS) {
                json_object *o = json_object_new_object();
                json_object_object_add(o, "total", json_object_new_uint64(mem.total));
                json_object_object_add(o, "free", json_object_new_uint64(mem.free));
                json_object_object_add(o, "used", json_object_new_uint64(mem.used));
                json_object_object_add(dev, "nvmlDeviceGetMemoryInfo", o);
        } else {
                json_object_object_add(dev, "nvmlDeviceGetMemoryInfo", error_answer(r));
        }

        unsigned int v = 0, lo = 0, hi = 0;
        r = CALL(nvmlDeviceGetPowerUsage, h, &v);
        add_uint(dev, "nvmlDeviceGetPowerUsage", r, v);
        r = CALL(nvmlDeviceGetEnforcedPowerLimit, h, &v);
        add_uint(dev, "nvmlDeviceGetEnforcedPowerLimit", r, v);
        r = CALL(nvmlDeviceGetPowerManagementLimitConstraints, h, &lo, &hi);
        if (r == NVML_SUCCESS) {
                json_object *o = json_object_new_object();
                json_object_object_add(o, "minLimit", json_object_new_int64(lo));
                json_object_object_add(o, "maxLimit", json_object_new_int64(hi));
                json_object_object_add(dev, "nvmlDeviceGetPowerManagementLimitConstraints", o);
        } else {
                json_object_object_add(dev, "nvmlDeviceGetPowerManagementLimitConstraints", error_answer(r));
        }
        r = CALL(nvmlDeviceGetPowerManagementDefaultLimit, h, &v);
        add_uint(dev, "nvmlDeviceGetPowerManagementDefaultLimit", r, v);

        json_object *temp = json_object_new_object();
        r = CALL(nvmlDeviceGetTemperature, h, NVML_TEMPERATURE_GPU, &v);
        add_uint(temp, "NVML_TEMPERATURE_GPU", r, v);
        json_object_object_add(dev, "nvmlDeviceGetTemperature", temp);

        r = CALL(nvmlDeviceGetCurrPcieLinkGeneration, h, &v);
        add_uint(dev, "nvmlDeviceGetCurrPcieLinkGeneration", r, v);
        r = CALL(nvmlDeviceGetMaxPcieLinkGeneration, h, &v);
        add_uint(dev, "nvmlDeviceGetMaxPcieLinkGeneration", r, v);
        r = CALL(nvmlDeviceGetCurrPcieLinkWidth, h, &v);
        add_uint(dev, "nvmlDeviceGetCurrPcieLinkWidth", r, v);
        r = CALL(nvmlDeviceGetMaxPcieLinkWidth, h, &v);
        add_uint(dev, "nvmlDeviceGetMaxPcieLinkWidth", r, v);

        record_nvlinks(h, dev);
        return dev;
}

static json_object *record_pair(unsigned i, unsigned j, nvmlDevice_t a, nvmlDevice_t b)
{
        json_object *pair = json_object_new_object(), *devs = json_object_new_array(), *p2p = json_object_new_object();
        json_object_array_add(devs, json_object_new_int((int)i));
        json_object_array_add(devs, json_object_new_int((int)j));
        json_object_object_add(pair, "devices", devs);

        for (int k = NVML_P2P_CAPS_INDEX_READ; k < NVML_P2P_CAPS_INDEX_UNKNOWN; k++) {
                nvmlGpuP2PStatus_t s = NVML_P2P_STATUS_UNKNOWN;
                nvmlReturn_t r = CALL(nvmlDeviceGetP2PStatus, a, b, (nvmlGpuP2PCapsIndex_t)k, &s);
                const char *name = nvml_p2p_status_name(s);
                json_object_object_add(p2p, nvml_p2p_caps_name((nvmlGpuP2PCapsIndex_t)k),
                                       r != NVML_SUCCESS ? error_answer(r) :
                                       name ? json_object_new_string(name) : json_object_new_int((int)s));
        }
        json_object_object_add(pair, "nvmlDeviceGetP2PStatus", p2p);

        nvmlGpuTopologyLevel_t level = NVML_TOPOLOGY_SYSTEM;
        nvmlReturn_t r = CALL(nvmlDeviceGetTopologyCommonAncestor, a, b, &level);
        const char *name = nvml_topology_name(level);
        json_object_object_add(pair, "nvmlDeviceGetTopologyCommonAncestor",
                               r != NVML_SUCCESS ? error_answer(r) :
                               name ? json_object_new_string(name) : json_object_new_int((int)level));
        return pair;
}

static int load(void)
{
        const char *lib = getenv("RIG_NVML_LIBRARY");
        nvml.dl = dlopen(lib && *lib ? lib : "libnvidia-ml.so.1", RTLD_NOW | RTLD_LOCAL);
        if (!nvml.dl && !(lib && *lib))
                nvml.dl = dlopen("/usr/local/nvidia/lib64/libnvidia-ml.so.1", RTLD_NOW | RTLD_LOCAL);
        if (!nvml.dl) {
                fprintf(stderr, "nvml-record: cannot load NVML: %s\n", dlerror());
                return -1;
        }
#define X(name, args) nvml.name = (nvmlReturn_t (*) args)dlsym(nvml.dl, #name);
        NVML_FUNCTIONS(X)
#undef X
        nvml.nvmlErrorString = (nvml_error_string_fn)dlsym(nvml.dl, "nvmlErrorString");
        if (!nvml.nvmlInit_v2 || !nvml.nvmlShutdown || !nvml.nvmlDeviceGetCount_v2 || !nvml.nvmlDeviceGetHandleByIndex_v2) {
                fprintf(stderr, "nvml-record: this NVML lacks nvmlInit_v2/nvmlDeviceGetCount_v2/"
                        "nvmlDeviceGetHandleByIndex_v2\n");
                return -1;
        }
        return 0;
}

int main(int argc, char **argv)
{
        if (argc > 2 || (argc == 2 && (strcmp(argv[1], "-h") == 0 || strcmp(argv[1], "--help") == 0))) {
                fprintf(stderr, "usage: nvml-record [OUT.json]\n");
                return 2;
        }
        if (load() < 0)
                return 1;

        json_object *root = json_object_new_object();
        json_object_object_add(root, "format", json_object_new_string("rig-nvml-replay-1"));
        nvmlReturn_t r = nvml.nvmlInit_v2();
        if (r != NVML_SUCCESS) {
                /* a recording of a box whose NVML does not start is a valid replay too */
                fprintf(stderr, "nvml-record: nvmlInit_v2: %s\n", nvml.nvmlErrorString ? nvml.nvmlErrorString(r) : "?");
                json_object_object_add(root, "nvmlInit_v2", error_answer(r));
        } else {
                char version[NVML_SYSTEM_DRIVER_VERSION_BUFFER_SIZE] = "";
                add_string(root, "nvmlSystemGetDriverVersion",
                           CALL(nvmlSystemGetDriverVersion, version, sizeof(version)), version);
                add_string(root, "nvmlSystemGetNVMLVersion",
                           CALL(nvmlSystemGetNVMLVersion, version, sizeof(version)), version);

                unsigned count = 0;
                r = nvml.nvmlDeviceGetCount_v2(&count);
                if (r != NVML_SUCCESS) {
                        json_object_object_add(root, "nvmlDeviceGetCount_v2", error_answer(r));
                        count = 0;
                }
                json_object *devices = json_object_new_array(), *pairs = json_object_new_array();
                nvmlDevice_t *handles = calloc(count ? count : 1, sizeof(*handles));
                if (!handles)
                        return 1;
                for (unsigned i = 0; i < count; i++)
                        json_object_array_add(devices, record_device(i, &handles[i]));
                for (unsigned i = 0; i < count; i++)
                        for (unsigned j = i + 1; j < count; j++)
                                if (handles[i] && handles[j])
                                        json_object_array_add(pairs, record_pair(i, j, handles[i], handles[j]));
                free(handles);
                json_object_object_add(root, "devices", devices);
                json_object_object_add(root, "pairs", pairs);
                nvml.nvmlShutdown();
        }

        const char *text = json_object_to_json_string_ext(root, JSON_C_TO_STRING_PRETTY | JSON_C_TO_STRING_SPACED | JSON_C_TO_STRING_NOSLASHESCAPE);
        FILE *f = argc == 2 ? fopen(argv[1], "we") : stdout;
        if (!f) {
                perror(argv[1]);
                return 1;
        }
        fprintf(f, "%s\n", text);
        int failed = ferror(f) | (f != stdout ? fclose(f) : fflush(f));
        json_object_put(root);
        return failed ? 1 : 0;
}
