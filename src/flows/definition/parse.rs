//! Reading flow files and `settings.toml` by hand over a `toml::Table`, so every problem names its file, node and field.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use super::model::{FeatureCodes, FeatureLeg, Flow, FlowError, HuntMode, Node, NodeKind, Strategy};
use super::settings::{DefaultCompliance, RecordingSeparation, RedactMode, Settings};
use toml::{Table, Value};

pub(super) struct Ctx<'a> {
    file: &'a Path,
    node: Option<&'a str>,
    errors: &'a mut Vec<FlowError>,
}

impl Ctx<'_> {
    fn err(&mut self, field: Option<&str>, message: impl Into<String>) {
        self.errors.push(FlowError {
            file: self.file.to_path_buf(),
            node: self.node.map(str::to_string),
            field: field.map(str::to_string),
            message: message.into(),
        });
    }

    fn string(&mut self, table: &Table, field: &str, required: bool) -> Option<String> {
        match table.get(field) {
            Some(Value::String(s)) if !s.trim().is_empty() => Some(s.clone()),
            Some(Value::String(_)) => {
                self.err(Some(field), "must not be empty");
                None
            }
            Some(other) => {
                self.err(
                    Some(field),
                    format!("must be a string, not {}", other.type_str()),
                );
                None
            }
            None => {
                if required {
                    self.err(Some(field), "missing");
                }
                None
            }
        }
    }

    fn strings(&mut self, table: &Table, field: &str, required: bool) -> Vec<String> {
        match table.get(field) {
            Some(Value::Array(items)) => {
                let mut out = Vec::new();
                for item in items {
                    match item {
                        Value::String(s) if !s.trim().is_empty() => out.push(s.clone()),
                        _ => self.err(Some(field), "every entry must be a non-empty string"),
                    }
                }
                if required && out.is_empty() && !items.is_empty() {
                    return out;
                }
                if required && items.is_empty() {
                    self.err(Some(field), "must list at least one entry");
                }
                out
            }
            Some(other) => {
                self.err(
                    Some(field),
                    format!("must be a list of strings, not {}", other.type_str()),
                );
                vec![]
            }
            None => {
                if required {
                    self.err(Some(field), "missing");
                }
                vec![]
            }
        }
    }

    fn seconds(&mut self, table: &Table, field: &str, default: u32, max: u32) -> u32 {
        match table.get(field) {
            None => default,
            Some(Value::Integer(n)) if (0..=i64::from(max)).contains(n) => *n as u32,
            Some(Value::Integer(n)) => {
                self.err(Some(field), format!("{n} is out of range 0..={max}"));
                default
            }
            Some(other) => {
                self.err(
                    Some(field),
                    format!(
                        "must be a whole number of seconds, not {}",
                        other.type_str()
                    ),
                );
                default
            }
        }
    }

    /// One of a field's named values; the first is the default when the field is absent. An
    /// unknown name is an error naming the choices (and the default stands in).
    fn choice<T: Copy>(&mut self, table: &Table, field: &str, choices: &[(&str, T)]) -> T {
        let default = choices[0].1;
        let Some(name) = self.string(table, field, false) else {
            return default;
        };
        match choices.iter().find(|(n, _)| *n == name) {
            Some((_, value)) => *value,
            None => {
                let names: Vec<&str> = choices.iter().map(|(n, _)| *n).collect();
                self.err(
                    Some(field),
                    format!("{name:?} is not one of {}", names.join(", ")),
                );
                default
            }
        }
    }

    fn boolean(&mut self, table: &Table, field: &str, default: bool) -> bool {
        match table.get(field) {
            None => default,
            Some(Value::Boolean(b)) => *b,
            Some(other) => {
                self.err(
                    Some(field),
                    format!("must be true or false, not {}", other.type_str()),
                );
                default
            }
        }
    }

    fn known_fields(&mut self, table: &Table, allowed: &[&str]) {
        for key in table.keys() {
            if !allowed.contains(&key.as_str()) {
                self.err(
                    Some(key),
                    format!("unknown field (expected one of: {})", allowed.join(", ")),
                );
            }
        }
    }
}

