/* Unit tests of the text parsers discovery relies on: numbers from sysfs, device numbers,
 * KFD properties, kernel config, the amdgpu.ids table. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "amdgpu_ids.h"
#include "kconfig.h"
#include "kfd.h"
#include "sysfs.h"

static void test_parse_u64_accepts_decimal_hex_and_newline(void **state)
{
        uint64_t v;
        assert_true(parse_u64("17163091968\n", &v));
        assert_int_equal(v, 17163091968ull);
        assert_true(parse_u64("0x1002", &v));
        assert_int_equal(v, 0x1002);
        assert_true(parse_u64("  42  ", &v));
        assert_int_equal(v, 42);
}

static void test_parse_u64_refuses_garbage(void **state)
{
        uint64_t v = 7;
        assert_false(parse_u64("", &v));
        assert_false(parse_u64("\n", &v));
        assert_false(parse_u64("abc", &v));
        assert_false(parse_u64("190000000 W", &v));
        assert_false(parse_u64("-1", &v));
        assert_false(parse_u64("0x", &v));
        assert_false(parse_u64("99999999999999999999999", &v));
        assert_int_equal(v, 7);
}

static void test_parse_s64_reads_negative_numa_node(void **state)
{
        int64_t v;
        assert_true(parse_s64("-1\n", &v));
        assert_int_equal(v, -1);
        assert_false(parse_s64("1.5", &v));
}

static void test_parse_devnum_reads_major_minor(void **state)
{
        unsigned major, minor;
        assert_true(parse_devnum("226:128\n", &major, &minor));
        assert_int_equal(major, 226);
        assert_int_equal(minor, 128);
        assert_false(parse_devnum("226", &major, &minor));
        assert_false(parse_devnum("226:12x", &major, &minor));
}

static void test_kv_get_matches_whole_keys_only(void **state)
{
        const char *text = "simd_count 240\nsimd_count_extra 9\nlocation_id 768\ndomain 0\n";
        uint64_t v;
        assert_true(kv_get_u64(text, "simd_count", &v));
        assert_int_equal(v, 240);
        assert_true(kv_get_u64(text, "location_id", &v));
        assert_int_equal(v, 768);
        assert_false(kv_get_u64(text, "simd", &v));
        assert_false(kv_get_u64(text, "hive_id", &v));
}

static void test_gfx_names_follow_the_kernel_encoding(void **state)
{
        char name[16];
        kfd_gfx_name(90006, name, sizeof(name));
        assert_string_equal(name, "gfx906");
        kfd_gfx_name(90010, name, sizeof(name));
        assert_string_equal(name, "gfx90a");
        kfd_gfx_name(90402, name, sizeof(name));
        assert_string_equal(name, "gfx942");
        kfd_gfx_name(110000, name, sizeof(name));
        assert_string_equal(name, "gfx1100");
        kfd_gfx_name(110501, name, sizeof(name));
        assert_string_equal(name, "gfx1151");
}

static void test_kfd_node_location_gives_pci_address(void **state)
{
        struct kfd_node n;
        memset(&n, 0, sizeof(n));
        /* bus 0x83, device 0, function 0; domain 1 */
        const char *props = "cpu_cores_count 0\nsimd_count 240\ngfx_target_version 90006\nlocation_id 33536\n"
                            "domain 1\ndrm_render_minor 129\nhive_id 0\n";
        assert_int_equal(kfd_parse_node_properties(props, &n), 0);
        assert_string_equal(n.pci, "0001:83:00.0");
        assert_int_equal(n.drm_render_minor, 129);
        assert_int_equal(n.gfx_target_version, 90006);
}

static void test_kfd_gpu_node_without_location_is_refused(void **state)
{
        struct kfd_node n;
        memset(&n, 0, sizeof(n));
        assert_int_equal(kfd_parse_node_properties("simd_count 240\n", &n), -EINVAL);
        assert_int_equal(kfd_parse_node_properties("cpu_cores_count 20\nsimd_count 0\n", &n), 0);
        assert_string_equal(n.pci, "");
}

