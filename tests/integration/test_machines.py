"""gpuctl on the fixture machines (tests/fixtures/machines/*/README.md says what each one is).

Runs the real binary, `gpuctl --root <fixture>/root VERB --json`, and checks the facts the READMEs
state. GPUCTL names the binary (default build/daemon/gpuctl/gpuctl); NVML_REPLAY_LIBRARY names
libnvml-replay.so, which the amd-nvidia machine is also run with (answers from its nvml.json).
"""
import json
import os
import subprocess
import unittest

GPUCTL = os.environ.get("GPUCTL", "build/daemon/gpuctl/gpuctl")
FIXTURES = os.environ.get("FIXTURES", os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "fixtures",
                                                   "machines"))


def root(name):
    return os.path.join(FIXTURES, name, "root")


def gpuctl(name, *args, env=None):
    e = dict(os.environ)
    if env is not None:
        e.update(env)
    return subprocess.run([GPUCTL, "--root", root(name), *args], capture_output=True, text=True, timeout=60,
                          env=e)


def as_json(testcase, name, *args, env=None):
    r = gpuctl(name, *args, "--json", env=env)
    ok = (0, 1) if args[0] == "doctor" else (0,)     # doctor exits 1 when a check fails
    testcase.assertIn(r.returncode, ok, f"gpuctl {' '.join(args)} on {name}: rc {r.returncode}\n{r.stderr}")
    try:
        return json.loads(r.stdout)
    except json.JSONDecodeError as e:
        testcase.fail(f"gpuctl {' '.join(args)} --json on {name} is not JSON ({e}):\n{r.stdout[:2000]}")


def by_pci(gpus):
    return {g["pci"]: g for g in gpus}


def link(g):
    return {"gen": g["pcie"]["gen"], "width": g["pcie"]["width"]}


def pairs(topo):
    return {tuple(sorted((l["a"], l["b"]))): l for l in topo["links"]}


def p2p_check(testcase, doctor):
    checks = [c for c in doctor["checks"] if "p2p" in c["name"].lower()]
    testcase.assertTrue(checks, f"no check named like p2p in {[c['name'] for c in doctor['checks']]}")
    return checks[0]


GPU_FIELDS = ["index", "vendor", "pci", "name", "arch", "unique_id", "kfd_gpu_id", "render_node", "card_node",
              "vram_total_bytes", "vram_used_bytes", "gtt_total_bytes", "is_apu", "power_w", "power_cap_w",
              "power_cap_min_w", "power_cap_max_w", "temp_c", "pcie", "numa_node", "health", "lease"]


