/* nvml_replay.c — libnvml-replay.so: a stand-in for libnvidia-ml.so.1 that answers the NVML calls
 * rig makes from a recorded answer file (JSON, named by RIG_NVML_REPLAY; format in README.md), so
 * NVIDIA discovery runs, error paths included, on machines without an NVIDIA GPU. Anything the
 * file does not answer returns NVML_ERROR_NOT_SUPPORTED, as a real GPU without that feature does. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <json-c/json.h>

#include "nvidia.h"

#define EXPORT __attribute__((visibility("default")))

/* Every exported symbol gets a prototype from the same list nvidia.c resolves. */
#define X(name, args) EXPORT nvmlReturn_t name args;
NVML_FUNCTIONS(X)
#undef X
EXPORT const char *nvmlErrorString(nvmlReturn_t result);

struct replay_device {
        json_object *answers;                   /* one element of "devices" */
};

static struct {
        unsigned init_count;                    /* nvmlInit/nvmlShutdown are reference counted */
        json_object *root;
        struct replay_device *devices;
        unsigned n_devices;
} replay;

/* The strings libnvidia-ml's nvmlErrorString gives, so messages read as on a real box. */
const char *nvmlErrorString(nvmlReturn_t result)
{
        switch (result) {
        case NVML_SUCCESS:                         return "Success";
        case NVML_ERROR_UNINITIALIZED:             return "Uninitialized";
        case NVML_ERROR_INVALID_ARGUMENT:          return "Invalid Argument";
        case NVML_ERROR_NOT_SUPPORTED:             return "Not Supported";
        case NVML_ERROR_NO_PERMISSION:             return "Insufficient Permissions";
        case NVML_ERROR_ALREADY_INITIALIZED:       return "Already Initialized";
        case NVML_ERROR_NOT_FOUND:                 return "Not Found";
        case NVML_ERROR_INSUFFICIENT_SIZE:         return "Insufficient Size";
        case NVML_ERROR_INSUFFICIENT_POWER:        return "Insufficient External Power";
        case NVML_ERROR_DRIVER_NOT_LOADED:         return "Driver Not Loaded";
        case NVML_ERROR_TIMEOUT:                   return "Timeout";
        case NVML_ERROR_IRQ_ISSUE:                 return "Interrupt request issue";
        case NVML_ERROR_LIBRARY_NOT_FOUND:         return "NVML Shared Library Not Found";
        case NVML_ERROR_FUNCTION_NOT_FOUND:        return "Function Not Found";
        case NVML_ERROR_CORRUPTED_INFOROM:         return "Corrupted infoROM";
        case NVML_ERROR_GPU_IS_LOST:               return "GPU is lost";
        case NVML_ERROR_RESET_REQUIRED:            return "GPU requires restart";
        case NVML_ERROR_OPERATING_SYSTEM:          return "The operating system has blocked the request.";
        case NVML_ERROR_LIB_RM_VERSION_MISMATCH:   return "RM has detected an NVML/RM version mismatch.";
        case NVML_ERROR_IN_USE:                    return "In use by another client";
        case NVML_ERROR_MEMORY:                    return "Insufficient Memory";
        case NVML_ERROR_NO_DATA:                   return "No data";
        case NVML_ERROR_INSUFFICIENT_RESOURCES:    return "Insufficient resources";
        case NVML_ERROR_FREQ_NOT_SUPPORTED:        return "Frequency not supported";
        case NVML_ERROR_ARGUMENT_VERSION_MISMATCH: return "Argument version mismatch";
        case NVML_ERROR_DEPRECATED:                return "Deprecated";
        case NVML_ERROR_NOT_READY:                 return "Not Ready";
        case NVML_ERROR_GPU_NOT_FOUND:             return "GPU not found";
        case NVML_ERROR_INVALID_STATE:             return "Invalid state";
        default:                                   return "Unknown Error";
        }
}

