// What every view of the page shares: elements, the status line, times and labels, the lists the
// server offers, dialogs.

export const $ = (selector, root = document) => root.querySelector(selector);

export function say(message) {
  const status = $("#status");
  status.textContent = message;
}

export function clock(seconds) {
  if (!Number.isFinite(seconds) || seconds < 0) seconds = 0;
  const whole = Math.floor(seconds);
  const h = Math.floor(whole / 3600);
  const m = Math.floor((whole % 3600) / 60);
  const s = String(whole % 60).padStart(2, "0");
  return h > 0 ? `${h}:${String(m).padStart(2, "0")}:${s}` : `${m}:${s}`;
}

export function when(iso) {
  const date = new Date(iso);
  return Number.isNaN(date.getTime()) ? "" : date.toLocaleString();
}

export const STATUS_LABEL = {
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
export const VALUES = JSON.parse(document.getElementById("values")?.textContent || "{}");

/// How a value reads in a filter or a choice, where its name alone would not do.
export const VALUE_LABEL = {
  hunt_group: "hunt group",
  fallback: "fallback (service away)",
  recording: "recording in progress",
  purged: "removed (retention)",
  implied: "implied (a voicemail after a greeting that says it is recorded)",
};

export function valueLabel(value) {
  return VALUE_LABEL[value] ?? value.replaceAll("_", " ");
}

export const REASON_TEXT = {
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
export function noAudioReason(rec) {
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

export function el(tag, attributes = {}, ...children) {
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

export function statusBadge(rec) {
  return el("span", { class: `badge status-${rec.status}`, text: STATUS_LABEL[rec.status] ?? rec.status });
}

/// Opens `dialog`; resolves to true when the user confirmed.
export function confirmWith(dialog) {
  return new Promise((resolve) => {
    dialog.returnValue = "";
    dialog.addEventListener("close", () => resolve(dialog.returnValue === "confirm"), { once: true });
    dialog.showModal();
  });
}
