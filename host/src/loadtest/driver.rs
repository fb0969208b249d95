//! The users of a load test: one tokio task each, looping over runs until
//! the test's stop, all sharing one target (one `Composer` or one HTTP
//! client pool) and one aggregate. No thread per run or per user.

use super::report::{Aggregate, Around, LoadReport};
use super::spec::{LoadSpec, Stop};
use super::target::{Outcome, Target};
use super::{process, LoadError};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;
use tokio_util::sync::CancellationToken;

/// Counters to show progress while the test runs, and a way to stop it
/// early (runs in flight are let finish and counted).
#[derive(Default)]
pub struct Live {
    pub started: AtomicU64,
    pub finished: AtomicU64,
    pub failed: AtomicU64,
    stop: CancellationToken,
}

impl Live {
    pub fn new() -> Arc<Live> {
        Arc::new(Live::default())
    }

    /// Start no more runs.
    pub fn stop(&self) {
        self.stop.cancel();
    }

    pub fn in_flight(&self) -> u64 {
        self.started
            .load(Ordering::Relaxed)
            .saturating_sub(self.finished.load(Ordering::Relaxed))
    }
}

struct Shared {
    target: Arc<dyn Target>,
    spec: LoadSpec,
    live: Arc<Live>,
    next: AtomicU64,
    deadline: Option<Instant>,
    aggregate: Mutex<Aggregate>,
    error: Mutex<Option<LoadError>>,
}

impl Shared {
    /// The index of the next run, or None when the test is over.
    fn claim(&self) -> Option<u64> {
        if self.live.stop.is_cancelled() || self.deadline.is_some_and(|d| Instant::now() >= d) {
            return None;
        }
        let i = self.next.fetch_add(1, Ordering::Relaxed);
        match self.spec.stop {
            Stop::Iterations(n) if i >= n => None,
            _ => Some(i),
        }
    }
}

/// Runs the test and reports it. Must be called inside a tokio runtime.
pub async fn drive(
    target: Arc<dyn Target>,
    spec: LoadSpec,
    live: Arc<Live>,
) -> Result<LoadReport, LoadError> {
    let started = Instant::now();
    let cpu_before = process::cpu_secs();
    let deadline = match spec.stop {
        Stop::Duration(d) => Some(started + d),
        Stop::Iterations(_) => None,
    };
    let users = spec.users.max(1);
    let shared = Arc::new(Shared {
        target,
        spec,
        live,
        next: AtomicU64::new(0),
        deadline,
        aggregate: Mutex::new(Aggregate::new()?),
        error: Mutex::new(None),
    });
    let mut tasks = Vec::with_capacity(users);
    for k in 0..users {
        let shared = shared.clone();
        tasks.push(tokio::spawn(user(shared, k)));
    }
    for task in tasks {
        // A user task that panicked lost at most its own run.
        let _ = task.await;
    }
    let elapsed = started.elapsed();
    let cpu_secs = match (cpu_before, process::cpu_secs()) {
        (Some(a), Some(b)) => Some((b - a).max(0.0)),
        _ => None,
    };
    if let Some(e) = shared.error.lock().ok().and_then(|mut e| e.take()) {
        return Err(e);
    }
    let around = Around {
        mode: shared.target.mode(),
        recipe: shared.target.recipe(),
        users,
        ramp_up: shared.spec.ramp_up,
        elapsed,
        peak_rss_bytes: process::peak_rss_bytes(),
        cpu_secs,
        cores: process::cores(),
    };
    let report = match shared.aggregate.lock() {
        Ok(a) => a.report(around),
        Err(poisoned) => poisoned.into_inner().report(around),
    };
    Ok(report)
}

async fn user(shared: Arc<Shared>, k: usize) {
    let delay = shared.spec.start_delay(k);
    if !delay.is_zero() {
        tokio::select! {
            () = tokio::time::sleep(delay) => {}
            () = shared.live.stop.cancelled() => return,
        }
    }
    while let Some(i) = shared.claim() {
        let inputs = shared.spec.inputs.for_run(i);
        shared.live.started.fetch_add(1, Ordering::Relaxed);
        let result = shared.target.run_once(inputs).await;
        shared.live.finished.fetch_add(1, Ordering::Relaxed);
        match result {
            Ok(sample) => {
                if matches!(sample.outcome, Outcome::Failed(_)) {
                    shared.live.failed.fetch_add(1, Ordering::Relaxed);
                }
                if let Ok(mut a) = shared.aggregate.lock() {
                    a.add(&sample);
                }
            }
            Err(e) => {
                if let Ok(mut slot) = shared.error.lock() {
                    slot.get_or_insert(e);
                }
                shared.live.stop();
                return;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::loadtest::spec::InputSets;
    use crate::loadtest::target::Sample;
    use async_trait::async_trait;
    use std::time::Duration;

    /// Fails every third run (by its `n` input).
    struct Counting;

    #[async_trait]
    impl Target for Counting {
        async fn run_once(
            &self,
            inputs: serde_json::Map<String, serde_json::Value>,
        ) -> Result<Sample, LoadError> {
            tokio::task::yield_now().await;
            let fail = inputs.get("fail").and_then(|v| v.as_bool()) == Some(true);
            let outcome = if fail {
                Outcome::Failed("provider".into())
            } else {
                Outcome::Succeeded
            };
            Ok(Sample::new(outcome, Duration::from_micros(50)))
        }
        fn mode(&self) -> &'static str {
            "local"
        }
        fn recipe(&self) -> String {
            "counting".into()
        }
    }

    fn spec(users: usize, stop: Stop) -> LoadSpec {
        let lines = InputSets::parse_lines(
            "{\"fail\": false}\n{\"fail\": false}\n{\"fail\": true}\n",
            std::path::Path::new("x"),
        )
        .unwrap();
        LoadSpec {
            users,
            stop,
            ramp_up: Duration::ZERO,
            inputs: InputSets {
                base: Default::default(),
                lines,
            },
        }
    }

    #[tokio::test]
    async fn iterations_are_shared_by_the_users() {
        let r = drive(
            Arc::new(Counting),
            spec(7, Stop::Iterations(30)),
            Live::new(),
        )
        .await
        .unwrap();
        assert_eq!(r.runs, 30);
        assert_eq!(r.failures_by_kind["provider"], 10);
        assert_eq!(r.successes + r.failures, r.runs);
    }

    #[tokio::test]
    async fn a_duration_stops_the_test() {
        let r = drive(
            Arc::new(Counting),
            spec(3, Stop::Duration(Duration::from_millis(100))),
            Live::new(),
        )
        .await
        .unwrap();
        assert!(r.runs > 0);
    }

    struct Broken;

    #[async_trait]
    impl Target for Broken {
        async fn run_once(
            &self,
            _inputs: serde_json::Map<String, serde_json::Value>,
        ) -> Result<Sample, LoadError> {
            Err(LoadError::NotStarted("no such function".into()))
        }
        fn mode(&self) -> &'static str {
            "local"
        }
        fn recipe(&self) -> String {
            "broken".into()
        }
    }

    #[tokio::test]
    async fn a_target_error_stops_every_user() {
        let e = drive(
            Arc::new(Broken),
            spec(50, Stop::Iterations(1_000_000)),
            Live::new(),
        )
        .await
        .unwrap_err();
        assert!(e.to_string().contains("no such function"), "{e}");
    }
}