/* A name ("NVML_ERROR_GPU_IS_LOST") or a number, to the value; UNKNOWN if neither. */
static nvmlReturn_t parse_return(json_object *v)
{
        if (json_object_is_type(v, json_type_int))
                return (nvmlReturn_t)json_object_get_int(v);
        const char *s = json_object_get_string(v);
        for (int r = 0; s && r <= NVML_ERROR_UNKNOWN; r++) {
                const char *name = nvml_return_name((nvmlReturn_t)r);
                if (name && strcmp(name, s) == 0)
                        return (nvmlReturn_t)r;
        }
        fprintf(stderr, "nvml-replay: \"%s\" is not an NVML return code; answering NVML_ERROR_UNKNOWN\n", s ? s : "?");
        return NVML_ERROR_UNKNOWN;
}

/* The recorded answer to key in obj: NOT_SUPPORTED when absent, the recorded error when the
 * answer is {"error": ...}, else SUCCESS with *out set. */
static nvmlReturn_t answer(json_object *obj, const char *key, json_object **out)
{
        json_object *v = NULL, *e = NULL;
        if (!obj || !json_object_object_get_ex(obj, key, &v) || json_object_is_type(v, json_type_null))
                return NVML_ERROR_NOT_SUPPORTED;
        if (json_object_is_type(v, json_type_object) && json_object_object_get_ex(v, "error", &e))
                return parse_return(e);
        *out = v;
        return NVML_SUCCESS;
}

/* Element i of an array answer (NVLink per-link calls); an error object answers for all links. */
static nvmlReturn_t answer_at(json_object *obj, const char *key, unsigned i, json_object **out)
{
        json_object *v = NULL, *e = NULL;
        nvmlReturn_t r = answer(obj, key, &v);
        if (r != NVML_SUCCESS)
                return r;
        if (!json_object_is_type(v, json_type_array) || i >= json_object_array_length(v))
                return NVML_ERROR_NOT_SUPPORTED;
        v = json_object_array_get_idx(v, i);
        if (!v || json_object_is_type(v, json_type_null))
                return NVML_ERROR_NOT_SUPPORTED;
        if (json_object_is_type(v, json_type_object) && json_object_object_get_ex(v, "error", &e))
                return parse_return(e);
        *out = v;
        return NVML_SUCCESS;
}

/* An unsigned number, written as a JSON integer or as a string ("0x233110de"). */
static int get_u64(json_object *v, unsigned long long *out)
{
        if (json_object_is_type(v, json_type_int)) {
                if (json_object_get_int64(v) < 0)
                        return -ERANGE;
                *out = json_object_get_uint64(v);
                return 0;
        }
        if (json_object_is_type(v, json_type_string)) {
                const char *s = json_object_get_string(v);
                char *end;
                errno = 0;
                *out = strtoull(s, &end, 0);
                return errno || end == s || *end ? -EINVAL : 0;
        }
        return -EINVAL;
}

static int get_field_u64(json_object *obj, const char *key, unsigned long long *out)
{
        json_object *v = NULL;
        if (!json_object_object_get_ex(obj, key, &v))
                return -ENOENT;
        return get_u64(v, out);
}

/* An unsigned int answer that is a bare number. A malformed file is the test's bug: UNKNOWN. */
static nvmlReturn_t answer_uint(json_object *obj, const char *key, unsigned int *out)
{
        json_object *v = NULL;
        unsigned long long x;
        if (!out)
                return NVML_ERROR_INVALID_ARGUMENT;
        nvmlReturn_t r = answer(obj, key, &v);
        if (r != NVML_SUCCESS)
                return r;
        if (get_u64(v, &x) < 0 || x > 0xffffffffull) {
                fprintf(stderr, "nvml-replay: %s is not an unsigned int\n", key);
                return NVML_ERROR_UNKNOWN;
        }
        *out = (unsigned int)x;
        return NVML_SUCCESS;
}

