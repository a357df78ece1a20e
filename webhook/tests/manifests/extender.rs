//! The scheduler extender (manifests/base/extender): read-only RBAC, a
//! highly available Deployment of `spotwright-extender`, its Service, PDB
//! and the NetworkPolicy that lets only spotwright-scheduler call it.

use serde_json::{json, Value};
use std::collections::{BTreeMap, BTreeSet};

use crate::deployment::{assert_highly_available, cmdline, selector_matches};
use crate::rbac::{bindings_of, grant_set, grants};
use crate::render::{base, container_of, items, local, strs};
use crate::{EXTENDER, NS, SCHEDULER};

const HTTP_PORT: u64 = 8888;
const METRICS_PORT: u64 = 8081;

fn pod_labels(name: &str) -> &'static Value {
    &base().get("Deployment", name)["spec"]["template"]["metadata"]["labels"]
}

#[test]
fn extender_rbac_is_exactly_read_only_caches() {
    let r = base();
    let role = r.get("ClusterRole", EXTENDER);
    let want = grant_set(&[
        ("", "nodes", "get", ""),
        ("", "nodes", "list", ""),
        ("", "nodes", "watch", ""),
        ("", "pods", "get", ""),
        ("", "pods", "list", ""),
        ("", "pods", "watch", ""),
        ("spotwright.io", "nodeclaims", "get", ""),
        ("spotwright.io", "nodeclaims", "list", ""),
        ("spotwright.io", "nodeclaims", "watch", ""),
        ("events.k8s.io", "events", "list", ""),
        ("events.k8s.io", "events", "watch", ""),
    ]);
    assert_eq!(
        grants(role),
        want,
        "ClusterRole/{EXTENDER}: must grant exactly get/list/watch on nodes, pods and nodeclaims.spotwright.io and list/watch on events.k8s.io events"
    );
    assert!(
        items(&role["rules"]).all(|rule| rule.get("nonResourceURLs").is_none()),
        "ClusterRole/{EXTENDER}: must not grant nonResourceURLs"
    );
    assert!(
        role.get("aggregationRule").is_none(),
        "ClusterRole/{EXTENDER}: must not aggregate other roles"
    );
    // Its ServiceAccount gets this role, and nothing else.
    assert_eq!(
        bindings_of(r, EXTENDER),
        BTreeSet::from([(
            "ClusterRoleBinding".to_string(),
            String::new(),
            "ClusterRole".to_string(),
            EXTENDER.to_string()
        )]),
        "ServiceAccount {NS}/{EXTENDER}: must be bound to ClusterRole/{EXTENDER} only"
    );
    r.get("ServiceAccount", EXTENDER);
}

#[test]
fn extender_deployment_is_highly_available() {
    assert_highly_available(base(), EXTENDER, EXTENDER, Some("8081"));
}

#[test]
fn extender_container_runs_the_extender() {
    let r = base();
    let d = r.get("Deployment", EXTENDER);
    let pod = &d["spec"]["template"]["spec"];
    let who = format!("Deployment/{EXTENDER}");
    assert_eq!(
        items(&pod["containers"]).count(),
        1,
        "{who}: must have exactly one container, extender"
    );
    assert!(
        items(&pod["initContainers"]).next().is_none(),
        "{who}: needs no initContainers"
    );
    let c = container_of(r, EXTENDER, "extender");
    let who = format!("{who} container extender");
    assert!(
        c["image"]
            .as_str()
            .is_some_and(|i| i.starts_with("ghcr.io/spotwright/spotwright:")),
        "{who}: must use the ghcr.io/spotwright/spotwright image, got {}",
        c["image"]
    );
    assert_eq!(
        cmdline(c),
        [
            "spotwright-extender",
            "--listen=0.0.0.0:8888",
            "--metrics-listen=0.0.0.0:8081",
            "--log-format=json"
        ],
        "{who}: must run `spotwright-extender --listen=0.0.0.0:8888 --metrics-listen=0.0.0.0:8081 --log-format=json`"
    );

    let ports: BTreeMap<&str, &Value> = items(&c["ports"])
        .map(|p| (p["name"].as_str().unwrap_or(""), &p["containerPort"]))
        .collect();
    assert_eq!(
        ports,
        BTreeMap::from([
            ("http", &json!(HTTP_PORT)),
            ("metrics", &json!(METRICS_PORT))
        ]),
        "{who}: ports must be http=8888 and metrics=8081"
    );
    for (probe, path) in [
        ("livenessProbe", "/healthz"),
        ("readinessProbe", "/readyz"),
        ("startupProbe", "/healthz"),
    ] {
        let get = &c[probe]["httpGet"];
        assert!(get.is_object(), "{who}: {probe} must be an httpGet probe");
        assert!(
            get["port"] == "metrics" || get["port"] == METRICS_PORT,
            "{who}: {probe} must use the metrics port, got {}",
            get["port"]
        );
        assert_eq!(get["path"], path, "{who}: {probe} must GET {path}");
    }

    let res = &c["resources"];
    assert!(
        res["limits"].get("cpu").is_none(),
        "{who}: must not have a CPU limit (throttling adds latency to every scheduling decision)"
    );
    assert!(
        res["limits"]["memory"].is_string() && res["requests"]["memory"].is_string(),
        "{who}: the caches grow with the cluster: memory needs a request and a limit"
    );
}

