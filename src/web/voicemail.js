// Voicemail (`#/voicemail`): each mailbox the user may see, its messages newest first, new or
// heard. Listening opens the message's panel (its audio link marks it heard); a message can be
// marked heard or new by hand.

import { $, clock, el, say, when } from "./format.js";
import { api } from "./api.js";

/** Only the newest request may fill the view. */
let request = 0;

export async function loadVoicemail() {
  const body = $("#voicemail-body");
  const mine = ++request;
  body.setAttribute("aria-busy", "true");
  let data;
  try {
    data = await api("GET", "/api/voicemail");
  } catch (error) {
    if (mine === request) {
      body.removeAttribute("aria-busy");
      if (error.status !== 401) body.replaceChildren(el("p", { class: "error", text: `Could not load voicemail: ${error.message}` }));
    }
    return;
  }
  if (mine !== request) return;
  body.removeAttribute("aria-busy");
  if (!data.mailboxes.length) {
    body.replaceChildren(el("p", { class: "muted", text: "No voicemail messages." }));
    say("No voicemail messages.");
    return;
  }
  const older = data.more ? [el("p", { class: "muted", text: "Older messages are in Recordings (filter: Node voicemail)." })] : [];
  body.replaceChildren(...data.mailboxes.map(mailbox), ...older);
  const fresh = data.mailboxes.reduce((n, m) => n + m.new, 0);
  say(`${data.mailboxes.length} mailbox${data.mailboxes.length === 1 ? "" : "es"}, ${fresh} new message${fresh === 1 ? "" : "s"}.`);
}

function mailbox(box) {
  const id = `mailbox-${box.mailbox.replace(/[^A-Za-z0-9_-]/g, "_")}`;
  const count = box.messages.length;
  return el("section", { class: "mailbox", "aria-labelledby": id, "data-mailbox": box.mailbox },
    el("h3", { id, text: `${box.mailbox || "(no mailbox)"}: ${box.new} new of ${count}` }),
    el("div", { class: "table-wrap" },
      el("table", {},
        el("thead", {}, el("tr", {},
          el("th", { scope: "col", text: "Caller" }),
          el("th", { scope: "col", text: "Received" }),
          el("th", { scope: "col", text: "Length" }),
          el("th", { scope: "col", text: "State" }),
          el("th", { scope: "col" }, el("span", { class: "visually-hidden", text: "Actions" })))),
        el("tbody", {}, ...box.messages.map(messageRow)))));
}

function messageRow(message) {
  const caller = [message.caller?.name, message.caller?.number].filter(Boolean).join(" ") || "unknown";
  const isNew = message.heard === null;
  const state = isNew
    ? el("span", { class: "badge new", text: "New" })
    : el("span", { class: "badge heard", title: `Heard ${when(message.heard.at)} by ${message.heard.by}`, text: "Heard" });
  const listen = message.may_play
    ? el("a", { href: `#/recordings/${message.id}`, class: "listen", "aria-label": `Listen to the message from ${caller}`, text: "Listen" })
    : el("span", { class: "muted", text: "Not permitted" });
  const toggle = message.may_play
    ? el("button", {
      type: "button",
      class: "secondary mark",
      text: isNew ? "Mark as heard" : "Mark as new",
      "aria-label": `${isNew ? "Mark as heard" : "Mark as new"}: the message from ${caller}`,
      onclick: async (event) => {
        event.target.disabled = true;
        try {
          await api(isNew ? "PUT" : "DELETE", `/api/recordings/${message.id}/heard`);
          say(isNew ? "Marked as heard." : "Marked as new.");
        } catch (error) {
          say(`Not changed: ${error.message}`);
        }
        await loadVoicemail();
      },
    })
    : null;
  return el("tr", { "data-id": message.id, class: isNew ? "new" : "heard" },
    el("td", { "data-label": "Caller" }, caller),
    el("td", { "data-label": "Received" }, el("time", { datetime: message.started_at, text: when(message.started_at) })),
    el("td", { "data-label": "Length" }, clock(message.duration_seconds)),
    el("td", { "data-label": "State" }, state),
    el("td", {}, listen, " ", toggle));
}
