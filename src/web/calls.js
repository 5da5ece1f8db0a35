// A call as one recording (`#/calls/{id}`), and the calls in progress (`#/calls`).

import { $, REASON_TEXT, clock, confirmWith, el, say, statusBadge, when } from "./format.js";
import { api, session } from "./api.js";
import { Player } from "./player.js";
import { talkTime } from "./talk.js";

/** The call view's player (one at a time), and its newest request (a slow earlier one is dropped). */
let callPlayer = null;
let callRequest = 0;

/** Stops the call view's player (another view opens). */
export function stopCallPlayer() {
  callPlayer?.stop();
}

// ---------------------------------------------------------------------------------------------
// `#/calls/{id}`: a call as one recording, its segments marked on the waveform, each segment
// still playable alone.

export function callSource(call) {
  const path = `/api/calls/${encodeURIComponent(call.call_id)}`;
  return {
    key: `call-${call.segments[0]?.id ?? "0"}`,
    label: "Position in the call",
    duration: call.duration_seconds,
    peaks: `${path}/peaks`,
    // Call audio is read with the session itself: there is no signed link for a call.
    link: async () => `${path}/audio`,
    redactions: callRedactions(call),
    segments: call.segments
      .filter((s) => s.in_call_audio)
      .map((s) => ({ from: s.offset_seconds, to: s.offset_seconds + s.duration_seconds + s.paused_seconds })),
  };
}

/// Each segment's redacted stretches placed on the call's timeline: after its offset, and after
/// the stretches paused before them (their time is silence in the call).
export function callRedactions(call) {
  const spans = [];
  for (const segment of call.segments.filter((s) => s.in_call_audio)) {
    let gap = 0;
    for (const r of segment.redactions ?? []) {
      const from = segment.offset_seconds + r.from_seconds + gap;
      if (r.mode === "pause") {
        const length = (Date.parse(r.ended_at) - Date.parse(r.started_at)) / 1000;
        spans.push({ from_seconds: from, to_seconds: from + length, by: r.by });
        gap += length;
      } else {
        spans.push({ from_seconds: from, to_seconds: segment.offset_seconds + r.to_seconds + gap, by: r.by });
      }
    }
  }
  return spans;
}

export function segmentItem(segment) {
  const what = [segment.node, (segment.node_type ?? "").replace("_", " "), segment.callee].filter(Boolean).join(" · ");
  return el("li", { class: "segment", "data-id": segment.id },
    el("span", { class: "offset", text: `at ${clock(segment.offset_seconds)}` }), " ",
    el("span", { text: `${what} (${clock(segment.duration_seconds)})` }), " ",
    statusBadge(segment), " ",
    el("a", { href: `#/recordings/${segment.id}`, text: "Open this segment" }));
}

/// Shows call `id`; `startAt` (seconds): the player starts there (a search's match).
export async function loadCall(id, startAt = null) {
  const body = $("#call-body");
  callPlayer?.stop();
  callPlayer = null;
  const request = ++callRequest;
  body.replaceChildren(el("p", { class: "muted", text: "Loading the call..." }));
  let call;
  try {
    call = await api("GET", `/api/calls/${encodeURIComponent(id)}`);
  } catch (error) {
    if (request === callRequest) body.replaceChildren(el("p", { class: "error", text: `Could not load the call: ${error.message}` }));
    return;
  }
  if (request !== callRequest) return;
  const caller = [call.caller?.name, call.caller?.number].filter(Boolean).join(" ") || "an unknown caller";
  $("#call-title").textContent = `Call from ${caller}`;
  const summary = el("p", { class: "muted", text: `${when(call.started_at)} · ${clock(call.duration_seconds)} · ${call.segment_count} segment${call.segment_count === 1 ? "" : "s"}` });
  const segments = el("ol", { class: "segments", "aria-label": "Segments of the call" }, ...call.segments.map(segmentItem));
  // Stretches redacted while the call was live (a payment desk, a pause): listed, and banded on
  // the waveform.
  const redacted = callRedactions(call);
  const redactedList = redacted.length
    ? el("ul", { class: "redactions", "aria-label": "Redacted stretches of the call" },
      ...redacted.map((r) => el("li", { text: `Redacted ${clock(r.from_seconds)}–${clock(r.to_seconds)}${r.by ? ` (by ${r.by})` : ""}` })))
    : null;
  const playerBox = el("div", { class: "panel", tabindex: "0", "aria-label": `The whole call from ${caller}` });
  const actions = el("div", { class: "actions" });
  if (call.in_progress) {
    playerBox.append(el("p", { class: "notice", text: "Call in progress: its recording is put together when it ends" }));
  } else if (call.access.play.allowed) {
    callPlayer = new Player(playerBox, call, callSource(call));
    if (startAt) callPlayer.seek(startAt);
  } else {
    const reason = REASON_TEXT[call.access.play.reason] ?? "not permitted";
    playerBox.append(el("p", { class: "notice" }, el("strong", { text: "No call recording available" }), ` (${reason})`));
  }
  if (call.access.download.allowed && !call.in_progress) {
    actions.append(el("button", { type: "button", class: "download", text: "Download the whole call", onclick: () => confirmCallDownload(call, caller) }));
  } else if (!call.in_progress) {
    const reason = REASON_TEXT[call.access.download.reason] ?? "not permitted";
    actions.append(el("button", { type: "button", class: "download", disabled: true, "aria-disabled": "true", "aria-describedby": "call-download-reason", text: "Download the whole call" }),
      el("span", { id: "call-download-reason", class: "muted reason", text: `Download ${reason}` }));
  }
  // The deployment says what comes first: the call (per_call) or its segments (per_segment).
  const talk = call.insights && callPlayer ? talkTime(call.insights, (at) => callPlayer?.seek(at)) : null;
  const parts = (call.separation === "per_segment"
    ? [summary, segments, playerBox, talk, redactedList, actions]
    : [summary, playerBox, talk, redactedList, actions, segments]).filter(Boolean);
  body.replaceChildren(...parts);
  say(`Call from ${caller}, ${call.segment_count} segments.`);
}

