"""Memory an Opus or MP3 rendering of a long recording costs (issue #31, finding 8).

A 30-minute 8 kHz recording is asked for as `?format=opus`, then `?format=mp3`; printed: the
service's peak resident memory (VmHWM) before and after each, beside opusenc and lame encoding
the same file as their own processes (their peak RSS). The probe saw 45 -> 168 MB when the
whole recording was decoded into memory first.
Usage: cargo build --release && python3 benches/render_memory.py (scripts/bench.sh installs
opus-tools and lame)."""
import os
import re
import subprocess
import sys
import tempfile
import time
import urllib.request


ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BIN = os.environ.get("ARI_RECORDER_BIN", os.path.join(ROOT, "target/release/ari-recorder"))


def peak_mib(pid):
    for line in open(f"/proc/{pid}/status"):
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return 0.0


def main():
    data = tempfile.mkdtemp()
    recordings = os.path.join(data, "recordings")
    os.makedirs(recordings)
    wav = os.path.join(recordings, "long-call.wav")
    # Written by a process of its own, so this one stays small: the peers are its children,
    # and a child's peak counts what it inherited.
    subprocess.run([sys.executable, "-c",
                    f"from renderings import write_wav; write_wav({wav!r}, 30 * 60)"],
                   cwd=os.path.dirname(os.path.abspath(__file__)), check=True)
    env = dict(os.environ, HTTP_ADDR="127.0.0.1:0", TRANSCRIPTION_ENGINE="off", RUST_LOG="error")
    p = subprocess.Popen([BIN, "demo", "--data", data, "--call-every", "100000"], env=env,
                         stdout=subprocess.PIPE, text=True)
    base = "http://" + re.search(r"localhost:(\d+)", p.stdout.readline()).group(0).replace(
        "localhost", "127.0.0.1")
    body = b'{"username": "admin", "password": "ari-recorder-demo"}'
    req = urllib.request.Request(base + "/api/session", data=body,
                                 headers={"content-type": "application/json"})
    answer = urllib.request.urlopen(req)
    cookie = answer.headers["set-cookie"].split(";")[0]
    csrf = __import__("json").loads(answer.read())["csrf_token"]
    rid = None
    for _ in range(600):
        req = urllib.request.Request(base + "/api/recordings?limit=200", headers={"cookie": cookie})
        rows = __import__("json").loads(urllib.request.urlopen(req).read())["recordings"]
        long = [r for r in rows if r["name"] == "long-call" and r["status"] == "ready"]
        if long:
            rid = long[0]["id"]
            break
        time.sleep(0.1)
    assert rid is not None, "the 30-minute recording was never listed ready"
    # A file of unknown origin has no consent on record: the admin records it, as on the page.
    req = urllib.request.Request(f"{base}/api/recordings/{rid}", method="PATCH",
                                 data=b'{"consent": "granted"}',
                                 headers={"cookie": cookie, "x-csrf-token": csrf,
                                          "content-type": "application/json"})
    urllib.request.urlopen(req).read()
    print("| rendering of a 30-minute recording | peak RSS before | peak RSS after | peer (its own process) |")
    print("|---|---|---|---|")
    for fmt, peer in (("opus", ["opusenc", "--quiet", wav, os.path.join(data, "peer.opus")]),
                      ("mp3", ["lame", "--quiet", "-b", "32", wav, os.path.join(data, "peer.mp3")])):
        before = peak_mib(p.pid)
        req = urllib.request.Request(f"{base}/api/recordings/{rid}/audio?format={fmt}",
                                     headers={"cookie": cookie})
        size = len(urllib.request.urlopen(req).read())
        after = peak_mib(p.pid)
        child = subprocess.Popen(peer)
        _, _, usage = os.wait4(child.pid, 0)
        peer_peak = usage.ru_maxrss / 1024
        print(f"| {fmt} ({size / 1e6:.1f} MB) | {before:.1f} MiB | {after:.1f} MiB | "
              f"{peer[0]}: {peer_peak:.1f} MiB peak |", flush=True)
    p.terminate()
    p.wait()


if __name__ == "__main__":
    main()