pub(super) fn check_media(ctx: &mut Ctx<'_>, field: &str, media: &str) {
    if !(media.starts_with("sound:")
        || media.starts_with("recording:")
        || media.starts_with("tone:"))
    {
        ctx.err(
            Some(field),
            format!("{media:?} must start with sound:, recording: or tone:"),
        );
    }
}

/// `channels`: `mixed` (the default: the bridge's recording only) or `dual` (each party on its
/// own as well).
pub(super) fn dual_channel(ctx: &mut Ctx, table: &Table) -> bool {
    ctx.choice(table, "channels", &[("mixed", false), ("dual", true)])
}

pub(super) fn check_endpoint(ctx: &mut Ctx<'_>, field: &str, endpoint: &str) {
    match endpoint.split_once('/') {
        Some((tech, resource)) if !tech.is_empty() && !resource.is_empty() => {}
        _ => ctx.err(
            Some(field),
            format!("{endpoint:?} is not an endpoint like PJSIP/201 or Local/201@agents"),
        ),
    }
}

pub(super) fn parse_node(ctx: &mut Ctx<'_>, id: &str, table: &Table) -> Option<NodeKind> {
    let kind = ctx.string(table, "type", true)?;
    let kind = match kind.as_str() {
        "play_audio" => {
            ctx.known_fields(table, &["type", "media", "next", "recording_notice"]);
            let media = ctx.strings(table, "media", true);
            for m in &media {
                check_media(ctx, "media", m);
            }
            NodeKind::PlayAudio {
                media,
                next: ctx.string(table, "next", false),
                recording_notice: ctx.boolean(table, "recording_notice", false),
            }
        }
        "transfer" => {
            ctx.known_fields(
                table,
                &[
                    "type",
                    "target",
                    "ring_timeout",
                    "record_call",
                    "on_failure",
                    "on_agent_hangup",
                    "channels",
                    "pause_recording",
                    "redaction",
                ],
            );
            let target = ctx.string(table, "target", true);
            if let Some(t) = &target {
                check_endpoint(ctx, "target", t);
            }
            NodeKind::Transfer {
                target: target.unwrap_or_default(),
                ring_timeout: ctx.seconds(table, "ring_timeout", 20, 600),
                record_call: table
                    .contains_key("record_call")
                    .then(|| ctx.boolean(table, "record_call", false)),
                on_failure: ctx.string(table, "on_failure", false),
                on_agent_hangup: ctx.string(table, "on_agent_hangup", false),
                dual_channel: dual_channel(ctx, table),
                pause_recording: ctx.boolean(table, "pause_recording", false),
            }
        }
        "queue" => {
            ctx.known_fields(
                table,
                &[
                    "type",
                    "agents",
                    "strategy",
                    "ring_timeout",
                    "max_wait",
                    "overflow",
                    "moh_class",
                    "record_call",
                    "on_agent_hangup",
                    "channels",
                    "pause_recording",
                    "redaction",
                ],
            );
            let agents = ctx.strings(table, "agents", true);
            for a in &agents {
                check_endpoint(ctx, "agents", a);
            }
            let strategy = ctx.choice(
                table,
                "strategy",
                &[
                    ("ringall", Strategy::RingAll),
                    ("round_robin", Strategy::RoundRobin),
                    ("longest_idle", Strategy::LongestIdle),
                ],
            );
            NodeKind::Queue {
                agents,
                strategy,
                ring_timeout: ctx.seconds(table, "ring_timeout", 15, 600),
                max_wait: ctx.seconds(table, "max_wait", 300, 86_400),
                overflow: ctx.string(table, "overflow", false),
                moh_class: ctx
                    .string(table, "moh_class", false)
                    .unwrap_or_else(|| "default".into()),
                record_call: table
                    .contains_key("record_call")
                    .then(|| ctx.boolean(table, "record_call", false)),
                on_agent_hangup: ctx.string(table, "on_agent_hangup", false),
                dual_channel: dual_channel(ctx, table),
                pause_recording: ctx.boolean(table, "pause_recording", false),
            }
        }
        "hunt_group" => {
            ctx.known_fields(
                table,
                &[
                    "type",
                    "members",
                    "mode",
                    "ring_seconds",
                    "record_call",
                    "on_failure",
                    "on_agent_hangup",
                    "channels",
                    "pause_recording",
                    "redaction",
                ],
            );
            let members = ctx.strings(table, "members", true);
            for m in &members {
                check_endpoint(ctx, "members", m);
            }
            let mode = ctx.choice(
                table,
                "mode",
                &[
                    ("sequential", HuntMode::Sequential),
                    ("simultaneous", HuntMode::Simultaneous),
                ],
            );
            NodeKind::HuntGroup {
                members,
                mode,
                ring_seconds: ctx.seconds(table, "ring_seconds", 15, 600),
                record_call: table
                    .contains_key("record_call")
                    .then(|| ctx.boolean(table, "record_call", false)),
                on_failure: ctx.string(table, "on_failure", false),
                on_agent_hangup: ctx.string(table, "on_agent_hangup", false),
                dual_channel: dual_channel(ctx, table),
                pause_recording: ctx.boolean(table, "pause_recording", false),
            }
        }
        "voicemail" => {
            ctx.known_fields(
                table,
                &[
                    "type",
                    "mailbox",
                    "greeting",
                    "greeting_discloses_recording",
                    "beep",
                    "max_duration",
                    "max_silence",
                ],
            );
            let mailbox = ctx.string(table, "mailbox", true);
            if let Some(m) = &mailbox {
                if !m
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
                {
                    ctx.err(
                        Some("mailbox"),
                        "letters, digits, '-' and '_' only (it names files)",
                    );
                }
            }
            let greeting = ctx.string(table, "greeting", false);
            if let Some(g) = &greeting {
                check_media(ctx, "greeting", g);
            }
            let greeting_discloses_recording =
                ctx.boolean(table, "greeting_discloses_recording", false);
            if greeting_discloses_recording && greeting.is_none() {
                ctx.err(
                    Some("greeting_discloses_recording"),
                    "needs a greeting (the one that says the message is recorded)",
                );
            }
            NodeKind::Voicemail {
                mailbox: mailbox.unwrap_or_default(),
                greeting,
                greeting_discloses_recording,
                beep: ctx.boolean(table, "beep", true),
                max_duration: ctx.seconds(table, "max_duration", 120, 3600),
                max_silence: ctx.seconds(table, "max_silence", 10, 600),
            }
        }
        "hangup" => {
            ctx.known_fields(table, &["type"]);
            NodeKind::Hangup
        }
        "consent" => {
            ctx.known_fields(
                table,
                &[
                    "type",
                    "media",
                    "grant_key",
                    "decline_key",
                    "timeout",
                    "retries",
                    "on_timeout",
                    "next",
                    "on_granted",
                    "on_declined",
                ],
            );
            let media = ctx.strings(table, "media", true);
            for m in &media {
                check_media(ctx, "media", m);
            }
            let key = |ctx: &mut Ctx<'_>, field: &str, default: &str| {
                let key = ctx
                    .string(table, field, false)
                    .unwrap_or_else(|| default.to_string());
                let valid = key.len() == 1
                    && key
                        .bytes()
                        .all(|b| b.is_ascii_digit() || b == b'*' || b == b'#');
                if !valid {
                    ctx.err(Some(field), format!("{key:?} must be one key: 0-9, * or #"));
                }
                key
            };
            let grant_key = key(ctx, "grant_key", "1");
            let decline_key = key(ctx, "decline_key", "2");
            if grant_key == decline_key {
                ctx.err(Some("decline_key"), "must differ from grant_key");
            }
            let grant_on_timeout = ctx.choice(
                table,
                "on_timeout",
                &[("declined", false), ("granted", true)],
            );
            let next = ctx.string(table, "next", false);
            let on_granted = ctx.string(table, "on_granted", false);
            let on_declined = ctx.string(table, "on_declined", false);
            if next.is_none() && (on_granted.is_none() || on_declined.is_none()) {
                ctx.err(
                    Some("next"),
                    "missing: name next, or both on_granted and on_declined",
                );
            }
            NodeKind::Consent {
                media,
                grant_key,
                decline_key,
                timeout: ctx.seconds(table, "timeout", 5, 60),
                retries: ctx.seconds(table, "retries", 2, 5),
                grant_on_timeout,
                next,
                on_granted,
                on_declined,
            }
        }
        other => {
            ctx.err(
                Some("type"),
                format!("unknown node type {other:?} (expected play_audio, transfer, queue, hunt_group, voicemail or hangup)"),
            );
            return None;
        }
    };
    let _ = id;
    Some(kind)
}

