#!/usr/bin/env python3
"""CPU a recorded call costs ari-recorder on a real Asterisk, beside Asterisk's own (issue 30).

Places N calls at once into a recorded transfer flow whose agent is `Local/201@agents` (answers,
plays a 16 s prompt, hangs up), as the issue's measurement did, and reads from /proc the CPU
time ari-recorder and Asterisk spent from the first call until every channel is gone, and the
events ari-recorder received (`ari_events_total`). Beside it, a second ARI app subscribed to
everything measures, from Asterisk's own event timestamps, how long after a bridge holds its
second party its recording starts (p50 / p90 / p99). Runs with the event filter on and off
(`ARI_EVENT_FILTER`), alternately, `--runs` times each; with `--compare OTHER_BIN`, the two
builds alternately instead (the filter on), for a before/after; with `--transcription`,
transcription off and on alternately (issue 33): before each run a backlog of speech files
(the test speech, three minutes each) is put in the recordings folder, so with transcription on
the offline engine is transcribing it while the calls are placed (its recogniser's own CPU is
its child processes', printed apart); with it off they are only indexed.

Usage: cpu_per_call.py --bin target/release/ari-recorder --recordings DIR --asterisk-pid PID
                       [--calls 100] [--runs 2] [--compare OLDER_BIN | --transcription]
"""
import datetime
import json
import threading
import argparse
import os
import re
import shutil
import subprocess
import tempfile
import time

import requests
import websocket

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


def recogniser_seconds():
    """CPU of every running pocketsphinx_continuous (the engine's children), by pid."""
    out = {}
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            with open(f"/proc/{pid}/comm") as f:
                if not f.read().startswith("pocketsphinx"):
                    continue
            out[pid] = cpu_seconds(pid)
        except OSError:
            continue
    return out


class RecogniserMeter:
    """Samples the recognisers' CPU every 100 ms (each runs a few seconds: the sum of each
    one's last reading is what they spent while sampled)."""

    def __init__(self):
        self.seen, self.first = {}, {}
        self.stop = False
        self.thread = threading.Thread(target=self.sample, daemon=True)
        self.thread.start()

    def sample(self):
        while not self.stop:
            for pid, used in recogniser_seconds().items():
                self.first.setdefault(pid, used)
                self.seen[pid] = used
            time.sleep(0.1)

    def total(self):
        self.stop = True
        self.thread.join(timeout=3)
        return sum(self.seen[p] - self.first[p] for p in self.seen), len(self.seen)


class RecordStart:
    """Bridge gets its second party -> its recording starts, from Asterisk's event timestamps
    (a second app, `subscribeAll`, so it sees every bridge)."""

    def __init__(self, args):
        url = args.ari.replace("http", "ws", 1)
        self.ws = websocket.create_connection(
            f"{url}/ari/events?api_key={args.user}:{args.password}&app=record-start-meter"
            "&subscribeAll=true", timeout=1)
        self.members, self.full_at, self.started = {}, {}, {}
        self.stop = False
        self.thread = threading.Thread(target=self.listen, daemon=True)
        self.thread.start()

    @staticmethod
    def ts(text):
        return datetime.datetime.strptime(text[:23], "%Y-%m-%dT%H:%M:%S.%f").timestamp()

    def listen(self):
        while not self.stop:
            try:
                ev = json.loads(self.ws.recv())
            except websocket.WebSocketTimeoutException:
                continue
            except Exception:
                return
            kind = ev.get("type")
            if kind == "ChannelEnteredBridge":
                bridge = ev["bridge"]["id"]
                self.members.setdefault(bridge, set()).add(ev["channel"]["id"])
                if len(self.members[bridge]) >= 2 and bridge not in self.full_at:
                    self.full_at[bridge] = self.ts(ev["timestamp"])
            elif kind == "RecordingStarted" and ev["recording"]["target_uri"].startswith("bridge:"):
                self.started[ev["recording"]["target_uri"][7:]] = self.ts(ev["timestamp"])

    def figures(self):
        self.stop = True
        self.thread.join(timeout=3)
        self.ws.close()
        d = sorted((self.started[b] - self.full_at[b]) * 1000
                   for b in self.started if b in self.full_at)
        if not d:
            return "no bridge recordings seen"
        q = lambda p: d[min(len(d) - 1, int(p * len(d)))]
        return f"{q(.5):.0f} / {q(.9):.0f} / {q(.99):.0f} ms ({len(d)} bridges)"


def metric(name):
    m = requests.get("http://127.0.0.1:18230/metrics",
                     headers={"authorization": "Bearer " + TOKEN}, timeout=5).text
    found = re.search(rf'^{name} (\d+)$', m, re.M)
    return int(found.group(1)) if found else -1


SPEECH = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "assets", "speech")


