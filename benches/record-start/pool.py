#!/usr/bin/env python3
"""Pools record-start latencies of several runs against a real Asterisk.

Each file holds one run of 60 calls, as the latency meter wrote it: per bridge, Asterisk's
timestamp of the bridge getting its second party and of the bridge's RecordingStarted
(seconds). One run's p99 is its slowest call or nearly, so it moves with whichever stall
Asterisk happened to have; pooled over runs it compares the two apps on the same stalls.

Usage: pool.py LABEL=FILE[,FILE...] ...
  e.g. pool.py ari-recorder=raw-c1.json,raw-c2.json peer=raw-r1.json,raw-r2.json
"""
import json
import sys


def latencies(files):
    out = []
    for path in files:
        with open(path) as f:
            runs = json.load(f)
        out += [(started - full) * 1000 for full, started in runs.values()]
    return sorted(out)


def quantile(xs, p):
    return xs[min(len(xs) - 1, int(p * len(xs)))]


for arg in sys.argv[1:]:
    label, _, files = arg.partition("=")
    xs = latencies(files.split(","))
    print(
        f"{label}: {len(xs)} bridges, bridge full -> RecordingStarted "
        f"p50 {quantile(xs, .5):.0f} ms, p90 {quantile(xs, .9):.0f} ms, "
        f"p99 {quantile(xs, .99):.0f} ms, max {xs[-1]:.0f} ms"
    )
