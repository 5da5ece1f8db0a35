//! Recording a call: the switches that decide, the row written first, armed lead-ins, each party on its own.

use super::*;
use crate::library::{Consent, NodeType, RecordingFormat};

impl Call {
    pub(super) fn row(
        &self,
        name: &str,
        format: Option<RecordingFormat>,
        callee: &str,
        now_ms: u64,
    ) -> RecordingStarted {
        let (flow, node, node_type, tenant, project, private) = match (&self.flow, &self.node) {
            (Some(f), Some(n)) => (
                Some(f.name.clone()),
                Some(n.clone()),
                f.nodes.get(n).and_then(|n| n.kind.recorded_as()),
                f.tenant.clone(),
                f.project.clone(),
                f.private,
            ),
            _ => (
                None,
                None,
                Some(NodeType::Outbound),
                self.outbound_scope.0.clone(),
                self.outbound_scope.1.clone(),
                false,
            ),
        };
        RecordingStarted {
            recording_name: name.to_string(),
            call_id: self.id.clone(),
            tenant,
            project,
            private,
            consent: match self.consent {
                Some(true) => Consent::Granted,
                Some(false) => Consent::Denied,
                None if self.heard_recording_notice => Consent::Granted,
                None => Consent::Unknown,
            },
            participants: format!("{},{callee}", self.caller_number),
            flow,
            node,
            node_type,
            direction: self.direction,
            caller_name: self.caller_name.clone(),
            caller_number: self.caller_number.clone(),
            callee: callee.to_string(),
            format,
            started_at_ms: i64::try_from(now_ms).unwrap_or(i64::MAX),
            linkedid: self.linkedid.clone(),
            callee_channel: None,
        }
    }

    /// Whether the recording announcement is still to be played before recording this call.
    pub(super) fn announces(&self) -> bool {
        !self.heard_recording_notice
            && !self.announcement.is_empty()
            && self.flow.as_ref().is_some_and(|f| f.announces)
    }

    /// Whether the current node (or a direct outbound call's setting) records.
    pub(super) fn records(&self) -> bool {
        self.recording_switch().0
    }

    /// Whether the call records now, and which switch decided (for a call listed as not
    /// recorded: the reason names it).
    pub(super) fn recording_switch(&self) -> (bool, &'static str) {
        if self.recording_enabled && self.consent == Some(false) {
            return (false, "consent");
        }
        match &self.outbound_to {
            Some(_) if !self.recording_enabled => (false, "recording_enabled"),
            Some((_, record)) => (*record, "record_outbound_calls"),
            None => {
                let own = self
                    .node
                    .as_deref()
                    .and_then(|n| self.node_kind(n))
                    .and_then(|k| k.record_call());
                node_records(self.recording_enabled, own, self.record_inbound_calls)
            }
        }
    }

    /// The recording's name for the current node: `<node type>-<time>-<hex>`.
    pub(super) fn new_recording_name(&mut self, now_ms: u64) -> String {
        let prefix = match &self.outbound_to {
            Some(_) => "outbound".to_string(),
            None => self
                .node
                .as_deref()
                .and_then(|n| self.node_kind(n))
                .map(|k| k.type_name().replace('_', "-"))
                .unwrap_or_default(),
        };
        let random = self.next_random();
        recording_name(&prefix, now_ms, random)
    }

    /// Starts recording the call's bridge now, with only the caller in it, when the deployment
    /// records from dial: the Originate already queued goes first, so ringing overlaps the
    /// record request, and the answering party is added only after Asterisk took it.
    pub(super) fn arm_recording(&mut self, callee: &str, now_ms: u64, out: &mut Vec<Output>) {
        if !self.record_from_dial || !self.records() || self.recording.is_some() {
            return;
        }
        let Some(bridge) = self.mixing.clone() else {
            return;
        };
        let name = self.new_recording_name(now_ms);
        let mut request = RecordRequest::new(name.clone(), "wav");
        request.if_exists = Some(IfExists::Fail);
        out.push(Output::RecordingStarted(Box::new(self.row(
            &name,
            Some(RecordingFormat::Wav),
            callee,
            now_ms,
        ))));
        out.push(Output::Command(Command::RecordBridge { bridge, request }));
        self.recording = Some(name);
        self.lead_in = true;
    }

