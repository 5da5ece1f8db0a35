//! Live and stored recordings: record, stop, pause, mute, the files.

use super::*;

impl World {
    // ---------------------------------------------------------------- recordings

    /// `POST /bridges/{id}/record` and `POST /channels/{id}/record`.
    #[allow(clippy::too_many_arguments)]
    pub fn record(
        &mut self,
        target: &str,
        on_bridge: bool,
        name: &str,
        format: &str,
        max_duration: Option<u32>,
        max_silence: Option<u32>,
        if_exists: Option<&str>,
        beep: Option<bool>,
        terminate_on: Option<&str>,
    ) -> SimResult<LiveRecording> {
        let app = if on_bridge {
            match self.bridges.get(target) {
                Some(b) => b.app.clone(),
                None => return fail(404, "Bridge not found"),
            }
        } else {
            self.stasis_channel(target)?.app.clone().unwrap_or_default()
        };
        if name.is_empty() {
            return fail(400, "Recording name is required");
        }
        if format.is_empty() {
            return fail(400, "Recording format is required");
        }
        let if_exists = match if_exists {
            None => IfExists::Fail,
            Some(text) => match IfExists::parse(text) {
                Some(v) => v,
                None => return fail(400, "ifExists invalid"),
            },
        };
        if let Some(t) = terminate_on {
            if !["none", "any", "*", "#"].contains(&t) {
                return fail(400, "terminateOn invalid");
            }
        }
        let Some(file_format) = FileFormat::parse(format) else {
            return fail(422, "specified format is unknown on this system");
        };
        if !safe_relative(name) {
            return fail(500, "Error parsing request");
        }
        if self.recordings.contains_key(name) {
            return fail(
                409,
                format!("Recording '{name}' already exists and can not be overwritten"),
            );
        }
        let path = self.recordings_dir.join(format!("{name}.{format}"));
        if if_exists == IfExists::Fail && path.exists() {
            return fail(
                409,
                format!("Recording '{name}' already exists and can not be overwritten"),
            );
        }
        if !self.recordings_dir.is_dir() {
            return fail(500, "Internal Server Error");
        }
        if let Some(parent) = path.parent() {
            if std::fs::create_dir_all(parent).is_err() {
                return fail(500, "Internal Server Error");
            }
        }
        let append =
            if_exists == IfExists::Append && path.exists() && file_format != FileFormat::Wav;
        let file = std::fs::OpenOptions::new()
            .create(true)
            .write(true)
            .append(append)
            .truncate(!append)
            .open(&path);
        let Ok(file) = file else {
            return fail(500, "Internal Server Error");
        };
        let mut writer = BufWriter::new(file);
        if file_format == FileFormat::Wav && writer.write_all(&wav::header(0)).is_err() {
            return fail(500, "Internal Server Error");
        }
        let target_uri = if on_bridge {
            format!("bridge:{target}")
        } else {
            format!("channel:{target}")
        };
        let in_bridge = !on_bridge
            && self
                .channels
                .get(target)
                .is_some_and(|c| c.bridge.is_some());
        // A snoop's recording attaches to its audio hook first: `queued`, as a bridge's.
        let snoop = !on_bridge
            && self
                .channels
                .get(target)
                .is_some_and(|c| c.role == Role::Snoop);
        // Asterisk answers `queued` while a beep is pending or a bridge must attach the recorder;
        // a plain channel recording is already `recording` in the 201 (voicemail_silence trace).
        let immediate = !on_bridge && !in_bridge && !snoop && beep != Some(true);
        let live = LiveRecording {
            name: name.to_string(),
            format: format.to_string(),
            state: if immediate { "recording" } else { "queued" }.into(),
            target_uri,
            duration: None,
            talking_duration: None,
            silence_duration: None,
            cause: None,
        };
        let mut fail_cause = self.fail_next_record.take();
        if in_bridge {
            fail_cause = Some("Cannot record channel while in bridge".into());
        }
        let recording = SimRecording {
            live: live.clone(),
            app: app.clone(),
            target: if on_bridge {
                Target::Bridge(target.into())
            } else {
                Target::Channel(target.into())
            },
            writer: Some(writer),
            format: file_format,
            data_bytes: 0,
            recorded: 0,
            elapsed: 0,
            talking: 0,
            silence_run: 0,
            max_duration: max_duration
                .filter(|d| *d > 0)
                .map(|d| seconds(f64::from(d))),
            max_silence: max_silence
                .filter(|d| *d > 0)
                .map(|d| seconds(f64::from(d))),
            terminate_on: terminate_on.filter(|t| *t != "none").map(str::to_string),
            report_talk: max_silence.is_some_and(|d| d > 0),
            paused: false,
            muted: false,
            fail_cause: fail_cause.clone(),
            on_disk: false,
            write_failed: false,
        };
        self.recordings.insert(name.to_string(), recording);
        match &fail_cause {
            Some(_) => {
                // The 201 promised nothing: the failure follows at once.
                self.finish_recording(name, "failed");
                let _ = std::fs::remove_file(&path);
            }
            None => {
                if on_bridge {
                    if let Some(b) = self.bridges.get_mut(target) {
                        b.recording = Some(name.to_string());
                    }
                } else if let Some(c) = self.channels.get_mut(target) {
                    c.recording = Some(name.to_string());
                }
                if let Some(r) = self.recordings.get_mut(name) {
                    r.live.state = "recording".into();
                    let started = r.live.clone();
                    self.emit(
                        &app,
                        Event::RecordingStarted(RecordingStarted {
                            recording: started,
                            timestamp: self.timestamp(),
                            application: app.clone(),
                            asterisk_id: Some(ASTERISK_ID.into()),
                        }),
                    );
                }
            }
        }
        Ok(live)
    }

