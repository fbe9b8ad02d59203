"""gpuctl faults --classify: the GPU faults in a saved kernel log, without rigd. Runs the real gpuctl
on the corpus of real logs (tests/fixtures/kmsg) and checks tables, JSON, standard input and exit
codes; the faults it must find are the corpus's .expected files."""
import glob
import json
import os
import subprocess
import tempfile
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
GPUCTL = os.environ.get("GPUCTL", "build/daemon/gpuctl/gpuctl")
CORPUS = os.environ.get("KMSG_CORPUS", os.path.join(HERE, "..", "fixtures", "kmsg"))


def gpuctl(*args, stdin=None):
    return subprocess.run([GPUCTL, *args], input=stdin, capture_output=True, timeout=60)


def expected(log):
    """[(line, kind, severity, gpu or None, xid or None, time or None)] from NAME.expected."""
    rows = []
    with open(log[:-4] + ".expected") as f:
        for row in f:
            line, kind, severity, gpu, xid, time = row.rstrip("\n").split(" ", 5)
            rows.append((int(line), kind, severity, None if gpu == "-" else gpu,
                         None if xid == "-" else int(xid), None if time == "-" else time))
    return rows


def as_rows(faults):
    return [(f["line"], f["kind"], f["severity"], f["gpu_pci"], f["xid"], f["time"]) for f in faults]


class Classify(unittest.TestCase):
    def setUp(self):
        self.logs = sorted(glob.glob(os.path.join(CORPUS, "*.log")))
        self.assertGreater(len(self.logs), 20, f"no corpus in {CORPUS}")

    def test_json_of_every_corpus_file_is_its_expected_faults(self):
        for log in self.logs:
            with self.subTest(log=os.path.basename(log)):
                r = gpuctl("--json", "faults", "--classify", log)
                self.assertEqual(r.returncode, 0, r.stderr)
                faults = json.loads(r.stdout)["faults"]
                self.assertEqual(as_rows(faults), expected(log))
                for f in faults:
                    self.assertEqual(set(f), {"line", "time", "gpu_pci", "kind", "severity", "xid", "text"})
                    self.assertTrue(f["text"])

    def test_json_text_is_the_message_without_the_log_prefixes(self):
        log = os.path.join(CORPUS, "journal-cosmic-gfx-timeout-vram-lost.log")
        faults = json.loads(gpuctl("--json", "faults", "--classify", log).stdout)["faults"]
        self.assertEqual(faults[0]["text"], "[drm:amdgpu_job_timedout [amdgpu]] *ERROR* ring gfx_0.0.0 timeout, "
                                            "signaled seq=5000163, emitted seq=5000165")
        self.assertEqual(faults[0]["time"], "Jul 24 12:26:16")
        self.assertIsNone(faults[0]["gpu_pci"])
        self.assertIsNone(faults[0]["xid"])

    def test_json_may_follow_the_verb(self):
        log = os.path.join(CORPUS, "syslog-nvidia-dbe-row-remap.log")
        before = json.loads(gpuctl("--json", "faults", "--classify", log).stdout)
        after = json.loads(gpuctl("faults", "--classify", log, "--json").stdout)
        self.assertEqual(before, after)
        self.assertEqual([(f["kind"], f["xid"]) for f in after["faults"]], [("nvidia_xid", 48), ("nvidia_xid", 64)])

    def test_table_has_a_row_per_fault(self):
        log = os.path.join(CORPUS, "dmesg-T-mi50-ras-smu-reset-failed.log")
        r = gpuctl("faults", "--classify", log)
        self.assertEqual(r.returncode, 0, r.stderr)
        lines = r.stdout.decode().splitlines()
        self.assertEqual(lines[0].split(), ["LINE", "TIME", "GPU", "KIND", "SEVERITY", "TEXT"])
        want = expected(log)
        self.assertEqual(len(lines), 1 + len(want))
        col = lines[0].index("GPU")
        for row, (line, kind, severity, gpu, _, _) in zip(lines[1:], want):
            self.assertTrue(row.startswith(f"{line} "), row)
            self.assertEqual(row[col:col + 12], gpu)
            self.assertIn(f" {kind} ", row)
            self.assertIn(f" {severity} ", row)
        self.assertIn("GPU reset(1) failed", r.stdout.decode())
        self.assertIn("Sat Jan  7 14:26:09 2023", r.stdout.decode())

    def test_table_shows_the_xid_and_dashes_for_unknowns(self):
        r = gpuctl("faults", "--classify", os.path.join(CORPUS, "bare-nvidia-xid-examples.log"))
        out = r.stdout.decode()
        self.assertIn("nvidia_xid 95", out)
        row = out.splitlines()[1].split()
        self.assertEqual(row[:3], ["1", "-", "0000:01:00.0"])

    def test_standard_input_with_dash(self):
        log = os.path.join(CORPUS, "kmsg-780m-mes-remove-queue.log")
        with open(log, "rb") as f:
            data = f.read()
        from_stdin = gpuctl("--json", "faults", "--classify", "-", stdin=data)
        self.assertEqual(from_stdin.returncode, 0, from_stdin.stderr)
        self.assertEqual(as_rows(json.loads(from_stdin.stdout)["faults"]), expected(log))
        table = gpuctl("faults", "--classify", "-", stdin=b"")
        self.assertEqual(table.returncode, 0)
        self.assertIn(b"No GPU faults in standard input (0 lines)", table.stdout)

    def test_a_log_without_faults_exits_zero(self):
        log = os.path.join(CORPUS, "lookalikes.log")
        r = gpuctl("faults", "--classify", log)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertIn(b"No GPU faults in", r.stdout)
        j = gpuctl("--json", "faults", "--classify", log)
        self.assertEqual(json.loads(j.stdout), {"faults": []})

    def test_faults_found_also_exit_zero(self):
        r = gpuctl("faults", "--classify", os.path.join(CORPUS, "dmesg-nvidia-xid79-sxid.log"))
        self.assertEqual(r.returncode, 0, r.stderr)

    def test_nul_bytes_and_invalid_utf8_still_give_valid_json(self):
        with tempfile.NamedTemporaryFile(suffix=".log") as f:
            f.write(b"[ 1.0] amdgpu 0000:03:00.0: amdgpu: GPU reset begin! \xff\xfe\x00\x1b[0m\n"
                    b"\x00\x00\n[ 2.0] NVRM: Xid (PCI:0000:01:00): 79, pid=1, name=\xc3\x28, GPU has fallen off the bus.\n")
            f.flush()
            r = gpuctl("--json", "faults", "--classify", f.name)
            self.assertEqual(r.returncode, 0, r.stderr)
            faults = json.loads(r.stdout.decode("utf-8"))["faults"]
            self.assertEqual([(x["line"], x["kind"]) for x in faults], [(1, "gpu_reset_begin"), (3, "nvidia_xid")])
            self.assertEqual(faults[0]["text"], "amdgpu 0000:03:00.0: amdgpu: GPU reset begin! ????[0m")


