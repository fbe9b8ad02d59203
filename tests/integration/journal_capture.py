"""Run inside a private mount namespace (unshare --mount) by test_faults: a tmpfs over /run and a
datagram socket at /run/systemd/journal/socket stand in for journald, so rigd's native journal
messages (the RIG_GPU= and RIG_FAULT= fields) can be read without touching the host's journal.
Usage: journal_capture.py RIGD ROOT SOCKET LINE — starts rigd with stderr as its "journal stream",
appends LINE to ROOT/dev/kmsg, prints every journal message rigd sent as one JSON object per line."""
import json
import os
import socket
import subprocess
import sys
import time

rigd, root, sock_path, line = sys.argv[1:5]
subprocess.run(["mount", "-t", "tmpfs", "tmpfs", "/run"], check=True)
os.makedirs("/run/systemd/journal")
journal = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
journal.bind("/run/systemd/journal/socket")

log = open(os.path.join(os.path.dirname(sock_path), "stderr"), "w")
st = os.fstat(log.fileno())
env = {**os.environ, "JOURNAL_STREAM": f"{st.st_dev}:{st.st_ino}"}
proc = subprocess.Popen([rigd, "--root", root, "--socket", sock_path], stdout=log, stderr=log, env=env)
deadline = time.monotonic() + 10
while not os.path.exists(sock_path) and time.monotonic() < deadline:
    time.sleep(0.01)
with open(os.path.join(root, "dev", "kmsg"), "a") as f:
    f.write(line + "\n")

journal.settimeout(3)
try:
    while True:
        fields = {}
        for kv in journal.recv(65536).decode().split("\n"):
            if "=" in kv:
                key, _, value = kv.partition("=")
                fields[key] = value
        print(json.dumps(fields), flush=True)
        if "RIG_FAULT" in fields:
            break
except socket.timeout:
    pass
proc.terminate()
proc.wait()
