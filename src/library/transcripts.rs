//! Transcripts of recordings: timed lines (cues) with a speaker, attached through the API or as a
//! `<name>.vtt` sidecar file beside the audio. This module owns `recording_transcripts`.
//!
//! A transcript is as sensitive as the audio it transcribes: the HTTP layer reads it only for
//! callers who may play the recording, and audits every read and change. With `ENCRYPTION_KEYS`
//! its cues are sealed with the deployment's key (an age file in the row) and its words reach
//! `transcript_search` only as keyed tokens ([`word_token`]): the index finds a word asked for
//! but holds no word itself.

use std::str::FromStr;

use base64::Engine;

use crate::db::{Database, DbError};
use crate::encryption::Keyring;

/// At most this many cues, and this much text in one: a transcript is a call's words, not a
/// place to store anything else.
pub const MAX_CUES: usize = 20_000;
const MAX_TEXT: usize = 2_000;
const MAX_SPEAKER: usize = 100;

/// Whether `language` looks like a language tag (`en`, `pt-BR`, `zh-Hant`).
pub fn valid_language(language: &str) -> bool {
    (2..=16).contains(&language.len())
        && language
            .split('-')
            .all(|part| !part.is_empty() && part.chars().all(|c| c.is_ascii_alphanumeric()))
}

/// One timed line of a transcript.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Cue {
    pub start_ms: u64,
    pub end_ms: u64,
    pub speaker: Option<String>,
    pub text: String,
}

/// Where a transcript came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    /// `PUT /api/recordings/{id}/transcript`.
    Api,
    /// A `<name>.vtt` file beside the audio.
    Sidecar,
}

impl Source {
    pub fn as_str(self) -> &'static str {
        match self {
            Source::Api => "api",
            Source::Sidecar => "sidecar",
        }
    }
}

/// A stored transcript.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transcript {
    pub source: String,
    pub cues: Vec<Cue>,
    pub updated_at_ms: i64,
    pub by: String,
}

/// Reads a WebVTT file: each cue's times, its speaker from a `<v Name>` voice tag, its text
/// without markup. The reason names the cue when one is wrong.
pub fn parse_webvtt(text: &str) -> Result<Vec<Cue>, String> {
    let text = text.trim_start_matches('\u{feff}');
    check_timings(text)?;
    let parsed = vtt::WebVtt::from_str(text).map_err(|e| format!("not WebVTT: {e}"))?;
    let cues = parsed
        .cues
        .into_iter()
        .map(|cue| {
            let (speaker, text) = voice(&cue.payload);
            Cue {
                start_ms: millis(cue.start.as_duration()),
                end_ms: millis(cue.end.as_duration()),
                speaker,
                text,
            }
        })
        .collect();
    checked(cues)
}

/// The longest time a cue may start or end at: a week, as for JSON transcripts.
const MAX_CUE_HOURS: u64 = 7 * 24;

/// Every cue timing line (`start --> end`) holds two WebVTT timestamps as the format defines
/// them: `[hh:]mm:ss.ttt`, minutes and seconds under 60, three digits of milliseconds, hours
/// bounded. The parser underneath accepts `00:75:00.000` and any number of hours.
fn check_timings(text: &str) -> Result<(), String> {
    let mut cue = 0;
    for line in text.lines() {
        let Some((start, rest)) = line.split_once("-->") else {
            continue;
        };
        cue += 1;
        let end = rest.split_whitespace().next().unwrap_or("");
        for stamp in [start.trim(), end] {
            if !valid_timestamp(stamp) {
                return Err(format!(
                    "cue {cue}: {stamp:?} is not a time like 00:01.500 or 01:02:03.000 (minutes and seconds under 60, at most {MAX_CUE_HOURS} hours)"
                ));
            }
        }
    }
    Ok(())
}

