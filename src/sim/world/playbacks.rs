//! Playbacks on channels and bridges, and the media they play.

use super::*;

impl World {
    // ---------------------------------------------------------------- playbacks

    pub fn play(
        &mut self,
        target: &str,
        on_bridge: bool,
        media: &str,
        playback_id: Option<&str>,
    ) -> SimResult<Playback> {
        let app = if on_bridge {
            match self.bridges.get(target) {
                Some(b) => b.app.clone(),
                None => return fail(404, "Bridge not found"),
            }
        } else {
            let c = self.stasis_channel(target)?;
            c.app.clone().unwrap_or_default()
        };
        if media.is_empty() {
            return fail(400, "media is required");
        }
        let id = playback_id.map(str::to_string).unwrap_or_else(new_uuid);
        if self.playbacks.contains_key(&id) {
            return fail(409, "Playback with same ID already exists");
        }
        let mut queue: VecDeque<String> = media.split(',').map(str::to_string).collect();
        let first = queue.front().cloned().unwrap_or_default();
        queue.pop_front();
        let target_uri = if on_bridge {
            format!("bridge:{target}")
        } else {
            format!("channel:{target}")
        };
        let model = Playback {
            id: id.clone(),
            media_uri: first.clone(),
            next_media_uri: queue.front().cloned(),
            target_uri,
            language: Some("en".into()),
            state: "queued".into(),
        };
        self.playbacks.insert(
            id,
            SimPlayback {
                model: model.clone(),
                app,
                target: if on_bridge {
                    Target::Bridge(target.into())
                } else {
                    Target::Channel(target.into())
                },
                queue,
                current: Some((first, 0, 0)),
                started: false,
            },
        );
        Ok(model)
    }

    pub fn playback(&self, id: &str) -> SimResult<Playback> {
        match self.playbacks.get(id) {
            Some(p) => Ok(p.model.clone()),
            None => fail(404, "Playback not found"),
        }
    }

    pub fn stop_playback(&mut self, id: &str) -> SimResult<()> {
        if !self.playbacks.contains_key(id) {
            return fail(404, "Playback not found");
        }
        self.finish_playback(id, "done");
        Ok(())
    }

    pub(super) fn stop_playbacks_of(&mut self, target: &Target) {
        let ids: Vec<String> = self
            .playbacks
            .iter()
            .filter(|(_, p)| &p.target == target)
            .map(|(id, _)| id.clone())
            .collect();
        for id in ids {
            self.finish_playback(&id, "done");
        }
    }

    pub(super) fn finish_playback(&mut self, id: &str, state: &str) {
        if let Some(mut p) = self.playbacks.remove(id) {
            p.model.state = state.into();
            self.emit(
                &p.app,
                Event::PlaybackFinished(PlaybackFinished {
                    playback: p.model,
                    timestamp: self.timestamp(),
                    application: p.app.clone(),
                    asterisk_id: Some(ASTERISK_ID.into()),
                }),
            );
        }
    }

    /// Audio of `media` (`sound:<name>` or `recording:<name>`) and its length in samples.
    pub(super) fn media_length(&self, media: &str) -> Option<u64> {
        if let Some(sound) = media.strip_prefix("sound:") {
            return sound_length(sound);
        }
        if let Some(name) = media.strip_prefix("recording:") {
            return self.stored_audio(name).map(|s| s.len() as u64);
        }
        None
    }

    pub(super) fn stored_audio(&self, name: &str) -> Option<Vec<i16>> {
        if !safe_relative(name) {
            return None;
        }
        let wav_path = self.recordings_dir.join(format!("{name}.wav"));
        if let Ok(bytes) = std::fs::read(&wav_path) {
            let data = bytes.get(wav::HEADER_LEN as usize..)?;
            return Some(
                data.chunks_exact(2)
                    .map(|c| i16::from_le_bytes([c[0], c[1]]))
                    .collect(),
            );
        }
        let ulaw_path = self.recordings_dir.join(format!("{name}.ulaw"));
        std::fs::read(ulaw_path)
            .ok()
            .map(|b| b.into_iter().map(g711::decode_ulaw).collect())
    }
}
