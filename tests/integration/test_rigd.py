"""rigd as a user meets it: started by systemd's tools (socket activation, sd_notify), leases over
its socket from several processes and users, gpuctl lease/leases, holders that die, GPUs that go
away, and bad input. rigd runs on fixture machines under --root with a socket in a temp dir."""
import json
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import unittest

RIGD = os.environ.get("RIGD", "build/daemon/rigd/rigd")
GPUCTL = os.environ.get("GPUCTL", "build/daemon/gpuctl/gpuctl")
FIXTURES = os.environ.get("FIXTURES", os.path.join(os.path.dirname(__file__), "..", "fixtures", "machines"))
MI50X3 = os.path.join(FIXTURES, "mi50x3", "root")
NOBODY = 65534


def wait_for(predicate, timeout=10.0, what="condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.01)
    raise AssertionError(f"timed out waiting for {what}")


class Client:
    """One connection speaking the line protocol; events are kept apart from replies."""

    def __init__(self, path, preexec=None):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.connect(path)
        self.buf = b""
        self.events = []
        self.next_id = 1

    def close(self):
        self.sock.close()

    def send_raw(self, data):
        self.sock.sendall(data)

    def read_message(self, timeout=10.0):
        self.sock.settimeout(timeout)
        while b"\n" not in self.buf:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise ConnectionError("rigd closed the connection")
            self.buf += chunk
        line, self.buf = self.buf.split(b"\n", 1)
        return json.loads(line)

    def reply(self, timeout=10.0):
        while True:
            msg = self.read_message(timeout)
            if "event" in msg:
                self.events.append(msg)
            else:
                return msg

    def send(self, request, **fields):
        rid = self.next_id
        self.next_id += 1
        self.send_raw((json.dumps({"id": rid, "request": request, **fields}) + "\n").encode())
        return rid

    def call(self, request, timeout=10.0, **fields):
        rid = self.send(request, **fields)
        msg = self.reply(timeout)
        assert msg["id"] == rid, msg
        return msg

    def event(self, timeout=10.0):
        if self.events:
            return self.events.pop(0)
        msg = self.read_message(timeout)
        assert "event" in msg, msg
        return msg


class Rigd:
    def __init__(self, root=MI50X3, config=None, env=None, args=()):
        self.dir = tempfile.mkdtemp(prefix="rigd-test-")
        self.socket = os.path.join(self.dir, "run", "rigd.sock")
        self.log_path = os.path.join(self.dir, "rigd.log")
        self.clients = []
        cmd = [RIGD, "--root", root, "--socket", self.socket, *args]
        if config is not None:
            path = os.path.join(self.dir, "rigd.conf")
            with open(path, "w") as f:
                f.write(config)
            cmd += ["--config", path]
        self.log = open(self.log_path, "w")
        self.proc = subprocess.Popen(cmd, stdout=self.log, stderr=subprocess.STDOUT, env={**os.environ, **(env or {})})
        wait_for(lambda: os.path.exists(self.socket) or self.proc.poll() is not None, what="rigd's socket")
        assert self.proc.poll() is None, self.read_log()

    def client(self):
        c = Client(self.socket)
        self.clients.append(c)
        return c

    def open_to_everyone(self):
        """The socket's file mode is not what these tests are about: rigd's own checks are."""
        os.chmod(self.dir, 0o755)
        os.chmod(os.path.dirname(self.socket), 0o755)
        os.chmod(self.socket, 0o666)

    def read_log(self):
        self.log.flush()
        with open(self.log_path) as f:
            return f.read()

    def stop(self):
        for c in self.clients:
            c.close()
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log.close()
        shutil.rmtree(self.dir, ignore_errors=True)


def as_user(uid, groups=()):
    """preexec_fn dropping a child (forked from root) to uid with exactly these groups."""
    def drop():
        os.setgroups(list(groups))
        os.setgid(groups[0] if groups else NOBODY)
        os.setuid(uid)
    return drop


CLIENT_SCRIPT = r"""
import json, socket, sys
s = socket.socket(socket.AF_UNIX); s.connect(sys.argv[1])
for line in sys.argv[2:]:
    s.sendall((line + "\n").encode())
    buf = b""
    while not buf.endswith(b"\n"):
        buf += s.recv(65536)
    print(buf.decode().strip(), flush=True)
"""


def run_client_as(path, uid, groups, *requests):
    """Runs a one-shot client in a child process of another uid; returns its replies."""
    out = subprocess.run(["python3", "-c", CLIENT_SCRIPT, path, *[json.dumps(r) for r in requests]],
                         capture_output=True, text=True, timeout=30, preexec_fn=as_user(uid, groups))
    assert out.returncode == 0, out.stderr
    return [json.loads(line) for line in out.stdout.splitlines()]


class Leases(unittest.TestCase):
    def setUp(self):
        self.rigd = Rigd()
        self.addCleanup(self.rigd.stop)

    def test_double_grant_is_impossible(self):
        a, b = self.rigd.client(), self.rigd.client()
        got = a.call("lease", count=3, holder="a")
        self.assertEqual(len(got["result"]["gpus"]), 3)
        refused = b.call("lease", count=1, holder="b")
        self.assertEqual(refused["error"]["code"], "EBUSY")
        self.assertIn("held by " + got["result"]["id"], refused["error"]["message"])
        named = b.call("lease", gpus=["0000:06:00.0"])
        self.assertEqual(named["error"]["code"], "EBUSY")
        leases = b.call("leases")["result"]["leases"]
        self.assertEqual([l["holder"] for l in leases], ["a"])

    def test_grant_carries_gpus_p2p_and_environment(self):
        c = self.rigd.client()
        grant = c.call("lease", gpus=[0, "0000:0a:00.0"], holder="env")["result"]
        self.assertEqual(grant["pci"], ["0000:03:00.0", "0000:0a:00.0"])
        self.assertEqual([g["index"] for g in grant["gpu_info"]], [0, 2])
        self.assertEqual(grant["gpu_info"][0]["arch"], "gfx906")
        # The MI50 box's kernel has no P2P: only the diagonal is true.
        self.assertEqual(grant["p2p"], [[True, False], [False, True]])
        env = grant["env"]
        uids = [g["unique_id"] for g in grant["gpu_info"]]
        self.assertEqual(env["ROCR_VISIBLE_DEVICES"], ",".join("GPU-" + u for u in uids))
        self.assertEqual(env["HIP_VISIBLE_DEVICES"], "0,1")
        self.assertEqual(env["RIG_LEASE"], grant["id"])
        self.assertNotIn("CUDA_VISIBLE_DEVICES", env)   # no NVIDIA GPU on this machine

    def test_release_frees_and_only_the_owner_may_release(self):
        a, b = self.rigd.client(), self.rigd.client()
        lease = a.call("lease", count=3)["result"]["id"]
        self.assertEqual(b.call("release", lease=lease)["error"]["code"], "EPERM")
        self.assertEqual(a.call("release", lease="lease-999")["error"]["code"], "ENOENT")
        self.assertEqual(a.call("release", lease=lease)["result"]["lease"], lease)
        self.assertIn("result", b.call("lease", count=3))

    def test_holder_killed_frees_its_gpus(self):
        holder = subprocess.Popen(["python3", "-c", CLIENT_SCRIPT, self.rigd.socket,
                                   json.dumps({"id": 1, "request": "lease", "count": 3, "holder": "doomed"})],
                                  stdout=subprocess.PIPE, text=True)
        self.assertIn("result", json.loads(holder.stdout.readline()))
        c = self.rigd.client()
        # The client script exits after its last reply; keep it alive by stopping it first.
        self.assertEqual(holder.wait(timeout=10), 0)
        holder.stdout.close()
        wait_for(lambda: c.call("leases")["result"]["leases"] == [], what="the exited holder's lease to end")

        sleeper = subprocess.Popen(["python3", "-c", CLIENT_SCRIPT.replace('print(buf.decode().strip(), flush=True)',
                                    'print(buf.decode().strip(), flush=True)\nimport time; time.sleep(600)'),
                                    self.rigd.socket,
                                    json.dumps({"id": 1, "request": "lease", "count": 3, "holder": "sleeper"})],
                                   stdout=subprocess.PIPE, text=True)
        self.assertIn("result", json.loads(sleeper.stdout.readline()))
        self.assertEqual(c.call("lease", count=1)["error"]["code"], "EBUSY")
        waiting_id = c.send("lease", count=3, wait_ms=10000, holder="next")
        start = time.monotonic()
        sleeper.send_signal(signal.SIGKILL)
        msg = c.reply()
        freed_ms = (time.monotonic() - start) * 1000
        sleeper.wait()
        sleeper.stdout.close()
        self.assertEqual(msg["id"], waiting_id)
        self.assertEqual(len(msg["result"]["gpus"]), 3)
        print(f"\nSIGKILL of the holder -> its GPUs granted to a waiter: {freed_ms:.2f} ms")

    def test_waiters_are_granted_in_fifo_order(self):
        holder, watcher = self.rigd.client(), self.rigd.client()
        watcher.call("subscribe", events=["lease"])
        lease = holder.call("lease", count=3, holder="first")["result"]["id"]
        waiters = [self.rigd.client() for _ in range(3)]
        for i, w in enumerate(waiters):
            w.send("lease", count=3, wait_ms=20000, holder=f"w{i}")
            w.sock.settimeout(10)
            # Arrival order is what rigd read: a hello round trip after each request pins it.
            self.assertIn("result", w.call("hello"))
        holder.call("release", lease=lease)
        for w in waiters:       # each gets all three GPUs, then hands them on
            msg = w.reply()
            w.call("release", lease=msg["result"]["id"])
        granted = []
        while len(granted) < 4:
            e = watcher.event()
            if e["action"] == "granted":
                granted.append(e["holder"])
        self.assertEqual(granted, ["first", "w0", "w1", "w2"])

    def test_a_large_request_is_not_starved_by_small_ones(self):
        holder = self.rigd.client()
        lease = holder.call("lease", count=2, holder="two")["result"]["id"]
        big, small = self.rigd.client(), self.rigd.client()
        big.send("lease", count=3, wait_ms=20000, holder="big")
        self.assertIn("result", big.call("hello"))
        # One GPU is free, but the earlier request for three waits for it.
        msg = small.call("lease", count=1, wait_ms=300, holder="small")
        self.assertEqual(msg["error"]["code"], "EBUSY")
        holder.call("release", lease=lease)
        self.assertEqual(len(big.reply()["result"]["gpus"]), 3)

    def test_a_wait_for_named_gpus_lets_others_past(self):
        holder = self.rigd.client()
        holder.call("lease", gpus=[0], holder="zero")
        named, other = self.rigd.client(), self.rigd.client()
        named.send("lease", gpus=[0], wait_ms=20000)
        self.assertIn("result", named.call("hello"))
        self.assertEqual(other.call("lease", gpus=[1])["result"]["pci"], ["0000:06:00.0"])

    def test_wait_times_out_with_ebusy(self):
        holder = self.rigd.client()
        holder.call("lease", count=3)
        c = self.rigd.client()
        start = time.monotonic()
        msg = c.call("lease", count=1, wait_ms=300)
        self.assertEqual(msg["error"]["code"], "EBUSY")
        self.assertIn("after waiting 300 ms", msg["error"]["message"])
        self.assertGreaterEqual(time.monotonic() - start, 0.29)

    def test_shared_leases_share_and_keep_exclusive_out(self):
        a, b, c = self.rigd.client(), self.rigd.client(), self.rigd.client()
        self.assertIn("result", a.call("lease", gpus=[0], exclusive=False))
        self.assertIn("result", b.call("lease", gpus=[0], exclusive=False))
        self.assertEqual(c.call("lease", gpus=[0])["error"]["code"], "EBUSY")

    def test_impossible_requests_are_refused_at_once(self):
        c = self.rigd.client()
        self.assertEqual(c.call("lease", count=4)["error"]["code"], "ENODEV")
        msg = c.call("lease", gpus=["0000:99:00.0"])
        self.assertEqual(msg["error"]["code"], "ENODEV")
        self.assertIn("0000:99:00.0", msg["error"]["message"])
        msg = c.call("lease", count=1, min_vram_bytes=64 << 30)
        self.assertEqual(msg["error"]["code"], "ENODEV")

    def test_list_shows_who_holds_each_gpu(self):
        c = self.rigd.client()
        lease = c.call("lease", gpus=[1], holder="lister")["result"]["id"]
        gpus = c.call("list")["result"]["gpus"]
        self.assertEqual(len(gpus), 3)
        self.assertIsNone(gpus[0]["lease"])
        self.assertEqual(gpus[1]["lease"]["id"], lease)
        self.assertEqual(gpus[1]["lease"]["holder"], "lister")
        self.assertEqual(gpus[1]["lease"]["pid"], os.getpid())


class BadInput(unittest.TestCase):
    def setUp(self):
        self.rigd = Rigd()
        self.addCleanup(self.rigd.stop)

    def test_malformed_lines_get_errors_and_the_daemon_goes_on(self):
        c = self.rigd.client()
        c.send_raw(b"{not json\n")
        self.assertEqual(c.reply()["error"]["code"], "EINVAL")
        c.send_raw(b'{"id":7,"request":"lease","count":"two"}\n')
        msg = c.reply()
        self.assertEqual(msg["id"], 7)
        self.assertIn("'count' must be an integer", msg["error"]["message"])
        c.send_raw(b'{"id":8,"request":"frobnicate"}\n')
        self.assertIn("unknown request 'frobnicate'", c.reply()["error"]["message"])
        c.send_raw(b"[1,2,3]\n")
        self.assertEqual(c.reply()["error"]["code"], "EINVAL")
        self.assertIn("result", c.call("hello"))

    def test_an_overlong_message_is_dropped_alone(self):
        c = self.rigd.client()
        c.send_raw(b'{"id":1,"request":"hello","pad":"' + b"x" * 200000 + b'"}\n')
        msg = c.reply()
        self.assertEqual(msg["error"]["code"], "EMSGSIZE")
        self.assertIn("result", c.call("hello"))

    def test_a_peer_that_never_reads_is_dropped_and_the_rest_go_on(self):
        # It subscribes to lease events and reads nothing: once more than 1 MiB waits for it, rigd
        # drops it instead of holding the memory (or blocking).
        sleeper = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sleeper.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        sleeper.connect(self.rigd.socket)
        self.addCleanup(sleeper.close)
        sleeper.sendall(b'{"id":1,"request":"subscribe","events":["lease"]}\n')
        worker = self.rigd.client()
        self.assertIn("result", worker.call("hello"))
        for _ in range(3000):   # two events of ~300 bytes each
            lease = worker.call("lease", count=1, holder="h" * 100)["result"]["id"]
            worker.call("release", lease=lease)
            if "dropping the connection" in self.rigd.read_log():
                break
        self.assertIn("dropping the connection of pid", self.rigd.read_log())
        # What was queued before the drop may still arrive; then the socket ends.
        sleeper.settimeout(10)
        while sleeper.recv(1 << 20):
            pass
        self.assertIn("result", worker.call("lease", count=3))

    def test_a_client_that_vanishes_mid_line_costs_nothing(self):
        c = self.rigd.client()
        c.send_raw(b'{"id":1,"request":"lea')
        c.close()
        d = self.rigd.client()
        self.assertIn("result", d.call("lease", count=3))


class Identity(unittest.TestCase):
    def test_a_user_without_the_group_is_refused_and_logged(self):
        rigd = Rigd(config="[rigd]\nlease_group = 4242\nadmin_group = 4343\n")
        self.addCleanup(rigd.stop)
        rigd.open_to_everyone()
        hello, lease, listed = run_client_as(rigd.socket, NOBODY, [],
                                             {"id": 1, "request": "hello"},
                                             {"id": 2, "request": "lease", "count": 1},
                                             {"id": 3, "request": "list"})
        self.assertFalse(hello["result"]["may_lease"])
        self.assertEqual(lease["error"]["code"], "EPERM")
        self.assertIn("4242", lease["error"]["message"])
        self.assertEqual(len(listed["result"]["gpus"]), 3)     # anyone may read
        self.assertIn(f"denied a lease to uid {NOBODY}", rigd.read_log())

    def test_a_member_of_the_lease_group_may_lease(self):
        rigd = Rigd(config="[rigd]\nlease_group = 4242\n")
        self.addCleanup(rigd.stop)
        rigd.open_to_everyone()
        hello, lease = run_client_as(rigd.socket, NOBODY, [4242],
                                     {"id": 1, "request": "hello"}, {"id": 2, "request": "lease", "count": 1})
        self.assertTrue(hello["result"]["may_lease"])
        self.assertFalse(hello["result"]["is_admin"])
        self.assertEqual(lease["result"]["uid"], NOBODY)

    def test_the_socket_is_not_open_to_everyone(self):
        rigd = Rigd()
        self.addCleanup(rigd.stop)
        self.assertEqual(os.stat(rigd.socket).st_mode & 0o777, 0o660)

    def test_a_bad_config_line_is_named_and_the_rest_applies(self):
        rigd = Rigd(config="[rigd]\nthis is garbage\nlease_group = 4242\nbogus_key = 1\n")
        self.addCleanup(rigd.stop)
        log = rigd.read_log()
        self.assertIn("rigd.conf:2:", log)
        self.assertIn("rigd.conf:4: unknown key 'bogus_key'", log)
        rigd.open_to_everyone()
        hello, = run_client_as(rigd.socket, NOBODY, [4242], {"id": 1, "request": "hello"})
        self.assertTrue(hello["result"]["may_lease"])


class Hotplug(unittest.TestCase):
    def test_a_gpu_that_disappears_revokes_its_lease(self):
        tmp = tempfile.mkdtemp(prefix="rigd-hotplug-")
        self.addCleanup(shutil.rmtree, tmp, True)
        root = os.path.join(tmp, "root")
        shutil.copytree(MI50X3, root, symlinks=True)
        rigd = Rigd(root=root)
        self.addCleanup(rigd.stop)
        holder, other, watcher = rigd.client(), rigd.client(), rigd.client()
        watcher.call("subscribe", events=["hotplug", "lease_revoked"])
        doomed = holder.call("lease", gpus=["0000:0a:00.0", "0000:03:00.0"], holder="doomed")["result"]["id"]
        kept = other.call("lease", gpus=["0000:06:00.0"], holder="kept")["result"]["id"]

        shutil.rmtree(os.path.join(root, "sys/devices/pci0000:00/0000:00:01.0/0000:0a:00.0"))
        rigd.proc.send_signal(signal.SIGHUP)

        revoked = holder.event()
        self.assertEqual(revoked["event"], "lease_revoked")
        self.assertEqual(revoked["lease"], doomed)
        self.assertEqual(revoked["gpu_pci"], "0000:0a:00.0")
        events = [watcher.event(), watcher.event()]
        self.assertIn({"event": "hotplug", "action": "remove", "gpu_pci": "0000:0a:00.0"}, events)
        leases = watcher.call("leases")["result"]["leases"]
        self.assertEqual([l["id"] for l in leases], [kept])
        self.assertEqual(len(watcher.call("list")["result"]["gpus"]), 2)
        # The revoked lease's other GPU is free again.
        self.assertIn("result", watcher.call("lease", gpus=["0000:03:00.0"]))

        # The GPU comes back: it is listed again and may be leased.
        gone = "sys/devices/pci0000:00/0000:00:01.0/0000:0a:00.0"
        shutil.copytree(os.path.join(MI50X3, gone), os.path.join(root, gone), symlinks=True)
        rigd.proc.send_signal(signal.SIGHUP)
        self.assertEqual(watcher.event(), {"event": "hotplug", "action": "add", "gpu_pci": "0000:0a:00.0"})
        self.assertEqual(len(watcher.call("list")["result"]["gpus"]), 3)
        self.assertIn("result", holder.call("lease", gpus=["0000:0a:00.0"]))


class Systemd(unittest.TestCase):
    def test_socket_activation_serves_a_client(self):
        tmp = tempfile.mkdtemp(prefix="rigd-activate-")
        self.addCleanup(shutil.rmtree, tmp, True)
        path = os.path.join(tmp, "rigd.sock")
        log = open(os.path.join(tmp, "log"), "w")
        self.addCleanup(log.close)
        proc = subprocess.Popen(["systemd-socket-activate", "-l", path, RIGD, "--root", MI50X3,
                                 "--socket", os.path.join(tmp, "unused.sock")], stdout=log, stderr=subprocess.STDOUT)
        self.addCleanup(lambda: (proc.poll() is None and proc.kill(), proc.wait()))
        wait_for(lambda: os.path.exists(path), what="the activation socket")
        c = Client(path)
        self.addCleanup(c.close)
        self.assertEqual(c.call("hello")["result"]["protocol"], 1)
        self.assertIn("result", c.call("lease", count=1))
        self.assertFalse(os.path.exists(os.path.join(tmp, "unused.sock")))   # it served systemd's socket
        with open(os.path.join(tmp, "log")) as f:
            self.assertIn("serving the socket systemd passed", f.read())

    def test_notify_ready_status_watchdog_reload_stopping(self):
        tmp = tempfile.mkdtemp(prefix="rigd-notify-")
        self.addCleanup(shutil.rmtree, tmp, True)
        notify_path = os.path.join(tmp, "notify")
        ns = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        ns.bind(notify_path)
        self.addCleanup(ns.close)
        rigd = Rigd(env={"NOTIFY_SOCKET": notify_path, "WATCHDOG_USEC": "200000"})
        self.addCleanup(rigd.stop)

        seen = []

        def receive_until(key, timeout=5.0):
            ns.settimeout(timeout)
            while True:
                msg = ns.recv(4096).decode()
                seen.append(msg)
                if any(line.startswith(key) for line in msg.splitlines()):
                    return msg

        ready = receive_until("READY=1")
        self.assertIn("READY=1", ready)
        status = receive_until("STATUS=")
        self.assertIn("3 GPU(s)", status)
        receive_until("WATCHDOG=1")
        receive_until("WATCHDOG=1")     # it keeps pinging
        rigd.proc.send_signal(signal.SIGHUP)
        receive_until("RELOADING=1")
        receive_until("READY=1")
        rigd.proc.send_signal(signal.SIGTERM)
        receive_until("STOPPING=1")
        self.assertEqual(rigd.proc.wait(timeout=10), 0)
        self.assertFalse(os.path.exists(rigd.socket))   # it removes the socket it bound

    def test_a_second_rigd_does_not_steal_the_socket(self):
        rigd = Rigd()
        self.addCleanup(rigd.stop)
        second = subprocess.run([RIGD, "--root", MI50X3, "--socket", rigd.socket], capture_output=True, text=True,
                                timeout=10)
        self.assertEqual(second.returncode, 1)
        self.assertIn("another rigd", second.stderr)
        self.assertIn("result", rigd.client().call("hello"))


class GpuctlLease(unittest.TestCase):
    def setUp(self):
        self.rigd = Rigd()
        self.addCleanup(self.rigd.stop)

    def gpuctl(self, *args, **kw):
        return subprocess.run([GPUCTL, "--socket", self.rigd.socket, *args], capture_output=True, text=True,
                              timeout=30, **kw)

    def test_runs_the_command_with_the_lease_environment_and_its_exit_code(self):
        r = self.gpuctl("lease", "-n", "2", "--holder", "job", "--", "sh", "-c",
                        f'echo "$ROCR_VISIBLE_DEVICES|$HIP_VISIBLE_DEVICES|$RIG_LEASE"; '
                        f'{GPUCTL} --socket {self.rigd.socket} --json leases; exit 7')
        self.assertEqual(r.returncode, 7, r.stderr)
        first, rest = r.stdout.split("\n", 1)
        rocr, hip, lease = first.split("|")
        self.assertEqual(len(rocr.split(",")), 2)
        self.assertEqual(hip, "0,1")
        held = json.loads(rest)["leases"]
        self.assertEqual([(l["id"], l["holder"], l["gpus"]) for l in held], [(lease, "job", [0, 1])])
        # The lease ended with the command.
        self.assertEqual(json.loads(self.gpuctl("--json", "leases").stdout)["leases"], [])

    def test_a_killed_command_gives_128_plus_the_signal(self):
        r = self.gpuctl("lease", "--", "sh", "-c", "kill -9 $$")
        self.assertEqual(r.returncode, 137)

    def test_a_command_that_cannot_run_gives_127(self):
        r = self.gpuctl("lease", "--", "/nonexistent/cmd")
        self.assertEqual(r.returncode, 127)
        self.assertIn("/nonexistent/cmd", r.stderr)

    def test_busy_gpus_fail_with_rigds_reason(self):
        holder = self.rigd.client()
        holder.call("lease", count=3, holder="hog")
        r = self.gpuctl("lease", "-n", "1", "--", "true")
        self.assertEqual(r.returncode, 1)
        self.assertIn("hog", r.stderr)
        r = self.gpuctl("lease", "-n", "1", "--wait", "200", "--", "true")
        self.assertEqual(r.returncode, 1)
        self.assertIn("after waiting 200 ms", r.stderr)

    def test_usage_errors(self):
        self.assertEqual(self.gpuctl("lease", "-n", "0", "--", "true").returncode, 2)
        self.assertEqual(self.gpuctl("lease", "--min-vram", "lots", "--", "true").returncode, 2)
        self.assertEqual(self.gpuctl("lease", "-n", "1").returncode, 2)

    def test_min_vram_takes_sizes(self):
        r = self.gpuctl("lease", "--min-vram", "8GiB", "--", "true")
        self.assertEqual(r.returncode, 0, r.stderr)
        r = self.gpuctl("lease", "--min-vram", "64G", "--", "true")
        self.assertEqual(r.returncode, 1)
        self.assertIn("68719476736 bytes", r.stderr)

    def test_list_shows_leases_from_a_rigd_of_the_same_machine_only(self):
        holder = self.rigd.client()
        lease = holder.call("lease", gpus=[1], holder="llama")["result"]["id"]
        r = self.gpuctl("--root", MI50X3, "list")
        self.assertEqual(r.returncode, 0, r.stderr)
        header, *rows = r.stdout.splitlines()
        self.assertTrue(header.rstrip().endswith("LEASE"))
        self.assertIn(f"llama ({lease})", rows[1])
        self.assertTrue(rows[0].rstrip().endswith("-"))
        gpus = json.loads(self.gpuctl("--root", MI50X3, "--json", "list").stdout)["gpus"]
        self.assertEqual([g["lease"] and g["lease"]["id"] for g in gpus], [None, lease, None])
        # rigd serves the MI50 box: a list of another machine must not borrow its leases.
        other = os.path.join(FIXTURES, "w7900x2", "root")
        r = self.gpuctl("--root", other, "list")
        self.assertNotIn("LEASE", r.stdout)
        gpus = json.loads(self.gpuctl("--root", other, "--json", "list").stdout)["gpus"]
        self.assertTrue(all(g["lease"] is None for g in gpus))

    def test_leases_table_and_no_rigd(self):
        holder = self.rigd.client()
        holder.call("lease", gpus=[2], holder="tabled")
        r = self.gpuctl("leases")
        self.assertEqual(r.returncode, 0)
        self.assertIn("tabled", r.stdout)
        self.assertIn("exclusive", r.stdout)
        r = subprocess.run([GPUCTL, "--socket", "/nonexistent/rigd.sock", "leases"], capture_output=True, text=True)
        self.assertEqual(r.returncode, 1)
        self.assertIn("cannot reach rigd at /nonexistent/rigd.sock", r.stderr)


if __name__ == "__main__":
    unittest.main()
