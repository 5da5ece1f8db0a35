#!/usr/bin/env python3
"""Whole-call download links (issue 34): what the first link costs, and what each later one does.

Runs the release binary's `serve` with an archive on s3s-fs (loopback, as in the tests) over one
call of two segments (`--minutes` each, 8 kHz 16-bit WAV). Measured, per run:

- first link: `GET /api/calls/{id}/download-url` on a new timeline: the call assembled, sent to
  the bucket, read back and checked, then a presigned URL (wall and service CPU);
- later link: the same request once the copy is stored (a lookup and a signature);
- fetch: the presigned URL read to the end (the bucket serves it, not the service).

Peer, the same work by hand: `sox` joins the two files into one WAV, then boto3 `upload_file` +
`download_file` of it (send, then read back), then `generate_presigned_url`.

Usage: cargo build --release && python3 benches/call_links.py [--minutes 10] [--runs 3]
(S3S_FS_BIN or target/tools/bin/s3s-fs, which scripts/test.sh builds; boto3 and sox as
scripts/bench.sh installs them.)
"""
import argparse
import json
import os
import socket
import sqlite3
import subprocess
import tempfile
import time
import urllib.request

import importlib.util

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
spec = importlib.util.spec_from_file_location("webhooks_bench", os.path.join(HERE, "webhooks.py"))
bench = importlib.util.module_from_spec(spec)
spec.loader.exec_module(bench)
spec = importlib.util.spec_from_file_location("zip_bench", os.path.join(HERE, "zip_export.py"))
zip_bench = importlib.util.module_from_spec(spec)
spec.loader.exec_module(zip_bench)

ACCESS, SECRET, BUCKET = "bench-key", "bench-secret-0123456789abcdef", "recordings"


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def s3s_fs(root):
    binary = os.environ.get("S3S_FS_BIN", os.path.join(ROOT, "target/tools/bin/s3s-fs"))
    os.makedirs(os.path.join(root, BUCKET), exist_ok=True)
    port = free_port()
    proc = subprocess.Popen([binary, "--host", "127.0.0.1", "--port", str(port),
                             "--access-key", ACCESS, "--secret-key", SECRET, root],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    bench.wait_for("s3s-fs", lambda: socket.socket().connect_ex(("127.0.0.1", port)) == 0)
    return proc, f"http://127.0.0.1:{port}"


def timed(pid, action):
    cpu, began = bench.cpu_seconds(pid), time.perf_counter()
    result = action()
    return result, (time.perf_counter() - began) * 1000, bench.cpu_seconds(pid) - cpu


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--bin", default=os.path.join(ROOT, "target/release/ari-recorder"))
    p.add_argument("--minutes", type=float, default=10)
    p.add_argument("--runs", type=int, default=3)
    args = p.parse_args()
    import boto3
    with tempfile.TemporaryDirectory() as data:
        store, endpoint = s3s_fs(os.path.join(data, "s3"))
        svc = bench.Service(args.bin, data)
        svc.env.update(ARCHIVE_BUCKET=BUCKET, ARCHIVE_ENDPOINT=endpoint, ARCHIVE_ACCESS_KEY_ID=ACCESS,
                       ARCHIVE_SECRET_ACCESS_KEY=SECRET, ARCHIVE_PRESIGNED_LINKS="true",
                       GRANTS_PER_MINUTE="100000")
        folder = os.path.join(data, "recordings")
        old = time.time() - 3600
        segments = []
        for name in ("first", "second"):
            path = os.path.join(folder, f"{name}.wav")
            with open(path, "wb") as f:
                f.write(zip_bench.tone(args.minutes * 60))
            os.utime(path, (old, old))
            segments.append(path)
        svc.start()
        token = svc.token()
        bench.wait_for("both ready", lambda: svc.ready_rows() >= 2)
        s3 = boto3.client("s3", endpoint_url=endpoint, aws_access_key_id=ACCESS,
                          aws_secret_access_key=SECRET, region_name="us-east-1")
        call_mb = 2 * os.path.getsize(segments[0]) / 1e6
        print(f"one call of two segments of {args.minutes:.0f} min ({call_mb:.0f} MB assembled)")
        print("| run | first link (assemble, store, check, presign) | later link | fetch of the presigned URL "
              "| peer: sox + upload_file + download_file + presign |")
        print("|---|---|---|---|---|")
        for run in range(args.runs):
            # A new timeline each run: the second segment starts a little later.
            db = sqlite3.connect(os.path.join(data, "library.db"))
            (start,) = db.execute("SELECT started_at_ms FROM recordings WHERE name = 'first'").fetchone()
            db.execute("UPDATE recordings SET consent = 'granted', call_id = 'bench-call', "
                       "started_at_ms = ? + CASE WHEN name = 'second' THEN ? ELSE 0 END",
                       (start, int(args.minutes * 60_000) + run))
            db.execute("INSERT INTO tenants (name, staff_playback, download_entitlement) VALUES ('default', 1, 1) "
                       "ON CONFLICT (name) DO UPDATE SET download_entitlement = 1")
            db.commit()
            db.close()

            def link():
                request = urllib.request.Request(
                    f"http://127.0.0.1:{svc.port}/api/calls/bench-call/download-url",
                    headers={"authorization": f"Bearer {token}"})
                answer = json.loads(urllib.request.urlopen(request).read())
                assert answer["stored"] and answer["presigned"], answer
                return answer["url"]
            url, first_ms, first_cpu = timed(svc.proc.pid, link)
            later = [timed(svc.proc.pid, link) for _ in range(20)]
            later_ms = sorted(ms for _, ms, _ in later)[len(later) // 2]
            began = time.perf_counter()
            size = len(urllib.request.urlopen(url).read())
            fetch_ms = (time.perf_counter() - began) * 1000
            assert size > call_mb * 1e6 * 0.9, size

            joined = os.path.join(data, "joined.wav")
            began = time.perf_counter()
            subprocess.run(["sox", *segments, joined], check=True)
            s3.upload_file(joined, BUCKET, "peer/joined.wav")
            s3.download_file(BUCKET, "peer/joined.wav", os.path.join(data, "back.wav"))
            s3.generate_presigned_url("get_object", Params={"Bucket": BUCKET, "Key": "peer/joined.wav"},
                                      ExpiresIn=3600)
            peer_ms = (time.perf_counter() - began) * 1000
            print(f"| {run + 1} | {first_ms:.0f} ms, {first_cpu:.2f} s CPU | {later_ms:.1f} ms (p50 of 20) "
                  f"| {fetch_ms:.0f} ms | {peer_ms:.0f} ms |")
        svc.stop()
        store.terminate()
        store.wait()


if __name__ == "__main__":
    main()
