/* nvidia.c — NVIDIA GPUs: NVML (loaded with dlopen, so one binary runs on boxes without it) for
 * identity, memory, power, PCIe and P2P; /proc/driver/nvidia/gpus when NVML is missing, so the
 * GPUs are still listed. NVML handles stay in m->nvidia for the topology pass. */
#include <ctype.h>
#include <dirent.h>
#include <dlfcn.h>
#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "log.h"
#include "machine.h"
#include "nvidia.h"
#include "sysfs.h"
#include "util.h"

#define PCI_VENDOR_NVIDIA 0x10de
#define NVML_LIBRARY "libnvidia-ml.so.1"
#define PROC_GPUS_DIR "proc/driver/nvidia/gpus"
#define PROC_INFORMATION_MAX 16384

/* Where NVML lives when it is not on the loader's path: the NVIDIA container toolkit's layout
 * (seen on a real H100 box) and Debian's nvidia packages. Tried only on the live system. */
static const char *const nvml_fallback_paths[] = {
        "/usr/local/nvidia/lib64/" NVML_LIBRARY,
        "/usr/lib/x86_64-linux-gnu/nvidia/current/" NVML_LIBRARY,
};

struct nvidia_device {
        char pci[GPU_PCI_LEN];
        nvmlDevice_t handle;
};

struct nvidia_state {
        void *dl;
        bool is_initialized;                    /* nvmlInit_v2 succeeded: nvmlShutdown owed */
        nvml_error_string_fn nvmlErrorString;
#define X(name, args) nvmlReturn_t (*name) args;
        NVML_FUNCTIONS(X)
#undef X
        struct nvidia_device *devices;          /* GPUs NVML answered for, for nvidia_link() */
        size_t n_devices;
};

/* A symbol the loaded NVML lacks (an old driver, or a replay that does not answer it) reads as
 * NVML's own "function not found", so every caller has one error path. */
#define NVML_CALL(st, fn, ...) ((st)->fn ? (st)->fn(__VA_ARGS__) : NVML_ERROR_FUNCTION_NOT_FOUND)

/* "Not Supported (NVML_ERROR_NOT_SUPPORTED)" into buf. */
static const char *nvml_strerror(const struct nvidia_state *st, nvmlReturn_t r, char *buf, size_t size)
{
        const char *text = st && st->nvmlErrorString ? st->nvmlErrorString(r) : NULL;
        const char *name = nvml_return_name(r);
        if (name)
                snprintf(buf, size, "%s (%s)", text ? text : "error", name);
        else
                snprintf(buf, size, "%s (NVML error %d)", text ? text : "error", (int)r);
        return buf;
}

/* True on success; else warns naming the call, the GPU and what stays unknown. */
static bool nvml_check(const struct nvidia_state *st, nvmlReturn_t r, const char *call, const char *gpu,
                       const char *unknown)
{
        if (r == NVML_SUCCESS)
                return true;
        char err[160];
        log_warning("NVML %s on GPU %s failed: %s; %s unknown", call, gpu, nvml_strerror(st, r, err, sizeof(err)),
                    unknown);
        return false;
}

#define NVML_TRY(st, gpu, unknown, fn, ...) nvml_check((st), NVML_CALL(st, fn, __VA_ARGS__), #fn, (gpu), (unknown))

bool nvidia_pci_from_bus_id(const char *bus_id, char *out, size_t size)
{
        unsigned domain, bus, dev, fn;
        int end = 0;
        /* NVML pads the domain to eight digits and writes upper-case hex; the kernel writes
         * four (more only for VMD-style domains above 0xffff) in lower case. */
        if (!bus_id || sscanf(bus_id, "%8x:%2x:%2x.%1x%n", &domain, &bus, &dev, &fn, &end) != 4)
                return false;
        if (bus_id[end] != '\0' || dev > 0x1f || fn > 7)
                return false;
        if (!isxdigit((unsigned char)bus_id[0]))
                return false;           /* sscanf would take " 41" or "+41" */
        int n = snprintf(out, size, "%04x:%02x:%02x.%x", domain, bus, dev, fn);
        return n > 0 && (size_t)n < size;
}

void nvidia_arch_name(int major, int minor, char *buf, size_t size)
{
        if (major <= 0 || minor < 0)
                snprintf(buf, size, "%s", "");
        else
                snprintf(buf, size, "sm_%d%d", major, minor);
}

static char *strip(char *s)
{
        while (isspace((unsigned char)*s))
                s++;
        size_t n = strlen(s);
        while (n > 0 && isspace((unsigned char)s[n - 1]))
                s[--n] = '\0';
        return s;
}

