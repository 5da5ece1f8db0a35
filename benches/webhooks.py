#!/usr/bin/env python3
"""Webhooks under load (issue 34): what telling a receiver costs and how fast it is.

Runs the release binary's `serve` on a temporary library (SQLite), registers one endpoint (a
receiver in this script on 127.0.0.1), and drops final WAV files into the recordings folder at
a steady rate: each becomes `recording.ready`. Printed, each beside its peer in the same run:

- latency from the recording becoming final (the event's `timestamp`, written in the row's
  transaction) to the receiver's handler, p50 / p99, at a steady rate;
- events a second one instance delivers from a backlog, beside a minimal sender (one Python
  process POSTing the same number of signed bodies to the same receiver, one after another);
- CPU of the service per event: the same files indexed with and without an endpoint;
- `SIGKILL` of the service halfway through a run, then a start on the same library: events lost
  (a ready recording never delivered) and duplicates (a `webhook-id` received twice).

Usage: cargo build --release && python3 benches/webhooks.py [--rate 40] [--seconds 30]
"""
import argparse
import base64
import hashlib
import hmac
import json
import os
import signal
import socket
import statistics
import struct
import subprocess
import tempfile
import threading
import time
import urllib.request
from datetime import datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TICKS = os.sysconf("SC_CLK_TCK")


def wav(seconds=2.0, rate=8000):
    data = bytes(int(2 * seconds * rate))
    return (b"RIFF" + struct.pack("<I", 36 + len(data)) + b"WAVEfmt "
            + struct.pack("<IHHIIHH", 16, 1, 1, rate, rate * 2, 2, 16)
            + b"data" + struct.pack("<I", len(data)) + data)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def cpu_seconds(pid):
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS


class Receiver:
    """Answers 200 to every POST; keeps (webhook-id, type, latency from the event's timestamp)."""

    def __init__(self):
        self.got, self.lock = [], threading.Lock()
        # Seconds each answer takes (a slow receiver keeps deliveries in flight).
        self.delay = 0.0
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                now = time.time()
                body = self.rfile.read(int(self.headers["content-length"]))
                event = json.loads(body)
                stamp = datetime.fromisoformat(event["timestamp"].replace("Z", "+00:00")).timestamp()
                with receiver.lock:
                    receiver.got.append((self.headers["webhook-id"], event["type"], now - stamp, now))
                if receiver.delay:
                    time.sleep(receiver.delay)
                self.send_response(200)
                self.send_header("content-length", "0")
                self.end_headers()

            def log_message(self, *args):
                pass

        class Server(ThreadingHTTPServer):
            # Python's default backlog of 5 drops connections a concurrent sender opens (each
            # dropped SYN costs the sender a second).
            request_queue_size = 256
            daemon_threads = True

        self.server = Server(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}/hook"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def ready_events(self):
        with self.lock:
            return [g for g in self.got if g[1] == "recording.ready"]


class Service:
    def __init__(self, binary, data):
        self.binary, self.data = binary, data
        self.port = free_port()
        self.env = dict(
            os.environ,
            ARI_URL=f"http://127.0.0.1:{free_port()}",  # no Asterisk: the library alone
            ARI_PASSWORD="unused",
            RECORDINGS_DIR=os.path.join(data, "recordings"),
            DATABASE_URL=f"sqlite://{data}/library.db?mode=rwc",
            DIALPLANS_DIR=os.path.join(data, "dialplans"),
            CACHE_DIR=os.path.join(data, "cache"),
            HTTP_ADDR=f"127.0.0.1:{self.port}",
            # The figures here are the service's own; transcription is measured on its own.
            TRANSCRIPTION_ENGINE="off",
            WEBHOOK_ALLOW_HTTP_HOSTS="127.0.0.1",
            WEBHOOK_ALLOW_NETWORKS="127.0.0.0/8",
            RUST_LOG=os.environ.get("BENCH_LOG", "error"),
        )
        for folder in ("recordings", "dialplans", "cache"):
            os.makedirs(os.path.join(data, folder), exist_ok=True)
        self.proc = None

    def start(self):
        self.proc = subprocess.Popen([self.binary, "serve"], env=self.env, cwd=self.data,
                                     stdout=subprocess.DEVNULL, stderr=open(os.path.join(self.data, "..", "webhooks-bench.log"), "a"))
        deadline = time.time() + 60
        while time.time() < deadline:
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{self.port}/healthz", timeout=1).read()
                return
            except OSError:
                time.sleep(0.1)
        raise SystemExit("the service did not start")

    def token(self):
        subprocess.run([self.binary, "user", "add", "--username", "bench", "--role", "admin"],
                       env=dict(self.env, ARI_RECORDER_PASSWORD="bench-password-0123"),
                       check=True, capture_output=True)
        out = subprocess.run([self.binary, "token", "create", "--user", "bench", "--name", "bench",
                              "--scopes", "admin"], env=self.env, check=True,
                             capture_output=True, text=True).stdout
        return [w for w in out.split() if len(w) > 30][0]

    def register(self, token, url):
        body = json.dumps({"url": url, "events": ["recording.ready"]}).encode()
        request = urllib.request.Request(
            f"http://127.0.0.1:{self.port}/api/webhooks", data=body,
            headers={"authorization": f"Bearer {token}", "content-type": "application/json"})
        return json.loads(urllib.request.urlopen(request).read())

    def ready_rows(self):
        import sqlite3
        db = sqlite3.connect(os.path.join(self.data, "library.db"))
        (n,) = db.execute("SELECT COUNT(*) FROM recordings WHERE status = 'ready'").fetchone()
        db.close()
        return n

    def stop(self, sig=signal.SIGTERM):
        self.proc.send_signal(sig)
        self.proc.wait(timeout=30)


