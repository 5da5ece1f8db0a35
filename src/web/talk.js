// Talk-time: who talked how long, and a bar per party of when (a recording's or a whole call's
// `insights`). A click on a stretch of talk plays from there.

import { clock, el } from "./format.js";

const VOICE_LABEL = { caller: "Caller", agent: "Agent", speech: "Speech" };

function seconds(value) {
  return `${(value ?? 0).toFixed(1)} s`;
}

/// The figures as one line of text.
export function talkSummary(insights) {
  const parts = [];
  if (insights.caller_talk_seconds != null) {
    parts.push(`caller ${seconds(insights.caller_talk_seconds)}`, `agent ${seconds(insights.agent_talk_seconds)}`);
    if (insights.agent_share_percent != null) parts.push(`agent's share ${insights.agent_share_percent} %`);
  } else {
    parts.push(`speech ${seconds(insights.speech_seconds)}`);
  }
  parts.push(`longest silence ${seconds(insights.longest_silence_seconds)}`);
  if (insights.caller_talk_seconds != null) {
    parts.push(`talking at once ${seconds(insights.crosstalk_seconds)} (${insights.crosstalk_count}×)`);
  }
  return `Talk time: ${parts.join(" · ")}`;
}

/// The figures and one bar per voice; `seek(seconds)` plays from a span's start.
export function talkTime(insights, seek) {
  const length = Math.max(insights.length_seconds ?? 0, 0.001);
  const figure = el("figure", { class: "talk" }, el("figcaption", { text: talkSummary(insights) }));
  const timeline = insights.timeline ?? {};
  for (const voice of ["caller", "agent", "speech"]) {
    const spans = timeline[voice];
    if (!spans) continue;
    const label = VOICE_LABEL[voice];
    // One picture a voice (its stretches named in its label, the first few); a click on a
    // stretch plays from there (keyboard users have the transcript and the player's keys).
    const named = spans.slice(0, 8).map(([from, to]) => `${clock(from)}–${clock(to)}`).join(", ");
    const more = spans.length > 8 ? ` and ${spans.length - 8} more` : "";
    const bar = el("div", {
      class: `talkbar ${voice}`,
      role: "img",
      "aria-label": spans.length ? `${label} talks ${named}${more}` : `${label}: no talk`,
    });
    for (const [from, to] of spans) {
      const span = el("div", { class: "talk-span", title: `${label} ${clock(from)}–${clock(to)}`, onclick: () => seek?.(from) });
      // CSSOM, not a style attribute: the page's policy allows no inline styles.
      span.style.left = `${(100 * from) / length}%`;
      span.style.width = `${Math.max((100 * (to - from)) / length, 0.3)}%`;
      bar.append(span);
    }
    figure.append(el("div", { class: "talk-row" }, el("span", { class: "talk-voice", text: label }), bar));
  }
  return figure;
}