/* A string answer copied into the caller's buffer, with NVML's size rule. */
static nvmlReturn_t answer_string(json_object *obj, const char *key, char *buf, unsigned int length)
{
        json_object *v = NULL;
        if (!buf)
                return NVML_ERROR_INVALID_ARGUMENT;
        nvmlReturn_t r = answer(obj, key, &v);
        if (r != NVML_SUCCESS)
                return r;
        const char *s = json_object_get_string(v);
        size_t n = strlen(s);
        if (n + 1 > length)
                return NVML_ERROR_INSUFFICIENT_SIZE;
        memcpy(buf, s, n + 1);
        return NVML_SUCCESS;
}

/* Fills an nvmlPciInfo_t from {"busId", "busIdLegacy", "domain", "bus", "device", "pciDeviceId",
 * "pciSubSystemId"}; a missing busIdLegacy is derived from busId as NVML does. */
static nvmlReturn_t fill_pci(json_object *v, nvmlPciInfo_t *pci)
{
        json_object *s;
        unsigned long long x;
        memset(pci, 0, sizeof(*pci));
        if (json_object_object_get_ex(v, "busId", &s))
                snprintf(pci->busId, sizeof(pci->busId), "%s", json_object_get_string(s));
        if (json_object_object_get_ex(v, "busIdLegacy", &s))
                snprintf(pci->busIdLegacy, sizeof(pci->busIdLegacy), "%s", json_object_get_string(s));
        else if (strlen(pci->busId) == 16)
                snprintf(pci->busIdLegacy, sizeof(pci->busIdLegacy), "%s", pci->busId + 4);
        if (get_field_u64(v, "domain", &x) == 0)
                pci->domain = (unsigned int)x;
        if (get_field_u64(v, "bus", &x) == 0)
                pci->bus = (unsigned int)x;
        if (get_field_u64(v, "device", &x) == 0)
                pci->device = (unsigned int)x;
        if (get_field_u64(v, "pciDeviceId", &x) == 0)
                pci->pciDeviceId = (unsigned int)x;
        if (get_field_u64(v, "pciSubSystemId", &x) == 0)
                pci->pciSubSystemId = (unsigned int)x;
        return NVML_SUCCESS;
}

static json_object *device_answers(nvmlDevice_t device)
{
        struct replay_device *d = (struct replay_device *)device;
        if (!replay.init_count || !d || d < replay.devices || d >= replay.devices + replay.n_devices)
                return NULL;
        return d->answers;
}

/* Device calls share this preamble: NVML's own answers for no init and a bad handle. */
#define DEVICE_OR_RETURN(dev, device)                                   \
        json_object *dev = device_answers(device);                      \
        if (!replay.init_count)                                         \
                return NVML_ERROR_UNINITIALIZED;                        \
        if (!dev)                                                       \
                return NVML_ERROR_INVALID_ARGUMENT

static void replay_free(void)
{
        json_object_put(replay.root);
        free(replay.devices);
        replay.root = NULL;
        replay.devices = NULL;
        replay.n_devices = 0;
}

static nvmlReturn_t replay_load(void)
{
        const char *path = getenv("RIG_NVML_REPLAY");
        if (!path || !*path) {
                fprintf(stderr, "nvml-replay: RIG_NVML_REPLAY names no answer file\n");
                return NVML_ERROR_LIBRARY_NOT_FOUND;
        }
        replay.root = json_object_from_file(path);
        if (!replay.root || !json_object_is_type(replay.root, json_type_object)) {
                fprintf(stderr, "nvml-replay: reading %s: %s\n", path, json_util_get_last_err());
                replay_free();
                return NVML_ERROR_UNKNOWN;
        }

        json_object *v = NULL;
        nvmlReturn_t r = answer(replay.root, "nvmlInit_v2", &v);
        if (r != NVML_SUCCESS && r != NVML_ERROR_NOT_SUPPORTED) {
                replay_free();
                return r;       /* the recorded box's NVML failed to start */
        }

        json_object *devices;
        if (json_object_object_get_ex(replay.root, "devices", &devices) &&
            json_object_is_type(devices, json_type_array)) {
                size_t n = json_object_array_length(devices);
                replay.devices = calloc(n ? n : 1, sizeof(*replay.devices));
                if (!replay.devices) {
                        replay_free();
                        return NVML_ERROR_MEMORY;
                }
                for (size_t i = 0; i < n; i++)
                        replay.devices[i].answers = json_object_array_get_idx(devices, i);
                replay.n_devices = (unsigned)n;
        }
        return NVML_SUCCESS;
}

