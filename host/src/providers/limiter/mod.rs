//! The process-wide rate limiter of one provider. A call waits for, in
//! order of what holds it back longest:
//! - a `Retry-After` the provider sent with a 429 (every call waits it out,
//!   not only the one that got it);
//! - the budgets the provider's headers report, per model (`headers`,
//!   `window::Window`);
//! - configured `calls_per_minute` / `tokens_per_minute`, buckets holding a
//!   minute's worth (`window::Bucket`); tokens are estimated before a call
//!   and corrected with the real usage after;
//! - a cap on calls in flight that halves on each 429 and grows back by one
//!   per success (AIMD). Until the first reply of the process, the cap is a
//!   first wave of `COLD_WAVE` calls: that reply's headers set the budgets
//!   before a fan-out can earn a storm of 429s, and a reply without them
//!   opens the cap at once.
//!
//! Without headers or a configured limit, nothing but the cap applies.
//!
//! All of it is one `State` behind one lock, plain numbers and times: what a
//! shared backend (Redis) would hold for a fleet of processes. Callers see
//! only the `Limiter` trait, so such a backend slots in beside
//! `RateLimiter`, the in-process one, without touching them.
//!
//! Built on tokio's clock (so tests can pause time) rather than a crate
//! with its own clock.

pub mod headers;
pub mod window;

use headers::{Budget, LimitReport, BUDGETS};
use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;
use tokio::sync::Notify;
use tokio::time::Instant;
use window::{Bucket, Window};

/// Calls a provider gets before its first reply in this process.
pub const COLD_WAVE: usize = 8;

/// What a call is expected to use, before it is made.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Cost {
    pub input_tokens: u64,
    pub output_tokens: u64,
}

impl Cost {
    pub fn tokens(tokens: u64) -> Cost {
        Cost {
            input_tokens: tokens,
            output_tokens: 0,
        }
    }

    pub fn total(&self) -> u64 {
        self.input_tokens + self.output_tokens
    }

    fn of(&self, budget: Budget) -> f64 {
        match budget {
            Budget::Requests => 1.0,
            Budget::Tokens => self.total() as f64,
            Budget::InputTokens => self.input_tokens as f64,
            Budget::OutputTokens => self.output_tokens as f64,
        }
    }
}

/// What one model's replies taught, and what of it is in flight.
#[derive(Debug, Default)]
struct Learned {
    windows: HashMap<Budget, Window>,
    in_flight: u32,
    tokens_in_flight: Cost,
}

impl Learned {
    fn in_flight_of(&self, budget: Budget) -> f64 {
        match budget {
            Budget::Requests => self.in_flight as f64,
            b => self.tokens_in_flight.of(b),
        }
    }
}

#[derive(Debug)]
struct State {
    calls: Option<Bucket>,
    tokens: Option<Bucket>,
    by_model: HashMap<String, Learned>,
    /// A 429's `Retry-After`, for every call.
    blocked_until: Option<Instant>,
    /// Calls in flight, capped by a limit that AIMD moves.
    limit: usize,
    max: usize,
    in_flight: usize,
    /// A reply was seen (the cold wave is over).
    warm: bool,
}

impl State {
    fn cap(&self) -> usize {
        if self.warm {
            self.limit
        } else {
            self.limit.min(COLD_WAVE)
        }
    }

    /// When a call of `cost` to `model` may go (`None`: now, budget-wise).
    fn ready_at(&mut self, model: &str, cost: Cost, now: Instant) -> Option<Instant> {
        let mut at: Option<Instant> = self.blocked_until.filter(|b| *b > now);
        let mut later = |t: Option<Instant>| {
            if let Some(t) = t {
                at = Some(at.map_or(t, |a| a.max(t)));
            }
        };
        if let Some(c) = self.calls.as_mut() {
            c.refill(now);
            let w = c.wait_for(1.0);
            later((!w.is_zero()).then(|| now + w));
        }
        if let Some(t) = self.tokens.as_mut() {
            t.refill(now);
            let w = t.wait_for(cost.total() as f64);
            later((!w.is_zero()).then(|| now + w));
        }
        if let Some(learned) = self.by_model.get_mut(model) {
            for (budget, w) in learned.windows.iter_mut() {
                later(w.ready_at(cost.of(*budget), now));
            }
        }
        at
    }

