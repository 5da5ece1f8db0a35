#!/usr/bin/env python3
"""CPU a recorded call costs ari-recorder on a real Asterisk, beside Asterisk's own (issue 30).

Places N calls at once into a recorded transfer flow whose agent is `Local/201@agents` (answers,
plays a 16 s prompt, hangs up), as the issue's measurement did, and reads from /proc the CPU
time ari-recorder and Asterisk spent from the first call until every channel is gone, and the
events ari-recorder received (`ari_events_total`). Runs with the event filter on and off
(`ARI_EVENT_FILTER`), alternately, `--runs` times each.

Usage: cpu_per_call.py --bin target/release/ari-recorder --recordings DIR --asterisk-pid PID
                       [--calls 100] [--runs 2]
"""
import argparse
import os
import re
import subprocess
import tempfile
import time

import requests

from restart import SETTINGS

TICKS = os.sysconf("SC_CLK_TCK")
FLOW = """
[flow]
numbers = ["7020"]
start = "desk"
[nodes.desk]
type = "transfer"
target = "Local/201@agents"
ring_timeout = 20
record_call = true
"""

TOKEN = "cpu-per-call-metrics-token-0123456789"


def cpu_seconds(pid):
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS


def run(args, event_filter):
    work = tempfile.mkdtemp(prefix="cpu-per-call-")
    os.makedirs(os.path.join(work, "dialplans"))
    with open(os.path.join(work, "dialplans", "desk.toml"), "w") as f:
        f.write(FLOW)
    with open(os.path.join(work, "dialplans", "settings.toml"), "w") as f:
        f.write(SETTINGS)
    env = dict(os.environ, ARI_URL=args.ari, ARI_USERNAME=args.user, ARI_PASSWORD=args.password,
               RECORDINGS_DIR=args.recordings, DATABASE_URL=f"sqlite://{work}/library.db?mode=rwc",
               DIALPLANS_DIR=os.path.join(work, "dialplans"), CACHE_DIR=os.path.join(work, "cache"),
               HTTP_ADDR="127.0.0.1:18230", METRICS_TOKEN=TOKEN, RUST_LOG="warn",
               ARI_EVENT_FILTER="true" if event_filter else "false")
    log = open(os.path.join(work, "serve.log"), "w")
    proc = subprocess.Popen([args.bin, "serve"], env=env, stdout=log, stderr=log)
    s = requests.Session()
    s.auth = (args.user, args.password)
    for _ in range(100):
        try:
            m = requests.get("http://127.0.0.1:18230/metrics",
                             headers={"authorization": "Bearer " + TOKEN}, timeout=1).text
            if "ari_connected 1" in m:
                break
        except requests.RequestException:
            pass
        time.sleep(0.1)
    # A new library indexes the recordings folder first (every file read and hashed: a folder
    # of earlier runs' recordings costs seconds of CPU): measure the calls once that is done,
    # when the service has been at rest (under 20 ms of CPU, no file read) for three seconds.
    def file_reads():
        m = requests.get("http://127.0.0.1:18230/metrics",
                         headers={"authorization": "Bearer " + TOKEN}, timeout=5).text
        found = re.search(r'^indexer_file_reads_total (\d+)$', m, re.M)
        return int(found.group(1)) if found else -1

    settled = time.time()
    while time.time() - settled < 300:
        before, reads = cpu_seconds(proc.pid), file_reads()
        time.sleep(3)
        if cpu_seconds(proc.pid) - before < 0.02 and file_reads() == reads:
            break
    ours0, ast0 = cpu_seconds(proc.pid), cpu_seconds(args.asterisk_pid)
    for i in range(args.calls):
        s.post(args.ari + "/ari/channels", params={
            "endpoint": "Local/7020@inbound", "context": "callers", "extension": "talk",
            "priority": 1, "callerId": f"Load {i} <5557{i:03d}>", "timeout": 60}).raise_for_status()
    deadline = time.time() + 300
    while time.time() < deadline:
        if not s.get(args.ari + "/ari/channels").json():
            break
        time.sleep(0.5)
    # The recordings' ends follow the calls' (each bridge is destroyed after its call): wait
    # for them, up to 30 s, before reading.
    for _ in range(300):
        m = requests.get("http://127.0.0.1:18230/metrics",
                         headers={"authorization": "Bearer " + TOKEN}).text
        found = re.search(r'^recordings_total\{outcome="finished"\} (\d+)$', m, re.M)
        if found and int(found.group(1)) >= args.calls:
            break
        time.sleep(0.1)
    ours = cpu_seconds(proc.pid) - ours0
    ast = cpu_seconds(args.asterisk_pid) - ast0
    m = requests.get("http://127.0.0.1:18230/metrics",
                     headers={"authorization": "Bearer " + TOKEN}).text
    events = sum(int(v) for v in re.findall(r'^ari_events_total\{[^}]*\} (\d+)$', m, re.M))
    found = re.search(r'^recordings_total\{outcome="finished"\} (\d+)$', m, re.M)
    finished = int(found.group(1)) if found else 0
    proc.terminate()
    proc.wait(timeout=30)
    return ours, ast, events, finished


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--bin", required=True)
    p.add_argument("--recordings", required=True)
    p.add_argument("--asterisk-pid", type=int, required=True)
    p.add_argument("--ari", default="http://127.0.0.1:8088")
    p.add_argument("--user", default="recorder")
    p.add_argument("--password", default="recorder-secret")
    p.add_argument("--calls", type=int, default=100)
    p.add_argument("--runs", type=int, default=2)
    args = p.parse_args()
    print("| event filter | calls | recordings finished | events a call | ari-recorder CPU a call | Asterisk CPU a call |")
    print("|---|---|---|---|---|---|")
    for _ in range(args.runs):
        for event_filter in (False, True):
            ours, ast, events, finished = run(args, event_filter)
            print(f"| {'on' if event_filter else 'off'} | {args.calls} | {finished} | "
                  f"{events / args.calls:.1f} | {ours * 1000 / args.calls:.2f} ms | "
                  f"{ast * 1000 / args.calls:.0f} ms |", flush=True)


if __name__ == "__main__":
    main()