def drop_files(service, count, rate, start=0):
    """`count` final WAV files (dated an hour ago) at `rate` a second (0: all at once)."""
    audio, folder = wav(), os.path.join(service.data, "recordings")
    began = time.perf_counter()
    old = time.time() - 3600
    for i in range(start, start + count):
        path = os.path.join(folder, f"bench-{i:06d}.wav")
        with open(path + ".tmp", "wb") as f:
            f.write(audio)
        os.utime(path + ".tmp", (old, old))
        os.rename(path + ".tmp", path)
        if rate:
            wait = began + (i - start + 1) / rate - time.perf_counter()
            if wait > 0:
                time.sleep(wait)


def wait_for(what, check, limit=180):
    deadline = time.time() + limit
    while time.time() < deadline:
        if check():
            return
        time.sleep(0.05)
    raise SystemExit(f"timed out: {what}")


def percentile(values, p):
    values = sorted(values)
    return values[min(len(values) - 1, int(len(values) * p))]


def steady(binary, rate, count, endpoint):
    """A fresh service; `count` files at `rate`/s; CPU over the run (and latencies)."""
    with tempfile.TemporaryDirectory() as data:
        svc, receiver = Service(binary, data), Receiver()
        svc.start()
        if endpoint:
            svc.register(svc.token(), receiver.url)
        time.sleep(1)  # settled after start (its first scan of an empty folder)
        before = cpu_seconds(svc.proc.pid)
        drop_files(svc, count, rate)
        wait_for("every file ready", lambda: svc.ready_rows() >= count)
        if endpoint:
            wait_for("every event delivered", lambda: len(receiver.ready_events()) >= count)
        cpu = cpu_seconds(svc.proc.pid) - before
        svc.stop()
        return cpu, [g[2] for g in receiver.ready_events()]


def backlog(binary, count):
    """`count` events queued while the receiver is away, then delivered: events a second."""
    with tempfile.TemporaryDirectory() as data:
        svc, receiver = Service(binary, data), Receiver()
        svc.start()
        token = svc.token()
        svc.register(token, receiver.url)
        receiver.server.shutdown()  # not listening: every attempt refused, retried later
        receiver.server.server_close()
        drop_files(svc, count, 0)
        wait_for("every file ready", lambda: svc.ready_rows() >= count)
        svc.stop()
        # The receiver is back on a new port; the endpoint is pointed there and every delivery
        # made due now, so the run measures sending, not the retry schedule.
        receiver = Receiver()
        import sqlite3
        db = sqlite3.connect(os.path.join(data, "library.db"))
        db.execute("UPDATE webhook_endpoints SET url = ?", (receiver.url,))
        db.execute("UPDATE webhook_deliveries SET next_attempt_at_ms = 0 WHERE state = 'pending'")
        db.commit()
        db.close()
        svc.start()
        before, began = cpu_seconds(svc.proc.pid), time.perf_counter()
        wait_for("the backlog delivered", lambda: len(receiver.ready_events()) >= count)
        elapsed, cpu = time.perf_counter() - began, cpu_seconds(svc.proc.pid) - before
        svc.stop()
        return count / elapsed, cpu / count


