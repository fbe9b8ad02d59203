/* nvidia.h — the part of NVML's C ABI that rig uses (declared here because NVML is loaded with
 * dlopen, never linked, and its header is not on a Debian box), and the NVIDIA discovery helpers
 * that tests reach directly. The replay library and the recorder in tests/nvml-replay use the
 * same declarations, so the three cannot drift apart. */
#pragma once

#include <stdbool.h>
#include <stddef.h>

#include "gpu.h"

/* ---- NVML ABI (nvml.h, API v11/v12). Values are ABI: never renumber. ---- */

typedef enum nvmlReturn_enum {
        NVML_SUCCESS = 0,
        NVML_ERROR_UNINITIALIZED = 1,
        NVML_ERROR_INVALID_ARGUMENT = 2,
        NVML_ERROR_NOT_SUPPORTED = 3,
        NVML_ERROR_NO_PERMISSION = 4,
        NVML_ERROR_ALREADY_INITIALIZED = 5,
        NVML_ERROR_NOT_FOUND = 6,
        NVML_ERROR_INSUFFICIENT_SIZE = 7,
        NVML_ERROR_INSUFFICIENT_POWER = 8,
        NVML_ERROR_DRIVER_NOT_LOADED = 9,
        NVML_ERROR_TIMEOUT = 10,
        NVML_ERROR_IRQ_ISSUE = 11,
        NVML_ERROR_LIBRARY_NOT_FOUND = 12,
        NVML_ERROR_FUNCTION_NOT_FOUND = 13,
        NVML_ERROR_CORRUPTED_INFOROM = 14,
        NVML_ERROR_GPU_IS_LOST = 15,
        NVML_ERROR_RESET_REQUIRED = 16,
        NVML_ERROR_OPERATING_SYSTEM = 17,
        NVML_ERROR_LIB_RM_VERSION_MISMATCH = 18,
        NVML_ERROR_IN_USE = 19,
        NVML_ERROR_MEMORY = 20,
        NVML_ERROR_NO_DATA = 21,
        NVML_ERROR_VGPU_ECC_NOT_SUPPORTED = 22,
        NVML_ERROR_INSUFFICIENT_RESOURCES = 23,
        NVML_ERROR_FREQ_NOT_SUPPORTED = 24,
        NVML_ERROR_ARGUMENT_VERSION_MISMATCH = 25,
        NVML_ERROR_DEPRECATED = 26,
        NVML_ERROR_NOT_READY = 27,
        NVML_ERROR_GPU_NOT_FOUND = 28,
        NVML_ERROR_INVALID_STATE = 29,
        NVML_ERROR_UNKNOWN = 999,
} nvmlReturn_t;

typedef struct nvmlDevice_st *nvmlDevice_t;

typedef enum nvmlEnableState_enum {
        NVML_FEATURE_DISABLED = 0,
        NVML_FEATURE_ENABLED = 1,
} nvmlEnableState_t;

typedef enum nvmlTemperatureSensors_enum {
        NVML_TEMPERATURE_GPU = 0,
} nvmlTemperatureSensors_t;

typedef enum nvmlGpuP2PCapsIndex_enum {
        NVML_P2P_CAPS_INDEX_READ = 0,
        NVML_P2P_CAPS_INDEX_WRITE = 1,
        NVML_P2P_CAPS_INDEX_NVLINK = 2,
        NVML_P2P_CAPS_INDEX_ATOMICS = 3,
        NVML_P2P_CAPS_INDEX_PCI = 4,            /* formerly _PROP */
        NVML_P2P_CAPS_INDEX_UNKNOWN = 5,
} nvmlGpuP2PCapsIndex_t;

typedef enum nvmlGpuP2PStatus_enum {
        NVML_P2P_STATUS_OK = 0,
        NVML_P2P_STATUS_CHIPSET_NOT_SUPPORTED = 1,      /* spelled _SUPPORED in nvml.h */
        NVML_P2P_STATUS_GPU_NOT_SUPPORTED = 2,
        NVML_P2P_STATUS_IOH_TOPOLOGY_NOT_SUPPORTED = 3,
        NVML_P2P_STATUS_DISABLED_BY_REGKEY = 4,
        NVML_P2P_STATUS_NOT_SUPPORTED = 5,
        NVML_P2P_STATUS_UNKNOWN = 6,
} nvmlGpuP2PStatus_t;

