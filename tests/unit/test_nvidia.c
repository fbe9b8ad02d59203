/* Unit tests of NVIDIA discovery: NVML bus ids, the /proc/driver/nvidia parser, and whole
 * discovery passes against small fixture trees with NVML answered by libnvml-replay.so
 * (path in RIG_TEST_NVML_REPLAY_LIB, which ctest sets; those tests fail without it). */
#include <errno.h>
#include <ftw.h>
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "gpu.h"
#include "machine.h"
#include "nvidia.h"
#include "util.h"

/* As the driver writes it (tabs and all), from a real H100 PCIe box. */
static const char h100_information[] =
        "Model: \t\t NVIDIA H100 PCIe\n"
        "IRQ:   \t\t 196\n"
        "GPU UUID: \t GPU-3b1c5e7a-9d2f-4a86-b0e4-6c8d2f1a5b37\n"
        "Video BIOS: \t 96.00.74.00.0d\n"
        "Bus Type: \t PCIe\n"
        "DMA Size: \t 52 bits\n"
        "DMA Mask: \t 0xfffffffffffff\n"
        "Bus Location: \t 0000:41:00.0\n"
        "Device Minor: \t 0\n"
        "GPU Firmware: \t 550.54.15\n"
        "GPU Excluded:\t No\n";

static void test_bus_id_converts_nvml_form_to_kernel_form(void **state)
{
        char pci[GPU_PCI_LEN];
        assert_true(nvidia_pci_from_bus_id("00000000:41:00.0", pci, sizeof(pci)));
        assert_string_equal(pci, "0000:41:00.0");
        assert_true(nvidia_pci_from_bus_id("00000000:C1:00.0", pci, sizeof(pci)));
        assert_string_equal(pci, "0000:c1:00.0");
        assert_true(nvidia_pci_from_bus_id("0000:3B:00.1", pci, sizeof(pci)));
        assert_string_equal(pci, "0000:3b:00.1");
        assert_true(nvidia_pci_from_bus_id("00010000:01:00.0", pci, sizeof(pci)));
        assert_string_equal(pci, "10000:01:00.0");
}

static void test_bus_id_refuses_garbage(void **state)
{
        char pci[GPU_PCI_LEN];
        assert_false(nvidia_pci_from_bus_id("", pci, sizeof(pci)));
        assert_false(nvidia_pci_from_bus_id("41:00.0", pci, sizeof(pci)));
        assert_false(nvidia_pci_from_bus_id("00000000:41:00.0 ", pci, sizeof(pci)));
        assert_false(nvidia_pci_from_bus_id(" 0000:41:00.0", pci, sizeof(pci)));
        assert_false(nvidia_pci_from_bus_id("0000:41:20.0", pci, sizeof(pci)));     /* device > 31 */
        assert_false(nvidia_pci_from_bus_id("0000:41:00.8", pci, sizeof(pci)));     /* function > 7 */
        assert_false(nvidia_pci_from_bus_id(NULL, pci, sizeof(pci)));
}

static void test_arch_name_from_compute_capability(void **state)
{
        char arch[32];
        nvidia_arch_name(9, 0, arch, sizeof(arch));
        assert_string_equal(arch, "sm_90");
        nvidia_arch_name(8, 6, arch, sizeof(arch));
        assert_string_equal(arch, "sm_86");
        nvidia_arch_name(10, 0, arch, sizeof(arch));
        assert_string_equal(arch, "sm_100");
        nvidia_arch_name(0, 0, arch, sizeof(arch));
        assert_string_equal(arch, "");
}

static void test_proc_information_gives_name_uuid_and_pci(void **state)
{
        struct nvidia_proc_info info;
        assert_int_equal(nvidia_parse_proc_information(h100_information, &info), 0);
        assert_string_equal(info.name, "NVIDIA H100 PCIe");
        assert_string_equal(info.uuid, "GPU-3b1c5e7a-9d2f-4a86-b0e4-6c8d2f1a5b37");
        assert_string_equal(info.pci, "0000:41:00.0");
        assert_int_equal(info.minor, 0);
}