def put_backlog(recordings, files):
    """`files` WAVs of about three minutes of the test speech in `<recordings>/backlog/`."""
    import wave
    frames = b""
    for name in ("caller", "agent"):
        with wave.open(os.path.join(SPEECH, f"{name}.wav")) as w:
            frames += w.readframes(w.getnframes()) + b"\0\0" * 8000
    folder = os.path.join(recordings, "backlog")
    shutil.rmtree(folder, ignore_errors=True)
    os.makedirs(folder)
    for i in range(files):
        with wave.open(os.path.join(folder, f"memo-{i:03d}.wav"), "wb") as w:
            w.setnchannels(1)
            w.setsampwidth(2)
            w.setframerate(8000)
            w.writeframes(frames * (180 * 16000 // len(frames)))
    return folder


def run(args, event_filter, binary=None, transcription="off"):
    work = tempfile.mkdtemp(prefix="cpu-per-call-")
    backlog = put_backlog(args.recordings, args.backlog) if args.transcription else None
    os.makedirs(os.path.join(work, "dialplans"))
    with open(os.path.join(work, "dialplans", "desk.toml"), "w") as f:
        f.write(FLOW)
    with open(os.path.join(work, "dialplans", "settings.toml"), "w") as f:
        f.write(SETTINGS)
    env = dict(os.environ, ARI_URL=args.ari, ARI_USERNAME=args.user, ARI_PASSWORD=args.password,
               RECORDINGS_DIR=args.recordings, DATABASE_URL=f"sqlite://{work}/library.db?mode=rwc",
               DIALPLANS_DIR=os.path.join(work, "dialplans"), CACHE_DIR=os.path.join(work, "cache"),
               HTTP_ADDR="127.0.0.1:18230", TRANSCRIPTION_ENGINE=transcription, METRICS_TOKEN=TOKEN, RUST_LOG="warn",
               ARI_EVENT_FILTER="true" if event_filter else "false")
    log = open(os.path.join(work, "serve.log"), "w")
    proc = subprocess.Popen([binary or args.bin, "serve"], env=env, stdout=log, stderr=log)
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
        # Transcribing a backlog, the service is never at rest: the indexer's end is enough.
        busy_ok = transcription != "off"
        if (busy_ok or cpu_seconds(proc.pid) - before < 0.02) and file_reads() == reads:
            break
    # With transcription on, the backlog is queued (and the first of it being transcribed)
    # before the calls come.
    for _ in range(300):
        if transcription == "off" or (metric("transcription_pending") > 0 and recogniser_seconds()):
            break
        time.sleep(0.1)
    pending_before, done_before = metric("transcription_pending"), metric("transcription_done")
    recognisers = RecogniserMeter()
    meter = RecordStart(args)
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
    latency = meter.figures()
    recogniser, processes = recognisers.total()
    transcribed = (f"pending {pending_before} -> {metric('transcription_pending')}, "
               f"{metric('transcription_done') - done_before} transcribed, recogniser "
               f"{recogniser:.1f} s CPU in {processes} runs")
    m = requests.get("http://127.0.0.1:18230/metrics",
                     headers={"authorization": "Bearer " + TOKEN}).text
    events = sum(int(v) for v in re.findall(r'^ari_events_total\{[^}]*\} (\d+)$', m, re.M))
    found = re.search(r'^recordings_total\{outcome="finished"\} (\d+)$', m, re.M)
    finished = int(found.group(1)) if found else 0
    proc.terminate()
    proc.wait(timeout=30)
    if backlog:
        shutil.rmtree(backlog, ignore_errors=True)
    return ours, ast, events, finished, latency, transcribed


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
    p.add_argument("--compare", help="another build, run alternately with --bin (filter on)")
    p.add_argument("--backlog", type=int, default=30,
                   help="speech files of three minutes put in the folder for --transcription")
    p.add_argument("--transcription", action="store_true",
                   help="transcription off and on (pocketsphinx), alternately (filter on)")
    args = p.parse_args()
    print("| build / event filter / transcription | calls | recordings finished | events a call "
          "| ari-recorder CPU a call | Asterisk CPU a call | record start p50 / p90 / p99 | transcription |")
    print("|---|---|---|---|---|---|---|---|")
    if args.compare:
        plan = [(os.path.basename(b), True, b, "off") for b in (args.compare, args.bin)]
    elif args.transcription:
        plan = [("transcription off", True, None, "off"),
                ("transcription on", True, None, "pocketsphinx")]
    else:
        plan = [("off", False, None, "off"), ("on", True, None, "off")]
    for _ in range(args.runs):
        for label, event_filter, binary, engine in plan:
            ours, ast, events, finished, latency, backlog = run(args, event_filter, binary, engine)
            print(f"| {label} | {args.calls} | {finished} | "
                  f"{events / args.calls:.1f} | {ours * 1000 / args.calls:.2f} ms | "
                  f"{ast * 1000 / args.calls:.0f} ms | {latency} | {backlog} |", flush=True)


if __name__ == "__main__":
    main()
