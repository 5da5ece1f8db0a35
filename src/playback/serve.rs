//! Every playable recording served as one PCM WAV byte stream, whatever its stored encoding:
//! a 44-byte header with the real sizes (even for an Asterisk file whose header still says 0),
//! then 16-bit samples. mu-law and A-law are transcoded on the fly; any byte range of the
//! stream maps to a range of the source without decoding the rest of the file.

use std::io;

use crate::archive::StoredAudio;
use crate::audio::g711::{decode_alaw, decode_ulaw};
use crate::audio::wav;
use crate::audio::Encoding;

#[derive(Debug, Clone)]
pub struct WavStream {
    /// The stored file: on disk, or in the archive's bucket.
    pub source: StoredAudio,
    pub encoding: Encoding,
    pub sample_rate: u32,
    pub data_offset: u64,
    /// Bytes of audio in the source.
    pub data_len: u64,
}

impl WavStream {
    pub fn samples(&self) -> u64 {
        self.data_len / self.encoding.bytes_per_sample()
    }

    /// Length of the served stream: header plus 16-bit samples.
    pub fn len(&self) -> u64 {
        wav::HEADER_LEN + self.samples() * 2
    }

    pub fn is_empty(&self) -> bool {
        self.samples() == 0
    }

    fn header(&self) -> [u8; 44] {
        let mut h = wav::header(u32::try_from(self.samples() * 2).unwrap_or(u32::MAX));
        h[24..28].copy_from_slice(&self.sample_rate.to_le_bytes());
        h[28..32].copy_from_slice(&(self.sample_rate * 2).to_le_bytes());
        h
    }

    /// Bytes `start..end` (end exclusive, clamped to the stream) of the served WAV.
    pub fn read_range(&self, start: u64, end: u64) -> io::Result<Vec<u8>> {
        let end = end.min(self.len());
        if start >= end {
            return Ok(Vec::new());
        }
        let mut out = Vec::with_capacity((end - start) as usize);
        if start < wav::HEADER_LEN {
            let header = self.header();
            out.extend_from_slice(&header[start as usize..end.min(wav::HEADER_LEN) as usize]);
        }
        let pcm_start = start.max(wav::HEADER_LEN) - wav::HEADER_LEN;
        let pcm_end = end - wav::HEADER_LEN.min(end);
        if pcm_end <= pcm_start {
            return Ok(out);
        }
        let take = (pcm_end - pcm_start) as usize;
        let base = out.len();
        out.resize(base + take, 0);
        let dst = &mut out[base..];
        let table = match self.encoding {
            Encoding::Pcm16 => {
                // Stored as served: read straight into the answer.
                self.source
                    .read_exact_at(self.data_offset + pcm_start, dst)?;
                return Ok(out);
            }
            Encoding::Ulaw => &*ULAW_TABLE,
            Encoding::Alaw => &*ALAW_TABLE,
        };
        // One source byte a sample: decode straight into the answer, half a sample at
        // either end when the range starts or stops inside one.
        let first_sample = pcm_start / 2;
        let last_sample = (pcm_end - 1) / 2;
        let mut source = vec![0u8; (last_sample - first_sample + 1) as usize];
        self.source
            .read_exact_at(self.data_offset + first_sample, &mut source)?;
        let mut codes = source.iter().map(|c| &table[usize::from(*c)]);
        let mut k = 0;
        if pcm_start % 2 == 1 {
            if let Some(pair) = codes.next() {
                dst[0] = pair[1];
            }
            k = 1;
        }
        let pairs = (take - k) / 2;
        for (slot, pair) in dst[k..k + 2 * pairs]
            .chunks_exact_mut(2)
            .zip(codes.by_ref())
        {
            slot.copy_from_slice(pair);
        }
        k += 2 * pairs;
        if k < take {
            if let Some(pair) = codes.next() {
                dst[k] = pair[0];
            }
        }
        Ok(out)
    }

    /// The decoded samples, `CHUNK_SAMPLES` at a time, handed to `each` in order: a long
    /// recording costs a chunk of memory, not the whole file.
    pub fn for_each_chunk<E: From<io::Error>>(
        &self,
        mut each: impl FnMut(&[i16]) -> Result<(), E>,
    ) -> Result<(), E> {
        let total = self.samples();
        let mut chunk = Vec::with_capacity(CHUNK_SAMPLES as usize);
        let mut start = 0u64;
        while start < total {
            let end = (start + CHUNK_SAMPLES).min(total);
            let bytes = self.read_range(wav::HEADER_LEN + start * 2, wav::HEADER_LEN + end * 2)?;
            chunk.clear();
            chunk.extend(
                bytes
                    .chunks_exact(2)
                    .map(|c| i16::from_le_bytes([c[0], c[1]])),
            );
            each(&chunk)?;
            start = end;
        }
        Ok(())
    }

