#!/usr/bin/env python3
"""Log lifecycle benchmark: does a Tidemark node stay bounded by what retention keeps?

Starts three `tidemark serve` processes on 127.0.0.1 (release build), creates a topic
with size retention, and writes through it with saturating `tidemark bench produce`
rounds. After each milestone (1 GiB, then 5 GiB written by default) it reports, per node:
RSS, disk used by the data dir, and the restart time after `kill -9` (process start to
"listening", i.e. storage replayed and every group's state restored), in alternating
rounds with the sealed segments' index files and without them (deleted before the start,
so storage reads every retained byte, as releases before the index files did). Then it
compares produce throughput on a topic with retention and one without, in alternating
rounds.

Usage: scripts/bench-lifecycle.py [--milestones-gib 1,5] [--retention-mib 256]
       [--rounds 3] [--round-secs 8] [--restarts 2] [--port 19192]
Env:   CARGO_TARGET_DIR  where the release binary is (default target); build it first with
                         cargo build --release -p tidemark-cli
Output: one JSON object per line, then a summary table.
"""

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time

TARGET = os.environ.get("CARGO_TARGET_DIR", "target")
BIN = os.path.join(TARGET, "release", "tidemark")
PARTITIONS = 3


def log(msg):
    print(msg, file=sys.stderr, flush=True)


class Cluster:
    def __init__(self, root, port, extra):
        self.root = root
        self.addrs = [f"127.0.0.1:{port + i}" for i in range(3)]
        self.peers = ",".join(f"{i + 1}={a}" for i, a in enumerate(self.addrs))
        self.extra = extra
        self.procs = [None, None, None]
        self.starts = {}

    def data(self, i):
        return os.path.join(self.root, f"node-{i + 1}")

    def logfile(self, i):
        return os.path.join(self.root, f"node-{i + 1}.log")

    def start(self, i):
        """Starts node i; returns seconds until it printed that it listens."""
        out = open(self.logfile(i), "a")
        t0 = time.monotonic()
        args = [BIN, "serve", "--id", str(i + 1), "--listen", self.addrs[i],
                "--peers", self.peers, "--data-dir", self.data(i)] + self.extra
        env = dict(os.environ, RUST_LOG="warn")
        self.procs[i] = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=out, env=env)
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

    def kill9(self, i):
        p = self.procs[i]
        if p and p.poll() is None:
            p.send_signal(signal.SIGKILL)
            p.wait()

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


def produce(cluster, topic, secs):
    out = cluster.cli("bench", "produce", "--topic", topic, "--partitions", str(PARTITIONS),
                      "--duration", str(secs), "--format", "json")
    return json.loads(out.strip().splitlines()[-1])


def retained_mib(cluster, topic):
    d = json.loads(cluster.cli("topic", "describe", topic, "--format", "json"))
    return sum(p["retained_bytes"] for p in d["partitions"]) / (1 << 20), d


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


def drop_page_cache():
    """Best effort: restart times then include reading from disk. Needs root."""
    try:
        os.sync()
        with open("/proc/sys/vm/drop_caches", "w") as f:
            f.write("3")
        return True
    except OSError:
        return False


def restart_rounds(cluster, topic, rounds):
    """Restarts node 3 `rounds` times with its index files and as often without, alternating."""
    times = {"with_index": [], "without_index": []}
    cold = False
    for _ in range(rounds):
        for case in times:
            cluster.kill9(2)
            if case == "without_index":
                log_dir = os.path.join(cluster.data(2), "log")
                for name in os.listdir(log_dir):
                    if name.endswith(".idx"):
                        os.remove(os.path.join(log_dir, name))
            cold = drop_page_cache()
            times[case].append(round(cluster.start(2), 3))
            wait_caught_up(cluster, topic)
    return times, cold


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--milestones-gib", default="1,5")
    ap.add_argument("--retention-mib", type=int, default=256, help="retention per partition")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--round-secs", type=int, default=8)
    ap.add_argument("--restarts", type=int, default=2, help="restarts per case at each milestone")
    ap.add_argument("--port", type=int, default=19192)
    a = ap.parse_args()
    if not os.path.exists(BIN):
        raise SystemExit(f"{BIN} is missing: cargo build --release -p tidemark-cli")
    milestones = [float(x) for x in a.milestones_gib.split(",")]
    root = tempfile.mkdtemp(prefix="tidemark-lifecycle-")
    cluster = Cluster(root, a.port, [])
    results = []
    try:
        for i in range(3):
            cluster.start(i)
        time.sleep(2)
        topic = "life"
        cluster.cli("topic", "create", topic, "-p", str(PARTITIONS), "-r", "3",
                    "--retention-bytes", str(a.retention_mib << 20))
        written_mib = 0.0
        for m in milestones:
            while written_mib < m * 1024:
                s = produce(cluster, topic, a.round_secs)
                written_mib += s["mb_per_sec"] * s["seconds"] * 1e6 / (1 << 20)
                log(f"written {written_mib:.0f} MiB ({s['records_per_sec']:.0f} rec/s)")
            time.sleep(12)  # two retention passes: trims, purges, compaction
            kept, _ = retained_mib(cluster, topic)
            row = {"case": "milestone", "written_gib": round(written_mib / 1024, 2),
                   "retained_mib_all_partitions": round(kept, 1),
                   "rss_mib": [round(cluster.rss_mib(i), 1) for i in range(3)],
                   "disk_mib": [round(cluster.disk_mib(i), 1) for i in range(3)]}
            times, cold = restart_rounds(cluster, topic, a.restarts)
            row["restart_to_listening_s"] = times
            row["page_cache_dropped"] = cold
            print(json.dumps(row), flush=True)
            results.append(row)
        # Throughput with and without retention, alternating, on the same cluster.
        cluster.cli("topic", "create", "free", "-p", str(PARTITIONS), "-r", "3")
        for r in range(a.rounds):
            for t in (topic, "free"):
                before = cluster.written_bytes()
                s = produce(cluster, t, a.round_secs)
                payload = s["mb_per_sec"] * s["seconds"] * 1e6
                # Each byte produced is stored by 3 replicas: 1.0 means written once each.
                amplification = (cluster.written_bytes() - before) / (3 * payload)
                row = {"case": "throughput", "round": r + 1, "retention": t == topic,
                       "records_per_sec": round(s["records_per_sec"]), "p99_ms": s["p99_ms"],
                       "write_amplification": round(amplification, 2)}
                print(json.dumps(row), flush=True)
                results.append(row)
        before = [round(cluster.disk_mib(i), 1) for i in range(3)]
        cluster.cli("topic", "delete", "free")
        t0 = time.monotonic()
        row = {"case": "delete_topic", "disk_mib_before": before}
        for at in (12, 30, 60):
            time.sleep(max(0.0, t0 + at - time.monotonic()))
            row[f"disk_mib_after_{at}s"] = [round(cluster.disk_mib(i), 1) for i in range(3)]
        print(json.dumps(row), flush=True)
    finally:
        cluster.stop_all()
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
