//! Node-selector requirements against node labels, and label selectors
//! against pod labels.

use std::collections::BTreeMap;

use crate::model::{LabelSelector, NodeSelectorTerms, Operator, Requirement};

/// What a node is known to carry under one label key.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum LabelValue<'a> {
    Present(&'a str),
    Absent,
    /// The node will carry the label but its value is not known yet
    /// (`kubernetes.io/hostname` of a node not launched).
    Unknown,
}

/// Label lookup for a node, real or candidate.
pub(crate) trait NodeLabels {
    fn value(&self, key: &str) -> LabelValue<'_>;
}

impl NodeLabels for BTreeMap<String, String> {
    fn value(&self, key: &str) -> LabelValue<'_> {
        match self.get(key) {
            Some(v) => LabelValue::Present(v),
            None => LabelValue::Absent,
        }
    }
}

fn parse_integer(value: &str) -> Option<i64> {
    value.trim().parse().ok()
}

/// One requirement against a label a node has (`Some`) or lacks (`None`).
pub fn label_matches(requirement: &Requirement, value: Option<&str>) -> bool {
    let value = match value {
        Some(v) => LabelValue::Present(v),
        None => LabelValue::Absent,
    };
    requirement_matches(requirement, value)
}

/// One requirement against one label value. `Gt`, `Lt`, `Gte` and `Lte`
/// compare integers and fail when either side is not one, as Kubernetes
/// does.
pub(crate) fn requirement_matches(requirement: &Requirement, value: LabelValue<'_>) -> bool {
    let listed = |v: &str| requirement.values.iter().any(|x| x == v);
    let bound = || requirement.values.first().and_then(|v| parse_integer(v));
    match (requirement.operator, value) {
        (Operator::In, LabelValue::Present(v)) => listed(v),
        (Operator::In, _) => false,
        (Operator::NotIn, LabelValue::Present(v)) => !listed(v),
        (Operator::NotIn, _) => true,
        (Operator::Exists, LabelValue::Absent) => false,
        (Operator::Exists, _) => true,
        (Operator::DoesNotExist, LabelValue::Absent) => true,
        (Operator::DoesNotExist, _) => false,
        (numeric, LabelValue::Present(v)) => match (parse_integer(v), bound()) {
            (Some(v), Some(b)) => numeric.compares(v, b).unwrap_or(false),
            _ => false,
        },
        (Operator::Gt | Operator::Lt | Operator::Gte | Operator::Lte, _) => false,
    }
}

pub(crate) fn all_match(requirements: &[Requirement], labels: &impl NodeLabels) -> bool {
    requirements
        .iter()
        .all(|r| requirement_matches(r, labels.value(&r.key)))
}

/// A `nodeSelector` map: every pair must be present and equal.
pub(crate) fn selector_matches(
    selector: &BTreeMap<String, String>,
    labels: &impl NodeLabels,
) -> bool {
    selector
        .iter()
        .all(|(k, v)| labels.value(k) == LabelValue::Present(v))
}

/// The index of the first term that matches; `Some(None)` when there are no
/// terms (no constraint); `None` when no term matches.
pub(crate) fn matching_term(
    terms: &NodeSelectorTerms,
    labels: &impl NodeLabels,
) -> Option<Option<usize>> {
    if terms.is_empty() {
        return Some(None);
    }
    terms
        .iter()
        .position(|term| all_match(term, labels))
        .map(Some)
}

/// A pod's (or DaemonSet's) node selector and required affinity together.
pub(crate) fn node_constraints_match(
    node_selector: &BTreeMap<String, String>,
    terms: &NodeSelectorTerms,
    labels: &impl NodeLabels,
) -> bool {
    selector_matches(node_selector, labels) && matching_term(terms, labels).is_some()
}