class Mi50x3(unittest.TestCase):
    M = "mi50x3"

    @classmethod
    def setUpClass(cls):
        cls.list = as_json(cls(), cls.M, "list")
        cls.gpus = by_pci(cls.list["gpus"])

    def test_lists_three_gfx906_gpus_in_pci_order_with_every_field(self):
        self.assertEqual([g["pci"] for g in self.list["gpus"]], ["0000:03:00.0", "0000:06:00.0", "0000:0a:00.0"])
        self.assertEqual([g["index"] for g in self.list["gpus"]], [0, 1, 2])
        for g in self.list["gpus"]:
            for f in GPU_FIELDS:
                self.assertIn(f, g)
            self.assertEqual(g["vendor"], "amd")
            self.assertEqual(g["arch"], "gfx906")
            self.assertFalse(g["is_apu"])
            self.assertIsNone(g["lease"])

    def test_names_come_from_amdgpu_ids(self):
        for g in self.list["gpus"]:
            self.assertIn("MI50", g["name"])

    def test_kfd_ids_and_device_nodes_match_sysfs(self):
        g = self.gpus["0000:03:00.0"]
        self.assertEqual(g["kfd_gpu_id"], 41340)
        self.assertEqual(g["render_node"], "/dev/dri/renderD128")
        self.assertEqual(g["card_node"], "/dev/dri/card0")
        self.assertEqual(self.gpus["0000:0a:00.0"]["kfd_gpu_id"], 7219)
        self.assertEqual(self.gpus["0000:0a:00.0"]["render_node"], "/dev/dri/renderD130")

    def test_vram_is_16_gib_hbm2_in_bytes(self):
        for g in self.list["gpus"]:
            self.assertEqual(g["vram_total_bytes"], 17163091968)
            self.assertIsInstance(g["vram_total_bytes"], int)
        self.assertEqual(self.gpus["0000:03:00.0"]["vram_used_bytes"], 12582912)
        self.assertEqual(self.gpus["0000:03:00.0"]["gtt_total_bytes"], 33539747840)

    def test_mi50_caps_are_190_of_300_watts(self):
        for g in self.list["gpus"]:
            self.assertEqual(g["power_cap_w"], 190.0)
            self.assertEqual(g["power_cap_max_w"], 300.0)
            self.assertEqual(g["power_cap_min_w"], 0.0)
        self.assertEqual(self.gpus["0000:03:00.0"]["power_w"], 24.0)

    def test_temperature_is_the_edge_sensor_in_celsius(self):
        self.assertEqual(self.gpus["0000:03:00.0"]["temp_c"], 35.0)

    def test_links_are_gen3_x16_x8_x8(self):
        self.assertEqual(link(self.gpus["0000:03:00.0"]), {"gen": 3, "width": 16})
        self.assertEqual(link(self.gpus["0000:06:00.0"]), {"gen": 3, "width": 8})
        self.assertEqual(link(self.gpus["0000:0a:00.0"]), {"gen": 3, "width": 8})
        self.assertEqual(self.gpus["0000:03:00.0"]["numa_node"], 0)

    def test_unique_id_comes_from_sysfs(self):
        self.assertEqual(self.gpus["0000:03:00.0"]["unique_id"].lower().lstrip("0x"), "7f4ab1c2d3e40587")

    def test_every_pair_is_pcie_without_p2p_naming_both_config_options(self):
        topo = as_json(self, self.M, "topo")
        links = pairs(topo)
        self.assertEqual(set(links), {(0, 1), (0, 2), (1, 2)})
        for l in links.values():
            self.assertEqual(l["type"], "pcie")
            self.assertFalse(l["p2p"])
            reasons = " ".join(l["reasons"])
            self.assertIn("CONFIG_HSA_AMD_P2P", reasons)
            self.assertIn("CONFIG_PCI_P2PDMA", reasons)

    def test_doctor_fails_p2p_naming_the_kernel_option(self):
        c = p2p_check(self, as_json(self, self.M, "doctor"))
        self.assertEqual(c["verdict"], "fail")
        self.assertIn("CONFIG_HSA_AMD_P2P", c["detail"] + " " + c["fix"])


class W7900x2(unittest.TestCase):
    M = "w7900x2"

    def test_lists_two_w7900_gfx1100_with_48_gib(self):
        gpus = as_json(self, self.M, "list")["gpus"]
        self.assertEqual([g["pci"] for g in gpus], ["0000:23:00.0", "0000:43:00.0"])
        for g in gpus:
            self.assertEqual(g["arch"], "gfx1100")
            self.assertIn("W7900", g["name"])
            self.assertEqual(g["vram_total_bytes"], 51522830336)
            self.assertEqual(g["power_cap_w"], 241.0)
            self.assertEqual(link(g), {"gen": 4, "width": 16})
        self.assertEqual(gpus[0]["kfd_gpu_id"], 57813)
        self.assertEqual(gpus[1]["render_node"], "/dev/dri/renderD129")

    def test_pair_is_pcie_without_p2p_on_the_debian_kernel(self):
        links = pairs(as_json(self, self.M, "topo"))
        self.assertEqual(set(links), {(0, 1)})
        l = links[(0, 1)]
        self.assertEqual(l["type"], "pcie")
        self.assertFalse(l["p2p"])
        self.assertIn("CONFIG_HSA_AMD_P2P", " ".join(l["reasons"]))
        self.assertIn("CONFIG_PCI_P2PDMA", " ".join(l["reasons"]))

    def test_doctor_fails_p2p_naming_the_kernel_option(self):
        c = p2p_check(self, as_json(self, self.M, "doctor"))
        self.assertEqual(c["verdict"], "fail")
        self.assertIn("CONFIG_HSA_AMD_P2P", c["detail"] + " " + c["fix"])

    def test_doctor_notices_the_gpu_that_drives_a_display(self):
        checks = as_json(self, self.M, "doctor")["checks"]
        display = [c for c in checks if "display" in (c["name"] + c["detail"]).lower()]
        self.assertTrue(display, [c["name"] for c in checks])
        self.assertIn(display[0]["verdict"], ("warn", "fail"))


