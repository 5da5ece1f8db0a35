//! Ogg Opus (RFC 7845) from narrowband or wideband mono PCM, for playback at a fraction of the
//! WAV size. libopus does the encoding (through `audiopus`); the Ogg pages are written here:
//! an `OpusHead` page, an `OpusTags` page, then audio pages whose granule positions count
//! 48 kHz samples including the pre-skip, the last one trimmed to the real end of the audio.

use audiopus::coder::Encoder;
use audiopus::{Application, Channels, SampleRate};

#[derive(Debug, thiserror::Error)]
pub enum OpusError {
    #[error("Opus cannot encode {0} Hz audio here (8000 or 16000 only)")]
    Rate(u32),
    #[error("libopus: {0}")]
    Codec(#[from] audiopus::Error),
}

/// Ogg's CRC-32: polynomial 0x04C11DB7, not reflected, initial value 0.
fn ogg_crc(bytes: &[u8]) -> u32 {
    static TABLE: std::sync::LazyLock<[u32; 256]> = std::sync::LazyLock::new(|| {
        std::array::from_fn(|i| {
            let mut r = (i as u32) << 24;
            for _ in 0..8 {
                r = if r & 0x8000_0000 != 0 {
                    (r << 1) ^ 0x04C1_1DB7
                } else {
                    r << 1
                };
            }
            r
        })
    });
    bytes.iter().fold(0u32, |crc, b| {
        (crc << 8) ^ TABLE[((crc >> 24) as u8 ^ b) as usize]
    })
}

struct OggWriter {
    out: Vec<u8>,
    serial: u32,
    sequence: u32,
}

impl OggWriter {
    /// Writes one page holding whole `packets`.
    fn page(&mut self, flags: u8, granule: u64, packets: &[&[u8]]) {
        let mut lacing = Vec::new();
        for p in packets {
            lacing.extend(std::iter::repeat_n(255u8, p.len() / 255));
            lacing.push((p.len() % 255) as u8);
        }
        let start = self.out.len();
        self.out.extend_from_slice(b"OggS");
        self.out.push(0); // version
        self.out.push(flags);
        self.out.extend_from_slice(&granule.to_le_bytes());
        self.out.extend_from_slice(&self.serial.to_le_bytes());
        self.out.extend_from_slice(&self.sequence.to_le_bytes());
        self.out.extend_from_slice(&[0, 0, 0, 0]); // CRC, filled below
        self.out.push(lacing.len() as u8);
        self.out.extend_from_slice(&lacing);
        for p in packets {
            self.out.extend_from_slice(p);
        }
        let crc = ogg_crc(&self.out[start..]);
        self.out[start + 22..start + 26].copy_from_slice(&crc.to_le_bytes());
        self.sequence += 1;
    }
}

/// Encodes `samples` (mono, `sample_rate` 8000 or 16000) as an Ogg Opus file.
pub fn encode_ogg_opus(samples: &[i16], sample_rate: u32) -> Result<Vec<u8>, OpusError> {
    let mut encoder = OggOpusEncoder::new(sample_rate, samples.len() as u64)?;
    encoder.push(samples)?;
    encoder.finish()
}

/// An Ogg Opus file made from audio handed over a piece at a time: a long recording is
/// never decoded whole into memory, only the encoded file is kept.
pub struct OggOpusEncoder {
    encoder: Encoder,
    writer: OggWriter,
    to_48k: u64,
    pre_skip: u64,
    /// Samples a frame (20 ms).
    frame: usize,
    /// Samples the whole file holds (the last page's granule is trimmed to it).
    total: u64,
    /// Frames encoded so far.
    encoded: u64,
    /// Samples waiting for a whole frame.
    input: Vec<i16>,
    pending: Vec<Vec<u8>>,
}

impl OggOpusEncoder {
    /// Writes the two header pages of a file of `total` samples at `sample_rate`.
    pub fn new(sample_rate: u32, total: u64) -> Result<OggOpusEncoder, OpusError> {
        let rate = match sample_rate {
            8000 => SampleRate::Hz8000,
            16000 => SampleRate::Hz16000,
            other => return Err(OpusError::Rate(other)),
        };
        let encoder = Encoder::new(rate, Channels::Mono, Application::Voip)?;
        let to_48k = 48_000 / u64::from(sample_rate);
        let pre_skip = u64::from(encoder.lookahead()?) * to_48k;
        let frame = (sample_rate / 50) as usize; // 20 ms
        let mut writer = OggWriter {
            out: Vec::new(),
            serial: fastrand::u32(..),
            sequence: 0,
        };
        let mut head = Vec::with_capacity(19);
        head.extend_from_slice(b"OpusHead");
        head.push(1); // version
        head.push(1); // channels
        head.extend_from_slice(&(pre_skip as u16).to_le_bytes());
        head.extend_from_slice(&sample_rate.to_le_bytes());
        head.extend_from_slice(&0i16.to_le_bytes()); // output gain
        head.push(0); // channel mapping family
        writer.page(0x02, 0, &[&head]);
        let vendor = concat!("ari-recorder ", env!("CARGO_PKG_VERSION"));
        let mut tags = Vec::new();
        tags.extend_from_slice(b"OpusTags");
        tags.extend_from_slice(&(vendor.len() as u32).to_le_bytes());
        tags.extend_from_slice(vendor.as_bytes());
        tags.extend_from_slice(&0u32.to_le_bytes()); // no user comments
        writer.page(0, 0, &[&tags]);
        Ok(OggOpusEncoder {
            encoder,
            writer,
            to_48k,
            pre_skip,
            frame,
            total,
            encoded: 0,
            input: Vec::with_capacity(frame),
            pending: Vec::new(),
        })
    }

