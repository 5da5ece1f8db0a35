//! Who talked when: a voice-activity pass over each party's audio in 20 ms frames, and the
//! talk-time figures of a call drawn from it (talk per party, silences, cross-talk).
//!
//! A frame is speech when its mean absolute amplitude passes [`TALK_THRESHOLD`] (Asterisk's
//! own silence detector's level); a speech frame keeps the 300 ms after it as speech too, so the
//! short gaps between words do not count as silence.

use super::synth::TALK_THRESHOLD;

/// Frame length.
pub const FRAME_MS: u64 = 20;
/// Speech frames bridge gaps this long.
const HANGOVER_FRAMES: usize = 15;

/// The speech frames of one voice, built from its samples in any chunks.
#[derive(Debug, Clone, Default)]
pub struct Activity {
    frame_len: usize,
    pending: Vec<i16>,
    raw: Vec<bool>,
}

impl Activity {
    pub fn new(sample_rate: u32) -> Activity {
        Activity {
            frame_len: (sample_rate as usize * FRAME_MS as usize / 1000).max(1),
            pending: Vec::new(),
            raw: Vec::new(),
        }
    }

    pub fn push(&mut self, samples: &[i16]) {
        self.pending.extend_from_slice(samples);
        let whole = self.pending.len() / self.frame_len * self.frame_len;
        for frame in self.pending[..whole].chunks_exact(self.frame_len) {
            self.raw.push(loud(frame));
        }
        self.pending.drain(..whole);
    }

    /// The speech frames, with the hangover applied.
    pub fn frames(mut self) -> Vec<bool> {
        if !self.pending.is_empty() {
            let rest = std::mem::take(&mut self.pending);
            self.raw.push(loud(&rest));
        }
        let mut out = vec![false; self.raw.len()];
        let mut hold = 0usize;
        for (i, speech) in self.raw.iter().enumerate() {
            if *speech {
                hold = HANGOVER_FRAMES + 1;
            }
            if hold > 0 {
                out[i] = true;
                hold -= 1;
            }
        }
        out
    }
}

fn loud(frame: &[i16]) -> bool {
    let sum: i64 = frame.iter().map(|s| i64::from(s.unsigned_abs())).sum();
    sum / (frame.len().max(1) as i64) >= i64::from(TALK_THRESHOLD)
}

/// The talk-time figures of a recording: per party when each has its own audio, else speech
/// against silence.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct TalkTime {
    /// Milliseconds of audio looked at.
    pub length_ms: u64,
    /// Speech of anyone (the mono recording's, or either party's).
    pub speech_ms: u64,
    /// Each party's, when they were recorded apart.
    pub caller_ms: Option<u64>,
    pub agent_ms: Option<u64>,
    /// Nobody talking: in all, and the longest stretch.
    pub silence_ms: u64,
    pub longest_silence_ms: u64,
    /// Both parties at once, in all and how many times it began.
    pub crosstalk_ms: u64,
    pub crosstalk_count: u64,
}

impl TalkTime {
    /// The agent's share of the talking, in percent (None without the parties apart).
    pub fn agent_share(&self) -> Option<u8> {
        let (caller, agent) = (self.caller_ms?, self.agent_ms?);
        let total = caller + agent;
        (total > 0).then(|| ((agent * 100 + total / 2) / total) as u8)
    }
}

/// Who talked when: each voice's talk spans (`[start_ms, end_ms]`), named `caller` and `agent`
/// when the parties were recorded apart, else `speech`.
pub type Timeline = std::collections::BTreeMap<String, Vec<[u64; 2]>>;

/// Spans kept a voice at most: a bar of a few hundred pixels shows no more.
pub const MAX_SPANS: usize = 2_000;

/// The talk spans of one voice's frames, in milliseconds; past [`MAX_SPANS`], the nearest spans
/// are merged (the bar stays true at a glance, the figures are drawn from the frames).
pub fn spans(frames: &[bool]) -> Vec<[u64; 2]> {
    let mut out: Vec<[u64; 2]> = Vec::new();
    let mut open: Option<usize> = None;
    for (i, speech) in frames.iter().chain(std::iter::once(&false)).enumerate() {
        match (open, *speech) {
            (None, true) => open = Some(i),
            (Some(from), false) => {
                out.push([from as u64 * FRAME_MS, i as u64 * FRAME_MS]);
                open = None;
            }
            _ => {}
        }
    }
    if out.len() <= MAX_SPANS {
        return out;
    }
    // Merge across every gap no longer than the one that leaves at most MAX_SPANS (ties may
    // merge a few more).
    let mut gaps: Vec<u64> = out.windows(2).map(|w| w[1][0] - w[0][1]).collect();
    gaps.sort_unstable();
    let widest_merged = gaps[out.len() - MAX_SPANS - 1];
    let mut merged: Vec<[u64; 2]> = Vec::with_capacity(MAX_SPANS);
    for span in out {
        match merged.last_mut() {
            Some(last) if span[0] - last[1] <= widest_merged => last[1] = span[1],
            _ => merged.push(span),
        }
    }
    merged
}

