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
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from benchlib import BIN, Cluster, log, wait_caught_up  # noqa: E402  (scripts/benchlib.py)
PARTITIONS = 3


def produce(cluster, topic, secs):
    out = cluster.cli("bench", "produce", "--topic", topic, "--partitions", str(PARTITIONS),
                      "--duration", str(secs), "--format", "json")
    return json.loads(out.strip().splitlines()[-1])


def retained_mib(cluster, topic):
    d = json.loads(cluster.cli("topic", "describe", topic, "--format", "json"))
    return sum(p["retained_bytes"] for p in d["partitions"]) / (1 << 20), d


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
        cluster.start_all()
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