class Errors(unittest.TestCase):
    def test_missing_file_fails_naming_it(self):
        r = gpuctl("faults", "--classify", "/nonexistent/kern.log")
        self.assertEqual(r.returncode, 1)
        self.assertIn(b"/nonexistent/kern.log", r.stderr)
        self.assertEqual(r.stdout, b"")

    def test_a_directory_fails_naming_it(self):
        with tempfile.TemporaryDirectory() as d:
            r = gpuctl("faults", "--classify", d)
            self.assertEqual(r.returncode, 1)
            self.assertIn(d.encode(), r.stderr)

    def test_without_classify_live_faults_need_rigd(self):
        r = gpuctl("faults")
        self.assertEqual(r.returncode, 1)
        self.assertIn(b"rigd", r.stderr)
        self.assertIn(b"--classify", r.stderr)

    def test_usage_errors_exit_two(self):
        for args in (["faults", "--classify"], ["faults", "--bogus"], ["faults", "--classify", "a", "extra"],
                     ["faults", "--classify", "a", "--follow"]):
            with self.subTest(args=args):
                self.assertEqual(gpuctl(*args).returncode, 2)

    def test_help_exits_zero(self):
        r = gpuctl("faults", "--help")
        self.assertEqual(r.returncode, 0)
        self.assertIn(b"--classify", r.stdout)


if __name__ == "__main__":
    unittest.main()
