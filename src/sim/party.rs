//! Simulated parties: what the far end of a channel does, scripted step by step.
//!
//! The built-in dialplan mirrors the one the reference traces were captured with
//! (`caller-sim`: `talk`, `talkhash`, `silent`; `agents`: `2XX`, `busy`, `noanswer`); tests add
//! their own scripts by name (`Sim::define_party`).

use std::collections::VecDeque;

use crate::audio::synth::{sound_length, sound_sample, Voice};
use crate::audio::{FRAME_SAMPLES, SAMPLE_RATE};

/// One thing a party does.
#[derive(Debug, Clone, PartialEq)]
pub enum Step {
    /// Let it ring this many seconds before the next step (for a dialled party).
    Ring(f64),
    /// Pick up.
    Answer,
    /// Answer busy: the dial fails with `BUSY`.
    Busy,
    /// Speak for this many seconds (generated speech).
    Talk(f64),
    /// Play a prompt as this party's voice (`demo-congrats`, `tt-monkeys`, ...).
    Say(String),
    /// Speak these 8 kHz samples (recorded speech a test gives, so a transcript can be checked).
    Speak(std::sync::Arc<[i16]>),
    /// Stay on the line sending no audio at all, like Asterisk's `Wait()`.
    Wait(f64),
    /// Press a DTMF digit.
    Dtmf(char),
    /// Hang up.
    Hangup,
}

/// A party's whole behaviour and its voice.
#[derive(Debug, Clone, PartialEq)]
pub struct Script {
    pub steps: Vec<Step>,
    pub voice: Voice,
}

impl Script {
    pub fn new(voice_name: &str, steps: Vec<Step>) -> Script {
        Script {
            steps,
            voice: Voice::from_name(voice_name),
        }
    }
}

/// The caller-side scripts of the reference `caller-sim` context.
pub fn caller_sim_script(extension: &str) -> Option<Script> {
    let steps = match extension {
        "talk" => vec![
            Step::Answer,
            Step::Say("demo-congrats".into()),
            Step::Wait(2.0),
            Step::Hangup,
        ],
        "talkhash" => vec![
            Step::Answer,
            Step::Say("demo-congrats".into()),
            Step::Dtmf('#'),
            Step::Wait(5.0),
            Step::Hangup,
        ],
        "silent" => vec![Step::Answer, Step::Wait(30.0), Step::Hangup],
        // After a voicemail greeting and its beep (`vm-intro`, 5.65 s), says a real sentence
        // (assets/speech/caller.wav), then # (the message's end): a message a transcript can be
        // checked against.
        "speakhash" => vec![
            Step::Answer,
            Step::Wait(8.5),
            Step::Speak(spoken_sentence()),
            Step::Wait(1.0),
            Step::Dtmf('#'),
            Step::Wait(5.0),
            Step::Hangup,
        ],
        // Answers a consent question with 1 after 2 s, then talks.
        "talkconsent" => vec![
            Step::Answer,
            Step::Wait(2.0),
            Step::Dtmf('1'),
            Step::Say("demo-congrats".into()),
            Step::Hangup,
        ],
        // Presses *1 after 3 s and *2 3 s later, then talks (the dtmf_in_bridge capture).
        "talkdtmf" => vec![
            Step::Answer,
            Step::Wait(3.0),
            Step::Dtmf('*'),
            Step::Dtmf('1'),
            Step::Wait(3.0),
            Step::Dtmf('*'),
            Step::Dtmf('2'),
            Step::Say("demo-congrats".into()),
            Step::Hangup,
        ],
        _ => return None,
    };
    Some(Script::new(extension, steps))
}

/// The sentence of `assets/speech/caller.wav` ("The delivery was late and the box was damaged.
/// I would like a refund please."), as 8 kHz samples, read once.
fn spoken_sentence() -> std::sync::Arc<[i16]> {
    static SENTENCE: std::sync::OnceLock<std::sync::Arc<[i16]>> = std::sync::OnceLock::new();
    SENTENCE
        .get_or_init(|| {
            let wav = include_bytes!("../../assets/speech/caller.wav");
            hound::WavReader::new(std::io::Cursor::new(&wav[..]))
                .map(|reader| {
                    reader
                        .into_samples::<i16>()
                        .filter_map(Result::ok)
                        .collect()
                })
                .unwrap_or_default()
        })
        .clone()
}

/// The reference `agents` context: `2XX` answer and play `tt-monkeys`, `busy`, `noanswer`.
pub fn agent_script(extension: &str) -> Option<Script> {
    let steps = match extension {
        "busy" => vec![Step::Busy],
        "noanswer" => vec![Step::Ring(3600.0)],
        e if e.len() == 3 && e.starts_with('2') && e.chars().all(|c| c.is_ascii_digit()) => {
            vec![Step::Answer, Step::Say("tt-monkeys".into()), Step::Hangup]
        }
        _ => return None,
    };
    Some(Script::new(extension, steps))
}

/// What a running script asks the world to do this frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PartyAction {
    Answer,
    Busy,
    Dtmf(char),
    Hangup,
}