int nvidia_parse_proc_information(const char *text, struct nvidia_proc_info *out)
{
        memset(out, 0, sizeof(*out));
        out->minor = -1;

        /* "Key:   \t value" lines; keys contain spaces ("Bus Location"), values contain colons. */
        for (const char *line = text; line && *line; ) {
                const char *eol = strchr(line, '\n');
                size_t len = eol ? (size_t)(eol - line) : strlen(line);
                char buf[256];
                if (len >= sizeof(buf))
                        len = sizeof(buf) - 1;
                memcpy(buf, line, len);
                buf[len] = '\0';
                line = eol ? eol + 1 : NULL;

                char *colon = strchr(buf, ':');
                if (!colon)
                        continue;
                *colon = '\0';
                const char *key = strip(buf);
                const char *value = strip(colon + 1);

                if (streq(key, "Model")) {
                        strscpy(out->name, value, sizeof(out->name));
                } else if (streq(key, "GPU UUID")) {
                        strscpy(out->uuid, value, sizeof(out->uuid));
                } else if (streq(key, "Bus Location")) {
                        if (!nvidia_pci_from_bus_id(value, out->pci, sizeof(out->pci)))
                                out->pci[0] = '\0';
                } else if (streq(key, "Device Minor")) {
                        char *end;
                        long v = strtol(value, &end, 10);
                        if (end != value && *end == '\0' && v >= 0 && v < 256)
                                out->minor = (int)v;
                }
        }
        return out->pci[0] ? 0 : -EINVAL;
}

static bool path_exists(const struct machine *m, const char *rel)
{
        char path[PATH_MAX];
        return machine_path(m, rel, path, sizeof(path)) && access(path, F_OK) == 0;
}

/* The PCI device directory, NUMA node and the ids NVML does not give (revision), from sysfs.
 * Everything here is optional: a container may hide sysfs, a fixture may be partial. */
static void read_sysfs(const struct machine *m, struct gpu_info *g)
{
        char rel[PATH_MAX], dir[sizeof(g->sysfs_dir)];
        snprintf(rel, sizeof(rel), "sys/bus/pci/devices/%s", g->pci);
        /* the resolved "sys/devices/pci0000:40/..." path, so the topology pass can see root complexes */
        if (sysfs_resolve_link(m, rel, dir, sizeof(dir)) == 0)
                strscpy(g->sysfs_dir, dir, sizeof(g->sysfs_dir));
        else if (path_exists(m, rel))
                strscpy(g->sysfs_dir, rel, sizeof(g->sysfs_dir));
        else
                return;

        int64_t numa;
        snprintf(rel, sizeof(rel), "%s/numa_node", g->sysfs_dir);
        if (path_exists(m, rel) && sysfs_read_s64(m, rel, &numa) == 0 && numa >= 0 && numa < 4096)
                g->numa_node = (int)numa;

        uint64_t v;
        snprintf(rel, sizeof(rel), "%s/revision", g->sysfs_dir);
        if (sysfs_read_u64_optional(m, rel, &v) == 0 && v <= 0xff)
                g->pci_revision = (uint32_t)v;
        if (g->pci_device == 0) {
                snprintf(rel, sizeof(rel), "%s/device", g->sysfs_dir);
                if (sysfs_read_u64_optional(m, rel, &v) == 0 && v <= 0xffff)
                        g->pci_device = (uint32_t)v;
        }
}

/* ---- /proc/driver/nvidia: the driver's list of GPUs, used without NVML ---- */

struct proc_gpus {
        struct nvidia_proc_info *gpus;
        size_t n_gpus;
};

static void proc_gpus_free(struct proc_gpus *p)
{
        free(p->gpus);
        p->gpus = NULL;
        p->n_gpus = 0;
}

static int compare_proc(const void *pa, const void *pb)
{
        const struct nvidia_proc_info *a = pa, *b = pb;
        return strcmp(a->pci, b->pci);
}

/* Reads every <root>/proc/driver/nvidia/gpus/<pci>/information. No directory: no NVIDIA driver,
 * an empty list. A file that cannot be read or parsed is a warning; the others are kept. */
