"""rigd's fault watch: under --root, <root>/dev/kmsg is a growing file of kernel-log records; lines
appended to it are faults arriving live. Holders of the GPU hear of them, health moves, and a reset
brings the power cap back."""
import json
import os
import shutil
import signal
import subprocess
import tempfile
import time
import unittest

from test_rigd import FIXTURES, GPUCTL, RIGD as RIGD_PATH, Rigd, wait_for
from test_power import MI50_HWMON

MES_TIMEOUT = "3,1001,{us},-;amdgpu 0000:03:00.0: amdgpu: MES failed to respond to msg=REMOVE_QUEUE"
RING_TIMEOUT = ("3,1000,{us},-;amdgpu 0000:06:00.0: [drm:amdgpu_job_timedout [amdgpu]] *ERROR* ring gfx "
                "timeout, signaled seq=1234, emitted seq=1236")
RESET_BEGIN = "4,1002,{us},-;amdgpu 0000:03:00.0: amdgpu: GPU reset begin!"
RESET_OK = "6,1003,{us},-;amdgpu 0000:03:00.0: amdgpu: GPU reset(1) succeeded!"
RESET_FAILED = "3,1004,{us},-;amdgpu 0000:0a:00.0: amdgpu: GPU reset(2) failed"
NOISE = "6,999,{us},-;usb 1-1: new high-speed USB device number 2 using xhci_hcd"


