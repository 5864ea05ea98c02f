//! A token bucket: `burst` tokens, refilled at `rate` per second.

use std::time::Duration;

use tokio::time::Instant;

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
            Err(Duration::from_secs_f64((1.0 - self.tokens) / self.rate))
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
}
