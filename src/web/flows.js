// The flows view: record_call switches and the deployment's recording settings.

import { $, confirmWith, el, say, when } from "./format.js";
import { api } from "./api.js";

// ---------------------------------------------------------------------------------------------
// Flows: record_call switches and record_outbound_calls

export async function loadFlows() {
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
export const RECORD_SOURCE = {
  record_call: "(its own record_call)",
  record_inbound_calls: "(the inbound default)",
  recording_enabled: "(recording is off for the deployment)",
};

/// The deployment's recording policy: the switches in their order of precedence, and the
/// settings changed in settings.toml shown as they are.
export function showPolicy(settings) {
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
export async function confirmRecordingOn(what) {
  $("#record-text").textContent = `Turn on ${what}?`;
  return confirmWith($("#record-dialog"));
}

export function recordSwitch(flowName, node) {
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

export async function toggleSetting(input) {
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
