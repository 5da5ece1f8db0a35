//! Simulated time: each 20 ms frame, parties speak and act, rings time out, playbacks and
//! recordings advance.

use super::*;

impl World {
    // ---------------------------------------------------------------- time

    /// Advances simulated time by `frames` 20 ms frames.
    pub fn advance(&mut self, frames: u64) {
        for _ in 0..frames {
            self.now += FRAME_SAMPLES as u64;
            self.step_parties();
            self.step_ring_deadlines();
            self.step_playbacks();
            self.step_recordings();
        }
    }

    pub(super) fn step_parties(&mut self) {
        let ids: Vec<String> = self.channels.keys().cloned().collect();
        for id in ids {
            let mut actions = Vec::new();
            let Some(c) = self.channels.get_mut(&id) else {
                continue;
            };
            c.frame = match c.party.as_mut() {
                Some(run) => run.frame(&mut actions),
                None => None,
            };
            for action in actions {
                self.apply_party_action(&id, action);
            }
        }
    }

    pub(super) fn apply_party_action(&mut self, id: &str, action: PartyAction) {
        let Some(c) = self.channels.get(id) else {
            return;
        };
        let role = c.role;
        match action {
            PartyAction::Answer => {
                let app_away = c.app.as_deref().is_some_and(|app| !self.app_connected(app));
                if role == Role::Dialled && c.model.state != "Up" && app_away {
                    // Answered while the app has no websocket: Stasis() fails at once
                    // ("Stasis app 'recorder' not active") and the channel hangs up; the app
                    // never hears of it (app_gone_newcall).
                    self.destroy_unanswered(id, 16, "Normal Clearing");
                } else if role == Role::Dialled && c.model.state != "Up" {
                    self.set_half_state(id, "Up");
                    let Some(c) = self.channels.get_mut(id) else {
                        return;
                    };
                    c.model.state = "Up".into();
                    c.ring_deadline = None;
                    c.in_stasis = true;
                    // From here REST shows it in Stasis with its arguments (app_gone trace:
                    // `agents`/`206`/1, `Stasis`, `recorder,agent,<bridge>`).
                    c.model.dialplan.app_name = "Stasis".into();
                    c.model.dialplan.app_data = std::iter::once(c.app.clone().unwrap_or_default())
                        .chain(c.args.iter().cloned())
                        .collect::<Vec<_>>()
                        .join(",");
                    let args = c.args.clone();
                    let model = c.model.clone();
                    let app = c.app.clone().unwrap_or_default();
                    self.emit_state_change(id);
                    self.emit_dial(id, "ANSWER");
                    self.emit(
                        &app,
                        Event::StasisStart(StasisStart {
                            args,
                            channel: model,
                            replace_channel: None,
                            timestamp: self.timestamp(),
                            application: app.clone(),
                            asterisk_id: Some(ASTERISK_ID.into()),
                        }),
                    );
                }
            }
            PartyAction::Busy => {
                if role == Role::Dialled {
                    self.set_half_state(id, "Busy");
                    self.emit_dial(id, "BUSY");
                    // The ;1 half dies with cause 0, its ;2 with 17 (hunt trace).
                    self.destroy_unanswered(id, 0, "Unknown");
                }
            }
            PartyAction::Dtmf(digit) => {
                let model = c.model.clone();
                let in_stasis = c.in_stasis;
                let app = c.app.clone();
                let recording = c.recording.clone();
                if let (true, Some(app)) = (in_stasis, app) {
                    self.emit(
                        &app,
                        Event::ChannelDtmfReceived(ChannelDtmfReceived {
                            digit: digit.to_string(),
                            duration_ms: 100,
                            channel: model,
                            timestamp: self.timestamp(),
                            application: app.clone(),
                            asterisk_id: Some(ASTERISK_ID.into()),
                        }),
                    );
                }
                // In a bridge the digit reaches the other members too, and each of them in the
                // app raises its own event (dtmf_in_bridge: the caller's `*1` shows on the
                // caller's channel and on the agent's).
                let others: Vec<(Channel, String)> = self
                    .bridges
                    .values()
                    .filter(|b| b.model.channels.iter().any(|m| m == id))
                    .flat_map(|b| b.model.channels.clone())
                    .filter(|m| m != id)
                    .filter_map(|m| {
                        let other = self.channels.get(&m)?;
                        let app = other.app.clone().filter(|_| other.in_stasis)?;
                        // The event names the member's other Local half (`Local/203@agents;2`
                        // in the trace), the side the digit leaves the bridge through.
                        let named = other
                            .half
                            .as_ref()
                            .and_then(|h| self.channels.get(h))
                            .unwrap_or(other);
                        Some((named.model.clone(), app))
                    })
                    .collect();
                for (channel, app) in others {
                    self.emit(
                        &app,
                        Event::ChannelDtmfReceived(ChannelDtmfReceived {
                            digit: digit.to_string(),
                            duration_ms: 100,
                            channel,
                            timestamp: self.timestamp(),
                            application: app.clone(),
                            asterisk_id: Some(ASTERISK_ID.into()),
                        }),
                    );
                }
                if let Some(name) = recording {
                    let stops = self
                        .recordings
                        .get(&name)
                        .and_then(|r| r.terminate_on.clone())
                        .is_some_and(|t| t == "any" || t == digit.to_string());
                    if stops {
                        self.finish_recording_trimmed(&name, "done", seconds(0.5));
                    }
                }
            }
            PartyAction::Hangup => {
                if role == Role::Dialled && c.model.state != "Up" {
                    self.emit_dial(id, "CANCEL");
                    self.destroy_unanswered(id, 16, "Normal Clearing");
                } else {
                    self.end_channel(id, 16, false);
                }
            }
        }
    }

