//! Properties of the mutation over generated pods.

mod common;

use common::*;
use proptest::prelude::*;
use serde_json::{json, Value};
use spotwright_webhook::mutate::{Decision, SkipReason};

const NAMESPACES: &[&str] = &[
    "team-spot",
    "team-pref",
    "team-od",
    "team-pool",
    "pool-only",
    "plain",
    "typo",
    "kube-system",
    "spotwright-system",
    "unknown",
];
const CAPACITY_VALUES: &[&str] = &["spot", "spot-preferred", "on-demand", "none", "spto", ""];
const NODEPOOLS: &[&str] = &["gpu", "general", "missing"];
const KEYS: &[&str] = &[
    "kubernetes.io/arch",
    "topology.kubernetes.io/zone",
    "spotwright.io/capacity-type",
    "spotwright.io/nodepool",
    "eks.amazonaws.com/capacityType",
    "a~b/c",
];
const VALUES: &[&str] = &[
    "spot",
    "on-demand",
    "ON_DEMAND",
    "arm64",
    "us-east-1a",
    "gpu",
];

fn expression() -> impl Strategy<Value = Value> {
    (
        prop::sample::select(KEYS),
        prop::sample::select(&["In", "NotIn", "Exists", "DoesNotExist"][..]),
        prop::collection::vec(prop::sample::select(VALUES), 1..3),
    )
        .prop_map(|(key, operator, values)| match operator {
            "Exists" | "DoesNotExist" => json!({"key": key, "operator": operator}),
            _ => json!({"key": key, "operator": operator, "values": values}),
        })
}

fn term() -> impl Strategy<Value = Value> {
    (
        prop::option::of(prop::collection::vec(expression(), 0..3)),
        any::<bool>(),
    )
        .prop_map(|(expressions, fields)| {
            let mut term = serde_json::Map::new();
            if let Some(expressions) = expressions {
                term.insert("matchExpressions".into(), Value::Array(expressions));
            }
            if fields || term.is_empty() {
                term.insert(
                    "matchFields".into(),
                    json!([{"key": "metadata.name", "operator": "In", "values": ["n1"]}]),
                );
            }
            Value::Object(term)
        })
}

fn node_affinity() -> impl Strategy<Value = Option<Value>> {
    prop::option::of((
        prop::option::of(prop::collection::vec(term(), 1..4)),
        prop::option::of(prop::collection::vec(expression(), 0..2)),
    ))
    .prop_map(|affinity| {
        affinity.map(|(required, preferred)| {
            let mut node = serde_json::Map::new();
            if let Some(terms) = required {
                node.insert(
                    "requiredDuringSchedulingIgnoredDuringExecution".into(),
                    json!({"nodeSelectorTerms": terms}),
                );
            }
            if let Some(expressions) = preferred {
                node.insert(
                    "preferredDuringSchedulingIgnoredDuringExecution".into(),
                    json!([{"weight": 10, "preference": {"matchExpressions": expressions}}]),
                );
            }
            Value::Object(node)
        })
    })
}

