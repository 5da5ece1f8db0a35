//! What the call machine does with what happens to it: an ARI event, a playback done, a channel
//! gone, a timer due, a command Asterisk refused.

use super::*;

impl Call {
    pub(super) fn on_event(
        &mut self,
        event: &Event,
        now_ms: u64,
        agents: &mut AgentBook,
        out: &mut Vec<Output>,
    ) {
        match event {
            Event::StasisStart(e) => {
                let id = e.channel.id.as_str();
                if id == self.id || self.legs.contains_key(id) {
                    self.note_linkedid(&e.channel);
                }
                if (id == self.id || self.legs.contains_key(id)) && !e.channel.name.is_empty() {
                    self.channel_names
                        .insert(id.to_string(), e.channel.name.clone());
                }
                if id == self.id && self.phase == Phase::PlacingOutbound {
                    // Outbound: the first leg answered; now ring the other side.
                    if let Some((to, _)) = self.outbound_to.clone() {
                        self.caller_name = e.channel.connected.name.clone();
                        self.ensure_mixing(out);
                        self.dial(&to, 30, false, out);
                        self.arm_recording(&to, now_ms, out);
                        let timer = self.timer(out, Duration::from_secs(35));
                        self.phase = Phase::Dialing {
                            kind: DialKind::Outbound,
                            timer,
                        };
                    }
                } else if self.legs.contains_key(id) {
                    self.leg_answered(id, now_ms, agents, out);
                }
            }
            Event::Dial(e) => {
                let failed = matches!(
                    e.dialstatus.as_str(),
                    "BUSY" | "NOANSWER" | "CANCEL" | "CONGESTION" | "CHANUNAVAIL"
                );
                if failed {
                    self.leg_failed(&e.peer.id, now_ms, agents, out);
                }
            }
            Event::ChannelDestroyed(e) => self.on_gone(&e.channel.id, now_ms, agents, out),
            Event::StasisEnd(e) => self.on_gone(&e.channel.id, now_ms, agents, out),
            Event::ChannelHangupRequest(e) if e.channel.id == self.id => {
                self.on_gone(&self.id.clone(), now_ms, agents, out)
            }
            Event::PlaybackFinished(e) => self.playback_done(&e.playback.id, now_ms, agents, out),
            Event::ChannelDtmfReceived(e) => {
                let consenting = matches!(
                    self.phase,
                    Phase::ConsentPrompt { .. } | Phase::ConsentWaiting { .. }
                );
                if consenting && e.channel.id == self.id {
                    self.consent_key(&e.digit, now_ms, agents, out);
                } else {
                    self.feature_key(&e.channel.id, &e.digit, now_ms, out);
                }
            }
            Event::RecordingStarted(e) => self.recording_began(&e.recording.name, now_ms, out),
            Event::RecordingFinished(e) => {
                self.recording_over(&e.recording.name, now_ms, agents, out)
            }
            Event::RecordingFailed(e) => {
                self.recording_over(&e.recording.name, now_ms, agents, out)
            }
            _ => {}
        }
    }

    pub(super) fn playback_done(
        &mut self,
        playback: &str,
        now_ms: u64,
        agents: &mut AgentBook,
        out: &mut Vec<Output>,
    ) {
        match self.phase.clone() {
            Phase::Playing {
                index,
                playback: current,
            } if current == playback => {
                let Some(NodeKind::PlayAudio { media, next, .. }) =
                    self.node.as_deref().and_then(|n| self.node_kind(n))
                else {
                    return;
                };
                if index + 1 < media.len() {
                    let playback = self.fresh("P");
                    out.push(Output::Command(Command::Play {
                        channel: self.id.clone(),
                        playback: playback.clone(),
                        media: media[index + 1].clone(),
                    }));
                    self.phase = Phase::Playing {
                        index: index + 1,
                        playback,
                    };
                } else {
                    self.enter(next, now_ms, agents, out);
                }
            }
            Phase::VoicemailGreeting { playback: current } if current == playback => {
                self.start_voicemail(now_ms, out)
            }
            Phase::Announcing {
                index,
                playback: current,
            } if current == playback => {
                if let Some(media) = self.announcement.get(index + 1).cloned() {
                    let playback = self.fresh("P");
                    out.push(Output::Command(Command::Play {
                        channel: self.id.clone(),
                        playback: playback.clone(),
                        media,
                    }));
                    self.phase = Phase::Announcing {
                        index: index + 1,
                        playback,
                    };
                } else {
                    // Told: the node that records goes on (and its recordings carry consent).
                    self.heard_recording_notice = true;
                    let node = self.node.clone();
                    self.hops = self.hops.saturating_sub(1);
                    self.enter(node, now_ms, agents, out);
                }
            }
            Phase::ConsentPrompt {
                index,
                playback: current,
                attempt,
                key,
            } if current == playback => {
                let Some(NodeKind::Consent {
                    media,
                    timeout,
                    grant_key,
                    ..
                }) = self.node.as_deref().and_then(|n| self.node_kind(n))
                else {
                    return;
                };
                if let Some(key) = key {
                    // Answered while the prompt played (only grant and decline keys are kept).
                    self.consent_decided(key == grant_key, now_ms, agents, out);
                } else if index + 1 < media.len() {
                    let playback = self.fresh("P");
                    out.push(Output::Command(Command::Play {
                        channel: self.id.clone(),
                        playback: playback.clone(),
                        media: media[index + 1].clone(),
                    }));
                    self.phase = Phase::ConsentPrompt {
                        index: index + 1,
                        playback,
                        attempt,
                        key: None,
                    };
                } else {
                    let timer = self.timer(out, Duration::from_secs(u64::from(timeout)));
                    self.phase = Phase::ConsentWaiting { attempt, timer };
                }
            }
            _ => {}
        }
    }

