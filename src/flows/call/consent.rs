//! Asking the caller's permission to record: the question, the key, the answer.

use super::*;

impl Call {
    /// Plays a consent node's prompt (again, on a retry).
    pub(super) fn ask_consent(
        &mut self,
        attempt: u32,
        now_ms: u64,
        agents: &mut AgentBook,
        out: &mut Vec<Output>,
    ) {
        let Some(NodeKind::Consent { media, .. }) =
            self.node.as_deref().and_then(|n| self.node_kind(n))
        else {
            return;
        };
        let Some(first) = media.first() else {
            self.consent_decided(false, now_ms, agents, out);
            return;
        };
        let playback = self.fresh("P");
        out.push(Output::Command(Command::Play {
            channel: self.id.clone(),
            playback: playback.clone(),
            media: first.clone(),
        }));
        self.phase = Phase::ConsentPrompt {
            index: 0,
            playback,
            attempt,
            key: None,
        };
    }

    /// A key from the caller during a consent node: its grant or decline key decides; any
    /// other is ignored.
    pub(super) fn consent_key(
        &mut self,
        key: &str,
        now_ms: u64,
        agents: &mut AgentBook,
        out: &mut Vec<Output>,
    ) {
        let Some(NodeKind::Consent {
            grant_key,
            decline_key,
            ..
        }) = self.node.as_deref().and_then(|n| self.node_kind(n))
        else {
            return;
        };
        if key != grant_key && key != decline_key {
            return;
        }
        match &mut self.phase {
            // Heard while the prompt plays: answered when it ends.
            Phase::ConsentPrompt { key: kept, .. } => *kept = Some(key.to_string()),
            Phase::ConsentWaiting { .. } => {
                self.consent_decided(key == grant_key, now_ms, agents, out)
            }
            _ => {}
        }
    }

    /// The consent node's answer: the call's consent, then the matching edge.
    pub(super) fn consent_decided(
        &mut self,
        granted: bool,
        now_ms: u64,
        agents: &mut AgentBook,
        out: &mut Vec<Output>,
    ) {
        let Some(NodeKind::Consent {
            next,
            on_granted,
            on_declined,
            ..
        }) = self.node.as_deref().and_then(|n| self.node_kind(n))
        else {
            return;
        };
        self.consent = Some(granted);
        let edge = if granted { on_granted } else { on_declined };
        self.enter(edge.or(next), now_ms, agents, out);
    }
}
