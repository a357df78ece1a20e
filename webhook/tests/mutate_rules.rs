//! One test per contract rule and exclusion of the webhook (docs/contract.md).

mod common;

use common::*;
use serde_json::{json, Value};
use spotwright_webhook::mutate::{decide, Decision, Invalid, Settings, SkipReason};

fn mutated(namespace: &str, pod_value: &Value) -> Value {
    let decision = decide_json(namespace, pod_value);
    assert!(
        matches!(decision, Decision::Mutated(_)),
        "expected a patch, got {decision:?}"
    );
    apply(pod_value, &decision)
}

fn skipped(namespace: &str, pod_value: &Value) -> SkipReason {
    match decide_json(namespace, pod_value) {
        Decision::Skipped(reason) => reason,
        other => panic!("expected the pod to be skipped, got {other:?}"),
    }
}

#[test]
fn spot_adds_toleration_required_affinity_and_scheduler() {
    let after = mutated("team-spot", &pod_json("team-spot"));
    assert!(has_spot_toleration(&after));
    let terms = required_terms(&after);
    assert_eq!(terms.len(), 1);
    assert!(has_expression(
        &terms[0],
        "spotwright.io/capacity-type",
        "In",
        &["spot"]
    ));
    assert_eq!(after["spec"]["schedulerName"], "spotwright-scheduler");
    assert!(after
        .pointer("/spec/affinity/nodeAffinity/preferredDuringSchedulingIgnoredDuringExecution")
        .is_none());
}

#[test]
fn spot_preferred_requires_spotwright_nodes_and_prefers_spot() {
    let after = mutated("team-pref", &pod_json("team-pref"));
    assert!(has_spot_toleration(&after));
    let terms = required_terms(&after);
    assert_eq!(terms.len(), 1);
    assert!(has_expression(
        &terms[0],
        "spotwright.io/nodepool",
        "Exists",
        &[]
    ));
    assert!(!has_expression(
        &terms[0],
        "spotwright.io/capacity-type",
        "In",
        &["spot"]
    ));
    let preferred = after
        .pointer("/spec/affinity/nodeAffinity/preferredDuringSchedulingIgnoredDuringExecution")
        .and_then(Value::as_array)
        .expect("a preferred term");
    assert_eq!(preferred.len(), 1);
    assert_eq!(preferred[0]["weight"], 100);
    assert!(has_expression(
        &preferred[0]["preference"],
        "spotwright.io/capacity-type",
        "In",
        &["spot"]
    ));
}

#[test]
fn on_demand_requires_spotwright_on_demand_without_spot_toleration() {
    let after = mutated("team-od", &pod_json("team-od"));
    assert!(!has_spot_toleration(&after));
    let terms = required_terms(&after);
    assert!(has_expression(
        &terms[0],
        "spotwright.io/capacity-type",
        "In",
        &["on-demand"]
    ));
    assert_eq!(after["spec"]["schedulerName"], "spotwright-scheduler");
}

#[test]
fn nodepool_is_required_and_its_taints_tolerated() {
    let after = mutated("team-pool", &pod_json("team-pool"));
    let terms = required_terms(&after);
    assert!(has_expression(
        &terms[0],
        "spotwright.io/capacity-type",
        "In",
        &["spot"]
    ));
    assert!(has_expression(
        &terms[0],
        "spotwright.io/nodepool",
        "In",
        &["gpu"]
    ));
    let tolerations = tolerations(&after);
    assert!(tolerations.contains(&json!({"key": "nvidia.com/gpu", "operator": "Equal", "value": "true", "effect": "NoSchedule"})));
    assert!(tolerations
        .contains(&json!({"key": "dedicated", "operator": "Exists", "effect": "NoExecute"})));
}

