//! Entering each node kind: what a play_audio, consent, transfer, hunt group, queue, voicemail
//! and hangup node asks of Asterisk first, and the bridges, music and dialled legs they share.
//! What happens next (answers, failures, timers) is the machine's, in `call.rs`.

use super::*;

impl Call {
    pub(super) fn ensure_mixing(&mut self, out: &mut Vec<Output>) -> String {
        match &self.mixing {
            Some(b) => b.clone(),
            None => self.new_mixing(vec![self.id.clone()], out),
        }
    }

    /// Creates the call's mixing bridge with `channels` in it. A call has one: an earlier one
    /// (a transfer or hunt that failed over to a queue left it, empty) is destroyed first.
    pub(super) fn new_mixing(&mut self, channels: Vec<String>, out: &mut Vec<Output>) -> String {
        if let Some(earlier) = self.mixing.take() {
            out.push(Output::Command(Command::DestroyBridge { bridge: earlier }));
        }
        let bridge = self.fresh("B");
        out.push(Output::Command(Command::CreateBridge {
            bridge: bridge.clone(),
            kind: "mixing",
            name: format!("call-{}", self.id),
        }));
        out.push(Output::Command(Command::AddChannels {
            bridge: bridge.clone(),
            channels,
        }));
        self.mixing = Some(bridge.clone());
        bridge
    }

    pub(super) fn moh(&mut self, bridge: &str, class: &str, out: &mut Vec<Output>) {
        out.push(Output::Command(Command::BridgeMoh {
            bridge: bridge.to_string(),
            class: class.to_string(),
            on: true,
        }));
        self.moh_on = Some(bridge.to_string());
    }

    pub(super) fn moh_off(&mut self, out: &mut Vec<Output>) {
        if let Some(bridge) = self.moh_on.take() {
            out.push(Output::Command(Command::BridgeMoh {
                bridge,
                class: String::new(),
                on: false,
            }));
        }
    }

    pub(super) fn dial(
        &mut self,
        endpoint: &str,
        timeout: u32,
        claimed: bool,
        out: &mut Vec<Output>,
    ) -> String {
        let leg = self.fresh("L");
        let caller_id = if self.caller_number.is_empty() {
            None
        } else if self.caller_name.is_empty() {
            Some(self.caller_number.clone())
        } else {
            Some(format!("{} <{}>", self.caller_name, self.caller_number))
        };
        out.push(Output::Command(Command::Originate {
            channel: leg.clone(),
            endpoint: endpoint.to_string(),
            caller_id,
            timeout,
            app_args: format!("leg,{}", self.id),
        }));
        self.legs.insert(
            leg.clone(),
            Leg {
                endpoint: endpoint.to_string(),
                state: LegState::Ringing,
                claimed,
            },
        );
        leg
    }