class W7900x2P2P(unittest.TestCase):
    M = "w7900x2-p2p"

    def test_pair_is_pcie_p2p_with_no_reasons(self):
        links = pairs(as_json(self, self.M, "topo"))
        l = links[(0, 1)]
        self.assertEqual(l["type"], "pcie")
        self.assertTrue(l["p2p"])
        self.assertEqual(l["reasons"], [])

    def test_doctor_p2p_check_is_ok(self):
        c = p2p_check(self, as_json(self, self.M, "doctor"))
        self.assertEqual(c["verdict"], "ok")


class StrixHalo(unittest.TestCase):
    M = "strixhalo"

    def test_one_gfx1151_apu_with_96_gib_vram(self):
        gpus = as_json(self, self.M, "list")["gpus"]
        self.assertEqual(len(gpus), 1)
        g = gpus[0]
        self.assertEqual(g["pci"], "0000:c5:00.0")
        self.assertEqual(g["arch"], "gfx1151")
        self.assertTrue(g["is_apu"])
        self.assertEqual(g["vram_total_bytes"], 103079215104)
        self.assertEqual(g["kfd_gpu_id"], 45678)
        self.assertEqual(g["render_node"], "/dev/dri/renderD128")
        self.assertEqual(g["card_node"], "/dev/dri/card1")
        self.assertIn("8060S", g["name"])

    def test_power_comes_from_power1_input(self):
        g = as_json(self, self.M, "list")["gpus"][0]
        self.assertAlmostEqual(g["power_w"], 9.034, places=3)
        self.assertEqual(g["temp_c"], 41.0)

    def test_a_single_gpu_has_no_links(self):
        self.assertEqual(as_json(self, self.M, "topo")["links"], [])

    def test_config_is_read_from_proc_config_gz(self):
        # the kernel there has P2P on; the doctor must have found that in /proc/config.gz
        c = p2p_check(self, as_json(self, self.M, "doctor"))
        self.assertNotEqual(c["verdict"], "fail")


class Mi300x8(unittest.TestCase):
    M = "mi300x8"

    def test_eight_gfx942_with_192_gb_and_750_watt_caps(self):
        gpus = as_json(self, self.M, "list")["gpus"]
        self.assertEqual(len(gpus), 8)
        self.assertEqual(gpus[0]["pci"], "0000:01:00.0")
        self.assertEqual(gpus[7]["pci"], "0000:e1:00.0")
        for g in gpus:
            self.assertEqual(g["arch"], "gfx942")
            self.assertIn("MI300X", g["name"])
            self.assertEqual(g["vram_total_bytes"], 206141652992)
            self.assertEqual(g["power_cap_w"], 750.0)
            self.assertEqual(g["power_cap_max_w"], 750.0)
            self.assertEqual(link(g), {"gen": 5, "width": 16})
        self.assertEqual([g["numa_node"] for g in gpus], [0, 0, 0, 0, 1, 1, 1, 1])
        self.assertEqual(gpus[0]["power_w"], 128.0)
        self.assertEqual(gpus[0]["kfd_gpu_id"], 24582)
        self.assertEqual(gpus[0]["render_node"], "/dev/dri/renderD128")

    def test_every_pair_is_one_xgmi_hop_with_p2p(self):
        links = pairs(as_json(self, self.M, "topo"))
        self.assertEqual(len(links), 28)
        for l in links.values():
            self.assertEqual(l["type"], "xgmi")
            self.assertTrue(l["p2p"])
            self.assertEqual(l["hops"], 1)

    def test_doctor_reports_dkms_amdgpu_and_passthrough_iommu(self):
        checks = as_json(self, self.M, "doctor")["checks"]
        text = " ".join(c["name"] + " " + c["detail"] for c in checks).lower()
        self.assertIn("6.10.5", text)
        self.assertTrue("pt" in text or "passthrough" in text or "identity" in text)


