// The recordings page. Plain ES module, no build step; it uses only the public API.
//
// Views live in the URL hash (#/recordings?caller=555&status=ready, #/flows) so a reviewer can
// share a link with a colleague who has the same rights.

const $ = (selector, root = document) => root.querySelector(selector);

// ---------------------------------------------------------------------------------------------
// API

class ApiError extends Error {
  constructor(status, code, message) {
    super(message);
    this.status = status;
    this.code = code;
  }
}

const session = { user: null, csrf: null, can: {} };
/// The call view's player (one at a time), and its newest request (a slow earlier one is dropped).
let callPlayer = null;
let callRequest = 0;

async function api(method, path, body) {
  const headers = {};
  if (body !== undefined) headers["content-type"] = "application/json";
  if (method !== "GET" && session.csrf) headers["x-csrf-token"] = session.csrf;
  const response = await fetch(path, {
    method,
    headers,
    credentials: "same-origin",
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  if (response.status === 204) return null;
  const data = await response.json().catch(() => null);
  if (!response.ok) {
    const error = new ApiError(response.status, data?.error ?? "error", data?.message ?? response.statusText);
    if (response.status === 401 && path !== "/api/session") showSignIn("Your session ended: sign in again.");
    throw error;
  }
  return data;
}

/** Waveform sizes the server offers (`/peaks?points=`). */
const PEAK_POINTS = [100, 200, 400, 800, 1600, 3200];

function say(message) {
  const status = $("#status");
  status.textContent = message;
}

// ---------------------------------------------------------------------------------------------
// Formatting

function clock(seconds) {
  if (!Number.isFinite(seconds) || seconds < 0) seconds = 0;
  const whole = Math.floor(seconds);
  const h = Math.floor(whole / 3600);
  const m = Math.floor((whole % 3600) / 60);
  const s = String(whole % 60).padStart(2, "0");
  return h > 0 ? `${h}:${String(m).padStart(2, "0")}:${s}` : `${m}:${s}`;
}

function when(iso) {
  const date = new Date(iso);
  return Number.isNaN(date.getTime()) ? "" : date.toLocaleString();
}

const STATUS_LABEL = {
  recording: "recording in progress",
  ready: "ready",
  empty: "failed: empty",
  unreadable: "failed: unreadable",
  not_playable: "failed: not playable",
  missing: "missing",
  deleted: "deleted",
  purged: "removed (retention)",
  not_recorded: "not recorded",
};

/// The values the server accepts for each choice (node type, direction, status, consent,
/// compliance), written into the page by the server from the lists its API checks against.
const VALUES = JSON.parse(document.getElementById("values")?.textContent || "{}");

/// How a value reads in a filter or a choice, where its name alone would not do.
const VALUE_LABEL = {
  hunt_group: "hunt group",
  fallback: "fallback (service away)",
  recording: "recording in progress",
  purged: "removed (retention)",
};

function valueLabel(value) {
  return VALUE_LABEL[value] ?? value.replaceAll("_", " ");
}

// The filters' choices, before any view sets them from the URL.
for (const select of document.querySelectorAll("select[data-values]")) {
  for (const value of VALUES[select.dataset.values] ?? []) {
    select.append(el("option", { value, text: valueLabel(value) }));
  }
}

const REASON_TEXT = {
  missing_consent: "not permitted: the caller's consent is not on record",
  compliance_policy: "not permitted: a compliance policy blocks it",
  missing_entitlement: "not permitted: your organisation's plan does not include it",
  role_restriction: "not permitted for your role",
  missing_scope: "not permitted for this token",
  private_recording: "not permitted: a private call",
  media_unavailable: "no playable audio",
  on_hold: "not permitted: the recording is on legal hold",
};

/// Why a recording has no audio to offer, in words.
function noAudioReason(rec) {
  switch (rec.status) {
    case "not_recorded": return `setting off: ${rec.reason ?? "recording was off for this call"}`;
    case "empty": return "too short: the call ended before any audio was recorded";
    case "unreadable": return `failed: ${rec.reason ?? "the file is unreadable"}`;
    case "not_playable": return `failed: ${rec.reason ?? "a format this service does not play"}`;
    case "missing": return "retention: the file is no longer on disk";
    case "deleted": return `retention: deleted${rec.deleted_at ? " on " + when(rec.deleted_at) : ""}`;
    case "purged": return rec.reason ?? "retention: the audio was removed";
    default: return REASON_TEXT[rec.access?.play?.reason] ?? "not permitted";
  }
}

function el(tag, attributes = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attributes)) {
    if (value === false || value === null || value === undefined) continue;
    if (key === "class") node.className = value;
    else if (key === "text") node.textContent = value;
    else if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
    else node.setAttribute(key, value === true ? "" : value);
  }
  for (const child of children) if (child !== null && child !== undefined) node.append(child);
  return node;
}