fn valid_timestamp(stamp: &str) -> bool {
    let Some((clock, millis)) = stamp.split_once('.') else {
        return false;
    };
    let digits = |s: &str, min: usize, max: usize| {
        (min..=max).contains(&s.len()) && s.bytes().all(|b| b.is_ascii_digit())
    };
    if !digits(millis, 3, 3) {
        return false;
    }
    let parts: Vec<&str> = clock.split(':').collect();
    let (hours, minutes, seconds) = match parts[..] {
        [m, s] => ("0", m, s),
        [h, m, s] => (h, m, s),
        _ => return false,
    };
    let under_60 = |s: &str| digits(s, 2, 2) && s.parse::<u64>().is_ok_and(|n| n < 60);
    digits(hours, 1, 4)
        && hours.parse::<u64>().is_ok_and(|h| h <= MAX_CUE_HOURS)
        && under_60(minutes)
        && under_60(seconds)
}

fn millis(duration: std::time::Duration) -> u64 {
    u64::try_from(duration.as_millis()).unwrap_or(u64::MAX)
}

/// The speaker of a `<v Name>text` payload, and the text without any tags.
fn voice(payload: &str) -> (Option<String>, String) {
    let speaker = payload
        .trim_start()
        .strip_prefix("<v")
        .and_then(|rest| rest.split_once('>'))
        .map(|(name, _)| name.trim().trim_start_matches('.').to_string())
        .map(|name| {
            // `<v.loud Alice>`: classes before the name.
            name.split_once(' ')
                .map_or(name.clone(), |(_, n)| n.trim().to_string())
        })
        .filter(|name| !name.is_empty());
    let text = without_markup(&decode_entities(&without_markup(payload)))
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ");
    (speaker, text)
}

/// Cue text without its tags (`<b>`, `</i>`, `<v Name>`, `<c.loud>`, `<00:01.000>`): a tag is
/// `<` followed by a letter, `/` or a digit, up to the next `>`. Any other `<` (`x < 5`, or
/// one never closed) is text and kept, with what follows it.
fn without_markup(payload: &str) -> String {
    let mut text = String::with_capacity(payload.len());
    let mut rest = payload;
    while let Some(open) = rest.find('<') {
        text.push_str(&rest[..open]);
        let after = &rest[open + 1..];
        let starts_tag = after
            .chars()
            .next()
            .is_some_and(|c| c.is_ascii_alphanumeric() || c == '/');
        match after.find('>') {
            Some(close) if starts_tag => rest = &after[close + 1..],
            _ => {
                text.push('<');
                rest = after;
            }
        }
    }
    text.push_str(rest);
    text
}

/// WebVTT's character references. Decoded text goes through [`without_markup`] again, so an
/// escaped tag (`&lt;img src=x&gt;`) does not come back as markup in the stored text.
fn decode_entities(text: &str) -> String {
    text.replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&nbsp;", " ")
        .replace("&lrm;", "")
        .replace("&rlm;", "")
        .replace("&amp;", "&")
}

/// One line of a JSON transcript: times in seconds, as transcription services write them.
#[derive(serde::Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct JsonCue {
    start: f64,
    end: f64,
    #[serde(default)]
    speaker: Option<String>,
    text: String,
}

#[derive(serde::Deserialize)]
#[serde(untagged)]
enum JsonTranscript {
    Cues(Vec<JsonCue>),
    Wrapped { cues: Vec<JsonCue> },
}

/// Reads a JSON transcript: `[{"start": 1.5, "end": 3.2, "speaker": "Agent", "text": "..."}]`
/// or the same list under `"cues"`.
pub fn parse_json(text: &str) -> Result<Vec<Cue>, String> {
    let parsed: JsonTranscript = serde_json::from_str(text).map_err(|e| {
        format!("not a transcript: {e} (expected [{{\"start\", \"end\", \"speaker\", \"text\"}}], times in seconds)")
    })?;
    let (JsonTranscript::Cues(cues) | JsonTranscript::Wrapped { cues }) = parsed;
    let mut out = Vec::with_capacity(cues.len());
    for (i, cue) in cues.into_iter().enumerate() {
        let valid = |t: f64| t.is_finite() && (0.0..=86_400.0 * 7.0).contains(&t);
        if !valid(cue.start) || !valid(cue.end) {
            return Err(format!(
                "cue {}: start and end must be seconds from 0",
                i + 1
            ));
        }
        out.push(Cue {
            start_ms: (cue.start * 1000.0).round() as u64,
            end_ms: (cue.end * 1000.0).round() as u64,
            speaker: cue.speaker.filter(|s| !s.trim().is_empty()),
            text: cue.text.split_whitespace().collect::<Vec<_>>().join(" "),
        });
    }
    checked(out)
}