nvmlReturn_t nvmlInit_v2(void)
{
        if (replay.init_count == 0) {
                nvmlReturn_t r = replay_load();
                if (r != NVML_SUCCESS)
                        return r;
        }
        replay.init_count++;
        return NVML_SUCCESS;
}

nvmlReturn_t nvmlShutdown(void)
{
        if (replay.init_count == 0)
                return NVML_ERROR_UNINITIALIZED;
        if (--replay.init_count == 0)
                replay_free();
        return NVML_SUCCESS;
}

nvmlReturn_t nvmlSystemGetDriverVersion(char *version, unsigned int length)
{
        if (!replay.init_count)
                return NVML_ERROR_UNINITIALIZED;
        return answer_string(replay.root, "nvmlSystemGetDriverVersion", version, length);
}

nvmlReturn_t nvmlSystemGetNVMLVersion(char *version, unsigned int length)
{
        if (!replay.init_count)
                return NVML_ERROR_UNINITIALIZED;
        return answer_string(replay.root, "nvmlSystemGetNVMLVersion", version, length);
}

nvmlReturn_t nvmlDeviceGetCount_v2(unsigned int *count)
{
        if (!replay.init_count)
                return NVML_ERROR_UNINITIALIZED;
        if (!count)
                return NVML_ERROR_INVALID_ARGUMENT;
        json_object *v = NULL;
        nvmlReturn_t r = answer(replay.root, "nvmlDeviceGetCount_v2", &v);
        if (r != NVML_SUCCESS && r != NVML_ERROR_NOT_SUPPORTED)
                return r;
        *count = replay.n_devices;
        return NVML_SUCCESS;
}

nvmlReturn_t nvmlDeviceGetHandleByIndex_v2(unsigned int index, nvmlDevice_t *device)
{
        if (!replay.init_count)
                return NVML_ERROR_UNINITIALIZED;
        if (!device || index >= replay.n_devices)
                return NVML_ERROR_INVALID_ARGUMENT;
        json_object *v = NULL;
        nvmlReturn_t r = answer(replay.devices[index].answers, "nvmlDeviceGetHandleByIndex_v2", &v);
        if (r != NVML_SUCCESS && r != NVML_ERROR_NOT_SUPPORTED)
                return r;       /* e.g. NVML_ERROR_GPU_IS_LOST, NVML_ERROR_NO_PERMISSION */
        *device = (nvmlDevice_t)&replay.devices[index];
        return NVML_SUCCESS;
}

nvmlReturn_t nvmlDeviceGetPciInfo_v3(nvmlDevice_t device, nvmlPciInfo_t *pci)
{
        DEVICE_OR_RETURN(dev, device);
        json_object *v = NULL;
        if (!pci)
                return NVML_ERROR_INVALID_ARGUMENT;
        nvmlReturn_t r = answer(dev, "nvmlDeviceGetPciInfo_v3", &v);
        return r == NVML_SUCCESS ? fill_pci(v, pci) : r;
}

nvmlReturn_t nvmlDeviceGetName(nvmlDevice_t device, char *name, unsigned int length)
{
        DEVICE_OR_RETURN(dev, device);
        return answer_string(dev, "nvmlDeviceGetName", name, length);
}

nvmlReturn_t nvmlDeviceGetUUID(nvmlDevice_t device, char *uuid, unsigned int length)
{
        DEVICE_OR_RETURN(dev, device);
        return answer_string(dev, "nvmlDeviceGetUUID", uuid, length);
}

