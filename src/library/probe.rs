//! Probing a recording file: its format, whether it can be played, how long it is, and its
//! SHA-256. Never panics and never gives up on a folder because of one file: every problem is
//! a status with a reason.
//!
//! The WAV quirk of Asterisk: RIFF and data sizes stay 0 until the file is closed (and stay 0
//! after a crash). Such a file's audio length is computed from its size.

use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom};
use std::path::Path;

use sha2::{Digest, Sha256};

use crate::encryption::Keyring;

/// What a file is, as far as the library is concerned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    /// Still being written (not yet final): listed with its growing duration.
    Recording,
    /// Final and playable.
    Ready,
    /// No audio at all (0 bytes, or a WAV header with no data).
    Empty,
    /// Cannot be read or is not what its extension says.
    Unreadable,
    /// A real Asterisk format this service does not play (listed with the reason).
    NotPlayable,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Recording => "recording",
            Status::Ready => "ready",
            Status::Empty => "empty",
            Status::Unreadable => "unreadable",
            Status::NotPlayable => "not_playable",
        }
    }
}

pub use crate::audio::Encoding;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Probe {
    /// Asterisk's name for the format: the file extension (`wav`, `ulaw`, `wav16`, `WAV`, ...).
    pub format: String,
    pub status: Status,
    pub reason: Option<String>,
    pub size: u64,
    pub encoding: Option<Encoding>,
    pub sample_rate: u32,
    /// Where the audio starts and how many bytes of it there are.
    pub data_offset: u64,
    pub data_len: u64,
    pub duration_ms: u64,
    /// True when the WAV header said 0 and the length came from the file size.
    pub sizes_recovered: bool,
    pub sha256: Option<String>,
}

impl Probe {
    pub(crate) fn problem(
        format: &str,
        size: u64,
        status: Status,
        reason: impl Into<String>,
    ) -> Probe {
        Probe {
            format: format.to_string(),
            status,
            reason: Some(reason.into()),
            size,
            encoding: None,
            sample_rate: 0,
            data_offset: 0,
            data_len: 0,
            duration_ms: 0,
            sizes_recovered: false,
            sha256: None,
        }
    }

    fn audio(
        format: &str,
        size: u64,
        encoding: Encoding,
        rate: u32,
        offset: u64,
        len: u64,
    ) -> Probe {
        let samples = len / encoding.bytes_per_sample();
        Probe {
            format: format.to_string(),
            status: if len == 0 {
                Status::Empty
            } else {
                Status::Ready
            },
            reason: if len == 0 {
                Some("no audio".into())
            } else {
                None
            },
            size,
            encoding: Some(encoding),
            sample_rate: rate,
            data_offset: offset,
            data_len: len,
            duration_ms: if rate == 0 {
                0
            } else {
                samples * 1000 / u64::from(rate)
            },
            sizes_recovered: false,
            sha256: None,
        }
    }
}

/// Whether the file is a recording: one of the formats Asterisk writes, by its extension.
pub fn is_recording_file(path: &Path) -> bool {
    path.extension()
        .and_then(|e| e.to_str())
        .and_then(super::RecordingFormat::parse)
        .is_some()
}

/// Probes `path` (already known to stay inside the recordings folder) and hashes it.
pub fn probe(path: &Path) -> Probe {
    probe_with(path, true)
}

/// Probes `path`; `hash` false skips the SHA-256 (a file still being written is hashed once it
/// is final, not on every change).
pub fn probe_with(path: &Path, hash: bool) -> Probe {
    probe_sealed(path, hash, None)
}

/// Probes `path`, opening it through `keys` when it is sealed at rest: the probe describes the
/// plaintext (format, audio, SHA-256) and the file's size on disk.
pub fn probe_sealed(path: &Path, hash: bool, keys: Option<&Keyring>) -> Probe {
    let format = path
        .extension()
        .and_then(|e| e.to_str())
        .unwrap_or("")
        .to_string();
    let mut file = match File::open(path) {
        Ok(f) => f,
        Err(e) => {
            return Probe::problem(&format, 0, Status::Unreadable, format!("cannot open: {e}"))
        }
    };
    let size = match file.metadata() {
        Ok(m) => m.len(),
        Err(e) => {
            return Probe::problem(&format, 0, Status::Unreadable, format!("cannot stat: {e}"))
        }
    };
    let sealed = size > 0 && crate::encryption::is_sealed(&mut file).unwrap_or(false);
    if !sealed {
        if let Err(e) = file.seek(SeekFrom::Start(0)) {
            return Probe::problem(
                &format,
                size,
                Status::Unreadable,
                format!("cannot read: {e}"),
            );
        }
        return probe_plain(&mut file, &format, size, hash);
    }
    let Some(keys) = keys else {
        return Probe::problem(
            &format,
            size,
            Status::Unreadable,
            "sealed at rest (age) and no ENCRYPTION_KEYS to open it",
        );
    };
    let opened = File::open(path).and_then(|f| {
        let mut plain = keys.open(f)?;
        let len = crate::encryption::plain_len(&mut plain)?;
        Ok((plain, len))
    });
    match opened {
        Ok((mut plain, plain_size)) => {
            let mut probe = probe_plain(&mut plain, &format, plain_size, hash);
            probe.size = size;
            probe
        }
        Err(e) => Probe::problem(
            &format,
            size,
            Status::Unreadable,
            format!("sealed at rest and not opened: {e}"),
        ),
    }
}