static int proc_gpus_read(const struct machine *m, struct proc_gpus *out)
{
        char path[PATH_MAX];
        out->gpus = NULL;
        out->n_gpus = 0;
        if (!machine_path(m, PROC_GPUS_DIR, path, sizeof(path)))
                return -ENAMETOOLONG;
        _cleanup_closedir_ DIR *d = opendir(path);
        if (!d) {
                if (errno != ENOENT)
                        log_warning_errno(errno, "reading %s", path);
                return 0;
        }
        for (struct dirent *e; (e = readdir(d)); ) {
                if (e->d_name[0] == '.')
                        continue;
                char rel[PATH_MAX];
                snprintf(rel, sizeof(rel), PROC_GPUS_DIR "/%s/information", e->d_name);
                _cleanup_free_ char *text = NULL;
                int r = sysfs_read_file(m, rel, PROC_INFORMATION_MAX, &text, NULL);
                if (r == -ENOMEM)
                        return r;
                if (r < 0) {
                        log_warning_errno(r, "reading %s/%s", machine_prefix(m), rel);
                        continue;
                }
                struct nvidia_proc_info info;
                if (nvidia_parse_proc_information(text, &info) < 0) {
                        log_warning("reading %s/%s: no valid \"Bus Location\" line; skipping this GPU",
                                    machine_prefix(m), rel);
                        continue;
                }
                struct nvidia_proc_info *gpus = realloc(out->gpus, (out->n_gpus + 1) * sizeof(*gpus));
                if (!gpus)
                        return -ENOMEM;
                out->gpus = gpus;
                out->gpus[out->n_gpus++] = info;
        }
        if (out->n_gpus > 1)
                qsort(out->gpus, out->n_gpus, sizeof(*out->gpus), compare_proc);
        return 0;
}

/* /dev/nvidiaN, /dev/nvidiactl and the UVM nodes CUDA opens, numbered from /proc/devices. */
static void add_dev_nodes(const struct machine *m, struct gpu_info *g, int minor)
{
        unsigned major, uvm;
        if (minor < 0)
                return;
        if (proc_devices_major(m, "nvidia-frontend", &major) < 0 && proc_devices_major(m, "nvidia", &major) < 0)
                return;
        char path[40];
        snprintf(path, sizeof(path), "/dev/nvidia%d", minor);
        gpu_add_dev_node(g, path, major, (unsigned)minor);
        gpu_add_dev_node(g, "/dev/nvidiactl", major, 255);
        if (proc_devices_major(m, "nvidia-uvm", &uvm) == 0) {
                gpu_add_dev_node(g, "/dev/nvidia-uvm", uvm, 0);
                gpu_add_dev_node(g, "/dev/nvidia-uvm-tools", uvm, 1);
        }
}

static int proc_minor(const struct proc_gpus *proc, const char *pci)
{
        for (size_t i = 0; i < proc->n_gpus; i++)
                if (streq(proc->gpus[i].pci, pci))
                        return proc->gpus[i].minor;
        return -1;
}

static int add_proc_gpu(struct machine *m, const struct nvidia_proc_info *p, enum gpu_health health)
{
        struct gpu_info g;
        gpu_info_init(&g);
        g.vendor = GPU_VENDOR_NVIDIA;
        g.pci_vendor = PCI_VENDOR_NVIDIA;
        g.health = health;
        strscpy(g.pci, p->pci, sizeof(g.pci));
        strscpy(g.unique_id, p->uuid, sizeof(g.unique_id));
        strscpy(g.name, p->name[0] ? p->name : "NVIDIA GPU", sizeof(g.name));
        read_sysfs(m, &g);
        add_dev_nodes(m, &g, p->minor);
        return machine_add_gpu(m, &g) ? 0 : -ENOMEM;
}

/* ---- NVML ---- */

static void nvml_resolve(struct nvidia_state *st)
{
#define X(name, args) st->name = (nvmlReturn_t (*) args)dlsym(st->dl, #name);
        NVML_FUNCTIONS(X)
#undef X
        st->nvmlErrorString = (nvml_error_string_fn)dlsym(st->dl, "nvmlErrorString");
        /* drivers before 450 have only _v2, with the same nvmlPciInfo_t layout */
        if (!st->nvmlDeviceGetPciInfo_v3)
                st->nvmlDeviceGetPciInfo_v3 = (nvmlReturn_t (*)(nvmlDevice_t, nvmlPciInfo_t *))
                        dlsym(st->dl, "nvmlDeviceGetPciInfo_v2");
}

/* Opens NVML: the library named by RIG_NVML_LIBRARY, else libnvidia-ml.so.1 on the loader's path
 * and the usual driver directories. On failure why holds dlerror()'s words. */
