"""Opus and waveform requests vs. the service's CPU and memory (issue #11, finding 5).

Six concurrent `?format=opus` requests of one uncached 10-minute recording (CPU seconds the
service spent, beside opusenc encoding the same file once), the same for `?format=mp3` beside
the lame command, then thirty concurrent waveform
requests (`/peaks`, every allowed size, five times each) of a 1-hour recording (the service's
RSS before and after, beside sox reading the same file for its statistics).
Usage: cargo build --release && python3 benches/renderings.py (scripts/bench.sh installs
opus-tools and sox)."""
import json, os, re, resource, struct, subprocess, sys, tempfile, threading, time, urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BIN = os.path.join(ROOT, "target/release/ari-recorder")
RATE = 8000
TICKS = os.sysconf("SC_CLK_TCK")


def write_wav(path, seconds):
    """A speech-like 8 kHz mono 16-bit WAV: tones that change every 200 ms, with pauses."""
    frames = bytearray()
    block = RATE // 5
    import math
    for i in range(seconds * 5):
        freq = 200 + (i * 73) % 600
        loud = 0 if i % 7 == 6 else 6000
        frames += b"".join(struct.pack("<h", int(loud * math.sin(2 * math.pi * freq * n / RATE))) for n in range(block))
    header = b"RIFF" + struct.pack("<I", 36 + len(frames)) + b"WAVEfmt " + struct.pack("<IHHIIHH", 16, 1, 1, RATE, RATE * 2, 2, 16) + b"data" + struct.pack("<I", len(frames))
    with open(path, "wb") as f:
        f.write(header + frames)
    old = time.time() - 3600
    os.utime(path, (old, old))


def cpu_seconds(pid):
    fields = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS


def rss_mib(pid):
    for line in open(f"/proc/{pid}/status"):
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def get(url, token):
    req = urllib.request.Request(url, headers={"authorization": f"Bearer {token}"})
    with urllib.request.urlopen(req, timeout=600) as r:
        return r.read()


def concurrently(n, fn):
    threads = [threading.Thread(target=fn, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()


def main():
    data = tempfile.mkdtemp()
    recordings = os.path.join(data, "recordings")
    os.makedirs(recordings)
    os.makedirs(os.path.join(data, "dialplans"))
    ten = os.path.join(recordings, "ten-minutes.wav")
    hour = os.path.join(recordings, "one-hour.wav")
    write_wav(ten, 600)
    write_wav(hour, 3600)
    env = dict(os.environ, HTTP_ADDR="127.0.0.1:0", TRANSCRIPTION_ENGINE="off", RUST_LOG="info", RECORDINGS_DIR=recordings,
               DIALPLANS_DIR=os.path.join(data, "dialplans"), ARI_PASSWORD="unused",
               ARI_URL="http://127.0.0.1:9", DATABASE_URL=f"sqlite://{data}/lib.db?mode=rwc",
               CACHE_DIR=os.path.join(data, "cache"),
               ARI_RECORDER_PASSWORD="bench-password-123")
    subprocess.run([BIN, "user", "add", "--username", "bench", "--role", "admin"], env=env, check=True, capture_output=True)
    token = subprocess.run([BIN, "token", "create", "--user", "bench", "--name", "bench", "--scopes", "admin"],
                           env=env, check=True, capture_output=True, text=True).stdout.strip().split()[-1]
    subprocess.run([BIN, "tenant", "set", "default", "--download", "true"], env=env, check=True, capture_output=True)
    p = subprocess.Popen([BIN, "serve"], env=env, stderr=subprocess.PIPE, text=True)
    try:
        base = None
        for line in p.stderr:
            m = re.search(r"http=(127\.0\.0\.1:\d+)", line)
            if m:
                base = "http://" + m.group(1)
                break
        threading.Thread(target=lambda: [None for _ in p.stderr], daemon=True).start()
        ids = {}
        while len(ids) < 2:
            rows = json.loads(get(base + "/api/recordings?limit=10", token))["recordings"]
            ids = {r["name"]: r["id"] for r in rows if r["status"] == "ready" and r.get("sha256")}
            time.sleep(0.2)
        # Consent and compliance allow playback.
        for rid in ids.values():
            body = json.dumps({"consent": "granted"}).encode()
            req = urllib.request.Request(f"{base}/api/recordings/{rid}", data=body, method="PATCH",
                                         headers={"authorization": f"Bearer {token}", "content-type": "application/json"})
            urllib.request.urlopen(req).read()

        before = cpu_seconds(p.pid)
        t = time.perf_counter()
        concurrently(6, lambda i: get(f"{base}/api/recordings/{ids['ten-minutes']}/audio?format=opus", token))
        wall = time.perf_counter() - t
        ours = cpu_seconds(p.pid) - before
        child = resource.getrusage(resource.RUSAGE_CHILDREN)
        start = child.ru_utime + child.ru_stime
        subprocess.run(["opusenc", "--quiet", "--bitrate", "16", ten, os.path.join(data, "peer.opus")], check=True)
        child = resource.getrusage(resource.RUSAGE_CHILDREN)
        peer = child.ru_utime + child.ru_stime - start
        print(f"6 concurrent Opus requests of one uncached 10-minute recording: {ours:.2f} s CPU ({wall:.2f} s wall); peer opusenc, one encode of the same file: {peer:.2f} s CPU")

        # MP3 the same way, beside the lame command at the same bit rate.
        before = cpu_seconds(p.pid)
        t = time.perf_counter()
        concurrently(6, lambda i: get(f"{base}/api/recordings/{ids['ten-minutes']}/audio?format=mp3", token))
        wall = time.perf_counter() - t
        ours = cpu_seconds(p.pid) - before
        child = resource.getrusage(resource.RUSAGE_CHILDREN)
        start = child.ru_utime + child.ru_stime
        subprocess.run(["lame", "--quiet", "-b", "32", "-m", "m", ten, os.path.join(data, "peer.mp3")], check=True)
        child = resource.getrusage(resource.RUSAGE_CHILDREN)
        peer = child.ru_utime + child.ru_stime - start
        print(f"6 concurrent MP3 requests of one uncached 10-minute recording: {ours:.2f} s CPU ({wall:.2f} s wall); peer lame -b 32, one encode of the same file: {peer:.2f} s CPU")

        rss_before = rss_mib(p.pid)
        peak_rss = [rss_before]
        done = threading.Event()

        def sample():
            while not done.is_set():
                peak_rss.append(rss_mib(p.pid))
                time.sleep(0.01)

        sampler = threading.Thread(target=sample)
        sampler.start()
        sizes = [100, 200, 400, 800, 1600, 3200]
        t = time.perf_counter()
        concurrently(30, lambda i: get(f"{base}/api/recordings/{ids['one-hour']}/peaks?points={sizes[i % 6]}", token))
        wall = time.perf_counter() - t
        done.set()
        sampler.join()
        rss_after = rss_mib(p.pid)
        sox = subprocess.run(["/usr/bin/time", "-f", "%M", "sox", hour, "-n", "stat"], capture_output=True, text=True)
        sox_kib = int(sox.stderr.strip().splitlines()[-1])
        print(f"30 concurrent waveform requests of a 1-hour recording: RSS {rss_before:.0f} MiB before, {max(peak_rss):.0f} MiB at most, {rss_after:.0f} MiB after ({wall:.2f} s wall); peer sox reading the same file for its statistics: {sox_kib / 1024:.0f} MiB max RSS")
    finally:
        p.terminate()
        p.wait()


if __name__ == "__main__":
    main()