/// Cues in time order, each ending after it starts, of a bounded size.
fn checked(mut cues: Vec<Cue>) -> Result<Vec<Cue>, String> {
    if cues.len() > MAX_CUES {
        return Err(format!("{} cues; at most {MAX_CUES}", cues.len()));
    }
    for (i, cue) in cues.iter().enumerate() {
        if cue.end_ms < cue.start_ms {
            return Err(format!("cue {}: it ends before it starts", i + 1));
        }
        if cue.text.chars().count() > MAX_TEXT {
            return Err(format!("cue {}: more than {MAX_TEXT} characters", i + 1));
        }
        if cue
            .speaker
            .as_ref()
            .is_some_and(|s| s.chars().count() > MAX_SPEAKER)
        {
            return Err(format!(
                "cue {}: a speaker name of more than {MAX_SPEAKER} characters",
                i + 1
            ));
        }
    }
    cues.sort_by_key(|c| (c.start_ms, c.end_ms));
    Ok(cues)
}

/// Where the stored value of a sealed transcript or timeline begins: an age file in base64
/// follows.
const SEALED_PREFIX: &str = "age:";

/// `plain` as stored: itself, or sealed with the current key (with that key's name).
pub fn seal_text(
    plain: String,
    keys: Option<&Keyring>,
) -> Result<(String, Option<String>), DbError> {
    let Some(keys) = keys else {
        return Ok((plain, None));
    };
    let sealed = keys
        .seal_bytes(plain.as_bytes())
        .map_err(|e| DbError::Sealed(e.to_string()))?;
    let text = format!(
        "{SEALED_PREFIX}{}",
        base64::engine::general_purpose::STANDARD.encode(sealed)
    );
    Ok((text, Some(keys.current_id())))
}

/// A stored value's plaintext: opened with the keys when it was sealed.
pub fn open_text(stored: String, keys: Option<&Keyring>) -> Result<String, DbError> {
    let Some(encoded) = stored.strip_prefix(SEALED_PREFIX) else {
        return Ok(stored);
    };
    let keys = keys.ok_or_else(|| {
        DbError::Sealed("it is sealed and no ENCRYPTION_KEYS are configured".into())
    })?;
    let sealed = base64::engine::general_purpose::STANDARD
        .decode(encoded)
        .map_err(|e| DbError::Sealed(e.to_string()))?;
    let plain = keys
        .open_bytes(&sealed)
        .map_err(|e| DbError::Sealed(e.to_string()))?;
    String::from_utf8(plain).map_err(|e| DbError::Sealed(e.to_string()))
}

/// The cues a stored value holds (opened with `keys` when sealed).
fn cues_from(stored: String, keys: Option<&Keyring>) -> Result<Vec<Cue>, DbError> {
    Ok(serde_json::from_str(&open_text(stored, keys)?).unwrap_or_default())
}