static int nvml_open(struct nvidia_state *st, const char *explicit_path, bool is_live, char *why, size_t why_size)
{
        const char *first = explicit_path ? explicit_path : NVML_LIBRARY;
        st->dl = dlopen(first, RTLD_NOW | RTLD_LOCAL);
        if (!st->dl) {
                const char *e = dlerror();
                snprintf(why, why_size, "%s", e ? e : first);
        }
        for (size_t i = 0; !st->dl && !explicit_path && is_live && i < ELEMENTSOF(nvml_fallback_paths); i++)
                st->dl = dlopen(nvml_fallback_paths[i], RTLD_NOW | RTLD_LOCAL);
        if (!st->dl)
                return -ENOENT;

        nvml_resolve(st);
        const char *missing = !st->nvmlInit_v2 ? "nvmlInit_v2" :
                              !st->nvmlShutdown ? "nvmlShutdown" :
                              !st->nvmlDeviceGetCount_v2 ? "nvmlDeviceGetCount_v2" :
                              !st->nvmlDeviceGetHandleByIndex_v2 ? "nvmlDeviceGetHandleByIndex_v2" :
                              !st->nvmlDeviceGetPciInfo_v3 ? "nvmlDeviceGetPciInfo_v3" : NULL;
        if (missing) {
                snprintf(why, why_size, "%s has no %s (driver too old?)", first, missing);
                return -ENOSYS;
        }
        return 0;
}

static void read_power(const struct nvidia_state *st, nvmlDevice_t h, struct gpu_info *g)
{
        unsigned int mw, min_mw, max_mw;
        if (NVML_TRY(st, g->pci, "power draw", nvmlDeviceGetPowerUsage, h, &mw))
                g->power_w = mw / 1000.0;
        if (NVML_TRY(st, g->pci, "power cap", nvmlDeviceGetEnforcedPowerLimit, h, &mw))
                g->power_cap_w = mw / 1000.0;
        if (NVML_TRY(st, g->pci, "power cap range", nvmlDeviceGetPowerManagementLimitConstraints, h, &min_mw, &max_mw)) {
                g->power_cap_min_w = min_mw / 1000.0;
                g->power_cap_max_w = max_mw / 1000.0;
        }
        if (NVML_TRY(st, g->pci, "default power cap", nvmlDeviceGetPowerManagementDefaultLimit, h, &mw))
                g->power_cap_default_w = mw / 1000.0;
}

static void read_pcie(const struct nvidia_state *st, nvmlDevice_t h, struct gpu_info *g)
{
        unsigned int v;
        /* NVIDIA GPUs drop the link to gen 1 when idle: the current figures are a snapshot. */
        if (NVML_TRY(st, g->pci, "current PCIe generation", nvmlDeviceGetCurrPcieLinkGeneration, h, &v) && v <= 16)
                g->pcie_gen = (int)v;
        if (NVML_TRY(st, g->pci, "current PCIe width", nvmlDeviceGetCurrPcieLinkWidth, h, &v) && v <= 32)
                g->pcie_width = (int)v;
        if (NVML_TRY(st, g->pci, "maximum PCIe generation", nvmlDeviceGetMaxPcieLinkGeneration, h, &v) && v <= 16)
                g->pcie_max_gen = (int)v;
        if (NVML_TRY(st, g->pci, "maximum PCIe width", nvmlDeviceGetMaxPcieLinkWidth, h, &v) && v <= 32)
                g->pcie_max_width = (int)v;
}

/* Fills g for NVML device index i. -EIO when not even its PCI address is known (then the GPU
 * cannot be told apart from others and is left to the /proc pass). */
static int nvml_read_gpu(const struct machine *m, const struct nvidia_state *st, unsigned i, nvmlDevice_t h,
                         struct gpu_info *g)
{
        char label[32], err[160];
        gpu_info_init(g);
        g->vendor = GPU_VENDOR_NVIDIA;
        g->pci_vendor = PCI_VENDOR_NVIDIA;

        nvmlPciInfo_t pci;
        memset(&pci, 0, sizeof(pci));
        nvmlReturn_t r = NVML_CALL(st, nvmlDeviceGetPciInfo_v3, h, &pci);
        if (r != NVML_SUCCESS) {
                log_warning("NVML nvmlDeviceGetPciInfo_v3 on GPU index %u failed: %s; cannot place it",
                            i, nvml_strerror(st, r, err, sizeof(err)));
                return -EIO;
        }
        pci.busId[sizeof(pci.busId) - 1] = '\0';
        pci.busIdLegacy[sizeof(pci.busIdLegacy) - 1] = '\0';
        if (!nvidia_pci_from_bus_id(pci.busId, g->pci, sizeof(g->pci)) &&
            !nvidia_pci_from_bus_id(pci.busIdLegacy, g->pci, sizeof(g->pci))) {
                log_warning("NVML nvmlDeviceGetPciInfo_v3 on GPU index %u gave bus id \"%s\", not a PCI address; "
                            "cannot place it", i, pci.busId);
                return -EIO;
        }
        if ((pci.pciDeviceId & 0xffff) != 0)
                g->pci_vendor = pci.pciDeviceId & 0xffff;
        g->pci_device = pci.pciDeviceId >> 16;
        snprintf(label, sizeof(label), "%s", g->pci);