/// A label selector (`matchLabels` and `matchExpressions`) against pod labels.
/// An empty selector matches every pod, as in Kubernetes.
pub(crate) fn label_selector_matches(
    selector: &LabelSelector,
    labels: &BTreeMap<String, String>,
) -> bool {
    all_match(&selector.requirements, labels)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(key: &str, operator: Operator, values: &[&str]) -> Requirement {
        Requirement {
            key: key.into(),
            operator,
            values: values.iter().map(|v| v.to_string()).collect(),
            min_values: None,
        }
    }

    fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn in_and_not_in() {
        let node = labels(&[("zone", "a")]);
        assert!(all_match(&[req("zone", Operator::In, &["a", "b"])], &node));
        assert!(!all_match(&[req("zone", Operator::In, &["b"])], &node));
        assert!(!all_match(&[req("zone", Operator::NotIn, &["a"])], &node));
        assert!(
            all_match(&[req("other", Operator::NotIn, &["a"])], &node),
            "absent label is not in any set"
        );
        assert!(!all_match(&[req("other", Operator::In, &["a"])], &node));
    }

    #[test]
    fn exists_and_does_not_exist() {
        let node = labels(&[("gpu", "")]);
        assert!(all_match(&[req("gpu", Operator::Exists, &[])], &node));
        assert!(!all_match(
            &[req("gpu", Operator::DoesNotExist, &[])],
            &node
        ));
        assert!(all_match(&[req("arm", Operator::DoesNotExist, &[])], &node));
        assert!(!all_match(&[req("arm", Operator::Exists, &[])], &node));
    }

    #[test]
    fn gt_and_lt_compare_integers_not_strings() {
        let node = labels(&[("cpu", "16"), ("name", "big")]);
        assert!(
            all_match(&[req("cpu", Operator::Gt, &["9"])], &node),
            "16 > 9 though \"16\" < \"9\""
        );
        assert!(!all_match(&[req("cpu", Operator::Gt, &["16"])], &node));
        assert!(all_match(&[req("cpu", Operator::Gte, &["16"])], &node));
        assert!(!all_match(&[req("cpu", Operator::Gte, &["17"])], &node));
        assert!(all_match(&[req("cpu", Operator::Lte, &["16"])], &node));
        assert!(!all_match(&[req("cpu", Operator::Lte, &["15"])], &node));
        assert!(!all_match(&[req("gpu", Operator::Gte, &["0"])], &node));
        assert!(all_match(&[req("cpu", Operator::Lt, &["17"])], &node));
        assert!(
            !all_match(&[req("name", Operator::Gt, &["1"])], &node),
            "not an integer"
        );
        assert!(!all_match(&[req("missing", Operator::Lt, &["1"])], &node));
        assert!(
            !all_match(&[req("cpu", Operator::Gt, &["x"])], &node),
            "bad bound"
        );
    }

    #[test]
    fn unknown_value_exists_but_is_in_no_set() {
        assert!(requirement_matches(
            &req("h", Operator::Exists, &[]),
            LabelValue::Unknown
        ));
        assert!(!requirement_matches(
            &req("h", Operator::In, &["n1"]),
            LabelValue::Unknown
        ));
        assert!(requirement_matches(
            &req("h", Operator::NotIn, &["n1"]),
            LabelValue::Unknown
        ));
    }

    #[test]
    fn terms_are_or_of_and() {
        let node = labels(&[("zone", "a"), ("arch", "arm64")]);
        let terms = vec![
            vec![req("zone", Operator::In, &["b"])],
            vec![
                req("zone", Operator::In, &["a"]),
                req("arch", Operator::In, &["arm64"]),
            ],
        ];
        assert_eq!(matching_term(&terms, &node), Some(Some(1)));
        assert_eq!(
            matching_term(&vec![vec![req("zone", Operator::In, &["c"])]], &node),
            None
        );
        assert_eq!(matching_term(&vec![], &node), Some(None));
        assert!(!node_constraints_match(
            &labels(&[("zone", "b")]),
            &terms,
            &node
        ));
    }

    #[test]
    fn empty_label_selector_matches_everything() {
        assert!(label_selector_matches(
            &LabelSelector::default(),
            &labels(&[("app", "x")])
        ));
        let sel = LabelSelector {
            requirements: vec![req("app", Operator::In, &["y"])],
        };
        assert!(!label_selector_matches(&sel, &labels(&[("app", "x")])));
    }
}