/// Attaches `cues` to a recording, replacing what it had.
pub async fn store(
    db: &Database,
    keys: Option<&Keyring>,
    recording_id: i64,
    cues: &[Cue],
    source: Source,
    sidecar_mtime_ms: Option<i64>,
    by: &str,
) -> Result<(), DbError> {
    let json = serde_json::to_string(cues).unwrap_or_else(|_| "[]".into());
    let (stored, sealed_by) = seal_text(json, keys)?;
    let at_ms = crate::clock::now_ms();
    let mut tx = db.pool.begin().await?;
    sqlx::query(
        "INSERT INTO recording_transcripts (recording_id, source, cues, sidecar_mtime_ms, updated_at_ms, by_actor, sealed_by) \
         VALUES ($1, $2, $3, $4, $5, $6, $7) \
         ON CONFLICT (recording_id) DO UPDATE SET source = $2, cues = $3, sidecar_mtime_ms = $4, \
         updated_at_ms = $5, by_actor = $6, sealed_by = $7",
    )
    .bind(recording_id)
    .bind(source.as_str())
    .bind(stored)
    .bind(sidecar_mtime_ms)
    .bind(at_ms)
    .bind(by)
    .bind(sealed_by)
    .execute(&mut *tx)
    .await?;
    index_words(&mut tx, db.backend, keys, recording_id, cues).await?;
    let event = crate::outbox::Event::each_time(
        crate::outbox::EventKind::TranscriptReady,
        crate::outbox::Subject::Recording(recording_id),
        at_ms,
    )
    .with_detail(source.as_str());
    crate::outbox::record(&mut tx, &event).await?;
    tx.commit().await?;
    Ok(())
}

/// What the search index needs to find the purpose's words: the key each word is keyed by.
const SEARCH_PURPOSE: &str = "ari-recorder transcript words v1";

/// The keyed token of `word` under `key`: `w` and 20 hex digits of an HMAC-SHA256. Letters and
/// digits only, so both full-text indexes take it as one word.
pub fn word_token(key: &[u8; 32], word: &str) -> String {
    use hmac::Mac;
    let Ok(mut mac) = crate::signing::HmacSha256::new_from_slice(key) else {
        // Unreachable: HMAC takes a key of any length.
        return String::new();
    };
    mac.update(word.as_bytes());
    format!("w{}", hex::encode(&mac.finalize().into_bytes()[..10]))
}

/// The words a transcript is found by: its cues' text; sealed, each distinct word as its token
/// under the current key.
fn searchable_text(cues: &[Cue], keys: Option<&Keyring>) -> String {
    let text = cues
        .iter()
        .map(|c| c.text.as_str())
        .collect::<Vec<_>>()
        .join(" ");
    let Some((_, key)) = keys.and_then(|k| k.derived_keys(SEARCH_PURPOSE).into_iter().next())
    else {
        return text;
    };
    let mut seen = std::collections::HashSet::new();
    search_words(&text)
        .into_iter()
        .filter(|w| seen.insert(w.clone()))
        .map(|w| word_token(&key, &w))
        .collect::<Vec<_>>()
        .join(" ")
}

/// A word searched for, and the forms the index may hold it in: the word itself (a transcript
/// stored in clear) and its token under each key (one sealed).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Said {
    pub word: String,
    pub forms: Vec<String>,
}

/// The words of a search, each with its forms.
pub fn said(words: &[String], keys: Option<&Keyring>) -> Vec<Said> {
    let derived = keys
        .map(|k| k.derived_keys(SEARCH_PURPOSE))
        .unwrap_or_default();
    words
        .iter()
        .map(|word| {
            let mut forms = vec![word.clone()];
            forms.extend(derived.iter().map(|(_, key)| word_token(key, word)));
            Said {
                word: word.clone(),
                forms,
            }
        })
        .collect()
}

/// Writes recording `id`'s words into `transcript_search` (this module's), in the caller's
/// transaction, replacing what it had.
async fn index_words(
    conn: &mut sqlx::AnyConnection,
    backend: crate::db::Backend,
    keys: Option<&Keyring>,
    id: i64,
    cues: &[Cue],
) -> Result<(), sqlx::Error> {
    let text = searchable_text(cues, keys);
    match backend {
        crate::db::Backend::Sqlite => {
            sqlx::query("DELETE FROM transcript_search WHERE rowid = $1")
                .bind(id)
                .execute(&mut *conn)
                .await?;
            sqlx::query("INSERT INTO transcript_search (rowid, text) VALUES ($1, $2)")
                .bind(id)
                .bind(text)
                .execute(&mut *conn)
                .await?;
        }
        crate::db::Backend::Postgres => {
            sqlx::query(
                "INSERT INTO transcript_search (recording_id, words) VALUES ($1, to_tsvector('simple', $2)) \
                 ON CONFLICT (recording_id) DO UPDATE SET words = excluded.words",
            )
            .bind(id)
            .bind(text)
            .execute(&mut *conn)
            .await?;
        }
    }
    Ok(())
}

