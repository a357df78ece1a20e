//! Pods, views and patch application shared by the webhook's tests.
#![allow(dead_code)]

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::Taint;
use serde_json::{json, Value};
use spotwright_webhook::mutate::{decide, Decision, NamespaceFacts, Settings};
use spotwright_webhook::pod::PodView;
use spotwright_webhook::view::StaticView;

/// Namespaces: `team-spot` (spot), `team-pref` (spot-preferred), `team-od`
/// (on-demand), `team-pool` (spot + NodePool `gpu`), `plain` (nothing),
/// `typo` (spto); NodePools `gpu` (two taints) and `general` (none).
pub fn view() -> StaticView {
    let mut namespaces = BTreeMap::new();
    let facts = |capacity: Option<&str>, nodepool: Option<&str>| NamespaceFacts {
        capacity: capacity.map(str::to_owned),
        nodepool: nodepool.map(str::to_owned),
    };
    namespaces.insert("team-spot".to_owned(), facts(Some("spot"), None));
    namespaces.insert("team-pref".to_owned(), facts(Some("spot-preferred"), None));
    namespaces.insert("team-od".to_owned(), facts(Some("on-demand"), None));
    namespaces.insert("team-pool".to_owned(), facts(Some("spot"), Some("gpu")));
    namespaces.insert("pool-only".to_owned(), facts(None, Some("gpu")));
    namespaces.insert("plain".to_owned(), facts(None, None));
    namespaces.insert("typo".to_owned(), facts(Some("spto"), None));
    for system in [
        "kube-system",
        "kube-public",
        "kube-node-lease",
        "spotwright-system",
    ] {
        namespaces.insert(system.to_owned(), facts(Some("spot"), None));
    }
    let mut nodepools = BTreeMap::new();
    nodepools.insert(
        "gpu".to_owned(),
        vec![
            Taint {
                key: "nvidia.com/gpu".into(),
                value: Some("true".into()),
                effect: "NoSchedule".into(),
                time_added: None,
            },
            Taint {
                key: "dedicated".into(),
                value: None,
                effect: "NoExecute".into(),
                time_added: None,
            },
        ],
    );
    nodepools.insert("general".to_owned(), vec![]);
    StaticView {
        namespaces,
        nodepools,
    }
}

/// A pod as the API server hands it to a mutating webhook: defaulted.
pub fn pod_json(namespace: &str) -> Value {
    json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"generateName": "web-", "namespace": namespace, "labels": {"app": "web"}},
        "spec": {
            "containers": [{"name": "web", "image": "nginx:1.27", "resources": {"requests": {"cpu": "100m", "memory": "128Mi"}}}],
            "schedulerName": "default-scheduler",
            "restartPolicy": "Always",
            "terminationGracePeriodSeconds": 30,
            "dnsPolicy": "ClusterFirst",
            "tolerations": [
                {"key": "node.kubernetes.io/not-ready", "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 300},
                {"key": "node.kubernetes.io/unreachable", "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 300}
            ]
        }
    })
}

pub fn pod(value: &Value) -> PodView {
    serde_json::from_value(value.clone()).expect("test pod is a valid Pod")
}

pub fn decide_json(namespace: &str, pod_value: &Value) -> Decision {
    decide(namespace, &pod(pod_value), &view(), &Settings::default())
}

/// Applies a decision's patch to the pod, as the API server would.
pub fn apply(pod_value: &Value, decision: &Decision) -> Value {
    let mut doc = pod_value.clone();
    if let Decision::Mutated(ops) = decision {
        let patch: json_patch::Patch =
            serde_json::from_value(serde_json::to_value(ops).expect("patch serialises"))
                .expect("patch is RFC 6902");
        json_patch::patch(&mut doc, &patch).expect("patch applies to the original pod");
    }
    doc
}

/// The pod's required node-selector terms' expressions.
pub fn required_terms(pod_value: &Value) -> Vec<Value> {
    pod_value
        .pointer("/spec/affinity/nodeAffinity/requiredDuringSchedulingIgnoredDuringExecution/nodeSelectorTerms")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default()
}

/// Whether the term has `key operator values`; values compare as a set, as Kubernetes does.
pub fn has_expression(term: &Value, key: &str, operator: &str, values: &[&str]) -> bool {
    let wanted: std::collections::BTreeSet<&str> = values.iter().copied().collect();
    term.get("matchExpressions")
        .and_then(Value::as_array)
        .is_some_and(|expressions| {
            expressions.iter().any(|e| {
                let got: std::collections::BTreeSet<&str> = e
                    .get("values")
                    .and_then(Value::as_array)
                    .map(|v| v.iter().filter_map(Value::as_str).collect())
                    .unwrap_or_default();
                e["key"] == key && e["operator"] == operator && got == wanted
            })
        })
}

pub const SPOT_TOLERATION: &str = r#"{"effect":"NoSchedule","key":"spotwright.io/capacity-type","operator":"Equal","value":"spot"}"#;

pub fn tolerations(pod_value: &Value) -> Vec<Value> {
    pod_value
        .pointer("/spec/tolerations")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default()
}

pub fn has_spot_toleration(pod_value: &Value) -> bool {
    let spot: Value = serde_json::from_str(SPOT_TOLERATION).expect("constant parses");
    tolerations(pod_value).contains(&spot)
}
