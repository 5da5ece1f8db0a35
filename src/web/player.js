// The player: a recording's waveform and audio, and its transcript beside it.

import { $, clock, el, say, when } from "./format.js";
import { api } from "./api.js";

/** Waveform sizes the server offers (`/peaks?points=`). */
export const PEAK_POINTS = [100, 200, 400, 800, 1600, 3200];

// ---------------------------------------------------------------------------------------------
// The player: waveform from the peaks endpoint, audio streamed through HTTP Range from a
// short-lived signed link (renewed when it expires mid-listen).

/// What a player plays: a recording (through short-lived signed links) or a whole call.
export function recordingSource(rec) {
  const source = {
    key: String(rec.id),
    label: "Position in the recording",
    duration: rec.duration_seconds,
    peaks: `/api/recordings/${rec.id}/peaks`,
    // A dual-channel recording can also play in stereo (caller left, agent right).
    stereo: false,
    canStereo: Boolean(rec.dual_channel),
    link: async () => {
      const url = (await api("POST", `/api/recordings/${rec.id}/play-url`)).url;
      return source.stereo ? `${url}&channels=dual` : url;
    },
    redactions: rec.redactions ?? [],
    segments: [],
  };
  return source;
}

export class Player {
  constructor(container, rec, source = recordingSource(rec)) {
    this.rec = rec;
    this.source = source;
    this.duration = source.duration;
    this.audio = el("audio", { preload: "metadata" });
    this.canvas = el("canvas", {
      class: "wave",
      role: "slider",
      // Reachable by keyboard: arrow keys seek (handled on the panel).
      tabindex: "0",
      "aria-label": source.label,
      "aria-valuemin": "0",
      "aria-valuemax": String(Math.round(this.duration)),
      "aria-valuenow": "0",
      "aria-valuetext": `0:00 of ${clock(this.duration)}`,
    });
    this.playButton = el("button", { type: "button", class: "play", text: "Play", "aria-label": "Play" });
    this.elapsed = el("span", { class: "elapsed", text: "0:00" });
    this.total = el("span", { class: "total", text: clock(this.duration) });
    this.speed = el("select", { id: `speed-${source.key}`, class: "speed" },
      ...[0.5, 0.75, 1, 1.25, 1.5, 2].map((rate) => el("option", { value: String(rate), selected: rate === 1, text: `${rate}×` })));
    this.volume = el("input", { id: `volume-${source.key}`, class: "volume", type: "range", min: "0", max: "1", step: "0.05", value: "1" });
    // The visible words are the name (speech control users say what they see).
    const back = el("button", { type: "button", class: "back", text: "Back 5 s", onclick: () => this.seekBy(-5) });
    const forward = el("button", { type: "button", class: "forward", text: "Forward 5 s", onclick: () => this.seekBy(5) });
    this.stereoBox = source.canStereo
      ? el("input", { type: "checkbox", id: `stereo-${source.key}`, class: "stereo" })
      : null;
    container.append(
      el("div", { class: "player" },
        this.canvas,
        el("div", { class: "controls" },
          back, this.playButton, forward,
          el("span", { class: "time", "aria-live": "off" }, this.elapsed, " / ", this.total),
          el("label", { for: `speed-${source.key}` }, "Speed ", this.speed),
          el("label", { for: `volume-${source.key}` }, "Volume ", this.volume),
          this.stereoBox ? el("label", { for: `stereo-${source.key}` }, this.stereoBox, " Stereo: caller left, agent right") : null),
        el("p", { class: "muted hint", text: "Keys when this panel has focus: Space plays or pauses, Left and Right move 5 seconds." }),
        this.audio));
    this.panel = container.closest(".panel");
    this.peaks = [];
    this.bind();
    this.load();
  }

  bind() {
    this.playButton.addEventListener("click", () => this.toggle());
    this.stereoBox?.addEventListener("change", () => this.setStereo(this.stereoBox.checked));
    this.speed.addEventListener("change", () => { this.audio.playbackRate = Number(this.speed.value); });
    this.volume.addEventListener("input", () => { this.audio.volume = Number(this.volume.value); });
    this.audio.addEventListener("timeupdate", () => {
      this.update();
      this.onTime?.(this.audio.currentTime || 0);
    });
    this.audio.addEventListener("play", () => this.update());
    this.audio.addEventListener("pause", () => this.update());
    this.audio.addEventListener("loadedmetadata", () => {
      if (Number.isFinite(this.audio.duration)) this.duration = this.audio.duration;
      this.total.textContent = clock(this.duration);
      this.audio.playbackRate = Number(this.speed.value);
    });
    // An expired playback link shows as a media error: get a new one, but not in a loop when
    // the refusal is for good (consent withdrawn, recording deleted).
    this.audio.addEventListener("error", () => {
      if (Date.now() - (this.renewedAt ?? 0) > 10_000) this.renew();
      else say("Playback stopped: the recording is no longer available to you.");
    });
    // Click or drag on the waveform to seek.
    let dragging = false;
    const seekTo = (event) => {
      const box = this.canvas.getBoundingClientRect();
      const fraction = Math.min(1, Math.max(0, (event.clientX - box.left) / box.width));
      this.seek(fraction * this.duration);
    };
    this.canvas.addEventListener("pointerdown", (event) => {
      dragging = true;
      this.canvas.setPointerCapture(event.pointerId);
      seekTo(event);
    });
    this.canvas.addEventListener("pointermove", (event) => { if (dragging) seekTo(event); });
    this.canvas.addEventListener("pointerup", () => { dragging = false; });
    this.onKey = (event) => {
      const target = event.target;
      if (target.closest("button, select, input, a")) return;
      if (event.key === " " || event.code === "Space") {
        event.preventDefault();
        this.toggle();
      } else if (event.key === "ArrowLeft") {
        event.preventDefault();
        this.seekBy(-5);
      } else if (event.key === "ArrowRight") {
        event.preventDefault();
        this.seekBy(5);
      }
    };
    this.panel.addEventListener("keydown", this.onKey);
    this.onResize = () => this.draw();
    window.addEventListener("resize", this.onResize);
  }