class FaultWatch(unittest.TestCase):
    def write_journal(self, entries):
        """A journal file of kernel records (message, µs since boot), written by systemd's own
        systemd-journal-remote from the export format, where journald keeps it."""
        boot, machine_id = "0123456789abcdef0123456789abcdef", "fedcba9876543210fedcba9876543210"
        export = ""
        for i, (message, usec) in enumerate(entries):
            export += (f"__CURSOR=s={boot};i={i + 1}\n__REALTIME_TIMESTAMP={1_700_000_000_000_000 + usec}\n"
                       f"__MONOTONIC_TIMESTAMP={usec}\n_BOOT_ID={boot}\n_MACHINE_ID={machine_id}\n"
                       f"_TRANSPORT=kernel\nSYSLOG_IDENTIFIER=kernel\nPRIORITY=3\nMESSAGE={message}\n\n")
        directory = os.path.join(self.root, "var", "log", "journal", machine_id)
        os.makedirs(directory)
        r = subprocess.run(["/lib/systemd/systemd-journal-remote", "-o", os.path.join(directory, "system.journal"),
                            "-"], input=export, capture_output=True, text=True, timeout=60)
        self.assertEqual(r.returncode, 0, r.stderr)

    def start(self, history=(), config=None, machine="mi50x3", journal=()):
        self.tmp = tempfile.mkdtemp(prefix="rigd-faults-")
        self.addCleanup(shutil.rmtree, self.tmp, True)
        self.root = os.path.join(self.tmp, "root")
        shutil.copytree(os.path.join(FIXTURES, machine, "root"), self.root, symlinks=True)
        os.makedirs(os.path.join(self.root, "dev"), exist_ok=True)
        self.kmsg = os.path.join(self.root, "dev", "kmsg")
        self.us = 1000000
        with open(self.kmsg, "w") as f:
            for line in history:
                f.write(self.record(line) + "\n")
        if journal:
            self.write_journal(journal)
        self.rigd = Rigd(root=self.root, config=config)
        self.addCleanup(self.rigd.stop)

    def record(self, template):
        self.us += 1000
        return template.format(us=self.us)

    def append(self, *templates):
        with open(self.kmsg, "a") as f:
            for t in templates:
                f.write(self.record(t) + "\n")

    def health(self, client, index):
        return client.call("faults")["result"]["gpus"][index]["health"]

    def test_history_is_listed_but_leaves_health_ok(self):
        self.start(history=[NOISE, RING_TIMEOUT, NOISE])
        c = self.rigd.client()
        result = c.call("faults")["result"]
        self.assertTrue(result["following"])
        self.assertEqual([(f["kind"], f["gpu_pci"], f["line"], f["history"]) for f in result["faults"]],
                         [("ring_timeout", "0000:06:00.0", 2, True)])
        self.assertEqual(result["gpus"][1]["counts"], {"ring_timeout": 1})
        self.assertEqual(result["gpus"][1]["health"], "ok")

    def test_history_comes_from_the_journal_when_there_is_one(self):
        # The journal keeps what the kernel's ring buffer lost: when it has the boot's kernel
        # records, they are the history and the log is followed from its end.
        self.start(history=[MES_TIMEOUT], journal=[("usb 1-1: new high-speed USB device", 1_000_000),
                                                   (RING_TIMEOUT.split(";", 1)[1], 2_500_000)])
        c = self.rigd.client()
        faults = c.call("faults")["result"]["faults"]
        self.assertEqual([(f["kind"], f["gpu_pci"], f["time"], f["history"]) for f in faults],
                         [("ring_timeout", "0000:06:00.0", "2.500000", True)])
        self.assertIn("history (from the journal)", self.rigd.read_log())
        c.call("subscribe", events=["fault"])
        self.append(MES_TIMEOUT)
        self.assertEqual(c.event()["kind"], "mes_timeout")

    def test_a_holder_hears_of_its_gpus_fault_at_once(self):
        self.start()
        holder, bystander, watcher = self.rigd.client(), self.rigd.client(), self.rigd.client()
        holder.call("lease", gpus=["0000:03:00.0"], holder="victim")
        bystander.call("lease", gpus=["0000:06:00.0"])
        watcher.call("subscribe", events=["health"])
        start = time.monotonic()
        self.append(MES_TIMEOUT)
        event = holder.event()
        elapsed_ms = (time.monotonic() - start) * 1000
        print(f"\nlog line appended -> fault event at the holder: {elapsed_ms:.2f} ms")
        self.assertEqual((event["event"], event["kind"], event["gpu_pci"], event["severity"]),
                         ("fault", "mes_timeout", "0000:03:00.0", "error"))
        self.assertIn("MES failed to respond", event["text"])
        health = watcher.event()
        self.assertEqual((health["event"], health["gpu_pci"], health["from"], health["health"]),
                         ("health", "0000:03:00.0", "ok", "degraded"))
        # The holder of another GPU is not told.
        self.assertEqual(bystander.call("hello")["id"], 2)
        self.assertEqual(bystander.events, [])
        self.assertEqual(holder.call("list")["result"]["gpus"][0]["health"], "degraded")
        self.assertIn("GPU 0000:03:00.0: mes_timeout", self.rigd.read_log())

    def test_every_shared_holder_hears_of_the_fault(self):
        self.start()
        holders = [self.rigd.client() for _ in range(3)]
        for h in holders:
            self.assertIn("result", h.call("lease", gpus=["0000:03:00.0"], exclusive=False))
        self.append(MES_TIMEOUT)
        for h in holders:
            self.assertEqual(h.event()["kind"], "mes_timeout")

    def test_a_reset_puts_the_power_cap_back_and_health_to_ok(self):
        # The check period is an hour: only the reset can bring the cap back within the test.
        self.start(config="[rigd]\npower_check_interval_s = 3600\n[gpu:*]\npower_cap_watts = 160\n")
        c = self.rigd.client()
        c.call("subscribe", events=["health", "power"])
        cap_file = os.path.join(self.root, MI50_HWMON["0000:03:00.0"])
        self.append(MES_TIMEOUT, RESET_BEGIN)
        with open(cap_file, "w") as f:      # what the reset did to the cap
            f.write("225000000\n")
        self.append(RESET_OK)
        seen = []
        while not any(e.get("event") == "power" for e in seen) or \
                not any(e.get("health") == "ok" for e in seen):
            seen.append(c.event())
        self.assertEqual([e["health"] for e in seen if e["event"] == "health"],
                         ["degraded", "recovering", "ok"])
        power = [e for e in seen if e["event"] == "power"][0]
        self.assertEqual((power["gpu_pci"], power["from_w"], power["power_cap_w"]), ("0000:03:00.0", 225, 160))
        with open(cap_file) as f:
            self.assertEqual(int(f.read()), 160000000)

    def test_a_failed_reset_marks_the_gpu_failed(self):
        self.start()
        c = self.rigd.client()
        c.call("subscribe", events=["fault"])
        self.append(NOISE, RESET_FAILED)
        self.assertEqual(c.event()["kind"], "gpu_reset_failed")
        self.assertEqual(self.health(c, 2), "failed")

    def test_gpuctl_faults_lists_and_follows(self):
        self.start(history=[RING_TIMEOUT])
        base = [GPUCTL, "--socket", self.rigd.socket, "--root", self.root]
        r = subprocess.run(base + ["--json", "faults"], capture_output=True, text=True, timeout=30)
        self.assertEqual(r.returncode, 0, r.stderr)
        faults = json.loads(r.stdout)["faults"]
        self.assertEqual([f["kind"] for f in faults], ["ring_timeout"])
        r = subprocess.run(base + ["faults"], capture_output=True, text=True, timeout=30)
        self.assertIn("ring_timeout", r.stdout)
        self.assertIn("0000:06:00.0", r.stdout)
        follow = subprocess.Popen(base + ["faults", "--follow"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                  text=True)
        self.addCleanup(lambda: (follow.poll() is None and follow.kill(), follow.wait(), follow.stdout.close(),
                                 follow.stderr.close()))
        self.assertIn("following", follow.stderr.readline())   # said once it has subscribed
        self.append(MES_TIMEOUT)
        line = follow.stdout.readline()
        self.assertIn("mes_timeout", line)
        self.assertIn("0000:03:00.0", line)

    def test_xid_79_fails_the_nvidia_gpu(self):
        self.start(machine="h100")
        c = self.rigd.client()
        c.call("subscribe", events=["fault"])
        self.append("4,2000,{us},-;NVRM: Xid (PCI:0000:00:06): 79, pid=1234, name=python3, GPU has fallen off the bus.")
        event = c.event()
        self.assertEqual((event["kind"], event["xid"], event["gpu_pci"]), ("nvidia_xid", 79, "0000:00:06.0"))



class Doctor(unittest.TestCase):
    def doctor(self, kmsg_lines):
        tmp = tempfile.mkdtemp(prefix="doctor-faults-")
        self.addCleanup(shutil.rmtree, tmp, True)
        root = os.path.join(tmp, "root")
        shutil.copytree(os.path.join(FIXTURES, "mi50x3", "root"), root, symlinks=True)
        if kmsg_lines is not None:
            os.makedirs(os.path.join(root, "dev"))
            with open(os.path.join(root, "dev", "kmsg"), "w") as f:
                for i, t in enumerate(kmsg_lines):
                    f.write(t.format(us=1000 * (i + 1)) + "\n")
        r = subprocess.run([GPUCTL, "--root", root, "--json", "doctor"], capture_output=True, text=True, timeout=30)
        checks = {c["name"]: c for c in json.loads(r.stdout)["checks"]}
        return checks.get("gpu-faults")

    def test_doctor_counts_the_gpu_faults_in_the_kernel_log(self):
        c = self.doctor([NOISE, MES_TIMEOUT, MES_TIMEOUT, RING_TIMEOUT, NOISE])
        self.assertEqual(c["verdict"], "warn")
        self.assertIn("3 GPU fault(s) in the kernel log (5 lines)", c["detail"])
        self.assertIn("0000:03:00.0 mes_timeout x2", c["detail"])
        self.assertIn("0000:06:00.0 ring_timeout x1", c["detail"])
        self.assertIn("dkms-notes/mes-firmware.md", c["fix"])

    def test_a_clean_log_is_ok_and_no_log_no_check(self):
        c = self.doctor([NOISE, NOISE])
        self.assertEqual((c["verdict"], c["detail"]), ("ok", "no GPU faults in the kernel log (2 lines)"))
        self.assertIsNone(self.doctor(None))


class JournalFields(unittest.TestCase):
    def test_a_fault_goes_to_the_journal_with_the_gpu_and_kind_fields(self):
        tmp = tempfile.mkdtemp(prefix="rigd-journal-")
        self.addCleanup(shutil.rmtree, tmp, True)
        root = os.path.join(tmp, "root")
        shutil.copytree(os.path.join(FIXTURES, "mi50x3", "root"), root, symlinks=True)
        os.makedirs(os.path.join(root, "dev"))
        open(os.path.join(root, "dev", "kmsg"), "w").close()
        here = os.path.dirname(os.path.abspath(__file__))
        r = subprocess.run(["unshare", "--mount", "--propagation", "private", "python3",
                            os.path.join(here, "journal_capture.py"), os.path.abspath(RIGD_PATH), root,
                            os.path.join(tmp, "rigd.sock"), MES_TIMEOUT.format(us=5000000)],
                           capture_output=True, text=True, timeout=60)
        self.assertEqual(r.returncode, 0, r.stderr)
        messages = [json.loads(line) for line in r.stdout.splitlines()]
        self.assertTrue(any(m.get("MESSAGE", "").startswith("ready: 3 GPU(s)") and m.get("PRIORITY") == "6"
                            for m in messages), messages)
        fault = [m for m in messages if "RIG_FAULT" in m]
        self.assertEqual(len(fault), 1, messages)
        self.assertEqual((fault[0]["RIG_FAULT"], fault[0]["RIG_GPU"], fault[0]["PRIORITY"]),
                         ("mes_timeout", "0000:03:00.0", "3"))
        self.assertIn("MES failed to respond", fault[0]["MESSAGE"])


if __name__ == "__main__":
    unittest.main()