    /// The frames to encode in all: the last is padded, and a silent file still has one.
    fn frames(&self) -> u64 {
        self.total.div_ceil(self.frame as u64).max(1)
    }

    /// Encodes the next `samples` of the file.
    pub fn push(&mut self, mut samples: &[i16]) -> Result<(), OpusError> {
        while !samples.is_empty() {
            let take = (self.frame - self.input.len()).min(samples.len());
            self.input.extend_from_slice(&samples[..take]);
            samples = &samples[take..];
            if self.input.len() == self.frame && self.encoded + 1 < self.frames() {
                self.encode_frame()?;
            }
        }
        Ok(())
    }

    fn encode_frame(&mut self) -> Result<(), OpusError> {
        let mut buffer = [0u8; 4000];
        // The last frame is padded; the granule trims it.
        self.input.resize(self.frame, 0);
        let n = self.encoder.encode(&self.input, &mut buffer)?;
        self.input.clear();
        self.pending.push(buffer[..n].to_vec());
        self.encoded += 1;
        let last = self.encoded == self.frames();
        // About one second of audio a page, well under the 255-segment limit.
        if self.pending.len() == 50 || last {
            let granule = if last {
                self.pre_skip + self.total * self.to_48k
            } else {
                self.pre_skip + self.encoded * self.frame as u64 * self.to_48k
            };
            let refs: Vec<&[u8]> = self.pending.iter().map(Vec::as_slice).collect();
            self.writer
                .page(if last { 0x04 } else { 0 }, granule, &refs);
            self.pending.clear();
        }
        Ok(())
    }

