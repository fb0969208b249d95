//! `combine_audio_files`: joins WAV segments, in order, into one WAV file.
//!
//! Input:
//! - `audio_segments_data`: a list whose entries are WAV file paths, or
//!   mappings holding the path under `path`, `audio_path`, `file` (or any
//!   other key ending in `_path`, such as a map's `individual_audio_path`).
//!   `null` entries are skipped.
//! - `final_filename` (default `combined.wav`): the output file. A relative
//!   name is placed in the folder of the first segment (the folder the host
//!   grants as writable). The output is WAV, so any other extension (e.g.
//!   `.mp3`) is replaced by `.wav`.
//!
//! Every segment must be a PCM (or IEEE float) WAV with the sample rate,
//! channel count and sample size of the first; otherwise the error names the
//! file. Sample data is streamed segment by segment, never held in memory
//! whole.
//!
//! Output: `{"path": <the file actually written>, "duration_seconds",
//! "segments": <how many segments were joined>}`.

use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::fs::File;
use std::io::{self, BufReader, BufWriter, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

#[derive(Deserialize)]
pub struct Input {
    #[serde(default)]
    pub audio_segments_data: Vec<Value>,
    #[serde(default)]
    pub final_filename: Option<String>,
}

#[derive(Serialize, Debug)]
pub struct Output {
    pub path: String,
    pub duration_seconds: f64,
    pub segments: usize,
}

/// The parts of a `fmt ` chunk that must match for samples to be joined.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct Format {
    /// 1 = integer PCM, 3 = IEEE float.
    pub tag: u16,
    pub channels: u16,
    pub sample_rate: u32,
    pub bits_per_sample: u16,
    pub block_align: u16,
}

impl Format {
    fn describe(&self) -> String {
        format!(
            "{} Hz, {} channel(s), {}-bit {}",
            self.sample_rate,
            self.channels,
            self.bits_per_sample,
            if self.tag == 3 { "float" } else { "PCM" }
        )
    }
}

/// A parsed WAV file: its format and where its sample data lies.
pub struct Wav {
    pub format: Format,
    pub data_offset: u64,
    pub data_len: u64,
}

const WAVE_FORMAT_PCM: u16 = 1;
const WAVE_FORMAT_FLOAT: u16 = 3;
const WAVE_FORMAT_EXTENSIBLE: u16 = 0xFFFE;

fn u16_at(b: &[u8], i: usize) -> u16 {
    u16::from_le_bytes([b[i], b[i + 1]])
}

fn u32_at(b: &[u8], i: usize) -> u32 {
    u32::from_le_bytes([b[i], b[i + 1], b[i + 2], b[i + 3]])
}

/// Reads the RIFF header and chunk list of a WAV file (not its samples).
pub fn read_wav_header(path: &Path) -> Result<Wav, String> {
    let bad = |why: &str| format!("{} is not a usable WAV file: {why}", path.display());
    let file = File::open(path).map_err(|e| format!("cannot open {}: {e}", path.display()))?;
    let file_len = file
        .metadata()
        .map_err(|e| format!("cannot read {}: {e}", path.display()))?
        .len();
    let mut r = BufReader::new(file);
    let mut riff = [0u8; 12];
    r.read_exact(&mut riff).map_err(|_| bad("too short"))?;
    if &riff[0..4] != b"RIFF" || &riff[8..12] != b"WAVE" {
        return Err(bad("no RIFF/WAVE header"));
    }
    let mut pos = 12u64;
    let mut format = None;
    loop {
        let mut head = [0u8; 8];
        if r.read_exact(&mut head).is_err() {
            return Err(bad("no data chunk"));
        }
        pos += 8;
        let id = [head[0], head[1], head[2], head[3]];
        let size = u64::from(u32_at(&head, 4));
        match &id {
            b"fmt " => {
                if !(16..=1024).contains(&size) {
                    return Err(bad("malformed fmt chunk"));
                }
                let mut fmt = vec![0u8; size as usize];
                r.read_exact(&mut fmt)
                    .map_err(|_| bad("truncated fmt chunk"))?;
                let mut tag = u16_at(&fmt, 0);
                if tag == WAVE_FORMAT_EXTENSIBLE && fmt.len() >= 26 {
                    tag = u16_at(&fmt, 24); // first bytes of the sub-format GUID
                }
                if tag != WAVE_FORMAT_PCM && tag != WAVE_FORMAT_FLOAT {
                    return Err(bad(&format!(
                        "format tag {tag} is not PCM (compressed audio?)"
                    )));
                }
                let f = Format {
                    tag,
                    channels: u16_at(&fmt, 2),
                    sample_rate: u32_at(&fmt, 4),
                    block_align: u16_at(&fmt, 12),
                    bits_per_sample: u16_at(&fmt, 14),
                };
                if f.channels == 0 || f.sample_rate == 0 || f.block_align == 0 {
                    return Err(bad("zero channels, sample rate or block size"));
                }
                format = Some(f);
                pos += size;
                if size % 2 == 1 {
                    r.seek_relative(1).map_err(|_| bad("truncated"))?;
                    pos += 1;
                }
            }
            b"data" => {
                let format = format.ok_or_else(|| bad("data chunk before fmt chunk"))?;
                // Streaming writers leave the size as 0xFFFFFFFF or too big:
                // the data then runs to the end of the file.
                let available = file_len.saturating_sub(pos);
                let len = size.min(available);
                let block = u64::from(format.block_align);
                return Ok(Wav {
                    format,
                    data_offset: pos,
                    data_len: len - len % block,
                });
            }
            _ => {
                let skip = size + size % 2;
                r.seek_relative(skip as i64)
                    .map_err(|_| bad("truncated chunk"))?;
                pos += skip;
                if pos > file_len {
                    return Err(bad("no data chunk"));
                }
            }
        }
    }
}

