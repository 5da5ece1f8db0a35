//! Audio formats: G.711 mu-law and A-law, the WAV layout Asterisk writes, Opus and MP3
//! encoding, generated sounds, and who talked when (`activity`). It knows nothing of where audio
//! is stored.

pub mod activity;
pub mod g711;
pub mod mp3;
pub mod opus;
pub mod synth;
pub mod wav;

/// The folder (inside the recordings folder) where each party of a dual-channel recording is
/// recorded on its own, `<name>-caller.wav` and `<name>-agent.wav`. Hidden: the library never
/// lists these files, it serves them through the bridge recording `<name>`.
pub const PARTY_FOLDER: &str = ".channels";

/// Asterisk's narrowband rate, used by every format this project writes.
pub const SAMPLE_RATE: u32 = 8000;
/// One 20 ms frame at 8 kHz: the unit Asterisk moves audio in.
pub const FRAME_SAMPLES: usize = 160;

/// How the bytes of the audio are laid out, for serving and transcoding.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Encoding {
    /// Linear 16-bit little-endian PCM (WAV, `sln`).
    Pcm16,
    /// G.711 mu-law, one byte a sample (`ulaw`).
    Ulaw,
    /// G.711 A-law, one byte a sample (`alaw`).
    Alaw,
}

impl Encoding {
    pub fn bytes_per_sample(self) -> u64 {
        match self {
            Encoding::Pcm16 => 2,
            Encoding::Ulaw | Encoding::Alaw => 1,
        }
    }
}