/// Removes recording `id`'s words from `transcript_search`.
async fn unindex_words(
    conn: &mut sqlx::AnyConnection,
    backend: crate::db::Backend,
    id: i64,
) -> Result<(), sqlx::Error> {
    let sql = match backend {
        crate::db::Backend::Sqlite => "DELETE FROM transcript_search WHERE rowid = $1",
        crate::db::Backend::Postgres => "DELETE FROM transcript_search WHERE recording_id = $1",
    };
    sqlx::query(sql).bind(id).execute(&mut *conn).await?;
    Ok(())
}

/// Where in a transcript the words of a search are said: the earliest cue holding the most of
/// them, with a snippet of its text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Found {
    pub start_ms: u64,
    pub speaker: Option<String>,
    pub snippet: String,
}

/// Words as the search indexes them: lower-case runs of letters and digits.
pub fn search_words(text: &str) -> Vec<String> {
    text.split(|c: char| !c.is_alphanumeric() && c != '\'')
        .map(|w| w.trim_matches('\'').to_lowercase())
        .filter(|w| !w.is_empty())
        .collect()
}

/// The cue of `cues` that best shows where `words` are said.
pub fn find_said(cues: &[Cue], words: &[String]) -> Option<Found> {
    const SNIPPET: usize = 160;
    let best = cues
        .iter()
        .map(|cue| {
            let said = search_words(&cue.text);
            let hits = words.iter().filter(|w| said.contains(w)).count();
            (hits, cue)
        })
        .filter(|(hits, _)| *hits > 0)
        .max_by_key(|(hits, cue)| (*hits, std::cmp::Reverse(cue.start_ms)))?
        .1;
    let snippet = if best.text.chars().count() <= SNIPPET {
        best.text.clone()
    } else {
        // Around the first word found.
        let lower = best.text.to_lowercase();
        let at = words
            .iter()
            .filter_map(|w| lower.find(w.as_str()))
            .min()
            .unwrap_or(0);
        let chars: Vec<char> = best.text.chars().collect();
        let at_char = best.text[..at.min(best.text.len())].chars().count();
        let from = at_char.saturating_sub(SNIPPET / 3);
        let to = (from + SNIPPET).min(chars.len());
        let mut out: String = chars[from..to].iter().collect();
        if from > 0 {
            out.insert(0, '…');
        }
        if to < chars.len() {
            out.push('…');
        }
        out
    };
    Some(Found {
        start_ms: best.start_ms,
        speaker: best.speaker.clone(),
        snippet,
    })
}

