#!/usr/bin/env python3
"""Asterisk restarted under recorded calls, on a real Asterisk (issue 30, item 6).

Places N bridged, recorded calls (the `bridged` phase of restart.py), restarts Asterisk 8 s in
(`core restart now`, through the `asterisk` command given), waits for ARI and for ari-recorder
to reconnect, places two more calls, and reports: how long ari-recorder took to reconnect, the
cut recordings and the reason the library gives them, and whether the calls after the restart
were recorded.

Usage: asterisk_restart.py --bin target/release/ari-recorder --recordings DIR
                           --asterisk "asterisk -C /tmp/ast/etc/asterisk.conf" [--calls 5]
"""
import argparse
import os
import sqlite3
import subprocess
import tempfile
import time

import requests

import restart


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--bin", required=True)
    p.add_argument("--recordings", required=True)
    p.add_argument("--asterisk", required=True, help="the asterisk command with its -C config")
    p.add_argument("--ari", default="http://127.0.0.1:8088")
    p.add_argument("--user", default="recorder")
    p.add_argument("--password", default="recorder-secret")
    p.add_argument("--calls", type=int, default=5)
    args = p.parse_args()
    flow = restart.PHASES["bridged"][0]
    work = tempfile.mkdtemp(prefix="asterisk-restart-")
    os.makedirs(os.path.join(work, "dialplans"))
    with open(os.path.join(work, "dialplans", "phase.toml"), "w") as f:
        f.write(flow)
    with open(os.path.join(work, "dialplans", "settings.toml"), "w") as f:
        f.write(restart.SETTINGS)
    log = open(os.path.join(work, "serve.log"), "w")
    s = requests.Session()
    s.auth = (args.user, args.password)
    serve = restart.start_serve(args, work, log)

    def place(first, n):
        for i in range(first, first + n):
            s.post(args.ari + "/ari/channels", params={
                "endpoint": "Local/7007@inbound", "context": "callers", "extension": "talk",
                "priority": 1, "callerId": "Bench %d <55588%02d>" % (i, i), "timeout": 30,
            }).raise_for_status()

    place(0, args.calls)
    time.sleep(8)
    restarted = time.time()
    subprocess.run(args.asterisk.split() + ["-rx", "core restart now"], check=False)
    # ARI back, then ari-recorder's websocket back (its log says so).
    while True:
        try:
            if s.get(args.ari + "/ari/asterisk/info", timeout=1).status_code == 200:
                break
        except requests.RequestException:
            pass
        time.sleep(0.1)
    ari_back = time.time() - restarted
    reconnected = None
    while time.time() - restarted < 60:
        log.flush()
        with open(log.name) as f:
            if f.read().count("ARI websocket connected") >= 2:
                reconnected = time.time() - restarted
                break
        time.sleep(0.1)
    time.sleep(3)
    place(args.calls, 2)
    time.sleep(40)
    db = sqlite3.connect(os.path.join(work, "library.db"))
    rows = db.execute(
        "SELECT r.status, r.reason, r.duration_ms, c.caller_number FROM recordings r "
        "JOIN call_recordings c ON c.recording_name = r.name ORDER BY c.caller_number").fetchall()
    db.close()
    serve.terminate()
    serve.wait(timeout=30)
    print(f"ARI answered again {ari_back:.1f} s after `core restart now`; ari-recorder "
          f"reconnected {reconnected:.1f} s after it" if reconnected else "ari-recorder did not reconnect")
    print("| call | status | seconds | reason |")
    print("|---|---|---|---|")
    for status, reason, duration_ms, number in rows:
        print(f"| {number} | {status} | {(duration_ms or 0) / 1000:.1f} | {reason or ''} |")
    cut = sum(1 for r in rows if (r[1] or "").startswith("cut short"))
    after = sum(1 for r in rows[args.calls:] if r[0] == "ready" and not r[1])
    print(f"cut and said so: {cut} of {args.calls}; placed after the restart: {after} of 2 "
          "recorded, with no reason")


if __name__ == "__main__":
    main()