/// Parses one flow file. The flow's name is the file stem.
pub fn parse_flow(file: &Path, text: &str) -> Result<Flow, Vec<FlowError>> {
    let mut errors = Vec::new();
    let table: Table = match toml::from_str(text) {
        Ok(t) => t,
        Err(e) => {
            let line = e
                .span()
                .map(|s| text[..s.start.min(text.len())].matches('\n').count() + 1);
            return Err(vec![FlowError {
                file: file.to_path_buf(),
                node: None,
                field: None,
                message: match line {
                    Some(l) => format!("line {l}: {}", e.message()),
                    None => e.message().to_string(),
                },
            }]);
        }
    };
    let name = file
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default();
    let mut ctx = Ctx {
        file,
        node: None,
        errors: &mut errors,
    };
    ctx.known_fields(&table, &["flow", "nodes"]);
    let empty = Table::new();
    let head = match table.get("flow") {
        Some(Value::Table(t)) => t,
        Some(_) => {
            ctx.err(Some("flow"), "must be a table ([flow])");
            &empty
        }
        None => {
            ctx.err(Some("flow"), "missing [flow] section");
            &empty
        }
    };
    ctx.known_fields(
        head,
        &[
            "numbers",
            "start",
            "tenant",
            "project",
            "private",
            "description",
            "pause_code",
            "resume_code",
            "feature_code_leg",
            "recording_announcement",
            "transcribe",
            "language",
            "redaction",
        ],
    );
    let numbers = ctx.strings(head, "numbers", true);
    let start = ctx.string(head, "start", true).unwrap_or_default();
    let tenant = ctx
        .string(head, "tenant", false)
        .unwrap_or_else(|| "default".into());
    let project = ctx
        .string(head, "project", false)
        .unwrap_or_else(|| "default".into());
    let private = ctx.boolean(head, "private", false);
    let feature_codes = feature_codes(&mut ctx, head);
    let announces = ctx.boolean(head, "recording_announcement", true);
    let transcribe = ctx.boolean(head, "transcribe", true);
    let redaction = head
        .contains_key("redaction")
        .then(|| ctx.boolean(head, "redaction", true));
    let language = ctx.string(head, "language", false);
    if let Some(tag) = language
        .as_deref()
        .filter(|tag| !crate::library::transcripts::valid_language(tag))
    {
        ctx.err(
            Some("language"),
            format!("{tag:?} is not a language tag (en, de, pt-BR)"),
        );
    }
    let mut nodes = BTreeMap::new();
    let mut node_redaction = BTreeMap::new();
    match table.get("nodes") {
        Some(Value::Table(node_tables)) => {
            for (id, value) in node_tables {
                let mut node_ctx = Ctx {
                    file,
                    node: Some(id),
                    errors: ctx.errors,
                };
                match value {
                    Value::Table(t) => {
                        // Whether people may pause its recording (`redaction`), where the node
                        // bridges a call (parse_node refuses the field elsewhere).
                        if t.contains_key("redaction") {
                            node_redaction
                                .insert(id.clone(), node_ctx.boolean(t, "redaction", true));
                        }
                        if let Some(kind) = parse_node(&mut node_ctx, id, t) {
                            nodes.insert(
                                id.clone(),
                                Node {
                                    id: id.clone(),
                                    kind,
                                },
                            );
                        }
                    }
                    _ => node_ctx.err(None, "must be a table ([nodes.<name>])"),
                }
            }
        }
        Some(_) => ctx.err(Some("nodes"), "must be a table of nodes"),
        None => ctx.err(
            Some("nodes"),
            "missing: a flow needs at least one [nodes.<name>]",
        ),
    }
    // Edges must land on nodes; parse failures of the target are reported on their own.
    let all_ids: BTreeSet<&String> = match table.get("nodes") {
        Some(Value::Table(t)) => t.keys().collect(),
        _ => BTreeSet::new(),
    };
    if !start.is_empty() && !all_ids.contains(&start) && table.get("nodes").is_some() {
        errors.push(FlowError {
            file: file.to_path_buf(),
            node: None,
            field: Some("start".into()),
            message: format!("names node {start:?}, which does not exist"),
        });
    }
    for node in nodes.values() {
        for (field, target) in node.kind.edges() {
            if !all_ids.contains(&target.to_string()) {
                errors.push(FlowError {
                    file: file.to_path_buf(),
                    node: Some(node.id.clone()),
                    field: Some(field.into()),
                    message: format!("points to node {target:?}, which does not exist"),
                });
            }
        }
    }
    if let Some(cycle) = cycle_without_wait(&nodes) {
        errors.push(FlowError {
            file: file.to_path_buf(),
            node: cycle.first().cloned(),
            field: None,
            message: format!(
                "cycle without a wait: {} (add a prompt, a queue or voicemail on the loop)",
                cycle.join(" -> ")
            ),
        });
    }
    if errors.is_empty() {
        Ok(Flow {
            name,
            file: file.to_path_buf(),
            tenant,
            project,
            private,
            numbers,
            start,
            nodes,
            feature_codes,
            announces,
            transcribe,
            language,
            redaction,
            node_redaction,
        })
    } else {
        Err(errors)
    }
}

