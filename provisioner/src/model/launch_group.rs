//! The claims one provisioning pass made, as a group: their nodes are
//! opened to the scheduler together (registration's gate), so that pods
//! whose own node is still on its way do not take the room the pass planned
//! on the nodes that came first.

use k8s_openapi::api::core::v1::Taint;
use spotwright_api::{keys, NodeClaim};

/// One pass's claims: its id and how many claims it made.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct LaunchGroup {
    pub id: String,
    pub size: usize,
}

impl LaunchGroup {
    /// A new group of `size` claims, with an id unlikely to repeat.
    pub fn new(size: usize, nonce: u64) -> LaunchGroup {
        LaunchGroup {
            id: format!("{nonce:016x}"),
            size,
        }
    }

    /// The annotation's value: `<id>/<size>`.
    pub fn to_annotation(&self) -> String {
        format!("{}/{}", self.id, self.size)
    }

    /// The claim's group; `None` without the annotation or when it does not
    /// parse (such a claim's node is opened on its own).
    pub fn of(claim: &NodeClaim) -> Option<LaunchGroup> {
        let value = claim
            .metadata
            .annotations
            .as_ref()?
            .get(keys::LAUNCH_GROUP_ANNOTATION)?;
        let (id, size) = value.rsplit_once('/')?;
        let size = size.parse().ok().filter(|s| *s > 0)?;
        (!id.is_empty()).then(|| LaunchGroup {
            id: id.to_owned(),
            size,
        })
    }

    /// Records the group on a new claim.
    pub fn annotate(&self, claim: &mut NodeClaim) {
        claim
            .metadata
            .annotations
            .get_or_insert_with(Default::default)
            .insert(
                keys::LAUNCH_GROUP_ANNOTATION.to_owned(),
                self.to_annotation(),
            );
    }
}

/// The taint every Spotwright node registers with, lifted by registration.
pub fn unregistered_taint() -> Taint {
    Taint {
        key: keys::UNREGISTERED_TAINT_KEY.to_owned(),
        value: None,
        effect: "NoSchedule".to_owned(),
        time_added: None,
    }
}

/// Whether `taint` is the registration taint (whatever its effect).
pub fn is_unregistered_taint(taint: &Taint) -> bool {
    taint.key == keys::UNREGISTERED_TAINT_KEY
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use spotwright_api::v1alpha1::NodeClaimSpec;

    fn annotated(value: &str) -> NodeClaim {
        let mut claim = NodeClaim::new("c", NodeClaimSpec::default());
        claim.metadata.annotations =
            Some([(keys::LAUNCH_GROUP_ANNOTATION.to_owned(), value.to_owned())].into());
        claim
    }

    #[test]
    fn a_malformed_group_is_no_group() {
        for value in ["", "abc", "abc/", "/3", "abc/0", "abc/-1", "abc/x"] {
            assert_eq!(LaunchGroup::of(&annotated(value)), None, "{value:?}");
        }
        let plain = NodeClaim::new("c", NodeClaimSpec::default());
        assert_eq!(LaunchGroup::of(&plain), None);
    }

    proptest! {
        #[test]
        fn a_group_round_trips_through_its_annotation(nonce: u64, size in 1usize..10_000) {
            let group = LaunchGroup::new(size, nonce);
            let mut claim = NodeClaim::new("c", NodeClaimSpec::default());
            group.annotate(&mut claim);
            prop_assert_eq!(LaunchGroup::of(&claim), Some(group));
        }
    }
}
