"""rigd's system integration: the systemd units, sysusers.d and tmpfiles.d files, the udev rules.

The real systemd tools run on the real files; each tool check has a twin that feeds the same tool a
broken copy, so a passing check cannot be one that passes everything. The udev rules are run by
`udevadm test` against mocked GPUs (umockdev) in a private mount namespace, so nothing on the host
changes: needs root, udevadm (package udev), umockdev-run and unshare.
"""
import fnmatch
import glob
import os
import re
import shutil
import subprocess
import tempfile
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
SOURCE = os.path.normpath(os.path.join(HERE, "..", ".."))
RIGD = os.environ.get("RIGD", os.path.join(SOURCE, "build", "daemon", "rigd", "rigd"))
UNITS_DIR = os.environ.get("UNITS_DIR", os.path.join(SOURCE, "build", "systemd"))
SOURCE_SYSTEMD = os.environ.get("SOURCE_SYSTEMD", os.path.join(SOURCE, "systemd"))
UDEV_RULES = os.environ.get("UDEV_RULES", os.path.join(SOURCE, "udev", "70-rigd.rules"))
FIXTURES = os.environ.get("FIXTURES", os.path.join(SOURCE, "tests", "fixtures", "machines"))


def run(*args, **kw):
    return subprocess.run(list(args), capture_output=True, text=True, timeout=120, **kw)


def read_unit(path):
    """{(section, key): [values]}; repeated keys (DeviceAllow=) keep every value."""
    out, section = {}, None
    with open(path) as f:
        for line in f:
            line = line.strip()
            if not line or line[0] in "#;":
                continue
            if line.startswith("["):
                section = line.strip("[]")
                continue
            key, _, value = line.partition("=")
            out.setdefault((section, key.strip()), []).append(value.strip())
    return out