/// The flow's DTMF feature codes: both or neither, one to four of `0-9*#` each, different.
pub(super) fn feature_codes(ctx: &mut Ctx<'_>, head: &Table) -> Option<FeatureCodes> {
    let pause = ctx.string(head, "pause_code", false);
    let resume = ctx.string(head, "resume_code", false);
    let leg = ctx.choice(
        head,
        "feature_code_leg",
        &[("agent", FeatureLeg::Agent), ("caller", FeatureLeg::Caller)],
    );
    let valid = |code: &str| {
        (1..=4).contains(&code.len())
            && code
                .bytes()
                .all(|b| b.is_ascii_digit() || b == b'*' || b == b'#')
    };
    match (pause, resume) {
        (None, None) => None,
        (Some(pause), Some(resume)) => {
            for (field, code) in [("pause_code", &pause), ("resume_code", &resume)] {
                if !valid(code) {
                    ctx.err(
                        Some(field),
                        format!("{code:?} must be 1 to 4 of the keys 0-9, * and #"),
                    );
                }
            }
            if pause == resume {
                ctx.err(Some("resume_code"), "must differ from pause_code");
            }
            Some(FeatureCodes { pause, resume, leg })
        }
        (Some(_), None) => {
            ctx.err(
                Some("resume_code"),
                "missing: pause_code needs a resume_code",
            );
            None
        }
        (None, Some(_)) => {
            ctx.err(
                Some("pause_code"),
                "missing: resume_code needs a pause_code",
            );
            None
        }
    }
}