def peer_sender(count):
    """The same number of signed JSON bodies POSTed by one Python process, one after another."""
    receiver = Receiver()
    key = os.urandom(32)
    body = json.dumps({"type": "recording.ready", "timestamp": datetime.utcnow().isoformat() + "Z",
                       "data": {"id": 1, "name": "x" * 40, "sha256": "0" * 64}}).encode()
    host, port = "127.0.0.1", receiver.server.server_port
    import http.client
    connection = http.client.HTTPConnection(host, port)
    cpu, began = time.process_time(), time.perf_counter()
    for i in range(count):
        stamp = str(int(time.time()))
        mac = hmac.new(key, f"msg_{i}.{stamp}.".encode() + body, hashlib.sha256).digest()
        connection.request("POST", "/hook", body, {
            "content-type": "application/json", "webhook-id": f"msg_{i}", "webhook-timestamp": stamp,
            "webhook-signature": "v1," + base64.b64encode(mac).decode()})
        connection.getresponse().read()
    return count / (time.perf_counter() - began), (time.process_time() - cpu) / count


def killed_midway(binary, rate, count):
    """SIGKILL halfway through a steady run while the receiver is slow (0.3 s an answer, so
    deliveries queue up and some are in flight), then a start on the same library. A delivery
    the receiver got but whose settling the kill prevented is sent again when its claim runs
    out: a duplicate at-least-once allows."""
    with tempfile.TemporaryDirectory() as data:
        svc, receiver = Service(binary, data), Receiver()
        receiver.delay = 0.3
        svc.start()
        svc.register(svc.token(), receiver.url)
        half = count // 2
        drop_files(svc, half, rate)
        import sqlite3
        db = sqlite3.connect(os.path.join(data, "library.db"))
        (pending,) = db.execute(
            "SELECT COUNT(*) FROM webhook_deliveries WHERE state = 'pending'").fetchone()
        db.close()
        svc.stop(signal.SIGKILL)
        receiver.delay = 0.0
        drop_files(svc, count - half, rate, start=half)  # written while the service is down
        svc.start()
        wait_for("every file ready", lambda: svc.ready_rows() >= count)
        wait_for("every event delivered",
                 lambda: len({g[0] for g in receiver.ready_events()}) >= count, limit=300)
        # Every delivery settled: those claimed when the kill came are sent again once their
        # claim (a minute) runs out.
        def settled():
            db = sqlite3.connect(os.path.join(data, "library.db"))
            (left,) = db.execute(
                "SELECT COUNT(*) FROM webhook_deliveries WHERE state = 'pending'").fetchone()
            db.close()
            return left == 0
        wait_for("every delivery settled", settled, limit=300)
        events = receiver.ready_events()
        ids = [g[0] for g in events]
        svc.stop()
        return pending, count - len(set(ids)), len(ids) - len(set(ids))


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--bin", default=os.path.join(ROOT, "target/release/ari-recorder"))
    p.add_argument("--rate", type=float, default=40)
    p.add_argument("--seconds", type=float, default=30)
    p.add_argument("--backlog", type=int, default=2000)
    args = p.parse_args()
    count = int(args.rate * args.seconds)
    print(f"steady: {count} recordings at {args.rate:.0f}/s, with and without an endpoint")
    cpu_off, _ = steady(args.bin, args.rate, count, endpoint=False)
    cpu_on, latencies = steady(args.bin, args.rate, count, endpoint=True)
    ms = [1000 * l for l in latencies]
    print(f"| latency final -> receiver | p50 {percentile(ms, .5):.0f} ms | p99 {percentile(ms, .99):.0f} ms | max {max(ms):.0f} ms | {len(ms)} events |")
    print(f"| service CPU, {count} recordings | without an endpoint {cpu_off:.2f} s | with one {cpu_on:.2f} s | per event {(cpu_on - cpu_off) / count * 1000:.3f} ms |")
    rate, cpu = backlog(args.bin, args.backlog)
    peer_rate, peer_cpu = peer_sender(args.backlog)
    print(f"| backlog of {args.backlog} | ari-recorder {rate:.0f} events/s, {cpu * 1000:.3f} ms CPU an event (everything: claim, payload, sign, send, settle) | minimal Python sender {peer_rate:.0f} events/s, {peer_cpu * 1000:.3f} ms CPU an event |")
    pending, lost, duplicates = killed_midway(args.bin, args.rate, count)
    print(f"| SIGKILL halfway, {count} recordings ({pending} deliveries waiting at the kill) | lost {lost} | duplicates {duplicates} |")


if __name__ == "__main__":
    main()