static void test_proc_information_without_bus_location_is_refused(void **state)
{
        struct nvidia_proc_info info;
        assert_int_equal(nvidia_parse_proc_information("Model: \t\t NVIDIA H100 PCIe\n", &info), -EINVAL);
        assert_int_equal(nvidia_parse_proc_information("Bus Location: \t garbage\n", &info), -EINVAL);
        assert_int_equal(nvidia_parse_proc_information("", &info), -EINVAL);
        /* no trailing newline, CRLF-free but last line unterminated */
        assert_int_equal(nvidia_parse_proc_information("Bus Location: 0000:01:00.0", &info), 0);
        assert_string_equal(info.pci, "0000:01:00.0");
        assert_int_equal(info.minor, -1);
}

/* ---- fixture trees ---- */

static void write_file(const char *root, const char *rel, const char *text)
{
        char path[PATH_MAX];
        snprintf(path, sizeof(path), "%s/%s", root, rel);
        for (char *p = path + strlen(root) + 1; (p = strchr(p, '/')); p++) {
                *p = '\0';
                assert_true(mkdir(path, 0755) == 0 || errno == EEXIST);
                *p = '/';
        }
        FILE *f = fopen(path, "we");
        assert_non_null(f);
        fputs(text, f);
        assert_int_equal(fclose(f), 0);
}

static void add_proc_gpu(const char *root, const char *pci, const char *name, const char *uuid, int numa)
{
        char rel[PATH_MAX], text[512];
        snprintf(rel, sizeof(rel), "proc/driver/nvidia/gpus/%s/information", pci);
        snprintf(text, sizeof(text), "Model: \t\t %s\nGPU UUID: \t %s\nBus Location: \t %s\nDevice Minor: \t 0\n",
                 name, uuid, pci);
        write_file(root, rel, text);
        snprintf(rel, sizeof(rel), "sys/bus/pci/devices/%s/numa_node", pci);
        snprintf(text, sizeof(text), "%d\n", numa);
        write_file(root, rel, text);
}

static int remove_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
        return remove(path);
}

struct fixture {
        char root[64];
        struct machine *m;
        char *log;                      /* what discovery wrote to stderr */
};

static int fixture_setup(void **state)
{
        struct fixture *f = calloc(1, sizeof(*f));
        assert_non_null(f);
        strscpy(f->root, "/tmp/rig-test-nvidia-XXXXXX", sizeof(f->root));
        assert_non_null(mkdtemp(f->root));
        unsetenv("RIG_NVML_LIBRARY");
        unsetenv("RIG_NVML_REPLAY");
        *state = f;
        return 0;
}

static int fixture_teardown(void **state)
{
        struct fixture *f = *state;
        if (f->m) {
                gpu_vendor_nvidia.release(f->m);
                free(f->m->gpus);
                free(f->m);
        }
        free(f->log);
        nftw(f->root, remove_entry, 16, FTW_DEPTH | FTW_PHYS);
        free(f);
        return 0;
}

/* Runs the NVIDIA pass alone on the fixture root, capturing its warnings. */
static int run_discover(struct fixture *f)
{
        f->m = calloc(1, sizeof(*f->m));
        assert_non_null(f->m);
        strscpy(f->m->root, f->root, sizeof(f->m->root));
        f->m->is_live = false;

        char log_path[PATH_MAX];
        snprintf(log_path, sizeof(log_path), "%s/stderr.log", f->root);
        fflush(stderr);
        int saved = dup(STDERR_FILENO);
        FILE *log = fopen(log_path, "w+e");
        assert_non_null(log);
        dup2(fileno(log), STDERR_FILENO);
        int r = gpu_vendor_nvidia.discover(f->m);
        fflush(stderr);
        dup2(saved, STDERR_FILENO);
        close(saved);

        long n = ftell(log);
        f->log = calloc(1, (size_t)(n > 0 ? n : 0) + 1);
        rewind(log);
        assert_int_equal(fread(f->log, 1, (size_t)(n > 0 ? n : 0), log), (size_t)(n > 0 ? n : 0));
        fclose(log);
        unlink(log_path);
        return r;
}

