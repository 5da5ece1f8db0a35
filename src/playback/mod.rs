//! Playback: what a reviewer hears. A stored recording streamed as WAV whatever its encoding or
//! where it is kept (the recordings folder, the archive's bucket, sealed or not), a call's
//! recordings assembled into one, and the renderings (Opus, MP3, waveforms) cached on disk.

pub mod assemble;
pub mod call_audio;
pub mod renderings;
pub mod serve;
