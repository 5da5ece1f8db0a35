//! Bridges: create, add and remove channels, destroy, music on hold.

use super::*;

impl World {
    // ---------------------------------------------------------------- bridges

    pub fn bridges(&self) -> Vec<Bridge> {
        self.bridges.values().map(SimBridge::shown).collect()
    }

    pub fn bridge(&self, id: &str) -> SimResult<Bridge> {
        match self.bridges.get(id) {
            Some(b) => Ok(b.shown()),
            None => fail(404, "Bridge not found"),
        }
    }

    pub fn create_bridge(
        &mut self,
        kind: Option<&str>,
        name: Option<&str>,
        bridge_id: Option<&str>,
        app: &str,
    ) -> SimResult<Bridge> {
        let kind = kind.unwrap_or("mixing");
        let holding = kind.split(',').any(|k| k == "holding");
        for k in kind.split(',') {
            if ![
                "mixing",
                "holding",
                "dtmf_events",
                "proxy_media",
                "video_sfu",
                "video_single",
                "sdp_label",
            ]
            .contains(&k)
            {
                return fail(400, format!("Invalid bridge type '{k}'"));
            }
        }
        let id = bridge_id.map(str::to_string).unwrap_or_else(new_uuid);
        if self.bridges.contains_key(&id) {
            return fail(409, "Bridge with same ID already exists");
        }
        let model = Bridge {
            id: id.clone(),
            technology: if holding {
                "holding_bridge"
            } else {
                "simple_bridge"
            }
            .into(),
            bridge_type: if holding { "holding" } else { "mixing" }.into(),
            bridge_class: "stasis".into(),
            creator: "Stasis".into(),
            name: name.unwrap_or("").to_string(),
            channels: vec![],
            creationtime: timestamp(),
            video_mode: Some("talker".into()),
            video_source_id: None,
            bridgevars: None,
        };
        self.bridges.insert(
            id,
            SimBridge {
                model: model.clone(),
                app: app.to_string(),
                moh: false,
                recording: None,
            },
        );
        Ok(model)
    }

    pub fn add_channels(&mut self, bridge: &str, channels: &[&str]) -> SimResult<()> {
        if !self.bridges.contains_key(bridge) {
            return fail(404, "Bridge not found");
        }
        for id in channels {
            let Some(c) = self.channels.get(*id) else {
                return fail(400, "Channel not found");
            };
            if !c.in_stasis {
                return fail(422, "Channel not in Stasis application");
            }
        }
        for id in channels {
            let current = self.channels.get(*id).and_then(|c| c.bridge.clone());
            if current.as_deref() == Some(bridge) {
                continue;
            }
            if let Some(old) = current {
                self.leave_bridge(id, &old);
            }
            let Some(b) = self.bridges.get_mut(bridge) else {
                continue;
            };
            b.model.channels.push(id.to_string());
            if b.model.channels.len() == 2 {
                self.bridge_complete_at
                    .entry(bridge.to_string())
                    .or_insert_with(std::time::Instant::now);
            }
            let bridge_model = b.model.clone();
            let app = b.app.clone();
            let Some(c) = self.channels.get_mut(*id) else {
                continue;
            };
            c.bridge = Some(bridge.to_string());
            let channel_model = c.model.clone();
            self.emit(
                &app,
                Event::ChannelEnteredBridge(ChannelEnteredBridge {
                    bridge: bridge_model,
                    channel: Some(channel_model),
                    timestamp: self.timestamp(),
                    application: app.clone(),
                    asterisk_id: Some(ASTERISK_ID.into()),
                }),
            );
        }
        Ok(())
    }

    pub fn remove_channels(&mut self, bridge: &str, channels: &[&str]) -> SimResult<()> {
        let Some(b) = self.bridges.get(bridge) else {
            return fail(404, "Bridge not found");
        };
        for id in channels {
            if !self.channels.contains_key(*id) {
                return fail(400, "Channel not found");
            }
            if !b.model.channels.iter().any(|c| c == id) {
                return fail(422, "Channel not in this bridge");
            }
        }
        for id in channels {
            self.leave_bridge(id, bridge);
        }
        Ok(())
    }

    pub(super) fn leave_bridge(&mut self, channel: &str, bridge: &str) {
        let Some(c) = self.channels.get_mut(channel) else {
            return;
        };
        c.bridge = None;
        let channel_model = c.model.clone();
        let Some(b) = self.bridges.get_mut(bridge) else {
            return;
        };
        // With three or more participants (the recorder counts) Asterisk has moved the bridge
        // to softmix; the leave event still shows it, then it falls back (hunt, transfer traces).
        let participants = b.model.channels.len() + usize::from(b.recording.is_some());
        b.model.channels.retain(|id| id != channel);
        let mut bridge_model = b.model.clone();
        if b.model.bridge_type == "mixing" && participants >= 3 {
            bridge_model.technology = "softmix".into();
        }
        let app = b.app.clone();
        let empty = b.model.channels.is_empty();
        let recording = b.recording.clone();
        self.emit(
            &app,
            Event::ChannelLeftBridge(ChannelLeftBridge {
                bridge: bridge_model,
                channel: channel_model,
                timestamp: self.timestamp(),
                application: app.clone(),
                asterisk_id: Some(ASTERISK_ID.into()),
            }),
        );
        if empty {
            if let Some(name) = recording {
                self.finish_recording(&name, "done");
            }
        }
    }

    pub fn destroy_bridge(&mut self, id: &str) -> SimResult<()> {
        let Some(b) = self.bridges.get(id) else {
            return fail(404, "Bridge not found");
        };
        let members = b.model.channels.clone();
        for channel in members {
            self.leave_bridge(&channel, id);
        }
        if let Some(name) = self.bridges.get(id).and_then(|b| b.recording.clone()) {
            self.finish_recording(&name, "done");
        }
        self.stop_playbacks_of(&Target::Bridge(id.to_string()));
        self.bridge_complete_at.remove(id);
        if let Some(b) = self.bridges.remove(id) {
            self.emit(
                &b.app,
                Event::BridgeDestroyed(BridgeDestroyed {
                    bridge: b.model,
                    timestamp: self.timestamp(),
                    application: b.app.clone(),
                    asterisk_id: Some(ASTERISK_ID.into()),
                }),
            );
        }
        Ok(())
    }

    pub fn bridge_moh(&mut self, id: &str, on: bool) -> SimResult<()> {
        match self.bridges.get_mut(id) {
            Some(b) => {
                b.moh = on;
                Ok(())
            }
            None => fail(404, "Bridge not found"),
        }
    }
}

impl SimBridge {
    /// The bridge as REST shows it: a mixing bridge with three participants or more (the
    /// recorder counts) runs `softmix`, with fewer `simple_bridge` (app_gone trace: two parties
    /// and the recording, `softmix`; one party and the recording, `simple_bridge`).
    fn shown(&self) -> Bridge {
        let mut model = self.model.clone();
        let participants = model.channels.len() + usize::from(self.recording.is_some());
        if model.bridge_type == "mixing" && participants >= 3 {
            model.technology = "softmix".into();
        }
        model
    }
}