    /// The armed recording's lead-in is discarded: nobody answered.
    pub(super) fn cancel_lead_in(&mut self, out: &mut Vec<Output>) {
        if !self.lead_in {
            return;
        }
        self.lead_in = false;
        if let Some(name) = self.recording.take() {
            // The library hears it first, so the file vanishing is not taken for a loss.
            out.push(Output::RecordingCancelled { name: name.clone() });
            out.push(Output::Command(Command::CancelRecording { name }));
        }
    }

    pub(super) fn maybe_record(&mut self, agent: &str, now_ms: u64, out: &mut Vec<Output>) {
        let (record, switch) = self.recording_switch();
        let Some(bridge) = self.mixing.clone() else {
            return;
        };
        let callee = self
            .legs
            .get(agent)
            .map(|l| l.endpoint.clone())
            .unwrap_or_default();
        if !record {
            if self.recording.is_none() {
                let name = format!("call:{}", self.id);
                let mut row = self.row(&name, None, &callee, now_ms);
                row.callee_channel = Some(self.asterisk_id(agent).to_string());
                out.push(Output::NotRecorded(Box::new(row), switch));
            }
            return;
        }
        let name = self.new_recording_name(now_ms);
        let mut request = RecordRequest::new(name.clone(), "wav");
        request.if_exists = Some(IfExists::Fail);
        let mut row = self.row(&name, Some(RecordingFormat::Wav), &callee, now_ms);
        // Asterisk's uniqueid of the answering leg (the call knows its own name for it).
        row.callee_channel = Some(self.asterisk_id(agent).to_string());
        out.push(Output::RecordingStarted(Box::new(row)));
        out.push(Output::Command(Command::RecordBridge { bridge, request }));
        self.record_parties(&name, agent, out);
        self.recording = Some(name);
    }

    /// A dual-channel node records each party on its own as well: a `spy=in` snoop on each leg,
    /// recorded beside the bridge as `.channels/<name>-caller` and `-agent` (a hidden folder:
    /// the library serves them through the bridge recording, never as recordings of their own).
    pub(super) fn record_parties(&mut self, name: &str, agent: &str, out: &mut Vec<Output>) {
        let dual = self
            .node
            .as_deref()
            .and_then(|n| self.node_kind(n))
            .is_some_and(|k| k.dual_channel());
        if !dual {
            return;
        }
        for (role, leg) in [("caller", self.id.clone()), ("agent", agent.to_string())] {
            let snoop = self.fresh("S");
            let recording = format!("{}/{name}-{role}", crate::audio::PARTY_FOLDER);
            out.push(Output::Command(Command::Snoop {
                channel: leg,
                snoop: snoop.clone(),
                role,
            }));
            let mut request = RecordRequest::new(recording.clone(), "wav");
            request.if_exists = Some(IfExists::Fail);
            out.push(Output::Command(Command::RecordChannel {
                channel: snoop.clone(),
                request,
            }));
            self.snoops.push((snoop, recording));
        }
    }

    /// The parties' own recordings end with the segment: their snoops are hung up (Asterisk
    /// ends a snoop itself only when the party it listens to leaves).
    pub(super) fn stop_parties(&mut self, out: &mut Vec<Output>) {
        for (snoop, _) in std::mem::take(&mut self.snoops) {
            out.push(self.hangup(&snoop));
        }
    }

    pub(super) fn recording_over(
        &mut self,
        name: &str,
        now_ms: u64,
        agents: &mut AgentBook,
        out: &mut Vec<Output>,
    ) {
        if self.recording.as_deref() != Some(name) {
            return;
        }
        self.recording = None;
        match self.phase {
            // A voicemail ends with its recording.
            Phase::VoicemailRecording { .. } => self.end(now_ms, agents, out),
            // Asterisk stops a recording at the first write the full disk refuses, and the
            // call goes on: record it again once there is room. Ended for another reason (the
            // runtime found room when it ended), the call goes on unrecorded.
            Phase::Bridged { .. } if !self.disk_room => {
                self.awaiting_disk_room = true;
                self.stop_parties(out);
            }
            _ => {}
        }
    }

    /// The runtime says whether the recordings disk has room: a call whose recording the full
    /// disk ended records again (a new segment of the call).
    pub(super) fn disk_room_now(&mut self, room: bool, now_ms: u64, out: &mut Vec<Output>) {
        self.disk_room = room;
        if !room || !self.awaiting_disk_room {
            return;
        }
        self.awaiting_disk_room = false;
        let Phase::Bridged { agent } = self.phase.clone() else {
            return;
        };
        if self.recording.is_some() || !self.records() {
            return;
        }
        out.push(Output::RecordingResumed);
        self.maybe_record(&agent, now_ms, out);
    }
}
