#!/usr/bin/env python3
"""Rolling restart benchmark: what do producers see while every node restarts in turn?

Starts three `tidemark serve` processes on 127.0.0.1 (release build) and runs
`tidemark bench produce` at a fixed rate while it restarts node 1, then 2, then 3, each
once the previous one is back and every partition has a leader. In alternating rounds the
nodes stop gracefully (SIGTERM: each hands its leaderships over first) or with `kill -9`
(the others notice after an election timeout). Reports, per round, the bench's failed
sends, its longest stretch without an acknowledgement (max ack gap) and its latency tail.

Usage: scripts/bench-rolling-restart.py [--rounds 2] [--rate 2000] [--port 19292]
Env:   CARGO_TARGET_DIR  where the release binary is (default target); build it first with
                         cargo build --release -p tidemark-cli
Output: one JSON object per round, then a summary table on stderr.
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

SETTLE = 3.0  # seconds between one node being back and the next one stopping


def rolling_round(cluster, topic, how, rate):
    duration = int(3 * (SETTLE + 4) + 6)
    bench = subprocess.Popen(
        [BIN, "bench", "produce", "--topic", topic, "--duration", str(duration), "--rate", str(rate),
         "--format", "json", "--bootstrap", ",".join(cluster.addrs)],
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    time.sleep(SETTLE)
    stops = []
    for i in range(3):
        if how == "graceful":
            stops.append(round(cluster.terminate(i), 3))
        else:
            cluster.kill9(i)
        cluster.start(i)
        wait_caught_up(cluster, topic)
        time.sleep(SETTLE)
    out, _ = bench.communicate(timeout=duration + 60)
    s = json.loads(out.strip().splitlines()[-1])
    return {"case": how, "errors": s["errors"], "max_ack_gap_ms": s["max_ack_gap_ms"],
            "p99_ms": s["p99_ms"], "max_ms": s["max_ms"], "records_per_sec": round(s["records_per_sec"]),
            "stop_s": stops}


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rounds", type=int, default=2, help="rounds per way of stopping")
    ap.add_argument("--rate", type=int, default=2000, help="records per second (1 KiB each)")
    ap.add_argument("--port", type=int, default=19292)
    a = ap.parse_args()
    if not os.path.exists(BIN):
        raise SystemExit(f"{BIN} is missing: cargo build --release -p tidemark-cli")
    root = tempfile.mkdtemp(prefix="tidemark-rolling-")
    cluster = Cluster(root, a.port, [])
    rows = []
    try:
        cluster.start_all()
        time.sleep(2)
        topic = "roll"
        cluster.cli("topic", "create", topic, "-p", "3", "-r", "3")
        for r in range(a.rounds):
            for how in ("graceful", "kill9"):
                row = dict(rolling_round(cluster, topic, how, a.rate), round=r + 1)
                print(json.dumps(row), flush=True)
                rows.append(row)
    finally:
        cluster.stop_all()
        shutil.rmtree(root, ignore_errors=True)
    log(f"{'round':>5} {'stop':>9} {'errors':>6} {'max ack gap ms':>14} {'p99 ms':>8} {'max ms':>8}")
    for row in rows:
        log(f"{row['round']:>5} {row['case']:>9} {row['errors']:>6} {row['max_ack_gap_ms']:>14.1f} "
            f"{row['p99_ms']:>8.2f} {row['max_ms']:>8.1f}")


if __name__ == "__main__":
    main()
