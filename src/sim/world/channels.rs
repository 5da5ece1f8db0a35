//! Channels: originate, answer, ring, variables, hang-ups, and the snoops that listen to them.

use super::*;

impl World {
    // ---------------------------------------------------------------- channels

    pub fn channels(&self) -> Vec<Channel> {
        self.channels.values().map(|c| c.model.clone()).collect()
    }

    pub fn channel(&self, id: &str) -> SimResult<Channel> {
        Ok(self.channel_model(id)?.model.clone())
    }

    /// `POST /channels`. `Local/<exten>@inbound` with a `caller-sim` context/extension is a call
    /// from the network into `Stasis(<app>,inbound,<exten>)`; `app=` originates a party into
    /// the app; anything unknown fails at once like `Local/999@nowhere`.
    #[allow(clippy::too_many_arguments)]
    pub fn originate(
        &mut self,
        endpoint: &str,
        app: Option<&str>,
        app_args: Option<&str>,
        _context: Option<&str>,
        extension: Option<&str>,
        caller_id: Option<&str>,
        timeout: Option<u32>,
        channel_id: Option<&str>,
        default_app: &str,
    ) -> SimResult<Channel> {
        if endpoint.is_empty() {
            return fail(400, "Endpoint must be specified");
        }
        let (tech, resource) = match endpoint.split_once('/') {
            Some(parts) => parts,
            None => return fail(400, "Endpoint parameter is not in tech/resource format"),
        };
        if app.is_none() && extension.is_none() {
            return fail(400, "Application or extension must be specified");
        }
        let caller = parse_caller_id(caller_id.unwrap_or(""));
        let (exten, ctx) = resource.split_once('@').unwrap_or((resource, "default"));
        let created = timestamp();
        let local_seq = self.next_local;
        self.next_local += 1;
        let base_name = if tech == "Local" {
            format!("Local/{resource}-{local_seq:08x}")
        } else {
            format!("{endpoint}-{local_seq:08x}")
        };
        let outgoing_id = match channel_id {
            Some(id) if self.channels.contains_key(id) => {
                return fail(409, "Channel with given unique ID already exists");
            }
            Some(id) => id.to_string(),
            None => self.new_channel_id(),
        };
        let other_id = self.new_channel_id();
        let outgoing = Channel {
            id: outgoing_id.clone(),
            name: format!("{base_name};1"),
            state: "Down".into(),
            protocol_id: String::new(),
            caller: caller.clone(),
            connected: caller.clone(),
            accountcode: String::new(),
            dialplan: DialplanCep {
                context: ctx.to_string(),
                exten: exten.to_string(),
                priority: 1,
                app_name: "AppDial2".into(),
                app_data: "(Outgoing Line)".into(),
            },
            creationtime: created.clone(),
            language: "en".into(),
            channelvars: self.channelvars_of(&outgoing_id, &outgoing_id),
            caller_rdnis: None,
            tenantid: None,
        };
        let timeout_samples = seconds(f64::from(timeout.unwrap_or(30)));

        if tech == "Local" && ctx == "inbound" {
            // A call from the network: ;2 enters the app, ;1 runs the caller's script.
            let script = extension.and_then(|e| {
                self.parties
                    .get(e)
                    .cloned()
                    .or_else(|| caller_sim_script(e))
            });
            let stasis_app = default_app.to_string();
            if !self.app_connected(&stasis_app) {
                // Stasis() fails at once and the dialplan goes on: the app never hears of the
                // call (app_gone_newcall); the fallback, when configured, records it.
                if let Some(length) = self.dialplan_fallback {
                    self.write_fallback_recording(exten, &caller, &other_id, length);
                }
                return Ok(outgoing);
            }
            let app_data = format!("{stasis_app},inbound,{exten}");
            let mut inbound = outgoing.clone();
            inbound.id = other_id.clone();
            inbound.channelvars = self.channelvars_of(&other_id, &outgoing_id);
            inbound.name = format!("{base_name};2");
            inbound.state = "Ring".into();
            inbound.dialplan = DialplanCep {
                context: "inbound".into(),
                exten: exten.to_string(),
                priority: 2,
                app_name: "Stasis".into(),
                app_data,
            };
            self.channels.insert(
                outgoing_id.clone(),
                SimChannel::new(outgoing.clone(), Role::Half, None, Some(other_id.clone())),
            );
            let mut caller_channel = SimChannel::new(
                inbound.clone(),
                Role::InboundCaller,
                Some(stasis_app.clone()),
                Some(outgoing_id.clone()),
            );
            caller_channel.in_stasis = true;
            caller_channel.args = vec!["inbound".into(), exten.to_string()];
            caller_channel.script = script;
            caller_channel.ring_deadline = Some(self.now + timeout_samples);
            self.channels.insert(other_id.clone(), caller_channel);
            self.emit(
                &stasis_app,
                Event::StasisStart(StasisStart {
                    args: vec!["inbound".into(), exten.to_string()],
                    channel: inbound,
                    replace_channel: None,
                    timestamp: self.timestamp(),
                    application: stasis_app.clone(),
                    asterisk_id: Some(ASTERISK_ID.into()),
                }),
            );
            return Ok(outgoing);
        }

        let Some(app) = app else {
            return fail(
                400,
                "Only calls into the app or to Local/<exten>@inbound are simulated",
            );
        };
        // Phones (`PJSIP/201`) behave like the reference agents (`Local/201@agents`).
        let script = self.parties.get(endpoint).cloned().or_else(|| match tech {
            "Local" if ctx == "agents" => agent_script(exten),
            "Local" => None,
            _ => agent_script(resource),
        });
        let args: Vec<String> = app_args
            .map(|a| a.split(',').map(str::to_string).collect())
            .unwrap_or_default();
        let mut dialled = SimChannel::new(
            outgoing.clone(),
            Role::Dialled,
            Some(app.to_string()),
            Some(other_id.clone()),
        );
        dialled.args = args;
        dialled.dialstring = resource.to_string();
        dialled.ring_deadline = Some(self.now + timeout_samples);
        let mut half_model = outgoing.clone();
        half_model.id = other_id.clone();
        half_model.channelvars = self.channelvars_of(&other_id, &outgoing_id);
        half_model.name = format!("{base_name};2");
        half_model.state = "Ring".into();
        half_model.dialplan.priority = 1;
        half_model.dialplan.app_name = String::new();
        half_model.dialplan.app_data = String::new();
        // Asterisk subscribes the app to both halves of a Local channel it originates: the `;2`
        // half runs dialplan, never enters Stasis, yet `/applications/{app}` lists it and its
        // events reach the app (app_gone, transfer, hunt traces). A phone has no second half.
        let half_app = (tech == "Local").then(|| app.to_string());
        self.channels.insert(
            other_id.clone(),
            SimChannel::new(
                half_model.clone(),
                Role::Half,
                half_app,
                Some(outgoing_id.clone()),
            ),
        );
        match script {
            Some(script) => {
                let mut run = PartyRun::new(&script);
                let mut actions = Vec::new();
                run.take_instant(&mut actions);
                dialled.party = Some(run);
                dialled.script = Some(script);
                self.channels.insert(outgoing_id.clone(), dialled);
                self.emit_dial(&outgoing_id, "");
                for action in actions {
                    self.apply_party_action(&outgoing_id, action);
                }
            }
            None => {
                // Nothing answers this endpoint: both halves are destroyed at once.
                self.channels.insert(outgoing_id.clone(), dialled);
                for id in [&other_id, &outgoing_id] {
                    if let Some(c) = self.channels.remove(id.as_str()) {
                        self.emit(
                            app,
                            Event::ChannelDestroyed(ChannelDestroyed {
                                cause: 0,
                                cause_txt: "Unknown".into(),
                                tech_cause: None,
                                channel: c.model,
                                timestamp: self.timestamp(),
                                application: app.to_string(),
                                asterisk_id: Some(ASTERISK_ID.into()),
                            }),
                        );
                    }
                }
            }
        }
        Ok(outgoing)
    }