class Units(unittest.TestCase):
    """systemd-analyze on rigd.service (as configured by CMake) and rigd.socket."""

    def setUp(self):
        self.tmp = tempfile.TemporaryDirectory()
        self.addCleanup(self.tmp.cleanup)
        # verify checks that ExecStart= exists: point it at the built rigd instead of the install path.
        with open(os.path.join(UNITS_DIR, "rigd.service")) as f:
            self.service_text = re.sub(r"(?m)^ExecStart=.*$", "ExecStart=" + os.path.abspath(RIGD), f.read())
        shutil.copy(os.path.join(SOURCE_SYSTEMD, "rigd.socket"), self.tmp.name)

    def write_service(self, text, name="rigd.service"):
        path = os.path.join(self.tmp.name, name)
        with open(path, "w") as f:
            f.write(text)
        return path

    def verify(self, service_text):
        service = self.write_service(service_text)
        r = run("systemd-analyze", "verify", "--man=no", os.path.join(self.tmp.name, "rigd.socket"), service)
        # Unknown keys and bad values are only logged ("file:line: Unknown key ...", exit 0): every
        # line that names one of our units is a finding.
        findings = [l for l in (r.stdout + r.stderr).splitlines() if "rigd.s" in l]
        return r.returncode, findings

    def test_configured_service_starts_the_installed_sbin_binary(self):
        unit = read_unit(os.path.join(UNITS_DIR, "rigd.service"))
        (exec_start,) = unit[("Service", "ExecStart")]
        self.assertNotIn("@", exec_start, "rigd.service.in was not configured")
        self.assertTrue(os.path.isabs(exec_start) and exec_start.endswith("/sbin/rigd"), exec_start)

    def test_units_verify_cleanly(self):
        rc, findings = self.verify(self.service_text)
        self.assertEqual(rc, 0, findings)
        self.assertEqual(findings, [])

    def test_verify_reports_a_misspelt_directive_and_a_bad_value(self):
        broken = self.service_text.replace("WatchdogSec=", "WatchdogSecs=").replace(
            "DeviceAllow=char-drm rw", "DeviceAllow=char-drm rwz")
        _, findings = self.verify(broken)
        text = "\n".join(findings)
        self.assertIn("Unknown key 'WatchdogSecs' in section [Service]", text)
        self.assertIn("Invalid device rights 'rwz'", text)

    def test_verify_reports_a_missing_binary(self):
        rc, findings = self.verify(re.sub(r"(?m)^ExecStart=.*$", "ExecStart=/nonexistent/rigd", self.service_text))
        self.assertNotEqual(rc, 0)
        self.assertIn("/nonexistent/rigd is not executable", "\n".join(findings))

    def exposure_ok(self, service_text, name):
        # --threshold is the overall exposure x10; 30 = "3.0". rigd is 2.4 now (root, CAP_SYS_ADMIN,
        # devices); dropping e.g. the capability bounding set alone takes it to 4.2.
        path = self.write_service(service_text, name)
        r = run("systemd-analyze", "security", "--offline=yes", "--threshold=30", "--no-pager", path)
        return r.returncode == 0, r.stdout.splitlines()[-1:] + r.stderr.splitlines()

    def test_sandbox_exposure_stays_low(self):
        ok, tail = self.exposure_ok(self.service_text, "rigd.service")
        self.assertTrue(ok, tail)

    def test_exposure_check_fails_without_the_capability_bounding_set(self):
        weak = re.sub(r"(?m)^CapabilityBoundingSet=.*$", "", self.service_text)
        ok, tail = self.exposure_ok(weak, "weak.service")
        self.assertFalse(ok, tail)

    def test_sandbox_keeps_what_rigd_needs(self):
        unit = read_unit(self.write_service(self.service_text))
        # Each of these would break rigd: power caps in /sys, /dev/kmsg, the GPU nodes, udev's netlink.
        for key in ("ProtectKernelTunables", "ProtectKernelLogs", "PrivateDevices", "PrivateNetwork", "ProcSubset"):
            self.assertNotIn(("Service", key), unit, key)
        allowed = unit.get(("Service", "DeviceAllow"), [])
        for entry in ("/dev/kmsg r", "char-drm rw", "char-kfd rw", "char-nvidia* rw"):
            self.assertIn(entry, allowed)
        caps = set(" ".join(unit.get(("Service", "CapabilityBoundingSet"), [])).split())
        self.assertEqual(caps, {"CAP_SYS_ADMIN", "CAP_SYSLOG"})
        self.assertEqual(unit.get(("Service", "RestrictAddressFamilies")), ["AF_UNIX AF_NETLINK"])

    def test_device_allow_groups_match_the_fixture_machines_drivers(self):
        # systemd resolves char-NAME against /proc/devices at start and silently skips a name that
        # is not there, so a misspelt group (char-kdf) passes verify. Check the globs against the
        # recorded /proc/devices of the fixture machines, both ways.
        unit = read_unit(self.write_service(self.service_text))
        globs = [a.split()[0][len("char-"):] for a in unit.get(("Service", "DeviceAllow"), []) if a.startswith("char-")]
        names = set()
        for path in glob.glob(os.path.join(FIXTURES, "*", "root", "proc", "devices")):
            with open(path) as f:
                chars = f.read().split("Block devices:")[0]
            names |= {l.split()[1] for l in chars.splitlines()[1:] if len(l.split()) == 2}
        gpu_names = {n for n in names if n in ("drm", "kfd") or n.startswith("nvidia")}
        self.assertTrue({"drm", "kfd", "nvidia", "nvidia-frontend", "nvidia-uvm"} <= gpu_names, gpu_names)
        for g in globs:
            self.assertTrue(fnmatch.filter(gpu_names, g), f"char-{g} matches no GPU driver in the fixtures")
        for n in gpu_names:
            self.assertTrue(any(fnmatch.fnmatchcase(n, g) for g in globs), f"no DeviceAllow= for {n}")

    def test_stopping_the_service_keeps_the_socket_directory(self):
        # The socket unit's socket lives in the service's RuntimeDirectory: without Preserve, a
        # service stop would delete it under the still-listening socket unit.
        service = read_unit(self.write_service(self.service_text))
        socket = read_unit(os.path.join(self.tmp.name, "rigd.socket"))
        (listen,) = socket[("Socket", "ListenStream")]
        self.assertEqual(listen, "/run/rigd/rigd.sock")
        self.assertEqual(service.get(("Service", "RuntimeDirectory")), ["rigd"])
        self.assertEqual(service.get(("Service", "RuntimeDirectoryPreserve")), ["yes"])
        self.assertEqual(socket.get(("Socket", "SocketMode")), ["0660"])
        self.assertEqual(socket.get(("Socket", "SocketGroup")), ["render"])


