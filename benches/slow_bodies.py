"""Slow bodies against the service and against nginx, in the same run (issue #31, finding 1).

The probe's attack: 1,030 connections each sending `POST /api/session` with
`Content-Length: 2000000` and then one byte every 20 s. Run once from one address and once
spread over 103 addresses (10 connections each); meanwhile `/healthz` is asked from another
address. Printed for each server: the attacker's connections still open at 3, 20 and 40 s,
and `/healthz` answered / latency at those moments (a miss is no answer within 5 s).

The peer is nginx (Debian's package) with its defaults (`client_body_timeout 60s`, reset at
each read, as the service's was), answering `/healthz` itself and proxying nothing.

Usage: cargo build --release && python3 benches/slow_bodies.py
"""
import os
import re
import socket
import statistics
import subprocess
import tempfile
import threading
import time
import urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BIN = os.environ.get("ARI_RECORDER_BIN", os.path.join(ROOT, "target/release/ari-recorder"))
CONNECTIONS = 1030
def probe(length):
    return (b"POST /api/session HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            b"Content-Length: %d\r\n\r\n{" % length)


# The probe's 2 MB, and 10 KB: within what both servers accept for a sign-in.
BODIES = [2_000_000, 10_000]
MOMENTS = [3, 20, 45]


def start_service():
    data = tempfile.mkdtemp()
    env = dict(os.environ, HTTP_ADDR="127.0.0.1:0", TRANSCRIPTION_ENGINE="off", RUST_LOG="error")
    p = subprocess.Popen([BIN, "demo", "--data", data, "--call-every", "1000"], env=env,
                         stdout=subprocess.PIPE, text=True)
    line = p.stdout.readline()
    port = int(re.search(r"localhost:(\d+)", line).group(1))
    return p, port


def start_nginx():
    work = tempfile.mkdtemp()
    port = 18090
    conf = os.path.join(work, "nginx.conf")
    with open(conf, "w") as f:
        f.write(f"""
worker_processes 1;
pid {work}/nginx.pid;
error_log {work}/error.log;
events {{ worker_connections 4096; }}
http {{
  access_log off;
  server {{
    listen 127.0.0.1:{port};
    location = /healthz {{ return 200 '{{"status":"ok"}}'; }}
    # A sign-in proxied on: nginx reads (buffers) the body first, as it would for the service.
    location / {{ proxy_pass http://127.0.0.1:1; }}
  }}
}}
""")
    p = subprocess.Popen(["nginx", "-c", conf, "-g", "daemon off;"])
    time.sleep(0.5)
    return p, port


def healthz(port, n=5):
    out = []
    for _ in range(n):
        t = time.perf_counter()
        try:
            req = urllib.request.Request(f"http://127.0.0.250:{port}/healthz")
            # From an address of its own: the operator, not the attacker.
            conn = socket.create_connection(("127.0.0.1", port), timeout=5,
                                            source_address=("127.0.0.250", 0))
            conn.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            data = conn.recv(64)
            conn.close()
            out.append((time.perf_counter() - t) * 1000 if data.startswith(b"HTTP/1.1 200") else None)
        except Exception:
            out.append(None)
    return out


def attack(port, addresses, length):
    socks = []
    for i in range(CONNECTIONS):
        source = addresses[i % len(addresses)]
        try:
            s = socket.create_connection(("127.0.0.1", port), timeout=2, source_address=(source, 0))
            s.sendall(probe(length))
            s.setblocking(False)
            socks.append(s)
        except Exception:
            pass
    return socks


def still_open(socks):
    """Connections neither closed nor answered (a peek: nothing is consumed)."""
    n = 0
    for s in socks:
        try:
            data = s.recv(1, socket.MSG_PEEK)
            if data:
                continue  # answered (413, 408): not held
        except BlockingIOError:
            n += 1
        except Exception:
            pass
    return n


def trickle(socks, stop):
    while not stop.is_set():
        stop.wait(20)
        for s in socks:
            try:
                s.send(b" ")
            except Exception:
                pass


def run(name, port, addresses, length):
    started = time.time()
    socks = attack(port, addresses, length)
    stop = threading.Event()
    t = threading.Thread(target=trickle, args=(socks, stop), daemon=True)
    t.start()
    rows = []
    for moment in MOMENTS:
        time.sleep(max(0, started + moment - time.time()))
        held = still_open(socks)
        lat = healthz(port)
        ok = [x for x in lat if x is not None]
        rows.append((moment, held, len(ok), len(lat), statistics.median(ok) if ok else None))
    stop.set()
    for s in socks:
        s.close()
    for moment, held, ok, n, median in rows:
        med = f"{median:.1f} ms" if median is not None else "-"
        print(f"| {name} | {length} | {len(addresses)} | {moment} s | {held} of {len(socks)} | {ok}/{n} | {med} |",
              flush=True)


def main():
    print("| server | body declared (bytes) | attacker addresses | at | attacker connections held | /healthz answered | /healthz median |")
    print("|---|---|---|---|---|---|---|")
    one = ["127.0.0.9"]
    many = [f"127.0.3.{i}" for i in range(1, 104)]
    for length in BODIES:
        for addresses in (one, many):
            svc, port = start_service()
            run("ari-recorder", port, addresses, length)
            svc.terminate()
            svc.wait()
            ngx, nport = start_nginx()
            run("nginx (defaults)", nport, addresses, length)
            ngx.terminate()
            ngx.wait()


if __name__ == "__main__":
    main()
