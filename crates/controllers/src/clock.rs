//! The time source of controllers whose decisions follow the wall clock (CronJob).
//! Tests run a scaled clock: it starts at an origin and runs `rate` times faster than
//! real time, so a `* * * * *` schedule fires every real second instead of every minute.

use std::time::{Duration, Instant};

use k8s_openapi::jiff::Timestamp;

/// Real time, or a scaled clock for tests; delays the controller waits for are
/// converted back to real time with [`Clock::real_duration`].
#[derive(Clone, Debug, Default)]
pub struct Clock {
    scaled: Option<Scaled>,
}

#[derive(Clone, Debug)]
struct Scaled {
    origin: Timestamp,
    started: Instant,
    rate: u32,
}

impl Clock {
    /// The system clock.
    pub fn real() -> Self {
        Clock { scaled: None }
    }

    /// A clock reading `origin` now and advancing `rate` seconds per real second.
    pub fn scaled(origin: Timestamp, rate: u32) -> Self {
        Clock {
            scaled: Some(Scaled {
                origin,
                started: Instant::now(),
                rate: rate.max(1),
            }),
        }
    }

    pub fn now(&self) -> Timestamp {
        match &self.scaled {
            None => Timestamp::now(),
            Some(s) => {
                let elapsed = s.started.elapsed().saturating_mul(s.rate);
                s.origin.checked_add(elapsed).unwrap_or(Timestamp::MAX)
            }
        }
    }

    /// The real time it takes for `d` to pass on this clock.
    pub fn real_duration(&self, d: Duration) -> Duration {
        match &self.scaled {
            None => d,
            Some(s) => d / s.rate,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scaled_clock_runs_faster_and_converts_delays_back() {
        let origin = Timestamp::from_second(1_000_000).expect("ts");
        let clock = Clock::scaled(origin, 60);
        let now = clock.now();
        assert!(now >= origin);
        assert!(now < origin + Duration::from_secs(60));
        assert_eq!(
            clock.real_duration(Duration::from_secs(60)),
            Duration::from_secs(1)
        );
        assert_eq!(
            Clock::real().real_duration(Duration::from_secs(5)),
            Duration::from_secs(5)
        );
    }
}