typedef enum nvmlGpuLevel_enum {
        NVML_TOPOLOGY_INTERNAL = 0,             /* same board (multi-GPU card) */
        NVML_TOPOLOGY_SINGLE = 10,              /* one PCIe switch between them */
        NVML_TOPOLOGY_MULTIPLE = 20,            /* several PCIe switches, no host bridge */
        NVML_TOPOLOGY_HOSTBRIDGE = 30,          /* one host bridge */
        NVML_TOPOLOGY_NODE = 40,                /* host bridges of one NUMA node */
        NVML_TOPOLOGY_SYSTEM = 50,              /* across the CPU interconnect (SMP) */
} nvmlGpuTopologyLevel_t;

#define NVML_DEVICE_PCI_BUS_ID_BUFFER_SIZE 32
#define NVML_DEVICE_PCI_BUS_ID_BUFFER_V2_SIZE 16
#define NVML_DEVICE_NAME_V2_BUFFER_SIZE 96
#define NVML_DEVICE_UUID_V2_BUFFER_SIZE 96
#define NVML_SYSTEM_DRIVER_VERSION_BUFFER_SIZE 80
#define NVML_SYSTEM_NVML_VERSION_BUFFER_SIZE 80
#define NVML_NVLINK_MAX_LINKS 18

/* Layout of nvmlDeviceGetPciInfo_v2/_v3 and nvmlDeviceGetNvLinkRemotePciInfo_v2. */
typedef struct nvmlPciInfo_st {
        char busIdLegacy[NVML_DEVICE_PCI_BUS_ID_BUFFER_V2_SIZE];   /* "0000:41:00.0" */
        unsigned int domain;
        unsigned int bus;
        unsigned int device;
        unsigned int pciDeviceId;               /* device << 16 | vendor: 0x233110de */
        unsigned int pciSubSystemId;
        char busId[NVML_DEVICE_PCI_BUS_ID_BUFFER_SIZE];           /* "00000000:41:00.0", upper-case hex */
} nvmlPciInfo_t;

/* nvmlDeviceGetMemoryInfo (v1): bytes; used = total - free, so it includes what the driver reserves. */
typedef struct nvmlMemory_st {
        unsigned long long total;
        unsigned long long free;
        unsigned long long used;
} nvmlMemory_t;

/* The exported symbols rig calls, one X per function: X(name, argument list). */
#define NVML_FUNCTIONS(X)                                                                               \
        X(nvmlInit_v2, (void))                                                                          \
        X(nvmlShutdown, (void))                                                                         \
        X(nvmlSystemGetDriverVersion, (char *version, unsigned int length))                            \
        X(nvmlSystemGetNVMLVersion, (char *version, unsigned int length))                              \
        X(nvmlDeviceGetCount_v2, (unsigned int *count))                                                 \
        X(nvmlDeviceGetHandleByIndex_v2, (unsigned int index, nvmlDevice_t *device))                   \
        X(nvmlDeviceGetPciInfo_v3, (nvmlDevice_t device, nvmlPciInfo_t *pci))                          \
        X(nvmlDeviceGetName, (nvmlDevice_t device, char *name, unsigned int length))                   \
        X(nvmlDeviceGetUUID, (nvmlDevice_t device, char *uuid, unsigned int length))                   \
        X(nvmlDeviceGetCudaComputeCapability, (nvmlDevice_t device, int *major, int *minor))           \
        X(nvmlDeviceGetMemoryInfo, (nvmlDevice_t device, nvmlMemory_t *memory))                        \
        X(nvmlDeviceGetPowerUsage, (nvmlDevice_t device, unsigned int *power_mw))                      \
        X(nvmlDeviceGetEnforcedPowerLimit, (nvmlDevice_t device, unsigned int *limit_mw))              \
        X(nvmlDeviceGetPowerManagementLimitConstraints,                                                 \
          (nvmlDevice_t device, unsigned int *min_mw, unsigned int *max_mw))                           \
        X(nvmlDeviceGetPowerManagementDefaultLimit, (nvmlDevice_t device, unsigned int *limit_mw))     \
        X(nvmlDeviceSetPowerManagementLimit, (nvmlDevice_t device, unsigned int limit_mw))             \
        X(nvmlDeviceGetTemperature, (nvmlDevice_t device, nvmlTemperatureSensors_t sensor, unsigned int *temp_c)) \
        X(nvmlDeviceGetCurrPcieLinkGeneration, (nvmlDevice_t device, unsigned int *gen))               \
        X(nvmlDeviceGetMaxPcieLinkGeneration, (nvmlDevice_t device, unsigned int *gen))                \
        X(nvmlDeviceGetCurrPcieLinkWidth, (nvmlDevice_t device, unsigned int *width))                  \
        X(nvmlDeviceGetMaxPcieLinkWidth, (nvmlDevice_t device, unsigned int *width))                   \
        X(nvmlDeviceGetP2PStatus, (nvmlDevice_t device1, nvmlDevice_t device2,                          \
                                   nvmlGpuP2PCapsIndex_t index, nvmlGpuP2PStatus_t *status))           \
        X(nvmlDeviceGetTopologyCommonAncestor, (nvmlDevice_t device1, nvmlDevice_t device2,             \
                                                nvmlGpuTopologyLevel_t *level))                        \
        X(nvmlDeviceGetNvLinkState, (nvmlDevice_t device, unsigned int link, nvmlEnableState_t *is_active)) \
        X(nvmlDeviceGetNvLinkRemotePciInfo_v2, (nvmlDevice_t device, unsigned int link, nvmlPciInfo_t *pci))