    pub(super) fn emit_dial(&self, id: &str, status: &str) {
        let Some(c) = self.channels.get(id) else {
            return;
        };
        let Some(app) = &c.app else { return };
        self.emit(
            app,
            Event::Dial(Dial {
                caller: None,
                peer: c.model.clone(),
                forward: Some(String::new()),
                forwarded: None,
                dialstring: Some(c.dialstring.clone()),
                dialstatus: status.to_string(),
                timestamp: self.timestamp(),
                application: app.clone(),
                asterisk_id: Some(ASTERISK_ID.into()),
            }),
        );
    }

    /// Ends the `;2` half of a Local channel the app originated, with the events the app hears
    /// of it (hunt, queue, transfer traces): a hang-up request per cause in `requests`, the last
    /// one soft, then its destruction.
    pub(super) fn end_half(&mut self, id: &str, requests: &[i64], destroyed_cause: i64) {
        let Some(half) = self.channels.remove(id) else {
            return;
        };
        let Some(app) = half.app else { return };
        for (n, &cause) in requests.iter().enumerate() {
            self.emit(
                &app,
                Event::ChannelHangupRequest(ChannelHangupRequest {
                    cause: Some(cause),
                    tech_cause: None,
                    soft: (n + 1 == requests.len()).then_some(true),
                    channel: half.model.clone(),
                    timestamp: self.timestamp(),
                    application: app.clone(),
                    asterisk_id: Some(ASTERISK_ID.into()),
                }),
            );
        }
        self.emit(
            &app,
            Event::ChannelDestroyed(ChannelDestroyed {
                cause: destroyed_cause,
                cause_txt: cause_text(destroyed_cause).into(),
                tech_cause: None,
                channel: half.model,
                timestamp: self.timestamp(),
                application: app.clone(),
                asterisk_id: Some(ASTERISK_ID.into()),
            }),
        );
    }