    /// Encodes what is left (the last, padded frame) and returns the file.
    pub fn finish(mut self) -> Result<Vec<u8>, OpusError> {
        while self.encoded < self.frames() {
            self.encode_frame()?;
        }
        Ok(self.writer.out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audio::synth::Voice;

    /// CRC computed bit by bit, independent of the table above.
    fn crc_bitwise(bytes: &[u8]) -> u32 {
        let mut crc = 0u32;
        for b in bytes {
            crc ^= u32::from(*b) << 24;
            for _ in 0..8 {
                crc = if crc & 0x8000_0000 != 0 {
                    (crc << 1) ^ 0x04C1_1DB7
                } else {
                    crc << 1
                };
            }
        }
        crc
    }

    struct Page {
        flags: u8,
        granule: u64,
        sequence: u32,
        packets: Vec<Vec<u8>>,
    }

    fn pages(mut data: &[u8]) -> Vec<Page> {
        let mut out = Vec::new();
        while !data.is_empty() {
            assert_eq!(&data[0..4], b"OggS");
            let segments = data[26] as usize;
            let lacing = &data[27..27 + segments];
            let body_len: usize = lacing.iter().map(|l| *l as usize).sum();
            let total = 27 + segments + body_len;
            let mut page = data[..total].to_vec();
            let stored = u32::from_le_bytes([page[22], page[23], page[24], page[25]]);
            page[22..26].fill(0);
            assert_eq!(stored, crc_bitwise(&page), "page CRC");
            let mut packets = Vec::new();
            let mut current = Vec::new();
            let mut at = 27 + segments;
            for l in lacing {
                current.extend_from_slice(&data[at..at + *l as usize]);
                at += *l as usize;
                if *l < 255 {
                    packets.push(std::mem::take(&mut current));
                }
            }
            out.push(Page {
                flags: data[5],
                granule: u64::from_le_bytes(data[6..14].try_into().expect("8 bytes")),
                sequence: u32::from_le_bytes(data[18..22].try_into().expect("4 bytes")),
                packets,
            });
            data = &data[total..];
        }
        out
    }

    #[test]
    fn ogg_opus_follows_rfc_7845_and_decodes() {
        let mut samples = vec![0i16; 8000 * 3 + 100];
        Voice::from_name("test").fill(0, &mut samples);
        let file = encode_ogg_opus(&samples, 8000).expect("encodes");
        let pages = pages(&file);
        assert!(pages.len() >= 5);
        let head = &pages[0].packets[0];
        assert_eq!(&head[0..8], b"OpusHead");
        assert_eq!((head[8], head[9]), (1, 1));
        let pre_skip = u64::from(u16::from_le_bytes([head[10], head[11]]));
        assert_eq!(
            u32::from_le_bytes([head[12], head[13], head[14], head[15]]),
            8000
        );
        assert_eq!(pages[0].flags, 0x02, "beginning of stream");
        assert_eq!(&pages[1].packets[0][0..8], b"OpusTags");
        for (i, p) in pages.iter().enumerate() {
            assert_eq!(p.sequence as usize, i);
        }
        let last = pages.last().expect("pages");
        assert_eq!(last.flags, 0x04, "end of stream");
        assert_eq!(
            last.granule,
            pre_skip + samples.len() as u64 * 6,
            "end trimmed to the real length"
        );
        let granules: Vec<u64> = pages[2..].iter().map(|p| p.granule).collect();
        assert!(granules.windows(2).all(|w| w[0] < w[1]));

        let mut decoder =
            audiopus::coder::Decoder::new(SampleRate::Hz8000, Channels::Mono).expect("decoder");
        let mut decoded = 0usize;
        let mut loud = false;
        let mut pcm = [0i16; 960];
        for page in &pages[2..] {
            for packet in &page.packets {
                let packet = audiopus::packet::Packet::try_from(packet.as_slice()).expect("packet");
                let out = audiopus::MutSignals::try_from(&mut pcm[..]).expect("signals");
                let n = decoder.decode(Some(packet), out, false).expect("decodes");
                loud |= pcm[..n].iter().any(|s| s.unsigned_abs() > 1000);
                decoded += n;
            }
        }
        assert_eq!(decoded, samples.len().div_ceil(160) * 160);
        assert!(loud, "the voice survives the round trip");
    }

    #[test]
    fn audio_handed_over_in_pieces_makes_the_same_pages() {
        // Second probe, finding 8: the encoders take the audio a chunk at a time.
        let samples: Vec<i16> = (0..8000 * 3 + 77)
            .map(|i| ((i * 37) % 2000) as i16)
            .collect();
        let whole = encode_ogg_opus(&samples, 8000).expect("whole");
        let mut pieces = OggOpusEncoder::new(8000, samples.len() as u64).expect("encoder");
        for chunk in samples.chunks(1000) {
            pieces.push(chunk).expect("push");
        }
        let pieces = pieces.finish().expect("finish");
        let (a, b) = (pages(&whole), pages(&pieces));
        assert_eq!(a.len(), b.len());
        for (x, y) in a.iter().zip(&b) {
            assert_eq!(x.granule, y.granule);
            assert_eq!(x.packets, y.packets);
        }
    }

    #[test]
    fn unsupported_rates_are_refused() {
        assert!(matches!(
            encode_ogg_opus(&[0; 100], 44_100),
            Err(OpusError::Rate(44_100))
        ));
    }
}
