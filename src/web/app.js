// The recordings page's entry module: sign-in, routing, the list and a recording's panel. Plain ES
// modules, no build step; they use only the public API.
//
// Views live in the URL hash (#/recordings?caller=555&status=ready, #/flows) so a reviewer can
// share a link with a colleague who has the same rights.

import { $, REASON_TEXT, VALUES, clock, confirmWith, el, noAudioReason, say, statusBadge, valueLabel, when } from "./format.js";
import { api, onSignedOut, session } from "./api.js";
import { Player, showTranscript } from "./player.js";
import { loadCall, loadLiveCalls, stopCallPlayer, stopLiveCalls } from "./calls.js";
import { loadFlows } from "./flows.js";
import { loadWebhooks } from "./webhooks.js";
import { talkTime } from "./talk.js";
import { loadVoicemail } from "./voicemail.js";

// The filters' choices, before any view sets them from the URL.
for (const select of document.querySelectorAll("select[data-values]")) {
  for (const value of VALUES[select.dataset.values] ?? []) {
    select.append(el("option", { value, text: valueLabel(value) }));
  }
}

// ---------------------------------------------------------------------------------------------
// Sign in and out

function showOnly(id) {
  if (id !== "calls-view") stopLiveCalls();
  if (id !== "call-view") stopCallPlayer();
  for (const view of ["sign-in-view", "recordings-view", "calls-view", "call-view", "voicemail-view", "flows-view", "webhooks-view"]) {
    $(`#${view}`).hidden = view !== id;
  }
}

function showSignIn(message = "") {
  session.user = null;
  session.csrf = null;
  $("#nav").hidden = true;
  $("#who").hidden = true;
  showOnly("sign-in-view");
  $("#sign-in-error").textContent = message;
  $("#username").focus();
}

function signedIn(data) {
  session.user = data.user;
  session.csrf = data.csrf_token;
  session.can = data.can ?? {};
  $("#who-name").textContent = `${data.user.username} (${data.user.role}, ${data.user.tenant})`;
  $("#who").hidden = false;
  $("#nav").hidden = false;
  $("#nav-flows").hidden = !session.can.edit_flows;
  $("#nav-webhooks").hidden = !session.can.administer;
}

$("#sign-in").addEventListener("submit", async (event) => {
  event.preventDefault();
  $("#sign-in-error").textContent = "";
  try {
    const data = await api("POST", "/api/session", {
      username: $("#username").value,
      password: $("#password").value,
    });
    $("#password").value = "";
    signedIn(data);
    route();
  } catch (error) {
    $("#sign-in-error").textContent = error.status === 401 ? "Wrong user name or password." : error.message;
  }
});

$("#sign-out").addEventListener("click", async () => {
  try { await api("DELETE", "/api/session"); } catch { /* the session may be gone already */ }
  showSignIn("Signed out.");
});

// ---------------------------------------------------------------------------------------------
// Routing: #/recordings?<filters>&cursor=... and #/flows