/// Stores what an engine (`source`: its name) recognised, unless a transcript was attached by
/// hand meanwhile (the API's or a sidecar's is never replaced) or the recording is no longer
/// ready (deleted or purged while it was transcribed). Whether it was stored.
pub async fn store_recognised(
    db: &Database,
    keys: Option<&Keyring>,
    recording_id: i64,
    cues: &[Cue],
    source: &str,
) -> Result<bool, DbError> {
    let json = serde_json::to_string(cues).unwrap_or_else(|_| "[]".into());
    let (stored, sealed_by) = seal_text(json, keys)?;
    let at_ms = crate::clock::now_ms();
    let mut tx = db.pool.begin().await?;
    let attached: Option<(String,)> =
        sqlx::query_as("SELECT source FROM recording_transcripts WHERE recording_id = $1")
            .bind(recording_id)
            .fetch_optional(&mut *tx)
            .await?;
    if attached.is_some_and(|(s,)| s == Source::Api.as_str() || s == Source::Sidecar.as_str()) {
        return Ok(false);
    }
    let written = sqlx::query(
        "INSERT INTO recording_transcripts (recording_id, source, cues, sidecar_mtime_ms, updated_at_ms, by_actor, sealed_by) \
         SELECT $1, $2, $3, NULL, $4, $5, $6 WHERE EXISTS \
         (SELECT 1 FROM recordings WHERE id = $1 AND status = 'ready') \
         ON CONFLICT (recording_id) DO UPDATE SET source = $2, cues = $3, sidecar_mtime_ms = NULL, \
         updated_at_ms = $4, by_actor = $5, sealed_by = $6",
    )
    .bind(recording_id)
    .bind(source)
    .bind(stored)
    .bind(at_ms)
    .bind(format!("engine:{source}"))
    .bind(sealed_by)
    .execute(&mut *tx)
    .await?;
    if written.rows_affected() == 0 {
        return Ok(false);
    }
    index_words(&mut tx, db.backend, keys, recording_id, cues).await?;
    let event = crate::outbox::Event::each_time(
        crate::outbox::EventKind::TranscriptReady,
        crate::outbox::Subject::Recording(recording_id),
        at_ms,
    )
    .with_detail(source);
    crate::outbox::record(&mut tx, &event).await?;
    tx.commit().await?;
    Ok(true)
}

/// The transcript of a recording, if it has one (opened with `keys` when sealed).
pub async fn load(
    db: &Database,
    keys: Option<&Keyring>,
    recording_id: i64,
) -> Result<Option<Transcript>, DbError> {
    let row: Option<(String, String, i64, String)> = sqlx::query_as(
        "SELECT source, cues, updated_at_ms, by_actor FROM recording_transcripts WHERE recording_id = $1",
    )
    .bind(recording_id)
    .fetch_optional(&db.pool)
    .await?;
    let Some((source, cues, updated_at_ms, by)) = row else {
        return Ok(None);
    };
    Ok(Some(Transcript {
        source,
        cues: cues_from(cues, keys)?,
        updated_at_ms,
        by,
    }))
}

/// What a pass of [`reseal`] did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Resealed {
    pub sealed: u64,
    /// Rows that could not be opened (sealed with a key this service does not hold).
    pub failed: u64,
    /// The last row looked at: the next pass starts after it; None when none was left.
    pub last: Option<i64>,
}

/// The cues of each of `ids` that has a transcript, in one query a few hundred ids at a time
/// (a page of search results reads its snippets at once, not a round trip a row).
pub async fn cues_of(
    db: &Database,
    keys: Option<&Keyring>,
    ids: &[i64],
) -> Result<std::collections::HashMap<i64, Vec<Cue>>, DbError> {
    let mut out = std::collections::HashMap::new();
    for chunk in ids.chunks(500) {
        let sql = format!(
            "SELECT recording_id, cues FROM recording_transcripts WHERE recording_id IN ({})",
            crate::db::placeholders(1, chunk.len())
        );
        let mut query = sqlx::query_as::<_, (i64, String)>(&sql);
        for id in chunk {
            query = query.bind(*id);
        }
        for (id, cues) in query.fetch_all(&db.pool).await? {
            out.insert(id, cues_from(cues, keys)?);
        }
    }
    Ok(out)
}

