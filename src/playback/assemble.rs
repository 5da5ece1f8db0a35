//! One recording of a whole call from its segments: each segment's audio placed on the call's
//! timeline, silence where nothing was recorded, overlapping audio mixed sample by sample.
//!
//! The mix is written a block at a time (ten seconds of every segment in memory at most), so an
//! hour-long call costs the same memory as a minute-long one.

use std::io;
use std::path::Path;

use super::serve::WavStream;
use crate::audio::wav;

/// Only 8 kHz audio goes on a call's timeline (what Asterisk records bridges and voicemail in).
pub const TIMELINE_RATE: u32 = crate::audio::SAMPLE_RATE;

/// Samples mixed at a time.
const BLOCK: u64 = 10 * TIMELINE_RATE as u64;

/// A run of a segment's file that lies contiguously on the timeline.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Piece {
    /// Where it starts on the timeline (samples from the call's first recorded moment).
    at: u64,
    /// Where it starts in the file (samples).
    from: u64,
    len: u64,
}

/// One segment's file and where its audio lies on the timeline.
#[derive(Debug, Clone)]
pub struct Segment {
    stream: WavStream,
    pieces: Vec<Piece>,
}

impl Segment {
    /// A segment whose first sample lies `offset` samples into the call. `gaps` are the stretches
    /// the call went on while the recording was paused: at file sample `at`, `len` samples of
    /// the call are not in the file (in file order), so the audio after them moves later.
    pub fn new(stream: WavStream, offset: u64, gaps: &[(u64, u64)]) -> Segment {
        let total = stream.samples();
        let mut pieces = Vec::new();
        let (mut at, mut from) = (offset, 0u64);
        for &(gap_at, gap_len) in gaps {
            let gap_at = gap_at.clamp(from, total);
            if gap_at > from {
                pieces.push(Piece {
                    at,
                    from,
                    len: gap_at - from,
                });
            }
            at += gap_at - from + gap_len;
            from = gap_at;
        }
        if total > from {
            pieces.push(Piece {
                at,
                from,
                len: total - from,
            });
        }
        Segment { stream, pieces }
    }

    /// Where the segment's audio ends on the timeline.
    pub fn end(&self) -> u64 {
        self.pieces.last().map_or(0, |p| p.at + p.len)
    }

    /// Adds this segment's samples falling in `start..start + mix.len()` to `mix`.
    fn add_to(&self, start: u64, mix: &mut [i32]) -> io::Result<()> {
        let end = start + mix.len() as u64;
        for piece in &self.pieces {
            let lo = piece.at.max(start);
            let hi = (piece.at + piece.len).min(end);
            if lo >= hi {
                continue;
            }
            let first = piece.from + (lo - piece.at);
            let bytes = self.stream.read_range(
                wav::HEADER_LEN + first * 2,
                wav::HEADER_LEN + (first + (hi - lo)) * 2,
            )?;
            let slots = &mut mix[(lo - start) as usize..(hi - start) as usize];
            for (slot, pair) in slots.iter_mut().zip(bytes.chunks_exact(2)) {
                *slot += i32::from(i16::from_le_bytes([pair[0], pair[1]]));
            }
        }
        Ok(())
    }
}

/// Samples of the call's timeline: from its first recorded moment to the end of the last.
pub fn timeline_len(segments: &[Segment]) -> u64 {
    segments.iter().map(Segment::end).max().unwrap_or(0)
}

/// Writes the mixed call to `path` as 8 kHz mono 16-bit PCM WAV and returns its samples.
/// Every segment must be 8 kHz. Where segments overlap their samples are summed and the sum
/// held to the 16-bit range (clipped, never wrapped around).
pub fn write_call(segments: &[Segment], path: &Path) -> io::Result<u64> {
    if let Some(other) = segments
        .iter()
        .find(|s| s.stream.sample_rate != TIMELINE_RATE)
    {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!(
                "a segment is {} Hz; a call is assembled at {TIMELINE_RATE} Hz",
                other.stream.sample_rate
            ),
        ));
    }
    let total = timeline_len(segments);
    if total > u64::from(u32::MAX / 2) {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            "the call is longer than one WAV file can hold",
        ));
    }
    let spec = hound::WavSpec {
        channels: 1,
        sample_rate: TIMELINE_RATE,
        bits_per_sample: 16,
        sample_format: hound::SampleFormat::Int,
    };
    let mut writer = hound::WavWriter::create(path, spec).map_err(hound_error)?;
    let mut mix = vec![0i32; BLOCK as usize];
    let mut start = 0u64;
    while start < total {
        let len = BLOCK.min(total - start) as usize;
        let block = &mut mix[..len];
        block.fill(0);
        for segment in segments {
            segment.add_to(start, block)?;
        }
        let mut samples = writer.get_i16_writer(len as u32);
        for value in block.iter() {
            samples.write_sample(clip(*value));
        }
        samples.flush().map_err(hound_error)?;
        start += len as u64;
    }
    writer.finalize().map_err(hound_error)?;
    Ok(total)
}

