//! The WAV layout Asterisk writes: a 44-byte header (RIFF, `fmt ` of 16 bytes, PCM, mono,
//! 8 kHz, 16-bit) then `data`. Asterisk leaves the RIFF and data sizes at 0 while the file is
//! open and fills them in only when it closes it; a crash leaves them at 0.

use std::io::{self, Seek, SeekFrom, Write};

use super::SAMPLE_RATE;

pub const HEADER_LEN: u64 = 44;

/// The header for `data_len` bytes of 8 kHz mono PCM16 (0 while recording).
pub fn header(data_len: u32) -> [u8; 44] {
    let riff_len = if data_len == 0 { 0 } else { data_len + 36 };
    let mut h = [0u8; 44];
    h[0..4].copy_from_slice(b"RIFF");
    h[4..8].copy_from_slice(&riff_len.to_le_bytes());
    h[8..12].copy_from_slice(b"WAVE");
    h[12..16].copy_from_slice(b"fmt ");
    h[16..20].copy_from_slice(&16u32.to_le_bytes());
    h[20..22].copy_from_slice(&1u16.to_le_bytes()); // PCM
    h[22..24].copy_from_slice(&1u16.to_le_bytes()); // mono
    h[24..28].copy_from_slice(&SAMPLE_RATE.to_le_bytes());
    h[28..32].copy_from_slice(&(SAMPLE_RATE * 2).to_le_bytes());
    h[32..34].copy_from_slice(&2u16.to_le_bytes()); // block align
    h[34..36].copy_from_slice(&16u16.to_le_bytes()); // bits per sample
    h[36..40].copy_from_slice(b"data");
    h[40..44].copy_from_slice(&data_len.to_le_bytes());
    h
}

/// Fills in the sizes of a finished file, as Asterisk does on close.
pub fn finalize<F: Write + Seek>(file: &mut F, data_len: u32) -> io::Result<()> {
    let h = header(data_len);
    file.seek(SeekFrom::Start(4))?;
    file.write_all(&h[4..8])?;
    file.seek(SeekFrom::Start(40))?;
    file.write_all(&h[40..44])?;
    file.seek(SeekFrom::End(0))?;
    Ok(())
}

/// PCM16 little-endian bytes of `samples`.
pub fn pcm_bytes(samples: &[i16]) -> Vec<u8> {
    samples.iter().flat_map(|s| s.to_le_bytes()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn open_header_has_zero_sizes_like_asterisk() {
        let h = header(0);
        assert_eq!(&h[4..8], &[0, 0, 0, 0]);
        assert_eq!(&h[40..44], &[0, 0, 0, 0]);
        assert_eq!(&h[24..28], &8000u32.to_le_bytes());
    }

    #[test]
    fn finalize_writes_both_sizes() {
        let mut file = io::Cursor::new(Vec::new());
        file.write_all(&header(0)).expect("write");
        file.write_all(&[1, 0, 2, 0]).expect("write");
        finalize(&mut file, 4).expect("finalize");
        let bytes = file.into_inner();
        assert_eq!(&bytes[4..8], &40u32.to_le_bytes());
        assert_eq!(&bytes[40..44], &4u32.to_le_bytes());
        assert_eq!(bytes.len(), 48);
    }
}
