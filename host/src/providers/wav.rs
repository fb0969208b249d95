//! Minimal WAV (RIFF, PCM) writing and reading: enough for the mock speech
//! provider to write real silent audio and for tests to measure durations.

use std::io::{self, Write};
use std::path::Path;

pub const SAMPLE_RATE: u32 = 16_000;

/// Writes `duration_ms` of 16-bit mono silence at 16 kHz.
pub fn write_silence(path: &Path, duration_ms: u64) -> io::Result<()> {
    let samples = u64::from(SAMPLE_RATE) * duration_ms / 1000;
    let data_len = u32::try_from(samples * 2).map_err(|_| io::Error::other("audio too long"))?;
    let mut file = io::BufWriter::new(std::fs::File::create(path)?);
    file.write_all(&header(data_len, SAMPLE_RATE, 1, 16))?;
    let zeros = [0u8; 8192];
    let mut left = data_len as usize;
    while left > 0 {
        let n = left.min(zeros.len());
        file.write_all(&zeros[..n])?;
        left -= n;
    }
    file.flush()
}

/// A 44-byte canonical WAV header.
pub fn header(data_len: u32, sample_rate: u32, channels: u16, bits: u16) -> [u8; 44] {
    let block_align = channels * (bits / 8);
    let byte_rate = sample_rate * u32::from(block_align);
    let mut h = [0u8; 44];
    h[0..4].copy_from_slice(b"RIFF");
    h[4..8].copy_from_slice(&(36 + data_len).to_le_bytes());
    h[8..12].copy_from_slice(b"WAVE");
    h[12..16].copy_from_slice(b"fmt ");
    h[16..20].copy_from_slice(&16u32.to_le_bytes());
    h[20..22].copy_from_slice(&1u16.to_le_bytes());
    h[22..24].copy_from_slice(&channels.to_le_bytes());
    h[24..28].copy_from_slice(&sample_rate.to_le_bytes());
    h[28..32].copy_from_slice(&byte_rate.to_le_bytes());
    h[32..34].copy_from_slice(&block_align.to_le_bytes());
    h[34..36].copy_from_slice(&bits.to_le_bytes());
    h[36..40].copy_from_slice(b"data");
    h[40..44].copy_from_slice(&data_len.to_le_bytes());
    h
}

/// Duration in milliseconds of a canonical PCM WAV file.
pub fn duration_ms(path: &Path) -> io::Result<u64> {
    let bytes = std::fs::read(path)?;
    if bytes.len() < 44 || &bytes[0..4] != b"RIFF" || &bytes[8..12] != b"WAVE" {
        return Err(io::Error::new(io::ErrorKind::InvalidData, "not a WAV file"));
    }
    let byte_rate = u32::from_le_bytes([bytes[28], bytes[29], bytes[30], bytes[31]]);
    let data_len = u32::from_le_bytes([bytes[40], bytes[41], bytes[42], bytes[43]]);
    if byte_rate == 0 {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            "WAV byte rate is 0",
        ));
    }
    Ok(u64::from(data_len) * 1000 / u64::from(byte_rate))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn silence_has_the_asked_duration() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("s.wav");
        write_silence(&p, 420).unwrap();
        assert_eq!(duration_ms(&p).unwrap(), 420);
        assert_eq!(
            std::fs::metadata(&p).unwrap().len(),
            44 + 16_000 * 2 * 420 / 1000
        );
    }
}