/// A canonical 44-byte header for `data_len` bytes of samples.
fn wav_header(f: &Format, data_len: u32) -> [u8; 44] {
    let mut h = [0u8; 44];
    h[0..4].copy_from_slice(b"RIFF");
    h[4..8].copy_from_slice(&(36 + data_len).to_le_bytes());
    h[8..16].copy_from_slice(b"WAVEfmt ");
    h[16..20].copy_from_slice(&16u32.to_le_bytes());
    h[20..22].copy_from_slice(&f.tag.to_le_bytes());
    h[22..24].copy_from_slice(&f.channels.to_le_bytes());
    h[24..28].copy_from_slice(&f.sample_rate.to_le_bytes());
    let byte_rate = f.sample_rate.saturating_mul(u32::from(f.block_align));
    h[28..32].copy_from_slice(&byte_rate.to_le_bytes());
    h[32..34].copy_from_slice(&f.block_align.to_le_bytes());
    h[34..36].copy_from_slice(&f.bits_per_sample.to_le_bytes());
    h[36..40].copy_from_slice(b"data");
    h[40..44].copy_from_slice(&data_len.to_le_bytes());
    h
}

/// The path held by one entry of `audio_segments_data` (`None` for null).
fn segment_path(index: usize, entry: &Value) -> Result<Option<PathBuf>, String> {
    let found = match entry {
        Value::Null => return Ok(None),
        Value::String(s) => Some(s.as_str()),
        Value::Object(map) => ["path", "audio_path", "file"]
            .iter()
            .find_map(|k| map.get(*k).and_then(Value::as_str))
            .or_else(|| {
                map.iter()
                    .find(|(k, v)| k.ends_with("_path") && v.is_string())
                    .and_then(|(_, v)| v.as_str())
            }),
        _ => None,
    };
    match found {
        Some(p) if !p.trim().is_empty() => Ok(Some(PathBuf::from(p.trim()))),
        _ => Err(format!(
            "audio_segments_data[{index}] is neither a file path nor a mapping with a `path`, `audio_path` or `file` key"
        )),
    }
}

/// Where the combined file goes: `final_filename` in the first segment's
/// folder (unless absolute), with a `.wav` extension.
pub fn output_path(first_segment: &Path, final_filename: Option<&str>) -> PathBuf {
    let name = final_filename
        .map(str::trim)
        .filter(|n| !n.is_empty())
        .unwrap_or("combined.wav");
    let mut out = match first_segment.parent() {
        Some(dir) => dir.join(name),
        None => PathBuf::from(name),
    };
    let is_wav = out
        .extension()
        .is_some_and(|e| e.eq_ignore_ascii_case("wav"));
    if !is_wav {
        out.set_extension("wav");
    }
    out
}