#[test]
fn extender_service_exposes_http_and_metrics() {
    let r = base();
    let svc = r.get("Service", EXTENDER);
    let who = format!("Service/{EXTENDER}");
    assert!(
        svc["spec"]["type"].is_null() || svc["spec"]["type"] == "ClusterIP",
        "{who}: must be a ClusterIP Service (in-cluster only)"
    );
    let ports: BTreeSet<(u64, String)> = items(&svc["spec"]["ports"])
        .map(|p| {
            (
                p["port"].as_u64().unwrap_or(0),
                p["targetPort"].as_str().unwrap_or("").to_string(),
            )
        })
        .collect();
    assert_eq!(
        ports,
        BTreeSet::from([
            (HTTP_PORT, "http".to_string()),
            (METRICS_PORT, "metrics".to_string())
        ]),
        "{who}: ports must be 8888 -> http and 8081 -> metrics"
    );
    assert!(
        selector_matches(
            &json!({"matchLabels": svc["spec"]["selector"]}),
            pod_labels(EXTENDER)
        ),
        "{who}: selector must select the Deployment's pods"
    );
}

/// The `port` of a NetworkPolicy port entry, as a number when it is one of
/// the extender's named ports.
fn policy_port(p: &Value) -> Option<u64> {
    match &p["port"] {
        Value::Number(n) => n.as_u64(),
        Value::String(s) if s == "http" => Some(HTTP_PORT),
        Value::String(s) if s == "metrics" => Some(METRICS_PORT),
        _ => None,
    }
}

#[test]
fn extender_network_policy_admits_only_the_scheduler_on_8888() {
    let r = base();
    let np = r.get("NetworkPolicy", EXTENDER);
    let who = format!("NetworkPolicy/{EXTENDER}");
    let spec = &np["spec"];
    assert!(
        selector_matches(&spec["podSelector"], pod_labels(EXTENDER)),
        "{who}: podSelector must select the extender's pods"
    );
    assert!(
        strs(&spec["policyTypes"]).contains(&"Ingress"),
        "{who}: policyTypes must include Ingress"
    );
    let rules: Vec<&Value> = items(&spec["ingress"]).collect();
    assert!(!rules.is_empty(), "{who}: needs ingress rules");

    let mut http_from_scheduler = false;
    let mut metrics_in_cluster = false;
    for rule in rules {
        let ports: Vec<Option<u64>> = items(&rule["ports"]).map(policy_port).collect();
        assert!(
            !ports.is_empty(),
            "{who}: rule {rule} opens every port; each rule must name its ports"
        );
        assert!(
            ports
                .iter()
                .all(|p| *p == Some(HTTP_PORT) || *p == Some(METRICS_PORT)),
            "{who}: rule {rule} may only open 8888 (http) or 8081 (metrics)"
        );
        assert!(
            items(&rule["ports"]).all(|p| p.get("endPort").is_none()),
            "{who}: rule {rule} must not open a port range"
        );
        let peers: Vec<&Value> = items(&rule["from"]).collect();
        assert!(
            !peers.is_empty(),
            "{who}: rule {rule} admits every source; each rule must name its peers"
        );
        if ports.contains(&Some(HTTP_PORT)) {
            for peer in &peers {
                assert!(
                    peer.get("namespaceSelector").is_none()
                        && peer.get("ipBlock").is_none()
                        && selector_matches(&peer["podSelector"], pod_labels(SCHEDULER)),
                    "{who}: port 8888 may only be opened to the {SCHEDULER} pods of its own namespace, got peer {peer}"
                );
            }
            http_from_scheduler = true;
        } else {
            metrics_in_cluster |= peers
                .iter()
                .any(|p| p["namespaceSelector"] == json!({}) && p.get("podSelector").is_none());
        }
    }
    assert!(
        http_from_scheduler,
        "{who}: must admit the {SCHEDULER} pods on port 8888"
    );
    assert!(
        metrics_in_cluster,
        "{who}: must admit every in-cluster pod (namespaceSelector: {{}}) on the metrics port 8081"
    );
}

#[test]
fn local_overlay_scales_the_extender_to_zero() {
    let r = local();
    assert_eq!(
        r.get("Deployment", EXTENDER)["spec"]["replicas"],
        0,
        "overlays/local: Deployment/{EXTENDER} must be scaled to 0 (the extender runs as a local process on 127.0.0.1:18888)"
    );
    r.get("Service", EXTENDER);
    r.get("ClusterRole", EXTENDER);
}
