//! Issue 13's benchmark: one hour of a call in six 10-minute segments (each starting 2 s before
//! the last one ends, so every joint is mixed) assembled into one WAV: time to the first byte
//! cold (the build) and cached, and throughput, beside `sox -m` mixing the same padded segments.
//!
//! Run: `cargo bench --bench call_audio` (release build; sox from Debian).

use std::path::Path;
use std::process::Command;
use std::time::Instant;

use ari_recorder::audio::{wav, Encoding};
use ari_recorder::playback::assemble::Segment;
use ari_recorder::playback::call_audio::CallAudio;
use ari_recorder::playback::serve::WavStream;

const SEGMENTS: u64 = 6;
const SEGMENT_SECONDS: u64 = 600;
const OVERLAP_SECONDS: u64 = 2;

fn write_segment(path: &Path, seed: u64) -> WavStream {
    let samples = SEGMENT_SECONDS * 8000;
    let mut bytes = wav::header((samples * 2) as u32).to_vec();
    // A speech-like level: a wandering tone with noise, never clipping alone.
    let mut rng = fastrand::Rng::with_seed(seed);
    for n in 0..samples {
        let tone = ((n as f64 * (0.05 + seed as f64 * 0.01)).sin() * 6000.0) as i32;
        let noise = rng.i32(-2000..2000);
        bytes.extend_from_slice(&((tone + noise) as i16).to_le_bytes());
    }
    std::fs::write(path, bytes).expect("segment");
    WavStream {
        source: path.to_path_buf().into(),
        encoding: Encoding::Pcm16,
        sample_rate: 8000,
        data_offset: wav::HEADER_LEN,
        data_len: samples * 2,
    }
}

fn main() {
    let dir = tempfile::tempdir().expect("dir");
    let mut segments = Vec::new();
    let mut offsets = Vec::new();
    for i in 0..SEGMENTS {
        let path = dir.path().join(format!("segment-{i}.wav"));
        let offset = i * (SEGMENT_SECONDS - OVERLAP_SECONDS);
        segments.push(Segment::new(
            write_segment(&path, i + 1),
            offset * 8000,
            &[],
        ));
        offsets.push((path, offset));
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let cache = CallAudio::new(dir.path().join("cache"), 1 << 32, 2).expect("cache");

    let started = Instant::now();
    let file = runtime
        .block_on(cache.get("bench-call", "timeline", segments.clone()))
        .expect("cold build");
    let cold = started.elapsed();
    let out_bytes = std::fs::metadata(&file.path).expect("built").len();
    let started = Instant::now();
    let cached_runs = 100;
    for _ in 0..cached_runs {
        runtime
            .block_on(cache.get("bench-call", "timeline", segments.clone()))
            .expect("cached");
    }
    let cached = started.elapsed() / cached_runs;

    // sox: the same segments padded to their offsets and mixed (-m scales each input by 1/n
    // unless told not to: -v 1 keeps the levels as ours does).
    let sox_out = dir.path().join("sox.wav");
    let mut sox = Command::new("sox");
    sox.arg("-m");
    for (path, offset) in &offsets {
        sox.arg("-v")
            .arg("1")
            .arg(format!("|sox {} -p pad {offset}", path.display()));
    }
    // The same output as ours: 16-bit mono (sox's pipes carry 32-bit samples otherwise).
    sox.args(["-b", "16", "-c", "1"]).arg(&sox_out);
    let started = Instant::now();
    let status = sox.status().expect("sox (apt-get install sox)");
    let sox_time = started.elapsed();
    assert!(status.success(), "sox failed");
    let sox_bytes = std::fs::metadata(&sox_out).expect("sox output").len();

    let mb = out_bytes as f64 / 1e6;
    println!(
        "call assembly, {SEGMENTS} segments x {SEGMENT_SECONDS} s ({} s of call, {mb:.1} MB out):",
        file.samples / 8000
    );
    println!(
        "  ari-recorder  cold (first byte after the build) {:>8.1} ms  {:>6.0} MB/s",
        cold.as_secs_f64() * 1000.0,
        mb / cold.as_secs_f64()
    );
    println!(
        "  ari-recorder  cached (lookup before the first byte) {:>5.3} ms",
        cached.as_secs_f64() * 1000.0
    );
    println!(
        "  sox -m        (same segments, padded)            {:>8.1} ms  {:>6.0} MB/s  ({:.1} MB out)",
        sox_time.as_secs_f64() * 1000.0,
        sox_bytes as f64 / 1e6 / sox_time.as_secs_f64(),
        sox_bytes as f64 / 1e6
    );
}
