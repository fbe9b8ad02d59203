"""rigd on the live path (root "/") inside a umockdev testbed holding a fixture machine's /sys:
GPUs that go away or come back are announced by real uevents through rigd's udev monitor.
Run under umockdev-wrapper (the testbed and rigd must both see the redirected /sys)."""
import os
import shutil
import subprocess
import unittest

import gi

gi.require_version("UMockdev", "1.0")
from gi.repository import UMockdev  # noqa: E402

from test_rigd import FIXTURES, RIGD, Client, wait_for  # noqa: E402

GPU0 = "/sys/devices/pci0000:00/0000:00:03.0/0000:03:00.0"
GPU2 = "/sys/devices/pci0000:00/0000:00:01.0/0000:0a:00.0"


class LiveHotplug(unittest.TestCase):
    def setUp(self):
        self.testbed = UMockdev.Testbed.new()
        self.sys = self.testbed.get_sys_dir()
        if "umockdev" not in os.environ.get("LD_PRELOAD", ""):
            self.fail("run under umockdev-wrapper: the testbed's uevents reach only preloaded processes")
        fixture = os.path.join(FIXTURES, "mi50x3", "root")
        subprocess.run(["cp", "-a", fixture + "/sys/.", self.sys + "/"], check=True)
        self.tmp = os.path.join(self.testbed.get_root_dir(), "run")
        os.makedirs(self.tmp)
        self.socket = os.path.join(self.tmp, "rigd.sock")
        self.log = open(os.path.join(self.tmp, "rigd.log"), "w")
        # The cap check runs once an hour: within the test only a uevent can bring a cap back.
        config = os.path.join(self.tmp, "rigd.conf")
        with open(config, "w") as f:
            f.write("[rigd]\npower_check_interval_s = 3600\n[gpu:0000:03:00.0]\npower_cap_watts = 160\n")
        env = {**os.environ, "UMOCKDEV_DIR": self.testbed.get_root_dir()}
        self.rigd = subprocess.Popen([RIGD, "--socket", self.socket, "--config", config, "-v"], stdout=self.log,
                                     stderr=subprocess.STDOUT, env=env)
        self.addCleanup(self.stop)
        wait_for(lambda: os.path.exists(self.socket) or self.rigd.poll() is not None, what="rigd's socket")
        self.assertIsNone(self.rigd.poll(), self.read_log())

    def stop(self):
        self.rigd.terminate()
        self.rigd.wait(timeout=10)
        self.log.close()

    def read_log(self):
        self.log.flush()
        with open(self.log.name) as f:
            return f.read()

    def test_uevents_revoke_the_lease_of_a_gpu_that_left_and_list_one_that_came(self):
        holder, watcher = Client(self.socket), Client(self.socket)
        self.addCleanup(holder.close)
        self.addCleanup(watcher.close)
        self.assertEqual(len(watcher.call("list")["result"]["gpus"]), 3)   # the live path sees the fixture
        watcher.call("subscribe", events=["hotplug"])
        lease = holder.call("lease", gpus=["0000:0a:00.0"])["result"]["id"]

        saved = os.path.join(self.tmp, "gpu2")
        shutil.copytree(self.sys + GPU2[4:], saved, symlinks=True)
        self.testbed.uevent(GPU2 + "/drm/card2", "remove")
        shutil.rmtree(self.sys + GPU2[4:])      # gone before rigd's quiet time ends

        revoked = holder.event()
        self.assertEqual((revoked["event"], revoked["lease"], revoked["gpu_pci"]),
                         ("lease_revoked", lease, "0000:0a:00.0"))
        self.assertEqual(watcher.event(), {"event": "hotplug", "action": "remove", "gpu_pci": "0000:0a:00.0"})
        self.assertEqual(watcher.call("leases")["result"]["leases"], [])
        self.assertIn("uevent remove drm", self.read_log())

        shutil.copytree(saved, self.sys + GPU2[4:], symlinks=True)
        self.testbed.uevent(GPU2 + "/drm/card2", "add")
        self.assertEqual(watcher.event(), {"event": "hotplug", "action": "add", "gpu_pci": "0000:0a:00.0"})
        pcis = [g["pci"] for g in watcher.call("list")["result"]["gpus"]]
        self.assertIn("0000:0a:00.0", pcis)
        self.assertIn("result", holder.call("lease", gpus=["0000:0a:00.0"]))


    def test_a_uevent_after_a_reset_brings_the_power_cap_back(self):
        cap = self.sys + GPU0[4:] + "/hwmon/hwmon2/power1_cap"
        with open(cap) as f:
            self.assertEqual(f.read().strip(), "160000000")    # set at start, through the redirected /sys
        with open(cap, "w") as f:
            f.write("225000000\n")                            # what a GPU reset leaves
        self.testbed.uevent(GPU0 + "/drm/card0", "change")
        wait_for(lambda: open(cap).read().strip() == "160000000", what="the cap set again")
        self.assertIn("power cap 225 W -> 160 W (power_cap_watts", self.read_log())


if __name__ == "__main__":
    unittest.main()
