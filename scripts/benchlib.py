"""What the Tidemark benchmark scripts share: three `tidemark serve` processes on
127.0.0.1 (the release binary) that a script can start, stop and measure.

Env: CARGO_TARGET_DIR  where the release binary is (default target).
"""

import json
import os
import signal
import subprocess
import sys
import time

TARGET = os.environ.get("CARGO_TARGET_DIR", "target")
BIN = os.path.join(TARGET, "release", "tidemark")


def log(msg):
    print(msg, file=sys.stderr, flush=True)


class Cluster:
    def __init__(self, root, port, extra):
        self.root = root
        self.addrs = [f"127.0.0.1:{port + i}" for i in range(3)]
        # Nodes replicate over their own listener, 100 ports up; --peers names those.
        self.cluster_addrs = [f"127.0.0.1:{port + 100 + i}" for i in range(3)]
        self.peers = ",".join(f"{i + 1}={a}" for i, a in enumerate(self.cluster_addrs))
        self.extra = extra
        self.procs = [None, None, None]
        self.starts = {}

    def data(self, i):
        return os.path.join(self.root, f"node-{i + 1}")

    def logfile(self, i):
        return os.path.join(self.root, f"node-{i + 1}.log")

    def spawn(self, i):
        """Starts node i's process; `started` waits for it."""
        out = open(self.logfile(i), "a")
        args = [BIN, "serve", "--id", str(i + 1), "--listen", self.addrs[i],
                "--cluster-listen", self.cluster_addrs[i],
                "--peers", self.peers, "--data-dir", self.data(i)] + self.extra
        env = dict(os.environ, RUST_LOG="warn")
        self.procs[i] = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=out, env=env)

    def started(self, i, t0):
        """Waits until node i printed that it listens; returns seconds since t0."""
        marker = f"tidemark node {i + 1} listening"
        while time.monotonic() - t0 < 300:
            with open(self.logfile(i)) as f:
                if f.read().count(marker) > self.starts.get(i, 0):
                    self.starts[i] = self.starts.get(i, 0) + 1
                    return time.monotonic() - t0
            if self.procs[i].poll() is not None:
                raise SystemExit(f"node {i + 1} exited; see {self.logfile(i)}")
            time.sleep(0.01)
        raise SystemExit(f"node {i + 1} did not start within 300 s")

    def start(self, i):
        """(Re)starts node i; returns seconds until it printed that it listens."""
        t0 = time.monotonic()
        self.spawn(i)
        return self.started(i, t0)

    def start_all(self):
        """Starts every node at once: a new cluster forms once all of them answer."""
        t0 = time.monotonic()
        for i in range(3):
            self.spawn(i)
        for i in range(3):
            self.started(i, t0)

    def kill9(self, i):
        p = self.procs[i]
        if p and p.poll() is None:
            p.send_signal(signal.SIGKILL)
            p.wait()

    def terminate(self, i, limit=30):
        """SIGTERM: a graceful stop. Returns seconds until the process exited."""
        p = self.procs[i]
        t0 = time.monotonic()
        if p and p.poll() is None:
            p.send_signal(signal.SIGTERM)
            p.wait(timeout=limit)
        return time.monotonic() - t0

    def stop_all(self):
        for i in range(3):
            self.kill9(i)

    def rss_mib(self, i):
        with open(f"/proc/{self.procs[i].pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024
        return 0.0

    def written_bytes(self):
        """Bytes all three node processes have written to storage (/proc/PID/io)."""
        total = 0
        for p in self.procs:
            with open(f"/proc/{p.pid}/io") as f:
                for line in f:
                    if line.startswith("write_bytes:"):
                        total += int(line.split()[1])
        return total

    def disk_mib(self, i):
        total = 0
        for dirpath, _, files in os.walk(self.data(i)):
            for name in files:
                try:
                    total += os.path.getsize(os.path.join(dirpath, name))
                except OSError:
                    pass
        return total / (1 << 20)

    def cli(self, *args, check=True):
        cmd = [BIN, *args, "--bootstrap", ",".join(self.addrs)]
        r = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
        if check and r.returncode != 0:
            raise SystemExit(f"{' '.join(args)} failed: {r.stderr.strip()}")
        return r.stdout


def wait_caught_up(cluster, topic, limit=120):
    """Seconds until every partition has a leader again (the restarted node rejoined)."""
    t0 = time.monotonic()
    while time.monotonic() - t0 < limit:
        r = subprocess.run([BIN, "topic", "describe", topic, "--format", "json", "--bootstrap",
                            ",".join(cluster.addrs)], capture_output=True, text=True)
        if r.returncode == 0 and all(p["leader"] for p in json.loads(r.stdout)["partitions"]):
            return time.monotonic() - t0
        time.sleep(0.2)
    return None