/// A cycle through nodes none of which always waits, if any.
pub(super) fn cycle_without_wait(nodes: &BTreeMap<String, Node>) -> Option<Vec<String>> {
    // Only edges between non-waiting nodes matter; find a cycle in that subgraph by DFS.
    fn visit(
        id: &str,
        nodes: &BTreeMap<String, Node>,
        stack: &mut Vec<String>,
        done: &mut BTreeSet<String>,
    ) -> Option<Vec<String>> {
        if let Some(pos) = stack.iter().position(|s| s == id) {
            let mut cycle = stack[pos..].to_vec();
            cycle.push(id.to_string());
            return Some(cycle);
        }
        if done.contains(id) {
            return None;
        }
        let node = nodes.get(id)?;
        if node.kind.always_waits() {
            return None;
        }
        stack.push(id.to_string());
        // After an agent hung up the call has taken time: not a loop that spins.
        for (_, next) in node
            .kind
            .edges()
            .into_iter()
            .filter(|e| e.0 != "on_agent_hangup")
        {
            if let Some(c) = visit(next, nodes, stack, done) {
                return Some(c);
            }
        }
        stack.pop();
        done.insert(id.to_string());
        None
    }
    let mut done = BTreeSet::new();
    for id in nodes.keys() {
        if let Some(c) = visit(id, nodes, &mut Vec::new(), &mut done) {
            return Some(c);
        }
    }
    None
}

