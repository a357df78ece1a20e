//! DaemonSet overhead of one (NodePool, instance type): exactly the
//! DaemonSets whose selector and affinity match that node's labels and whose
//! tolerations cover the pool's taints (the Spot taint aside: a DaemonSet
//! that does not tolerate it still runs on the pool's on-demand nodes, so it
//! is counted, never undercounted).

use crate::model::{DaemonSetFacts, Taint};
use crate::requirements::{node_constraints_match, NodeLabels};
use crate::resources::{Res, ResourceNames, PODS};
use crate::taints::first_blocking_pool_taint;

/// Overhead on a node that can carry any of `candidates` (the allowed
/// offerings of one instance type): a DaemonSet counts when it lands on at
/// least one of them, so the figure never undercounts a launch.
pub(crate) fn overhead<L: NodeLabels>(
    daemonsets: &[DaemonSetFacts],
    pool_taints: &[Taint],
    candidates: &[L],
    names: &ResourceNames,
) -> Res {
    let mut total = names.zero();
    for daemonset in daemonsets {
        if first_blocking_pool_taint(&daemonset.tolerations, pool_taints).is_some() {
            continue;
        }
        let lands = candidates.iter().any(|labels| {
            node_constraints_match(
                &daemonset.node_selector,
                &daemonset.required_affinity,
                labels,
            )
        });
        if lands {
            let mut requests = names.dense(&daemonset.requests);
            requests.base[PODS] = 1;
            total.add_assign(&requests);
        }
    }
    total
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::model::{Operator, Requirement, Resources, TaintEffect, Toleration};

    fn ds(name: &str, cpu: u64, arch: Option<&str>, tolerates: Option<&str>) -> DaemonSetFacts {
        DaemonSetFacts {
            name: name.into(),
            requests: Resources {
                cpu_millis: cpu,
                ..Resources::default()
            },
            node_selector: arch
                .map(|a| [("kubernetes.io/arch".to_string(), a.to_string())].into())
                .unwrap_or_default(),
            required_affinity: vec![],
            tolerations: tolerates
                .map(|k| {
                    vec![Toleration {
                        key: Some(k.into()),
                        exists: true,
                        value: None,
                        effect: None,
                    }]
                })
                .unwrap_or_default(),
        }
    }

    fn labels(arch: &str) -> BTreeMap<String, String> {
        [("kubernetes.io/arch".to_string(), arch.to_string())].into()
    }

    #[test]
    fn counts_only_the_daemonsets_that_land() {
        let names = ResourceNames::default();
        let sets = [
            ds("all", 100, None, None),
            ds("arm-only", 200, Some("arm64"), None),
        ];
        let amd = overhead(&sets, &[], &[labels("amd64")], &names);
        let arm = overhead(&sets, &[], &[labels("arm64")], &names);
        assert_eq!(amd.base, [100, 0, 0, 1]);
        assert_eq!(arm.base, [300, 0, 0, 2]);
    }

    #[test]
    fn a_daemonset_that_does_not_tolerate_the_pool_taint_is_not_counted() {
        let names = ResourceNames::default();
        let taints = [Taint {
            key: "gpu".into(),
            value: None,
            effect: TaintEffect::NoSchedule,
        }];
        let sets = [
            ds("plain", 100, None, None),
            ds("gpu-plugin", 50, None, Some("gpu")),
        ];
        let res = overhead(&sets, &taints, &[labels("amd64")], &names);
        assert_eq!(res.base, [50, 0, 0, 1]);
    }

    #[test]
    fn required_affinity_is_honoured() {
        let names = ResourceNames::default();
        let mut set = ds("affine", 100, None, None);
        set.required_affinity = vec![vec![Requirement {
            key: "kubernetes.io/arch".into(),
            operator: Operator::NotIn,
            values: vec!["arm64".into()],
            min_values: None,
        }]];
        assert_eq!(
            overhead(std::slice::from_ref(&set), &[], &[labels("arm64")], &names).base[0],
            0
        );
        assert_eq!(
            overhead(&[set], &[], &[labels("amd64")], &names).base[0],
            100
        );
    }
}