    fn take(&mut self, model: &str, cost: Cost) {
        if let Some(c) = self.calls.as_mut() {
            c.level -= 1.0;
        }
        if let Some(t) = self.tokens.as_mut() {
            t.level -= cost.total() as f64;
        }
        let learned = self.by_model.entry(model.to_string()).or_default();
        for (budget, w) in learned.windows.iter_mut() {
            w.take(cost.of(*budget));
        }
        learned.in_flight += 1;
        learned.tokens_in_flight.input_tokens += cost.input_tokens;
        learned.tokens_in_flight.output_tokens += cost.output_tokens;
        self.in_flight += 1;
    }
}

/// Where one provider's (or model's) rate-limit state lives: in this
/// process (`RateLimiter`), or in a store every process shares.
#[async_trait::async_trait]
pub trait Limiter: Send + Sync {
    /// Waits until one call to `model` of about `cost` may go, and takes a
    /// slot for it. Returns the slot and the time spent waiting for budgets
    /// (time waiting for a slot in flight is not a rate-limit wait).
    async fn acquire(&self, model: &str, cost: Cost) -> (Slot, Duration);
    /// What a reply said (`None`: it carried no headers we know, e.g. a
    /// call that is not HTTP). Any reply ends the cold wave.
    fn observe(&self, slot: &Slot, report: Option<&LimitReport>);
    /// A 429 that said how long to wait: every call waits it out.
    fn block_for(&self, wait: Duration);
    /// Corrects the token estimate with what the call really used.
    fn settle_tokens(&self, estimated: u64, actual: u64);
    /// A 429: fewer calls in flight (multiplicative decrease).
    fn on_rate_limited(&self);
    /// A success: one more call in flight (additive increase).
    fn on_success(&self);
    /// The calls allowed in flight once warm.
    fn concurrency_limit(&self) -> usize;
}

/// What frees a slot in its limiter's books: the model and the cost taken.
type Release = Box<dyn FnOnce(&str, Cost) + Send + Sync>;

/// A call's place in flight; dropping it frees the place.
pub struct Slot {
    pub model: String,
    pub cost: Cost,
    release: Option<Release>,
}

impl Slot {
    /// A slot that `release` frees (the backend's own bookkeeping).
    pub fn new(
        model: &str,
        cost: Cost,
        release: impl FnOnce(&str, Cost) + Send + Sync + 'static,
    ) -> Slot {
        Slot {
            model: model.to_string(),
            cost,
            release: Some(Box::new(release)),
        }
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        if let Some(release) = self.release.take() {
            release(&self.model, self.cost);
        }
    }
}

/// The in-process limiter: what this process's own calls taught and use.
pub struct RateLimiter {
    shared: Arc<Shared>,
}

/// The state and its wake-ups, shared with the slots handed out.
struct Shared {
    state: Mutex<State>,
    freed: Notify,
}

impl Shared {
    /// The state; a poisoned lock (a panic elsewhere) lets calls through
    /// rather than stopping every run.
    fn lock(&self) -> Option<MutexGuard<'_, State>> {
        self.state.lock().ok()
    }

    fn release(&self, model: &str, cost: Cost) {
        if let Some(mut s) = self.lock() {
            s.in_flight = s.in_flight.saturating_sub(1);
            if let Some(l) = s.by_model.get_mut(model) {
                l.in_flight = l.in_flight.saturating_sub(1);
                let t = &mut l.tokens_in_flight;
                t.input_tokens = t.input_tokens.saturating_sub(cost.input_tokens);
                t.output_tokens = t.output_tokens.saturating_sub(cost.output_tokens);
            }
        }
        self.freed.notify_waiters();
    }
}

impl RateLimiter {
    /// `None` for a limit means none is configured. `cold`: the provider's
    /// first calls go in a first wave (`COLD_WAVE`) until a reply is seen.
    pub fn new(
        calls_per_minute: Option<f64>,
        tokens_per_minute: Option<f64>,
        max_concurrency: usize,
        cold: bool,
    ) -> RateLimiter {
        let now = Instant::now();
        let bucket = |per_minute: Option<f64>| {
            per_minute
                .filter(|p| *p > 0.0 && p.is_finite())
                .map(|p| Bucket::new(p, now))
        };
        let state = State {
            calls: bucket(calls_per_minute),
            tokens: bucket(tokens_per_minute),
            by_model: HashMap::new(),
            blocked_until: None,
            limit: max_concurrency.max(1),
            max: max_concurrency.max(1),
            in_flight: 0,
            warm: !cold,
        };
        RateLimiter {
            shared: Arc::new(Shared {
                state: Mutex::new(state),
                freed: Notify::new(),
            }),
        }
    }

