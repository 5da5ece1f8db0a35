#!/usr/bin/env python3
"""An OpenAI-compatible transcription server for the tests: `POST /v1/audio/transcriptions`.

It implements the part of the API ari-recorder uses as the OpenAI reference describes it, and
recognises the audio for real: the multipart form is parsed (`file`, `model`, `language`,
`response_format`, `timestamp_granularities[]`), the WAV is read, raised to 16 kHz and handed to
Debian's `pocketsphinx_continuous`, and the answer is `verbose_json` with one segment per
utterance (or `json`, `text`). A missing or wrong bearer token answers 401, a bad form 400, in
OpenAI's error shape. Each request's form fields (never the audio) are appended to the log file
given, so a test can check what was sent.

Usage: openai_transcriptions.py PORT API_KEY LOG_FILE [POCKETSPHINX_BIN]
"""
import audioop
import email.parser
import email.policy
import http.server
import io
import json
import subprocess
import sys
import wave

PORT, KEY, LOG = int(sys.argv[1]), sys.argv[2], sys.argv[3]
BIN = sys.argv[4] if len(sys.argv) > 4 else "pocketsphinx_continuous"
MODEL = "/usr/share/pocketsphinx/model/en-us"


def recognise(wav_bytes):
    with wave.open(io.BytesIO(wav_bytes)) as w:
        if w.getsampwidth() != 2 or w.getnchannels() != 1:
            raise ValueError("16-bit mono WAV expected")
        rate, frames = w.getframerate(), w.readframes(w.getnframes())
        duration = w.getnframes() / rate
    if rate != 16000:
        frames, _ = audioop.ratecv(frames, 2, 1, rate, 16000, None)
    out = subprocess.run([BIN, "-infile", "/dev/stdin", "-time", "yes", "-logfn", "/dev/null",
                          "-hmm", f"{MODEL}/en-us", "-lm", f"{MODEL}/en-us.lm.bin",
                          "-dict", f"{MODEL}/cmudict-en-us.dict"],
                         input=frames, capture_output=True, check=True).stdout.decode()
    segments, words = [], []
    for line in out.splitlines():
        fields = line.split()
        if len(fields) != 4:
            continue
        word, start, end = fields[0], float(fields[1]), float(fields[2])
        if word == "<s>":
            words = []
        elif word == "</s>":
            if words:
                segments.append({"id": len(segments), "start": words[0][1], "end": words[-1][2],
                                 "text": " " + " ".join(w for w, _, _ in words)})
            words = []
        elif not word.startswith(("<", "[")):
            words.append((word.split("(")[0], start, end))
    return segments, duration


class Handler(http.server.BaseHTTPRequestHandler):
    def error(self, status, message, kind="invalid_request_error"):
        body = json.dumps({"error": {"message": message, "type": kind}}).encode()
        self.send_response(status)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_POST(self):
        if self.path != "/v1/audio/transcriptions":
            return self.error(404, "no such route")
        if self.headers.get("authorization") != f"Bearer {KEY}":
            return self.error(401, "Incorrect API key provided", "authentication_error")
        length = int(self.headers.get("content-length", "0"))
        raw = self.rfile.read(length)
        head = f"content-type: {self.headers.get('content-type', '')}\r\n\r\n".encode()
        form = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(head + raw)
        if not form.is_multipart():
            return self.error(400, "multipart/form-data expected")
        fields, audio = {}, None
        for part in form.iter_parts():
            name = part.get_param("name", header="content-disposition")
            if name == "file":
                audio = part.get_payload(decode=True)
                fields["file"] = part.get_filename()
            else:
                fields.setdefault(name, []).append(part.get_content().strip())
        with open(LOG, "a") as log:
            log.write(json.dumps(fields) + "\n")
        if audio is None or "model" not in fields:
            return self.error(400, "file and model are required")
        try:
            segments, duration = recognise(audio)
        except (ValueError, wave.Error, EOFError) as e:
            return self.error(400, f"could not read the audio: {e}")
        text = "".join(s["text"] for s in segments).strip()
        kind = fields.get("response_format", ["json"])[0]
        if kind == "text":
            body, ctype = text.encode(), "text/plain"
        elif kind == "verbose_json":
            language = fields.get("language", ["en"])[0]
            body = json.dumps({"task": "transcribe", "language": language, "duration": duration,
                               "text": text, "segments": segments}).encode()
            ctype = "application/json"
        else:
            body, ctype = json.dumps({"text": text}).encode(), "application/json"
        self.send_response(200)
        self.send_header("content-type", ctype)
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


http.server.ThreadingHTTPServer(("127.0.0.1", PORT), Handler).serve_forever()
