//! The dialled legs of a call: one answers (the others stop ringing), one fails (the next is
//! tried, or the node's failure edge taken), a ringing leg hung up.

use super::*;

impl Call {
    pub(super) fn leg_answered(
        &mut self,
        leg: &str,
        now_ms: u64,
        agents: &mut AgentBook,
        out: &mut Vec<Output>,
    ) {
        let Phase::Dialing { kind, .. } = self.phase.clone() else {
            // Answered too late (the call moved on): hang it up.
            out.push(self.hangup(leg));
            return;
        };
        if let Some(l) = self.legs.get_mut(leg) {
            l.state = LegState::Up;
            if !l.claimed {
                l.claimed = true;
                agents.claim(&l.endpoint);
            }
        }
        // First to answer wins: every other ringing leg is hung up.
        self.hang_up_ringing(Some(leg), now_ms, agents, out);
        self.moh_off(out);
        if kind == DialKind::Queue {
            if let Some(holding) = self.holding.take() {
                out.push(Output::Command(Command::RemoveChannel {
                    bridge: holding.clone(),
                    channel: self.id.clone(),
                }));
                out.push(Output::Command(Command::DestroyBridge { bridge: holding }));
            }
            self.queue_deadline_timer = None;
            self.queue_retry_timer = None;
            self.new_mixing(vec![self.id.clone(), leg.to_string()], out);
        } else if let Some(bridge) = self.mixing.clone() {
            out.push(Output::Command(Command::AddChannels {
                bridge,
                channels: vec![leg.to_string()],
            }));
        }
        self.phase = Phase::Bridged {
            agent: leg.to_string(),
        };
        if !self.lead_in {
            // Recorded as soon as Asterisk has taken the answering party into the bridge (the
            // commands run in order), not once the event saying it joined has come back: a
            // loaded Asterisk is slow to tell, and those would be the call's first words.
            self.maybe_record(leg, now_ms, out);
            return;
        }
        // Recording since the dial: the lead-in ends as the answering party comes in.
        self.lead_in = false;
        if let Some(name) = self.recording.clone() {
            let callee = self
                .legs
                .get(leg)
                .map(|l| l.endpoint.clone())
                .unwrap_or_default();
            out.push(Output::RecordingAnswered {
                name: name.clone(),
                callee,
                at_ms: i64::try_from(now_ms).unwrap_or(i64::MAX),
            });
            self.record_parties(&name, leg, out);
        }
    }

    pub(super) fn release_leg(
        &mut self,
        leg: &str,
        now_ms: u64,
        agents: &mut AgentBook,
        talked: bool,
    ) {
        if let Some(l) = self.legs.get_mut(leg) {
            if l.state != LegState::Gone {
                l.state = LegState::Gone;
                if l.claimed {
                    l.claimed = false;
                    agents.release(&l.endpoint, now_ms, talked);
                }
            }
        }
    }

    pub(super) fn leg_failed(
        &mut self,
        leg: &str,
        now_ms: u64,
        agents: &mut AgentBook,
        out: &mut Vec<Output>,
    ) {
        if !matches!(self.legs.get(leg).map(|l| l.state), Some(LegState::Ringing)) {
            return;
        }
        self.release_leg(leg, now_ms, agents, false);
        let Phase::Dialing { kind, .. } = self.phase.clone() else {
            return;
        };
        let ringing = self.legs.values().any(|l| l.state == LegState::Ringing);
        match kind {
            DialKind::Transfer | DialKind::Outbound => self.fail_node(now_ms, agents, out),
            DialKind::HuntSimultaneous => {
                if !ringing {
                    self.fail_node(now_ms, agents, out);
                }
            }
            DialKind::HuntSequential { index } => {
                let Some(NodeKind::HuntGroup {
                    members,
                    ring_seconds,
                    ..
                }) = self.node.as_deref().and_then(|n| self.node_kind(n))
                else {
                    return;
                };
                if index + 1 < members.len() {
                    self.dial(&members[index + 1], ring_seconds, false, out);
                    let timer = self.timer(out, Duration::from_secs(u64::from(ring_seconds) + 5));
                    self.phase = Phase::Dialing {
                        kind: DialKind::HuntSequential { index: index + 1 },
                        timer,
                    };
                } else {
                    self.fail_node(now_ms, agents, out);
                }
            }
            DialKind::Queue => self.offer_queue(agents, out),
        }
    }

    /// Hangs up every leg still ringing, but `keep`.
    pub(super) fn hang_up_ringing(
        &mut self,
        keep: Option<&str>,
        now_ms: u64,
        agents: &mut AgentBook,
        out: &mut Vec<Output>,
    ) {
        let ringing: Vec<String> = self
            .legs
            .iter()
            .filter(|(id, l)| l.state == LegState::Ringing && Some(id.as_str()) != keep)
            .map(|(id, _)| id.clone())
            .collect();
        for leg in ringing {
            out.push(self.hangup(&leg));
            self.release_leg(&leg, now_ms, agents, false);
        }
    }

    /// Busy, no answer or failure: hang up what still rings, take the failure edge.
    pub(super) fn fail_node(&mut self, now_ms: u64, agents: &mut AgentBook, out: &mut Vec<Output>) {
        self.hang_up_ringing(None, now_ms, agents, out);
        self.moh_off(out);
        self.cancel_lead_in(out);
        let edge =
            self.node
                .as_deref()
                .and_then(|n| self.node_kind(n))
                .and_then(|k| match k {
                    NodeKind::Transfer { on_failure, .. }
                    | NodeKind::HuntGroup { on_failure, .. } => on_failure,
                    NodeKind::Queue { overflow, .. } => overflow,
                    _ => None,
                });
        if self.outbound_to.is_some() {
            self.end(now_ms, agents, out);
            return;
        }
        if let Some(holding) = self.holding.take() {
            out.push(Output::Command(Command::RemoveChannel {
                bridge: holding.clone(),
                channel: self.id.clone(),
            }));
            out.push(Output::Command(Command::DestroyBridge { bridge: holding }));
            if let Some(mixing) = &self.mixing {
                // Back into the call's own bridge for whatever comes next.
                out.push(Output::Command(Command::AddChannels {
                    bridge: mixing.clone(),
                    channels: vec![self.id.clone()],
                }));
            }
        }
        self.queue_deadline_timer = None;
        self.queue_retry_timer = None;
        self.enter(edge, now_ms, agents, out);
    }
}