    /// Goes to `node` (None: the flow ends here, the caller is hung up).
    pub(super) fn enter(
        &mut self,
        node: Option<String>,
        now_ms: u64,
        agents: &mut AgentBook,
        out: &mut Vec<Output>,
    ) {
        self.hops += 1;
        let Some(id) = node.filter(|_| self.hops <= MAX_HOPS) else {
            self.end(now_ms, agents, out);
            return;
        };
        let Some(kind) = self.node_kind(&id) else {
            self.end(now_ms, agents, out);
            return;
        };
        self.node = Some(id.clone());
        // A caller about to be recorded who has not heard a notice hears the announcement first.
        if kind.has_record_switch() && self.records() && self.announces() {
            let playback = self.fresh("P");
            out.push(Output::Command(Command::Play {
                channel: self.id.clone(),
                playback: playback.clone(),
                media: self.announcement[0].clone(),
            }));
            self.phase = Phase::Announcing { index: 0, playback };
            return;
        }
        match kind {
            NodeKind::PlayAudio {
                media,
                next,
                recording_notice,
            } => {
                self.heard_recording_notice |= recording_notice;
                if media.is_empty() {
                    self.enter(next, now_ms, agents, out);
                    return;
                }
                let playback = self.fresh("P");
                out.push(Output::Command(Command::Play {
                    channel: self.id.clone(),
                    playback: playback.clone(),
                    media: media[0].clone(),
                }));
                self.phase = Phase::Playing { index: 0, playback };
            }
            NodeKind::Consent { .. } => self.ask_consent(0, now_ms, agents, out),
            NodeKind::Transfer {
                target,
                ring_timeout,
                ..
            } => {
                self.ensure_mixing(out);
                self.dial(&target, ring_timeout, false, out);
                self.arm_recording(&target, now_ms, out);
                let timer = self.timer(out, Duration::from_secs(u64::from(ring_timeout) + 5));
                self.phase = Phase::Dialing {
                    kind: DialKind::Transfer,
                    timer,
                };
            }
            NodeKind::HuntGroup {
                members,
                mode,
                ring_seconds,
                ..
            } => {
                let bridge = self.ensure_mixing(out);
                self.moh(&bridge, "default", out);
                match mode {
                    HuntMode::Simultaneous => {
                        for m in &members {
                            self.dial(m, ring_seconds, false, out);
                        }
                        self.arm_recording("", now_ms, out);
                        let timer =
                            self.timer(out, Duration::from_secs(u64::from(ring_seconds) + 5));
                        self.phase = Phase::Dialing {
                            kind: DialKind::HuntSimultaneous,
                            timer,
                        };
                    }
                    HuntMode::Sequential => {
                        self.dial(&members[0], ring_seconds, false, out);
                        self.arm_recording("", now_ms, out);
                        let timer =
                            self.timer(out, Duration::from_secs(u64::from(ring_seconds) + 5));
                        self.phase = Phase::Dialing {
                            kind: DialKind::HuntSequential { index: 0 },
                            timer,
                        };
                    }
                }
            }
            NodeKind::Queue {
                max_wait,
                moh_class,
                ..
            } => {
                if let Some(mixing) = &self.mixing {
                    out.push(Output::Command(Command::RemoveChannel {
                        bridge: mixing.clone(),
                        channel: self.id.clone(),
                    }));
                }
                let holding = self.fresh("H");
                out.push(Output::Command(Command::CreateBridge {
                    bridge: holding.clone(),
                    kind: "holding",
                    name: format!("queue-{}-hold", id),
                }));
                out.push(Output::Command(Command::AddChannels {
                    bridge: holding.clone(),
                    channels: vec![self.id.clone()],
                }));
                self.moh(&holding, &moh_class, out);
                self.holding = Some(holding);
                self.queue_deadline_timer =
                    Some(self.timer(out, Duration::from_secs(u64::from(max_wait))));
                self.phase = Phase::Dialing {
                    kind: DialKind::Queue,
                    timer: 0,
                };
                self.offer_queue(agents, out);
            }
            NodeKind::Voicemail { greeting, .. } => {
                if let Some(bridge) = &self.mixing {
                    // A channel in a bridge cannot be recorded on its own.
                    out.push(Output::Command(Command::RemoveChannel {
                        bridge: bridge.clone(),
                        channel: self.id.clone(),
                    }));
                }
                match greeting {
                    Some(media) => {
                        let playback = self.fresh("P");
                        out.push(Output::Command(Command::Play {
                            channel: self.id.clone(),
                            playback: playback.clone(),
                            media,
                        }));
                        self.phase = Phase::VoicemailGreeting { playback };
                    }
                    None => self.start_voicemail(now_ms, out),
                }
            }
            NodeKind::Hangup => self.end(now_ms, agents, out),
        }
    }

    pub(super) fn start_voicemail(&mut self, now_ms: u64, out: &mut Vec<Output>) {
        let Some(NodeKind::Voicemail {
            mailbox,
            beep,
            max_duration,
            max_silence,
            greeting_discloses_recording,
            ..
        }) = self.node.as_deref().and_then(|n| self.node_kind(n))
        else {
            return;
        };
        let random = self.next_random();
        let name = recording_name(&format!("voicemail-{}", sanitize(&mailbox)), now_ms, random);
        let mut request = RecordRequest::new(name.clone(), "ulaw");
        request.max_duration_seconds = Some(max_duration);
        request.max_silence_seconds = Some(max_silence);
        request.beep = Some(beep);
        request.terminate_on = Some("#".into());
        request.if_exists = Some(IfExists::Fail);
        let mut row = self.row(&name, Some(RecordingFormat::Ulaw), &mailbox, now_ms);
        // A message left after a greeting that says it is recorded: consent by conduct, unless
        // the caller answered a consent question already.
        if greeting_discloses_recording && row.consent == crate::library::Consent::Unknown {
            row.consent = crate::library::Consent::Implied;
        }
        // The row goes first so RecordingFinished always finds it.
        out.push(Output::RecordingStarted(Box::new(row)));
        out.push(Output::Command(Command::RecordChannel {
            channel: self.id.clone(),
            request,
        }));
        self.recording = Some(name.clone());
        self.phase = Phase::VoicemailRecording { name };
    }

    pub(super) fn offer_queue(&mut self, agents: &mut AgentBook, out: &mut Vec<Output>) {
        let Some(NodeKind::Queue {
            agents: members,
            strategy,
            ring_timeout,
            ..
        }) = self.node.as_deref().and_then(|n| self.node_kind(n))
        else {
            return;
        };
        let ringing = self.legs.values().any(|l| l.state == LegState::Ringing);
        if ringing {
            return;
        }
        let queue_key = format!(
            "{}/{}",
            self.flow.as_ref().map(|f| f.name.as_str()).unwrap_or(""),
            self.node.as_deref().unwrap_or("")
        );
        let chosen = agents.offer(&queue_key, &members, strategy);
        for agent in &chosen {
            self.dial(agent, ring_timeout, true, out);
        }
        if chosen.is_empty() {
            self.queue_retry_timer = Some(self.retry_timer(out));
        }
    }
}