/// A script being executed, frame by frame.
#[derive(Debug)]
pub struct PartyRun {
    steps: VecDeque<Step>,
    voice: Voice,
    /// Samples already spent in the front step.
    into_step: u64,
    /// Running sample count of this party's speech, so the voice does not restart per step.
    spoken: u64,
}

impl PartyRun {
    pub fn new(script: &Script) -> PartyRun {
        PartyRun {
            steps: script.steps.iter().cloned().collect(),
            voice: script.voice,
            into_step: 0,
            spoken: 0,
        }
    }

    /// Advances one 20 ms frame: the audio this party sends (None: no frame at all) and the
    /// instant actions it took. Ringing parties only act once answered by their own script.
    pub fn frame(&mut self, actions: &mut Vec<PartyAction>) -> Option<Vec<i16>> {
        loop {
            let step = self.steps.front().cloned()?;
            let length = match &step {
                Step::Answer => {
                    actions.push(PartyAction::Answer);
                    self.next();
                    continue;
                }
                Step::Busy => {
                    actions.push(PartyAction::Busy);
                    self.next();
                    continue;
                }
                Step::Dtmf(d) => {
                    actions.push(PartyAction::Dtmf(*d));
                    self.next();
                    continue;
                }
                Step::Hangup => {
                    actions.push(PartyAction::Hangup);
                    self.steps.clear();
                    return None;
                }
                Step::Ring(s) | Step::Talk(s) | Step::Wait(s) => seconds(*s),
                Step::Say(name) => sound_length(name).unwrap_or(0),
                Step::Speak(samples) => samples.len() as u64,
            };
            if self.into_step >= length {
                self.next();
                continue;
            }
            let start = self.into_step;
            self.into_step += FRAME_SAMPLES as u64;
            return match &step {
                Step::Talk(_) => {
                    let mut out = vec![0i16; FRAME_SAMPLES];
                    self.voice.fill(self.spoken, &mut out);
                    self.spoken += FRAME_SAMPLES as u64;
                    Some(out)
                }
                Step::Say(name) => Some(
                    (0..FRAME_SAMPLES as u64)
                        .map(|i| {
                            let n = start + i;
                            if n < length {
                                sound_sample(name, n)
                            } else {
                                0
                            }
                        })
                        .collect(),
                ),
                Step::Speak(samples) => Some(
                    (0..FRAME_SAMPLES as u64)
                        .map(|i| {
                            usize::try_from(start + i)
                                .ok()
                                .and_then(|n| samples.get(n).copied())
                                .unwrap_or(0)
                        })
                        .collect(),
                ),
                _ => None,
            };
        }
    }

    /// Takes the instant steps at the front (answer, busy, DTMF, hangup) without spending time:
    /// a party that answers at once does so within the request that dialled it.
    pub fn take_instant(&mut self, actions: &mut Vec<PartyAction>) {
        while let Some(step) = self.steps.front() {
            let action = match step {
                Step::Answer => PartyAction::Answer,
                Step::Busy => PartyAction::Busy,
                Step::Dtmf(d) => PartyAction::Dtmf(*d),
                Step::Hangup => {
                    actions.push(PartyAction::Hangup);
                    self.steps.clear();
                    return;
                }
                _ => return,
            };
            actions.push(action);
            self.next();
        }
    }

    pub fn is_finished(&self) -> bool {
        self.steps.is_empty()
    }

    fn next(&mut self) {
        self.steps.pop_front();
        self.into_step = 0;
    }
}

fn seconds(s: f64) -> u64 {
    (s.max(0.0) * f64::from(SAMPLE_RATE)) as u64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn talk_then_hangup_produces_frames_then_action() {
        let script = Script::new("x", vec![Step::Answer, Step::Talk(0.04), Step::Hangup]);
        let mut run = PartyRun::new(&script);
        let mut actions = Vec::new();
        assert!(run.frame(&mut actions).is_some());
        assert_eq!(actions, vec![PartyAction::Answer]);
        assert!(run.frame(&mut actions).is_some());
        assert!(run.frame(&mut actions).is_none());
        assert_eq!(actions, vec![PartyAction::Answer, PartyAction::Hangup]);
        assert!(run.is_finished());
    }

    #[test]
    fn wait_sends_no_audio() {
        let script = Script::new("x", vec![Step::Wait(0.1)]);
        let mut run = PartyRun::new(&script);
        let mut actions = Vec::new();
        for _ in 0..5 {
            assert!(run.frame(&mut actions).is_none());
        }
        assert!(!run.is_finished() || actions.is_empty());
    }

    #[test]
    fn builtin_dialplan_matches_reference() {
        assert!(caller_sim_script("talk").is_some());
        assert!(agent_script("201").is_some());
        assert_eq!(
            agent_script("busy").map(|s| s.steps),
            Some(vec![Step::Busy])
        );
        assert!(agent_script("999").is_none());
        // The spoken sentence is the asset's 5 s of 8 kHz speech.
        assert_eq!(spoken_sentence().len(), 40_520);
    }
}
