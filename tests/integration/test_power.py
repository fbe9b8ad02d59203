"""rigd keeps power caps: on copies of fixture machines (the hwmon power1_cap files are written, in
microwatts) and on the H100 fixture through the NVML replay (no real GPU is ever touched)."""
import json
import os
import shutil
import signal
import subprocess
import tempfile
import time
import unittest

from test_rigd import FIXTURES, GPUCTL, NOBODY, Rigd, run_client_as, wait_for

MI50_HWMON = {
    "0000:03:00.0": "sys/devices/pci0000:00/0000:00:03.0/0000:03:00.0/hwmon/hwmon2/power1_cap",
    "0000:06:00.0": "sys/devices/pci0000:00/0000:00:02.0/0000:06:00.0/hwmon/hwmon3/power1_cap",
    "0000:0a:00.0": "sys/devices/pci0000:00/0000:00:01.0/0000:0a:00.0/hwmon/hwmon4/power1_cap",
}
REPLAY = os.environ.get("NVML_REPLAY_LIBRARY")


class Caps(unittest.TestCase):
    """Caps on a copy of the MI50 box (range 0-300 W, 190 W in force, default 225 W)."""

    def start(self, config, interval="3600"):
        self.tmp = tempfile.mkdtemp(prefix="rigd-power-")
        self.addCleanup(shutil.rmtree, self.tmp, True)
        self.root = os.path.join(self.tmp, "root")
        shutil.copytree(os.path.join(FIXTURES, "mi50x3", "root"), self.root, symlinks=True)
        self.rigd = Rigd(root=self.root, config=f"[rigd]\npower_check_interval_s = {interval}\n" + config)
        self.addCleanup(self.rigd.stop)

    def cap(self, pci):
        # rigd truncates and writes the file (sysfs ignores the truncation; a fixture file does not):
        # an empty read is a write in progress.
        def read():
            with open(os.path.join(self.root, MI50_HWMON[pci])) as f:
                return f.read()
        return int(wait_for(read, timeout=2, what=f"{pci}'s power1_cap")) / 1e6

    def set_cap_behind_rigds_back(self, pci, watts):
        with open(os.path.join(self.root, MI50_HWMON[pci]), "w") as f:
            f.write(f"{int(watts * 1e6)}\n")

    def wait_cap(self, pci, watts):
        wait_for(lambda: self.cap(pci) == watts, what=f"{pci} at {watts} W (now {self.cap(pci)} W)")

    def gpuctl(self, *args):
        return subprocess.run([GPUCTL, "--socket", self.rigd.socket, "--root", self.root, *args],
                              capture_output=True, text=True, timeout=30)

    def test_caps_at_start_idle_while_unleased_full_while_leased(self):
        self.start("[gpu:*]\npower_cap_watts = 200\nidle_power_cap_watts = 120\n")
        for pci in MI50_HWMON:
            self.assertEqual(self.cap(pci), 120)
        c = self.rigd.client()
        lease = c.call("lease", gpus=["0000:06:00.0"])["result"]["id"]
        self.wait_cap("0000:06:00.0", 200)
        self.assertEqual(self.cap("0000:03:00.0"), 120)
        c.call("release", lease=lease)
        self.wait_cap("0000:06:00.0", 120)
        # A holder that dies counts as a release.
        d = self.rigd.client()
        d.call("lease", gpus=["0000:0a:00.0"])
        self.wait_cap("0000:0a:00.0", 200)
        d.close()
        self.wait_cap("0000:0a:00.0", 120)

    def test_a_gpu_no_line_names_is_never_touched(self):
        self.start("[gpu:0000:03:00.0]\npower_cap_watts = 170\n")
        self.assertEqual(self.cap("0000:03:00.0"), 170)
        self.set_cap_behind_rigds_back("0000:06:00.0", 133)
        self.rigd.proc.send_signal(signal.SIGHUP)
        wait_for(lambda: "SIGHUP" in self.rigd.read_log(), what="the reload")
        self.assertIn("result", self.rigd.client().call("hello"))
        self.assertEqual(self.cap("0000:06:00.0"), 133)
        self.assertEqual(self.cap("0000:0a:00.0"), 190)

    def test_a_section_naming_the_gpu_beats_the_wildcard(self):
        self.start("[gpu:0000:06:00.0]\npower_cap_watts = 250\n[gpu:*]\npower_cap_watts = 150\n"
                   "[gpu:%s]\npower_cap_watts = 210\n" % "5e03a7b9c1d2e48f")
        self.assertEqual(self.cap("0000:03:00.0"), 150)
        self.assertEqual(self.cap("0000:06:00.0"), 250)   # named by PCI address
        self.assertEqual(self.cap("0000:0a:00.0"), 210)   # named by unique id

    def test_an_external_change_is_reverted_within_the_check_period(self):
        self.start("[gpu:*]\npower_cap_watts = 180\n", interval="0.2")
        self.set_cap_behind_rigds_back("0000:0a:00.0", 275)
        start = time.monotonic()
        self.wait_cap("0000:0a:00.0", 180)
        print(f"\nexternal change reverted after {(time.monotonic() - start) * 1000:.0f} ms (check every 200 ms)")
        log = self.rigd.read_log()
        self.assertIn("GPU 0000:0a:00.0: power cap changed outside rigd, to 275 W from the 180 W rigd set", log)

    def test_a_reset_to_the_default_is_undone_at_the_rediscovery(self):
        self.start("[gpu:*]\npower_cap_watts = 160\n")
        for pci in MI50_HWMON:      # what a GPU reset leaves: the default cap
            self.set_cap_behind_rigds_back(pci, 225)
        self.rigd.proc.send_signal(signal.SIGHUP)
        for pci in MI50_HWMON:
            self.wait_cap(pci, 160)

    def test_a_cap_outside_the_range_is_refused_naming_the_limits_and_the_line(self):
        self.start("[gpu:*]\npower_cap_watts = 180\n[gpu:0000:03:00.0]\npower_cap_watts = 400\n")
        self.assertEqual(self.cap("0000:03:00.0"), 190)     # left as it was
        self.assertEqual(self.cap("0000:06:00.0"), 180)     # the rest applies
        log = self.rigd.read_log()
        self.assertIn("GPU 0000:03:00.0: not setting 400 W (power_cap_watts, ", log)
        self.assertIn("rigd.conf:6): 400 W is outside GPU 0000:03:00.0's power cap range of 0-300 W", log)
        self.assertEqual(log.count("not setting 400 W"), 1)   # said once, not at every check

    def test_a_bad_config_line_is_named_and_the_rest_applies(self):
        self.start("[gpu:*]\npower_cap_watts = lots\nidle_power_cap_watts = 140\n[gpu:0000:06:00.0]\nbogus = 1\n")
        log = self.rigd.read_log()
        self.assertIn("rigd.conf:4: power_cap_watts = 'lots' is not a number of watts", log)
        self.assertIn("rigd.conf:7: unknown key 'bogus' in [gpu:0000:06:00.0]", log)
        self.assertEqual(self.cap("0000:06:00.0"), 140)

    def test_gpuctl_power_shows_and_sets_through_rigd(self):
        self.start("[gpu:*]\npower_cap_watts = 200\n")
        r = self.gpuctl("power")
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertIn("KEPT AT", r.stdout)
        self.assertIn("power_cap_watts, ", r.stdout)
        watcher = self.rigd.client()
        watcher.call("subscribe", events=["power"])
        r = self.gpuctl("power", "1", "--set", "245")
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertEqual(self.cap("0000:06:00.0"), 245)
        event = watcher.event()
        self.assertEqual((event["event"], event["gpu_pci"], event["power_cap_w"], event["from_w"]),
                         ("power", "0000:06:00.0", 245, 200))
        gpus = json.loads(self.gpuctl("--json", "power", "1").stdout)["gpus"]
        self.assertEqual((gpus[0]["target_w"], gpus[0]["power_cap_w"]), (245, 245))
        self.assertIn("set at run time", gpus[0]["source"])
        # rigd keeps the new value as it keeps the configured ones.
        self.set_cap_behind_rigds_back("0000:06:00.0", 199)
        self.rigd.proc.send_signal(signal.SIGHUP)   # a reload drops run-time values: the config rules again
        self.wait_cap("0000:06:00.0", 200)
        r = self.gpuctl("power", "1", "--set", "350")
        self.assertEqual(r.returncode, 1)
        self.assertIn("outside GPU 0000:06:00.0's power cap range of 0-300 W", r.stderr)

    def test_only_admins_may_set_a_cap(self):
        self.start("[gpu:*]\npower_cap_watts = 200\n[rigd]\nlease_group = 4242\nadmin_group = 4343\n")
        self.rigd.open_to_everyone()
        leaser, admin = run_client_as(self.rigd.socket, NOBODY, [4242],
                                      {"id": 1, "request": "power_set", "gpu": 0, "watts": 150}), \
            run_client_as(self.rigd.socket, NOBODY, [4343],
                          {"id": 1, "request": "power_set", "gpu": 0, "watts": 150})
        self.assertEqual(leaser[0]["error"]["code"], "EPERM")
        self.assertIn(f"denied a power cap change to uid {NOBODY}", self.rigd.read_log())
        self.assertEqual(admin[0]["result"]["gpus"][0]["power_cap_w"], 150)
        self.assertEqual(self.cap("0000:03:00.0"), 150)


