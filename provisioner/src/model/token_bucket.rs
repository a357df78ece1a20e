//! A token bucket: how many reports of one kind to make in a burst.
//!
//! A pod gets a `Nominated` Event naming the NodeClaim launched for it.
//! Under a burst of thousands of pods that is thousands of writes the API
//! server makes while it is busy binding and starting those same pods
//! (docs/benchmarks.md, "Nominated Events sampled"). Karpenter samples its
//! `Nominated` Events the same way, at 5 a second in bursts of 10.

use k8s_openapi::jiff::Timestamp;

/// Up to `burst` at once, then `per_second`.
#[derive(Clone, Debug, PartialEq)]
pub struct TokenBucket {
    burst: u32,
    per_second: f64,
    tokens: f64,
    refilled_at: Option<Timestamp>,
}

impl TokenBucket {
    /// A full bucket. A rate below zero counts as zero.
    pub fn new(burst: u32, per_second: f64) -> Self {
        TokenBucket {
            burst,
            per_second: per_second.max(0.0),
            tokens: f64::from(burst),
            refilled_at: None,
        }
    }

    /// Takes a token if one is there at `now`. A clock that steps back
    /// refills nothing rather than failing.
    pub fn try_take(&mut self, now: Timestamp) -> bool {
        let elapsed = match self.refilled_at {
            Some(at) if now > at => now.duration_since(at).as_secs_f64(),
            _ => 0.0,
        };
        self.tokens = (self.tokens + elapsed * self.per_second).min(f64::from(self.burst));
        self.refilled_at = Some(self.refilled_at.map_or(now, |at| at.max(now)));
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }

    /// Takes up to `wanted` tokens at `now`; returns how many it got.
    pub fn take_up_to(&mut self, wanted: usize, now: Timestamp) -> usize {
        (0..wanted).take_while(|_| self.try_take(now)).count()
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use proptest::prelude::*;

    use super::*;

    fn at(millis: i64) -> Timestamp {
        Timestamp::from_millisecond(1_800_000_000_000 + millis).unwrap_or(Timestamp::UNIX_EPOCH)
    }

    fn taken(bucket: &mut TokenBucket, now: Timestamp, tries: usize) -> usize {
        (0..tries).filter(|_| bucket.try_take(now)).count()
    }

    #[test]
    fn take_up_to_takes_what_is_there() {
        let mut bucket = TokenBucket::new(100, 10.0);
        assert_eq!(bucket.take_up_to(50, at(0)), 50);
        assert_eq!(bucket.take_up_to(80, at(0)), 50);
        assert_eq!(bucket.take_up_to(80, at(0)), 0);
        assert_eq!(bucket.take_up_to(3, at(500)), 3);
        assert_eq!(bucket.take_up_to(3, at(500)), 2);
    }

    #[test]
    fn a_burst_gets_the_bucket_and_then_the_rate() {
        let mut bucket = TokenBucket::new(100, 10.0);
        assert_eq!(taken(&mut bucket, at(0), 500), 100);
        assert_eq!(taken(&mut bucket, at(999), 500), 9);
        assert_eq!(
            taken(&mut bucket, at(60_000), 500),
            100,
            "refills to the burst, no more"
        );
    }

    #[test]
    fn a_clock_stepping_back_refills_nothing() {
        let mut bucket = TokenBucket::new(2, 1.0);
        assert_eq!(taken(&mut bucket, at(10_000), 5), 2);
        assert_eq!(taken(&mut bucket, at(0), 5), 0);
        assert_eq!(taken(&mut bucket, at(10_500), 5), 0);
        assert_eq!(taken(&mut bucket, at(11_000), 5), 1);
    }

    proptest! {
        /// Never more than the burst plus the rate over the time passed;
        /// and calls spaced at the rate all get through.
        #[test]
        fn takes_are_bounded_by_burst_and_rate(
            burst in 0u32..50,
            per_second in 0.0f64..100.0,
            steps in proptest::collection::vec((0u64..2_000, 1usize..30), 1..40),
        ) {
            let mut bucket = TokenBucket::new(burst, per_second);
            let mut now = at(0);
            let mut total = 0usize;
            for (i, (gap, tries)) in steps.iter().enumerate() {
                now += Duration::from_millis(*gap);
                total += if i % 2 == 0 {
                    taken(&mut bucket, now, *tries)
                } else {
                    bucket.take_up_to(*tries, now)
                };
            }
            let elapsed = now.duration_since(at(0)).as_secs_f64();
            let bound = f64::from(burst) + per_second * elapsed;
            prop_assert!(total as f64 <= bound + 1e-6, "{total} taken, bound {bound}");
        }

        #[test]
        fn calls_at_the_rate_all_get_through(per_second in 1u32..50, calls in 1usize..200) {
            let mut bucket = TokenBucket::new(1, f64::from(per_second));
            let gap = Duration::from_micros(1_000_000 / u64::from(per_second) + 1);
            let mut now = at(0);
            for _ in 0..calls {
                prop_assert!(bucket.try_take(now));
                now += gap;
            }
        }
    }
}