class AmdNvidia(unittest.TestCase):
    M = "amd-nvidia"
    UUID = "GPU-3b1c5e7a-9d2f-4a86-b0e4-6c8d2f1a5b37"

    def test_the_radeon_is_listed_from_sysfs(self):
        gpus = by_pci(as_json(self, self.M, "list")["gpus"])
        g = gpus["0000:03:00.0"]
        self.assertEqual(g["vendor"], "amd")
        self.assertEqual(g["arch"], "gfx1100")
        self.assertIn("7900 XTX", g["name"])
        self.assertEqual(g["vram_total_bytes"], 25753026560)
        self.assertEqual(g["power_cap_w"], 327.0)

    def test_the_h100_appears_from_proc_driver_nvidia_without_nvml(self):
        gpus = by_pci(as_json(self, self.M, "list", env={"RIG_NVML_LIBRARY": "", "RIG_NVML_REPLAY": ""})["gpus"])
        self.assertIn("0000:41:00.0", gpus)
        g = gpus["0000:41:00.0"]
        self.assertEqual(g["vendor"], "nvidia")
        self.assertEqual(g["name"], "NVIDIA H100 PCIe")
        self.assertEqual(g["unique_id"], self.UUID)

    def test_the_h100_is_filled_from_nvml(self):
        replay = os.environ.get("NVML_REPLAY_LIBRARY")
        self.assertTrue(replay, "NVML_REPLAY_LIBRARY must name libnvml-replay.so (ctest sets it)")
        answers = os.path.join(FIXTURES, self.M, "nvml.json")
        gpus = by_pci(as_json(self, self.M, "list", env={"RIG_NVML_LIBRARY": replay,
                                                         "RIG_NVML_REPLAY": answers})["gpus"])
        g = gpus["0000:41:00.0"]
        self.assertEqual(g["vendor"], "nvidia")
        self.assertEqual(g["name"], "NVIDIA H100 PCIe")
        self.assertEqual(g["unique_id"], self.UUID)
        self.assertEqual(g["vram_total_bytes"], 85520809984)
        self.assertEqual(g["power_cap_w"], 350.0)
        self.assertEqual(link(g), {"gen": 5, "width": 16})

    def test_mixed_vendors_have_no_p2p(self):
        links = as_json(self, self.M, "topo")["links"]
        for l in links:
            self.assertFalse(l["p2p"])


class NoGpu(unittest.TestCase):
    M = "nogpu"

    def test_list_says_no_gpu_in_a_sentence(self):
        r = gpuctl(self.M, "list")
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertIn("no gpu", r.stdout.lower())

    def test_list_json_is_an_empty_array(self):
        self.assertEqual(as_json(self, self.M, "list"), {"gpus": []})


class Garbage(unittest.TestCase):
    M = "garbage"

    def test_damaged_files_do_not_stop_the_listing(self):
        r = gpuctl(self.M, "list", "--json")
        self.assertEqual(r.returncode, 0, r.stderr)
        gpus = by_pci(json.loads(r.stdout)["gpus"])
        g = gpus["0000:03:00.0"]
        self.assertEqual(g["arch"], "gfx906")
        self.assertEqual(g["vram_total_bytes"], 17163091968)
        self.assertEqual(g["power_cap_w"], 190.0)
        self.assertEqual(g["power_cap_max_w"], 300.0)
        self.assertEqual(g["temp_c"], 35.0)
        self.assertEqual(g["kfd_gpu_id"], 41340)
        self.assertIn("0000:06:00.0", gpus)

    def test_warnings_name_the_damaged_files(self):
        r = gpuctl(self.M, "list", "--json")
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertIn("0000:06:00.0/mem_info_vram_total", r.stderr)
        self.assertIn("hwmon3/power1_cap", r.stderr)
        self.assertIn("hwmon3/temp1_input", r.stderr)
        self.assertIn("nodes/3 names a GPU at 0000:0a:00.0", r.stderr)
        self.assertIn("nodes/2/io_links", r.stderr)

    def test_damaged_values_are_unknown_not_zero_or_cut(self):
        gpus = by_pci(as_json(self, self.M, "list")["gpus"])
        g = gpus["0000:06:00.0"]
        self.assertEqual(g["vram_total_bytes"], 0)       # empty file: unknown
        self.assertIsNone(g["power_cap_w"])              # "abc"
        self.assertIsNone(g["temp_c"])                   # "4" cut from "45000": not 0.004 °C
        self.assertEqual(g["power_cap_max_w"], 300.0)    # the intact files beside them still count
        self.assertNotIn("0000:0a:00.0", gpus)           # the vanished device is skipped

    def test_topo_survives_a_missing_io_links_directory(self):
        r = gpuctl(self.M, "topo", "--json")
        self.assertEqual(r.returncode, 0, r.stderr)
        json.loads(r.stdout)


if __name__ == "__main__":
    unittest.main()