// ---------------------------------------------------------------------------------------------
// Sign in and out

function showOnly(id) {
  if (id !== "calls-view") stopLiveCalls();
  if (id !== "call-view") callPlayer?.stop();
  for (const view of ["sign-in-view", "recordings-view", "calls-view", "call-view", "flows-view"]) {
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
  } else if (path === "/calls") {
    showOnly("calls-view");
    await loadLiveCalls();
  } else if (/^\/calls\/.+$/.test(path)) {
    showOnly("call-view");
    await loadCall(decodeURIComponent(path.slice("/calls/".length)));
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

const FILTERS = ["name", "caller", "callee", "node_type", "direction", "status", "from", "to", "min_duration", "sort"];

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
  // Players of the rows being replaced stop, and drop their window and key listeners.
  for (const panel of body.querySelectorAll(".panel")) panel.player?.stop();
  body.replaceChildren(...page.recordings.flatMap(recordingRows));
  $("#empty").hidden = page.recordings.length > 0;
  $("#next-page").disabled = !page.next_cursor;
  $("#prev-page").disabled = !params.get("cursor");
  $("#first-page").disabled = !params.get("cursor");
  say(`${page.recordings.length} recordings${page.next_cursor ? ", more on the next page" : ""}.`);
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

function statusBadge(rec) {
  return el("span", { class: `badge status-${rec.status}`, text: STATUS_LABEL[rec.status] ?? rec.status });
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
  const row = el("tr", { "data-id": rec.id },
    el("td", {}, toggle),
    el("td", { "data-label": "Caller" }, caller),
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

async function openPanel(panel, id, row) {
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
    if (rec.has_transcript) showTranscript(body, rec, panel.player);
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

/// Opens `dialog`; resolves to true when the user confirmed.
function confirmWith(dialog) {
  return new Promise((resolve) => {
    dialog.returnValue = "";
    dialog.addEventListener("close", () => resolve(dialog.returnValue === "confirm"), { once: true });
    dialog.showModal();
  });
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
// The player: waveform from the peaks endpoint, audio streamed through HTTP Range from a
// short-lived signed link (renewed when it expires mid-listen).

/// What a player plays: a recording (through short-lived signed links) or a whole call.
function recordingSource(rec) {
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

class Player {
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

async function showTranscript(container, rec, player) {
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

// ---------------------------------------------------------------------------------------------
// `#/calls/{id}`: a call as one recording, its segments marked on the waveform, each segment
// still playable alone.

function callSource(call) {
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
function callRedactions(call) {
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

function segmentItem(segment) {
  const what = [segment.node, (segment.node_type ?? "").replace("_", " "), segment.callee].filter(Boolean).join(" · ");
  return el("li", { class: "segment", "data-id": segment.id },
    el("span", { class: "offset", text: `at ${clock(segment.offset_seconds)}` }), " ",
    el("span", { text: `${what} (${clock(segment.duration_seconds)})` }), " ",
    statusBadge(segment), " ",
    el("a", { href: `#/recordings/${segment.id}`, text: "Open this segment" }));
}

async function loadCall(id) {
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
  const parts = (call.separation === "per_segment"
    ? [summary, segments, playerBox, redactedList, actions]
    : [summary, playerBox, redactedList, actions, segments]).filter(Boolean);
  body.replaceChildren(...parts);
  say(`Call from ${caller}, ${call.segment_count} segments.`);
}

async function confirmCallDownload(call, caller) {
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

const LIVE_REFRESH_MS = 3000;
let liveTimer = null;

function stopLiveCalls() {
  if (liveTimer) clearTimeout(liveTimer);
  liveTimer = null;
}

const RECORDING_STATE = { recording: "Recording", muted: "Paused (muted)", paused: "Paused" };

async function loadLiveCalls() {
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

function renderLiveCalls(calls) {
  const body = $("#live-calls tbody");
  body.replaceChildren(...calls.map((call) => {
    const caller = [call.caller?.name, call.caller?.number].filter(Boolean).join(" ") || "unknown";
    const state = call.recording?.state;
    const action = state && call.can_pause
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

async function pauseOrResume(call, pause, button) {
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

// ---------------------------------------------------------------------------------------------
// Flows: record_call switches and record_outbound_calls

async function loadFlows() {
  say("Loading flows...");
  let flows;
  try {
    flows = await api("GET", "/api/flows");
  } catch (error) {
    if (error.status !== 401) say(`Could not load flows: ${error.message}`);
    return;
  }
  // Deployment-wide settings come with the flows for the operator's own tenant only.
  $("#policy").hidden = !flows.settings;
  if (flows.settings) showPolicy(flows.settings);
  const container = $("#flows");
  container.replaceChildren(...flows.flows.map((flow) => el("article", { class: "card flow" },
    el("h3", { text: flow.name }),
    el("p", { class: "muted", text: `Numbers ${flow.numbers.join(", ")} · starts at ${flow.start} · ${flow.tenant}/${flow.project}${flow.private ? " · private" : ""}` }),
    el("ul", { class: "nodes" }, ...flow.nodes.map((node) => el("li", {},
      el("span", { class: "node-name", text: node.id }),
      el("span", { class: "muted", text: ` ${node.type.replace("_", " ")}` }),
      node.record_call === undefined ? null : recordSwitch(flow.name, node),
      node.record_call === undefined ? null : el("span", { class: "muted source", text: ` ${RECORD_SOURCE[node.record_call_source] ?? node.record_call_source}` }),
      node.channels === "dual" ? el("span", { class: "badge", text: "dual-channel" }) : null))))));
  say(`${flows.flows.length} flows.`);
}

/// Which switch decided a node's recording, in words.
const RECORD_SOURCE = {
  record_call: "(its own record_call)",
  record_inbound_calls: "(the inbound default)",
  recording_enabled: "(recording is off for the deployment)",
};

/// The deployment's recording policy: the switches in their order of precedence, and the
/// settings changed in settings.toml shown as they are.
function showPolicy(settings) {
  for (const input of document.querySelectorAll("#policy input[data-setting]")) {
    input.checked = settings[input.dataset.setting];
    input.onchange = () => toggleSetting(input);
  }
  const shown = [
    ["Redaction", settings.redaction_mode === "pause" ? "pause (the audio is left out)" : "mute (silence in its place)"],
    ["New recordings' compliance", settings.default_compliance],
    ["Announcement", settings.recording_announcement.length ? settings.recording_announcement.join(", ") : "none"],
    ["A call of several segments", settings.recording_separation === "per_segment" ? "offered as its segments" : "offered as one recording"],
    ["Recording starts", settings.record_from_dial ? "when the other party is dialled" : "once both parties are in"],
  ];
  $("#policy-settings").replaceChildren(...shown.flatMap(([name, value]) => [el("dt", { text: name }), el("dd", { text: value })]));
}

/// Turning recording on is confirmed first: recordings can hold health and payment data.
async function confirmRecordingOn(what) {
  $("#record-text").textContent = `Turn on ${what}?`;
  return confirmWith($("#record-dialog"));
}

function recordSwitch(flowName, node) {
  const id = `record-${flowName}-${node.id}`;
  const input = el("input", { type: "checkbox", role: "switch", id, checked: node.record_call });
  input.addEventListener("change", async () => {
    if (input.checked && !(await confirmRecordingOn(`recording for ${flowName} / ${node.id}`))) {
      input.checked = false;
      return;
    }
    input.disabled = true;
    try {
      const updated = await api("PATCH", `/api/flows/${encodeURIComponent(flowName)}/nodes/${encodeURIComponent(node.id)}`, { record_call: input.checked });
      input.checked = updated.record_call;
      say(`${flowName} / ${node.id}: recording ${updated.record_call ? "on" : "off"} from the next call.`);
    } catch (error) {
      input.checked = !input.checked;
      say(`Not changed: ${error.message}`);
    } finally {
      input.disabled = false;
    }
  });
  return el("label", { class: "switch", for: id }, input, " Record calls");
}

async function toggleSetting(input) {
  const key = input.dataset.setting;
  if (input.checked && !(await confirmRecordingOn(key.replaceAll("_", " ")))) {
    input.checked = false;
    return;
  }
  input.disabled = true;
  try {
    const settings = await api("PATCH", "/api/settings", { [key]: input.checked });
    input.checked = settings[key];
    say(`${key} is ${settings[key] ? "on" : "off"} from the next call.`);
    // The master switch and the inbound default change what every node does.
    await loadFlows();
  } catch (error) {
    input.checked = !input.checked;
    say(`Not changed: ${error.message}`);
  } finally {
    input.disabled = false;
  }
}

// ---------------------------------------------------------------------------------------------
// Start: an existing session cookie signs straight in.

(async () => {
  try {
    signedIn(await api("GET", "/api/session"));
    await route();
  } catch {
    showSignIn();
  }
})();
