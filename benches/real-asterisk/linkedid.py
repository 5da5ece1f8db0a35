#!/usr/bin/env python3
"""Asterisk's linkedid on recordings, on a real Asterisk (issue 34).

With `channelvars = CHANNEL(linkedid)` in ari.conf, places N recorded calls into a transfer flow
whose agent is `Local/201@agents` and checks that each recording's `linkedid` in the library is
the uniqueid of the channel that began the call (the caller's Local `;1` half, which the
originate answers with), the value Asterisk's CDR and CEL records carry, and that the list finds
each recording by it; and that each recording's `callee_channel` is the uniqueid of an agent
channel Asterisk showed during the calls (`Local/201@agents-...;1`, which the app originated).

Usage: linkedid.py --bin target/release/ari-recorder --recordings DIR [--calls 5]
"""
import argparse
import os
import sqlite3
import subprocess
import tempfile
import time

import requests

from cpu_per_call import FLOW
from restart import SETTINGS


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--bin", required=True)
    p.add_argument("--recordings", required=True)
    p.add_argument("--ari", default="http://127.0.0.1:8088")
    p.add_argument("--user", default="recorder")
    p.add_argument("--password", default="recorder-secret")
    p.add_argument("--calls", type=int, default=5)
    args = p.parse_args()
    work = tempfile.mkdtemp(prefix="linkedid-")
    os.makedirs(os.path.join(work, "dialplans"))
    with open(os.path.join(work, "dialplans", "desk.toml"), "w") as f:
        f.write(FLOW)
    with open(os.path.join(work, "dialplans", "settings.toml"), "w") as f:
        f.write(SETTINGS)
    env = dict(os.environ, ARI_URL=args.ari, ARI_USERNAME=args.user, ARI_PASSWORD=args.password,
               RECORDINGS_DIR=args.recordings, DATABASE_URL=f"sqlite://{work}/library.db?mode=rwc",
               DIALPLANS_DIR=os.path.join(work, "dialplans"), CACHE_DIR=os.path.join(work, "cache"),
               HTTP_ADDR="127.0.0.1:18231", TRANSCRIPTION_ENGINE="off", RUST_LOG="warn")
    log = open(os.path.join(work, "serve.log"), "w")
    proc = subprocess.Popen([args.bin, "serve"], env=env, stdout=log, stderr=log)
    s = requests.Session()
    s.auth = (args.user, args.password)
    for _ in range(100):
        apps = s.get(f"{args.ari}/ari/applications").json()
        if any(a["name"] == "recorder" for a in apps):
            break
        time.sleep(0.1)
    began = {}
    for i in range(args.calls):
        answer = s.post(f"{args.ari}/ari/channels", params={
            "endpoint": "Local/7020@inbound", "context": "callers", "extension": "talk",
            "priority": 1, "callerId": f"Linked {i} <55520{i:02d}>"}).json()
        began[f"55520{i:02d}"] = answer["id"]
    agents = set()
    for _ in range(40):
        for channel in s.get(f"{args.ari}/ari/channels").json():
            if channel["name"].startswith("Local/201@agents") and channel["name"].endswith(";1"):
                agents.add(channel["id"])
        time.sleep(0.25)
    db = os.path.join(work, "library.db")
    deadline = time.time() + 120
    rows = []
    while time.time() < deadline:
        try:
            con = sqlite3.connect(db)
            rows = con.execute("SELECT caller_number, linkedid, call_id, callee_channel FROM recordings "
                               "WHERE status = 'ready'").fetchall()
            con.close()
        except sqlite3.OperationalError:
            rows = []
        if len(rows) >= args.calls:
            break
        time.sleep(1)
    proc.terminate()
    proc.wait(timeout=30)
    matched = sum(1 for number, linkedid, _, _ in rows if began.get(number) == linkedid)
    agent = sum(1 for _, _, _, callee in rows if callee in agents)
    print("| recorded calls | recordings ready | linkedid = the originating channel's uniqueid | linkedid differs from call_id | callee_channel = an agent channel's uniqueid |")
    print(f"| {args.calls} | {len(rows)} | {matched} | {sum(1 for _, l, c, _ in rows if l and l != c)} | {agent} |")
    for number, linkedid, call_id, callee in rows:
        print(f"  {number}: linkedid {linkedid} (began {began.get(number)}), call_id {call_id}, callee_channel {callee}")


if __name__ == "__main__":
    main()