  /// The waveform only: playback access (a signed link, audited) is asked for when the user
  /// plays or seeks, not when the panel opens.
  async load() {
    // The server draws waveforms in a few sizes only: the smallest as wide as the canvas.
    const width = Math.round(this.canvas.clientWidth || 800);
    const points = PEAK_POINTS.find((n) => n >= width) ?? PEAK_POINTS[PEAK_POINTS.length - 1];
    try {
      const data = await api("GET", `${this.source.peaks}?points=${points}`);
      this.peaks = data.peaks;
    } catch (error) {
      say(`No waveform: ${error.message}`);
    }
    this.draw();
  }

  /// Switches between the mix and the stereo version (each party on its own side), keeping the
  /// position; the waveform shows each party on its own then.
  async setStereo(on) {
    this.source.stereo = on;
    this.channelPeaks = null;
    if (on) {
      const width = Math.round(this.canvas.clientWidth || 800);
      const points = PEAK_POINTS.find((n) => n >= width) ?? PEAK_POINTS[PEAK_POINTS.length - 1];
      try {
        const data = await api("GET", `${this.source.peaks}?points=${points}&channels=dual`);
        this.channelPeaks = [data.channels.caller, data.channels.agent];
      } catch (error) {
        say(`No stereo waveform: ${error.message}`);
      }
    }
    if (this.audio.getAttribute("src")) await this.renew();
    this.draw();
    say(on ? "Stereo: the caller on the left, the agent on the right." : "Both parties mixed.");
  }

  /// A fresh signed playback link, keeping the position (links are short-lived).
  async renew() {
    if (this.renewing) return;
    this.renewing = true;
    this.renewedAt = Date.now();
    try {
      const position = this.audio.currentTime || 0;
      const wasPlaying = !this.audio.paused;
      this.audio.src = await this.source.link();
      if (position > 0) this.audio.currentTime = position;
      if (wasPlaying) await this.audio.play().catch(() => {});
    } catch (error) {
      say(`Playback unavailable: ${error.message}`);
    } finally {
      this.renewing = false;
    }
  }

  /// The playback link, asked for the first time it is needed.
  async ensureLink() {
    if (!this.audio.getAttribute("src")) await this.renew();
    return Boolean(this.audio.getAttribute("src"));
  }

  async toggle() {
    if (this.audio.paused) {
      if (!(await this.ensureLink())) return;
      try {
        await this.audio.play();
      } catch (error) {
        say(`Cannot play: ${error.message}`);
      }
    } else {
      this.audio.pause();
    }
  }

  seek(seconds) {
    if (!this.audio.getAttribute("src")) {
      this.ensureLink().then((ready) => {
        if (ready) this.audio.addEventListener("loadedmetadata", () => this.seek(seconds), { once: true });
      });
      return;
    }
    const end = Number.isFinite(this.audio.duration) ? this.audio.duration : this.duration;
    this.audio.currentTime = Math.min(Math.max(0, seconds), end);
    this.update();
  }

  seekBy(delta) {
    this.seek((this.audio.currentTime || 0) + delta);
  }

  stop() {
    this.audio.pause();
    this.audio.removeAttribute("src");
    this.audio.load();
    this.panel?.removeEventListener("keydown", this.onKey);
    window.removeEventListener("resize", this.onResize);
  }

  update() {
    const now = this.audio.currentTime || 0;
    this.elapsed.textContent = clock(now);
    const playing = !this.audio.paused;
    this.playButton.textContent = playing ? "Pause" : "Play";
    this.playButton.setAttribute("aria-label", playing ? "Pause" : "Play");
    this.canvas.setAttribute("aria-valuenow", String(Math.round(now)));
    this.canvas.setAttribute("aria-valuetext", `${clock(now)} of ${clock(this.duration)}`);
    this.draw();
  }

