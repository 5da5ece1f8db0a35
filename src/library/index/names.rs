//! What a file's name says: a call's recording, the dialplan fallback's, a hidden party file; the words of a caller's name.

use std::path::Path;
use std::sync::Arc;

/// The ARI name of a file: its relative path without the extension.
/// Whether `name` has the shape the call flows give their recordings
/// (`<kind>-<YYYYMMDD>-<HHMMSS>-<8 hex>`, see `flows::call::recording_name`): such a file
/// belongs to a call whose metadata says whose it is, so without that metadata it is held back,
/// not filed under the default tenant.
pub fn made_by_a_call(name: &str) -> bool {
    let mut parts = name.rsplitn(4, '-');
    let (Some(hex), Some(time), Some(date), Some(kind)) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return false;
    };
    let digits = |t: &str, n: usize| t.len() == n && t.bytes().all(|b| b.is_ascii_digit());
    !kind.is_empty()
        && !kind.contains('/')
        && digits(date, 8)
        && digits(time, 6)
        && hex.len() == 8
        && hex.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

/// Whose a dialled number is: the flow answering it, its tenant, project and privacy.
#[derive(Debug, Clone)]
pub struct NumberScope {
    pub flow: String,
    pub tenant: String,
    pub project: String,
    pub private: bool,
}

pub type NumberScopeFn = Arc<dyn Fn(&str) -> Option<NumberScope> + Send + Sync>;

/// What the shipped dialplan's fallback puts in a recording's name:
/// `fallback-<dialled digits>-<caller digits>-<unique id>` (see asterisk/extensions.conf).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FallbackName {
    pub dialled: String,
    pub caller: String,
    pub unique_id: String,
    /// From the unique id (`<unix seconds>.<sequence>`): when Asterisk made the channel.
    pub started_at_ms: i64,
}

pub fn parse_fallback_name(name: &str) -> Option<FallbackName> {
    let rest = name.strip_prefix("fallback-")?;
    let mut parts = rest.splitn(3, '-');
    let (dialled, caller, unique_id) = (parts.next()?, parts.next()?, parts.next()?);
    let digits = |t: &str| {
        t.bytes()
            .all(|b| b.is_ascii_digit() || b == b'*' || b == b'#' || b == b'+')
    };
    let (seconds, sequence) = unique_id.split_once('.')?;
    let started_at_ms = seconds.parse::<i64>().ok()?.checked_mul(1000)?;
    (!dialled.is_empty()
        && dialled.len() <= 32
        && caller.len() <= 32
        && digits(dialled)
        && digits(caller)
        && !sequence.is_empty()
        && sequence.bytes().all(|b| b.is_ascii_digit()))
    .then(|| FallbackName {
        dialled: dialled.to_string(),
        caller: caller.to_string(),
        unique_id: unique_id.to_string(),
        started_at_ms,
    })
}

pub(super) fn recording_name(rel: &str) -> String {
    match rel.rsplit_once('.') {
        Some((stem, _)) => stem.to_string(),
        None => rel.to_string(),
    }
}

/// The lower-cased words of a caller name (letters and digits), each once.
pub fn name_words(name: &str) -> Vec<String> {
    let mut words: Vec<String> = name
        .split(|c: char| !c.is_alphanumeric())
        .filter(|w| !w.is_empty())
        .map(str::to_lowercase)
        .collect();
    words.sort();
    words.dedup();
    words
}

/// A transcript beside a recording: `<name>.vtt` for `<name>.wav`.
pub(super) fn is_sidecar(path: &Path) -> bool {
    path.extension().is_some_and(|e| e == "vtt")
}

/// A path (relative to the recordings folder) under a folder whose name starts with a dot:
/// the service's own (each party of a dual-channel recording, `.channels/`), never listed.
pub(super) fn in_hidden_folder(rel: &str) -> bool {
    rel.split('/').any(|part| part.starts_with('.'))
}