    /// What this process believes is left of a budget the provider reports
    /// for `model` (`None`: not reported). For metrics and tests.
    pub fn learned_remaining(&self, model: &str, budget: Budget) -> Option<f64> {
        let s = self.shared.lock()?;
        s.by_model.get(model)?.windows.get(&budget)?.remaining()
    }
}

#[async_trait::async_trait]
impl Limiter for RateLimiter {
    async fn acquire(&self, model: &str, cost: Cost) -> (Slot, Duration) {
        let shared = &self.shared;
        let mut waited = Duration::ZERO;
        loop {
            // Registered before the check, so a slot freed meanwhile wakes us.
            let freed = shared.freed.notified();
            let ready_at = {
                let Some(mut s) = shared.lock() else { break };
                let now = Instant::now();
                match s.ready_at(model, cost, now) {
                    Some(at) => Some(at),
                    None if s.in_flight < s.cap() => {
                        s.take(model, cost);
                        break;
                    }
                    None => None,
                }
            };
            match ready_at {
                Some(at) => {
                    let before = Instant::now();
                    tokio::time::sleep_until(at).await;
                    waited += before.elapsed();
                }
                None => freed.await,
            }
        }
        let owner = shared.clone();
        let slot = Slot::new(model, cost, move |model, cost| owner.release(model, cost));
        (slot, waited)
    }

    fn observe(&self, slot: &Slot, report: Option<&LimitReport>) {
        let Some(mut s) = self.shared.lock() else {
            return;
        };
        s.warm = true;
        if let Some(report) = report.filter(|r| r.has_windows()) {
            let now = Instant::now();
            let learned = s.by_model.entry(slot.model.clone()).or_default();
            for budget in BUDGETS {
                if let Some(w) = report.window(budget) {
                    let others = (learned.in_flight_of(budget) - slot.cost.of(budget)).max(0.0);
                    learned
                        .windows
                        .entry(budget)
                        .or_default()
                        .observe(w, others, now);
                }
            }
        }
        drop(s);
        // The cap may have opened.
        self.shared.freed.notify_waiters();
    }

    fn block_for(&self, wait: Duration) {
        if let Some(mut s) = self.shared.lock() {
            let until = Instant::now() + wait;
            s.blocked_until = Some(s.blocked_until.map_or(until, |b| b.max(until)));
        }
    }

    fn settle_tokens(&self, estimated: u64, actual: u64) {
        if let Some(mut s) = self.shared.lock() {
            if let Some(t) = s.tokens.as_mut() {
                t.level += estimated as f64 - actual as f64;
                t.level = t.level.min(t.capacity);
            }
        }
    }

    /// Halves the calls allowed in flight.
    fn on_rate_limited(&self) {
        if let Some(mut s) = self.shared.lock() {
            s.limit = (s.limit / 2).max(1);
        }
    }

    /// Allows one more call in flight, up to the configured maximum.
    fn on_success(&self) {
        if let Some(mut s) = self.shared.lock() {
            if s.limit < s.max {
                s.limit += 1;
            }
        }
        self.shared.freed.notify_waiters();
    }