    pub fn live_recording(&self, name: &str) -> SimResult<LiveRecording> {
        match self.recordings.get(name) {
            Some(r) => Ok(r.live.clone()),
            None => fail(404, "Recording not found"),
        }
    }

    pub fn stop_recording(&mut self, name: &str) -> SimResult<()> {
        if !self.recordings.contains_key(name) {
            return fail(404, "Recording not found");
        }
        self.finish_recording(name, "done");
        Ok(())
    }

    /// `DELETE /recordings/live/{name}`: stop and discard.
    pub fn cancel_recording(&mut self, name: &str) -> SimResult<()> {
        let Some(r) = self.recordings.get(name) else {
            return fail(404, "Recording not found");
        };
        let path = self
            .recordings_dir
            .join(format!("{}.{}", r.live.name, r.live.format));
        self.finish_recording(name, "canceled");
        let _ = std::fs::remove_file(path);
        Ok(())
    }

    pub fn pause_recording(&mut self, name: &str, paused: bool) -> SimResult<()> {
        match self.recordings.get_mut(name) {
            Some(r) => {
                r.paused = paused;
                r.live.state = if paused { "paused" } else { "recording" }.into();
                Ok(())
            }
            None => fail(404, "Recording not found"),
        }
    }

    pub fn mute_recording(&mut self, name: &str, muted: bool) -> SimResult<()> {
        match self.recordings.get_mut(name) {
            Some(r) => {
                r.muted = muted;
                Ok(())
            }
            None => fail(404, "Recording not found"),
        }
    }

    /// Closes the file (sizes filled in) and tells the app.
    pub(super) fn finish_recording(&mut self, name: &str, state: &str) {
        self.finish_recording_trimmed(name, state, 0);
    }

    /// Closes the file, dropping its last `trim` samples first (Asterisk cuts the keypress off a
    /// recording ended by DTMF: the voicemail_hash trace reports 29 s for 30.5 s of talk).
    pub(super) fn finish_recording_trimmed(&mut self, name: &str, state: &str, trim: u64) {
        let Some(mut r) = self.recordings.remove(name) else {
            return;
        };
        let bytes_per_sample: u64 = if r.format == FileFormat::Ulaw { 1 } else { 2 };
        let trimmed = trim.min(r.recorded);
        r.recorded -= trimmed;
        r.data_bytes -= (trimmed * bytes_per_sample).min(r.data_bytes);
        if let Some(mut writer) = r.writer.take() {
            let _ = writer.flush();
            // What a full disk refused stays behind (not written again at the close).
            let (mut file, _refused) = writer.into_parts();
            if r.write_failed && !r.on_disk {
                // Nothing reached the disk (it was full from the start): Asterisk leaves the
                // file empty, not even a header.
                let _ = file.set_len(0);
            } else {
                let header = if r.format == FileFormat::Wav {
                    wav::HEADER_LEN
                } else {
                    0
                };
                let _ = file.set_len(header + r.data_bytes);
                if r.format == FileFormat::Wav {
                    let data_len = u32::try_from(r.data_bytes).unwrap_or(u32::MAX);
                    let _ = wav::finalize(&mut file, data_len);
                }
                let _ = file.sync_data();
            }
        }
        match &r.target {
            Target::Bridge(id) => {
                if let Some(b) = self.bridges.get_mut(id) {
                    b.recording = None;
                }
            }
            Target::Channel(id) => {
                if let Some(c) = self.channels.get_mut(id) {
                    c.recording = None;
                }
            }
        }
        r.live.state = state.into();
        let app = r.app.clone();
        let event = if state == "failed" {
            r.live.cause = r.fail_cause.clone();
            Event::RecordingFailed(RecordingFailed {
                recording: r.live,
                timestamp: self.timestamp(),
                application: app.clone(),
                asterisk_id: Some(ASTERISK_ID.into()),
            })
        } else {
            let rate = u64::from(SAMPLE_RATE);
            r.live.duration = Some((r.recorded / rate) as i64);
            if r.report_talk {
                let talking = (r.talking / rate) as i64;
                r.live.talking_duration = Some(talking);
                r.live.silence_duration = Some((r.recorded / rate) as i64 - talking);
            }
            Event::RecordingFinished(RecordingFinished {
                recording: r.live,
                timestamp: self.timestamp(),
                application: app.clone(),
                asterisk_id: Some(ASTERISK_ID.into()),
            })
        };
        self.emit(&app, event);
    }

