//! Generated audio for the simulated Asterisk: speech-like voices, the prompts it can play, the
//! beep and music on hold. Every sample is a pure function of (voice, sample index), so any
//! frame of any sound can be produced on its own and tests can predict the bytes.

use super::SAMPLE_RATE;

/// A simulated talker: syllables of voiced sound with pauses between phrases.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Voice {
    pub seed: u32,
}

fn hash(mut x: u32) -> u32 {
    x ^= x >> 16;
    x = x.wrapping_mul(0x7feb_352d);
    x ^= x >> 15;
    x = x.wrapping_mul(0x846c_a68b);
    x ^= x >> 16;
    x
}

const SYLLABLE: u64 = (SAMPLE_RATE as u64) * 22 / 100; // 220 ms
const PHRASE: u64 = 7; // syllables, then a pause of two syllables

impl Voice {
    pub fn from_name(name: &str) -> Voice {
        let seed = name.bytes().fold(2166136261u32, |h, b| {
            (h ^ u32::from(b)).wrapping_mul(16777619)
        });
        Voice { seed }
    }

    /// The sample at absolute index `n` of this voice's speech.
    pub fn sample(&self, n: u64) -> i16 {
        let syllable = n / SYLLABLE;
        if syllable % (PHRASE + 2) >= PHRASE {
            return 0; // pause between phrases
        }
        let pos = (n % SYLLABLE) as f64 / SYLLABLE as f64;
        let h = hash(self.seed ^ (syllable as u32).wrapping_mul(2654435761));
        let pitch = 110.0 + f64::from(h % 110); // Hz
        let vowel = f64::from((h >> 8) % 5);
        let envelope = (std::f64::consts::PI * pos).sin().powf(0.6);
        let t = n as f64 / f64::from(SAMPLE_RATE);
        let mut v = 0.0;
        for harmonic in 1..=6 {
            let k = f64::from(harmonic);
            // A crude formant: harmonics near 500 Hz * (1 + vowel/4) are louder.
            let f = pitch * k;
            let formant = 500.0 * (1.0 + vowel / 4.0);
            let weight = 1.0 / (1.0 + ((f - formant) / 300.0).powi(2));
            v += weight * (2.0 * std::f64::consts::PI * f * t).sin();
        }
        (v * envelope * 5000.0).clamp(-32000.0, 32000.0) as i16
    }

    pub fn fill(&self, start: u64, out: &mut [i16]) {
        for (i, s) in out.iter_mut().enumerate() {
            *s = self.sample(start + i as u64);
        }
    }
}

/// A prompt the simulated Asterisk can play (`sound:<name>`), with its length in samples.
/// Lengths follow the real Debian prompts seen in the traces.
pub fn sound_length(name: &str) -> Option<u64> {
    let seconds = match name {
        "demo-congrats" => 30.4,
        // The file is 16.18 s; a simulated agent starts it a frame after answering, and the real
        // one hangs up 16.18 s after its answer (app_gone trace), so one frame less here.
        "tt-monkeys" => 16.16,
        "tt-weasels" => 3.0,
        "vm-intro" => 5.65,
        "vm-goodbye" => 1.0,
        "hello-world" => 1.3,
        "beep" => 0.25,
        "pls-hold-while-try" => 2.0,
        "queue-thankyou" => 1.5,
        "queue-youarenext" => 1.6,
        "agent-pass" => 1.2,
        "silence/1" => 1.0,
        _ => return None,
    };
    Some((seconds * f64::from(SAMPLE_RATE)) as u64)
}

/// Sample `n` of prompt `name` (the caller checks `n` is inside its length).
pub fn sound_sample(name: &str, n: u64) -> i16 {
    match name {
        "beep" => tone(1000.0, n, 8000.0),
        "silence/1" => 0,
        _ => Voice::from_name(name).sample(n),
    }
}

/// Music on hold: a slow arpeggio, distinguishable from speech in a waveform.
pub fn music_on_hold(n: u64) -> i16 {
    const NOTES: [f64; 4] = [261.63, 329.63, 392.0, 523.25];
    let note = NOTES[((n / 2000) % 4) as usize];
    tone(note, n, 3000.0).saturating_add(tone(note / 2.0, n, 1500.0))
}

fn tone(freq: f64, n: u64, amplitude: f64) -> i16 {
    let t = n as f64 / f64::from(SAMPLE_RATE);
    (amplitude * (2.0 * std::f64::consts::PI * freq * t).sin()) as i16
}

/// Mean absolute amplitude above which a frame counts as talking, like Asterisk's silence
/// detector threshold on 16-bit audio.
pub const TALK_THRESHOLD: i32 = 256;

pub fn is_silent(frame: &[i16]) -> bool {
    if frame.is_empty() {
        return true;
    }
    let sum: i64 = frame.iter().map(|s| i64::from(s.unsigned_abs())).sum();
    sum / (frame.len() as i64) < i64::from(TALK_THRESHOLD)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn voices_talk_and_pause() {
        let v = Voice::from_name("caller");
        let mut talking = vec![0i16; 160];
        v.fill(SYLLABLE / 2 - 80, &mut talking);
        assert!(!is_silent(&talking));
        let mut pause = vec![0i16; 160];
        v.fill(SYLLABLE * PHRASE + 10, &mut pause);
        assert!(is_silent(&pause));
    }

    #[test]
    fn different_voices_differ() {
        let a: Vec<i16> = (1000..1160)
            .map(|n| Voice::from_name("a").sample(n))
            .collect();
        let b: Vec<i16> = (1000..1160)
            .map(|n| Voice::from_name("b").sample(n))
            .collect();
        assert_ne!(a, b);
    }

    #[test]
    fn known_prompts_have_lengths() {
        assert_eq!(sound_length("vm-intro"), Some(45200));
        assert_eq!(sound_length("no-such-prompt"), None);
    }
}