#[test]
fn pod_annotations_win_over_the_namespace() {
    let mut pod_value = pod_json("team-spot");
    pod_value["metadata"]["annotations"] =
        json!({"spotwright.io/capacity": "on-demand", "spotwright.io/nodepool": "general"});
    let after = mutated("team-spot", &pod_value);
    let terms = required_terms(&after);
    assert!(has_expression(
        &terms[0],
        "spotwright.io/capacity-type",
        "In",
        &["on-demand"]
    ));
    assert!(has_expression(
        &terms[0],
        "spotwright.io/nodepool",
        "In",
        &["general"]
    ));
    assert!(!has_spot_toleration(&after));
}

#[test]
fn a_pod_annotation_opts_in_a_plain_namespace() {
    let mut pod_value = pod_json("plain");
    pod_value["metadata"]["annotations"] = json!({"spotwright.io/capacity": "spot"});
    let after = mutated("plain", &pod_value);
    assert!(has_spot_toleration(&after));
}

#[test]
fn pod_level_none_leaves_the_pod_alone() {
    let mut pod_value = pod_json("team-spot");
    pod_value["metadata"]["annotations"] = json!({"spotwright.io/capacity": "none"});
    assert_eq!(skipped("team-spot", &pod_value), SkipReason::OptedOut);
}

#[test]
fn no_annotation_changes_nothing() {
    assert_eq!(skipped("plain", &pod_json("plain")), SkipReason::NotOptedIn);
}

#[test]
fn a_namespace_missing_from_the_cache_is_not_opted_in() {
    assert_eq!(
        skipped("brand-new", &pod_json("brand-new")),
        SkipReason::NamespaceUnknown
    );
}

#[test]
fn system_namespaces_and_our_own_are_never_touched() {
    for namespace in [
        "kube-system",
        "kube-public",
        "kube-node-lease",
        "spotwright-system",
    ] {
        let mut pod_value = pod_json(namespace);
        pod_value["metadata"]["annotations"] = json!({"spotwright.io/capacity": "spot"});
        assert_eq!(
            skipped(namespace, &pod_value),
            SkipReason::SystemNamespace,
            "{namespace}"
        );
    }
    let settings = Settings {
        own_namespace: "platform".into(),
        ..Settings::default()
    };
    let mut pod_value = pod_json("platform");
    pod_value["metadata"]["annotations"] = json!({"spotwright.io/capacity": "spot"});
    assert_eq!(
        decide("platform", &pod(&pod_value), &view(), &settings),
        Decision::Skipped(SkipReason::SystemNamespace)
    );
}

#[test]
fn mirror_pods_are_never_touched() {
    let mut pod_value = pod_json("team-spot");
    pod_value["metadata"]["annotations"] = json!({"kubernetes.io/config.mirror": "abc"});
    assert_eq!(skipped("team-spot", &pod_value), SkipReason::MirrorPod);
}

#[test]
fn daemonset_pods_are_never_touched() {
    let mut pod_value = pod_json("team-spot");
    pod_value["metadata"]["ownerReferences"] = json!([{"apiVersion": "apps/v1", "kind": "DaemonSet", "name": "agent", "uid": "1", "controller": true}]);
    assert_eq!(skipped("team-spot", &pod_value), SkipReason::DaemonSetPod);
}