export async function confirmCallDownload(call, caller) {
  $("#download-channels").hidden = true;
  $("#download-text").textContent = `Download the ${clock(call.duration_seconds)} call from ${caller} on ${when(call.started_at)} (${call.segment_count} segments) as one recording?`;
  if (!(await confirmWith($("#download-dialog")))) return;
  const anchor = el("a", { href: `/api/calls/${encodeURIComponent(call.call_id)}/download`, download: "" });
  document.body.append(anchor);
  anchor.click();
  anchor.remove();
  say("Download started (audited).");
}

// ---------------------------------------------------------------------------------------------
// Live calls: calls in progress and their recording's state; Pause / Resume for those allowed.

export const LIVE_REFRESH_MS = 3000;
export let liveTimer = null;

export function stopLiveCalls() {
  if (liveTimer) clearTimeout(liveTimer);
  liveTimer = null;
}

export const RECORDING_STATE = { recording: "Recording", muted: "Paused (muted)", paused: "Paused" };

/// Why Pause is not offered, by the switch that turned it off (`pause_off_by`).
export const PAUSE_OFF = {
  node: "Pausing is off at this step of the call",
  flow: "Pausing is off for this flow",
  redaction_inbound_calls: "Pausing is off for inbound calls",
  redaction_outbound_calls: "Pausing is off for outbound calls",
};

export async function loadLiveCalls() {
  stopLiveCalls();
  // Not while the tab is hidden: every look at live calls is audited.
  if (!document.hidden) {
    try {
      const data = await api("GET", "/api/calls");
      renderLiveCalls(data.calls);
    } catch (error) {
      if (error.status !== 401) say(`Could not load live calls: ${error.message}`);
      return;
    }
  }
  if (!$("#calls-view").hidden) liveTimer = setTimeout(loadLiveCalls, LIVE_REFRESH_MS);
}

export function renderLiveCalls(calls) {
  const body = $("#live-calls tbody");
  body.replaceChildren(...calls.map((call) => {
    const caller = [call.caller?.name, call.caller?.number].filter(Boolean).join(" ") || "unknown";
    const state = call.recording?.state;
    // Pausing turned off for this call: the button shows disabled, with the reason beside it
    // (resuming a paused recording stays possible).
    const off = state === "recording" && call.can_pause && call.pause_off_by;
    const reasonId = `pause-off-${call.id}`;
    const action = off
      ? el("span", {},
        el("button", { type: "button", class: "secondary pause-off", disabled: true, "aria-disabled": "true", "aria-describedby": reasonId, text: "Pause recording" }),
        el("span", { id: reasonId, class: "muted reason", text: PAUSE_OFF[call.pause_off_by] ?? "Pausing is off for this call" }))
      : state && call.can_pause
      ? el("button", {
        type: "button",
        class: state === "recording" ? "secondary pause" : "resume",
        text: state === "recording" ? "Pause recording" : "Resume recording",
        "aria-label": `${state === "recording" ? "Pause" : "Resume"} the recording of the call from ${caller}`,
        onclick: (event) => pauseOrResume(call, state === "recording", event.target),
      })
      : null;
    return el("tr", { "data-id": call.id },
      el("td", { "data-label": "Caller" }, caller),
      el("td", { "data-label": "Callee" }, call.callee ?? ""),
      el("td", { "data-label": "Node" }, call.node ?? ""),
      el("td", { "data-label": "Since" }, el("time", { datetime: call.started_at, text: when(call.started_at) })),
      el("td", { "data-label": "Recording", class: "recording-state" }, state ? RECORDING_STATE[state] ?? state : "Not recorded"),
      el("td", {}, action));
  }));
  $("#no-calls").hidden = calls.length > 0;
}

export async function pauseOrResume(call, pause, button) {
  button.disabled = true;
  try {
    await api("POST", `/api/calls/${encodeURIComponent(call.id)}/recording/${pause ? "pause" : "resume"}`);
    say(pause ? "Recording paused." : "Recording resumed.");
  } catch (error) {
    say(`Not changed: ${error.message}`);
  }
  await loadLiveCalls();
}

document.addEventListener("visibilitychange", () => {
  if (!document.hidden && !$("#calls-view").hidden) loadLiveCalls();
});
