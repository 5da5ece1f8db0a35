#!/usr/bin/env python3
"""What a restart of ari-recorder costs the callers, phase by phase, on a real Asterisk.

For each phase of a call (greeting, consent question, queue wait, hunt group ringing, transfer
ringing, bridged and recorded mono and dual-channel, voicemail, recording paused) it places N
calls through Local channels, and in three runs: without a restart (the baseline), with
`serve` stopped by SIGTERM, and with it killed by SIGKILL, each time while the calls are in that
phase, then started again on the same database. It reports per run:

- calls whose caller was hung up before the end of its own script ("cut"),
- each recording's length beside the baseline's (shortest and median, seconds),
- prompts started again from the beginning for a caller who already heard them ("replayed"),
- what was left in Asterisk afterwards (channels, bridges).

The Asterisk runs benches/real-asterisk/extensions.conf (app "recorder"). ari-recorder is the
binary given with --bin. Needs `pip install requests websocket-client`.

Usage: restart.py --bin target/release/ari-recorder --recordings DIR [--ari URL] [--calls 10]
                  [--phases bridged,voicemail] [--signals TERM,KILL] [--json out.json]
"""
import argparse
import json
import os
import signal
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import wave

import requests
import websocket

AGENT = "Local/301@agents"  # answers at once, talks about 61 s
RINGING_AGENT = "Local/401@agents"  # rings 10 s, then answers

# phase: (flow TOML, caller script, seconds after the calls are placed to restart, what the
# calls must have reached by then)
PHASES = {
    "greeting": ("""
[flow]
numbers = ["7001"]
start = "greet"
[nodes.greet]
type = "play_audio"
media = ["sound:tt-monkeys"]
recording_notice = true
next = "desk"
[nodes.desk]
type = "transfer"
target = "%s"
record_call = true
""" % AGENT, "long", 5.0),
    "consent": ("""
[flow]
numbers = ["7002"]
start = "ask"
[nodes.ask]
type = "consent"
media = ["sound:tt-monkeys"]
grant_key = "1"
decline_key = "2"
timeout = 20
on_timeout = "declined"
next = "desk"
[nodes.desk]
type = "transfer"
target = "%s"
record_call = true
""" % AGENT, "consent", 3.0),
    "queue": ("""
[flow]
numbers = ["7003"]
start = "q"
[nodes.q]
type = "queue"
agents = [%s]
strategy = "round_robin"
ring_timeout = 30
max_wait = 60
moh_class = "default"
record_call = true
""" % ", ".join('"Local/4%02d@agents"' % i for i in range(1, 11)), "long", 5.0),
    "hunt-simultaneous": ("""
[flow]
numbers = ["7004"]
start = "team"
[nodes.team]
type = "hunt_group"
mode = "simultaneous"
members = ["Local/noanswer@agents", "%s"]
ring_seconds = 30
record_call = true
""" % RINGING_AGENT, "long", 5.0),
    "hunt-sequential": ("""
[flow]
numbers = ["7005"]
start = "team"
[nodes.team]
type = "hunt_group"
mode = "sequential"
members = ["Local/noanswer@agents", "%s"]
ring_seconds = 8
record_call = true
""" % AGENT, "long", 4.0),
    "transfer-ringing": ("""
[flow]
numbers = ["7006"]
start = "desk"
[nodes.desk]
type = "transfer"
target = "%s"
ring_timeout = 30
record_call = true
""" % RINGING_AGENT, "long", 5.0),
    "bridged": ("""
[flow]
numbers = ["7007"]
start = "desk"
[nodes.desk]
type = "transfer"
target = "%s"
record_call = true
""" % AGENT, "talk", 8.0),
    "bridged-dual": ("""
[flow]
numbers = ["7008"]
start = "desk"
[nodes.desk]
type = "transfer"
target = "%s"
record_call = true
channels = "dual"
""" % AGENT, "talk", 8.0),
    "voicemail": ("""
[flow]
numbers = ["7009"]
start = "vm"
[nodes.vm]
type = "voicemail"
mailbox = "general"
greeting = "sound:vm-intro"
max_duration = 120
max_silence = 10
""", "talk", 12.0),
    "paused": ("""
[flow]
numbers = ["7010"]
start = "desk"
pause_code = "*1"
resume_code = "*2"
[nodes.desk]
type = "transfer"
target = "%s"
record_call = true
""" % AGENT, "pauses", 6.0),
}

SETTINGS = """
recording_enabled = true
record_inbound_calls = false
record_outbound_calls = false
record_from_dial = false
redaction_mode = "mute"
default_compliance = "permitted"
recording_announcement = []
recording_separation = "per_call"
"""