function parseHash() {
  const hash = location.hash.replace(/^#/, "") || "/recordings";
  const [path, query = ""] = hash.split("?");
  return { path, params: new URLSearchParams(query) };
}

function go(path, params) {
  const query = params && [...params].length ? `?${params}` : "";
  location.hash = `#${path}${query}`;
}

async function route() {
  if (!session.user) return;
  const { path, params } = parseHash();
  for (const link of document.querySelectorAll("#nav a")) {
    // `aria-current` present but empty means false: name what it is, or leave it off.
    if (link.getAttribute("href") === `#${path}`) link.setAttribute("aria-current", "page");
    else link.removeAttribute("aria-current");
  }
  if (path === "/flows" && session.can.edit_flows) {
    showOnly("flows-view");
    await loadFlows();
  } else if (path === "/webhooks" && session.can.administer) {
    showOnly("webhooks-view");
    await loadWebhooks();
  } else if (path === "/voicemail") {
    showOnly("voicemail-view");
    await loadVoicemail();
  } else if (path === "/calls") {
    showOnly("calls-view");
    await loadLiveCalls();
  } else if (/^\/calls\/.+$/.test(path)) {
    showOnly("call-view");
    const at = Number(params.get("t"));
    await loadCall(decodeURIComponent(path.slice("/calls/".length)), Number.isFinite(at) && at > 0 ? at : null);
  } else if (/^\/recordings\/\d+$/.test(path)) {
    showOnly("recordings-view");
    await loadOneRecording(Number(path.split("/")[2]));
  } else {
    showOnly("recordings-view");
    await loadRecordings(params);
  }
}

window.addEventListener("hashchange", route);

// ---------------------------------------------------------------------------------------------
// Recordings list

const FILTERS = ["q", "name", "caller", "callee", "node_type", "direction", "status", "from", "to", "min_duration", "sort", "group"];

/// The API query for the page's filters; dates are local days.
function apiQuery(params) {
  const query = new URLSearchParams();
  for (const key of FILTERS) {
    const value = params.get(key);
    if (!value) continue;
    if (key === "from") query.set("from", new Date(`${value}T00:00`).toISOString());
    else if (key === "to") {
      const end = new Date(`${value}T00:00`);
      end.setDate(end.getDate() + 1);
      query.set("to", end.toISOString());
    } else if (key === "sort" && params.get("group") === "call") {
      // Calls are listed newest first only.
    } else query.set(key, value);
  }
  if (params.get("cursor")) query.set("cursor", params.get("cursor"));
  query.set("limit", params.get("limit") || "25");
  return query;
}

let current = { params: new URLSearchParams(), next: null };
/// Only the newest list request may fill the table: a slow earlier answer is dropped.
let listRequest = 0;

/// A list request starts: the table is busy (assistive technology waits, and so can a test)
/// until the newest request has landed.
function listLoading() {
  $("#recordings").setAttribute("aria-busy", "true");
  return ++listRequest;
}

/// Whether `request` is still the newest; if so the table is no longer busy.
function listLoaded(request) {
  if (request !== listRequest) return false;
  $("#recordings").removeAttribute("aria-busy");
  return true;
}

const phone = window.matchMedia("(max-width: 40rem)");

async function loadRecordings(params) {
  let filtered = false;
  for (const key of FILTERS) {
    const field = $(`#f-${key}`);
    if (field) field.value = params.get(key) ?? "";
    filtered ||= Boolean(params.get(key));
  }
  // On a phone the filters fold away unless a search is on, so the list comes first.
  if (phone.matches && !filtered) $("#filters-box").open = false;
  const body = $("#recordings tbody");
  say("Loading recordings...");
  const request = listLoading();
  let page;
  try {
    page = await api("GET", `/api/recordings?${apiQuery(params)}`);
  } catch (error) {
    if (request === listRequest && error.status !== 401) say(`Could not load recordings: ${error.message}`);
    listLoaded(request);
    return;
  }
  if (!listLoaded(request)) return;
  current = { params, next: page.next_cursor };
  // The export takes the same filters, every page of them.
  const exported = apiQuery(params);
  exported.delete("cursor");
  exported.delete("limit");
  exported.delete("group");
  $("#export-csv").href = `/api/recordings/export.csv${exported.size ? `?${exported}` : ""}`;
  // Players of the rows being replaced stop, and drop their window and key listeners.
  for (const panel of body.querySelectorAll(".panel")) panel.player?.stop();
  // One row per call (the call log), or one per recording.
  const byCall = Array.isArray(page.calls);
  const rows = byCall ? page.calls : page.recordings;
  $("#recordings-wrap").hidden = byCall;
  $("#calls-wrap").hidden = !byCall;
  body.replaceChildren(...(byCall ? [] : page.recordings.flatMap(recordingRows)));
  $("#call-rows tbody").replaceChildren(...(byCall ? page.calls.map(callRow) : []));
  $("#recordings-title").textContent = byCall ? "Calls" : "Recordings";
  updateZipLink();
  $("#empty").hidden = rows.length > 0;
  $("#next-page").disabled = !page.next_cursor;
  $("#prev-page").disabled = !params.get("cursor");
  $("#first-page").disabled = !params.get("cursor");
  const noun = byCall ? ["call", "calls"] : ["recording", "recordings"];
  say(`${rows.length} ${noun[rows.length === 1 ? 0 : 1]}${page.next_cursor ? ", more on the next page" : ""}.`);
}

/// A row of the call log: the call (opened in the call view), its segments, and where the words
/// searched for are said (each opens the call there).
function callRow(call) {
  const caller = [call.caller?.name, call.caller?.number].filter(Boolean).join(" ") || "unknown";
  const only = call.segments[0];
  const href = call.call_id ? `#/calls/${encodeURIComponent(call.call_id)}` : `#/recordings/${only?.id}`;
  const callStart = Date.parse(call.started_at);
  const said = call.segments.filter((s) => s.match).map((s) => {
    // Where in the call: the segment's start after the call's, and the line's in the segment.
    const at = Math.max((Date.parse(s.started_at) - callStart) / 1000, 0) + s.match.start_seconds;
    const text = `“${s.match.snippet}” ${clock(at)}${s.match.speaker ? ` (${s.match.speaker})` : ""}`;
    return el("a", {
      class: "said",
      href: call.call_id ? `${href}?t=${at.toFixed(1)}` : `#/recordings/${s.id}`,
      "aria-label": `Play the call from ${clock(at)}, where ${s.match.speaker ?? "someone"} says: ${s.match.snippet}`,
      text,
    });
  });
  const what = [...new Set(call.segments.map((s) => (s.node_type ?? "").replace("_", " ")).filter(Boolean))].join(", ");
  return el("tr", { "data-call": call.call_id ?? "" },
    el("td", { "data-label": "Caller" }, el("a", { href, class: "open-call", "aria-label": `Open the call from ${caller}`, text: caller }), ...said),
    el("td", { "data-label": "Segments" }, `${call.segment_count}${what ? ` (${what})` : ""}`),
    el("td", { "data-label": "Direction" }, call.direction ?? ""),
    el("td", { "data-label": "Duration" }, clock(call.duration_seconds)),
    el("td", { "data-label": "Date and time" }, el("time", { datetime: call.started_at, text: when(call.started_at) })),
    el("td", { "data-label": "Flow" }, call.flow ?? ""));
}

/// `#/recordings/{id}`: one recording, its panel open, a link to share or reload.
async function loadOneRecording(id) {
  const body = $("#recordings tbody");
  const request = listLoading();
  let rec;
  try {
    rec = await api("GET", `/api/recordings/${id}`);
  } catch (error) {
    if (request === listRequest && error.status !== 401) say(`Could not load recording ${id}: ${error.message}`);
    if (listLoaded(request)) body.replaceChildren();
    return;
  }
  if (!listLoaded(request)) return;
  for (const panel of body.querySelectorAll(".panel")) panel.player?.stop();
  const rows = recordingRows(rec);
  body.replaceChildren(...rows);
  $("#empty").hidden = true;
  for (const button of ["#next-page", "#prev-page"]) $(button).disabled = true;
  $("#first-page").disabled = false;
  rows[0].querySelector("button.expand").click();
  say(`Recording ${id}.`);
}

function filtersFromForm() {
  const params = new URLSearchParams();
  for (const key of FILTERS) {
    const value = $(`#f-${key}`).value.trim();
    if (value) params.set(key, value);
  }
  return params;
}

$("#filters").addEventListener("submit", (event) => {
  event.preventDefault();
  go("/recordings", filtersFromForm());
});

$("#clear-filters").addEventListener("click", () => go("/recordings", new URLSearchParams()));

// Keyset pages go forward only, so the link keeps the cursors of the pages before this one
// (`back`, comma-separated; cursors are base64url): "Previous page" works from a shared link too.
$("#next-page").addEventListener("click", () => {
  if (!current.next) return;
  const params = new URLSearchParams(current.params);
  const back = params.get("back") ? params.get("back").split(",") : [];
  back.push(params.get("cursor") ?? "");
  params.set("back", back.join(","));
  params.set("cursor", current.next);
  go("/recordings", params);
});

$("#prev-page").addEventListener("click", () => {
  const params = new URLSearchParams(current.params);
  const back = params.get("back") ? params.get("back").split(",") : [];
  const previous = back.pop() ?? "";
  if (previous) params.set("cursor", previous);
  else params.delete("cursor");
  if (back.length) params.set("back", back.join(","));
  else params.delete("back");
  go("/recordings", params);
});

$("#first-page").addEventListener("click", () => {
  const params = new URLSearchParams(current.params);
  params.delete("cursor");
  params.delete("back");
  go("/recordings", params);
});

/// The ZIP link names the picked recordings (none picked: no link).
function updateZipLink() {
  const ids = [...document.querySelectorAll("#recordings input.pick:checked")].map((i) => i.value);
  const link = $("#export-zip");
  link.hidden = ids.length === 0;
  link.href = `/api/recordings/export.zip?ids=${ids.join(",")}`;
  link.textContent = `Download the ${ids.length} picked as ZIP`;
}

/// A recording's row and its (closed) panel row.
function recordingRows(rec) {
  const panelId = `panel-${rec.id}`;
  const caller = [rec.caller?.name, rec.caller?.number].filter(Boolean).join(" ") || "unknown";
  const toggle = el("button", {
    type: "button",
    class: "expand",
    "aria-expanded": "false",
    "aria-controls": panelId,
    "aria-label": `Open the recording of the call from ${caller}`,
    text: "▸",
  });
  // Recordings the user may download can be picked for one ZIP.
  const pick = rec.access?.download?.allowed
    ? el("input", { type: "checkbox", class: "pick", value: String(rec.id), "aria-label": `Add the recording of the call from ${caller} to the ZIP download`, onchange: updateZipLink })
    : null;
  // A search of what was said: where, and a way straight to that moment.
  const said = rec.match
    ? el("button", {
      type: "button",
      class: "said",
      "aria-label": `Play from ${clock(rec.match.start_seconds)}, where ${rec.match.speaker ?? "someone"} says: ${rec.match.snippet}`,
      text: `“${rec.match.snippet}” ${clock(rec.match.start_seconds)}${rec.match.speaker ? ` (${rec.match.speaker})` : ""}`,
      onclick: () => {
        if (toggle.getAttribute("aria-expanded") !== "true") {
          toggle.setAttribute("aria-expanded", "true");
          toggle.textContent = "▾";
          panelRow.hidden = false;
          openPanel($(`#${panelId}`), rec.id, row, rec.match.start_seconds);
        } else {
          $(`#${panelId}`).player?.seek(rec.match.start_seconds);
        }
      },
    })
    : null;
  const row = el("tr", { "data-id": rec.id },
    el("td", {}, toggle, pick),
    el("td", { "data-label": "Caller" }, caller, said),
    el("td", { "data-label": "Callee" }, rec.callee ?? ""),
    el("td", { "data-label": "Node" }, rec.node_type === "fallback"
      ? el("span", { class: "badge", title: "Recorded by Asterisk's dialplan fallback while ari-recorder was away", text: "fallback (service away)" })
      : (rec.node_type ?? "").replace("_", " ")),
    el("td", { "data-label": "Direction" }, rec.direction ?? ""),
    el("td", { "data-label": "Duration" }, clock(rec.duration_seconds)),
    el("td", { "data-label": "Date and time" }, el("time", { datetime: rec.started_at, text: when(rec.started_at) })),
    el("td", { "data-label": "Status", class: "status-cell" }, statusBadge(rec)),
  );
  const panelRow = el("tr", { class: "panel-row", hidden: true },
    el("td", { colspan: "8" }, el("section", { id: panelId, class: "panel", tabindex: "0", "aria-label": `Call Recording: ${caller}` })));
  toggle.addEventListener("click", () => {
    const open = toggle.getAttribute("aria-expanded") === "true";
    toggle.setAttribute("aria-expanded", String(!open));
    toggle.textContent = open ? "▸" : "▾";
    panelRow.hidden = open;
    const panel = $(`#${panelId}`);
    if (open) {
      panel.player?.stop();
      panel.replaceChildren();
    } else {
      openPanel(panel, rec.id, row);
    }
  });
  return [row, panelRow];
}

// ---------------------------------------------------------------------------------------------
// The Call Recording panel: nothing is fetched until it opens.

async function openPanel(panel, id, row, startAt) {
  panel.replaceChildren(el("p", { class: "muted", text: "Loading recording..." }));
  let rec;
  try {
    rec = await api("GET", `/api/recordings/${id}`);
  } catch (error) {
    panel.replaceChildren(el("p", { class: "error", text: `Could not load the recording: ${error.message}` }));
    return;
  }
  const heading = el("h3", {}, "Call Recording ",
    el("a", { href: `#/recordings/${rec.id}`, class: "permalink", text: "Link to this recording" }),
    rec.call_id ? " " : null,
    rec.call_id ? el("a", { href: `#/calls/${encodeURIComponent(rec.call_id)}`, class: "call-link", text: "The whole call" }) : null);
  const indicators = el("p", { class: "indicators" },
    el("span", { class: `badge consent-${rec.consent}`, text: `Consent: ${rec.consent}` }),
    el("span", { class: `badge compliance-${rec.compliance}`, text: `Compliance: ${rec.compliance.replace("_", " ")}` }),
    rec.private ? el("span", { class: "badge", text: "Private" }) : null,
    rec.hold ? el("span", { class: "badge hold", text: `Legal hold: ${rec.hold.reason}` }) : null,
  );
  const actions = el("div", { class: "actions" });
  const body = el("div", { class: "panel-body" });
  panel.replaceChildren(heading, indicators, body, actions);
  // Stretches paused or muted while the call was live (card numbers, diagnoses): listed, and
  // marked on the waveform.
  const redactions = rec.redactions ?? [];
  if (redactions.length) {
    panel.insertBefore(el("ul", { class: "redactions", "aria-label": "Redacted stretches" },
      ...redactions.map((r) => el("li", {
        text: r.mode === "mute"
          ? `Muted ${clock(r.from_seconds)}–${clock(r.to_seconds)} (by ${r.by})`
          : `Paused at ${clock(r.from_seconds)}: ${Math.round((Date.parse(r.ended_at) - Date.parse(r.started_at)) / 1000)} s left out (by ${r.by})`,
      }))), body);
  }

  if (rec.status === "recording") {
    body.append(el("p", { class: "notice", text: "Recording in progress" }));
  } else if (rec.status === "ready" && rec.access.play.allowed) {
    panel.player = new Player(body, rec);
    if (rec.insights) body.append(talkTime(rec.insights, (at) => panel.player?.seek(at)));
    if (rec.has_transcript) showTranscript(body, rec, panel.player);
    // Opened from a search of what was said: at that moment.
    if (startAt) panel.player.seek(startAt);
  } else {
    body.append(el("p", { class: "notice" }, el("strong", { text: "No recording available" }), ` (${noAudioReason(rec)})`));
    if (rec.status === "ready") {
      body.append(el("button", { type: "button", disabled: true, "aria-disabled": "true", text: "Play", title: noAudioReason(rec) }));
    }
  }
  if (rec.access.download.allowed) {
    actions.append(el("button", { type: "button", class: "download", text: "Download", onclick: () => confirmDownload(rec) }));
  } else if (rec.status !== "deleted") {
    // Reasons, not absences: a blocked Download says why (consent, compliance, entitlement, role).
    const reason = REASON_TEXT[rec.access.download.reason] ?? "not permitted";
    actions.append(el("button", {
      type: "button",
      class: "download",
      disabled: true,
      "aria-disabled": "true",
      "aria-describedby": `download-reason-${rec.id}`,
      text: "Download",
    }), el("span", { id: `download-reason-${rec.id}`, class: "muted reason", text: `Download ${reason}` }));
  }
  if (rec.access.delete.allowed && !["deleted", "purged"].includes(rec.status)) {
    actions.append(el("button", {
      type: "button",
      class: "danger delete",
      text: "Delete",
      onclick: () => confirmDelete(rec, panel, row),
    }));
  } else if (rec.access.delete.reason === "on_hold") {
    // Reasons, not absences: a held recording's Delete says why it cannot be used.
    actions.append(el("button", {
      type: "button",
      class: "danger delete",
      disabled: true,
      "aria-disabled": "true",
      "aria-describedby": `delete-reason-${rec.id}`,
      text: "Delete",
    }), el("span", { id: `delete-reason-${rec.id}`, class: "muted reason", text: "Delete blocked: the recording is on legal hold" }));
  }
  // Admins place and release legal holds (with a reason; audited).
  if (rec.access.set_status.allowed && !["deleted", "purged"].includes(rec.status)) {
    actions.append(rec.hold
      ? el("button", { type: "button", class: "secondary release", text: "Release hold", onclick: () => releaseHold(rec, panel, row) })
      : el("button", { type: "button", class: "secondary hold", text: "Place on legal hold", onclick: () => placeHold(rec, panel, row) }));
  }
  if (rec.access.set_status.allowed && rec.status !== "deleted") {
    panel.append(statusForm(rec, panel, row));
  }
}

/// Admins record consent and compliance; the panel redraws with what that allows.
function statusForm(rec, panel, row) {
  const choice = (name, label, values, current) => {
    const id = `${name}-${rec.id}`;
    return el("div", {},
      el("label", { for: id, text: label }),
      el("select", { id, name }, ...values.map((v) => el("option", { value: v, selected: v === current, text: valueLabel(v) }))));
  };
  const form = el("form", { class: "status-form", "aria-label": "Consent and compliance" },
    choice("consent", "Consent", VALUES.consent ?? [], rec.consent),
    choice("compliance", "Compliance", VALUES.compliance ?? [], rec.compliance),
    el("button", { type: "submit", class: "secondary", text: "Save status" }));
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    try {
      await api("PATCH", `/api/recordings/${rec.id}`, {
        consent: form.elements.consent.value,
        compliance: form.elements.compliance.value,
      });
      panel.player?.stop();
      await openPanel(panel, rec.id, row);
      say(`Recording ${rec.id}: consent ${form.elements.consent.value}, compliance ${form.elements.compliance.value} (audited).`);
    } catch (error) {
      say(`Status not changed: ${error.message}`);
    }
  });
  return form;
}