  draw() {
    const canvas = this.canvas;
    const ratio = window.devicePixelRatio || 1;
    const width = Math.max(1, canvas.clientWidth);
    const height = Math.max(1, canvas.clientHeight);
    if (canvas.width !== Math.round(width * ratio)) canvas.width = Math.round(width * ratio);
    if (canvas.height !== Math.round(height * ratio)) canvas.height = Math.round(height * ratio);
    const context = canvas.getContext("2d");
    context.setTransform(ratio, 0, 0, ratio, 0, 0);
    context.clearRect(0, 0, width, height);
    const played = this.duration > 0 ? (this.audio.currentTime || 0) / this.duration : 0;
    const styles = getComputedStyle(canvas);
    // Mixed: one waveform; stereo: the caller above, the agent below.
    const lanes = this.channelPeaks ?? [this.peaks];
    const laneHeight = height / lanes.length;
    lanes.forEach((peaks, lane) => {
      const middle = laneHeight * lane + laneHeight / 2;
      const half = laneHeight / 2;
      const count = peaks.length;
      for (let x = 0; x < width; x++) {
        const peak = count ? peaks[Math.min(count - 1, Math.floor((x / width) * count))] : [0, 0];
        const low = (peak[0] / 32768) * half;
        const high = (peak[1] / 32768) * half;
        context.fillStyle = x / width <= played ? styles.getPropertyValue("--wave-played") : styles.getPropertyValue("--wave");
        context.fillRect(x, middle - Math.max(high, 0.5), 1, Math.max(1, high - low));
      }
    });
    // Redacted stretches: a band over muted audio, a tick where paused audio was left out.
    if (this.duration > 0) {
      context.fillStyle = styles.getPropertyValue("--wave-redacted");
      for (const r of this.source.redactions) {
        const from = (r.from_seconds / this.duration) * width;
        const to = (r.to_seconds / this.duration) * width;
        context.fillRect(from, 0, Math.max(2, to - from), height);
      }
    }
    // A call's segments: a line where each begins.
    if (this.duration > 0 && this.source.segments.length > 1) {
      context.fillStyle = styles.getPropertyValue("--wave-segment");
      for (const segment of this.source.segments) {
        context.fillRect(Math.min(width - 1, (segment.from / this.duration) * width), 0, 1, height);
      }
    }
    context.fillStyle = styles.getPropertyValue("--wave-cursor");
    context.fillRect(Math.min(width - 2, played * width), 0, 2, height);
  }
}

// ---------------------------------------------------------------------------------------------
// A recording's transcript beside its player: the line being spoken is highlighted as the audio
// plays, a line clicked (or Enter on it) seeks there, and a search box finds lines.

export async function showTranscript(container, rec, player) {
  const box = el("section", { class: "transcript", "aria-label": "Transcript" });
  container.append(box);
  let data;
  try {
    data = await api("GET", `/api/recordings/${rec.id}/transcript`);
  } catch (error) {
    box.append(el("p", { class: "muted", text: `No transcript: ${error.message}` }));
    return;
  }
  const search = el("input", { type: "search", id: `transcript-search-${rec.id}`, class: "transcript-search", placeholder: "Search the transcript" });
  const found = el("span", { class: "muted", "aria-live": "polite" });
  const lines = data.cues.map((cue) => el("li", {
    tabindex: "0",
    "data-start": String(cue.start),
    "data-end": String(cue.end),
  },
  el("span", { class: "cue-time", text: clock(cue.start) }), " ",
  cue.speaker ? el("strong", { class: "cue-speaker", text: `${cue.speaker}: ` }) : null,
  el("span", { class: "cue-text", text: cue.text })));
  const list = el("ol", { class: "cues" }, ...lines);
  box.append(
    el("h4", { text: `Transcript (${data.source === "sidecar" ? "from its file" : "attached"})` }),
    el("label", { for: search.id, class: "visually-hidden", text: "Search the transcript" }), search, " ", found,
    list);
  for (const line of lines) {
    const seek = () => player.seek(Number(line.dataset.start));
    line.addEventListener("click", seek);
    line.addEventListener("keydown", (event) => {
      if (event.key === "Enter") {
        event.preventDefault();
        seek();
      }
    });
  }
  let current = null;
  player.onTime = (seconds) => {
    const line = lines.find((l) => seconds >= Number(l.dataset.start) && seconds < Number(l.dataset.end)) ?? null;
    if (line === current) return;
    current?.classList.remove("current");
    current?.removeAttribute("aria-current");
    current = line;
    if (line) {
      line.classList.add("current");
      line.setAttribute("aria-current", "true");
      line.scrollIntoView({ block: "nearest" });
    }
  };
  search.addEventListener("input", () => {
    const query = search.value.trim().toLowerCase();
    let matches = 0;
    for (const line of lines) {
      const hit = query !== "" && line.textContent.toLowerCase().includes(query);
      line.classList.toggle("match", hit);
      if (hit) matches += 1;
    }
    found.textContent = query ? `${matches} line${matches === 1 ? "" : "s"} found` : "";
    lines.find((l) => l.classList.contains("match"))?.scrollIntoView({ block: "nearest" });
  });
}