/// Writes two parties' own recordings as one stereo WAV, `left` (the caller) in the left
/// channel and `right` (the agent) in the right, and returns its frames. The two started
/// together (Asterisk starts snoops recorded together sample-aligned); the shorter one (its
/// party hung up first) is padded with silence.
pub fn write_stereo(left: &WavStream, right: &WavStream, path: &Path) -> io::Result<u64> {
    for side in [left, right] {
        if side.sample_rate != TIMELINE_RATE {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!(
                    "a party's recording is {} Hz, not {TIMELINE_RATE}",
                    side.sample_rate
                ),
            ));
        }
    }
    let frames = left.samples().max(right.samples());
    let spec = hound::WavSpec {
        channels: 2,
        sample_rate: TIMELINE_RATE,
        bits_per_sample: 16,
        sample_format: hound::SampleFormat::Int,
    };
    let mut writer = hound::WavWriter::create(path, spec).map_err(hound_error)?;
    let read = |side: &WavStream, from: u64, len: u64| -> io::Result<Vec<i16>> {
        let end = (from + len).min(side.samples());
        let mut samples: Vec<i16> = if from < end {
            side.read_range(wav::HEADER_LEN + from * 2, wav::HEADER_LEN + end * 2)?
                .chunks_exact(2)
                .map(|c| i16::from_le_bytes([c[0], c[1]]))
                .collect()
        } else {
            Vec::new()
        };
        samples.resize(len as usize, 0);
        Ok(samples)
    };
    let mut start = 0u64;
    while start < frames {
        let len = BLOCK.min(frames - start);
        let (l, r) = (read(left, start, len)?, read(right, start, len)?);
        let mut out = writer.get_i16_writer(len as u32 * 2);
        for (a, b) in l.into_iter().zip(r) {
            out.write_sample(a);
            out.write_sample(b);
        }
        out.flush().map_err(hound_error)?;
        start += len;
    }
    writer.finalize().map_err(hound_error)?;
    Ok(frames)
}

fn clip(value: i32) -> i16 {
    value.clamp(i32::from(i16::MIN), i32::from(i16::MAX)) as i16
}