class SysusersTmpfiles(unittest.TestCase):
    """systemd-sysusers and systemd-tmpfiles applied to an empty root in a temporary directory."""

    def setUp(self):
        self.tmp = tempfile.TemporaryDirectory()
        self.addCleanup(self.tmp.cleanup)
        self.root = self.tmp.name
        os.makedirs(os.path.join(self.root, "etc"))

    def groups(self):
        with open(os.path.join(self.root, "etc", "group")) as f:
            return {l.split(":")[0]: int(l.split(":")[2]) for l in f if l.strip()}

    def test_sysusers_creates_the_lease_and_admin_groups(self):
        r = run("systemd-sysusers", "--root=" + self.root, os.path.join(SOURCE_SYSTEMD, "rigd.sysusers"))
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertLessEqual({"render", "rig-admin"}, set(self.groups()))

    def test_sysusers_keeps_an_existing_render_group(self):
        with open(os.path.join(self.root, "etc", "group"), "w") as f:
            f.write("render:x:108:\n")
        r = run("systemd-sysusers", "--root=" + self.root, os.path.join(SOURCE_SYSTEMD, "rigd.sysusers"))
        self.assertEqual(r.returncode, 0, r.stderr)
        groups = self.groups()
        self.assertEqual(groups["render"], 108)
        self.assertIn("rig-admin", groups)

    def test_sysusers_rejects_a_broken_line(self):
        bad = os.path.join(self.root, "bad.conf")
        with open(bad, "w") as f:
            f.write("x rig-admin -\n")
        r = run("systemd-sysusers", "--root=" + self.root, bad)
        self.assertNotEqual(r.returncode, 0)
        self.assertIn("Unknown command type 'x'", r.stderr)

    def test_tmpfiles_creates_the_config_drop_in_directory(self):
        r = run("systemd-tmpfiles", "--root=" + self.root, "--create", os.path.join(SOURCE_SYSTEMD, "rigd.tmpfiles"))
        self.assertEqual(r.returncode, 0, r.stderr)
        st = os.stat(os.path.join(self.root, "etc", "rig", "rigd.conf.d"))
        self.assertEqual(oct(st.st_mode & 0o7777), "0o755")
        self.assertEqual(st.st_uid, 0)

    def test_tmpfiles_rejects_a_broken_line(self):
        bad = os.path.join(self.root, "bad.conf")
        with open(bad, "w") as f:
            f.write("d /etc/rig 0755 root no-such-group -\n")
        r = run("systemd-tmpfiles", "--root=" + self.root, "--create", bad)
        self.assertNotEqual(r.returncode, 0)
        self.assertIn("Failed to resolve group 'no-such-group'", r.stderr)


# The GPUs of tests/fixtures/machines/amd-nvidia (an RX 7900-class card, an NVIDIA 3D controller),
# plus what must not be tagged: a DRM connector, the NVIDIA card's HDMI audio function, and an AMD
# PCI function (AMD GPUs are found through their DRM nodes and kfd).
MOCK_DEVICES = """\
P: /devices/pci0000:00/0000:03:00.0
E: SUBSYSTEM=pci
A: vendor=0x1002
A: class=0x030000

P: /devices/pci0000:00/0000:03:00.0/drm/card0
E: SUBSYSTEM=drm
E: DEVTYPE=drm_minor
E: DEVNAME=/dev/dri/card0
E: MAJOR=226
E: MINOR=0

P: /devices/pci0000:00/0000:03:00.0/drm/card0/card0-DP-1
E: SUBSYSTEM=drm
E: DEVTYPE=drm_connector

P: /devices/pci0000:00/0000:03:00.0/drm/renderD128
E: SUBSYSTEM=drm
E: DEVTYPE=drm_minor
E: DEVNAME=/dev/dri/renderD128
E: MAJOR=226
E: MINOR=128

P: /devices/virtual/kfd/kfd
E: SUBSYSTEM=kfd
E: DEVNAME=/dev/kfd
E: MAJOR=508
E: MINOR=0

P: /devices/pci0000:00/0000:41:00.0
E: SUBSYSTEM=pci
A: vendor=0x10de
A: class=0x030200

P: /devices/pci0000:00/0000:41:00.1
E: SUBSYSTEM=pci
A: vendor=0x10de
A: class=0x040300
"""
RENDER_GID = 4242   # the render group of the private /etc/group, so the test needs none on the host