        char name[NVML_DEVICE_NAME_V2_BUFFER_SIZE] = "";
        if (NVML_TRY(st, label, "name", nvmlDeviceGetName, h, name, sizeof(name)) && name[0])
                strscpy(g->name, name, sizeof(g->name));
        else
                snprintf(g->name, sizeof(g->name), "NVIDIA GPU %04x:%04x", g->pci_vendor, g->pci_device);

        char uuid[NVML_DEVICE_UUID_V2_BUFFER_SIZE] = "";
        if (NVML_TRY(st, label, "UUID", nvmlDeviceGetUUID, h, uuid, sizeof(uuid)))
                strscpy(g->unique_id, uuid, sizeof(g->unique_id));

        int major = 0, minor = 0;
        if (NVML_TRY(st, label, "architecture", nvmlDeviceGetCudaComputeCapability, h, &major, &minor))
                nvidia_arch_name(major, minor, g->arch, sizeof(g->arch));

        nvmlMemory_t mem;
        if (NVML_TRY(st, label, "memory", nvmlDeviceGetMemoryInfo, h, &mem)) {
                g->vram_total_bytes = mem.total;
                g->vram_used_bytes = mem.used;
                /* The kernel maps a BAR1 window, not all VRAM, but CUDA P2P does not go through it. */
                g->vis_vram_total_bytes = mem.total;
        }

        read_power(st, h, g);

        unsigned int temp;
        if (NVML_TRY(st, label, "temperature", nvmlDeviceGetTemperature, h, NVML_TEMPERATURE_GPU, &temp))
                g->temp_c = (double)temp;

        read_pcie(st, h, g);
        read_sysfs(m, g);
        return 0;
}

static int remember_device(struct nvidia_state *st, const char *pci, nvmlDevice_t h)
{
        struct nvidia_device *d = realloc(st->devices, (st->n_devices + 1) * sizeof(*d));
        if (!d)
                return -ENOMEM;
        st->devices = d;
        strscpy(d[st->n_devices].pci, pci, sizeof(d[st->n_devices].pci));
        d[st->n_devices].handle = h;
        st->n_devices++;
        return 0;
}

static bool seen_pci(const struct nvidia_state *st, const char *pci)
{
        for (size_t i = 0; i < st->n_devices; i++)
                if (streq(st->devices[i].pci, pci))
                        return true;
        return false;
}

/* NVML is up: one GPU per NVML index. GPUs NVML could not read (lost, no permission) are taken
 * from /proc so that one broken card does not hide itself or the others. */
static int nvml_discover(struct machine *m, struct nvidia_state *st, const struct proc_gpus *proc)
{
        char err[160];
        unsigned count = 0;
        nvmlReturn_t r = st->nvmlDeviceGetCount_v2(&count);
        if (r != NVML_SUCCESS) {
                log_warning("NVML nvmlDeviceGetCount_v2 failed: %s; listing NVIDIA GPUs from /proc/driver/nvidia",
                            nvml_strerror(st, r, err, sizeof(err)));
                count = 0;
        }

        size_t n_failed = r == NVML_SUCCESS ? 0 : 1;
        for (unsigned i = 0; i < count; i++) {
                nvmlDevice_t h = NULL;
                r = st->nvmlDeviceGetHandleByIndex_v2(i, &h);
                if (r != NVML_SUCCESS) {
                        log_warning("NVML nvmlDeviceGetHandleByIndex_v2 for GPU index %u failed: %s; skipping it",
                                    i, nvml_strerror(st, r, err, sizeof(err)));
                        n_failed++;
                        continue;
                }
                struct gpu_info g;
                if (nvml_read_gpu(m, st, i, h, &g) < 0) {
                        n_failed++;
                        continue;
                }
                if (seen_pci(st, g.pci)) {
                        log_warning("NVML lists GPU %s twice; keeping the first", g.pci);
                        continue;
                }
                add_dev_nodes(m, &g, proc_minor(proc, g.pci));
                if (!machine_add_gpu(m, &g))
                        return -ENOMEM;
                if (remember_device(st, g.pci, h) < 0)
                        return -ENOMEM;
        }

        for (size_t i = 0; i < proc->n_gpus; i++) {
                const struct nvidia_proc_info *p = &proc->gpus[i];
                if (seen_pci(st, p->pci))
                        continue;
                if (n_failed == 0) {
                        /* NVML answered for all it sees: the rest are hidden from this container */
                        log_debug("%s/%s/%s: NVML does not list this GPU; not using it", machine_prefix(m),
                                  PROC_GPUS_DIR, p->pci);
                        continue;
                }
                log_warning("NVIDIA GPU %s is in /proc/driver/nvidia but NVML could not read it; listing it as "
                            "degraded with memory and power unknown", p->pci);
                int k = add_proc_gpu(m, p, GPU_HEALTH_DEGRADED);
                if (k < 0)
                        return k;
        }
        return 0;
}