nvmlReturn_t nvmlDeviceGetCudaComputeCapability(nvmlDevice_t device, int *major, int *minor)
{
        DEVICE_OR_RETURN(dev, device);
        json_object *v = NULL;
        unsigned long long ma, mi;
        if (!major || !minor)
                return NVML_ERROR_INVALID_ARGUMENT;
        nvmlReturn_t r = answer(dev, "nvmlDeviceGetCudaComputeCapability", &v);
        if (r != NVML_SUCCESS)
                return r;
        if (get_field_u64(v, "major", &ma) < 0 || get_field_u64(v, "minor", &mi) < 0)
                return NVML_ERROR_UNKNOWN;
        *major = (int)ma;
        *minor = (int)mi;
        return NVML_SUCCESS;
}

nvmlReturn_t nvmlDeviceGetMemoryInfo(nvmlDevice_t device, nvmlMemory_t *memory)
{
        DEVICE_OR_RETURN(dev, device);
        json_object *v = NULL;
        if (!memory)
                return NVML_ERROR_INVALID_ARGUMENT;
        nvmlReturn_t r = answer(dev, "nvmlDeviceGetMemoryInfo", &v);
        if (r != NVML_SUCCESS)
                return r;
        if (get_field_u64(v, "total", &memory->total) < 0 || get_field_u64(v, "free", &memory->free) < 0 ||
            get_field_u64(v, "used", &memory->used) < 0)
                return NVML_ERROR_UNKNOWN;
        return NVML_SUCCESS;
}

nvmlReturn_t nvmlDeviceGetPowerUsage(nvmlDevice_t device, unsigned int *power_mw)
{
        DEVICE_OR_RETURN(dev, device);
        return answer_uint(dev, "nvmlDeviceGetPowerUsage", power_mw);
}

nvmlReturn_t nvmlDeviceGetEnforcedPowerLimit(nvmlDevice_t device, unsigned int *limit_mw)
{
        DEVICE_OR_RETURN(dev, device);
        return answer_uint(dev, "nvmlDeviceGetEnforcedPowerLimit", limit_mw);
}

/* The answer file says whether a set is permitted ({"error": "NVML_ERROR_NO_PERMISSION"}, or any
 * non-error value for yes); a permitted set becomes what nvmlDeviceGetEnforcedPowerLimit answers
 * next, as on a GPU. Nothing here ever reaches a real GPU. */
nvmlReturn_t nvmlDeviceSetPowerManagementLimit(nvmlDevice_t device, unsigned int limit_mw)
{
        DEVICE_OR_RETURN(dev, device);
        json_object *v = NULL;
        nvmlReturn_t r = answer(dev, "nvmlDeviceSetPowerManagementLimit", &v);
        if (r != NVML_SUCCESS)
                return r;
        json_object_object_add(dev, "nvmlDeviceGetEnforcedPowerLimit", json_object_new_int64(limit_mw));
        return NVML_SUCCESS;
}

nvmlReturn_t nvmlDeviceGetPowerManagementLimitConstraints(nvmlDevice_t device, unsigned int *min_mw,
                                                          unsigned int *max_mw)
{
        DEVICE_OR_RETURN(dev, device);
        json_object *v = NULL;
        unsigned long long lo, hi;
        if (!min_mw || !max_mw)
                return NVML_ERROR_INVALID_ARGUMENT;
        nvmlReturn_t r = answer(dev, "nvmlDeviceGetPowerManagementLimitConstraints", &v);
        if (r != NVML_SUCCESS)
                return r;
        if (get_field_u64(v, "minLimit", &lo) < 0 || get_field_u64(v, "maxLimit", &hi) < 0)
                return NVML_ERROR_UNKNOWN;
        *min_mw = (unsigned int)lo;
        *max_mw = (unsigned int)hi;
        return NVML_SUCCESS;
}

nvmlReturn_t nvmlDeviceGetPowerManagementDefaultLimit(nvmlDevice_t device, unsigned int *limit_mw)
{
        DEVICE_OR_RETURN(dev, device);
        return answer_uint(dev, "nvmlDeviceGetPowerManagementDefaultLimit", limit_mw);
}