class UdevRules(unittest.TestCase):
    """`udevadm test` on mocked devices with only 70-rigd.rules loaded.

    In a private mount namespace: tmpfs over /dev and /run (udevadm test writes /dev/char links and
    /run/udev/data), our rules file alone in /etc/udev/rules.d, the system's rules directories
    emptied, and an /etc/group in which render is RENDER_GID.
    """

    @classmethod
    def setUpClass(cls):
        if os.geteuid() != 0:
            raise unittest.SkipTest("needs root for a private mount namespace")
        for tool in ("udevadm", "umockdev-run", "unshare"):
            if not shutil.which(tool):
                raise AssertionError(f"{tool} not installed (scripts/debian-packages: udev, umockdev, util-linux)")

    def udev_test(self, syspath, rules_text=None):
        with tempfile.TemporaryDirectory() as tmp:
            for d in ("rules", "empty"):
                os.mkdir(os.path.join(tmp, d))
            if rules_text is None:
                shutil.copy(UDEV_RULES, os.path.join(tmp, "rules", "70-rigd.rules"))
            else:
                with open(os.path.join(tmp, "rules", "70-rigd.rules"), "w") as f:
                    f.write(rules_text)
            with open(os.path.join(tmp, "group"), "w") as f:
                f.write(f"root:x:0:\nvideo:x:44:\nrender:x:{RENDER_GID}:\n")
            with open(os.path.join(tmp, "gpus.umockdev"), "w") as f:
                f.write(MOCK_DEVICES)
            system_rules = {os.path.realpath(d) for d in ("/lib/udev/rules.d", "/usr/lib/udev/rules.d",
                                                         "/usr/local/lib/udev/rules.d") if os.path.isdir(d)}
            script = ["set -e", "mount -t tmpfs none /run", "mount -t tmpfs none /dev",
                      f"mount --bind {tmp}/rules /etc/udev/rules.d", f"mount --bind {tmp}/group /etc/group"]
            script += [f"mount --bind {tmp}/empty {d}" for d in sorted(system_rules)]
            script.append(f"exec umockdev-run -d {tmp}/gpus.umockdev -- udevadm test {syspath}")
            r = run("unshare", "--mount", "--propagation", "private", "sh", "-c", "\n".join(script))
        out = r.stdout + r.stderr
        self.assertEqual(r.returncode, 0, out)
        self.assertIn("Reading rules file: /etc/udev/rules.d/70-rigd.rules", out)
        return out

    def parse_errors(self, out):
        return [l for l in out.splitlines() if l.startswith("/etc/udev/rules.d/70-rigd.rules:")]

    def tags(self, out):
        m = re.search(r"(?m)^TAGS=(.*)$", out)
        return set(m.group(1).strip(":").split(":")) if m else set()

    def assert_render_group_only(self, out):
        self.assertRegex(out, rf"70-rigd\.rules:\d+ GROUP {RENDER_GID}\b")
        self.assertRegex(out, r"70-rigd\.rules:\d+ MODE 0660\b")

    def test_rules_parse_without_complaint(self):
        self.assertEqual(self.parse_errors(self.udev_test("/sys/class/drm/renderD128")), [])

    def test_a_misspelt_key_is_reported(self):
        with open(UDEV_RULES) as f:
            broken = f.read() + 'SUBSYSTEM=="drm", KERNL=="card*", TAG+="rigd"\n'
        errors = self.parse_errors(self.udev_test("/sys/class/drm/renderD128", broken))
        self.assertTrue(any("Invalid key 'KERNL'" in e for e in errors), errors)

    def test_render_node_is_render_group_0660_and_tagged(self):
        out = self.udev_test("/sys/class/drm/renderD128")
        self.assert_render_group_only(out)
        self.assertIn("rigd", self.tags(out))

    def test_kfd_is_render_group_0660_and_tagged(self):
        out = self.udev_test("/sys/class/kfd/kfd")
        self.assert_render_group_only(out)
        self.assertIn("rigd", self.tags(out))

    def test_card_node_is_tagged_and_keeps_its_group(self):
        out = self.udev_test("/sys/class/drm/card0")
        self.assertIn("rigd", self.tags(out))
        self.assertNotRegex(out, r"70-rigd\.rules:\d+ (GROUP|MODE)")

    def test_drm_connector_is_not_tagged(self):
        self.assertNotIn("rigd", self.tags(self.udev_test("/sys/class/drm/card0-DP-1")))

    def test_nvidia_gpu_function_is_tagged(self):
        self.assertIn("rigd", self.tags(self.udev_test("/sys/bus/pci/devices/0000:41:00.0")))

    def test_nvidia_audio_function_is_not_tagged(self):
        self.assertNotIn("rigd", self.tags(self.udev_test("/sys/bus/pci/devices/0000:41:00.1")))

    def test_amd_pci_function_is_not_tagged(self):
        self.assertNotIn("rigd", self.tags(self.udev_test("/sys/bus/pci/devices/0000:03:00.0")))


