#!/usr/bin/env python3
"""The recordings disk fills up under recorded calls, on a real Asterisk (issue 30, item 5).

Mounts a small tmpfs on the recordings folder Asterisk writes (root needed; the folder's own
files are hidden meanwhile and back when it is unmounted), fills it to within a few seconds of
audio, places N bridged, recorded calls (the `bridged` phase of restart.py: the agent talks
about 61 s), one more call once the disk is full, frees the disk 15 s in, and reports:

- each call's recordings (segments) with status, reason and length, from the library,
- whether every call went on to its end (the callers' channels lived on),
- what `/readyz` said while the disk was full and after, and the disk metrics.

Usage: disk_full.py --bin target/release/ari-recorder --recordings /tmp/ast/spool/recording
                    [--calls 3] [--size 8388608] [--leave 131072]
"""
import os
import sqlite3
import subprocess
import tempfile
import time

import requests

import restart


METRICS_TOKEN = "disk-full-bench-metrics-token-0123456789"


def metrics(base):
    if not base:
        return ""
    return requests.get(base + "/metrics", timeout=2,
                        headers={"Authorization": "Bearer " + METRICS_TOKEN}).text


def readyz(base):
    try:
        return requests.get(base + "/readyz", timeout=2).json()
    except requests.RequestException as e:
        return {"error": str(e)}


def fill(folder, leave):
    st = os.statvfs(folder)
    take = max(0, st.f_bavail * st.f_frsize - leave)
    with open(os.path.join(folder, "filler"), "wb") as f:
        chunk = b"\0" * 65536
        while take > 0:
            n = min(take, len(chunk))
            f.write(chunk[:n])
            take -= n


def main():
    p = restart.bench_arguments()
    p.add_argument("--calls", type=int, default=3)
    p.add_argument("--size", type=int, default=8 << 20, help="bytes of the tmpfs")
    p.add_argument("--leave", type=int, default=128 << 10, help="bytes left free by the filler")
    args = p.parse_args()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=%d,mode=0777" % args.size, "tmpfs",
                    args.recordings], check=True)
    try:
        run(args)
    finally:
        subprocess.run(["umount", "-l", args.recordings], check=False)


def run(args):
    flow = restart.PHASES["bridged"][0]
    work = tempfile.mkdtemp(prefix="disk-full-")
    os.makedirs(os.path.join(work, "dialplans"))
    with open(os.path.join(work, "dialplans", "phase.toml"), "w") as f:
        f.write(flow)
    with open(os.path.join(work, "dialplans", "settings.toml"), "w") as f:
        f.write(restart.SETTINGS)
    log = open(os.path.join(work, "serve.log"), "w")
    os.environ["DISK_RESERVE_BYTES"] = "65536"
    os.environ["DISK_CHECK_SECONDS"] = "1"
    os.environ["METRICS_TOKEN"] = METRICS_TOKEN
    serve = restart.start_serve(args, work, log)
    base = None
    for _ in range(100):
        with open(log.name) as f:
            for line in f:
                if "ari-recorder started" in line and "http=" in line:
                    base = "http://" + line.split("http=")[1].split()[0]
        if base:
            break
        time.sleep(0.1)
    s = requests.Session()
    s.auth = (args.user, args.password)
    fill(args.recordings, args.leave)

    def place(i):
        s.post(args.ari + "/ari/channels", params={
            "endpoint": "Local/7007@inbound", "context": "callers", "extension": "long",
            "priority": 1, "callerId": "Disk %d <55577%02d>" % (i, i), "timeout": 30,
        }).raise_for_status()

    started = time.time()
    for i in range(args.calls):
        place(i)
    time.sleep(8)
    place(args.calls)  # arrives with the disk full: nothing of it reaches the disk
    time.sleep(5)
    while_full = readyz(base)
    metrics_full = metrics(base)
    time.sleep(2)
    os.remove(os.path.join(args.recordings, "filler"))
    freed = time.time() - started
    # Every call ends by itself (the agent hangs up); wait for the channels to go.
    deadline = time.time() + 120
    while time.time() < deadline:
        chans = s.get(args.ari + "/ari/channels").json()
        if not chans:
            break
        time.sleep(1)
    ended = time.time() - started
    time.sleep(5)
    after = readyz(base)
    metrics_after = metrics(base)
    serve.terminate()
    serve.wait()
    db = sqlite3.connect(os.path.join(work, "library.db"))
    rows = db.execute(
        "SELECT c.caller_number, r.name, r.status, r.reason, r.duration_ms, c.started_at_ms "
        "FROM recordings r JOIN call_recordings c ON c.recording_name = r.name "
        "ORDER BY c.caller_number, c.started_at_ms").fetchall()
    print("disk freed %.1f s after the first calls; every channel gone %.1f s in" % (freed, ended))
    print("/readyz while full: status=%s recordings=%s" % (
        while_full.get("status"), (while_full.get("disk_space") or {}).get("recordings")))
    print("/readyz after:      status=%s recordings=%s" % (
        after.get("status"), (after.get("disk_space") or {}).get("recordings")))
    for line in (metrics_full + metrics_after).splitlines():
        if line.startswith(("disk_full{folder=\"recordings\"}", "recordings_cut_by_full_disk_total",
                            "recordings_resumed_after_full_disk_total")):
            print("  " + line)
    print("%-12s %-8s %8s  %s" % ("caller", "status", "seconds", "reason"))
    for caller, _name, status, reason, duration, _at in rows:
        print("%-12s %-8s %8.1f  %s" % (caller, status, (duration or 0) / 1000, (reason or "")[:70]))
    print("work folder:", work)


if __name__ == "__main__":
    main()
