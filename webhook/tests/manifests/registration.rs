//! MutatingWebhookConfiguration/spotwright-webhook: its rules, selectors and
//! match conditions, how it reaches the webhook (Service in the base, loopback
//! URL in the local overlay).

use serde_json::{json, Value};
use std::collections::{BTreeMap, BTreeSet};

use crate::render::{base, container, items, local, strs, Rendered};
use crate::{CRDS, NS, WEBHOOK};

const SYSTEM_NAMESPACES: [&str; 4] = ["kube-system", "kube-public", "kube-node-lease", NS];

/// The registration contract, the same in the base and every overlay.
fn assert_registration(r: &Rendered) {
    let w = r.webhook();
    let who = format!("{}: MutatingWebhookConfiguration/{WEBHOOK}", r.name);
    for (field, want, rule) in [
        (
            "failurePolicy",
            json!("Ignore"),
            "failurePolicy must be Ignore (a down webhook must not stop pod creation)",
        ),
        ("sideEffects", json!("None"), "sideEffects must be None"),
        ("timeoutSeconds", json!(2), "timeoutSeconds must be 2"),
        (
            "admissionReviewVersions",
            json!(["v1"]),
            "admissionReviewVersions must be [v1]",
        ),
        (
            "reinvocationPolicy",
            json!("IfNeeded"),
            "reinvocationPolicy must be IfNeeded",
        ),
        (
            "matchPolicy",
            json!("Equivalent"),
            "matchPolicy must be Equivalent",
        ),
    ] {
        assert_eq!(w[field], want, "{who}: {rule}");
    }

    let rules = w["rules"]
        .as_array()
        .unwrap_or_else(|| panic!("{who}: no rules"));
    assert!(!rules.is_empty(), "{who}: rules must not be empty");
    for rule in rules {
        for (field, want, what) in [
            ("operations", json!(["CREATE"]), "be CREATE only"),
            ("apiGroups", json!([""]), "be the core group only"),
            ("apiVersions", json!(["v1"]), "be v1 only"),
            (
                "resources",
                json!(["pods"]),
                "be pods only (no subresources)",
            ),
            ("scope", json!("Namespaced"), "have scope Namespaced"),
        ] {
            assert_eq!(rule[field], want, "{who}: rules must {what}, got {rule}");
        }
    }

    assert_namespace_selector(&who, &w["namespaceSelector"]);
    assert_match_conditions(&who, &w["matchConditions"]);
}

/// System namespaces, and namespaces labelled spotwright.io/webhook=disabled,
/// are never sent to the webhook.
fn assert_namespace_selector(who: &str, sel: &Value) {
    let excluded: BTreeSet<&str> = items(&sel["matchExpressions"])
        .filter(|e| e["key"] == "kubernetes.io/metadata.name" && e["operator"] == "NotIn")
        .flat_map(|e| strs(&e["values"]))
        .collect();
    for ns in SYSTEM_NAMESPACES {
        assert!(
            excluded.contains(ns),
            "{who}: namespaceSelector must exclude kubernetes.io/metadata.name {ns} (NotIn); excludes {excluded:?}"
        );
    }
    let by_label = items(&sel["matchExpressions"]).any(|e| {
        e["key"] == "spotwright.io/webhook"
            && e["operator"] == "NotIn"
            && strs(&e["values"]) == ["disabled"]
    });
    assert!(
        by_label,
        "{who}: namespaceSelector must exclude namespaces labelled spotwright.io/webhook=disabled"
    );
    assert!(
        sel.get("matchLabels").is_none(),
        "{who}: namespaceSelector must not require labels (opt-in is by annotation)"
    );
}

