//! The proxy's shared state: which instance types have no capacity, and
//! counters a test reads back through `GET /_fault/calls`.

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{PoisonError, RwLock};
use std::time::{SystemTime, UNIX_EPOCH};

use super::FaultError;

/// Longest instance type name accepted; EC2's are under 32 characters.
const MAX_TYPE_LEN: usize = 64;
/// Most instance types in one list, to bound what a request can make us hold.
const MAX_TYPES: usize = 1024;

/// Parses a comma-separated list of instance types (whitespace and empty
/// entries ignored, so `"a, b,"` and a trailing newline are fine).
pub fn parse_type_list(text: &str) -> Result<BTreeSet<String>, FaultError> {
    let mut types = BTreeSet::new();
    for entry in text.split(',').map(str::trim).filter(|e| !e.is_empty()) {
        let valid = entry.len() <= MAX_TYPE_LEN
            && entry
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'_'));
        if !valid {
            return Err(FaultError::BadInstanceType(
                entry.chars().take(MAX_TYPE_LEN).collect(),
            ));
        }
        types.insert(entry.to_owned());
        if types.len() > MAX_TYPES {
            return Err(FaultError::TooManyTypes(MAX_TYPES));
        }
    }
    Ok(types)
}

/// Counters and the fault set, shared by all connections.
#[derive(Debug)]
pub struct FaultState {
    insufficient: RwLock<BTreeSet<String>>,
    create_fleet_calls: AtomicU64,
    faulted_calls: AtomicU64,
    faults_injected: AtomicU64,
    ids: AtomicU64,
    epoch: u64,
}

impl FaultState {
    pub fn new(insufficient: BTreeSet<String>) -> Self {
        // Nanoseconds, so ids differ between proxy runs against one moto.
        let epoch = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX));
        Self {
            insufficient: RwLock::new(insufficient),
            create_fleet_calls: AtomicU64::new(0),
            faulted_calls: AtomicU64::new(0),
            faults_injected: AtomicU64::new(0),
            ids: AtomicU64::new(0),
            epoch,
        }
    }

    /// The instance types currently without capacity. A poisoned lock only
    /// means a writer panicked mid-assignment of a whole set, so its value
    /// is still a valid set.
    pub fn insufficient(&self) -> BTreeSet<String> {
        self.insufficient
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    pub fn set_insufficient(&self, types: BTreeSet<String>) {
        *self
            .insufficient
            .write()
            .unwrap_or_else(PoisonError::into_inner) = types;
    }

    pub fn record_create_fleet(&self) {
        self.create_fleet_calls.fetch_add(1, Ordering::Relaxed);
    }

    /// Records a call in which `faults` overrides were failed.
    pub fn record_faults(&self, faults: usize) {
        self.faulted_calls.fetch_add(1, Ordering::Relaxed);
        self.faults_injected
            .fetch_add(u64::try_from(faults).unwrap_or(u64::MAX), Ordering::Relaxed);
    }

    /// Zeroes the counters (the fault set is left alone).
    pub fn reset_counters(&self) {
        self.create_fleet_calls.store(0, Ordering::Relaxed);
        self.faulted_calls.store(0, Ordering::Relaxed);
        self.faults_injected.store(0, Ordering::Relaxed);
    }

    /// The body of `GET /_fault/calls`.
    pub fn calls_json(&self) -> serde_json::Value {
        serde_json::json!({
            "create_fleet_calls": self.create_fleet_calls.load(Ordering::Relaxed),
            "faulted_calls": self.faulted_calls.load(Ordering::Relaxed),
            "faults_injected": self.faults_injected.load(Ordering::Relaxed),
            "insufficient_capacity": self.insufficient(),
        })
    }

    /// A fresh id shaped like EC2's (`fleet-` + a UUID-like hex string);
    /// unique within the process, which is all a test can compare.
    pub fn new_id(&self, prefix: &str) -> String {
        let n = self.ids.fetch_add(1, Ordering::Relaxed);
        // The counter is spread over the bits so consecutive ids do not
        // share a long common tail.
        let hex = format!(
            "{:016x}{:016x}",
            self.epoch,
            n.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ self.epoch
        );
        format!(
            "{prefix}{}-{}-{}-{}-{}",
            &hex[0..8],
            &hex[8..12],
            &hex[12..16],
            &hex[16..20],
            &hex[20..32]
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_type_lists() {
        let types = parse_type_list(" m5.large, c5.xlarge ,,m5.large\n").unwrap();
        assert_eq!(
            types.into_iter().collect::<Vec<_>>(),
            vec!["c5.xlarge", "m5.large"]
        );
        assert!(parse_type_list("").unwrap().is_empty());
        assert!(matches!(
            parse_type_list("m5.large,<x>"),
            Err(FaultError::BadInstanceType(_))
        ));
        assert!(matches!(
            parse_type_list(&"a".repeat(65)),
            Err(FaultError::BadInstanceType(_))
        ));
        let many: Vec<String> = (0..1025).map(|i| format!("t{i}")).collect();
        assert!(matches!(
            parse_type_list(&many.join(",")),
            Err(FaultError::TooManyTypes(_))
        ));
    }

    #[test]
    fn counts_calls_and_faults() {
        let state = FaultState::new(parse_type_list("m5.large").unwrap());
        state.record_create_fleet();
        state.record_create_fleet();
        state.record_faults(3);
        let json = state.calls_json();
        assert_eq!(json["create_fleet_calls"], 2);
        assert_eq!(json["faulted_calls"], 1);
        assert_eq!(json["faults_injected"], 3);
        assert_eq!(
            json["insufficient_capacity"],
            serde_json::json!(["m5.large"])
        );
        state.set_insufficient(BTreeSet::new());
        state.reset_counters();
        let json = state.calls_json();
        assert_eq!(json["create_fleet_calls"], 0);
        assert_eq!(json["insufficient_capacity"], serde_json::json!([]));
    }

    #[test]
    fn ids_are_unique_and_ec2_shaped() {
        let state = FaultState::new(BTreeSet::new());
        let a = state.new_id("fleet-");
        let b = state.new_id("fleet-");
        assert_ne!(a, b);
        assert_eq!(a.len(), "fleet-".len() + 36);
        assert_eq!(a.matches('-').count(), 5);
    }
}