static size_t count_lines(const char *text, const char *needle)
{
        size_t n = 0;
        for (const char *p = text; (p = strstr(p, needle)); p += strlen(needle))
                n++;
        return n;
}

static bool use_replay(struct fixture *f, const char *json)
{
        const char *lib = getenv("RIG_TEST_NVML_REPLAY_LIB");
        if (!lib || !*lib)
                return false;
        write_file(f->root, "nvml.json", json);
        char path[PATH_MAX];
        snprintf(path, sizeof(path), "%s/nvml.json", f->root);
        setenv("RIG_NVML_LIBRARY", lib, 1);
        setenv("RIG_NVML_REPLAY", path, 1);
        return true;
}

#define H100_PCI_INFO(bus_upper, bus_num)                                                               \
        "\"nvmlDeviceGetPciInfo_v3\": { \"busId\": \"00000000:" bus_upper ":00.0\", \"domain\": 0, "     \
        "\"bus\": " #bus_num ", \"device\": 0, \"pciDeviceId\": \"0x233110de\", \"pciSubSystemId\": \"0x16c110de\" }, "

#define H100_COMMON                                                                                     \
        "\"nvmlDeviceGetName\": \"NVIDIA H100 PCIe\", "                                                 \
        "\"nvmlDeviceGetCudaComputeCapability\": { \"major\": 9, \"minor\": 0 }, "                      \
        "\"nvmlDeviceGetMemoryInfo\": { \"total\": 85520809984, \"free\": 84965064704, \"used\": 555745280 }, " \
        "\"nvmlDeviceGetEnforcedPowerLimit\": 350000, "                                                 \
        "\"nvmlDeviceGetPowerManagementLimitConstraints\": { \"minLimit\": 200000, \"maxLimit\": 350000 }, " \
        "\"nvmlDeviceGetPowerManagementDefaultLimit\": 350000, "                                        \
        "\"nvmlDeviceGetCurrPcieLinkGeneration\": 5, \"nvmlDeviceGetMaxPcieLinkGeneration\": 5, "       \
        "\"nvmlDeviceGetCurrPcieLinkWidth\": 16, \"nvmlDeviceGetMaxPcieLinkWidth\": 16, "

/* Two H100 PCIe on two sockets; GPU 1 cannot report its power draw and has no temperature. */
static const char two_h100_across_sockets[] =
        "{ \"format\": \"rig-nvml-replay-1\", \"nvmlSystemGetDriverVersion\": \"550.54.15\", \"devices\": ["
        "{ " H100_PCI_INFO("41", 65) H100_COMMON
        "\"nvmlDeviceGetUUID\": \"GPU-3b1c5e7a-9d2f-4a86-b0e4-6c8d2f1a5b37\", "
        "\"nvmlDeviceGetPowerUsage\": 48312, \"nvmlDeviceGetTemperature\": { \"NVML_TEMPERATURE_GPU\": 31 } },"
        "{ " H100_PCI_INFO("C1", 193) H100_COMMON
        "\"nvmlDeviceGetUUID\": \"GPU-8e0a4d21-5c6b-47f3-9e12-a0b3c4d5e6f7\", "
        "\"nvmlDeviceGetPowerUsage\": { \"error\": \"NVML_ERROR_UNKNOWN\" } } ],"
        "\"pairs\": [ { \"devices\": [0, 1], "
        "\"nvmlDeviceGetP2PStatus\": { \"READ\": \"NVML_P2P_STATUS_NOT_SUPPORTED\", "
        "\"WRITE\": \"NVML_P2P_STATUS_NOT_SUPPORTED\", \"NVLINK\": \"NVML_P2P_STATUS_NOT_SUPPORTED\" }, "
        "\"nvmlDeviceGetTopologyCommonAncestor\": \"NVML_TOPOLOGY_SYSTEM\" } ] }";