#[test]
fn pods_owned_by_a_replicaset_are_mutated() {
    let mut pod_value = pod_json("team-spot");
    pod_value["metadata"]["ownerReferences"] = json!([{"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "web-1", "uid": "1", "controller": true}]);
    mutated("team-spot", &pod_value);
}

#[test]
fn bound_pods_are_never_touched() {
    let mut pod_value = pod_json("team-spot");
    pod_value["spec"]["nodeName"] = json!("node-1");
    assert_eq!(skipped("team-spot", &pod_value), SkipReason::AlreadyBound);
}

#[test]
fn pods_pinned_to_on_demand_by_node_selector_are_left_alone() {
    for (key, value) in [
        ("spotwright.io/capacity-type", "on-demand"),
        ("eks.amazonaws.com/capacityType", "ON_DEMAND"),
    ] {
        let mut pod_value = pod_json("team-spot");
        pod_value["spec"]["nodeSelector"] = json!({key: value});
        assert_eq!(
            skipped("team-spot", &pod_value),
            SkipReason::PinnedOnDemand,
            "{key}"
        );
    }
}

#[test]
fn pods_pinned_to_on_demand_by_every_required_term_are_left_alone() {
    let mut pod_value = pod_json("team-spot");
    pod_value["spec"]["affinity"] = json!({"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [
        {"matchExpressions": [{"key": "eks.amazonaws.com/capacityType", "operator": "In", "values": ["ON_DEMAND"]}]},
        {"matchExpressions": [{"key": "spotwright.io/capacity-type", "operator": "In", "values": ["on-demand"]}]}
    ]}}});
    assert_eq!(skipped("team-spot", &pod_value), SkipReason::PinnedOnDemand);
}

#[test]
fn one_unpinned_term_is_enough_to_be_mutated() {
    let mut pod_value = pod_json("team-spot");
    pod_value["spec"]["affinity"] = json!({"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [
        {"matchExpressions": [{"key": "eks.amazonaws.com/capacityType", "operator": "In", "values": ["ON_DEMAND"]}]},
        {"matchExpressions": [{"key": "kubernetes.io/arch", "operator": "In", "values": ["arm64"]}]}
    ]}}});
    let after = mutated("team-spot", &pod_value);
    for term in required_terms(&after) {
        assert!(has_expression(
            &term,
            "spotwright.io/capacity-type",
            "In",
            &["spot"]
        ));
    }
}

#[test]
fn on_demand_opt_in_is_not_blocked_by_our_own_on_demand_selector() {
    let mut pod_value = pod_json("team-od");
    pod_value["spec"]["nodeSelector"] = json!({"spotwright.io/capacity-type": "on-demand"});
    mutated("team-od", &pod_value);
    pod_value["spec"]["nodeSelector"] = json!({"eks.amazonaws.com/capacityType": "ON_DEMAND"});
    assert_eq!(skipped("team-od", &pod_value), SkipReason::PinnedOnDemand);
}

#[test]
fn an_unknown_capacity_value_is_admitted_unchanged_with_a_warning() {
    match decide_json("typo", &pod_json("typo")) {
        Decision::Invalid(invalid @ Invalid::UnknownCapacity(_)) => {
            assert!(
                invalid.warning().contains("\"spto\""),
                "{}",
                invalid.warning()
            );
            assert_eq!(invalid.reason(), "unknown-capacity");
        }
        other => panic!("expected an invalid opt-in, got {other:?}"),
    }
}

#[test]
fn an_unknown_nodepool_is_admitted_unchanged_with_a_warning() {
    let mut pod_value = pod_json("team-spot");
    pod_value["metadata"]["annotations"] = json!({"spotwright.io/nodepool": "nope"});
    match decide_json("team-spot", &pod_value) {
        Decision::Invalid(invalid) => {
            assert_eq!(invalid, Invalid::UnknownNodePool("nope".into()));
            assert!(invalid.warning().contains("nope"));
        }
        other => panic!("expected an invalid opt-in, got {other:?}"),
    }
}

#[test]
fn a_nodepool_without_capacity_is_admitted_unchanged_with_a_warning() {
    assert_eq!(
        decide_json("pool-only", &pod_json("pool-only")),
        Decision::Invalid(Invalid::NodePoolWithoutCapacity("gpu".into()))
    );
}