    /// Every decoded sample, in memory (short files only: see `for_each_chunk`).
    pub fn samples_i16(&self) -> io::Result<Vec<i16>> {
        let bytes = self.read_range(wav::HEADER_LEN, self.len())?;
        Ok(bytes
            .chunks_exact(2)
            .map(|c| i16::from_le_bytes([c[0], c[1]]))
            .collect())
    }

    /// Min and max of each of `points` equal slices of the audio (the waveform), read in chunks
    /// of `PEAK_CHUNK_SAMPLES`: an hour-long file costs a chunk of memory, not the whole file.
    pub fn peaks(&self, points: usize) -> io::Result<Vec<[i16; 2]>> {
        let total = self.samples();
        let n = points as u64;
        if points == 0 {
            return Ok(Vec::new());
        }
        if total < n {
            // Fewer samples than slices: the slices overlap; a short file is read whole.
            return Ok(slice_peaks(&self.samples_i16()?, points));
        }
        let mut peaks = Vec::with_capacity(points);
        let (mut low, mut high) = (i16::MAX, i16::MIN);
        let mut slice_end = total / n;
        let mut sample = 0u64;
        let mut chunk_start = 0u64;
        while chunk_start < total {
            let chunk_end = (chunk_start + PEAK_CHUNK_SAMPLES).min(total);
            let bytes = self.read_range(
                wav::HEADER_LEN + chunk_start * 2,
                wav::HEADER_LEN + chunk_end * 2,
            )?;
            for pair in bytes.chunks_exact(2) {
                if sample == slice_end {
                    // total >= points: every slice has at least one sample.
                    peaks.push([low, high]);
                    (low, high) = (i16::MAX, i16::MIN);
                    slice_end = (peaks.len() as u64 + 1) * total / n;
                }
                let value = i16::from_le_bytes([pair[0], pair[1]]);
                low = low.min(value);
                high = high.max(value);
                sample += 1;
            }
            chunk_start = chunk_end;
        }
        peaks.push([low, high]);
        Ok(peaks)
    }
}

/// Samples read at a time for the waveform and the encoders (128 KiB of PCM).
const CHUNK_SAMPLES: u64 = 64 * 1024;
const PEAK_CHUNK_SAMPLES: u64 = CHUNK_SAMPLES;

/// Min and max of each of `points` slices of `samples`, all in memory.
fn slice_peaks(samples: &[i16], points: usize) -> Vec<[i16; 2]> {
    (0..points)
        .map(|i| {
            let from = i * samples.len() / points;
            let to = ((i + 1) * samples.len() / points)
                .max(from + 1)
                .min(samples.len());
            let slice = samples.get(from..to).unwrap_or(&[]);
            [
                slice.iter().copied().min().unwrap_or(0),
                slice.iter().copied().max().unwrap_or(0),
            ]
        })
        .collect()
}

/// Each G.711 code's 16-bit little-endian sample: one lookup per byte.
static ULAW_TABLE: std::sync::LazyLock<[[u8; 2]; 256]> =
    std::sync::LazyLock::new(|| std::array::from_fn(|i| decode_ulaw(i as u8).to_le_bytes()));
static ALAW_TABLE: std::sync::LazyLock<[[u8; 2]; 256]> =
    std::sync::LazyLock::new(|| std::array::from_fn(|i| decode_alaw(i as u8).to_le_bytes()));

/// A parsed `Range` header against a stream of `len` bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RangeRequest {
    /// No usable range: serve everything with 200.
    Full,
    /// Serve `start..=end` with 206.
    Part { start: u64, end: u64 },
    /// 416 Range Not Satisfiable.
    Unsatisfiable,
}