fn toleration() -> impl Strategy<Value = Value> {
    prop_oneof![
        Just(json!({"operator": "Exists"})),
        Just(json!({"key": "spotwright.io/capacity-type", "operator": "Exists"})),
        Just(
            json!({"key": "spotwright.io/capacity-type", "operator": "Equal", "value": "spot", "effect": "NoSchedule"})
        ),
        Just(json!({"key": "nvidia.com/gpu", "operator": "Equal", "value": "true"})),
        Just(json!({"key": "dedicated", "operator": "Exists", "effect": "NoSchedule"})),
        Just(
            json!({"key": "node.kubernetes.io/not-ready", "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 300})
        ),
    ]
}

prop_compose! {
    fn generated_pod()(
        namespace in prop::sample::select(NAMESPACES),
        capacity in prop::option::of(prop::sample::select(CAPACITY_VALUES)),
        nodepool in prop::option::of(prop::sample::select(NODEPOOLS)),
        mirror in prop::bool::weighted(0.05),
        daemonset in prop::bool::weighted(0.05),
        bound in prop::bool::weighted(0.05),
        selector in prop::option::of(prop::sample::select(&[("spotwright.io/capacity-type", "on-demand"), ("eks.amazonaws.com/capacityType", "ON_DEMAND"), ("kubernetes.io/os", "linux")][..])),
        tolerations in prop::option::of(prop::collection::vec(toleration(), 0..4)),
        node_affinity in node_affinity(),
        pod_anti_affinity in any::<bool>(),
        scheduler in prop::option::of(prop::sample::select(&["default-scheduler", "spotwright-scheduler", "volcano", ""][..])),
    ) -> (String, Value) {
        let mut pod = pod_json(namespace);
        let spec = pod["spec"].as_object_mut().expect("spec");
        spec.remove("tolerations");
        spec.remove("schedulerName");
        if let Some(tolerations) = tolerations { spec.insert("tolerations".into(), Value::Array(tolerations)); }
        if let Some(scheduler) = scheduler { spec.insert("schedulerName".into(), json!(scheduler)); }
        if let Some((key, value)) = selector { spec.insert("nodeSelector".into(), json!({key: value})); }
        if bound { spec.insert("nodeName".into(), json!("node-1")); }
        let mut affinity = serde_json::Map::new();
        if let Some(node) = node_affinity { affinity.insert("nodeAffinity".into(), node); }
        if pod_anti_affinity {
            affinity.insert("podAntiAffinity".into(), json!({"preferredDuringSchedulingIgnoredDuringExecution": [{"weight": 1, "podAffinityTerm": {"topologyKey": "kubernetes.io/hostname"}}]}));
        }
        if !affinity.is_empty() { spec.insert("affinity".into(), Value::Object(affinity)); }
        let mut annotations = serde_json::Map::new();
        if let Some(capacity) = capacity { annotations.insert("spotwright.io/capacity".into(), json!(capacity)); }
        if let Some(nodepool) = nodepool { annotations.insert("spotwright.io/nodepool".into(), json!(nodepool)); }
        if mirror { annotations.insert("kubernetes.io/config.mirror".into(), json!("hash")); }
        if !annotations.is_empty() { pod["metadata"]["annotations"] = Value::Object(annotations); }
        if daemonset {
            pod["metadata"]["ownerReferences"] = json!([{"apiVersion": "apps/v1", "kind": "DaemonSet", "name": "ds", "uid": "1"}]);
        }
        (namespace.to_owned(), pod)
    }
}

fn excluded(namespace: &str, pod: &Value) -> bool {
    [
        "kube-system",
        "kube-public",
        "kube-node-lease",
        "spotwright-system",
    ]
    .contains(&namespace)
        || pod
            .pointer("/metadata/annotations/kubernetes.io~1config.mirror")
            .is_some()
        || pod.pointer("/metadata/ownerReferences/0/kind") == Some(&json!("DaemonSet"))
        || pod.pointer("/spec/nodeName").is_some()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]

    #[test]
    fn the_patch_applies_and_a_second_admission_changes_nothing((namespace, original) in generated_pod()) {
        let decision = decide_json(&namespace, &original);
        let after = apply(&original, &decision);
        let again = decide_json(&namespace, &after);
        prop_assert!(!matches!(again, Decision::Mutated(_)), "second admission patched again: {again:?}");
        if matches!(decision, Decision::Mutated(_)) {
            prop_assert_eq!(again, Decision::Unchanged);
        }
    }

    #[test]
    fn excluded_pods_get_no_patch((namespace, original) in generated_pod()) {
        if excluded(&namespace, &original) {
            let decision = decide_json(&namespace, &original);
            prop_assert!(matches!(decision, Decision::Skipped(_)), "{decision:?}");
        }
    }

    #[test]
    fn spot_pods_carry_spot_in_every_required_term((namespace, original) in generated_pod()) {
        let decision = decide_json(&namespace, &original);
        let asked_spot = original.pointer("/metadata/annotations/spotwright.io~1capacity").map(|v| v == "spot")
            .unwrap_or(namespace == "team-spot" || namespace == "team-pool");
        if asked_spot && matches!(decision, Decision::Mutated(_)) {
            let after = apply(&original, &decision);
            let terms = required_terms(&after);
            prop_assert!(!terms.is_empty());
            for term in terms {
                prop_assert!(has_expression(&term, "spotwright.io/capacity-type", "In", &["spot"]), "{}", term);
            }
            prop_assert!(has_spot_toleration(&after) || tolerations(&after).iter().any(|t| t.get("key").is_none() || t["operator"] == "Exists" && t["key"] == "spotwright.io/capacity-type"));
        }
    }

    #[test]
    fn what_the_user_wrote_survives((namespace, original) in generated_pod()) {
        let decision = decide_json(&namespace, &original);
        let after = apply(&original, &decision);
        let before_tolerations = tolerations(&original);
        prop_assert_eq!(&tolerations(&after)[..before_tolerations.len()], &before_tolerations[..]);
        let before_terms = required_terms(&original);
        let after_terms = required_terms(&after);
        if !before_terms.is_empty() {
            prop_assert_eq!(before_terms.len(), after_terms.len());
            for (before, after) in before_terms.iter().zip(&after_terms) {
                let before_expressions = before["matchExpressions"].as_array().cloned().unwrap_or_default();
                let after_expressions = after["matchExpressions"].as_array().cloned().unwrap_or_default();
                prop_assert_eq!(&after_expressions[..before_expressions.len()], &before_expressions[..]);
                prop_assert_eq!(&before["matchFields"], &after["matchFields"]);
            }
        }
        let preferred = "/spec/affinity/nodeAffinity/preferredDuringSchedulingIgnoredDuringExecution";
        if let Some(before) = original.pointer(preferred).and_then(Value::as_array) {
            let after_preferred = after.pointer(preferred).and_then(Value::as_array).cloned().unwrap_or_default();
            prop_assert_eq!(&after_preferred[..before.len()], &before[..]);
        }
        prop_assert_eq!(original.pointer("/spec/affinity/podAntiAffinity"), after.pointer("/spec/affinity/podAntiAffinity"));
        prop_assert_eq!(original.pointer("/spec/nodeSelector"), after.pointer("/spec/nodeSelector"));
        prop_assert_eq!(&original["metadata"], &after["metadata"]);
    }

    #[test]
    fn only_the_default_scheduler_is_replaced((namespace, original) in generated_pod()) {
        let decision = decide_json(&namespace, &original);
        let after = apply(&original, &decision);
        let before = original.pointer("/spec/schedulerName").and_then(Value::as_str).unwrap_or("");
        let now = after.pointer("/spec/schedulerName").and_then(Value::as_str).unwrap_or("");
        if before != now {
            prop_assert!(before.is_empty() || before == "default-scheduler");
            prop_assert_eq!(now, "spotwright-scheduler");
        }
        if matches!(decision, Decision::Skipped(SkipReason::SystemNamespace)) {
            prop_assert_eq!(before, now);
        }
    }
}