/* nvmlErrorString returns a pointer, not nvmlReturn_t, so it stands outside the list. */
typedef const char *(*nvml_error_string_fn)(nvmlReturn_t result);

/* ---- NVIDIA discovery helpers, exposed for tests ---- */

/* NVML's "00000000:41:00.0" (or the legacy/kernel "0000:41:00.0", either case) → the kernel's
 * "0000:41:00.0". Returns false on anything else. */
bool nvidia_pci_from_bus_id(const char *bus_id, char *out, size_t size);

/* What /proc/driver/nvidia/gpus/<pci>/information tells: the driver's view, without NVML. */
struct nvidia_proc_info {
        char name[128];                 /* "Model:" */
        char uuid[80];                  /* "GPU UUID:" */
        char pci[GPU_PCI_LEN];          /* "Bus Location:", normalised */
        int minor;                      /* "Device Minor:" (/dev/nvidiaN), -1 if absent */
};

/* Parses the text of one information file. -EINVAL when it has no valid "Bus Location". */
int nvidia_parse_proc_information(const char *text, struct nvidia_proc_info *out);

/* Compute capability 9.0 → "sm_90", 10.0 → "sm_100". */
void nvidia_arch_name(int major, int minor, char *buf, size_t size);

/* The enforced power limit (W) read fresh through NVML; -ENODATA without NVML or an answer. */
int nvidia_power_limit_read(const struct machine *m, const struct gpu_info *g, double *cap_w);
/* Sets the power management limit through NVML (root and CAP_SYS_ADMIN on a real driver);
 * failures name the NVML error in err. */
int nvidia_power_limit_write(const struct machine *m, const struct gpu_info *g, double cap_w, char *err,
                             size_t err_size);

/* The NVML names used in messages and in answer files ("NVML_ERROR_NOT_SUPPORTED",
 * "NVML_P2P_STATUS_OK", "NVML_TOPOLOGY_SYSTEM"); NULL for values NVML does not define. Inline so
 * that the replay library and the recorder, which do not link the discovery library, share them. */
