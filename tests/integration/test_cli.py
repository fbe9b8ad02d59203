"""gpuctl's command line: usage errors, exit codes, option placement, bad roots."""
import json
import os
import subprocess
import tempfile
import unittest

GPUCTL = os.environ.get("GPUCTL", "build/daemon/gpuctl/gpuctl")
FIXTURES = os.environ.get("FIXTURES", os.path.join(os.path.dirname(__file__), "..", "fixtures", "machines"))


def gpuctl(*args):
    return subprocess.run([GPUCTL, *args], capture_output=True, text=True, timeout=60)


class CommandLine(unittest.TestCase):
    def test_no_verb_is_a_usage_error(self):
        r = gpuctl()
        self.assertEqual(r.returncode, 2)
        self.assertIn("Usage: gpuctl", r.stderr)

    def test_unknown_verb_is_a_usage_error_naming_it(self):
        r = gpuctl("frobnicate")
        self.assertEqual(r.returncode, 2)
        self.assertIn("unknown verb 'frobnicate'", r.stderr)

    def test_unknown_option_is_a_usage_error(self):
        self.assertEqual(gpuctl("--bogus", "list").returncode, 2)

    def test_stray_argument_after_verb_is_a_usage_error(self):
        r = gpuctl("list", "extra")
        self.assertEqual(r.returncode, 2)
        self.assertIn("unexpected argument 'extra'", r.stderr)

    def test_help_lists_the_verbs_and_exits_zero(self):
        r = gpuctl("--help")
        self.assertEqual(r.returncode, 0)
        for verb in ("list", "topo", "doctor"):
            self.assertIn(verb, r.stdout)

    def test_missing_root_fails_naming_it(self):
        r = gpuctl("--root", "/nonexistent/rig-root", "list")
        self.assertEqual(r.returncode, 1)
        self.assertIn("/nonexistent/rig-root", r.stderr)

    def test_root_that_is_a_file_fails(self):
        with tempfile.NamedTemporaryFile() as f:
            r = gpuctl("--root", f.name, "list")
            self.assertEqual(r.returncode, 1)
            self.assertIn(f.name, r.stderr)

    def test_json_may_follow_the_verb(self):
        root = os.path.join(FIXTURES, "mi50x3", "root")
        before = json.loads(gpuctl("--root", root, "--json", "list").stdout)
        after = json.loads(gpuctl("list", "--root", root, "--json").stdout)
        self.assertEqual(before, after)
        self.assertEqual(len(after["gpus"]), 3)

    def test_empty_root_lists_no_gpu_and_exits_zero(self):
        with tempfile.TemporaryDirectory() as d:
            r = gpuctl("--root", d, "list")
            self.assertEqual(r.returncode, 0, r.stderr)
            self.assertIn("no gpu", r.stdout.lower())
            j = gpuctl("--root", d, "--json", "list")
            self.assertEqual(json.loads(j.stdout), {"gpus": []})
            t = gpuctl("--root", d, "--json", "topo")
            self.assertEqual(json.loads(t.stdout), {"gpus": [], "links": []})

    def test_human_list_is_an_aligned_table(self):
        root = os.path.join(FIXTURES, "mi50x3", "root")
        lines = gpuctl("--root", root, "list").stdout.splitlines()
        self.assertEqual(len(lines), 4)            # header + 3 GPUs
        col = lines[0].index("PCI")
        for line in lines[1:]:
            self.assertEqual(line[col:col + 4], "0000")


if __name__ == "__main__":
    unittest.main()
