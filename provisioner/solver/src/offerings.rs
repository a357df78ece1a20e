//! Zones and capacity types as dense "slots", so a new node's allowed
//! offerings per instance type are one `u128` bit mask.

use std::collections::{BTreeMap, HashMap};

use spotwright_api::keys::{CAPACITY_TYPE_LABEL, HOSTNAME_LABEL, ZONE_LABEL};

use crate::model::CapacityType;
use crate::requirements::{LabelValue, NodeLabels};

/// Two capacity types per zone in a `u128`: zones past the 64th of one input
/// are ignored (no AWS region comes near).
pub(crate) const MAX_ZONES: usize = 64;

pub(crate) type SlotMask = u128;

pub(crate) fn slot(zone: usize, capacity_type: CapacityType) -> u32 {
    (zone as u32) * 2 + capacity_type_index(capacity_type)
}

fn capacity_type_index(capacity_type: CapacityType) -> u32 {
    match capacity_type {
        CapacityType::Spot => 0,
        CapacityType::OnDemand => 1,
    }
}

pub(crate) fn slot_zone(slot: u32) -> usize {
    (slot / 2) as usize
}

pub(crate) fn slot_capacity_type(slot: u32) -> CapacityType {
    if slot.is_multiple_of(2) {
        CapacityType::Spot
    } else {
        CapacityType::OnDemand
    }
}

/// Every Spot slot.
pub(crate) const SPOT_SLOTS: SlotMask = 0x5555_5555_5555_5555_5555_5555_5555_5555;

/// Both slots of one zone.
pub(crate) fn zone_slots(zone: usize) -> SlotMask {
    0b11u128 << (zone * 2)
}

/// The zones present in a slot mask, as a zone bit mask.
pub(crate) fn zones_of(mask: SlotMask) -> u64 {
    let mut zones = 0u64;
    let mut rest = mask;
    while rest != 0 {
        let slot = rest.trailing_zeros();
        zones |= 1 << slot_zone(slot);
        rest &= rest - 1;
    }
    zones
}

pub(crate) fn slots(mask: SlotMask) -> impl Iterator<Item = u32> {
    let mut rest = mask;
    std::iter::from_fn(move || {
        if rest == 0 {
            return None;
        }
        let slot = rest.trailing_zeros();
        rest &= rest - 1;
        Some(slot)
    })
}

/// Zone names of one input, interned.
#[derive(Debug, Default)]
pub(crate) struct Zones {
    pub names: Vec<String>,
    index: HashMap<String, usize>,
}

impl Zones {
    pub fn intern(&mut self, name: &str) -> Option<usize> {
        if let Some(i) = self.index.get(name) {
            return Some(*i);
        }
        if self.names.len() >= MAX_ZONES {
            return None;
        }
        self.names.push(name.to_string());
        self.index.insert(name.to_string(), self.names.len() - 1);
        Some(self.names.len() - 1)
    }

    pub fn get(&self, name: &str) -> Option<usize> {
        self.index.get(name).copied()
    }
}

/// The labels a node not launched yet will carry: the zone and capacity type
/// of one offering, the instance type's labels, then the pool's labels.
pub(crate) struct CandidateLabels<'a> {
    pub pool: &'a BTreeMap<String, String>,
    pub instance_type: &'a BTreeMap<String, String>,
    pub zone: &'a str,
    pub capacity_type: CapacityType,
}

impl NodeLabels for CandidateLabels<'_> {
    fn value(&self, key: &str) -> LabelValue<'_> {
        if key == ZONE_LABEL {
            return LabelValue::Present(self.zone);
        }
        if key == CAPACITY_TYPE_LABEL {
            return LabelValue::Present(self.capacity_type.as_str());
        }
        if key == HOSTNAME_LABEL {
            return LabelValue::Unknown;
        }
        if let Some(v) = self.instance_type.get(key) {
            return LabelValue::Present(v);
        }
        match self.pool.get(key) {
            Some(v) => LabelValue::Present(v),
            None => LabelValue::Absent,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_round_trip() {
        for zone in [0, 1, 63] {
            for ct in [CapacityType::Spot, CapacityType::OnDemand] {
                let s = slot(zone, ct);
                assert_eq!(slot_zone(s), zone);
                assert_eq!(slot_capacity_type(s), ct);
                assert_ne!(zone_slots(zone) & (1 << s), 0);
                assert_eq!((SPOT_SLOTS >> s) & 1 == 1, ct == CapacityType::Spot);
            }
        }
        let mask = (1u128 << slot(2, CapacityType::OnDemand)) | (1 << slot(5, CapacityType::Spot));
        assert_eq!(zones_of(mask), 0b100100);
        assert_eq!(slots(mask).count(), 2);
    }

    #[test]
    fn zones_past_the_cap_are_refused() {
        let mut zones = Zones::default();
        for i in 0..MAX_ZONES {
            assert_eq!(zones.intern(&format!("z{i}")), Some(i));
        }
        assert_eq!(zones.intern("one-too-many"), None);
        assert_eq!(zones.intern("z3"), Some(3));
    }
}
