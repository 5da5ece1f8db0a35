#!/usr/bin/env python3
"""The ZIP export's throughput (issue 34), beside Info-ZIP's `zip` on the same files.

Runs the release binary's `serve` on a temporary library of N final WAV recordings (8 kHz,
16-bit, `--seconds` each), then, alternately: `GET /api/recordings/export.zip?ids=<all>` read to
the end by this script (the service checks, audits, streams and hashes each file), and `zip -0`
(stored, as the export stores) and `zip` (deflate, its default) of the same files into a file.
Printed: MB a second and CPU seconds of each, per run; the archive is checked by `unzip -t`.

Usage: cargo build --release && python3 benches/zip_export.py [--files 200] [--seconds 60]
"""
import argparse
import os
import sqlite3
import struct
import subprocess
import tempfile
import time
import urllib.request

import importlib.util

HERE = os.path.dirname(os.path.abspath(__file__))
spec = importlib.util.spec_from_file_location("webhooks_bench", os.path.join(HERE, "webhooks.py"))
bench = importlib.util.module_from_spec(spec)
spec.loader.exec_module(bench)


def tone(seconds, rate=8000):
    # Speech-like enough not to compress to nothing: a varying tone.
    import math
    samples = b"".join(struct.pack("<h", int(6000 * math.sin(i * 0.05 + (i // 800) * 0.7)))
                       for i in range(int(seconds * rate)))
    return (b"RIFF" + struct.pack("<I", 36 + len(samples)) + b"WAVEfmt "
            + struct.pack("<IHHIIHH", 16, 1, 1, rate, rate * 2, 2, 16)
            + b"data" + struct.pack("<I", len(samples)) + samples)


def children_cpu():
    t = os.times()
    return t.children_user + t.children_system


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--bin", default=os.path.join(os.path.dirname(HERE), "target/release/ari-recorder"))
    p.add_argument("--files", type=int, default=200)
    p.add_argument("--seconds", type=float, default=60)
    p.add_argument("--runs", type=int, default=3)
    args = p.parse_args()
    with tempfile.TemporaryDirectory() as data:
        svc = bench.Service(args.bin, data)
        audio = tone(args.seconds)
        folder = os.path.join(data, "recordings")
        old = time.time() - 3600
        paths = []
        for i in range(args.files):
            path = os.path.join(folder, f"call-{i:05d}.wav")
            with open(path, "wb") as f:
                f.write(audio)
            os.utime(path, (old, old))
            paths.append(path)
        svc.start()
        token = svc.token()
        bench.wait_for("every file ready", lambda: svc.ready_rows() >= args.files)
        db = sqlite3.connect(os.path.join(data, "library.db"))
        db.execute("UPDATE recordings SET consent = 'granted'")
        db.execute("INSERT INTO tenants (name, staff_playback, download_entitlement) VALUES ('default', 1, 1) "
                   "ON CONFLICT (name) DO UPDATE SET download_entitlement = 1")
        db.commit()
        ids = [str(i) for (i,) in db.execute("SELECT id FROM recordings ORDER BY id")]
        db.close()
        total = len(audio) * args.files / 1e6
        print(f"{args.files} recordings of {args.seconds:.0f} s ({total:.0f} MB)")
        print("| run | ari-recorder export.zip | zip -0 (stored) | zip (deflate) |")
        print("|---|---|---|---|")
        url = f"http://127.0.0.1:{svc.port}/api/recordings/export.zip?ids={','.join(ids)}"
        for run in range(args.runs):
            cpu, began = bench.cpu_seconds(svc.proc.pid), time.perf_counter()
            request = urllib.request.Request(url, headers={"authorization": f"Bearer {token}"})
            out = os.path.join(data, "export.zip")
            with urllib.request.urlopen(request) as r, open(out, "wb") as f:
                while chunk := r.read(1 << 20):
                    f.write(chunk)
            ours = (time.perf_counter() - began, bench.cpu_seconds(svc.proc.pid) - cpu)
            checked = subprocess.run(["unzip", "-tq", out], capture_output=True, text=True)
            assert checked.returncode == 0, checked.stdout + checked.stderr
            figures = [ours]
            for level in (["-0"], []):
                target = os.path.join(data, "peer.zip")
                if os.path.exists(target):
                    os.remove(target)
                cpu, began = children_cpu(), time.perf_counter()
                subprocess.run(["zip", "-q", "-j", *level, target, *paths], check=True)
                figures.append((time.perf_counter() - began, children_cpu() - cpu))
            print(f"| {run + 1} | " + " | ".join(
                f"{total / wall:.0f} MB/s, {cpu_s:.2f} s CPU" for wall, cpu_s in figures) + " |")
        svc.stop()


if __name__ == "__main__":
    main()