/// Probes the plaintext read through `file`, `size` bytes long.
fn probe_plain<R: Read + Seek>(file: &mut R, format: &str, size: u64, hash: bool) -> Probe {
    if size == 0 {
        let mut p = Probe::problem(format, 0, Status::Empty, "0 bytes: nothing was recorded");
        p.sha256 = Some(hex::encode(Sha256::digest([])));
        return p;
    }
    let mut probe = match format {
        "wav" | "wav16" => probe_wav(file, format, size),
        "WAV" => Probe::problem(
            format,
            size,
            Status::NotPlayable,
            "GSM-in-WAV (WAV) is not decoded by this service",
        ),
        "gsm" => Probe::problem(
            format,
            size,
            Status::NotPlayable,
            "GSM 06.10 is not decoded by this service",
        ),
        "g722" => Probe::problem(
            format,
            size,
            Status::NotPlayable,
            "G.722 is not decoded by this service",
        ),
        "ulaw" => Probe::audio(format, size, Encoding::Ulaw, 8000, 0, size),
        "alaw" => Probe::audio(format, size, Encoding::Alaw, 8000, 0, size),
        "sln" => {
            let mut p = Probe::audio(format, size, Encoding::Pcm16, 8000, 0, size - size % 2);
            if size % 2 == 1 {
                p.reason = Some("odd byte count: last byte ignored".into());
            }
            p
        }
        other => Probe::problem(other, size, Status::Unreadable, "not a recording format"),
    };
    if !hash {
        return probe;
    }
    match hash_file(file) {
        Ok(h) => probe.sha256 = Some(h),
        Err(e) => {
            probe.status = Status::Unreadable;
            probe.reason = Some(format!("read failed: {e}"));
        }
    }
    probe
}

fn probe_wav<R: Read + Seek>(file: &mut R, format: &str, size: u64) -> Probe {
    let mut header = [0u8; 12];
    if let Err(e) = file.read_exact(&mut header) {
        return Probe::problem(
            format,
            size,
            Status::Unreadable,
            format!("truncated header: {e}"),
        );
    }
    if &header[0..4] != b"RIFF" || &header[8..12] != b"WAVE" {
        return Probe::problem(format, size, Status::Unreadable, "not a RIFF/WAVE file");
    }
    let mut pos: u64 = 12;
    let mut fmt: Option<(u16, u16, u32, u16)> = None;
    // Walk the chunks until `data`; Asterisk writes `fmt ` then `data`, others may add more.
    for _ in 0..64 {
        let mut chunk = [0u8; 8];
        if file.read_exact(&mut chunk).is_err() {
            return Probe::problem(
                format,
                size,
                Status::Unreadable,
                "truncated header: no data chunk",
            );
        }
        pos += 8;
        let id = &chunk[0..4];
        let len = u64::from(u32::from_le_bytes([chunk[4], chunk[5], chunk[6], chunk[7]]));
        if id == b"fmt " {
            let mut body = vec![0u8; len.min(64) as usize];
            if len < 16 || file.read_exact(&mut body).is_err() {
                return Probe::problem(format, size, Status::Unreadable, "truncated fmt chunk");
            }
            fmt = Some((
                u16::from_le_bytes([body[0], body[1]]),
                u16::from_le_bytes([body[2], body[3]]),
                u32::from_le_bytes([body[4], body[5], body[6], body[7]]),
                u16::from_le_bytes([body[14], body[15]]),
            ));
            let skip = len + (len % 2) - body.len() as u64;
            if file.seek(SeekFrom::Current(skip as i64)).is_err() {
                return Probe::problem(format, size, Status::Unreadable, "truncated fmt chunk");
            }
            pos += len + (len % 2);
            continue;
        }
        if id == b"data" {
            let Some((audio_format, channels, rate, bits)) = fmt else {
                return Probe::problem(format, size, Status::Unreadable, "data before fmt chunk");
            };
            if audio_format == 0x31 {
                return Probe::problem(
                    format,
                    size,
                    Status::NotPlayable,
                    "GSM 6.10 in WAV is not decoded by this service",
                );
            }
            let encoding = match (audio_format, bits) {
                (1, 16) => Encoding::Pcm16,
                (7, 8) => Encoding::Ulaw,
                (6, 8) => Encoding::Alaw,
                _ => {
                    return Probe::problem(
                        format,
                        size,
                        Status::NotPlayable,
                        format!("WAV format {audio_format} with {bits} bits is not supported"),
                    )
                }
            };
            if channels != 1 {
                return Probe::problem(
                    format,
                    size,
                    Status::NotPlayable,
                    format!("{channels} channels: only mono is served"),
                );
            }
            let available = size.saturating_sub(pos);
            let (data_len, recovered) = if len == 0 {
                // Asterisk's open (or crashed) file: the audio runs to the end of the file.
                (available, available > 0)
            } else {
                (len.min(available), false)
            };
            let data_len = data_len - data_len % encoding.bytes_per_sample();
            let mut probe = Probe::audio(format, size, encoding, rate, pos, data_len);
            probe.sizes_recovered = recovered;
            if len > available {
                probe.reason = Some(format!(
                    "truncated: header promises {len} bytes of audio, {available} present"
                ));
            } else if recovered {
                probe.reason = Some("WAV sizes were 0 (file not closed by Asterisk): length taken from the file size".into());
            }
            if data_len == 0 {
                probe.status = Status::Empty;
                probe.reason = Some("WAV header only: no audio".into());
            }
            return probe;
        }
        // Skip any other chunk.
        let skip = len + (len % 2);
        if file.seek(SeekFrom::Current(skip as i64)).is_err() {
            return Probe::problem(format, size, Status::Unreadable, "truncated chunk");
        }
        pos += skip;
    }
    Probe::problem(format, size, Status::Unreadable, "no data chunk")
}