    /// The `;2` half of a Local channel the app originated changes state (`Up` when the
    /// agent answers, `Busy`), as the app hears it.
    pub(super) fn set_half_state(&mut self, id: &str, state: &str) {
        let Some(half) = self
            .channels
            .get(id)
            .and_then(|c| c.half.clone())
            .and_then(|h| self.channels.get_mut(&h))
        else {
            return;
        };
        half.model.state = state.into();
        if state == "Up" {
            // What the reference agents run once they answer (app_gone's `GET /channels`).
            half.model.dialplan.priority = 2;
            half.model.dialplan.app_name = "Playback".into();
            half.model.dialplan.app_data = "tt-monkeys".into();
        }
        let half_id = half.model.id.clone();
        self.emit_state_change(&half_id);
    }

    pub(super) fn emit_state_change(&self, id: &str) {
        let Some(c) = self.channels.get(id) else {
            return;
        };
        let Some(app) = &c.app else { return };
        self.emit(
            app,
            Event::ChannelStateChange(ChannelStateChange {
                channel: c.model.clone(),
                timestamp: self.timestamp(),
                application: app.clone(),
                asterisk_id: Some(ASTERISK_ID.into()),
            }),
        );
    }

    pub fn answer(&mut self, id: &str) -> SimResult<()> {
        self.stasis_channel(id)?;
        let Some(c) = self.channels.get_mut(id) else {
            return fail(404, "Channel not found");
        };
        if c.model.state == "Up" {
            return Ok(());
        }
        c.model.state = "Up".into();
        c.ring_deadline = None;
        if c.role == Role::InboundCaller && c.party.is_none() {
            c.party = c.script.as_ref().map(PartyRun::new);
        }
        let half = c.half.clone();
        if let Some(h) = half.and_then(|h| self.channels.get_mut(&h)) {
            h.model.state = "Up".into();
        }
        self.emit_state_change(id);
        Ok(())
    }

    pub fn ring(&mut self, id: &str) -> SimResult<()> {
        self.stasis_channel(id)?;
        Ok(())
    }

    pub fn set_var(&mut self, id: &str, variable: &str, value: &str) -> SimResult<()> {
        if variable.is_empty() {
            return fail(400, "Variable name is required");
        }
        self.channel_model(id)?;
        if let Some(c) = self.channels.get_mut(id) {
            c.vars.insert(variable.to_string(), value.to_string());
        }
        Ok(())
    }

    pub fn get_var(&self, id: &str, variable: &str) -> SimResult<Variable> {
        if variable.is_empty() {
            return fail(400, "Variable name is required");
        }
        let c = self.channel_model(id)?;
        match c.vars.get(variable) {
            Some(v) => Ok(Variable { value: v.clone() }),
            None => fail(404, "Provided variable was not found"),
        }
    }

    pub fn channel_moh(&mut self, id: &str, on: bool) -> SimResult<()> {
        self.stasis_channel(id)?;
        if let Some(c) = self.channels.get_mut(id) {
            c.moh = on;
        }
        Ok(())
    }

