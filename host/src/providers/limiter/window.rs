//! The two kinds of budget the limiter keeps: a configured `Bucket`
//! (`calls_per_minute`, `tokens_per_minute`) and a `Window` learned from the
//! provider's headers.

use super::headers::WindowReport;
use std::time::Duration;
use tokio::time::Instant;

/// A configured limit: a bucket that holds a minute's worth and refills
/// continuously, so a burst up to the whole budget goes at once and later
/// calls go at the rate. It may go into debt: a request larger than the
/// bucket waits until the bucket is full, then goes, and the next ones wait
/// the debt off.
#[derive(Debug)]
pub struct Bucket {
    per_sec: f64,
    pub capacity: f64,
    pub level: f64,
    at: Instant,
}

impl Bucket {
    pub fn new(per_minute: f64, now: Instant) -> Bucket {
        Bucket {
            per_sec: per_minute / 60.0,
            capacity: per_minute,
            level: per_minute,
            at: now,
        }
    }

    pub fn refill(&mut self, now: Instant) {
        let dt = now.saturating_duration_since(self.at).as_secs_f64();
        self.level = (self.level + dt * self.per_sec).min(self.capacity);
        self.at = now;
    }

    /// How long until `amount` may be taken (zero: now).
    pub fn wait_for(&self, amount: f64) -> Duration {
        let needed = amount.min(self.capacity);
        if self.level >= needed || self.per_sec <= 0.0 {
            return Duration::ZERO;
        }
        Duration::from_secs_f64((needed - self.level) / self.per_sec)
    }
}

/// A budget the provider reports (requests or tokens of one model).
///
/// The local view is conservative: a reply's `remaining` minus what this
/// process has in flight besides that request (those may have been counted
/// after it), and never raised by a later reply of the same period (replies
/// come back out of order). When the provider's reset time passes, the
/// budget is assumed full again until replies say otherwise, and the next
/// reset is guessed from the last reported one. That is exact for fixed
/// windows, and for the providers' token buckets (whose reset is "full
/// again") it gives the same calls per minute, in bursts.
#[derive(Debug)]
pub struct Window {
    limit: Option<f64>,
    /// `INFINITY` until a reply says.
    remaining: f64,
    reset_at: Option<Instant>,
    /// `reset_at` is a guess (the last period, repeated), not reported.
    guessed: bool,
    period: Duration,
}

impl Default for Window {
    fn default() -> Self {
        Window {
            limit: None,
            remaining: f64::INFINITY,
            reset_at: None,
            guessed: false,
            period: Duration::ZERO,
        }
    }
}

impl Window {
    /// A new period started: the budget is full again.
    fn roll(&mut self, now: Instant) {
        if let Some(at) = self.reset_at {
            if now >= at {
                self.remaining = self.limit.unwrap_or(f64::INFINITY);
                self.reset_at = (!self.period.is_zero()).then(|| now + self.period);
                self.guessed = true;
            }
        }
    }

    /// A reply's report; `others` is what this process had in flight on
    /// this budget besides the reply's own request.
    pub fn observe(&mut self, report: &WindowReport, others: f64, now: Instant) {
        self.roll(now);
        if let Some(limit) = report.limit {
            self.limit = Some(limit as f64);
        }
        if let Some(reset) = report.reset {
            let at = now + reset;
            self.period = reset;
            self.reset_at = match self.reset_at {
                Some(current) if !self.guessed && current > now => Some(current.max(at)),
                _ => Some(at),
            };
            self.guessed = false;
        }
        if let Some(remaining) = report.remaining {
            let estimate = (remaining as f64 - others).max(0.0);
            self.remaining = self.remaining.min(estimate);
        }
    }

    /// When `amount` may be taken: `None` now, else the reset to wait for.
    /// Without a known reset nothing is held back (the provider's 429 and
    /// `Retry-After` take over).
    pub fn ready_at(&mut self, amount: f64, now: Instant) -> Option<Instant> {
        self.roll(now);
        // A request larger than the whole budget goes when it is full.
        let needed = amount.min(self.limit.unwrap_or(f64::INFINITY));
        if self.remaining >= needed {
            return None;
        }
        self.reset_at.filter(|at| *at > now)
    }

    pub fn take(&mut self, amount: f64) {
        if self.remaining.is_finite() {
            self.remaining -= amount;
        }
    }

    /// The budget left as this process sees it (`None`: not reported).
    pub fn remaining(&self) -> Option<f64> {
        self.remaining.is_finite().then_some(self.remaining)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report(limit: u64, remaining: u64, reset_ms: u64) -> WindowReport {
        WindowReport {
            limit: Some(limit),
            remaining: Some(remaining),
            reset: Some(Duration::from_millis(reset_ms)),
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_window_holds_calls_until_its_reset_then_is_full() {
        let now = Instant::now();
        let mut w = Window::default();
        assert_eq!(
            w.ready_at(1.0, now),
            None,
            "unknown budgets do not hold back"
        );
        // 3 left, 2 more of ours in flight: one may go.
        w.observe(&report(20, 3, 1000), 2.0, now);
        assert_eq!(w.remaining(), Some(1.0));
        assert_eq!(w.ready_at(1.0, now), None);
        w.take(1.0);
        assert_eq!(w.ready_at(1.0, now), Some(now + Duration::from_secs(1)));
        // A late reply of the same period does not raise the budget.
        w.observe(&report(20, 10, 900), 0.0, now);
        assert_eq!(w.ready_at(1.0, now), Some(now + Duration::from_secs(1)));
        // After the reset: full, and the next reset is guessed.
        let later = now + Duration::from_secs(1);
        assert_eq!(w.ready_at(1.0, later), None);
        assert_eq!(w.remaining(), Some(20.0));
        for _ in 0..20 {
            w.take(1.0);
        }
        assert_eq!(
            w.ready_at(1.0, later),
            Some(later + Duration::from_millis(900))
        );
        // A reply of the new period replaces the guess.
        w.observe(&report(20, 0, 500), 0.0, later);
        assert_eq!(
            w.ready_at(1.0, later),
            Some(later + Duration::from_millis(500))
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_bucket_bursts_a_minute_then_refills_at_the_rate() {
        let now = Instant::now();
        let mut b = Bucket::new(60.0, now);
        for _ in 0..60 {
            assert_eq!(b.wait_for(1.0), Duration::ZERO);
            b.level -= 1.0;
        }
        assert_eq!(b.wait_for(1.0), Duration::from_secs(1));
        b.refill(now + Duration::from_millis(500));
        assert_eq!(b.wait_for(1.0), Duration::from_millis(500));
    }
}
