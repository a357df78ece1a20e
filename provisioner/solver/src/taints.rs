//! Taints and tolerations: `NoSchedule` and `NoExecute` taints must be
//! tolerated; `PreferNoSchedule` never blocks.

use spotwright_api::keys::{CAPACITY_TYPE_LABEL, SPOT};

use crate::model::{Taint, TaintEffect, Toleration};

pub(crate) fn tolerates(toleration: &Toleration, taint: &Taint) -> bool {
    if toleration
        .effect
        .is_some_and(|effect| effect != taint.effect)
    {
        return false;
    }
    match &toleration.key {
        // An empty key with `Exists` tolerates everything.
        None => toleration.exists,
        Some(key) if *key != taint.key => false,
        Some(_) if toleration.exists => true,
        Some(_) => {
            toleration.value.as_deref().unwrap_or("") == taint.value.as_deref().unwrap_or("")
        }
    }
}

fn blocks(tolerations: &[Toleration], taint: &Taint) -> bool {
    taint.effect != TaintEffect::PreferNoSchedule
        && !tolerations.iter().any(|t| tolerates(t, taint))
}

/// The first taint that keeps a pod with these tolerations off the node.
pub(crate) fn first_blocking_taint<'t>(
    tolerations: &[Toleration],
    taints: &'t [Taint],
) -> Option<&'t Taint> {
    taints.iter().find(|taint| blocks(tolerations, taint))
}

/// The Spot taint (`spotwright.io/capacity-type=spot`): a NodePool that
/// lists it puts it on its Spot nodes only, never on its on-demand ones.
pub(crate) fn is_spot_taint(taint: &Taint) -> bool {
    taint.key == CAPACITY_TYPE_LABEL && taint.value.as_deref() == Some(SPOT)
}

/// The first of a pool's taints that keeps the pod off every node the
/// pool can launch (all of them but the Spot taint).
pub(crate) fn first_blocking_pool_taint<'t>(
    tolerations: &[Toleration],
    pool_taints: &'t [Taint],
) -> Option<&'t Taint> {
    first_blocking_of_kind(tolerations, pool_taints, false)
}

/// The pool's Spot taint, when it keeps the pod off the pool's Spot nodes.
pub(crate) fn blocking_spot_taint<'t>(
    tolerations: &[Toleration],
    pool_taints: &'t [Taint],
) -> Option<&'t Taint> {
    first_blocking_of_kind(tolerations, pool_taints, true)
}

fn first_blocking_of_kind<'t>(
    tolerations: &[Toleration],
    taints: &'t [Taint],
    spot: bool,
) -> Option<&'t Taint> {
    taints
        .iter()
        .find(|taint| is_spot_taint(taint) == spot && blocks(tolerations, taint))
}

pub(crate) fn describe(taint: &Taint) -> String {
    let effect = match taint.effect {
        TaintEffect::NoSchedule => "NoSchedule",
        TaintEffect::PreferNoSchedule => "PreferNoSchedule",
        TaintEffect::NoExecute => "NoExecute",
    };
    match &taint.value {
        Some(value) => format!("{}={}:{}", taint.key, value, effect),
        None => format!("{}:{}", taint.key, effect),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn taint(key: &str, value: Option<&str>, effect: TaintEffect) -> Taint {
        Taint {
            key: key.into(),
            value: value.map(Into::into),
            effect,
        }
    }

    fn equal(key: &str, value: &str, effect: Option<TaintEffect>) -> Toleration {
        Toleration {
            key: Some(key.into()),
            exists: false,
            value: Some(value.into()),
            effect,
        }
    }

    #[test]
    fn equal_needs_the_same_value_and_effect() {
        let t = taint("spot", Some("true"), TaintEffect::NoSchedule);
        assert!(tolerates(&equal("spot", "true", None), &t));
        assert!(tolerates(
            &equal("spot", "true", Some(TaintEffect::NoSchedule)),
            &t
        ));
        assert!(!tolerates(&equal("spot", "false", None), &t));
        assert!(!tolerates(
            &equal("spot", "true", Some(TaintEffect::NoExecute)),
            &t
        ));
        assert!(!tolerates(&equal("other", "true", None), &t));
    }

    #[test]
    fn exists_with_no_key_tolerates_everything() {
        let all = Toleration {
            key: None,
            exists: true,
            value: None,
            effect: None,
        };
        assert!(tolerates(
            &all,
            &taint("a", Some("b"), TaintEffect::NoExecute)
        ));
        let key_only = Toleration {
            key: Some("a".into()),
            exists: true,
            value: None,
            effect: None,
        };
        assert!(tolerates(
            &key_only,
            &taint("a", Some("whatever"), TaintEffect::NoSchedule)
        ));
    }

    #[test]
    fn prefer_no_schedule_does_not_block_but_no_execute_does() {
        let taints = [
            taint("soft", None, TaintEffect::PreferNoSchedule),
            taint("hard", None, TaintEffect::NoExecute),
        ];
        assert_eq!(
            first_blocking_taint(&[], &taints).map(|t| t.key.as_str()),
            Some("hard")
        );
        let tol = Toleration {
            key: Some("hard".into()),
            exists: true,
            value: None,
            effect: None,
        };
        assert_eq!(first_blocking_taint(&[tol], &taints), None);
        assert_eq!(describe(&taints[1]), "hard:NoExecute");
    }
}