nvmlReturn_t nvmlDeviceGetTemperature(nvmlDevice_t device, nvmlTemperatureSensors_t sensor, unsigned int *temp_c)
{
        DEVICE_OR_RETURN(dev, device);
        json_object *v = NULL;
        unsigned long long t;
        if (!temp_c || sensor != NVML_TEMPERATURE_GPU)
                return NVML_ERROR_INVALID_ARGUMENT;
        nvmlReturn_t r = answer(dev, "nvmlDeviceGetTemperature", &v);
        if (r != NVML_SUCCESS)
                return r;
        r = answer(v, "NVML_TEMPERATURE_GPU", &v);
        if (r != NVML_SUCCESS)
                return r;
        if (get_u64(v, &t) < 0)
                return NVML_ERROR_UNKNOWN;
        *temp_c = (unsigned int)t;
        return NVML_SUCCESS;
}

nvmlReturn_t nvmlDeviceGetCurrPcieLinkGeneration(nvmlDevice_t device, unsigned int *gen)
{
        DEVICE_OR_RETURN(dev, device);
        return answer_uint(dev, "nvmlDeviceGetCurrPcieLinkGeneration", gen);
}

nvmlReturn_t nvmlDeviceGetMaxPcieLinkGeneration(nvmlDevice_t device, unsigned int *gen)
{
        DEVICE_OR_RETURN(dev, device);
        return answer_uint(dev, "nvmlDeviceGetMaxPcieLinkGeneration", gen);
}

nvmlReturn_t nvmlDeviceGetCurrPcieLinkWidth(nvmlDevice_t device, unsigned int *width)
{
        DEVICE_OR_RETURN(dev, device);
        return answer_uint(dev, "nvmlDeviceGetCurrPcieLinkWidth", width);
}

nvmlReturn_t nvmlDeviceGetMaxPcieLinkWidth(nvmlDevice_t device, unsigned int *width)
{
        DEVICE_OR_RETURN(dev, device);
        return answer_uint(dev, "nvmlDeviceGetMaxPcieLinkWidth", width);
}

nvmlReturn_t nvmlDeviceGetNvLinkState(nvmlDevice_t device, unsigned int link, nvmlEnableState_t *is_active)
{
        DEVICE_OR_RETURN(dev, device);
        json_object *v = NULL;
        if (!is_active || link >= NVML_NVLINK_MAX_LINKS)
                return NVML_ERROR_INVALID_ARGUMENT;
        nvmlReturn_t r = answer_at(dev, "nvmlDeviceGetNvLinkState", link, &v);
        if (r != NVML_SUCCESS)
                return r;
        const char *s = json_object_get_string(v);
        if (json_object_is_type(v, json_type_int))
                *is_active = json_object_get_int(v) ? NVML_FEATURE_ENABLED : NVML_FEATURE_DISABLED;
        else if (s && strcmp(s, "NVML_FEATURE_ENABLED") == 0)
                *is_active = NVML_FEATURE_ENABLED;
        else if (s && strcmp(s, "NVML_FEATURE_DISABLED") == 0)
                *is_active = NVML_FEATURE_DISABLED;
        else
                return NVML_ERROR_UNKNOWN;
        return NVML_SUCCESS;
}

nvmlReturn_t nvmlDeviceGetNvLinkRemotePciInfo_v2(nvmlDevice_t device, unsigned int link, nvmlPciInfo_t *pci)
{
        DEVICE_OR_RETURN(dev, device);
        json_object *v = NULL;
        if (!pci || link >= NVML_NVLINK_MAX_LINKS)
                return NVML_ERROR_INVALID_ARGUMENT;
        nvmlReturn_t r = answer_at(dev, "nvmlDeviceGetNvLinkRemotePciInfo_v2", link, &v);
        return r == NVML_SUCCESS ? fill_pci(v, pci) : r;
}