    /// `DELETE /channels/{id}`: the app hangs a channel up.
    pub fn hangup(&mut self, id: &str, reason: Option<&str>) -> SimResult<()> {
        if let Some(r) = reason {
            const REASONS: [&str; 10] = [
                "normal",
                "busy",
                "congestion",
                "no_answer",
                "timeout",
                "rejected",
                "unallocated",
                "normal_unspecified",
                "number_incomplete",
                "codec_mismatch",
            ];
            if !REASONS.contains(&r)
                && !["interworking", "failure", "answered_elsewhere"].contains(&r)
            {
                return fail(400, "Invalid reason for hangup provided");
            }
        }
        // As Asterisk: the channel's name first, then its id.
        let id = self
            .channels
            .iter()
            .find(|(_, c)| c.model.name == id)
            .map(|(key, _)| key.clone())
            .unwrap_or_else(|| id.to_string());
        self.channel_model(&id)?;
        self.end_channel(&id, 32, true);
        Ok(())
    }

    /// `POST /channels/{id}/snoop`: a new channel in the app that listens to `spied`, as the
    /// snoop traces show: 200 with the channel (`Snoop/<spied>-NNNNNNNN`, `Up`, empty caller,
    /// `default`/`s`/1), then its `StasisStart` with `appArgs` split on commas.
    pub fn snoop(
        &mut self,
        spied: &str,
        spy: Option<&str>,
        whisper: Option<&str>,
        app: Option<&str>,
        app_args: Option<&str>,
        snoop_id: Option<&str>,
    ) -> SimResult<Channel> {
        let spy = match spy.unwrap_or("none") {
            "in" => Some(Spy::In),
            "out" => Some(Spy::Out),
            "both" => Some(Spy::Both),
            "none" => None,
            _ => return fail(400, "Invalid direction specified for spy"),
        };
        if !matches!(whisper.unwrap_or("none"), "none" | "in" | "out" | "both") {
            return fail(400, "Invalid direction specified for whisper");
        }
        let Some(app) = app.filter(|a| !a.is_empty()) else {
            return fail(400, "Application name is required");
        };
        let spied_model = self.channel_model(spied)?.model.clone();
        let id = match snoop_id {
            Some(id) if self.channels.contains_key(id) => {
                return fail(409, "Channel with the requested snoopId already exists")
            }
            Some(id) => id.to_string(),
            None => self.new_channel_id(),
        };
        let seq = self.next_local;
        self.next_local += 1;
        let created = self.timestamp();
        let mut model = spied_model;
        model.id = id.clone();
        model.name = format!("Snoop/{spied}-{seq:08x}");
        model.state = "Up".into();
        model.caller = Default::default();
        model.connected = Default::default();
        model.dialplan.context = "default".into();
        model.dialplan.exten = "s".into();
        model.dialplan.priority = 1;
        model.dialplan.app_name = String::new();
        model.dialplan.app_data = String::new();
        model.creationtime = created;
        let answer = model.clone();
        let args: Vec<String> = app_args
            .filter(|a| !a.is_empty())
            .map(|a| a.split(',').map(str::to_string).collect())
            .unwrap_or_default();
        model.dialplan.app_name = "Stasis".into();
        model.dialplan.app_data = std::iter::once(app.to_string())
            .chain(args.iter().cloned())
            .collect::<Vec<_>>()
            .join(",");
        let mut channel = SimChannel::new(model.clone(), Role::Snoop, Some(app.to_string()), None);
        channel.in_stasis = true;
        channel.args = args.clone();
        channel.snoop = spy.map(|spy| (spied.to_string(), spy));
        self.channels.insert(id, channel);
        self.emit(
            app,
            Event::StasisStart(StasisStart {
                args,
                channel: model,
                replace_channel: None,
                timestamp: self.timestamp(),
                application: app.to_string(),
                asterisk_id: Some(ASTERISK_ID.into()),
            }),
        );
        Ok(answer)
    }