/// Parses one `bytes=` range (several ranges are answered with the whole stream, as RFC 9110
/// allows).
pub fn parse_range(header: Option<&str>, len: u64) -> RangeRequest {
    let Some(value) = header else {
        return RangeRequest::Full;
    };
    // RFC 9110 14.2: a range unit the server does not know is ignored (the whole body), not
    // refused; units compare case-insensitively.
    let Some((unit, spec)) = value.trim().split_once('=') else {
        return RangeRequest::Full;
    };
    if !unit.trim().eq_ignore_ascii_case("bytes") {
        return RangeRequest::Full;
    }
    if spec.contains(',') {
        return RangeRequest::Full;
    }
    let Some((a, b)) = spec.trim().split_once('-') else {
        return RangeRequest::Unsatisfiable;
    };
    let (a, b) = (a.trim(), b.trim());
    if len == 0 {
        return RangeRequest::Unsatisfiable;
    }
    match (a.is_empty(), b.is_empty()) {
        // bytes=-N: the last N bytes.
        (true, false) => match b.parse::<u64>() {
            Ok(0) | Err(_) => RangeRequest::Unsatisfiable,
            Ok(n) => RangeRequest::Part {
                start: len.saturating_sub(n),
                end: len - 1,
            },
        },
        (false, true) => match a.parse::<u64>() {
            Ok(start) if start < len => RangeRequest::Part {
                start,
                end: len - 1,
            },
            _ => RangeRequest::Unsatisfiable,
        },
        (false, false) => match (a.parse::<u64>(), b.parse::<u64>()) {
            (Ok(start), Ok(end)) if start <= end && start < len => RangeRequest::Part {
                start,
                end: end.min(len - 1),
            },
            _ => RangeRequest::Unsatisfiable,
        },
        (true, true) => RangeRequest::Unsatisfiable,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_follow_rfc_9110() {
        assert_eq!(parse_range(None, 100), RangeRequest::Full);
        // Unknown units are ignored; the unit is case-insensitive.
        assert_eq!(parse_range(Some("items=0-1"), 100), RangeRequest::Full);
        assert_eq!(parse_range(Some("nonsense"), 100), RangeRequest::Full);
        assert_eq!(
            parse_range(Some("Bytes=0-1"), 100),
            RangeRequest::Part { start: 0, end: 1 }
        );
        assert_eq!(
            parse_range(Some("bytes=0-1"), 100),
            RangeRequest::Part { start: 0, end: 1 }
        );
        assert_eq!(
            parse_range(Some("bytes=90-"), 100),
            RangeRequest::Part { start: 90, end: 99 }
        );
        assert_eq!(
            parse_range(Some("bytes=-10"), 100),
            RangeRequest::Part { start: 90, end: 99 }
        );
        assert_eq!(
            parse_range(Some("bytes=-500"), 100),
            RangeRequest::Part { start: 0, end: 99 }
        );
        assert_eq!(
            parse_range(Some("bytes=50-5000"), 100),
            RangeRequest::Part { start: 50, end: 99 }
        );
        assert_eq!(
            parse_range(Some("bytes=100-"), 100),
            RangeRequest::Unsatisfiable
        );
        assert_eq!(
            parse_range(Some("bytes=5-1"), 100),
            RangeRequest::Unsatisfiable
        );
        assert_eq!(parse_range(Some("bytes=0-1,5-6"), 100), RangeRequest::Full);
    }

    #[test]
    fn every_range_of_a_transcoded_stream_matches_the_whole() {
        let dir = tempfile::tempdir().expect("dir");
        let path = dir.path().join("x.ulaw");
        let source: Vec<u8> = (0..=255u8).cycle().take(1001).collect();
        std::fs::write(&path, &source).expect("write");
        let stream = WavStream {
            source: path.into(),
            encoding: Encoding::Ulaw,
            sample_rate: 8000,
            data_offset: 0,
            data_len: 1001,
        };
        let whole = stream.read_range(0, stream.len()).expect("read");
        assert_eq!(whole.len() as u64, 44 + 2002);
        for (i, b) in source.iter().enumerate() {
            let s = i16::from_le_bytes([whole[44 + 2 * i], whole[45 + 2 * i]]);
            assert_eq!(s, decode_ulaw(*b), "sample {i}");
        }
        for (start, end) in [
            (0, 1),
            (0, 2),
            (43, 46),
            (45, 46),
            (45, 47),
            (1000, 2046),
            (2045, 2046),
            (44, 44),
        ] {
            let part = stream.read_range(start, end).expect("range");
            assert_eq!(part, whole[start as usize..end as usize], "{start}..{end}");
        }
    }

    #[test]
    fn streamed_peaks_equal_peaks_of_the_whole_file() {
        let dir = tempfile::tempdir().expect("dir");
        // Lengths around the chunk size and below the number of points.
        for samples in [
            0u64,
            7,
            799,
            800,
            801,
            PEAK_CHUNK_SAMPLES + 13,
            3 * PEAK_CHUNK_SAMPLES,
        ] {
            let path = dir.path().join(format!("{samples}.ulaw"));
            let source: Vec<u8> = (0..samples).map(|i| (i * 37 % 251) as u8).collect();
            std::fs::write(&path, &source).expect("write");
            let stream = WavStream {
                source: path.into(),
                encoding: Encoding::Ulaw,
                sample_rate: 8000,
                data_offset: 0,
                data_len: samples,
            };
            let whole = stream.samples_i16().expect("samples");
            for points in [1usize, 100, 800, 3200] {
                assert_eq!(
                    stream.peaks(points).expect("peaks"),
                    slice_peaks(&whole, points),
                    "{samples} samples, {points} points"
                );
            }
        }
    }
}
