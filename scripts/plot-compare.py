#!/usr/bin/env python3
"""Draws scripts/compare-nats.sh output as an SVG bar chart (standard library only).

Usage: scripts/compare-nats.sh 10 2 | tee out.txt
       python3 scripts/plot-compare.py out.txt > docs/perf-vs-nats.svg

One panel per issue-6 workload; each bar is one round of one system, so the rounds'
spread stays visible instead of being averaged away.
"""
import json
import sys

# (panel title, metric, NATS case, Tidemark case, unit)
PANELS = [
    ("produce, saturating", "records_per_sec", "produce", "produce_idempotent", "k records/s"),
    ("consume, 4 members", "records_per_sec", "consume_4", "consume_group_4", "k records/s"),
    ("ack p99 at 2000/s", "p99_ms", "produce_rate2000", "produce_rate2000", "ms (lower is better)"),
    ("publish-to-receive p99 at 2000/s", "p99_ms", "e2e_rate2000", "e2e_rate2000", "ms (lower is better)"),
]
COLORS = {"nats": "#8c8c8c", "tidemark": "#1f6fb4"}


def load(path):
    runs = {}
    for line in open(path):
        system, case, blob = line.split(" ", 2)
        runs.setdefault((system, case), []).append(json.loads(blob))
    return runs


def panel(x0, title, metric, unit, bars):
    """bars: [(system, value)]; returns SVG elements for a 220x240 panel at x0."""
    top = max(v for _, v in bars) or 1.0
    scale = 1000.0 if metric == "records_per_sec" else 1.0
    out = [f'<text x="{x0 + 110}" y="20" text-anchor="middle" font-weight="bold">{title}</text>',
           f'<text x="{x0 + 110}" y="38" text-anchor="middle" font-size="11">{unit}</text>']
    width = 180 / len(bars)
    for i, (system, value) in enumerate(bars):
        h = 150 * value / top
        x = x0 + 20 + i * width
        out.append(f'<rect x="{x:.1f}" y="{220 - h:.1f}" width="{width - 6:.1f}" height="{h:.1f}" fill="{COLORS[system]}"/>')
        out.append(f'<text x="{x + (width - 6) / 2:.1f}" y="{214 - h:.1f}" text-anchor="middle" font-size="10">{value / scale:.1f}</text>')
    out.append(f'<line x1="{x0 + 15}" y1="220" x2="{x0 + 205}" y2="220" stroke="black"/>')
    return out


def main():
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    runs = load(sys.argv[1])
    body = []
    for i, (title, metric, nats_case, tm_case, unit) in enumerate(PANELS):
        bars = [("nats", r[metric]) for r in runs.get(("nats", nats_case), [])]
        bars += [("tidemark", r[metric]) for r in runs.get(("tidemark", tm_case), [])]
        if not bars:
            sys.exit(f"no runs of {nats_case}/{tm_case} in {sys.argv[1]}")
        body += panel(i * 230, title, metric, unit, bars)
    legend = [f'<rect x="10" y="236" width="10" height="10" fill="{COLORS["nats"]}"/>',
              '<text x="24" y="245" font-size="11">NATS JetStream 2.9 (R3)</text>',
              f'<rect x="190" y="236" width="10" height="10" fill="{COLORS["tidemark"]}"/>',
              '<text x="204" y="245" font-size="11">Tidemark (RF 3, fsync before ack); one bar per round</text>']
    print('<svg xmlns="http://www.w3.org/2000/svg" width="920" height="255" font-family="sans-serif" font-size="12">')
    print('<rect width="100%" height="100%" fill="white"/>')
    print("\n".join(body + legend))
    print("</svg>")


if __name__ == "__main__":
    main()