    /// A dialled party that never answered: destroyed without entering the app.
    pub(super) fn destroy_unanswered(&mut self, id: &str, cause: i64, cause_txt: &str) {
        let Some(c) = self.channels.remove(id) else {
            return;
        };
        if let Some(h) = &c.half {
            // The dialplan half of a Local channel hears the hang-up twice (hunt trace: busy
            // `0` then `16`, destroyed with `17`; not answered `16`, `16`, destroyed `16`).
            let (requests, destroyed) = if cause == 0 {
                ([0, 16], 17)
            } else {
                ([16, 16], 16)
            };
            self.end_half(h, &requests, destroyed);
        }
        if let Some(app) = &c.app {
            self.emit(
                app,
                Event::ChannelDestroyed(ChannelDestroyed {
                    cause,
                    cause_txt: cause_txt.into(),
                    tech_cause: None,
                    channel: c.model,
                    timestamp: self.timestamp(),
                    application: app.clone(),
                    asterisk_id: Some(ASTERISK_ID.into()),
                }),
            );
        }
    }

    pub(super) fn step_ring_deadlines(&mut self) {
        let now = self.now;
        let expired: Vec<(String, Role)> = self
            .channels
            .iter()
            .filter(|(_, c)| c.ring_deadline.is_some_and(|d| d <= now) && c.model.state != "Up")
            .map(|(id, c)| (id.clone(), c.role))
            .collect();
        for (id, role) in expired {
            match role {
                Role::Dialled => {
                    self.emit_dial(&id, "NOANSWER");
                    self.destroy_unanswered(&id, 19, "No user responding");
                }
                // A caller nobody answered gives up.
                _ => self.end_channel(&id, 16, false),
            }
        }
    }

    pub(super) fn step_playbacks(&mut self) {
        let ids: Vec<String> = self.playbacks.keys().cloned().collect();
        for id in ids {
            let (media, pos, started) = match self.playbacks.get(&id) {
                Some(p) => match &p.current {
                    Some((m, pos, _)) => (m.clone(), *pos, p.started),
                    None => continue,
                },
                None => continue,
            };
            let length = self.media_length(&media);
            let Some(p) = self.playbacks.get_mut(&id) else {
                continue;
            };
            if !started {
                p.started = true;
                p.model.state = "playing".into();
                let model = p.model.clone();
                let app = p.app.clone();
                self.emit(
                    &app,
                    Event::PlaybackStarted(PlaybackStarted {
                        playback: model,
                        timestamp: self.timestamp(),
                        application: app.clone(),
                        asterisk_id: Some(ASTERISK_ID.into()),
                    }),
                );
                if length.is_none() {
                    self.finish_playback(&id, "failed");
                }
                continue;
            }
            let Some(length) = length else {
                self.finish_playback(&id, "failed");
                continue;
            };
            let next_pos = pos + FRAME_SAMPLES as u64;
            if next_pos < length {
                p.current = Some((media, next_pos, length));
                continue;
            }
            match p.queue.pop_front() {
                Some(next) => {
                    p.model.media_uri = next.clone();
                    p.model.next_media_uri = p.queue.front().cloned();
                    p.model.state = "continuing".into();
                    p.current = Some((next, 0, 0));
                    let model = p.model.clone();
                    let app = p.app.clone();
                    self.emit(
                        &app,
                        Event::PlaybackContinuing(PlaybackContinuing {
                            playback: model,
                            timestamp: self.timestamp(),
                            application: app.clone(),
                            asterisk_id: Some(ASTERISK_ID.into()),
                        }),
                    );
                }
                None => self.finish_playback(&id, "done"),
            }
        }
    }