static void test_replay_two_gpus_one_failing_call_keeps_both(void **state)
{
        struct fixture *f = *state;
        if (!use_replay(f, two_h100_across_sockets))
                fail_msg("RIG_TEST_NVML_REPLAY_LIB is not set: run this test through ctest");
        add_proc_gpu(f->root, "0000:41:00.0", "NVIDIA H100 PCIe", "GPU-3b1c5e7a-9d2f-4a86-b0e4-6c8d2f1a5b37", 0);
        add_proc_gpu(f->root, "0000:c1:00.0", "NVIDIA H100 PCIe", "GPU-8e0a4d21-5c6b-47f3-9e12-a0b3c4d5e6f7", 1);

        assert_int_equal(run_discover(f), 0);
        assert_int_equal(f->m->n_gpus, 2);

        const struct gpu_info *g = &f->m->gpus[0];
        assert_int_equal(g->vendor, GPU_VENDOR_NVIDIA);
        assert_string_equal(g->pci, "0000:41:00.0");
        assert_string_equal(g->name, "NVIDIA H100 PCIe");
        assert_string_equal(g->unique_id, "GPU-3b1c5e7a-9d2f-4a86-b0e4-6c8d2f1a5b37");
        assert_string_equal(g->arch, "sm_90");
        assert_int_equal(g->pci_vendor, 0x10de);
        assert_int_equal(g->pci_device, 0x2331);
        assert_int_equal(g->vram_total_bytes, 85520809984ull);
        assert_int_equal(g->vram_used_bytes, 555745280ull);
        assert_float_equal(g->power_w, 48.312, 1e-9);
        assert_float_equal(g->power_cap_w, 350.0, 1e-9);
        assert_float_equal(g->power_cap_min_w, 200.0, 1e-9);
        assert_float_equal(g->power_cap_max_w, 350.0, 1e-9);
        assert_float_equal(g->power_cap_default_w, 350.0, 1e-9);
        assert_float_equal(g->temp_c, 31.0, 1e-9);
        assert_int_equal(g->pcie_gen, 5);
        assert_int_equal(g->pcie_width, 16);
        assert_int_equal(g->pcie_max_gen, 5);
        assert_int_equal(g->pcie_max_width, 16);
        assert_int_equal(g->numa_node, 0);
        assert_string_equal(g->sysfs_dir, "sys/bus/pci/devices/0000:41:00.0");

        g = &f->m->gpus[1];
        assert_string_equal(g->pci, "0000:c1:00.0");
        assert_int_equal(g->numa_node, 1);
        assert_true(isnan(g->power_w));
        assert_true(isnan(g->temp_c));
        assert_float_equal(g->power_cap_w, 350.0, 1e-9);
        assert_int_equal(g->health, GPU_HEALTH_OK);

        /* each failing call is one warning naming the call and the GPU */
        assert_int_equal(count_lines(f->log, "warning:"), 2);
        assert_non_null(strstr(f->log, "nvmlDeviceGetPowerUsage on GPU 0000:c1:00.0 failed: Unknown Error (NVML_ERROR_UNKNOWN)"));
        assert_non_null(strstr(f->log, "nvmlDeviceGetTemperature on GPU 0000:c1:00.0 failed: Not Supported"));

        struct gpu_link l;
        memset(&l, 0, sizeof(l));
        l.a = 0;
        l.b = 1;
        assert_int_equal(gpu_vendor_nvidia.link(f->m, &f->m->gpus[0], &f->m->gpus[1], &l), 0);
        assert_int_equal(l.type, LINK_PCIE);
        assert_false(l.has_p2p);
        assert_int_equal(l.hops, 3);
        assert_int_equal(l.n_reasons, 1);
        assert_string_equal(l.reasons[0], "NVML reports P2P read not supported (topology: SYSTEM, across CPU sockets)");
}

