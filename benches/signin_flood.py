"""Sign-in flood vs. the rest of the service (issue #11, finding 3): /healthz latency at rest,
then while 16 clients sign in as fast as they can (Argon2 on every attempt). Runs the release
binary's demo on a free port. Usage: cargo build --release && python3 benches/signin_flood.py"""
import json, subprocess, sys, threading, time, urllib.request, statistics, os, re, tempfile
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BIN = os.path.join(ROOT, "target/release/ari-recorder")
data = tempfile.mkdtemp()
env = dict(os.environ, HTTP_ADDR="127.0.0.1:0", TRANSCRIPTION_ENGINE="off", RUST_LOG="warn", GRANTS_PER_MINUTE="1000000")
p = subprocess.Popen([BIN, "demo", "--data", data, "--call-every", "1000"], cwd=ROOT, env=env, stdout=subprocess.PIPE, text=True)
line = p.stdout.readline()
base = "http://" + re.search(r"localhost:(\d+)", line).group(0).replace("localhost", "127.0.0.1")
def healthz(n):
    out = []
    for _ in range(n):
        t = time.perf_counter(); urllib.request.urlopen(base + "/healthz").read(); out.append((time.perf_counter() - t) * 1000)
        time.sleep(0.01)
    return out
stop = False
def signer():
    body = json.dumps({"username": "admin", "password": "ari-recorder-demo"}).encode()
    while not stop:
        req = urllib.request.Request(base + "/api/session", data=body, headers={"content-type": "application/json"})
        try: urllib.request.urlopen(req).read()
        except Exception: pass
time.sleep(1)
rest = healthz(300)
threads = [threading.Thread(target=signer) for _ in range(16)]
for t in threads: t.start()
time.sleep(1)
flood = healthz(300)
stop = True
for t in threads: t.join()
p.terminate(); p.wait()
q = lambda xs, f: sorted(xs)[int(len(xs) * f) - 1]
print(f"/healthz at rest: median {statistics.median(rest):.2f} ms, p99 {q(rest, .99):.2f} ms")
print(f"/healthz with 16 parallel sign-in streams: median {statistics.median(flood):.2f} ms, p99 {q(flood, .99):.2f} ms")