pub fn combine_audio_files(input: Input) -> Result<Output, String> {
    let mut paths = Vec::new();
    for (i, entry) in input.audio_segments_data.iter().enumerate() {
        if let Some(p) = segment_path(i, entry)? {
            paths.push(p);
        }
    }
    let first = paths
        .first()
        .ok_or("audio_segments_data holds no audio segments")?;
    let out_path = output_path(first, input.final_filename.as_deref());

    // Read every header first: a mismatch fails before anything is written.
    let mut wavs = Vec::with_capacity(paths.len());
    for (i, path) in paths.iter().enumerate() {
        let wav = read_wav_header(path)?;
        if let Some(first) = wavs.first().map(|w: &Wav| w.format) {
            if wav.format != first {
                return Err(format!(
                    "segment {} ({}) is {}, but the first segment ({}) is {}: all segments must share one format",
                    i + 1,
                    path.display(),
                    wav.format.describe(),
                    paths[0].display(),
                    first.describe()
                ));
            }
        }
        wavs.push(wav);
    }
    let format = wavs[0].format;
    let total: u64 = wavs.iter().map(|w| w.data_len).sum();
    let data_len = u32::try_from(total)
        .ok()
        .filter(|n| *n <= u32::MAX - 36)
        .ok_or("the combined audio exceeds the 4 GiB limit of a WAV file")?;

    // Write next to the target and rename at the end, so a segment that is
    // also the output is read before it is replaced.
    let mut part = out_path.clone().into_os_string();
    part.push(".part");
    let part = PathBuf::from(part);
    let written = write_combined(&part, &paths, &wavs, &format, data_len)
        .and_then(|()| std::fs::rename(&part, &out_path));
    if let Err(e) = written {
        let _ = std::fs::remove_file(&part);
        return Err(format!("cannot write {}: {e}", out_path.display()));
    }

    let bytes_per_second = f64::from(format.sample_rate) * f64::from(format.block_align);
    Ok(Output {
        path: out_path.to_string_lossy().into_owned(),
        duration_seconds: total as f64 / bytes_per_second,
        segments: wavs.len(),
    })
}

fn write_combined(
    out: &Path,
    paths: &[PathBuf],
    wavs: &[Wav],
    format: &Format,
    data_len: u32,
) -> io::Result<()> {
    let mut w = BufWriter::with_capacity(64 * 1024, File::create(out)?);
    w.write_all(&wav_header(format, data_len))?;
    for (path, wav) in paths.iter().zip(wavs) {
        let mut file = File::open(path)?;
        file.seek(SeekFrom::Start(wav.data_offset))?;
        let copied = io::copy(&mut file.take(wav.data_len), &mut w)?;
        if copied != wav.data_len {
            return Err(io::Error::other(format!(
                "{} shrank while being read",
                path.display()
            )));
        }
    }
    w.flush()
}