/* The "pairs" entry for two devices, in either order. */
static json_object *pair_answers(nvmlDevice_t d1, nvmlDevice_t d2)
{
        json_object *pairs, *devs;
        if (!device_answers(d1) || !device_answers(d2))
                return NULL;
        long i = (struct replay_device *)d1 - replay.devices, j = (struct replay_device *)d2 - replay.devices;
        if (!json_object_object_get_ex(replay.root, "pairs", &pairs) || !json_object_is_type(pairs, json_type_array))
                return NULL;
        for (size_t k = 0; k < json_object_array_length(pairs); k++) {
                json_object *p = json_object_array_get_idx(pairs, k);
                if (!json_object_object_get_ex(p, "devices", &devs) || json_object_array_length(devs) != 2)
                        continue;
                long a = json_object_get_int(json_object_array_get_idx(devs, 0));
                long b = json_object_get_int(json_object_array_get_idx(devs, 1));
                if ((a == i && b == j) || (a == j && b == i))
                        return p;
        }
        return NULL;
}

nvmlReturn_t nvmlDeviceGetP2PStatus(nvmlDevice_t device1, nvmlDevice_t device2, nvmlGpuP2PCapsIndex_t index,
                                    nvmlGpuP2PStatus_t *status)
{
        if (!replay.init_count)
                return NVML_ERROR_UNINITIALIZED;
        const char *caps = nvml_p2p_caps_name(index);
        if (!status || !caps || !device_answers(device1) || !device_answers(device2) || device1 == device2)
                return NVML_ERROR_INVALID_ARGUMENT;
        json_object *v = NULL;
        nvmlReturn_t r = answer(pair_answers(device1, device2), "nvmlDeviceGetP2PStatus", &v);
        if (r == NVML_SUCCESS)
                r = answer(v, caps, &v);
        if (r != NVML_SUCCESS)
                return r;
        if (json_object_is_type(v, json_type_int)) {
                *status = (nvmlGpuP2PStatus_t)json_object_get_int(v);
                return NVML_SUCCESS;
        }
        const char *s = json_object_get_string(v);
        for (int k = NVML_P2P_STATUS_OK; k <= NVML_P2P_STATUS_UNKNOWN; k++)
                if (strcmp(nvml_p2p_status_name((nvmlGpuP2PStatus_t)k), s) == 0) {
                        *status = (nvmlGpuP2PStatus_t)k;
                        return NVML_SUCCESS;
                }
        if (strcmp(s, "NVML_P2P_STATUS_CHIPSET_NOT_SUPPORED") == 0) {       /* nvml.h's spelling */
                *status = NVML_P2P_STATUS_CHIPSET_NOT_SUPPORTED;
                return NVML_SUCCESS;
        }
        fprintf(stderr, "nvml-replay: \"%s\" is not an NVML P2P status\n", s);
        return NVML_ERROR_UNKNOWN;
}

nvmlReturn_t nvmlDeviceGetTopologyCommonAncestor(nvmlDevice_t device1, nvmlDevice_t device2,
                                                 nvmlGpuTopologyLevel_t *level)
{
        if (!replay.init_count)
                return NVML_ERROR_UNINITIALIZED;
        if (!level || !device_answers(device1) || !device_answers(device2))
                return NVML_ERROR_INVALID_ARGUMENT;
        json_object *v = NULL;
        nvmlReturn_t r = answer(pair_answers(device1, device2), "nvmlDeviceGetTopologyCommonAncestor", &v);
        if (r != NVML_SUCCESS)
                return r;
        if (json_object_is_type(v, json_type_int)) {
                *level = (nvmlGpuTopologyLevel_t)json_object_get_int(v);
                return NVML_SUCCESS;
        }
        const char *s = json_object_get_string(v);
        for (int k = NVML_TOPOLOGY_INTERNAL; k <= NVML_TOPOLOGY_SYSTEM; k += 10)
                if (strcmp(nvml_topology_name((nvmlGpuTopologyLevel_t)k), s) == 0) {
                        *level = (nvmlGpuTopologyLevel_t)k;
                        return NVML_SUCCESS;
                }
        fprintf(stderr, "nvml-replay: \"%s\" is not an NVML topology level\n", s);
        return NVML_ERROR_UNKNOWN;
}