/// The CEL pre-filters: well-formed, about the pod, and the expected ones.
fn assert_match_conditions(who: &str, conds: &Value) {
    let conds = conds
        .as_array()
        .unwrap_or_else(|| panic!("{who}: no matchConditions"));
    assert!(
        !conds.is_empty(),
        "{who}: at least one matchCondition is required as a cheap pre-filter"
    );
    assert!(
        conds.len() <= 64,
        "{who}: at most 64 matchConditions are allowed"
    );
    let mut names = BTreeSet::new();
    for c in conds {
        let name = c["name"]
            .as_str()
            .unwrap_or_else(|| panic!("{who}: a matchCondition has no name"));
        assert!(
            !name.is_empty() && name.len() <= 63 && names.insert(name),
            "{who}: matchCondition names must be unique, non-empty, <= 63 chars: {name}"
        );
        let expr = c["expression"].as_str().unwrap_or("");
        assert!(
            expr.contains("object."),
            "{who}: matchCondition {name} must test the pod (`object`), got {expr:?}"
        );
        assert!(
            !expr.contains("oldObject"),
            "{who}: matchCondition {name}: CREATE has no oldObject"
        );
        assert_eq!(
            expr.matches('(').count(),
            expr.matches(')').count(),
            "{who}: matchCondition {name}: unbalanced parentheses in {expr:?}"
        );
    }
    for wanted in [
        "exclude-bound-pods",
        "exclude-daemonset-pods",
        "exclude-mirror-pods",
    ] {
        assert!(
            names.contains(wanted),
            "{who}: matchCondition {wanted} is missing"
        );
    }
}

#[test]
fn webhook_registration_follows_the_contract() {
    assert_registration(base());
}

#[test]
fn webhook_client_config_targets_the_service() {
    let r = base();
    let w = r.webhook();
    let who = format!("MutatingWebhookConfiguration/{WEBHOOK}");
    let cc = &w["clientConfig"];
    assert_eq!(
        cc["service"],
        json!({"name": WEBHOOK, "namespace": NS, "path": "/mutate", "port": 443}),
        "{who}: clientConfig.service must be {WEBHOOK}.{NS}:443/mutate"
    );
    assert!(
        cc.get("url").is_none(),
        "{who}: the base must use service, not url"
    );
    assert!(
        cc.get("caBundle").is_none(),
        "{who}: caBundle must be absent so that re-applying the manifests does not wipe the one the certs sidecar set"
    );

    let svc = r.get("Service", WEBHOOK);
    let ports = svc["spec"]["ports"].as_array().unwrap();
    let https = ports
        .iter()
        .find(|p| p["port"] == 443)
        .unwrap_or_else(|| panic!("Service/{WEBHOOK}: no port 443"));
    assert_eq!(
        https["targetPort"], "https",
        "Service/{WEBHOOK}: port 443 must target the container port named https"
    );
    assert!(
        ports
            .iter()
            .any(|p| p["port"] == 8080 && p["targetPort"] == "metrics"),
        "Service/{WEBHOOK}: must expose the metrics port 8080"
    );
    let tpl_labels = &r.deployment()["spec"]["template"]["metadata"]["labels"];
    assert!(
        svc["spec"]["selector"]
            .as_object()
            .is_some_and(|s| !s.is_empty() && s.iter().all(|(k, v)| &tpl_labels[k] == v)),
        "Service/{WEBHOOK}: selector must select the Deployment's pods"
    );

    let ports: BTreeMap<&str, &Value> = items(&container(r, "webhook")["ports"])
        .map(|p| (p["name"].as_str().unwrap_or(""), &p["containerPort"]))
        .collect();
    for (name, number) in [("https", 8443), ("metrics", 8080)] {
        assert_eq!(
            ports.get(name),
            Some(&&json!(number)),
            "Deployment/{WEBHOOK}: container webhook needs port {name}={number}"
        );
    }
}

#[test]
fn local_overlay_calls_the_webhook_on_loopback() {
    let r = local();
    let w = r.webhook();
    let who = format!("overlays/local: MutatingWebhookConfiguration/{WEBHOOK}");
    let url = w["clientConfig"]["url"]
        .as_str()
        .unwrap_or_else(|| panic!("{who}: clientConfig.url must be set"));
    assert!(
        url.starts_with("https://127.0.0.1:") && url.ends_with("/mutate"),
        "{who}: clientConfig.url must be https://127.0.0.1:<port>/mutate, got {url}"
    );
    assert!(
        w["clientConfig"].get("service").is_none(),
        "{who}: clientConfig must not also have a service"
    );
    assert_registration(r);
    assert_eq!(
        r.deployment()["spec"]["replicas"], 0,
        "overlays/local: Deployment/{WEBHOOK} must be scaled to 0 (the webhook runs as a local process)"
    );
    for name in CRDS {
        r.get("CustomResourceDefinition", name);
    }
}