    pub fn stored_recordings(&self) -> Vec<StoredRecording> {
        let mut out = Vec::new();
        collect_stored(&self.recordings_dir, &self.recordings_dir, &mut out);
        out.sort_by(|a, b| a.name.cmp(&b.name));
        out
    }

    pub(super) fn stored_path(&self, name: &str) -> SimResult<(PathBuf, String)> {
        if !safe_relative(name) {
            return fail(404, "Recording not found");
        }
        for ext in STORED_EXTENSIONS {
            let path = self.recordings_dir.join(format!("{name}.{ext}"));
            if path.is_file() {
                return Ok((path, ext.to_string()));
            }
        }
        fail(404, "Recording not found")
    }

    pub fn stored_recording(&self, name: &str) -> SimResult<StoredRecording> {
        let (_, format) = self.stored_path(name)?;
        Ok(StoredRecording {
            name: name.to_string(),
            format,
        })
    }

    /// The file's bytes and its content type.
    pub fn stored_file(&self, name: &str) -> SimResult<(Vec<u8>, &'static str)> {
        let (path, format) = self.stored_path(name)?;
        let content_type = match format.as_str() {
            "wav" | "wav16" | "WAV" => "audio/wav",
            "ulaw" => "audio/basic",
            "gsm" => "audio/gsm",
            _ => "application/octet-stream",
        };
        match std::fs::read(path) {
            Ok(bytes) => Ok((bytes, content_type)),
            Err(_) => fail(403, "Recording file could not be opened"),
        }
    }

    pub fn copy_stored(&mut self, name: &str, destination: &str) -> SimResult<StoredRecording> {
        let (path, format) = self.stored_path(name)?;
        if !safe_relative(destination) {
            return fail(400, "Invalid destination recording name");
        }
        if self.stored_path(destination).is_ok() {
            return fail(
                409,
                "A recording with the same name already exists on the system",
            );
        }
        let dest = self.recordings_dir.join(format!("{destination}.{format}"));
        if let Some(parent) = dest.parent() {
            let _ = std::fs::create_dir_all(parent);
        }
        if std::fs::copy(path, dest).is_err() {
            return fail(500, "Internal Server Error");
        }
        Ok(StoredRecording {
            name: destination.to_string(),
            format,
        })
    }

    pub fn delete_stored(&mut self, name: &str) -> SimResult<()> {
        let (path, _) = self.stored_path(name)?;
        match std::fs::remove_file(path) {
            Ok(()) => Ok(()),
            Err(_) => fail(500, "Internal Server Error"),
        }
    }
}

fn collect_stored(root: &Path, dir: &Path, out: &mut Vec<StoredRecording>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        let Ok(kind) = entry.file_type() else {
            continue;
        };
        if kind.is_dir() {
            collect_stored(root, &path, out);
            continue;
        }
        let Some(ext) = path.extension().and_then(|e| e.to_str()) else {
            continue;
        };
        if !STORED_EXTENSIONS.contains(&ext) {
            continue;
        }
        let Ok(relative) = path
            .with_extension("")
            .strip_prefix(root)
            .map(Path::to_path_buf)
        else {
            continue;
        };
        out.push(StoredRecording {
            name: relative.to_string_lossy().into_owned(),
            format: ext.to_string(),
        });
    }
}
