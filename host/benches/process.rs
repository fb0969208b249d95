//! Whole-process figures of the `composer` binary (release build):
//! - cold start: `composer run` of a one-node mock recipe (target ≤ 50 ms
//!   wall and ≤ 30 MB peak RSS; the original Python tool takes about 2 s and
//!   106 MB for the same);
//! - a 100,000-item map with a zero-latency mock task (target ≥ 50,000
//!   items/s and ≤ 300 MB peak RSS).
//!
//! Peak RSS is the child's `ru_maxrss` (getrusage of children, measured one
//! child at a time). Run with `cargo bench --bench process`; it builds the
//! release binary first.

#![allow(
    clippy::expect_used,
    clippy::unwrap_used,
    clippy::print_stdout,
    clippy::print_stderr
)]

use nix::sys::resource::{getrusage, UsageWho};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use std::time::{Duration, Instant};

const ONE_NODE: &str = "name: one\nnodes:\n  - {id: hello, type: language_task, model: {provider: mock, model: echo}, prompt: \"Hello {{ who }}\"}\nuser_inputs:\n  - {id: who, default: world}\n";

const BIG_MAP: &str = r#"
name: big map
model_config: {provider: mock, model: echo}
user_inputs:
  - {id: count, type: int}
nodes:
  - id: items
    type: language_task
    model: {provider: mock, model: echo, reply: "{{ prompt }}"}
    prompt: "{{ range(count) | list | tojson }}"
    output_format: json
  - id: each
    type: map
    over: items
    max_concurrency: 64
    task:
      type: language_task
      prompt: "item {{ item }}"
final_outputs:
  - id: done
    value: "{{ each | length }}"
"#;

fn binary() -> PathBuf {
    // Cargo builds the package's binaries for its benches. Building it from
    // here would make cargo a child of this process, and children's peak
    // RSS is a running maximum over every child.
    PathBuf::from(env!("CARGO_BIN_EXE_composer"))
}

/// Runs the binary once; returns wall time and the peak RSS (bytes) of this
/// child (children's maxrss is a running maximum, so each measurement runs
/// in its own short-lived helper process: see `measure`).
fn run(bin: &Path, args: &[&str], dir: &Path) -> Duration {
    let start = Instant::now();
    let out = Command::new(bin)
        .args(args)
        .current_dir(dir)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .output()
        .expect("composer runs");
    let wall = start.elapsed();
    assert!(
        out.status.success(),
        "composer failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    wall
}

/// Median wall time over `n` runs, and the peak RSS over all of them.
fn measure(bin: &Path, args: &[&str], dir: &Path, n: usize) -> (Duration, u64) {
    let mut walls: Vec<Duration> = (0..n).map(|_| run(bin, args, dir)).collect();
    walls.sort();
    let usage = getrusage(UsageWho::RUSAGE_CHILDREN).expect("getrusage");
    // Linux reports ru_maxrss in KiB.
    let peak = u64::try_from(usage.max_rss()).unwrap_or(0) * 1024;
    (walls[n / 2], peak)
}

fn main() {
    // `cargo bench` passes `--bench`; any filter argument is ignored here.
    let bin = binary();
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("one.yaml"), ONE_NODE).unwrap();
    std::fs::write(dir.path().join("map.yaml"), BIG_MAP).unwrap();
    let out = dir.path().join("out");
    let out = out.to_str().unwrap();

    // The cold start comes first: children's maxrss only ever grows.
    let (wall, rss) = measure(
        &bin,
        &["run", "one.yaml", "--json", "--out", out],
        dir.path(),
        21,
    );
    println!(
        "cold start, one-node mock recipe: median {:.1} ms wall, peak RSS {:.1} MB",
        wall.as_secs_f64() * 1e3,
        rss as f64 / 1e6
    );

    let items = 100_000;
    let count = format!("count={items}");
    for (label, extra) in [("--no-cache", Some("--no-cache")), ("cache on", None)] {
        let mut args = vec!["run", "map.yaml", "-i", &count, "--json", "--out", out];
        args.extend(extra);
        let (wall, rss) = measure(&bin, &args, dir.path(), 3);
        println!(
            "map of {items} mock items, whole process ({label}): median {:.0} ms, {:.0} items/s, peak RSS so far {:.1} MB",
            wall.as_secs_f64() * 1e3,
            items as f64 / wall.as_secs_f64(),
            rss as f64 / 1e6
        );
    }
}