static int discover_from_proc(struct machine *m, const struct proc_gpus *proc)
{
        for (size_t i = 0; i < proc->n_gpus; i++) {
                int r = add_proc_gpu(m, &proc->gpus[i], GPU_HEALTH_OK);
                if (r < 0)
                        return r;
        }
        return 0;
}

static int nvidia_discover(struct machine *m)
{
        _cleanup_(proc_gpus_free) struct proc_gpus proc = { NULL, 0 };
        int r = proc_gpus_read(m, &proc);
        if (r < 0)
                return r;

        /* On a fixture the host's NVML would describe the wrong machine; a recorded one is fine. */
        const char *lib = getenv("RIG_NVML_LIBRARY");
        if (lib && !*lib)
                lib = NULL;
        if (!m->is_live && !lib) {
                if (proc.n_gpus > 0)
                        log_warning("%s/%s lists %zu NVIDIA GPU(s); NVML is used for a --root tree only when "
                                    "RIG_NVML_LIBRARY names one (a recorded answer: libnvml-replay.so with "
                                    "RIG_NVML_REPLAY): memory, power and P2P unknown",
                                    machine_prefix(m), PROC_GPUS_DIR, proc.n_gpus);
                return discover_from_proc(m, &proc);
        }

        struct nvidia_state *st = calloc(1, sizeof(*st));
        if (!st)
                return -ENOMEM;
        m->nvidia = st;

        char why[512] = "";
        r = nvml_open(st, lib, m->is_live, why, sizeof(why));
        if (r < 0) {
                if (proc.n_gpus == 0 && !lib)
                        return 0;       /* no NVIDIA driver, no NVML: not an NVIDIA box */
                log_warning("NVML was not found (%s): NVIDIA GPUs are listed from /proc/driver/nvidia with memory, "
                            "power and P2P unknown; install the NVIDIA driver's NVML (libnvidia-ml.so.1, Debian "
                            "package libnvidia-ml1) or set RIG_NVML_LIBRARY to its path", why);
                return discover_from_proc(m, &proc);
        }

        nvmlReturn_t nr = st->nvmlInit_v2();
        if (nr != NVML_SUCCESS) {
                char err[160];
                if (proc.n_gpus == 0 && !lib && nr == NVML_ERROR_DRIVER_NOT_LOADED)
                        return 0;       /* NVML installed, but no driver and no GPU */
                log_warning("NVML nvmlInit_v2 failed: %s; NVIDIA GPUs are listed from /proc/driver/nvidia with "
                            "memory, power and P2P unknown (is the nvidia kernel module loaded, and does its "
                            "version match libnvidia-ml.so.1?)", nvml_strerror(st, nr, err, sizeof(err)));
                return discover_from_proc(m, &proc);
        }
        st->is_initialized = true;

        char version[NVML_SYSTEM_DRIVER_VERSION_BUFFER_SIZE] = "";
        if (NVML_CALL(st, nvmlSystemGetDriverVersion, version, sizeof(version)) == NVML_SUCCESS)
                log_debug("NVML up, NVIDIA driver %s", version);

        return nvml_discover(m, st, &proc);
}

static nvmlDevice_t find_handle(const struct nvidia_state *st, const char *pci)
{
        for (size_t i = 0; st && i < st->n_devices; i++)
                if (streq(st->devices[i].pci, pci))
                        return st->devices[i].handle;
        return NULL;
}

/* Whether an active NVLink of a ends at b. Links a GPU lacks answer NOT_SUPPORTED or
 * INVALID_ARGUMENT: that is the normal answer on PCIe-only boards, not a failure. */