pub fn parse_settings(file: &Path, text: &str) -> Result<Settings, Vec<FlowError>> {
    let mut errors = Vec::new();
    let table: Table = toml::from_str(text).map_err(|e| {
        vec![FlowError {
            file: file.to_path_buf(),
            node: None,
            field: None,
            message: e.message().to_string(),
        }]
    })?;
    let mut ctx = Ctx {
        file,
        node: None,
        errors: &mut errors,
    };
    ctx.known_fields(
        &table,
        &[
            "recording_enabled",
            "record_inbound_calls",
            "record_outbound_calls",
            "record_from_dial",
            "redaction_mode",
            "redaction_inbound_calls",
            "redaction_outbound_calls",
            "default_compliance",
            "recording_announcement",
            "recording_separation",
        ],
    );
    let recording_separation = ctx.choice(
        &table,
        "recording_separation",
        &[
            ("per_call", RecordingSeparation::PerCall),
            ("per_segment", RecordingSeparation::PerSegment),
        ],
    );
    let redaction_mode = ctx.choice(
        &table,
        "redaction_mode",
        &[("mute", RedactMode::Mute), ("pause", RedactMode::Pause)],
    );
    let default_compliance = ctx.choice(
        &table,
        "default_compliance",
        &[
            ("permitted", DefaultCompliance::Permitted),
            ("unknown", DefaultCompliance::Unknown),
        ],
    );
    let recording_announcement = ctx.strings(&table, "recording_announcement", false);
    for media in &recording_announcement {
        check_media(&mut ctx, "recording_announcement", media);
    }
    let settings = Settings {
        recording_announcement,
        recording_separation,
        default_compliance,
        recording_enabled: ctx.boolean(&table, "recording_enabled", true),
        record_inbound_calls: ctx.boolean(&table, "record_inbound_calls", false),
        record_outbound_calls: ctx.boolean(&table, "record_outbound_calls", false),
        record_from_dial: ctx.boolean(&table, "record_from_dial", false),
        redaction_mode,
        redaction_inbound_calls: ctx.boolean(&table, "redaction_inbound_calls", true),
        redaction_outbound_calls: ctx.boolean(&table, "redaction_outbound_calls", true),
    };
    if errors.is_empty() {
        Ok(settings)
    } else {
        Err(errors)
    }
}