class Observer:
    """Every event Asterisk raises, heard through a second app subscribed to everything."""

    def __init__(self, ari, auth):
        self.events = []
        self.lock = threading.Lock()
        url = ari.replace("http", "ws", 1) + "/ari/events?app=restart-observer&subscribeAll=true"
        self.ws = websocket.WebSocketApp(url, header=[_basic(auth)], on_message=self._on)
        self.thread = threading.Thread(target=self.ws.run_forever, daemon=True)
        self.thread.start()
        time.sleep(0.5)

    def _on(self, _ws, message):
        with self.lock:
            self.events.append((time.time(), json.loads(message)))

    def snapshot(self):
        with self.lock:
            return list(self.events)

    def close(self):
        self.ws.close()


def _basic(auth):
    import base64
    return "Authorization: Basic " + base64.b64encode(("%s:%s" % auth).encode()).decode()


def start_serve(args, work, log, database=None):
    env = dict(os.environ)
    env.update({
        "ARI_URL": args.ari,
        "ARI_USERNAME": args.user,
        "ARI_PASSWORD": args.password,
        "RECORDINGS_DIR": args.recordings,
        "DATABASE_URL": database or "sqlite://%s/library.db?mode=rwc" % work,
        "DIALPLANS_DIR": os.path.join(work, "dialplans"),
        "CACHE_DIR": os.path.join(work, "cache"),
        "HTTP_ADDR": "127.0.0.1:0",
        "TRANSCRIPTION_ENGINE": "off",
        "RUST_LOG": env.get("RUST_LOG", "info"),
    })
    proc = subprocess.Popen([args.bin, "serve"], env=env, stdout=log, stderr=log)
    deadline = time.time() + 20
    session = requests.Session()
    while time.time() < deadline:
        r = session.get(args.ari + "/ari/applications/recorder", auth=(args.user, args.password))
        if r.status_code == 200 and proc.poll() is None:
            # Registered: its websocket is up (an app with no socket and nothing left is a 404;
            # with calls left it stays listed, so also wait for the log line).
            log.flush()
            with open(log.name) as f:
                text = f.read()
            if text.count("ARI websocket connected") > getattr(log, "connects", 0):
                log.connects = text.count("ARI websocket connected")
                return proc
        time.sleep(0.1)
    raise RuntimeError("ari-recorder did not connect; see " + log.name)


def wav_seconds(path):
    try:
        with wave.open(path) as w:
            return w.getnframes() / w.getframerate()
    except Exception:
        size = os.path.getsize(path)
        return max(0, size - 44) / 16000