#[test]
fn spot_is_anded_into_every_user_term_and_user_expressions_survive() {
    let mut pod_value = pod_json("team-spot");
    let user_terms = json!([
        {"matchExpressions": [{"key": "kubernetes.io/arch", "operator": "In", "values": ["arm64"]}]},
        {"matchFields": [{"key": "metadata.name", "operator": "In", "values": ["n1"]}]}
    ]);
    pod_value["spec"]["affinity"] = json!({"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": user_terms}}});
    let after = mutated("team-spot", &pod_value);
    let terms = required_terms(&after);
    assert_eq!(terms.len(), 2, "no term added or removed");
    assert_eq!(
        terms[0]["matchExpressions"][0],
        user_terms[0]["matchExpressions"][0]
    );
    assert_eq!(terms[1]["matchFields"], user_terms[1]["matchFields"]);
    for term in &terms {
        assert!(
            has_expression(term, "spotwright.io/capacity-type", "In", &["spot"]),
            "{term}"
        );
    }
}

#[test]
fn other_affinity_is_kept_when_node_affinity_is_added() {
    let mut pod_value = pod_json("team-spot");
    let anti = json!({"requiredDuringSchedulingIgnoredDuringExecution": [{"topologyKey": "kubernetes.io/hostname", "labelSelector": {"matchLabels": {"app": "web"}}}]});
    pod_value["spec"]["affinity"] = json!({"podAntiAffinity": anti});
    let after = mutated("team-spot", &pod_value);
    assert_eq!(after["spec"]["affinity"]["podAntiAffinity"], anti);
    assert_eq!(required_terms(&after).len(), 1);
}

#[test]
fn existing_tolerations_are_appended_to_never_replaced() {
    let original = pod_json("team-spot");
    let decision = decide_json("team-spot", &original);
    let Decision::Mutated(ops) = &decision else {
        panic!("expected a patch")
    };
    assert!(
        ops.iter().any(|op| op.path() == "/spec/tolerations/-"),
        "appends with /-: {ops:?}"
    );
    assert!(
        ops.iter().all(|op| op.path() != "/spec/tolerations"),
        "never replaces the array"
    );
    let after = apply(&original, &decision);
    assert_eq!(tolerations(&after)[..2], tolerations(&original)[..]);
}

#[test]
fn missing_parents_are_created() {
    let mut pod_value = pod_json("team-pref");
    pod_value["spec"]
        .as_object_mut()
        .unwrap()
        .remove("tolerations");
    let decision = decide_json("team-pref", &pod_value);
    let Decision::Mutated(ops) = &decision else {
        panic!("expected a patch")
    };
    assert!(ops
        .iter()
        .any(|op| op.path() == "/spec/tolerations" && op.value().is_array()));
    assert!(ops.iter().any(|op| op.path() == "/spec/affinity"));
    let after = apply(&pod_value, &decision);
    assert!(has_spot_toleration(&after));
}

#[test]
fn a_wildcard_toleration_already_tolerates_the_spot_taint() {
    let mut pod_value = pod_json("team-spot");
    pod_value["spec"]["tolerations"] = json!([{"operator": "Exists"}]);
    let after = mutated("team-spot", &pod_value);
    assert_eq!(tolerations(&after), vec![json!({"operator": "Exists"})]);
}

#[test]
fn a_custom_scheduler_is_kept_and_an_empty_scheduler_name_turns_injection_off() {
    let mut pod_value = pod_json("team-spot");
    pod_value["spec"]["schedulerName"] = json!("volcano");
    assert_eq!(
        mutated("team-spot", &pod_value)["spec"]["schedulerName"],
        "volcano"
    );

    let settings = Settings {
        scheduler_name: None,
        ..Settings::default()
    };
    let original = pod_json("team-spot");
    let decision = decide("team-spot", &pod(&original), &view(), &settings);
    assert_eq!(
        apply(&original, &decision)["spec"]["schedulerName"],
        "default-scheduler"
    );
}

#[test]
fn admitting_a_mutated_pod_again_yields_no_patch() {
    for namespace in ["team-spot", "team-pref", "team-od", "team-pool"] {
        let after = mutated(namespace, &pod_json(namespace));
        assert_eq!(
            decide_json(namespace, &after),
            Decision::Unchanged,
            "{namespace}"
        );
    }
}