static void test_kconfig_reads_set_module_and_unset(void **state)
{
        struct kernel_info k;
        memset(&k, 0, sizeof(k));
        const char *cfg = "CONFIG_HSA_AMD=y\n# CONFIG_HSA_AMD_P2P is not set\nCONFIG_PCI_P2PDMA=m\n";
        kconfig_parse(cfg, strlen(cfg), &k);
        assert_int_equal(k.hsa_amd, KCONFIG_YES);
        assert_int_equal(k.hsa_amd_p2p, KCONFIG_NO);
        assert_int_equal(k.pci_p2pdma, KCONFIG_MODULE);
}

static void test_kconfig_absent_option_is_off_and_prefixes_do_not_match(void **state)
{
        struct kernel_info k;
        memset(&k, 0, sizeof(k));
        const char *cfg = "CONFIG_HSA_AMD_P2P_EXTRA=y\nCONFIG_HSA_AMD=y";      /* no final newline */
        kconfig_parse(cfg, strlen(cfg), &k);
        assert_int_equal(k.hsa_amd_p2p, KCONFIG_NO);
        assert_int_equal(k.pci_p2pdma, KCONFIG_NO);
        assert_int_equal(k.hsa_amd, KCONFIG_YES);
}

static void test_amdgpu_ids_match_device_and_revision(void **state)
{
        const char *table = "# comment\n1.0.0\n66A1,\t02,\tAMD Instinct MI60 / MI50\n66A1,\t06,\tAMD Radeon Pro VII\n"
                            "garbage line\n7448,\t00,\tAMD Radeon PRO W7900\r\n";
        char name[64];
        assert_int_equal(amdgpu_ids_lookup_text(table, 0x66a1, 0x02, name, sizeof(name)), 0);
        assert_string_equal(name, "AMD Instinct MI60 / MI50");
        assert_int_equal(amdgpu_ids_lookup_text(table, 0x66a1, 0x06, name, sizeof(name)), 0);
        assert_string_equal(name, "AMD Radeon Pro VII");
        assert_int_equal(amdgpu_ids_lookup_text(table, 0x7448, 0x00, name, sizeof(name)), 0);
        assert_string_equal(name, "AMD Radeon PRO W7900");
        assert_int_equal(amdgpu_ids_lookup_text(table, 0x66a1, 0x01, name, sizeof(name)), -ENOENT);
}

static void test_proc_devices_finds_character_majors_only(void **state)
{
        const char *text = "Character devices:\n  1 mem\n195 nvidia-frontend\n226 drm\n238 kfd\n"
                           "509 nvidia-uvm\n\nBlock devices:\n  8 sd\n 9 kfd\n";
        unsigned major = 0;
        assert_int_equal(proc_devices_find(text, "kfd", &major), 0);
        assert_int_equal(major, 238);
        assert_int_equal(proc_devices_find(text, "nvidia-uvm", &major), 0);
        assert_int_equal(major, 509);
        assert_int_equal(proc_devices_find(text, "sd", &major), -ENOENT);
        assert_int_equal(proc_devices_find(text, "nvidia", &major), -ENOENT);
}

int main(void)
{
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_parse_u64_accepts_decimal_hex_and_newline),
                cmocka_unit_test(test_parse_u64_refuses_garbage),
                cmocka_unit_test(test_parse_s64_reads_negative_numa_node),
                cmocka_unit_test(test_parse_devnum_reads_major_minor),
                cmocka_unit_test(test_kv_get_matches_whole_keys_only),
                cmocka_unit_test(test_gfx_names_follow_the_kernel_encoding),
                cmocka_unit_test(test_kfd_node_location_gives_pci_address),
                cmocka_unit_test(test_kfd_gpu_node_without_location_is_refused),
                cmocka_unit_test(test_kconfig_reads_set_module_and_unset),
                cmocka_unit_test(test_kconfig_absent_option_is_off_and_prefixes_do_not_match),
                cmocka_unit_test(test_amdgpu_ids_match_device_and_revision),
                cmocka_unit_test(test_proc_devices_finds_character_majors_only),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
