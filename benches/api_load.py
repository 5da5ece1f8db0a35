"""The API under concurrent load with one async worker thread and with two (issue #19: whether
the service may run on one worker beside the PBX), beside nginx serving the same page as a
static file. 16 client threads ask for list pages (`/api/recordings?limit=50`, the page's main
request, signed in as a browser is) for 8 s each; printed: requests a second, median and p99.
Runs the release binary's demo on a free port over 2,000 recordings.

Usage: cargo build --release && python3 benches/api_load.py   (nginx: scripts/bench.sh installs it;
scripts/bench.sh without arguments runs it). API_LOAD_FILES and API_LOAD_SECONDS change the sizes.
"""
import json, os, re, shutil, socket, statistics, struct, subprocess, sys
import tempfile, threading, time, urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BIN = os.path.join(ROOT, "target/release/ari-recorder")
FILES, CLIENTS, SECONDS = int(os.environ.get("API_LOAD_FILES", 2000)), 16, float(os.environ.get("API_LOAD_SECONDS", 8))


def wav(seconds=1.0, rate=8000):
    samples = int(seconds * rate)
    data = bytes(2 * samples)
    return (b"RIFF" + struct.pack("<I", 36 + len(data)) + b"WAVEfmt "
            + struct.pack("<IHHIIHH", 16, 1, 1, rate, rate * 2, 2, 16)
            + b"data" + struct.pack("<I", len(data)) + data)


def load(url, headers):
    """CLIENTS threads asking for `url` for SECONDS; requests a second, median and p99 (ms)."""
    latencies, lock, stop = [], threading.Lock(), time.perf_counter() + SECONDS

    def client():
        mine = []
        while time.perf_counter() < stop:
            started = time.perf_counter()
            with urllib.request.urlopen(urllib.request.Request(url, headers=headers)) as r:
                r.read()
            mine.append((time.perf_counter() - started) * 1000)
        with lock:
            latencies.extend(mine)

    threads = [threading.Thread(target=client) for _ in range(CLIENTS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    latencies.sort()
    return len(latencies) / SECONDS, statistics.median(latencies), latencies[int(len(latencies) * .99) - 1]


def service(workers, data):
    env = dict(os.environ, HTTP_ADDR="127.0.0.1:0", TRANSCRIPTION_ENGINE="off", RUST_LOG="warn", TOKIO_WORKER_THREADS=str(workers))
    p = subprocess.Popen([BIN, "demo", "--data", data, "--call-every", "100000"], cwd=data, env=env,
                         stdout=subprocess.PIPE, text=True)
    base = "http://" + re.search(r"localhost:(\d+)", p.stdout.readline()).group(0).replace("localhost", "127.0.0.1")
    body = json.dumps({"username": "admin", "password": "ari-recorder-demo"}).encode()
    signed_in = urllib.request.urlopen(urllib.request.Request(
        base + "/api/session", data=body, headers={"content-type": "application/json"}))
    # The session cookie is Secure: sent by hand (a browser sends it to localhost over http).
    cookie = signed_in.headers["set-cookie"].split(";")[0]
    headers = {"cookie": cookie}
    page = base + "/api/recordings?limit=50"
    # Every file indexed: the list holds them all (pages of 50, counted by their cursors).
    for _ in range(600):
        seen, cursor = 0, ""
        while True:
            url = page + (f"&cursor={cursor}" if cursor else "")
            with urllib.request.urlopen(urllib.request.Request(url, headers=headers)) as r:
                answer = json.load(r)
            seen += len(answer["recordings"])
            cursor = answer.get("next_cursor")
            if not cursor:
                break
        if seen >= FILES:
            break
        time.sleep(0.5)
    with urllib.request.urlopen(urllib.request.Request(page, headers=headers)) as r:
        first_page = r.read()
    return p, page, headers, first_page


def nginx_peer(body, tmp):
    root = os.path.join(tmp, "www")
    os.makedirs(root)
    # nginx's workers run as another user: the page must be readable to them.
    os.chmod(tmp, 0o755)
    os.chmod(root, 0o755)
    with open(os.path.join(root, "page.json"), "wb") as f:
        f.write(body)
    os.chmod(os.path.join(root, "page.json"), 0o644)
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    conf = os.path.join(tmp, "nginx.conf")
    with open(conf, "w") as f:
        f.write(f"""daemon off; worker_processes 1; pid {tmp}/nginx.pid; error_log {tmp}/error.log;
events {{ worker_connections 256; }}
http {{ access_log off; server {{ listen 127.0.0.1:{port}; root {root}; }} }}
""")
    p = subprocess.Popen(["nginx", "-c", conf, "-p", tmp])
    for _ in range(100):
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/page.json").read()
            break
        except OSError:
            time.sleep(0.05)
    return p, f"http://127.0.0.1:{port}/page.json"


def main():
    if not shutil.which("nginx"):
        sys.exit("nginx is not installed: scripts/bench.sh installs it")
    tmp = tempfile.mkdtemp()
    data = os.path.join(tmp, "data")
    os.makedirs(os.path.join(data, "recordings"))
    one = wav()
    for i in range(FILES):
        with open(os.path.join(data, "recordings", f"import-{i:05}.wav"), "wb") as f:
            f.write(one)
    print(f"api_load: {FILES} recordings, {CLIENTS} clients x {SECONDS:.0f} s of GET /api/recordings?limit=50")
    body = b""
    for workers in (2, 1, 2, 1):
        p, page, headers, body = service(workers, data)
        rate, median, p99 = load(page, headers)
        print(f"  ari-recorder, {workers} worker thread{'s' if workers > 1 else ''}: {rate:.0f} pages/s, median {median:.1f} ms, p99 {p99:.1f} ms")
        p.terminate()
        p.wait()
    nginx, url = nginx_peer(body, tmp)
    rate, median, p99 = load(url, {})
    print(f"  peer: nginx (1 worker) serving the same page ({len(body)} bytes) as a file: {rate:.0f} pages/s, median {median:.1f} ms, p99 {p99:.1f} ms")
    nginx.terminate()
    nginx.wait()
    shutil.rmtree(tmp, ignore_errors=True)


main()