    fn concurrency_limit(&self) -> usize {
        self.shared.lock().map(|s| s.limit).unwrap_or(1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use headers::WindowReport;

    #[tokio::test(start_paused = true)]
    async fn sixty_a_minute_lets_sixty_through_at_once_then_one_a_second() {
        let l = RateLimiter::new(Some(60.0), None, 1000, false);
        let start = Instant::now();
        for _ in 0..60 {
            let (_, waited) = l.acquire("m", Cost::default()).await;
            assert_eq!(waited, Duration::ZERO);
        }
        assert_eq!(start.elapsed(), Duration::ZERO);
        let (_, waited) = l.acquire("m", Cost::default()).await;
        assert_eq!(waited, Duration::from_secs(1));
        // 60 more take another minute, less the one second already waited.
        for _ in 0..60 {
            let _ = l.acquire("m", Cost::default()).await;
        }
        assert_eq!(start.elapsed(), Duration::from_secs(61));
    }

    #[tokio::test(start_paused = true)]
    async fn tokens_per_minute_burst_then_bound_big_calls() {
        let l = RateLimiter::new(None, Some(6_000.0), 1000, false);
        let start = Instant::now();
        // The first six go at once (a minute's worth), the next four at
        // 100 tokens a second: 40 s.
        for _ in 0..10 {
            let _ = l.acquire("m", Cost::tokens(1_000)).await;
        }
        assert_eq!(start.elapsed(), Duration::from_secs(40));
        // Larger than the bucket: waits until it is full, then goes.
        let (_, waited) = l.acquire("m", Cost::tokens(10_000)).await;
        assert_eq!(waited, Duration::from_secs(60));
    }

    #[tokio::test(start_paused = true)]
    async fn nothing_is_limited_by_default() {
        let l = RateLimiter::new(None, None, 10_000, false);
        let start = Instant::now();
        let mut permits = Vec::new();
        for _ in 0..5_000 {
            permits.push(l.acquire("m", Cost::tokens(100_000)).await.0);
        }
        assert_eq!(start.elapsed(), Duration::ZERO);
    }

    #[tokio::test(start_paused = true)]
    async fn headers_hold_calls_until_the_reset() {
        let l = RateLimiter::new(None, None, 100, false);
        let report = LimitReport {
            requests: Some(WindowReport {
                limit: Some(5),
                remaining: Some(2),
                reset: Some(Duration::from_secs(3)),
            }),
            ..LimitReport::default()
        };
        let (p, _) = l.acquire("gpt", Cost::default()).await;
        l.observe(&p, Some(&report));
        drop(p);
        assert_eq!(l.learned_remaining("gpt", Budget::Requests), Some(2.0));
        let start = Instant::now();
        let _a = l.acquire("gpt", Cost::default()).await;
        let _b = l.acquire("gpt", Cost::default()).await;
        assert_eq!(start.elapsed(), Duration::ZERO);
        // Budgets are per model.
        let _other = l.acquire("other", Cost::default()).await;
        assert_eq!(start.elapsed(), Duration::ZERO);
        let (_, waited) = l.acquire("gpt", Cost::default()).await;
        assert_eq!(waited, Duration::from_secs(3));
    }

    #[tokio::test(start_paused = true)]
    async fn a_retry_after_holds_every_call() {
        let l = RateLimiter::new(None, None, 100, false);
        l.block_for(Duration::from_secs(2));
        let (_, waited) = l.acquire("m", Cost::default()).await;
        assert_eq!(waited, Duration::from_secs(2));
        let (_, waited) = l.acquire("m", Cost::default()).await;
        assert_eq!(waited, Duration::ZERO);
    }

    #[tokio::test(start_paused = true)]
    async fn a_cold_provider_sends_a_first_wave_then_opens() {
        let l = RateLimiter::new(None, None, 64, true);
        let mut wave = Vec::new();
        for _ in 0..COLD_WAVE {
            wave.push(l.acquire("m", Cost::default()).await.0);
        }
        // The next one waits for a reply.
        let next = tokio::time::timeout(Duration::from_secs(5), l.acquire("m", Cost::default()));
        assert!(next.await.is_err(), "a ninth call went before any reply");
        // A reply without headers opens the cap to its maximum.
        l.observe(&wave[0], None);
        for _ in 0..(64 - COLD_WAVE) {
            wave.push(l.acquire("m", Cost::default()).await.0);
        }
        assert_eq!(wave.len(), 64);
    }

    #[tokio::test]
    async fn aimd_halves_on_429_and_recovers() {
        let l = RateLimiter::new(None, None, 16, false);
        assert_eq!(l.concurrency_limit(), 16);
        l.on_rate_limited();
        l.on_rate_limited();
        assert_eq!(l.concurrency_limit(), 4);
        for _ in 0..3 {
            l.on_success();
        }
        assert_eq!(l.concurrency_limit(), 7);
        for _ in 0..100 {
            l.on_success();
        }
        assert_eq!(l.concurrency_limit(), 16);
    }
}
