#!/usr/bin/env python3
"""Transcription speed and accuracy (issue 33), beside the engine's own command-line tool.

Runs the release binary's `serve` with `TRANSCRIPTION_ENGINE=pocketsphinx` over a library of
N final recordings made of the test speech (assets/speech: 8 kHz 16-bit WAV, with the
sentence said beside each), and measures until every recording has its transcript: the
service's CPU seconds (its own and its children's: the recogniser runs as a child) and the
word error rate of what it stored. Peers, on the same files in the same run: Debian's
`pocketsphinx_continuous` alone on the very input the service gives it (raised to 16 kHz by
linear interpolation: the service's own overhead is the difference), and on each file raised
to 16 kHz by `sox` (band-limited, the usual way), their CPU seconds and word error rates.

Printed: seconds of audio per CPU-second and WER for each; a table row for BENCHMARKS.md.

Usage: cargo build --release && python3 benches/transcription.py [--copies 10] [--workers 1]
"""
import argparse
import json
import os
import shutil
import sqlite3
import subprocess
import tempfile
import time
import wave

import importlib.util

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
SPEECH = os.path.join(ROOT, "assets/speech")
MODEL = "/usr/share/pocketsphinx/model/en-us"
spec = importlib.util.spec_from_file_location("webhooks_bench", os.path.join(HERE, "webhooks.py"))
bench = importlib.util.module_from_spec(spec)
spec.loader.exec_module(bench)


def words(text):
    out = []
    for w in text.split():
        w = "".join(c for c in w if c.isalnum() or c == "'").lower()
        if w:
            out.append(w)
    return out


def wer(said, heard):
    a, b = words(said), words(heard)
    row = list(range(len(b) + 1))
    for i, wa in enumerate(a):
        prev, row[0] = row[0], i + 1
        for j, wb in enumerate(b):
            here = row[j + 1]
            row[j + 1] = min(prev + (wa != wb), row[j] + 1, row[j + 1] + 1)
            prev = here
    return row[len(b)] / max(1, len(a))


def seconds_of(path):
    with wave.open(path) as w:
        return w.getnframes() / w.getframerate()


def tree_cpu(pid):
    """CPU seconds of a process and its reaped children (from /proc)."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    ticks = os.sysconf("SC_CLK_TCK")
    # utime, stime, cutime, cstime
    return sum(int(x) for x in fields[11:15]) / ticks


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--bin", default=os.path.join(ROOT, "target/release/ari-recorder"))
    p.add_argument("--copies", type=int, default=10)
    p.add_argument("--workers", type=int, default=1)
    args = p.parse_args()
    sentences = {name: open(os.path.join(SPEECH, f"{name}.txt")).read().strip()
                 for name in ("caller", "agent")}
    with tempfile.TemporaryDirectory() as data:
        svc = bench.Service(args.bin, data)
        svc.env.update(TRANSCRIPTION_ENGINE="pocketsphinx", TRANSCRIPTION_WORKERS=str(args.workers))
        folder = os.path.join(data, "recordings")
        old = time.time() - 3600
        files, audio_seconds = {}, 0.0
        for i in range(args.copies):
            for name in sentences:
                path = os.path.join(folder, f"{name}-{i:03d}.wav")
                shutil.copy(os.path.join(SPEECH, f"{name}.wav"), path)
                os.utime(path, (old, old))
                files[f"{name}-{i:03d}"] = name
                audio_seconds += seconds_of(path)
        began_cpu = None
        svc.start()
        began_cpu, began = tree_cpu(svc.proc.pid), time.perf_counter()
        db_path = os.path.join(data, "library.db")

        def done():
            db = sqlite3.connect(db_path)
            try:
                (n,) = db.execute("SELECT COUNT(*) FROM transcription_jobs WHERE state IN ('done', 'failed')").fetchone()
            except sqlite3.OperationalError:
                n = 0
            db.close()
            return n >= len(files)
        bench.wait_for("every recording transcribed", done, limit=1800)
        ours_wall = time.perf_counter() - began
        ours_cpu = tree_cpu(svc.proc.pid) - began_cpu
        db = sqlite3.connect(db_path)
        rows = db.execute("SELECT r.name, t.cues FROM recordings r JOIN recording_transcripts t "
                          "ON t.recording_id = r.id").fetchall()
        db.close()
        svc.stop()
        ours_wer = [wer(sentences[files[name]], " ".join(c["text"] for c in json.loads(cues)))
                    for name, cues in rows]

        peer_cpu, peer_wer = 0.0, []
        for stem, name in files.items():
            path = os.path.join(folder, f"{stem}.wav")
            raised = os.path.join(data, "raised.wav")
            t0 = os.times()
            subprocess.run(["sox", path, "-r", "16000", raised], check=True)
            out = subprocess.run(["pocketsphinx_continuous", "-infile", raised, "-logfn", "/dev/null",
                                  "-hmm", f"{MODEL}/en-us", "-lm", f"{MODEL}/en-us.lm.bin",
                                  "-dict", f"{MODEL}/cmudict-en-us.dict"],
                                 capture_output=True, text=True, check=True).stdout
            t1 = os.times()
            peer_cpu += (t1.children_user - t0.children_user) + (t1.children_system - t0.children_system)
            peer_wer.append(wer(sentences[name], out))
        # The engine alone on the very input the service gives it (8 kHz raised to 16 kHz by
        # linear interpolation, raw on standard input): the service's own overhead is the rest.
        import audioop
        same_cpu, same_wer = 0.0, []
        for stem, name in files.items():
            with wave.open(os.path.join(folder, f"{stem}.wav")) as w:
                raw = w.readframes(w.getnframes())
            raised, _ = audioop.ratecv(raw, 2, 1, 8000, 16000, None)
            t0 = os.times()
            out = subprocess.run(["pocketsphinx_continuous", "-infile", "/dev/stdin", "-logfn", "/dev/null",
                                  "-hmm", f"{MODEL}/en-us", "-lm", f"{MODEL}/en-us.lm.bin",
                                  "-dict", f"{MODEL}/cmudict-en-us.dict"],
                                 input=raised, capture_output=True, check=True).stdout.decode()
            t1 = os.times()
            same_cpu += (t1.children_user - t0.children_user) + (t1.children_system - t0.children_system)
            same_wer.append(wer(sentences[name], out))
        mean = lambda xs: sum(xs) / max(1, len(xs))
        print(f"{len(files)} recordings, {audio_seconds:.0f} s of speech; the service finished in {ours_wall:.1f} s")
        print("| | seconds of audio per CPU-second | mean WER | transcripts |")
        print("|---|---|---|---|")
        print(f"| ari-recorder (pocketsphinx engine, {args.workers} worker) | {audio_seconds / ours_cpu:.2f} "
              f"({ours_cpu:.1f} s CPU) | {mean(ours_wer):.2f} | {len(rows)} of {len(files)} |")
        print(f"| pocketsphinx_continuous alone, the same linear 16 kHz input | {audio_seconds / same_cpu:.2f} "
              f"({same_cpu:.1f} s CPU) | {mean(same_wer):.2f} | {len(same_wer)} |")
        print(f"| sox (band-limited) + pocketsphinx_continuous | {audio_seconds / peer_cpu:.2f} ({peer_cpu:.1f} s CPU) "
              f"| {mean(peer_wer):.2f} | {len(peer_wer)} |")


if __name__ == "__main__":
    main()