fn hound_error(e: hound::Error) -> io::Error {
    match e {
        hound::Error::IoError(e) => e,
        other => io::Error::other(other.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audio::Encoding;

    fn pcm_file(dir: &Path, name: &str, samples: &[i16]) -> WavStream {
        let path = dir.join(name);
        let mut bytes = wav::header((samples.len() * 2) as u32).to_vec();
        bytes.extend(samples.iter().flat_map(|s| s.to_le_bytes()));
        std::fs::write(&path, bytes).expect("write");
        WavStream {
            source: path.into(),
            encoding: Encoding::Pcm16,
            sample_rate: TIMELINE_RATE,
            data_offset: wav::HEADER_LEN,
            data_len: samples.len() as u64 * 2,
        }
    }

    fn ulaw_file(dir: &Path, name: &str, samples: &[i16]) -> WavStream {
        let path = dir.join(name);
        let bytes: Vec<u8> = samples
            .iter()
            .map(|s| crate::audio::g711::encode_ulaw(*s))
            .collect();
        std::fs::write(&path, &bytes).expect("write");
        WavStream {
            source: path.into(),
            encoding: Encoding::Ulaw,
            sample_rate: TIMELINE_RATE,
            data_offset: 0,
            data_len: bytes.len() as u64,
        }
    }

    fn read_back(path: &Path) -> Vec<i16> {
        let mut reader = hound::WavReader::open(path).expect("open");
        assert_eq!(reader.spec().sample_rate, TIMELINE_RATE);
        assert_eq!(reader.spec().channels, 1);
        reader
            .samples::<i16>()
            .collect::<Result<_, _>>()
            .expect("samples")
    }

    #[test]
    fn segments_land_at_their_offsets_with_silence_between() {
        let dir = tempfile::tempdir().expect("dir");
        let a = pcm_file(dir.path(), "a.wav", &[100; 30]);
        let b = pcm_file(dir.path(), "b.wav", &[-7; 20]);
        let out = dir.path().join("call.wav");
        let total = write_call(&[Segment::new(a, 0, &[]), Segment::new(b, 50, &[])], &out)
            .expect("assemble");
        assert_eq!(total, 70);
        let mixed = read_back(&out);
        assert_eq!(mixed.len(), 70);
        assert!(mixed[..30].iter().all(|s| *s == 100));
        assert!(mixed[30..50].iter().all(|s| *s == 0));
        assert!(mixed[50..].iter().all(|s| *s == -7));
    }

    #[test]
    fn overlaps_are_summed_and_clipped_not_wrapped() {
        let dir = tempfile::tempdir().expect("dir");
        let a = pcm_file(dir.path(), "a.wav", &[1000, 20_000, -20_000, 5]);
        let b = pcm_file(dir.path(), "b.wav", &[-1, 20_000, -20_000, 5]);
        let out = dir.path().join("call.wav");
        write_call(&[Segment::new(a, 0, &[]), Segment::new(b, 0, &[])], &out).expect("assemble");
        assert_eq!(read_back(&out), vec![999, i16::MAX, i16::MIN, 10]);
    }

    #[test]
    fn ulaw_segments_are_decoded_onto_the_timeline() {
        let dir = tempfile::tempdir().expect("dir");
        let source = [0i16, 1000, -1000, 8000];
        let v = ulaw_file(dir.path(), "v.ulaw", &source);
        let out = dir.path().join("call.wav");
        write_call(&[Segment::new(v, 3, &[])], &out).expect("assemble");
        let expected: Vec<i16> = [0, 0, 0]
            .into_iter()
            .chain(
                source
                    .iter()
                    .map(|s| crate::audio::g711::decode_ulaw(crate::audio::g711::encode_ulaw(*s))),
            )
            .collect();
        assert_eq!(read_back(&out), expected);
    }

    #[test]
    fn a_paused_stretch_keeps_later_audio_in_its_place() {
        let dir = tempfile::tempdir().expect("dir");
        // 4 samples, paused for 3, then 2 more.
        let a = pcm_file(dir.path(), "a.wav", &[1, 2, 3, 4, 5, 6]);
        let segment = Segment::new(a, 2, &[(4, 3)]);
        assert_eq!(segment.end(), 2 + 6 + 3);
        let out = dir.path().join("call.wav");
        write_call(&[segment], &out).expect("assemble");
        assert_eq!(read_back(&out), vec![0, 0, 1, 2, 3, 4, 0, 0, 0, 5, 6]);
    }

    #[test]
    fn blocks_join_without_losing_or_repeating_a_sample() {
        let dir = tempfile::tempdir().expect("dir");
        let len = (BLOCK * 2 + 123) as usize;
        let ramp: Vec<i16> = (0..len).map(|i| (i % 30_000) as i16).collect();
        let a = pcm_file(dir.path(), "a.wav", &ramp);
        let out = dir.path().join("call.wav");
        write_call(&[Segment::new(a, BLOCK - 7, &[])], &out).expect("assemble");
        let mixed = read_back(&out);
        assert_eq!(mixed.len() as u64, BLOCK - 7 + len as u64);
        assert_eq!(&mixed[(BLOCK - 7) as usize..], &ramp[..]);
    }

    #[test]
    fn stereo_puts_the_caller_left_and_the_agent_right_padding_the_shorter() {
        let dir = tempfile::tempdir().expect("dir");
        let caller = pcm_file(dir.path(), "caller.wav", &[1, 2, 3, 4]);
        let agent = pcm_file(dir.path(), "agent.wav", &[-1, -2, -3]);
        let out = dir.path().join("stereo.wav");
        assert_eq!(write_stereo(&caller, &agent, &out).expect("stereo"), 4);
        let mut reader = hound::WavReader::open(&out).expect("open");
        assert_eq!(reader.spec().channels, 2);
        let samples: Vec<i16> = reader
            .samples::<i16>()
            .map(|s| s.expect("sample"))
            .collect();
        assert_eq!(samples, vec![1, -1, 2, -2, 3, -3, 4, 0]);
    }

    #[test]
    fn other_rates_are_refused() {
        let dir = tempfile::tempdir().expect("dir");
        let mut a = pcm_file(dir.path(), "a.wav", &[1; 10]);
        a.sample_rate = 16_000;
        let error =
            write_call(&[Segment::new(a, 0, &[])], &dir.path().join("c.wav")).expect_err("16 kHz");
        assert!(error.to_string().contains("16000 Hz"), "{error}");
    }
}
