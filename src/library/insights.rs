//! Talk-time figures of recordings (who talked how long, silences, cross-talk) and who talked
//! when (the timeline the panel draws), drawn from their audio after the call by the
//! transcription worker. Owns `recording_insights`.
//!
//! With `ENCRYPTION_KEYS` the timeline is sealed as transcripts are; the figures stay in clear,
//! as the list filters on them (they say how long people talked, not what they said).

use crate::audio::activity::{TalkTime, Timeline};
use crate::db::{Database, DbError};
use crate::encryption::Keyring;
use crate::library::transcripts::{open_text, seal_text, Resealed};

/// A recording's figures and, when drawn, who talked when.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Insights {
    pub talk: TalkTime,
    pub timeline: Option<Timeline>,
}

/// Stores recording `id`'s figures and timeline, replacing what it had; nothing for a recording
/// no longer ready (deleted or purged meanwhile).
pub async fn store(
    db: &Database,
    keys: Option<&Keyring>,
    id: i64,
    t: &TalkTime,
    timeline: &Timeline,
) -> Result<bool, DbError> {
    let ms = |v: u64| i64::try_from(v).unwrap_or(i64::MAX);
    let (timeline, sealed_by) =
        seal_text(serde_json::to_string(timeline).unwrap_or_default(), keys)?;
    let done = sqlx::query(
        "INSERT INTO recording_insights (recording_id, length_ms, speech_ms, caller_ms, agent_ms, silence_ms, \
         longest_silence_ms, crosstalk_ms, crosstalk_count, agent_share, computed_at_ms, timeline, timeline_sealed_by) \
         SELECT $1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13 \
         WHERE EXISTS (SELECT 1 FROM recordings WHERE id = $1 AND status = 'ready') \
         ON CONFLICT (recording_id) DO UPDATE SET length_ms = excluded.length_ms, speech_ms = excluded.speech_ms, \
         caller_ms = excluded.caller_ms, agent_ms = excluded.agent_ms, silence_ms = excluded.silence_ms, \
         longest_silence_ms = excluded.longest_silence_ms, crosstalk_ms = excluded.crosstalk_ms, \
         crosstalk_count = excluded.crosstalk_count, agent_share = excluded.agent_share, \
         computed_at_ms = excluded.computed_at_ms, timeline = excluded.timeline, \
         timeline_sealed_by = excluded.timeline_sealed_by",
    )
    .bind(id)
    .bind(ms(t.length_ms))
    .bind(ms(t.speech_ms))
    .bind(t.caller_ms.map(ms))
    .bind(t.agent_ms.map(ms))
    .bind(ms(t.silence_ms))
    .bind(ms(t.longest_silence_ms))
    .bind(ms(t.crosstalk_ms))
    .bind(ms(t.crosstalk_count))
    .bind(t.agent_share().map(i64::from))
    .bind(crate::clock::now_ms())
    .bind(timeline)
    .bind(sealed_by)
    .execute(&db.pool)
    .await?;
    Ok(done.rows_affected() > 0)
}

/// Recording `id`'s figures and timeline, if they were drawn (the timeline opened with `keys`
/// when sealed).
pub async fn load(
    db: &Database,
    keys: Option<&Keyring>,
    id: i64,
) -> Result<Option<Insights>, DbError> {
    type Row = (
        i64,
        i64,
        Option<i64>,
        Option<i64>,
        i64,
        i64,
        i64,
        i64,
        Option<String>,
    );
    let row: Option<Row> = sqlx::query_as(
        "SELECT length_ms, speech_ms, caller_ms, agent_ms, silence_ms, longest_silence_ms, crosstalk_ms, \
         crosstalk_count, timeline FROM recording_insights WHERE recording_id = $1",
    )
    .bind(id)
    .fetch_optional(&db.pool)
    .await?;
    let Some((length, speech, caller, agent, silence, longest, crosstalk, count, timeline)) = row
    else {
        return Ok(None);
    };
    let u = |v: i64| u64::try_from(v).unwrap_or(0);
    let timeline = match timeline {
        Some(stored) => serde_json::from_str(&open_text(stored, keys)?).ok(),
        None => None,
    };
    Ok(Some(Insights {
        talk: TalkTime {
            length_ms: u(length),
            speech_ms: u(speech),
            caller_ms: caller.map(u),
            agent_ms: agent.map(u),
            silence_ms: u(silence),
            longest_silence_ms: u(longest),
            crosstalk_ms: u(crosstalk),
            crosstalk_count: u(count),
        },
        timeline,
    }))
}

/// A call's figures from its segments' (each at its offset in the call's timeline, in order):
/// talk, silence and cross-talk add up; the longest silence is the longest of any segment (a
/// silence across a gap between segments is not counted); the timeline is each segment's
/// moved to its offset. None without any segment's figures.
pub fn of_call(segments: &[(u64, Insights)]) -> Option<Insights> {
    if segments.is_empty() {
        return None;
    }
    let apart = segments.iter().all(|(_, s)| s.talk.caller_ms.is_some());
    let mut talk = TalkTime {
        caller_ms: apart.then_some(0),
        agent_ms: apart.then_some(0),
        ..TalkTime::default()
    };
    let mut timeline = Timeline::new();
    let mut end = 0;
    for (offset, segment) in segments {
        let s = &segment.talk;
        end = end.max(offset + s.length_ms);
        talk.speech_ms += s.speech_ms;
        talk.silence_ms += s.silence_ms;
        talk.longest_silence_ms = talk.longest_silence_ms.max(s.longest_silence_ms);
        talk.crosstalk_ms += s.crosstalk_ms;
        talk.crosstalk_count += s.crosstalk_count;
        if apart {
            talk.caller_ms = Some(talk.caller_ms.unwrap_or(0) + s.caller_ms.unwrap_or(0));
            talk.agent_ms = Some(talk.agent_ms.unwrap_or(0) + s.agent_ms.unwrap_or(0));
        }
        for (voice, spans) in segment.timeline.iter().flatten() {
            // Mixed kinds of segments: a party's talk is speech in a call of mono segments.
            let voice = if apart { voice.as_str() } else { "speech" };
            timeline
                .entry(voice.to_string())
                .or_default()
                .extend(spans.iter().map(|[a, b]| [a + offset, b + offset]));
        }
    }
    talk.length_ms = end;
    for spans in timeline.values_mut() {
        spans.sort_unstable();
    }
    Some(Insights {
        talk,
        timeline: segments
            .iter()
            .any(|(_, s)| s.timeline.is_some())
            .then_some(timeline),
    })
}