/// Seals (again) up to `limit` transcripts after recording `after` that are stored in clear or
/// sealed by another key than the current one, and keys their words anew. Their source, time
/// and author stay. `sealed_by < $1 OR sealed_by > $1` rather than `<>`: each side is a range
/// of the index, so the look costs the rows it finds, not the table.
pub async fn reseal(
    db: &Database,
    keys: &Keyring,
    after: i64,
    limit: i64,
) -> Result<Resealed, DbError> {
    let current = keys.current_id();
    let rows: Vec<(i64, String)> = sqlx::query_as(
        "SELECT recording_id, cues FROM recording_transcripts \
         WHERE (sealed_by IS NULL OR sealed_by < $1 OR sealed_by > $1) AND recording_id > $2 \
         ORDER BY recording_id LIMIT $3",
    )
    .bind(&current)
    .bind(after)
    .bind(limit)
    .fetch_all(&db.pool)
    .await?;
    let mut pass = Resealed {
        last: rows.last().map(|(id, _)| *id),
        ..Resealed::default()
    };
    for (id, stored) in rows {
        // The plaintext is sealed as it is; its cues are read for the index only.
        let json = match open_text(stored.clone(), Some(keys)) {
            Ok(json) => json,
            Err(e) => {
                tracing::warn!(recording = id, error = %e, "transcript not sealed again");
                pass.failed += 1;
                continue;
            }
        };
        let cues: Vec<Cue> = serde_json::from_str(&json).unwrap_or_default();
        let (sealed, sealed_by) = seal_text(json, Some(keys))?;
        let mut tx = db.pool.begin().await?;
        // Only if unchanged meanwhile: a transcript stored since is sealed already.
        let written = sqlx::query(
            "UPDATE recording_transcripts SET cues = $1, sealed_by = $2 WHERE recording_id = $3 AND cues = $4",
        )
        .bind(sealed)
        .bind(sealed_by)
        .bind(id)
        .bind(stored)
        .execute(&mut *tx)
        .await?;
        if written.rows_affected() > 0 {
            index_words(&mut tx, db.backend, Some(keys), id, &cues).await?;
            pass.sealed += 1;
        }
        tx.commit().await?;
    }
    Ok(pass)
}

/// Whether a recording has a transcript.
pub async fn exists(db: &Database, recording_id: i64) -> Result<bool, DbError> {
    let row: Option<(i64,)> =
        sqlx::query_as("SELECT recording_id FROM recording_transcripts WHERE recording_id = $1")
            .bind(recording_id)
            .fetch_optional(&db.pool)
            .await?;
    Ok(row.is_some())
}

/// Removes a recording's transcript; whether it had one.
pub async fn remove(db: &Database, recording_id: i64) -> Result<bool, DbError> {
    let mut tx = db.pool.begin().await?;
    let done = sqlx::query("DELETE FROM recording_transcripts WHERE recording_id = $1")
        .bind(recording_id)
        .execute(&mut *tx)
        .await?;
    unindex_words(&mut tx, db.backend, recording_id).await?;
    tx.commit().await?;
    Ok(done.rows_affected() > 0)
}