    /// What a snoop hears this frame: the spied party's voice (`in`), what the spied channel
    /// hears in its bridge (`out`), or both. A party that sends nothing is heard as silence, so
    /// the snoop's file keeps time (snoop_silent trace).
    pub(super) fn snoop_frame(&self, spied: &str, spy: Spy) -> Vec<i16> {
        let silence = || vec![0i16; FRAME_SAMPLES];
        let Some(channel) = self.channels.get(spied) else {
            return silence();
        };
        let own = channel.frame.clone().unwrap_or_else(silence);
        let heard = || {
            let mut mix = vec![0i32; FRAME_SAMPLES];
            let members = channel
                .bridge
                .as_ref()
                .and_then(|b| self.bridges.get(b))
                .map(|b| b.model.channels.clone())
                .unwrap_or_default();
            for other in members.iter().filter(|m| m.as_str() != spied) {
                if let Some(frame) = self.channels.get(other).and_then(|c| c.frame.as_ref()) {
                    for (m, s) in mix.iter_mut().zip(frame) {
                        *m += i32::from(*s);
                    }
                }
            }
            mix
        };
        let mixed: Vec<i32> = match spy {
            Spy::In => return own,
            Spy::Out => heard(),
            Spy::Both => heard()
                .into_iter()
                .zip(&own)
                .map(|(h, o)| h + i32::from(*o))
                .collect(),
        };
        mixed
            .into_iter()
            .map(|v| v.clamp(i32::from(i16::MIN), i32::from(i16::MAX)) as i16)
            .collect()
    }

    /// A spied channel is gone: Asterisk ends its snoops, the snoop's recording finished, then
    /// its `StasisEnd` (no hangup request, no `ChannelDestroyed`: snoop_dual trace).
    pub(super) fn end_snoops_of(&mut self, spied: &str) {
        let snoops: Vec<String> = self
            .channels
            .iter()
            .filter(|(_, c)| c.snoop.as_ref().is_some_and(|(s, _)| s == spied))
            .map(|(id, _)| id.clone())
            .collect();
        for id in snoops {
            if let Some(name) = self.channels.get(&id).and_then(|c| c.recording.clone()) {
                self.finish_recording(&name, "done");
            }
            let Some(c) = self.channels.remove(&id) else {
                continue;
            };
            if let Some(app) = &c.app {
                self.emit(
                    app,
                    Event::StasisEnd(StasisEnd {
                        channel: c.model,
                        timestamp: self.timestamp(),
                        application: app.clone(),
                        asterisk_id: Some(ASTERISK_ID.into()),
                    }),
                );
            }
        }
    }

    /// Ends a channel: hangup request, recording finished, bridge left, StasisEnd, destroyed.
    pub(super) fn end_channel(&mut self, id: &str, cause: i64, by_app: bool) {
        let Some(c) = self.channels.get(id) else {
            return;
        };
        let model = c.model.clone();
        let app = c.app.clone();
        let in_stasis = c.in_stasis;
        let role = c.role;
        let was_up = model.state == "Up";
        if let Some(app) = &app {
            self.emit(
                app,
                Event::ChannelHangupRequest(ChannelHangupRequest {
                    cause: Some(cause),
                    tech_cause: None,
                    soft: if by_app { Some(true) } else { None },
                    channel: model.clone(),
                    timestamp: self.timestamp(),
                    application: app.clone(),
                    asterisk_id: Some(ASTERISK_ID.into()),
                }),
            );
        }
        if role == Role::Dialled && !was_up {
            self.emit_dial(id, "NOANSWER");
        }
        if let Some(name) = self.channels.get(id).and_then(|c| c.recording.clone()) {
            self.finish_recording(&name, "done");
        }
        self.stop_playbacks_of(&Target::Channel(id.to_string()));
        if let Some(bridge) = self.channels.get(id).and_then(|c| c.bridge.clone()) {
            self.leave_bridge(id, &bridge);
        }
        if in_stasis {
            if let Some(app) = &app {
                self.emit(
                    app,
                    Event::StasisEnd(StasisEnd {
                        channel: model.clone(),
                        timestamp: self.timestamp(),
                        application: app.clone(),
                        asterisk_id: Some(ASTERISK_ID.into()),
                    }),
                );
            }
        }
        let Some(c) = self.channels.remove(id) else {
            return;
        };
        if let Some(h) = &c.half {
            if role == Role::Dialled {
                // The dialplan half: one hang-up request when the agent hung up (transfer
                // trace), two when the app hung the call up (queue, snoop traces) or it was
                // still ringing (hunt trace's member not answering).
                let requests: &[i64] = if was_up && !by_app { &[16] } else { &[16, 16] };
                self.end_half(h, requests, 16);
            } else {
                self.channels.remove(h);
            }
        }
        self.end_snoops_of(id);
        // Channels the app originated stay subscribed to the end; a caller that entered from
        // the dialplan is unsubscribed at StasisEnd, as in the traces.
        if role == Role::Dialled {
            if let Some(app) = &app {
                let (cause, cause_txt) = if by_app {
                    (16, "Normal Clearing")
                } else {
                    (cause, cause_text(cause))
                };
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
    }
}