/* Two H100 joined by an NVLink bridge on link 0 (and one more link disabled). */
static const char two_h100_nvlink_bridge[] =
        "{ \"devices\": ["
        "{ " H100_PCI_INFO("41", 65) H100_COMMON "\"nvmlDeviceGetUUID\": \"GPU-a\", "
        "\"nvmlDeviceGetNvLinkState\": [ \"NVML_FEATURE_DISABLED\", \"NVML_FEATURE_ENABLED\" ], "
        "\"nvmlDeviceGetNvLinkRemotePciInfo_v2\": [ { \"error\": \"NVML_ERROR_NOT_SUPPORTED\" }, "
        "{ \"busId\": \"00000000:42:00.0\" } ] },"
        "{ " H100_PCI_INFO("42", 66) H100_COMMON "\"nvmlDeviceGetUUID\": \"GPU-b\" } ],"
        "\"pairs\": [ { \"devices\": [1, 0], "
        "\"nvmlDeviceGetP2PStatus\": { \"READ\": \"NVML_P2P_STATUS_OK\" }, "
        "\"nvmlDeviceGetTopologyCommonAncestor\": \"NVML_TOPOLOGY_HOSTBRIDGE\" } ] }";

static void test_replay_nvlink_bridge_makes_an_nvlink_pair(void **state)
{
        struct fixture *f = *state;
        if (!use_replay(f, two_h100_nvlink_bridge))
                fail_msg("RIG_TEST_NVML_REPLAY_LIB is not set: run this test through ctest");
        assert_int_equal(run_discover(f), 0);
        assert_int_equal(f->m->n_gpus, 2);
        assert_int_equal(f->m->gpus[0].numa_node, -1);   /* no sysfs in this tree */
        assert_string_equal(f->m->gpus[0].sysfs_dir, "");

        struct gpu_link l;
        memset(&l, 0, sizeof(l));
        assert_int_equal(gpu_vendor_nvidia.link(f->m, &f->m->gpus[0], &f->m->gpus[1], &l), 0);
        assert_int_equal(l.type, LINK_NVLINK);
        assert_true(l.has_p2p);
        assert_int_equal(l.hops, 1);
        assert_int_equal(l.n_reasons, 0);
}

/* NVML loses GPU 1; /proc still lists it, so it is shown as degraded rather than hidden. */
static const char second_gpu_lost[] =
        "{ \"devices\": ["
        "{ " H100_PCI_INFO("41", 65) H100_COMMON "\"nvmlDeviceGetUUID\": \"GPU-a\" },"
        "{ \"nvmlDeviceGetHandleByIndex_v2\": { \"error\": \"NVML_ERROR_GPU_IS_LOST\" } } ] }";

static void test_replay_lost_gpu_is_listed_from_proc(void **state)
{
        struct fixture *f = *state;
        if (!use_replay(f, second_gpu_lost))
                fail_msg("RIG_TEST_NVML_REPLAY_LIB is not set: run this test through ctest");
        add_proc_gpu(f->root, "0000:41:00.0", "NVIDIA H100 PCIe", "GPU-a", 0);
        add_proc_gpu(f->root, "0000:c1:00.0", "NVIDIA H100 PCIe", "GPU-b", 1);

        assert_int_equal(run_discover(f), 0);
        assert_int_equal(f->m->n_gpus, 2);
        assert_int_equal(f->m->gpus[0].health, GPU_HEALTH_OK);
        assert_string_equal(f->m->gpus[1].pci, "0000:c1:00.0");
        assert_string_equal(f->m->gpus[1].unique_id, "GPU-b");
        assert_int_equal(f->m->gpus[1].health, GPU_HEALTH_DEGRADED);
        assert_int_equal(f->m->gpus[1].vram_total_bytes, 0);
        assert_non_null(strstr(f->log, "nvmlDeviceGetHandleByIndex_v2 for GPU index 1 failed: GPU is lost"));

        /* NVML has no handle for the lost GPU: the topology pass answers for the pair */
        struct gpu_link l;
        memset(&l, 0, sizeof(l));
        assert_int_equal(gpu_vendor_nvidia.link(f->m, &f->m->gpus[0], &f->m->gpus[1], &l), -ENOENT);
}