fn hash_file<R: Read + Seek>(file: &mut R) -> io::Result<String> {
    file.seek(SeekFrom::Start(0))?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = file.read(&mut buf)?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
    }
    Ok(hex::encode(hasher.finalize()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fixture(name: &str) -> std::path::PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/fixtures/recordings")
            .join(name)
    }

    #[test]
    fn a_closed_asterisk_wav_is_ready_with_its_length() {
        let p = probe(&fixture("transfer-1a5138fb.wav"));
        assert_eq!(p.status, Status::Ready);
        assert_eq!((p.data_offset, p.data_len), (44, 259_200));
        assert_eq!(p.duration_ms, 16_200);
        assert!(!p.sizes_recovered);
        assert_eq!(p.sha256.as_deref().map(str::len), Some(64));
    }

    #[test]
    fn a_wav_with_zero_sizes_is_recovered_from_the_file_size() {
        let p = probe(&fixture("inprogress-90df1d87.partial.wav"));
        assert_eq!(p.status, Status::Ready);
        assert!(p.sizes_recovered);
        assert_eq!(p.data_len, 32_812 - 44);
        assert_eq!(p.duration_ms, 2_048);
    }

    #[test]
    fn ulaw_duration_is_bytes_over_8000() {
        let p = probe(&fixture("voicemail-b97ae5ca.ulaw"));
        assert_eq!(
            (p.status, p.encoding),
            (Status::Ready, Some(Encoding::Ulaw))
        );
        assert_eq!(p.duration_ms, 193_392 * 1000 / 8000);
        let empty = probe(&fixture("vmsilence-cec16dce.ulaw"));
        assert_eq!(empty.status, Status::Empty);
    }

    #[test]
    fn bad_files_get_a_status_and_a_reason() {
        let dir = tempfile::tempdir().expect("dir");
        let write = |name: &str, bytes: &[u8]| {
            let path = dir.path().join(name);
            std::fs::write(&path, bytes).expect("write");
            probe(&path)
        };
        let header_only = write("h.wav", &crate::audio::wav::header(0));
        assert_eq!(header_only.status, Status::Empty, "{header_only:?}");
        let not_audio = write("n.wav", b"<html>not audio</html>");
        assert_eq!(not_audio.status, Status::Unreadable);
        assert!(not_audio.reason.as_deref().unwrap_or("").contains("RIFF"));
        let truncated = write("t.wav", &crate::audio::wav::header(0)[..20]);
        assert_eq!(truncated.status, Status::Unreadable);
        let mut short = crate::audio::wav::header(1000).to_vec();
        short.extend_from_slice(&[0u8; 100]);
        let cut = write("c.wav", &short);
        assert_eq!((cut.status, cut.data_len), (Status::Ready, 100));
        assert!(
            cut.reason.as_deref().unwrap_or("").contains("truncated"),
            "{cut:?}"
        );
        let gsm = write("g.gsm", &[0u8; 33]);
        assert_eq!(gsm.status, Status::NotPlayable);
        let empty = write("e.ulaw", &[]);
        assert_eq!(empty.status, Status::Empty);
    }
}