@unittest.skipUnless(REPLAY, "NVML_REPLAY_LIBRARY names the replay library (ctest sets it)")
class NvidiaCaps(unittest.TestCase):
    """The H100 fixture through NVML replay: the answer file says whether a set is permitted."""

    def start(self, set_answer):
        self.tmp = tempfile.mkdtemp(prefix="rigd-nvml-")
        self.addCleanup(shutil.rmtree, self.tmp, True)
        with open(os.path.join(FIXTURES, "h100", "nvml.json")) as f:
            answers = json.load(f)
        answers["devices"][0]["nvmlDeviceSetPowerManagementLimit"] = set_answer
        path = os.path.join(self.tmp, "nvml.json")
        with open(path, "w") as f:
            json.dump(answers, f)
        env = {"RIG_NVML_LIBRARY": REPLAY, "RIG_NVML_REPLAY": path}
        self.rigd = Rigd(root=os.path.join(FIXTURES, "h100", "root"),
                         config="[gpu:*]\npower_cap_watts = 450\n", env=env)
        self.addCleanup(self.rigd.stop)

    def test_a_permitted_limit_is_set_through_nvml(self):
        self.start({})
        gpus = self.rigd.client().call("power_get")["result"]["gpus"]
        self.assertEqual((gpus[0]["power_cap_w"], gpus[0]["target_w"]), (450, 450))
        self.assertIn("power cap 700 W -> 450 W", self.rigd.read_log())

    def test_a_refused_limit_is_reported_with_nvmls_error(self):
        self.start({"error": "NVML_ERROR_NO_PERMISSION"})
        gpus = self.rigd.client().call("power_get")["result"]["gpus"]
        self.assertEqual(gpus[0]["power_cap_w"], 700)
        self.assertIn("nvmlDeviceSetPowerManagementLimit", self.rigd.read_log())
        self.assertIn("NVML_ERROR_NO_PERMISSION", self.rigd.read_log())


if __name__ == "__main__":
    unittest.main()