def run(args, phase, restart_signal):
    flow, caller, restart_at = PHASES[phase]
    work = tempfile.mkdtemp(prefix="restart-%s-" % phase)
    os.makedirs(os.path.join(work, "dialplans"))
    with open(os.path.join(work, "dialplans", "phase.toml"), "w") as f:
        f.write(flow)
    with open(os.path.join(work, "dialplans", "settings.toml"), "w") as f:
        f.write(SETTINGS)
    log = open(os.path.join(work, "serve.log"), "w")
    auth = (args.user, args.password)
    s = requests.Session()
    s.auth = auth
    observer = Observer(args.ari, auth)
    proc = start_serve(args, work, log)
    number = flow.split('numbers = ["')[1].split('"')[0]
    callers = {}
    began = {}
    for i in range(args.calls):
        cid = "55599%02d" % i
        r = s.post(args.ari + "/ari/channels", params={
            "endpoint": "Local/%s@inbound" % number, "context": "callers", "extension": caller,
            "priority": 1, "callerId": "Bench %d <%s>" % (i, cid), "timeout": 30})
        r.raise_for_status()
        callers[cid] = r.json()["name"].replace(";1", ";2")
        # The ;1 half began the call: its uniqueid is the call's linkedid (when ari.conf's
        # channelvars reports CHANNEL(linkedid)).
        began[cid] = r.json()["id"]
        time.sleep(args.spacing)
    time.sleep(restart_at)
    restarted = None
    if restart_signal:
        proc.send_signal(getattr(signal, "SIG" + restart_signal))
        proc.wait(timeout=30)
        restarted = time.time()
        proc = start_serve(args, work, log)
    # Until every caller's channel is gone (their scripts last at most about 62 s).
    deadline = time.time() + 150
    while time.time() < deadline:
        names = [c["name"] for c in s.get(args.ari + "/ari/channels").json()]
        if not any(n.startswith("Local/%s@inbound" % number) for n in names):
            break
        time.sleep(0.5)
    time.sleep(3)
    left_channels = [c["name"] for c in s.get(args.ari + "/ari/channels").json()]
    left_bridges = [b["id"] for b in s.get(args.ari + "/ari/bridges").json()
                    if b.get("creator") == "Stasis"]
    proc.send_signal(signal.SIGTERM)
    proc.wait(timeout=30)
    observer.close()
    events = observer.snapshot()
    # Per caller: how its channel ended, and which prompts it heard from their start.
    by_name = {}
    for at, e in events:
        ch = e.get("channel") or {}
        name = ch.get("name", "")
        if e["type"] == "ChannelDestroyed":
            by_name.setdefault(name, {})["destroyed"] = (at, e.get("cause"), e.get("cause_txt"))
        if e["type"] == "ChannelHangupRequest" and e.get("soft") is None and "cause" in e:
            by_name.setdefault(name, {}).setdefault("requests", []).append(e.get("cause"))
        if e["type"] == "PlaybackStarted":
            target = e["playback"]["target_uri"]
            by_name.setdefault(target, {}).setdefault("plays", []).append(e["playback"]["media_uri"])
    ids = {}
    for at, e in events:
        ch = e.get("channel") or {}
        if ch.get("name") in callers.values():
            ids[ch["name"]] = ch["id"]
    replayed = 0
    for name in callers.values():
        plays = by_name.get("channel:" + ids.get(name, "?"), {}).get("plays", [])
        replayed += len(plays) - len(set(plays))
    db = sqlite3.connect(os.path.join(work, "library.db"))
    rows = db.execute(
        "SELECT r.name, r.path, r.status, r.duration_ms, c.caller_number, c.node_type "
        "FROM recordings r JOIN call_recordings c ON c.recording_name = r.name "
        "WHERE r.status <> 'deleted'").fetchall()
    linked = sum(1 for number_, linkedid in db.execute(
        "SELECT caller_number, linkedid FROM recordings WHERE status = 'ready'")
        if linkedid and began.get(number_) == linkedid)
    lengths = {}
    for name, path, status, duration_ms, number_, node_type in rows:
        if (path or "").startswith(".channels/"):
            continue
        lengths.setdefault(number_, []).append(((duration_ms or 0) / 1000, status))
    db.close()
    return {
        "phase": phase,
        "signal": restart_signal or "none",
        "calls": len(callers),
        "recordings": sum(len(v) for v in lengths.values()),
        "lengths": sorted(max((l for l, _ in v), default=0) for v in lengths.values()),
        "not_ready": sum(1 for v in lengths.values() for _, st in v if st != "ready"),
        "replayed": replayed,
        "linked": linked,
        "left_channels": left_channels,
        "left_bridges": left_bridges,
        "log": log.name,
    }


def bench_arguments(description=None):
    """The arguments every real-Asterisk bench takes: the binary, Asterisk's recordings folder,
    ARI's URL and credentials (the kit's by default)."""
    p = argparse.ArgumentParser(description=description)
    p.add_argument("--bin", required=True)
    p.add_argument("--recordings", required=True)
    p.add_argument("--ari", default="http://127.0.0.1:8088")
    p.add_argument("--user", default="recorder")
    p.add_argument("--password", default="recorder-secret")
    return p


def main():
    p = bench_arguments()
    p.add_argument("--calls", type=int, default=10)
    p.add_argument("--spacing", type=float, default=0.1, help="seconds between two calls")
    p.add_argument("--phases", default=",".join(PHASES))
    p.add_argument("--signals", default="none,TERM,KILL")
    p.add_argument("--json")
    args = p.parse_args()
    results = []
    print("| phase | restart | recordings | shortest s | median s | not ready | prompts replayed | left in Asterisk | with their call's linkedid |")
    print("|---|---|---|---|---|---|---|---|---|")
    for phase in args.phases.split(","):
        for sig in args.signals.split(","):
            r = run(args, phase, None if sig == "none" else sig)
            results.append(r)
            lengths = r["lengths"]
            print("| %s | %s | %d/%d | %.1f | %.1f | %d | %d | %d channels, %d bridges | %d |" % (
                phase, r["signal"], r["recordings"], r["calls"],
                min(lengths) if lengths else 0, statistics.median(lengths) if lengths else 0,
                r["not_ready"], r["replayed"], len(r["left_channels"]), len(r["left_bridges"]),
                r["linked"]), flush=True)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=1)


if __name__ == "__main__":
    sys.exit(main())
