//! A token bucket: `burst` tokens, refilled at `rate` per second.
//!
//! Never panics, whatever the rate: `Config::validate` bounds the rates,
//! and the arithmetic here is checked anyway (a NaN, zero or tiny rate
//! only means the longest wait).

use std::time::Duration;

use tokio::time::Instant;

/// The longest wait `take` reports: longer ones mean "not in any useful
/// time" to a client.
pub const MAX_WAIT: Duration = Duration::from_secs(24 * 3600);

#[derive(Debug, Clone)]
pub struct TokenBucket {
    rate: f64,
    burst: f64,
    tokens: f64,
    last: Instant,
}

impl TokenBucket {
    pub fn new(rate: f64, burst: u32, now: Instant) -> TokenBucket {
        TokenBucket {
            rate,
            burst: f64::from(burst),
            tokens: f64::from(burst),
            last: now,
        }
    }

    /// True once the bucket has refilled to `burst`: forgetting it then
    /// gives its user nothing they would not have had anyway.
    pub fn is_full(&self, now: Instant) -> bool {
        let elapsed = now.saturating_duration_since(self.last).as_secs_f64();
        self.tokens + elapsed * self.rate >= self.burst
    }

    /// Takes one token, or says how long until one is available.
    pub fn take(&mut self, now: Instant) -> Result<(), Duration> {
        let elapsed = now.saturating_duration_since(self.last).as_secs_f64();
        self.tokens = (self.tokens + elapsed * self.rate).min(self.burst);
        self.last = now;
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            Ok(())
        } else {
            let wait = Duration::try_from_secs_f64((1.0 - self.tokens) / self.rate);
            Err(wait.map_or(MAX_WAIT, |wait| wait.min(MAX_WAIT)))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn refills_at_rate() {
        let mut bucket = TokenBucket::new(2.0, 3, Instant::now());
        for _ in 0..3 {
            assert!(bucket.take(Instant::now()).is_ok());
        }
        let wait = bucket.take(Instant::now()).unwrap_err();
        assert_eq!(wait, Duration::from_millis(500));
        tokio::time::advance(Duration::from_millis(499)).await;
        assert!(bucket.take(Instant::now()).is_err());
        tokio::time::advance(Duration::from_millis(2)).await;
        assert!(bucket.take(Instant::now()).is_ok());
        tokio::time::advance(Duration::from_secs(60)).await;
        for _ in 0..3 {
            assert!(
                bucket.take(Instant::now()).is_ok(),
                "refills up to burst only"
            );
        }
        assert!(bucket.take(Instant::now()).is_err());
    }

    #[tokio::test(start_paused = true)]
    async fn absurd_rates_do_not_panic() {
        for rate in [
            1e-300,
            0.0,
            -1.0,
            f64::NAN,
            f64::INFINITY,
            f64::MIN_POSITIVE,
            1e300,
        ] {
            let mut bucket = TokenBucket::new(rate, 1, Instant::now());
            let _ = bucket.take(Instant::now());
            for _ in 0..3 {
                match bucket.take(Instant::now()) {
                    Ok(()) => {}
                    Err(wait) => assert!(wait <= MAX_WAIT, "rate {rate}: {wait:?}"),
                }
                tokio::time::advance(Duration::from_secs(3600)).await;
            }
            let _ = bucket.is_full(Instant::now());
        }
    }
}