function describe(rec) {
  const caller = [rec.caller?.name, rec.caller?.number].filter(Boolean).join(" ") || "an unknown caller";
  return `the ${clock(rec.duration_seconds)} call from ${caller} on ${when(rec.started_at)} (recording ${rec.id})`;
}

async function confirmDownload(rec) {
  $("#download-text").textContent = `Download ${describe(rec)}?`;
  // A dual-channel recording downloads mixed or in stereo (caller left, agent right).
  const choice = $("#download-channels");
  choice.hidden = !rec.dual_channel;
  $("#download-mixed").checked = true;
  if (!(await confirmWith($("#download-dialog")))) return;
  try {
    const link = await api("POST", `/api/recordings/${rec.id}/download-url?expires_in=60`);
    const stereo = rec.dual_channel && $("#download-stereo").checked;
    const anchor = el("a", { href: stereo ? `${link.url}&channels=dual` : link.url, download: "" });
    document.body.append(anchor);
    anchor.click();
    anchor.remove();
    say("Download started (audited).");
  } catch (error) {
    say(`Download refused: ${error.message}`);
  }
}

async function placeHold(rec, panel, row) {
  $("#hold-text").textContent = `Hold ${describe(rec)}?`;
  $("#hold-reason").value = "";
  if (!(await confirmWith($("#hold-dialog")))) return;
  try {
    await api("PUT", `/api/recordings/${rec.id}/hold`, { reason: $("#hold-reason").value });
    await openPanel(panel, rec.id, row);
    say(`Recording ${rec.id} is on legal hold (audited).`);
  } catch (error) {
    say(`Not held: ${error.message}`);
  }
}

async function releaseHold(rec, panel, row) {
  try {
    await api("DELETE", `/api/recordings/${rec.id}/hold`);
    await openPanel(panel, rec.id, row);
    say(`Recording ${rec.id} released from its hold (audited).`);
  } catch (error) {
    say(`Not released: ${error.message}`);
  }
}

async function confirmDelete(rec, panel, row) {
  $("#delete-text").textContent = `Delete ${describe(rec)}?`;
  if (!(await confirmWith($("#delete-dialog")))) return;
  try {
    const step = await api("DELETE", `/api/recordings/${rec.id}`);
    const deleted = await api("DELETE", `/api/recordings/${rec.id}?confirm=${encodeURIComponent(step.confirm_token)}`);
    panel.player?.stop();
    row.querySelector(".status-cell").replaceChildren(statusBadge(deleted));
    await openPanel(panel, rec.id, row);
    say(`Recording ${rec.id} deleted.`);
  } catch (error) {
    say(`Delete failed: ${error.message}`);
  }
}

// ---------------------------------------------------------------------------------------------
// Start: an existing session cookie signs straight in.

onSignedOut(showSignIn);

(async () => {
  try {
    signedIn(await api("GET", "/api/session"));
    await route();
  } catch {
    showSignIn();
  }
})();