    /// The audio a bridge recording hears this frame: the sum of what every member sends,
    /// plus prompts played to the bridge.
    pub(super) fn bridge_mix(&self, bridge: &SimBridge) -> Vec<i16> {
        let mut mix = vec![0i32; FRAME_SAMPLES];
        for id in &bridge.model.channels {
            if let Some(frame) = self.channels.get(id).and_then(|c| c.frame.as_ref()) {
                for (m, s) in mix.iter_mut().zip(frame) {
                    *m += i32::from(*s);
                }
            }
        }
        for p in self.playbacks.values() {
            if p.target == Target::Bridge(bridge.model.id.clone()) && p.started {
                if let Some((media, pos, _)) = &p.current {
                    if let Some(sound) = media.strip_prefix("sound:") {
                        for (i, m) in mix.iter_mut().enumerate() {
                            *m += i32::from(sound_sample(sound, pos + i as u64));
                        }
                    }
                }
            }
        }
        if bridge.moh && bridge.model.channels.len() <= 1 {
            let start = self.now;
            for (i, m) in mix.iter_mut().enumerate() {
                *m += i32::from(music_on_hold(start + i as u64));
            }
        }
        mix.into_iter()
            .map(|v| v.clamp(i32::from(i16::MIN), i32::from(i16::MAX)) as i16)
            .collect()
    }

    pub(super) fn step_recordings(&mut self) {
        let names: Vec<String> = self.recordings.keys().cloned().collect();
        for name in names {
            let frame = match self.recordings.get(&name).map(|r| r.target.clone()) {
                Some(Target::Bridge(id)) => self.bridges.get(&id).map(|b| self.bridge_mix(b)),
                Some(Target::Channel(id)) => match self.channels.get(&id) {
                    Some(SimChannel {
                        snoop: Some((spied, spy)),
                        ..
                    }) => Some(self.snoop_frame(spied, *spy)),
                    Some(c) => c.frame.clone(),
                    None => None,
                },
                None => continue,
            };
            let Some(r) = self.recordings.get_mut(&name) else {
                continue;
            };
            if r.paused {
                continue; // a paused recording drops the audio
            }
            r.elapsed += FRAME_SAMPLES as u64;
            let silent = frame.as_deref().map(is_silent).unwrap_or(true);
            if silent {
                r.silence_run += FRAME_SAMPLES as u64;
            } else {
                r.silence_run = 0;
            }
            if let Some(mut samples) = frame {
                if r.muted {
                    samples.iter_mut().for_each(|s| *s = 0); // muted writes silence
                } else if !silent {
                    r.talking += FRAME_SAMPLES as u64;
                }
                let bytes = match r.format {
                    FileFormat::Wav | FileFormat::Sln => wav::pcm_bytes(&samples),
                    FileFormat::Ulaw => samples.iter().map(|s| g711::encode_ulaw(*s)).collect(),
                };
                if let Some(w) = r.writer.as_mut() {
                    // Flushed each frame so a copy taken mid-call sees the audio so far.
                    if w.write_all(&bytes).and_then(|_| w.flush()).is_ok() {
                        r.data_bytes += bytes.len() as u64;
                        r.recorded += FRAME_SAMPLES as u64;
                        r.on_disk = true;
                    } else {
                        // A full disk: Asterisk ends the recording at the first write that
                        // fails ("Error writing frame") and reports it finished, `done`.
                        r.write_failed = true;
                    }
                }
            }
            let over_time = r.max_duration.is_some_and(|m| r.elapsed >= m);
            let over_silence = r.max_silence.is_some_and(|m| r.silence_run >= m);
            if over_time || over_silence || r.write_failed {
                self.finish_recording(&name, "done");
            }
        }
    }

    /// When `bridge` first held two channels.
    pub fn bridge_completed_at(&self, bridge: &str) -> Option<std::time::Instant> {
        self.bridge_complete_at.get(bridge).copied()
    }

    /// Number of channels and live recordings, for the demo's status line and tests.
    pub fn counts(&self) -> (usize, usize, usize) {
        (
            self.channels.len(),
            self.bridges.len(),
            self.recordings.len(),
        )
    }
}
