//! The process-wide rate limiter of one provider: calls per minute and
//! tokens per minute (estimated before a call, corrected with the real
//! usage after), and an AIMD cap on calls in flight that halves on each
//! 429 and grows back by one per success.
//!
//! Built on tokio's clock (so tests can pause time) rather than a crate
//! with its own clock.

use std::sync::Mutex;
use std::time::Duration;
use tokio::sync::Notify;
use tokio::time::Instant;

/// A bucket that refills continuously and may go into debt: a request
/// larger than the bucket waits until the bucket is full, then goes out and
/// leaves the debt for the next ones to wait off. Its burst is one second's
/// worth, so 60 calls a minute are spread one a second, not sent at once.
#[derive(Debug)]
struct Bucket {
    per_sec: f64,
    capacity: f64,
    level: f64,
    at: Instant,
}

impl Bucket {
    fn new(per_minute: f64) -> Bucket {
        let per_sec = per_minute / 60.0;
        let capacity = per_sec.max(1.0);
        Bucket {
            per_sec,
            capacity,
            level: capacity,
            at: Instant::now(),
        }
    }

    fn refill(&mut self, now: Instant) {
        let dt = now.saturating_duration_since(self.at).as_secs_f64();
        self.level = (self.level + dt * self.per_sec).min(self.capacity);
        self.at = now;
    }

    /// How long until `amount` may be taken (zero: now).
    fn wait_for(&self, amount: f64) -> Duration {
        // A debt-free bucket serves anything; otherwise wait for the level
        // to cover the request (or, for a request larger than the bucket,
        // to be full).
        let needed = amount.min(self.capacity);
        if self.level >= needed || self.per_sec <= 0.0 {
            return Duration::ZERO;
        }
        Duration::from_secs_f64((needed - self.level) / self.per_sec)
    }
}

#[derive(Debug)]
struct Buckets {
    calls: Option<Bucket>,
    tokens: Option<Bucket>,
}

/// Calls in flight, capped by a limit that AIMD moves.
#[derive(Debug)]
struct Flight {
    limit: usize,
    max: usize,
    in_flight: usize,
}

#[derive(Debug)]
pub struct RateLimiter {
    buckets: Mutex<Buckets>,
    flight: Mutex<Flight>,
    freed: Notify,
}

/// A call slot; dropping it frees the slot.
pub struct Permit<'a> {
    limiter: &'a RateLimiter,
}

impl Drop for Permit<'_> {
    fn drop(&mut self) {
        if let Ok(mut f) = self.limiter.flight.lock() {
            f.in_flight = f.in_flight.saturating_sub(1);
        }
        self.limiter.freed.notify_waiters();
    }
}

impl RateLimiter {
    /// `None` for a limit means unlimited.
    pub fn new(
        calls_per_minute: Option<f64>,
        tokens_per_minute: Option<f64>,
        max_concurrency: usize,
    ) -> RateLimiter {
        RateLimiter {
            buckets: Mutex::new(Buckets {
                calls: calls_per_minute.filter(|c| *c > 0.0).map(Bucket::new),
                tokens: tokens_per_minute.filter(|t| *t > 0.0).map(Bucket::new),
            }),
            flight: Mutex::new(Flight {
                limit: max_concurrency.max(1),
                max: max_concurrency.max(1),
                in_flight: 0,
            }),
            freed: Notify::new(),
        }
    }

    /// Waits until one call of about `tokens` tokens may go, and takes a
    /// slot for it. Returns the slot and the time spent waiting.
    pub async fn acquire(&self, tokens: u64) -> (Permit<'_>, Duration) {
        let start = Instant::now();
        loop {
            let wait = {
                let Ok(mut b) = self.buckets.lock() else {
                    break;
                };
                let now = Instant::now();
                let mut wait = Duration::ZERO;
                if let Some(c) = b.calls.as_mut() {
                    c.refill(now);
                    wait = wait.max(c.wait_for(1.0));
                }
                if let Some(t) = b.tokens.as_mut() {
                    t.refill(now);
                    wait = wait.max(t.wait_for(tokens as f64));
                }
                if wait.is_zero() {
                    if let Some(c) = b.calls.as_mut() {
                        c.level -= 1.0;
                    }
                    if let Some(t) = b.tokens.as_mut() {
                        t.level -= tokens as f64;
                    }
                }
                wait
            };
            if wait.is_zero() {
                break;
            }
            tokio::time::sleep(wait).await;
        }
        loop {
            let freed = self.freed.notified();
            {
                if let Ok(mut f) = self.flight.lock() {
                    if f.in_flight < f.limit {
                        f.in_flight += 1;
                        break;
                    }
                } else {
                    break;
                }
            }
            freed.await;
        }
        (Permit { limiter: self }, start.elapsed())
    }

    /// Corrects the token estimate with what the call really used.
    pub fn settle_tokens(&self, estimated: u64, actual: u64) {
        if let Ok(mut b) = self.buckets.lock() {
            if let Some(t) = b.tokens.as_mut() {
                t.level += estimated as f64 - actual as f64;
                t.level = t.level.min(t.capacity);
            }
        }
    }

    /// A 429: halve the calls allowed in flight (multiplicative decrease).
    pub fn on_rate_limited(&self) {
        if let Ok(mut f) = self.flight.lock() {
            f.limit = (f.limit / 2).max(1);
        }
    }

    /// A success: allow one more call in flight (additive increase).
    pub fn on_success(&self) {
        if let Ok(mut f) = self.flight.lock() {
            if f.limit < f.max {
                f.limit += 1;
            }
        }
        self.freed.notify_waiters();
    }

    /// The calls allowed in flight now.
    pub fn concurrency_limit(&self) -> usize {
        self.flight.lock().map(|f| f.limit).unwrap_or(1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn sixty_a_minute_spreads_120_calls_over_two_minutes() {
        let l = RateLimiter::new(Some(60.0), None, 1000);
        let start = Instant::now();
        for _ in 0..120 {
            let _ = l.acquire(0).await;
        }
        let took = start.elapsed().as_secs_f64();
        assert!((115.0..=121.0).contains(&took), "took {took}s");
    }

    #[tokio::test(start_paused = true)]
    async fn tokens_per_minute_bound_big_calls() {
        let l = RateLimiter::new(None, Some(6_000.0), 1000);
        let start = Instant::now();
        // 100 tokens a second: ten calls of 1,000 tokens take ~90 s.
        for _ in 0..10 {
            let _ = l.acquire(1_000).await;
        }
        let took = start.elapsed().as_secs_f64();
        assert!((80.0..=100.0).contains(&took), "took {took}s");
    }

    #[tokio::test]
    async fn aimd_halves_on_429_and_recovers() {
        let l = RateLimiter::new(None, None, 16);
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