static bool nvlink_reaches(const struct nvidia_state *st, nvmlDevice_t ha, const struct gpu_info *a,
                           const struct gpu_info *b)
{
        char err[160];
        for (unsigned link = 0; link < NVML_NVLINK_MAX_LINKS; link++) {
                nvmlEnableState_t active = NVML_FEATURE_DISABLED;
                nvmlReturn_t r = NVML_CALL(st, nvmlDeviceGetNvLinkState, ha, link, &active);
                if (r == NVML_ERROR_NOT_SUPPORTED || r == NVML_ERROR_INVALID_ARGUMENT || r == NVML_ERROR_FUNCTION_NOT_FOUND)
                        continue;
                if (r != NVML_SUCCESS) {
                        log_warning("NVML nvmlDeviceGetNvLinkState on GPU %s link %u failed: %s; its NVLinks unknown",
                                    a->pci, link, nvml_strerror(st, r, err, sizeof(err)));
                        return false;
                }
                if (active != NVML_FEATURE_ENABLED)
                        continue;
                nvmlPciInfo_t remote;
                memset(&remote, 0, sizeof(remote));
                r = NVML_CALL(st, nvmlDeviceGetNvLinkRemotePciInfo_v2, ha, link, &remote);
                if (r != NVML_SUCCESS) {
                        log_warning("NVML nvmlDeviceGetNvLinkRemotePciInfo_v2 on GPU %s link %u failed: %s; "
                                    "its peer unknown", a->pci, link, nvml_strerror(st, r, err, sizeof(err)));
                        continue;
                }
                remote.busId[sizeof(remote.busId) - 1] = '\0';
                remote.busIdLegacy[sizeof(remote.busIdLegacy) - 1] = '\0';
                char pci[GPU_PCI_LEN];
                if ((nvidia_pci_from_bus_id(remote.busId, pci, sizeof(pci)) ||
                     nvidia_pci_from_bus_id(remote.busIdLegacy, pci, sizeof(pci))) && streq(pci, b->pci))
                        return true;
        }
        return false;
}

static const char *p2p_status_words(nvmlGpuP2PStatus_t s)
{
        switch (s) {
        case NVML_P2P_STATUS_OK:                         return "supported";
        case NVML_P2P_STATUS_CHIPSET_NOT_SUPPORTED:      return "not supported by the chipset";
        case NVML_P2P_STATUS_GPU_NOT_SUPPORTED:          return "not supported by this GPU model";
        case NVML_P2P_STATUS_IOH_TOPOLOGY_NOT_SUPPORTED: return "not supported across this IO hub topology";
        case NVML_P2P_STATUS_DISABLED_BY_REGKEY:         return "disabled by a driver registry key (NVreg_RegistryDwords)";
        case NVML_P2P_STATUS_NOT_SUPPORTED:              return "not supported";
        case NVML_P2P_STATUS_UNKNOWN:                    break;
        }
        return "in an unknown state";
}

static const char *topology_words(nvmlGpuTopologyLevel_t t)
{
        switch (t) {
        case NVML_TOPOLOGY_INTERNAL:   return "on one board";
        case NVML_TOPOLOGY_SINGLE:     return "behind one PCIe switch";
        case NVML_TOPOLOGY_MULTIPLE:   return "behind several PCIe switches";
        case NVML_TOPOLOGY_HOSTBRIDGE: return "under one PCIe host bridge";
        case NVML_TOPOLOGY_NODE:       return "across host bridges of one NUMA node";
        case NVML_TOPOLOGY_SYSTEM:     return "across CPU sockets";
        }
        return "unknown path";
}

/* GPU→switch/root→GPU is two hops; through the CPU interconnect, three. */
static int topology_hops(nvmlGpuTopologyLevel_t t)
{
        switch (t) {
        case NVML_TOPOLOGY_INTERNAL:
        case NVML_TOPOLOGY_SINGLE:
        case NVML_TOPOLOGY_MULTIPLE:
        case NVML_TOPOLOGY_HOSTBRIDGE:
        case NVML_TOPOLOGY_NODE:
                return 2;
        case NVML_TOPOLOGY_SYSTEM:
                return 3;
        }
        return -1;
}

/* The maximum link of the narrower end: NVIDIA GPUs train down when idle and back up under load. */
static double pcie_pair_gbps(const struct gpu_info *a, const struct gpu_info *b)
{
        int gen = a->pcie_max_gen < b->pcie_max_gen ? a->pcie_max_gen : b->pcie_max_gen;
        int width = a->pcie_max_width < b->pcie_max_width ? a->pcie_max_width : b->pcie_max_width;
        return pcie_link_gbps(gen, width);
}

static int nvidia_link(const struct machine *m, const struct gpu_info *a, const struct gpu_info *b,
                       struct gpu_link *l)
{
        const struct nvidia_state *st = m->nvidia;
        if (a->vendor != GPU_VENDOR_NVIDIA || b->vendor != GPU_VENDOR_NVIDIA)
                return -ENOENT;
        nvmlDevice_t ha = find_handle(st, a->pci), hb = find_handle(st, b->pci);
        if (!ha || !hb)
                return -ENOENT;         /* listed from /proc: NVML cannot speak for this pair */

        char err[160];
        l->type = LINK_PCIE;
        l->hops = -1;
        l->bandwidth_gbps = NAN;

        nvmlGpuTopologyLevel_t level = NVML_TOPOLOGY_SYSTEM;
        nvmlReturn_t r = NVML_CALL(st, nvmlDeviceGetTopologyCommonAncestor, ha, hb, &level);
        bool has_level = nvml_check(st, r, "nvmlDeviceGetTopologyCommonAncestor", a->pci, "path to its peer");
        if (has_level && !nvml_topology_name(level))
                has_level = false;

