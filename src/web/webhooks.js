// The webhooks view (admins): the tenant's endpoints, a new one's secret shown once, a test
// event, secret rotation, turning an endpoint off and on, removal, and each endpoint's
// delivery log with redeliver.

import { $, VALUES, confirmWith, el, say, when } from "./format.js";
import { api } from "./api.js";

const at = (ms) => (ms ? when(new Date(ms).toISOString()) : "");

export async function loadWebhooks() {
  const events = $("#wh-events");
  if (!events.querySelector("input")) {
    events.append(...(VALUES.webhook_events ?? []).map((kind) => el("label", { class: "check" },
      el("input", { type: "checkbox", name: "events", value: kind, checked: kind === "recording.ready" || kind === "call.ended" }),
      ` ${kind}`)));
  }
  say("Loading webhooks...");
  let list;
  try {
    list = await api("GET", "/api/webhooks");
  } catch (error) {
    if (error.status !== 401) say(`Could not load webhooks: ${error.message}`);
    return;
  }
  $("#webhooks").replaceChildren(...list.endpoints.map(endpointCard));
  $("#no-webhooks").hidden = list.endpoints.length > 0;
  say(`${list.endpoints.length} webhook endpoints.`);
}

function endpointCard(endpoint) {
  const state = endpoint.enabled
    ? (endpoint.failing_since_ms ? `failing since ${at(endpoint.failing_since_ms)}` : "on")
    : `off${endpoint.disabled_reason ? `: ${endpoint.disabled_reason}` : ""}`;
  const log = el("div", { class: "delivery-log" });
  const details = el("details", {}, el("summary", { text: "Deliveries" }), log);
  details.addEventListener("toggle", () => { if (details.open) showLog(endpoint, log); });
  return el("article", { class: "card webhook" },
    el("h3", { text: endpoint.url }),
    endpoint.description ? el("p", { text: endpoint.description }) : null,
    el("p", { class: "muted", text: `${endpoint.events.join(", ")} · ${state}${endpoint.include_transcript ? " · transcript text included" : ""}` }),
    el("div", { class: "actions" },
      el("button", { type: "button", class: "secondary", text: "Send a test event", onclick: () => act(endpoint, "POST", "test", null, "Test event queued.") }),
      el("button", { type: "button", class: "secondary", text: "Rotate the secret", onclick: () => rotate(endpoint) }),
      el("button", { type: "button", class: "secondary", text: endpoint.enabled ? "Turn off" : "Turn on", onclick: () => toggle(endpoint) }),
      el("button", { type: "button", class: "danger", text: "Remove", onclick: () => remove(endpoint) })),
    details);
}

async function act(endpoint, method, path, body, done) {
  try {
    const answer = await api(method, `/api/webhooks/${endpoint.id}${path ? `/${path}` : ""}`, body);
    say(done);
    return answer;
  } catch (error) {
    say(`Not done: ${error.message}`);
    return null;
  }
}

function showSecret(secret, what) {
  const box = $("#wh-secret");
  box.replaceChildren(
    el("strong", { text: `${what}: ` }), el("code", { text: secret }),
    el("span", { text: " It is shown this once: store it with the receiver, which verifies each delivery's webhook-signature with it." }));
  box.hidden = false;
}

async function rotate(endpoint) {
  const answer = await act(endpoint, "POST", "rotate-secret", { keep_previous_hours: 24 }, "Secret rotated (audited).");
  if (answer) showSecret(answer.secret, `New secret of ${endpoint.url} (the old one signs beside it until ${when(answer.previous_valid_until)})`);
}

async function toggle(endpoint) {
  if (await act(endpoint, "PATCH", "", { enabled: !endpoint.enabled }, `${endpoint.url} turned ${endpoint.enabled ? "off" : "on"} (audited).`)) loadWebhooks();
}

async function remove(endpoint) {
  $("#webhook-remove-text").textContent = `Remove ${endpoint.url}? Deliveries still waiting are given up.`;
  if (!(await confirmWith($("#webhook-remove-dialog")))) return;
  if (await act(endpoint, "DELETE", "", null, `${endpoint.url} removed (audited).`) !== null) loadWebhooks();
}

async function showLog(endpoint, container) {
  let log;
  try {
    log = await api("GET", `/api/webhooks/${endpoint.id}/deliveries`);
  } catch (error) {
    container.replaceChildren(el("p", { class: "error", text: error.message }));
    return;
  }
  if (!log.deliveries.length) {
    container.replaceChildren(el("p", { class: "muted", text: "Nothing sent yet." }));
    return;
  }
  const rows = log.deliveries.map((d) => el("tr", {},
    el("td", { text: at(d.created_at_ms) }),
    el("td", { text: d.kind }),
    el("td", { text: d.state === "pending" && d.attempts ? `retrying (next ${at(d.next_attempt_at_ms)})` : d.state }),
    el("td", { text: String(d.attempts) }),
    el("td", { text: d.last_status ? `HTTP ${d.last_status}` : (d.last_error ?? "") }),
    el("td", {}, el("button", { type: "button", class: "secondary", text: "Deliver again", onclick: async () => {
      if (await act(endpoint, "POST", `deliveries/${d.id}/redeliver`, null, "Queued again (audited).")) showLog(endpoint, container);
    } }))));
  container.replaceChildren(el("table", {},
    el("caption", { text: `Latest deliveries to ${endpoint.url}` }),
    el("thead", {}, el("tr", {}, ...["Queued", "Event", "State", "Attempts", "Last answer", ""].map((h) => el("th", { scope: "col", text: h })))),
    el("tbody", {}, ...rows)));
}

$("#webhook-new").addEventListener("submit", async (event) => {
  event.preventDefault();
  const form = event.target;
  const events = [...form.querySelectorAll("input[name=events]:checked")].map((i) => i.value);
  try {
    const created = await api("POST", "/api/webhooks", {
      url: form.elements.url.value,
      description: form.elements.description.value,
      events,
      include_transcript: form.elements.include_transcript.checked,
    });
    form.reset();
    showSecret(created.secret, `Secret of ${created.url}`);
    say(`${created.url} added (audited).`);
    loadWebhooks();
  } catch (error) {
    say(`Not added: ${error.message}`);
  }
});
