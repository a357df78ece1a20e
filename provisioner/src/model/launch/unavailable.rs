//! Offerings a capacity error ruled out, for a while. The clock is injected
//! (every method takes `now`) so the expiry is testable.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use spotwright_solver::model::CapacityType;

use super::errors::{ErrorClass, OverrideError};

/// How long a capacity error rules an offering out (Karpenter's default).
pub const UNAVAILABLE_TTL: Duration = Duration::from_secs(3 * 60);

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct OfferingKey {
    pub capacity_type: CapacityType,
    pub instance_type: String,
    pub zone: String,
}

/// (capacity type, instance type, zone) -> when it becomes available again.
#[derive(Clone, Debug)]
pub struct UnavailableOfferings {
    ttl: Duration,
    until: HashMap<OfferingKey, Instant>,
}

impl Default for UnavailableOfferings {
    fn default() -> Self {
        UnavailableOfferings::new(UNAVAILABLE_TTL)
    }
}

impl UnavailableOfferings {
    pub fn new(ttl: Duration) -> Self {
        UnavailableOfferings {
            ttl,
            until: HashMap::new(),
        }
    }

    /// Rules the offering out until `now + ttl` (a later error extends it).
    pub fn mark(
        &mut self,
        capacity_type: CapacityType,
        instance_type: &str,
        zone: &str,
        now: Instant,
    ) {
        let key = OfferingKey {
            capacity_type,
            instance_type: instance_type.to_owned(),
            zone: zone.to_owned(),
        };
        let until = now + self.ttl;
        let slot = self.until.entry(key).or_insert(until);
        *slot = (*slot).max(until);
    }

    /// Marks the offering of every capacity error that names a type and a
    /// zone; returns how many it marked.
    pub fn mark_capacity_errors(&mut self, errors: &[OverrideError], now: Instant) -> usize {
        let mut marked = 0;
        for error in errors {
            if let (ErrorClass::Capacity, Some(instance_type), Some(zone)) =
                (&error.class, &error.instance_type, &error.zone)
            {
                self.mark(error.capacity_type, instance_type, zone, now);
                marked += 1;
            }
        }
        marked
    }

    pub fn is_unavailable(
        &self,
        capacity_type: CapacityType,
        instance_type: &str,
        zone: &str,
        now: Instant,
    ) -> bool {
        // Looking up by borrowed parts would need a second key type; the
        // allocation is cheap next to a launch.
        let key = OfferingKey {
            capacity_type,
            instance_type: instance_type.to_owned(),
            zone: zone.to_owned(),
        };
        self.until.get(&key).is_some_and(|until| now < *until)
    }

    /// Drops expired entries; returns how many remain.
    pub fn prune(&mut self, now: Instant) -> usize {
        self.until.retain(|_, until| now < *until);
        self.until.len()
    }

    /// Entries still in force at `now`.
    pub fn active(&self, now: Instant) -> impl Iterator<Item = &OfferingKey> {
        self.until
            .iter()
            .filter(move |(_, until)| now < **until)
            .map(|(k, _)| k)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_offering_is_unavailable_for_three_minutes() {
        let start = Instant::now();
        let mut cache = UnavailableOfferings::default();
        cache.mark(CapacityType::Spot, "m5.large", "us-east-1a", start);
        let later = |secs| start + Duration::from_secs(secs);
        assert!(cache.is_unavailable(CapacityType::Spot, "m5.large", "us-east-1a", later(179)));
        assert!(!cache.is_unavailable(CapacityType::Spot, "m5.large", "us-east-1a", later(180)));
        assert!(!cache.is_unavailable(CapacityType::OnDemand, "m5.large", "us-east-1a", start));
        assert!(!cache.is_unavailable(CapacityType::Spot, "m5.large", "us-east-1b", start));
        assert_eq!(cache.active(later(10)).count(), 1);
        assert_eq!(cache.prune(later(180)), 0);
    }

    #[test]
    fn a_later_error_extends_and_an_earlier_one_never_shortens() {
        let start = Instant::now();
        let mut cache = UnavailableOfferings::new(Duration::from_secs(10));
        cache.mark(
            CapacityType::Spot,
            "c5.large",
            "z",
            start + Duration::from_secs(5),
        );
        cache.mark(CapacityType::Spot, "c5.large", "z", start);
        assert!(cache.is_unavailable(
            CapacityType::Spot,
            "c5.large",
            "z",
            start + Duration::from_secs(14)
        ));
        assert!(!cache.is_unavailable(
            CapacityType::Spot,
            "c5.large",
            "z",
            start + Duration::from_secs(15)
        ));
    }
}
