//! Redacting a live recording: by the API, by feature codes, by a node; the stretches stored.

use super::*;

impl Call {
    /// Starts or lifts a redaction of the live recording. Without one (or already in the asked
    /// state) nothing happens: the caller checks `live_recording` first to say why.
    pub(super) fn redact(&mut self, request: RedactRequest, now_ms: u64, out: &mut Vec<Output>) {
        let Some(name) = self.recording.clone() else {
            return;
        };
        match (&self.redacting, request.on) {
            (None, true) => {
                for (_, snooped) in &self.snoops {
                    out.push(Output::Command(Command::RedactRecording {
                        name: snooped.clone(),
                        mode: request.mode,
                        on: true,
                    }));
                }
                out.push(Output::Command(Command::RedactRecording {
                    name,
                    mode: request.mode,
                    on: true,
                }));
                self.redacting = Some(Redacting {
                    since_ms: now_ms,
                    mode: request.mode,
                    by: request.by,
                });
            }
            (Some(current), false) => {
                for (_, snooped) in &self.snoops {
                    out.push(Output::Command(Command::RedactRecording {
                        name: snooped.clone(),
                        mode: current.mode,
                        on: false,
                    }));
                }
                out.push(Output::Command(Command::RedactRecording {
                    name: name.clone(),
                    mode: current.mode,
                    on: false,
                }));
                self.close_redaction(&name, now_ms, out);
                self.redacting = None;
            }
            _ => {}
        }
    }

    /// A key pressed while bridged: the flow's `pause_code` / `resume_code`, heard on its
    /// feature-code leg, pause or resume the recording.
    pub(super) fn feature_key(
        &mut self,
        channel: &str,
        key: &str,
        now_ms: u64,
        out: &mut Vec<Output>,
    ) {
        let Phase::Bridged { agent, .. } = &self.phase else {
            return;
        };
        let Some(codes) = self.flow.as_ref().and_then(|f| f.feature_codes.clone()) else {
            return;
        };
        let (listened, who) = match codes.leg {
            FeatureLeg::Agent => (agent.as_str(), "dtmf:agent"),
            FeatureLeg::Caller => (self.id.as_str(), "dtmf:caller"),
        };
        if channel != listened || self.recording.is_none() {
            return;
        }
        self.keys_heard.push_str(key);
        let keep = self.keys_heard.len().saturating_sub(4);
        self.keys_heard.drain(..keep);
        let on = if self.keys_heard.ends_with(&codes.pause) {
            true
        } else if self.keys_heard.ends_with(&codes.resume) {
            false
        } else {
            return;
        };
        self.keys_heard.clear();
        // Pausing may be off for this call (its kind, flow or node); resuming never is.
        if on && self.redaction_refused_by().is_some() {
            return;
        }
        let request = RedactRequest {
            on,
            mode: self.redaction_mode,
            by: who.to_string(),
        };
        self.redact(request, now_ms, out);
    }

    /// Ends the open redaction of `recording` at `now_ms`: its span goes to the library.
    pub(super) fn close_redaction(&mut self, recording: &str, now_ms: u64, out: &mut Vec<Output>) {
        let (Some(redacting), Some(started)) = (self.redacting.take(), self.recording_started_ms)
        else {
            return;
        };
        let from = redacting
            .since_ms
            .saturating_sub(started)
            .saturating_sub(self.paused_ms);
        let length = now_ms.saturating_sub(redacting.since_ms);
        let to = match redacting.mode {
            RedactMode::Mute => from + length,
            RedactMode::Pause => {
                self.paused_ms += length;
                from
            }
        };
        let ms = |v: u64| i64::try_from(v).unwrap_or(i64::MAX);
        out.push(Output::Redacted(Box::new(RedactionSpan {
            recording: recording.to_string(),
            mode: redacting.mode,
            from_offset_ms: ms(from),
            to_offset_ms: ms(to),
            started_at_ms: ms(redacting.since_ms),
            ended_at_ms: ms(now_ms),
            by: redacting.by,
        })));
    }

    /// The call's recording is running: a node with `pause_recording = true` (a payment desk)
    /// redacts it from here to its end, as a pause by the node itself.
    pub(super) fn recording_began(&mut self, name: &str, now_ms: u64, out: &mut Vec<Output>) {
        if self.recording.as_deref() != Some(name) {
            return;
        }
        // The file's first moment: redacted stretches are placed in it from here, not from
        // when the record request left.
        self.recording_started_ms = Some(now_ms);
        if self.redacting.is_some() {
            return;
        }
        let Some(node) = self.node.clone() else {
            return;
        };
        if self.node_kind(&node).is_some_and(|k| k.pauses_recording()) {
            let request = RedactRequest {
                on: true,
                mode: self.redaction_mode,
                by: format!("node:{node}"),
            };
            self.redact(request, now_ms, out);
        }
    }
}