/// The timeline of one voice's frames (`caller` alone: a mono recording) or two.
pub fn timeline(caller: &[bool], agent: Option<&[bool]>) -> Timeline {
    let mut t = Timeline::new();
    match agent {
        Some(agent) => {
            t.insert("caller".into(), spans(caller));
            t.insert("agent".into(), spans(agent));
        }
        None => {
            t.insert("speech".into(), spans(caller));
        }
    }
    t
}

/// The figures from one voice's frames (`caller` alone: a mono recording) or two.
pub fn talk_time(caller: &[bool], agent: Option<&[bool]>) -> TalkTime {
    let frames = agent.map_or(caller.len(), |a| caller.len().max(a.len()));
    let at = |voice: &[bool], i: usize| voice.get(i).copied().unwrap_or(false);
    let mut t = TalkTime {
        length_ms: frames as u64 * FRAME_MS,
        ..TalkTime::default()
    };
    let (mut caller_frames, mut agent_frames) = (0u64, 0u64);
    let (mut silent_run, mut both_before) = (0u64, false);
    for i in 0..frames {
        let c = at(caller, i);
        let a = agent.is_some_and(|voice| at(voice, i));
        caller_frames += u64::from(c);
        agent_frames += u64::from(a);
        if c || a {
            t.speech_ms += FRAME_MS;
            silent_run = 0;
        } else {
            t.silence_ms += FRAME_MS;
            silent_run += FRAME_MS;
            t.longest_silence_ms = t.longest_silence_ms.max(silent_run);
        }
        let both = c && a;
        if both {
            t.crosstalk_ms += FRAME_MS;
            if !both_before {
                t.crosstalk_count += 1;
            }
        }
        both_before = both;
    }
    if agent.is_some() {
        t.caller_ms = Some(caller_frames * FRAME_MS);
        t.agent_ms = Some(agent_frames * FRAME_MS);
    }
    t
}

#[cfg(test)]
mod tests {
    use super::*;

    fn voice(spans: &[(usize, usize)], frames: usize) -> Vec<bool> {
        (0..frames)
            .map(|i| spans.iter().any(|(from, to)| (*from..*to).contains(&i)))
            .collect()
    }

    #[test]
    fn parties_silences_and_crosstalk() {
        // 10 s: the caller talks 0-3 s, the agent 2.5-5 s (0.5 s at once), then 5 s of silence.
        let caller = voice(&[(0, 150)], 500);
        let agent = voice(&[(125, 250)], 500);
        let t = talk_time(&caller, Some(&agent));
        assert_eq!(t.length_ms, 10_000);
        assert_eq!((t.caller_ms, t.agent_ms), (Some(3_000), Some(2_500)));
        assert_eq!(t.speech_ms, 5_000);
        assert_eq!((t.silence_ms, t.longest_silence_ms), (5_000, 5_000));
        assert_eq!((t.crosstalk_ms, t.crosstalk_count), (500, 1));
        assert_eq!(t.agent_share(), Some(45));
        let mono = talk_time(&caller, None);
        assert_eq!(
            (mono.speech_ms, mono.caller_ms, mono.agent_share()),
            (3_000, None, None)
        );
    }

    #[test]
    fn timelines_hold_each_voice_s_spans() {
        let caller = voice(&[(0, 150), (300, 310)], 500);
        let agent = voice(&[(125, 250)], 500);
        let t = timeline(&caller, Some(&agent));
        assert_eq!(t["caller"], vec![[0, 3_000], [6_000, 6_200]]);
        assert_eq!(t["agent"], vec![[2_500, 5_000]]);
        assert!(!t.contains_key("speech"));
        let mono = timeline(&voice(&[(490, 500)], 500), None);
        assert_eq!(mono["speech"], vec![[9_800, 10_000]]);
        // Too many spans: the nearest merge, the first start and last end stay.
        // 2,500 spans 60 ms apart, then 1,667 spans 100 ms apart: the close ones merge.
        let many: Vec<bool> = (0..20_000)
            .map(|i| if i < 10_000 { i % 4 == 0 } else { i % 6 == 0 })
            .collect();
        let merged = spans(&many);
        assert_eq!(merged.len(), 1 + 1_667);
        assert_eq!(merged[0], [0, 9_997 * FRAME_MS]);
        assert_eq!(merged[merged.len() - 1][1], 19_999 * FRAME_MS);
    }

    #[test]
    fn gaps_between_words_are_not_silence() {
        // A syllable every 200 ms (40 ms loud): speech throughout, then silence after 300 ms.
        let mut samples = Vec::new();
        for _ in 0..10 {
            samples.extend(std::iter::repeat_n(3000i16, 320));
            samples.extend(std::iter::repeat_n(0i16, 1280));
        }
        samples.extend(std::iter::repeat_n(0i16, 8000));
        let mut activity = Activity::new(8000);
        for chunk in samples.chunks(777) {
            activity.push(chunk);
        }
        let frames = activity.frames();
        assert_eq!(frames.len(), 150);
        let speech = frames.iter().filter(|f| **f).count();
        // Speech from the first syllable until 300 ms past the last one's loud frames (frames 90
        // and 91): frames 0 to 106.
        assert_eq!(speech, 107, "{frames:?}");
        assert!(frames[..107].iter().all(|f| *f));
        assert!(!frames[149]);
    }
}
