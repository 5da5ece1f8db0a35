//! MP3 from mono PCM, for players and tools that take nothing else. LAME does the encoding
//! (through `mp3lame-encoder`): constant 32 kbit/s, plenty for 8 kHz speech, about a quarter of
//! the WAV's size.

use mp3lame_encoder::{Bitrate, Builder, FlushNoGap, MonoPcm, Quality};

/// Samples handed to LAME at a time.
const CHUNK: usize = 8192;

#[derive(Debug, thiserror::Error)]
pub enum Mp3Error {
    #[error("LAME: {0}")]
    Lame(String),
}

fn lame(e: impl std::fmt::Display) -> Mp3Error {
    Mp3Error::Lame(e.to_string())
}

/// The whole of `samples` (mono, `sample_rate` Hz) as an MP3 stream.
pub fn encode_mp3(samples: &[i16], sample_rate: u32) -> Result<Vec<u8>, Mp3Error> {
    let mut encoder = Mp3Encoder::new(sample_rate, samples.len() as u64)?;
    encoder.push(samples)?;
    encoder.finish()
}

/// An MP3 stream made from audio handed over a piece at a time (a long recording is never
/// decoded whole into memory).
pub struct Mp3Encoder {
    encoder: mp3lame_encoder::Encoder,
    out: Vec<u8>,
}

impl Mp3Encoder {
    /// An encoder for mono audio at `sample_rate`; `expected` samples size the output buffer.
    pub fn new(sample_rate: u32, expected: u64) -> Result<Mp3Encoder, Mp3Error> {
        let encoder = Builder::new()
            .ok_or_else(|| Mp3Error::Lame("cannot allocate an encoder".into()))?
            .with_num_channels(1)
            .map_err(lame)?
            .with_sample_rate(sample_rate)
            .map_err(lame)?
            .with_brate(Bitrate::Kbps32)
            .map_err(lame)?
            .with_quality(Quality::Good)
            .map_err(lame)?
            .build()
            .map_err(lame)?;
        let expected = usize::try_from(expected).unwrap_or(0);
        Ok(Mp3Encoder {
            encoder,
            out: Vec::with_capacity(expected / 3 + 8192),
        })
    }

    /// Encodes the next `samples`.
    pub fn push(&mut self, samples: &[i16]) -> Result<(), Mp3Error> {
        for chunk in samples.chunks(CHUNK) {
            self.out
                .reserve(mp3lame_encoder::max_required_buffer_size(chunk.len()));
            self.encoder
                .encode_to_vec(MonoPcm(chunk), &mut self.out)
                .map_err(lame)?;
        }
        Ok(())
    }

    /// Flushes LAME and returns the stream.
    pub fn finish(mut self) -> Result<Vec<u8>, Mp3Error> {
        self.out.reserve(7200);
        self.encoder
            .flush_to_vec::<FlushNoGap>(&mut self.out)
            .map_err(lame)?;
        Ok(self.out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// MPEG audio frames from the start of `bytes`: how many, and the samples they hold.
    pub fn frames(bytes: &[u8]) -> (usize, u64) {
        let (mut at, mut count, mut samples) = (0usize, 0usize, 0u64);
        while at + 4 <= bytes.len() {
            let h = &bytes[at..at + 4];
            if h[0] != 0xFF || h[1] & 0xE0 != 0xE0 {
                break;
            }
            let version = (h[1] >> 3) & 3; // 0: MPEG 2.5, 2: MPEG 2, 3: MPEG 1
            let bitrate_index = usize::from(h[2] >> 4);
            let rate_index = usize::from((h[2] >> 2) & 3);
            let padding = usize::from((h[2] >> 1) & 1);
            let (bitrates, rates, per_frame): (&[u32], [u32; 3], u64) = match version {
                3 => (
                    &[
                        0, 32, 40, 48, 56, 64, 80, 96, 112, 128, 160, 192, 224, 256, 320,
                    ],
                    [44_100, 48_000, 32_000],
                    1152,
                ),
                2 => (
                    &[0, 8, 16, 24, 32, 40, 48, 56, 64, 80, 96, 112, 128, 144, 160],
                    [22_050, 24_000, 16_000],
                    576,
                ),
                _ => (
                    &[0, 8, 16, 24, 32, 40, 48, 56, 64, 80, 96, 112, 128, 144, 160],
                    [11_025, 12_000, 8_000],
                    576,
                ),
            };
            let bitrate = bitrates[bitrate_index] * 1000;
            let rate = rates[rate_index];
            let length = (per_frame as u32 / 8 * bitrate / rate) as usize + padding;
            if length == 0 {
                break;
            }
            at += length;
            count += 1;
            samples += per_frame;
        }
        (count, samples)
    }

    #[test]
    fn speech_at_8_khz_becomes_mpeg_frames_of_the_same_length() {
        // Ten seconds of a wandering tone.
        let samples: Vec<i16> = (0..80_000)
            .map(|n| ((n as f64 * 0.07).sin() * 8000.0) as i16)
            .collect();
        let mp3 = encode_mp3(&samples, 8000).expect("encode");
        let (count, decoded) = frames(&mp3);
        assert!(count > 100, "{count} frames");
        // LAME adds its encoder delay and pads the last frame: within a few frames of 10 s.
        assert!(
            (decoded as i64 - 80_000).abs() <= 576 * 4,
            "{decoded} samples in MPEG frames"
        );
        // 32 kbit/s: about 40 KB for 10 s.
        assert!(
            (35_000..=45_000).contains(&mp3.len()),
            "{} bytes",
            mp3.len()
        );
    }
}
