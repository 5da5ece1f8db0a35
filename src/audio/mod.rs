//! Audio: G.711 mu-law, the WAV layout Asterisk writes, and generated sounds.

pub mod g711;
pub mod opus;
pub mod renderings;
pub mod serve;
pub mod synth;
pub mod wav;

/// Asterisk's narrowband rate, used by every format this project writes.
pub const SAMPLE_RATE: u32 = 8000;
/// One 20 ms frame at 8 kHz: the unit Asterisk moves audio in.
pub const FRAME_SAMPLES: usize = 160;