composer_plugin_sdk::export!(
    combine_audio_files: "Joins WAV audio segments, in order, into one WAV file in the first segment's folder"
);

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn temp_dir(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("combine_audio_{}_{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    /// Writes a 16-bit mono WAV of `seconds` of a ramp, with an extra chunk
    /// before the data so the parser has to skip it.
    fn write_wav(path: &Path, rate: u32, channels: u16, seconds: f64) {
        let f = Format {
            tag: 1,
            channels,
            sample_rate: rate,
            bits_per_sample: 16,
            block_align: 2 * channels,
        };
        let frames = (f64::from(rate) * seconds) as u32;
        let data: Vec<u8> = (0..frames * u32::from(channels))
            .flat_map(|i| (i as i16).to_le_bytes())
            .collect();
        let mut header = wav_header(&f, data.len() as u32).to_vec();
        let list = b"LIST\x05\x00\x00\x00abcde\x00";
        header.splice(36..36, list.iter().copied());
        let riff_size = (header.len() + data.len() - 8) as u32;
        header[4..8].copy_from_slice(&riff_size.to_le_bytes());
        std::fs::write(path, [header, data].concat()).unwrap();
    }

    #[test]
    fn combined_duration_is_the_sum_and_samples_are_in_order() {
        let dir = temp_dir("sum");
        let a = dir.join("a.wav");
        let b = dir.join("b.wav");
        write_wav(&a, 8000, 1, 1.5);
        write_wav(&b, 8000, 1, 0.25);
        let input = Input {
            audio_segments_data: vec![
                json!(a.to_str().unwrap()),
                Value::Null,
                json!({"individual_audio_path": b.to_str().unwrap()}),
                json!({"path": a.to_str().unwrap()}),
            ],
            final_filename: Some("episode.mp3".into()),
        };
        let out = combine_audio_files(input).unwrap();
        assert_eq!(out.segments, 3);
        assert!(
            (out.duration_seconds - 3.25).abs() < 1e-9,
            "{}",
            out.duration_seconds
        );
        assert_eq!(PathBuf::from(&out.path), dir.join("episode.wav"));

        let wav = read_wav_header(Path::new(&out.path)).unwrap();
        assert_eq!(wav.data_offset, 44);
        assert_eq!(wav.data_len, 2 * (12000 + 2000 + 12000));
        let bytes = std::fs::read(&out.path).unwrap();
        let sample = |i: usize| i16::from_le_bytes([bytes[44 + 2 * i], bytes[45 + 2 * i]]);
        assert_eq!((sample(11999), sample(12000), sample(14000)), (11999, 0, 0));
        assert!(!dir.join("episode.wav.part").exists());
    }

    #[test]
    fn default_name_and_overwriting_a_segment() {
        let dir = temp_dir("default");
        let a = dir.join("combined.wav");
        write_wav(&a, 16000, 2, 0.5);
        let input = Input {
            audio_segments_data: vec![json!(a.to_str().unwrap()); 2],
            final_filename: None,
        };
        let out = combine_audio_files(input).unwrap();
        assert_eq!(PathBuf::from(&out.path), a);
        assert!((out.duration_seconds - 1.0).abs() < 1e-9);
    }

    #[test]
    fn mismatched_formats_name_the_file() {
        let dir = temp_dir("mismatch");
        let a = dir.join("a.wav");
        let b = dir.join("b.wav");
        write_wav(&a, 8000, 1, 0.1);
        write_wav(&b, 22050, 1, 0.1);
        let input = Input {
            audio_segments_data: vec![json!(a.to_str().unwrap()), json!(b.to_str().unwrap())],
            final_filename: None,
        };
        let err = combine_audio_files(input).unwrap_err();
        assert!(err.contains("b.wav") && err.contains("22050 Hz"), "{err}");
        assert!(!dir.join("combined.wav").exists());
    }

    #[test]
    fn bad_inputs_are_clear_errors() {
        let dir = temp_dir("bad");
        let mp3 = dir.join("x.mp3");
        std::fs::write(&mp3, b"ID3\x03\x00 not a wav").unwrap();
        let run = |v: Vec<Value>| {
            combine_audio_files(Input {
                audio_segments_data: v,
                final_filename: None,
            })
        };
        assert!(run(vec![]).unwrap_err().contains("no audio segments"));
        assert!(run(vec![Value::Null])
            .unwrap_err()
            .contains("no audio segments"));
        assert!(run(vec![json!(42)]).unwrap_err().contains("[0]"));
        assert!(run(vec![json!({"text": "hi"})])
            .unwrap_err()
            .contains("`path`"));
        assert!(run(vec![json!(mp3.to_str().unwrap())])
            .unwrap_err()
            .contains("RIFF"));
        let missing = dir.join("missing.wav");
        assert!(run(vec![json!(missing.to_str().unwrap())])
            .unwrap_err()
            .contains("cannot open"));
    }

    #[test]
    fn output_path_rules() {
        let first = Path::new("/runs/r1/seg_0.wav");
        assert_eq!(output_path(first, None), Path::new("/runs/r1/combined.wav"));
        assert_eq!(
            output_path(first, Some("  ")),
            Path::new("/runs/r1/combined.wav")
        );
        assert_eq!(
            output_path(first, Some("pod.MP3")),
            Path::new("/runs/r1/pod.wav")
        );
        assert_eq!(
            output_path(first, Some("pod.WAV")),
            Path::new("/runs/r1/pod.WAV")
        );
        assert_eq!(
            output_path(first, Some("pod")),
            Path::new("/runs/r1/pod.wav")
        );
        assert_eq!(
            output_path(first, Some("/abs/x.mp3")),
            Path::new("/abs/x.wav")
        );
    }
}