/// A `<name>.vtt` file found beside recording `<name>`: stored unless the API attached one
/// (an admin's transcript wins over a file) or this version of the file is stored already.
/// Returns whether it was stored.
pub async fn import_sidecar(
    db: &Database,
    keys: Option<&Keyring>,
    rel: &str,
    mtime_ms: i64,
    read: impl FnOnce() -> std::io::Result<String> + Send + 'static,
) -> Result<Result<bool, String>, DbError> {
    let Some(name) = rel.strip_suffix(".vtt") else {
        return Ok(Ok(false));
    };
    let recording: Option<(i64,)> =
        sqlx::query_as("SELECT id FROM recordings WHERE name = $1 AND status <> 'deleted'")
            .bind(name)
            .fetch_optional(&db.pool)
            .await?;
    let Some((id,)) = recording else {
        return Ok(Ok(false));
    };
    let current: Option<(String, Option<i64>)> = sqlx::query_as(
        "SELECT source, sidecar_mtime_ms FROM recording_transcripts WHERE recording_id = $1",
    )
    .bind(id)
    .fetch_optional(&db.pool)
    .await?;
    match current {
        Some((source, _)) if source == Source::Api.as_str() => return Ok(Ok(false)),
        Some((_, Some(seen))) if seen == mtime_ms => return Ok(Ok(false)),
        _ => {}
    }
    // Read only now (an unchanged file costs a query, not a read), on a blocking thread.
    let read = tokio::task::spawn_blocking(read)
        .await
        .unwrap_or_else(|e| Err(std::io::Error::other(e)));
    let text = match read {
        Ok(text) => text,
        Err(e) => return Ok(Err(format!("cannot read it: {e}"))),
    };
    let cues = match parse_webvtt(&text) {
        Ok(cues) => cues,
        Err(reason) => return Ok(Err(reason)),
    };
    store(
        db,
        keys,
        id,
        &cues,
        Source::Sidecar,
        Some(mtime_ms),
        "sidecar",
    )
    .await?;
    Ok(Ok(true))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn webvtt_cues_keep_times_speakers_and_plain_text() {
        let text = "WEBVTT\n\n1\n00:00:01.000 --> 00:00:03.500\n<v Agent>Good morning, <b>how</b> can I help?\n\n00:04.250 --> 00:06.000\n<v.loud Caller>My card &amp; my account\n\n00:06.000 --> 00:07.000\nno speaker\n";
        let cues = parse_webvtt(text).expect("valid");
        assert_eq!(
            cues,
            vec![
                Cue {
                    start_ms: 1000,
                    end_ms: 3500,
                    speaker: Some("Agent".into()),
                    text: "Good morning, how can I help?".into()
                },
                Cue {
                    start_ms: 4250,
                    end_ms: 6000,
                    speaker: Some("Caller".into()),
                    text: "My card & my account".into()
                },
                Cue {
                    start_ms: 6000,
                    end_ms: 7000,
                    speaker: None,
                    text: "no speaker".into()
                },
            ]
        );
    }

    #[test]
    fn bad_transcripts_say_what_is_wrong() {
        assert!(parse_webvtt("00:01.000 --> 00:02.000\nhi")
            .expect_err("no header")
            .contains("WEBVTT"));
        assert_eq!(
            parse_webvtt("WEBVTT\n\n00:05.000 --> 00:02.000\nbackwards").expect_err("order"),
            "cue 1: it ends before it starts"
        );
        assert!(parse_json("{\"lines\": []}")
            .expect_err("shape")
            .contains("not a transcript"));
        assert_eq!(
            parse_json("[{\"start\": -1, \"end\": 2, \"text\": \"x\"}]").expect_err("negative"),
            "cue 1: start and end must be seconds from 0"
        );
    }

    /// Second probe, finding 11: an escaped tag came back as raw HTML, a lone `<` swallowed
    /// the rest of the cue, and `00:75:00.000` or any number of hours passed.
    #[test]
    fn webvtt_text_is_plain_and_times_are_checked() {
        let cues = parse_webvtt(
            "WEBVTT\n\n00:01.000 --> 00:02.000\n&lt;img src=x onerror=alert(1)&gt;hello &amp;lt;b&amp;gt; x < 5 and 7 > 3\n",
        )
        .expect("valid");
        assert_eq!(cues[0].text, "hello &lt;b&gt; x < 5 and 7 > 3");
        assert!(!cues[0].text.contains("<img"));
        for (bad, stamp) in [
            ("00:75:00.000 --> 01:00:00.000", "00:75:00.000"),
            ("00:01.000 --> 00:61.000", "00:61.000"),
            ("9999:00:00.000 --> 9999:00:01.000", "9999:00:00.000"),
            ("00:01.5 --> 00:02.000", "00:01.5"),
        ] {
            let error = parse_webvtt(&format!("WEBVTT\n\n{bad}\nx\n")).expect_err(bad);
            assert!(
                error.starts_with("cue 1: ") && error.contains(stamp),
                "{error}"
            );
        }
        assert!(
            parse_webvtt("WEBVTT\n\n167:59:59.999 --> 168:00:00.000 align:start\nlate\n").is_ok()
        );
    }

    #[test]
    fn json_cues_are_seconds_and_come_back_in_time_order() {
        let cues = parse_json(
            "{\"cues\": [{\"start\": 2.5, \"end\": 3, \"text\": \"second\"}, {\"start\": 0.25, \"end\": 1, \"speaker\": \"Agent\", \"text\": \" first  line \"}]}",
        )
        .expect("valid");
        assert_eq!(cues[0].start_ms, 250);
        assert_eq!(cues[0].text, "first line");
        assert_eq!(cues[0].speaker.as_deref(), Some("Agent"));
        assert_eq!(cues[1].start_ms, 2500);
    }
}