/// Seals (again) up to `limit` timelines after recording `after` stored in clear or sealed by
/// another key than the current one (as [`crate::library::transcripts::reseal`] does).
pub async fn reseal(
    db: &Database,
    keys: &Keyring,
    after: i64,
    limit: i64,
) -> Result<Resealed, DbError> {
    let current = keys.current_id();
    let rows: Vec<(i64, String)> = sqlx::query_as(
        "SELECT recording_id, timeline FROM recording_insights WHERE timeline IS NOT NULL \
         AND (timeline_sealed_by IS NULL OR timeline_sealed_by < $1 OR timeline_sealed_by > $1) \
         AND recording_id > $2 ORDER BY recording_id LIMIT $3",
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
        let plain = match open_text(stored.clone(), Some(keys)) {
            Ok(plain) => plain,
            Err(e) => {
                tracing::warn!(recording = id, error = %e, "talk timeline not sealed again");
                pass.failed += 1;
                continue;
            }
        };
        let (sealed, sealed_by) = seal_text(plain, Some(keys))?;
        let written = sqlx::query(
            "UPDATE recording_insights SET timeline = $1, timeline_sealed_by = $2 \
             WHERE recording_id = $3 AND timeline = $4",
        )
        .bind(sealed)
        .bind(sealed_by)
        .bind(id)
        .bind(stored)
        .execute(&db.pool)
        .await?;
        pass.sealed += written.rows_affected();
    }
    Ok(pass)
}

/// Removes recording `id`'s figures (it was deleted or purged).
pub async fn remove(db: &Database, id: i64) -> Result<(), DbError> {
    sqlx::query("DELETE FROM recording_insights WHERE recording_id = $1")
        .bind(id)
        .execute(&db.pool)
        .await?;
    Ok(())
}

/// The figures as the API shows them (seconds; shares in percent), with who talked when
/// (`timeline`: each voice's spans as `[start, end]` seconds).
pub fn json(insights: &Insights) -> serde_json::Value {
    let t = &insights.talk;
    let s = |ms: u64| ms as f64 / 1000.0;
    let timeline = insights.timeline.as_ref().map(|timeline| {
        timeline
            .iter()
            .map(|(voice, spans)| {
                let spans: Vec<[f64; 2]> = spans.iter().map(|[a, b]| [s(*a), s(*b)]).collect();
                (voice.clone(), serde_json::json!(spans))
            })
            .collect::<serde_json::Map<_, _>>()
    });
    serde_json::json!({
        "timeline": timeline,
        "length_seconds": s(t.length_ms),
        "speech_seconds": s(t.speech_ms),
        "caller_talk_seconds": t.caller_ms.map(s),
        "agent_talk_seconds": t.agent_ms.map(s),
        "silence_seconds": s(t.silence_ms),
        "longest_silence_seconds": s(t.longest_silence_ms),
        "crosstalk_seconds": s(t.crosstalk_ms),
        "crosstalk_count": t.crosstalk_count,
        "agent_share_percent": t.agent_share(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn segment(caller: u64, agent: u64, longest: u64, spans: &[[u64; 2]]) -> Insights {
        let mut timeline = Timeline::new();
        timeline.insert("caller".into(), spans.to_vec());
        timeline.insert("agent".into(), vec![]);
        Insights {
            talk: TalkTime {
                length_ms: 10_000,
                speech_ms: caller + agent,
                caller_ms: Some(caller),
                agent_ms: Some(agent),
                silence_ms: 10_000 - caller - agent,
                longest_silence_ms: longest,
                crosstalk_ms: 100,
                crosstalk_count: 1,
            },
            timeline: Some(timeline),
        }
    }

    #[test]
    fn a_call_adds_up_its_segments_on_its_timeline() {
        let call = of_call(&[
            (0, segment(3_000, 1_000, 4_000, &[[0, 3_000]])),
            (12_000, segment(1_000, 5_000, 2_500, &[[500, 1_500]])),
        ])
        .expect("figures");
        assert_eq!(call.talk.length_ms, 22_000);
        assert_eq!(
            (call.talk.caller_ms, call.talk.agent_ms),
            (Some(4_000), Some(6_000))
        );
        assert_eq!(call.talk.agent_share(), Some(60));
        assert_eq!(call.talk.longest_silence_ms, 4_000);
        assert_eq!(
            (call.talk.crosstalk_ms, call.talk.crosstalk_count),
            (200, 2)
        );
        let timeline = call.timeline.expect("timeline");
        assert_eq!(timeline["caller"], vec![[0, 3_000], [12_500, 13_500]]);
        assert!(of_call(&[]).is_none());
    }
}