class UdevRulesText(unittest.TestCase):
    """What udevadm 252 accepts silently: a missing comma, an assignment where a match was meant."""

    TOKEN = re.compile(r'(?P<key>[A-Z]+)(\{[^}]+\})?(?P<op>==|!=|\+=|=)"(?P<value>[^"]*)"')
    MATCH_KEYS = {"SUBSYSTEM", "KERNEL", "ATTR", "ENV"}
    ASSIGN_KEYS = {"GROUP", "MODE", "TAG"}

    def test_every_rule_is_comma_separated_known_tokens(self):
        with open(UDEV_RULES) as f:
            lines = [(n, l.strip()) for n, l in enumerate(f, 1) if l.strip() and not l.lstrip().startswith("#")]
        self.assertTrue(lines)
        for n, line in lines:
            tokens = line.split(", ")
            parsed = [self.TOKEN.fullmatch(t) for t in tokens]
            self.assertTrue(all(parsed), f"line {n}: {line}")
            for m in parsed:
                key, op = m.group("key"), m.group("op")
                if key in self.MATCH_KEYS:
                    self.assertIn(op, ("==", "!="), f"line {n}: {key} must be a match (an assignment writes it)")
                else:
                    self.assertIn(key, self.ASSIGN_KEYS, f"line {n}: unknown key {key}")
                    self.assertIn(op, ("=", "+="), f"line {n}")
                if key == "MODE":
                    self.assertRegex(m.group("value"), r"^0[0-7]{3}$", f"line {n}")
            self.assertTrue(any(m.group("key") in self.MATCH_KEYS for m in parsed), f"line {n} matches everything")


if __name__ == "__main__":
    unittest.main()


class Install(unittest.TestCase):
    """`cmake --install` (into a DESTDIR) puts rigd, its units and rules where systemd and udev look."""

    def test_install_places_every_file(self):
        build = os.environ.get("BUILD_DIR", os.path.join(SOURCE, "build"))
        with tempfile.TemporaryDirectory() as dest:
            r = run("cmake", "--install", build, env={**os.environ, "DESTDIR": dest})
            self.assertEqual(r.returncode, 0, r.stderr)
            installed = {os.path.relpath(os.path.join(d, f), dest) for d, _, fs in os.walk(dest) for f in fs}
            unit_dir = run("pkg-config", "--variable=systemdsystemunitdir", "systemd").stdout.strip() or "/lib/systemd/system"
            udev_dir = run("pkg-config", "--variable=udevdir", "udev").stdout.strip() or "/lib/udev"
            for path in (unit_dir + "/rigd.service", unit_dir + "/rigd.socket", udev_dir + "/rules.d/70-rigd.rules",
                         "usr/lib/sysusers.d/rigd.conf", "usr/lib/tmpfiles.d/rigd.conf"):
                self.assertIn(path.lstrip("/"), installed)
            rigd = [p for p in installed if p.endswith("sbin/rigd")]
            self.assertEqual(len(rigd), 1, installed)
            self.assertIn("bin/gpuctl", "\n".join(installed))
            unit = read_unit(os.path.join(dest, unit_dir.lstrip("/"), "rigd.service"))
            # The unit starts the binary exactly where it was installed.
            self.assertEqual(unit[("Service", "ExecStart")], ["/" + rigd[0]])
