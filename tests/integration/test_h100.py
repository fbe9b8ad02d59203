"""The H100 recorded from a real machine: listed from /proc/driver/nvidia without NVML, and in full
when its recorded NVML answer is replayed (what `gpuctl list` printed live, docs/hardware.md)."""
import json
import os
import subprocess
import unittest

GPUCTL = os.environ.get("GPUCTL", "build/daemon/gpuctl/gpuctl")
FIXTURES = os.environ.get("FIXTURES", os.path.join(os.path.dirname(__file__), "..", "fixtures", "machines"))
REPLAY = os.environ.get("NVML_REPLAY_LIBRARY", "")
MACHINE = os.path.join(FIXTURES, "h100")
UUID = "GPU-bd639910-31fb-3ec7-d29b-31a6c9212e16"


def gpuctl(*args, nvml=False):
    env = dict(os.environ)
    env.pop("RIG_NVML_LIBRARY", None)
    env.pop("RIG_NVML_REPLAY", None)
    if nvml:
        env["RIG_NVML_LIBRARY"] = REPLAY
        env["RIG_NVML_REPLAY"] = os.path.join(MACHINE, "nvml.json")
    return subprocess.run([GPUCTL, "--root", os.path.join(MACHINE, "root"), *args],
                          capture_output=True, text=True, timeout=60, env=env)


class RecordedH100(unittest.TestCase):
    def test_without_nvml_the_gpu_is_listed_from_proc_with_a_warning(self):
        r = gpuctl("--json", "list")
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertIn("RIG_NVML_LIBRARY", r.stderr)
        (g,) = json.loads(r.stdout)["gpus"]
        self.assertEqual(g["vendor"], "nvidia")
        self.assertEqual(g["name"], "NVIDIA H100 80GB HBM3")
        self.assertEqual(g["unique_id"], UUID)
        self.assertEqual(g["pci"], "0000:00:06.0")
        self.assertIsNone(g["power_cap_w"])
        self.assertEqual(g["vram_total_bytes"], 0)

    def test_device_nodes_are_numbered_from_proc_devices(self):
        (g,) = json.loads(gpuctl("--json", "list").stdout)["gpus"]
        nodes = {n["path"]: n["dev"] for n in g["dev_nodes"]}
        self.assertEqual(nodes, {"/dev/nvidia0": "195:0", "/dev/nvidiactl": "195:255",
                                 "/dev/nvidia-uvm": "238:0", "/dev/nvidia-uvm-tools": "238:1"})

    def test_replayed_nvml_gives_memory_power_and_link(self):
        self.assertTrue(REPLAY, "NVML_REPLAY_LIBRARY must name libnvml-replay.so (ctest sets it)")
        r = gpuctl("--json", "list", nvml=True)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertEqual(r.stderr, "")
        (g,) = json.loads(r.stdout)["gpus"]
        self.assertEqual(g["unique_id"], UUID)
        self.assertEqual(g["arch"], "sm_90")
        self.assertEqual(g["vram_total_bytes"], 85520809984)
        self.assertEqual(g["vram_used_bytes"], 503316480)
        self.assertEqual((g["power_cap_w"], g["power_cap_min_w"], g["power_cap_max_w"], g["power_cap_default_w"]),
                         (700.0, 200.0, 700.0, 700.0))
        self.assertAlmostEqual(g["power_w"], 115.026)
        self.assertEqual(g["temp_c"], 34.0)
        self.assertEqual((g["pcie"]["gen"], g["pcie"]["width"]), (5, 16))
        self.assertIsNone(g["kfd_gpu_id"])
        self.assertIsNone(g["render_node"])

    def test_doctor_passes_and_topo_has_no_pairs(self):
        d = gpuctl("--json", "doctor", nvml=True)
        self.assertEqual(d.returncode, 0, d.stdout)
        verdicts = {c["name"]: c["verdict"] for c in json.loads(d.stdout)["checks"]}
        self.assertEqual(verdicts["gpus"], "ok")
        self.assertNotIn("amdkfd", verdicts)
        t = json.loads(gpuctl("--json", "topo", nvml=True).stdout)
        self.assertEqual(len(t["gpus"]), 1)
        self.assertEqual(t["links"], [])


if __name__ == "__main__":
    unittest.main()