        /* NVSwitch systems: the links end at a switch, not the peer; NVML's NVLink P2P
         * capability says whether the pair talks over them. */
        nvmlGpuP2PStatus_t nvlink_status = NVML_P2P_STATUS_NOT_SUPPORTED;
        bool is_nvlink = nvlink_reaches(st, ha, a, b) ||
                (NVML_CALL(st, nvmlDeviceGetP2PStatus, ha, hb, NVML_P2P_CAPS_INDEX_NVLINK, &nvlink_status) == NVML_SUCCESS &&
                 nvlink_status == NVML_P2P_STATUS_OK);

        if (is_nvlink) {
                l->type = LINK_NVLINK;
                l->hops = 1;
        } else {
                l->hops = has_level ? topology_hops(level) : -1;
                l->bandwidth_gbps = pcie_pair_gbps(a, b);
        }

        nvmlGpuP2PStatus_t status = NVML_P2P_STATUS_UNKNOWN;
        r = NVML_CALL(st, nvmlDeviceGetP2PStatus, ha, hb, NVML_P2P_CAPS_INDEX_READ, &status);
        if (r != NVML_SUCCESS) {
                nvml_strerror(st, r, err, sizeof(err));
                log_warning("NVML nvmlDeviceGetP2PStatus for GPUs %s and %s failed: %s; P2P unknown", a->pci, b->pci, err);
                link_add_reason(l, "NVML could not tell whether GPU %d and GPU %d can do P2P: nvmlDeviceGetP2PStatus "
                                "failed: %s", a->index, b->index, err);
                return 0;
        }
        l->has_p2p = status == NVML_P2P_STATUS_OK;
        if (l->has_p2p)
                return 0;

        if (has_level)
                link_add_reason(l, "NVML reports P2P read %s (topology: %s, %s)", p2p_status_words(status),
                                nvml_topology_name(level) + strlen("NVML_TOPOLOGY_"), topology_words(level));
        else
                link_add_reason(l, "NVML reports P2P read %s", p2p_status_words(status));
        return 0;
}

static void nvidia_release(struct machine *m)
{
        struct nvidia_state *st = m->nvidia;
        if (!st)
                return;
        if (st->is_initialized && st->nvmlShutdown)
                st->nvmlShutdown();
        if (st->dl)
                dlclose(st->dl);
        free(st->devices);
        free(st);
        m->nvidia = NULL;
}

const struct gpu_vendor gpu_vendor_nvidia = {
        .name = "nvidia",
        .discover = nvidia_discover,
        .link = nvidia_link,
        .release = nvidia_release,
};

/* ---- power limits, for rigd's caps ---- */

static nvmlDevice_t nvml_handle(const struct machine *m, const struct gpu_info *g)
{
        const struct nvidia_state *st = m->nvidia;
        for (size_t i = 0; st && st->is_initialized && i < st->n_devices; i++)
                if (streq(st->devices[i].pci, g->pci))
                        return st->devices[i].handle;
        return NULL;
}

int nvidia_power_limit_read(const struct machine *m, const struct gpu_info *g, double *cap_w)
{
        nvmlDevice_t h = nvml_handle(m, g);
        unsigned int mw;
        if (!h || NVML_CALL((const struct nvidia_state *)m->nvidia, nvmlDeviceGetEnforcedPowerLimit, h, &mw) != NVML_SUCCESS)
                return -ENODATA;
        *cap_w = mw / 1000.0;
        return 0;
}

int nvidia_power_limit_write(const struct machine *m, const struct gpu_info *g, double cap_w, char *err,
                             size_t err_size)
{
        const struct nvidia_state *st = m->nvidia;
        nvmlDevice_t h = nvml_handle(m, g);
        if (!h) {
                snprintf(err, err_size, "GPU %s is not reachable through NVML: its power limit cannot be set", g->pci);
                return -ENOTSUP;
        }
        nvmlReturn_t r = NVML_CALL(st, nvmlDeviceSetPowerManagementLimit, h, (unsigned int)lround(cap_w * 1000.0));
        if (r == NVML_SUCCESS)
                return 0;
        char why[160];
        snprintf(err, err_size, "NVML nvmlDeviceSetPowerManagementLimit(%s, %.0f W): %s", g->pci, cap_w,
                 nvml_strerror(st, r, why, sizeof(why)));
        return r == NVML_ERROR_NO_PERMISSION ? -EPERM : r == NVML_ERROR_NOT_SUPPORTED ? -ENOTSUP : -EIO;
}