#define NVML_NAME_CASE(v) case v: return #v
static inline const char *nvml_return_name(nvmlReturn_t r)
{
        switch (r) {
        NVML_NAME_CASE(NVML_SUCCESS);
        NVML_NAME_CASE(NVML_ERROR_UNINITIALIZED);
        NVML_NAME_CASE(NVML_ERROR_INVALID_ARGUMENT);
        NVML_NAME_CASE(NVML_ERROR_NOT_SUPPORTED);
        NVML_NAME_CASE(NVML_ERROR_NO_PERMISSION);
        NVML_NAME_CASE(NVML_ERROR_ALREADY_INITIALIZED);
        NVML_NAME_CASE(NVML_ERROR_NOT_FOUND);
        NVML_NAME_CASE(NVML_ERROR_INSUFFICIENT_SIZE);
        NVML_NAME_CASE(NVML_ERROR_INSUFFICIENT_POWER);
        NVML_NAME_CASE(NVML_ERROR_DRIVER_NOT_LOADED);
        NVML_NAME_CASE(NVML_ERROR_TIMEOUT);
        NVML_NAME_CASE(NVML_ERROR_IRQ_ISSUE);
        NVML_NAME_CASE(NVML_ERROR_LIBRARY_NOT_FOUND);
        NVML_NAME_CASE(NVML_ERROR_FUNCTION_NOT_FOUND);
        NVML_NAME_CASE(NVML_ERROR_CORRUPTED_INFOROM);
        NVML_NAME_CASE(NVML_ERROR_GPU_IS_LOST);
        NVML_NAME_CASE(NVML_ERROR_RESET_REQUIRED);
        NVML_NAME_CASE(NVML_ERROR_OPERATING_SYSTEM);
        NVML_NAME_CASE(NVML_ERROR_LIB_RM_VERSION_MISMATCH);
        NVML_NAME_CASE(NVML_ERROR_IN_USE);
        NVML_NAME_CASE(NVML_ERROR_MEMORY);
        NVML_NAME_CASE(NVML_ERROR_NO_DATA);
        NVML_NAME_CASE(NVML_ERROR_VGPU_ECC_NOT_SUPPORTED);
        NVML_NAME_CASE(NVML_ERROR_INSUFFICIENT_RESOURCES);
        NVML_NAME_CASE(NVML_ERROR_FREQ_NOT_SUPPORTED);
        NVML_NAME_CASE(NVML_ERROR_ARGUMENT_VERSION_MISMATCH);
        NVML_NAME_CASE(NVML_ERROR_DEPRECATED);
        NVML_NAME_CASE(NVML_ERROR_NOT_READY);
        NVML_NAME_CASE(NVML_ERROR_GPU_NOT_FOUND);
        NVML_NAME_CASE(NVML_ERROR_INVALID_STATE);
        NVML_NAME_CASE(NVML_ERROR_UNKNOWN);
        }
        return NULL;
}

static inline const char *nvml_p2p_status_name(nvmlGpuP2PStatus_t s)
{
        switch (s) {
        NVML_NAME_CASE(NVML_P2P_STATUS_OK);
        NVML_NAME_CASE(NVML_P2P_STATUS_CHIPSET_NOT_SUPPORTED);
        NVML_NAME_CASE(NVML_P2P_STATUS_GPU_NOT_SUPPORTED);
        NVML_NAME_CASE(NVML_P2P_STATUS_IOH_TOPOLOGY_NOT_SUPPORTED);
        NVML_NAME_CASE(NVML_P2P_STATUS_DISABLED_BY_REGKEY);
        NVML_NAME_CASE(NVML_P2P_STATUS_NOT_SUPPORTED);
        NVML_NAME_CASE(NVML_P2P_STATUS_UNKNOWN);
        }
        return NULL;
}

/* The short names the answer file uses for P2P capability indexes: "READ", "NVLINK"... */
static inline const char *nvml_p2p_caps_name(nvmlGpuP2PCapsIndex_t i)
{
        switch (i) {
        case NVML_P2P_CAPS_INDEX_READ:    return "READ";
        case NVML_P2P_CAPS_INDEX_WRITE:   return "WRITE";
        case NVML_P2P_CAPS_INDEX_NVLINK:  return "NVLINK";
        case NVML_P2P_CAPS_INDEX_ATOMICS: return "ATOMICS";
        case NVML_P2P_CAPS_INDEX_PCI:     return "PCI";
        case NVML_P2P_CAPS_INDEX_UNKNOWN: break;
        }
        return NULL;
}

static inline const char *nvml_topology_name(nvmlGpuTopologyLevel_t t)
{
        switch (t) {
        NVML_NAME_CASE(NVML_TOPOLOGY_INTERNAL);
        NVML_NAME_CASE(NVML_TOPOLOGY_SINGLE);
        NVML_NAME_CASE(NVML_TOPOLOGY_MULTIPLE);
        NVML_NAME_CASE(NVML_TOPOLOGY_HOSTBRIDGE);
        NVML_NAME_CASE(NVML_TOPOLOGY_NODE);
        NVML_NAME_CASE(NVML_TOPOLOGY_SYSTEM);
        }
        return NULL;
}
#undef NVML_NAME_CASE