    pub(super) fn on_gone(
        &mut self,
        channel: &str,
        now_ms: u64,
        agents: &mut AgentBook,
        out: &mut Vec<Output>,
    ) {
        if channel == self.id {
            if self.caller_gone {
                return;
            }
            self.caller_gone = true;
            if self.phase == Phase::PlacingOutbound {
                self.end(now_ms, agents, out);
                return;
            }
            if let Phase::VoicemailRecording { .. } = self.phase {
                // Asterisk finishes the recording itself when the caller hangs up.
                self.recording = None;
            }
            self.end(now_ms, agents, out);
            return;
        }
        let Some(state) = self.legs.get(channel).map(|l| l.state) else {
            return;
        };
        match state {
            LegState::Ringing => self.leg_failed(channel, now_ms, agents, out),
            LegState::Up => {
                self.release_leg(channel, now_ms, agents, true);
                if matches!(&self.phase, Phase::Bridged { agent, .. } if agent == channel) {
                    // The agent hung up first: the caller goes on where the node says, or the
                    // call is over.
                    let next = self
                        .node
                        .as_deref()
                        .and_then(|n| self.node_kind(n))
                        .and_then(|k| k.after_agent_hangup().map(String::from));
                    match next {
                        Some(next) => {
                            self.leave_bridge(out);
                            self.enter(Some(next), now_ms, agents, out);
                        }
                        None => self.end(now_ms, agents, out),
                    }
                }
            }
            LegState::Gone => {}
        }
    }

    pub(super) fn on_timer(
        &mut self,
        key: u64,
        now_ms: u64,
        agents: &mut AgentBook,
        out: &mut Vec<Output>,
    ) {
        self.deadlines.remove(&key);
        if self.queue_deadline_timer == Some(key) {
            // Waited too long: overflow.
            self.queue_deadline_timer = None;
            if let Phase::Dialing {
                kind: DialKind::Queue,
                ..
            } = self.phase
            {
                self.fail_node(now_ms, agents, out);
            }
            return;
        }
        if self.queue_retry_timer == Some(key) {
            self.queue_retry_timer = None;
            if let Phase::Dialing {
                kind: DialKind::Queue,
                ..
            } = self.phase
            {
                self.offer_queue(agents, out);
            }
            return;
        }
        if let Phase::Dialing { timer, .. } = self.phase {
            if timer == key {
                // Asterisk should have ended the dial by now; stop waiting for it.
                self.fail_node(now_ms, agents, out);
            }
        }
        if let Phase::ConsentWaiting { attempt, timer } = self.phase {
            if timer == key {
                let Some(NodeKind::Consent {
                    retries,
                    grant_on_timeout,
                    ..
                }) = self.node.as_deref().and_then(|n| self.node_kind(n))
                else {
                    return;
                };
                if attempt < retries {
                    self.ask_consent(attempt + 1, now_ms, agents, out);
                } else {
                    self.consent_decided(grant_on_timeout, now_ms, agents, out);
                }
            }
        }
    }

    pub(super) fn on_failed(
        &mut self,
        command: Command,
        status: Option<u16>,
        message: String,
        now_ms: u64,
        agents: &mut AgentBook,
        out: &mut Vec<Output>,
    ) {
        match command {
            // Asterisk refused to redact: the recording goes on as it was.
            Command::RedactRecording { on: true, .. } => self.redacting = None,
            Command::Originate { channel, .. } => {
                if channel == self.id {
                    self.end(now_ms, agents, out);
                } else {
                    self.leg_failed(&channel, now_ms, agents, out);
                }
            }
            Command::RecordBridge { request, .. } | Command::RecordChannel { request, .. } => {
                let cause = match status {
                    Some(s) => format!("{s} {message}"),
                    None => message,
                };
                out.push(Output::RecordingRefused {
                    name: request.name.clone(),
                    cause,
                });
                self.recording_over(&request.name, now_ms, agents, out);
            }
            Command::Answer { .. } | Command::AddChannels { .. } | Command::CreateBridge { .. }
                if status == Some(404) =>
            {
                // The caller is gone already.
                self.on_gone(&self.id.clone(), now_ms, agents, out);
            }
            Command::Play { playback, .. } => self.playback_done(&playback, now_ms, agents, out),
            _ => {}
        }
    }
}