static void test_without_nvml_gpus_come_from_proc_with_one_warning(void **state)
{
        struct fixture *f = *state;
        setenv("RIG_NVML_LIBRARY", "/nonexistent/libnvidia-ml.so.1", 1);
        add_proc_gpu(f->root, "0000:41:00.0", "NVIDIA H100 PCIe", "GPU-3b1c5e7a-9d2f-4a86-b0e4-6c8d2f1a5b37", 0);

        assert_int_equal(run_discover(f), 0);
        assert_int_equal(f->m->n_gpus, 1);
        const struct gpu_info *g = &f->m->gpus[0];
        assert_string_equal(g->pci, "0000:41:00.0");
        assert_string_equal(g->name, "NVIDIA H100 PCIe");
        assert_string_equal(g->unique_id, "GPU-3b1c5e7a-9d2f-4a86-b0e4-6c8d2f1a5b37");
        assert_int_equal(g->pci_vendor, 0x10de);
        assert_int_equal(g->numa_node, 0);
        assert_int_equal(g->vram_total_bytes, 0);
        assert_true(isnan(g->power_cap_w));
        assert_int_equal(count_lines(f->log, "warning:"), 1);
        assert_non_null(strstr(f->log, "NVML was not found"));
        assert_non_null(strstr(f->log, "libnvidia-ml.so.1"));
}

static void test_fixture_root_never_uses_host_nvml(void **state)
{
        struct fixture *f = *state;
        add_proc_gpu(f->root, "0000:41:00.0", "NVIDIA H100 PCIe", "GPU-a", 0);
        assert_int_equal(run_discover(f), 0);
        assert_int_equal(f->m->n_gpus, 1);
        assert_null(f->m->nvidia);
        assert_non_null(strstr(f->log, "RIG_NVML_LIBRARY"));
}

static void test_no_nvidia_is_silent(void **state)
{
        struct fixture *f = *state;
        assert_int_equal(run_discover(f), 0);
        assert_int_equal(f->m->n_gpus, 0);
        assert_string_equal(f->log, "");
}

int main(void)
{
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_bus_id_converts_nvml_form_to_kernel_form),
                cmocka_unit_test(test_bus_id_refuses_garbage),
                cmocka_unit_test(test_arch_name_from_compute_capability),
                cmocka_unit_test(test_proc_information_gives_name_uuid_and_pci),
                cmocka_unit_test(test_proc_information_without_bus_location_is_refused),
                cmocka_unit_test_setup_teardown(test_replay_two_gpus_one_failing_call_keeps_both, fixture_setup, fixture_teardown),
                cmocka_unit_test_setup_teardown(test_replay_nvlink_bridge_makes_an_nvlink_pair, fixture_setup, fixture_teardown),
                cmocka_unit_test_setup_teardown(test_replay_lost_gpu_is_listed_from_proc, fixture_setup, fixture_teardown),
                cmocka_unit_test_setup_teardown(test_without_nvml_gpus_come_from_proc_with_one_warning, fixture_setup, fixture_teardown),
                cmocka_unit_test_setup_teardown(test_fixture_root_never_uses_host_nvml, fixture_setup, fixture_teardown),
                cmocka_unit_test_setup_teardown(test_no_nvidia_is_silent, fixture_setup, fixture_teardown),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
