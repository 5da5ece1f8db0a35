//! The configuration's reading and checks.

use std::collections::HashMap;

use super::*;

/// The reference a reader has (docs/configuration.md) names every variable, and no other.
#[test]
fn the_configuration_reference_lists_every_variable() {
    let doc = include_str!("../../docs/configuration.md");
    let named: std::collections::BTreeSet<&str> = doc
        .lines()
        .filter(|l| l.starts_with("| `"))
        // The first cell: `file_key` / `ENV_KEY` (several, comma-separated).
        .filter_map(|l| l.split('|').nth(1))
        .flat_map(|cell| cell.split('`').skip(1).step_by(2))
        .filter(|w| w.starts_with(|c: char| c.is_ascii_uppercase()))
        .collect();
    for key in ENV_KEYS {
        assert!(
            named.contains(key),
            "{key} is missing from docs/configuration.md"
        );
    }
    for key in &named {
        assert!(
            ENV_KEYS.contains(key),
            "docs/configuration.md names {key}, which the service does not read"
        );
    }
}

fn env_of(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
    let map: HashMap<String, String> = pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    move |key| map.get(key).cloned()
}

fn write(text: &str) -> tempfile::NamedTempFile {
    let file = tempfile::NamedTempFile::new().expect("temp file");
    std::fs::write(file.path(), text).expect("write config");
    file
}

#[test]
fn defaults_apply_without_file() {
    let config = Config::load(None, env_of(&[])).expect("defaults are valid");
    assert_eq!(config.ari_url, "http://127.0.0.1:8088");
    assert_eq!(config.ari_app, "recorder");
    assert_eq!(config.http_addr.to_string(), "127.0.0.1:8080");
    assert!(config.database_url.starts_with("sqlite://./data/"));
}

#[test]
fn environment_overrides_file() {
    let file = write("ari_url = \"http://10.0.0.1:8088\"\nari_app = \"fromfile\"\n");
    let config = Config::load(
        Some(file.path()),
        env_of(&[("ARI_APP", "fromenv"), ("HTTP_ADDR", "127.0.0.1:9999")]),
    )
    .expect("valid");
    assert_eq!(config.ari_url, "http://10.0.0.1:8088");
    assert_eq!(config.ari_app, "fromenv");
    assert_eq!(config.http_addr.port(), 9999);
}

#[test]
fn unknown_key_is_refused_with_its_name() {
    let file = write("ari_url = \"http://x:1\"\nrecord_everything = true\n");
    let err = Config::load(Some(file.path()), env_of(&[])).expect_err("unknown key");
    let text = err.to_string();
    assert!(text.contains("record_everything"), "{text}");
    assert!(text.contains("line 2"), "{text}");
}

#[test]
fn bad_values_name_the_key() {
    let err = Config::load(None, env_of(&[("HTTP_ADDR", "localhost")])).expect_err("bad");
    assert!(err.to_string().contains("HTTP_ADDR"), "{err}");
    let err = Config::load(None, env_of(&[("ARI_URL", "ftp://x")])).expect_err("bad");
    assert!(err.to_string().contains("ARI_URL"), "{err}");
    let err = Config::load(None, env_of(&[("DATABASE_URL", "mysql://x")])).expect_err("bad");
    assert!(err.to_string().contains("DATABASE_URL"), "{err}");
    let err = Config::load(None, env_of(&[("ARI_APP", "a b")])).expect_err("bad");
    assert!(err.to_string().contains("ARI_APP"), "{err}");
    let file = write("http_addr = 42\n");
    let err = Config::load(Some(file.path()), env_of(&[])).expect_err("bad type");
    assert!(err.to_string().contains("line 1"), "{err}");
}

#[test]
fn the_documented_example_loads() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("ari-recorder.example.toml");
    let config = Config::load(Some(&path), env_of(&[])).expect("example is valid");
    assert_eq!(
        config.recordings_dir,
        PathBuf::from("/var/lib/asterisk/recording")
    );
}

#[test]
fn debug_output_hides_secrets() {
    let config = Config::load(
        None,
        env_of(&[
            ("ARI_PASSWORD", "hunter2"),
            ("DATABASE_URL", "postgres://app:pgsecret@db/rec"),
            (
                "LINK_SIGNING_KEYS",
                "k1:linksecretlinksecretlinksecret-0001",
            ),
        ]),
    )
    .expect("valid");
    let shown = format!("{config:?}");
    assert!(!shown.contains("hunter2"), "{shown}");
    assert!(!shown.contains("pgsecret"), "{shown}");
    assert!(!shown.contains("linksecret"), "{shown}");
}

#[test]
fn transcription_settings_are_checked() {
    use super::transcription::{EngineChoice, TranscriptionSettings};
    let load = |pairs: &[(&str, &str)]| {
        Config::load(None, env_of(pairs)).and_then(|c| TranscriptionSettings::from_config(&c))
    };
    let off = load(&[("TRANSCRIPTION_ENGINE", "off")]).expect("off");
    assert_eq!(off.engine, EngineChoice::Off);
    for (pairs, key) in [
        (
            vec![("TRANSCRIPTION_ENGINE", "whisper")],
            "TRANSCRIPTION_ENGINE",
        ),
        (
            vec![("TRANSCRIPTION_ENGINE", "openai")],
            "TRANSCRIPTION_OPENAI_URL",
        ),
        (
            vec![
                ("TRANSCRIPTION_ENGINE", "openai"),
                ("TRANSCRIPTION_OPENAI_URL", "http://whisper.example:8000"),
            ],
            "TRANSCRIPTION_OPENAI_URL",
        ),
        (
            vec![("TRANSCRIPTION_LANGUAGE", "english please")],
            "TRANSCRIPTION_LANGUAGE",
        ),
        (
            vec![("TRANSCRIPTION_WORKERS", "0")],
            "TRANSCRIPTION_WORKERS",
        ),
    ] {
        match load(&pairs) {
            Err(ConfigError::Invalid { key: found, .. }) => assert_eq!(found, key, "{pairs:?}"),
            other => panic!("{pairs:?}: {:?}", other.map(|s| s.engine)),
        }
    }
    let openai = load(&[
        ("TRANSCRIPTION_ENGINE", "openai"),
        ("TRANSCRIPTION_OPENAI_URL", "http://127.0.0.1:9000"),
        ("TRANSCRIPTION_OPENAI_KEY", "sk-secret-key-value"),
    ])
    .expect("loopback http");
    let EngineChoice::OpenAi(settings) = &openai.engine else {
        panic!("openai");
    };
    assert_eq!(settings.api_key.as_deref(), Some("sk-secret-key-value"));
    assert!(
        !format!("{openai:?}").contains("sk-secret"),
        "the key never shows"
    );
}
