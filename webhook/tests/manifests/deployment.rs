//! Deployment/spotwright-webhook and its PodDisruptionBudget: availability,
//! hardening, and what each container runs. The availability and hardening
//! rules are helpers the extender and scheduler tests (and the tree-wide
//! hardening test in main.rs) apply to their Deployments too.

use serde_json::{json, Value};

use crate::render::{base, container, items, pod_containers, strs, Rendered};
use crate::WEBHOOK;

/// A non-empty `matchLabels` selector that `labels` satisfies.
pub fn selector_matches(selector: &Value, labels: &Value) -> bool {
    let ml = selector["matchLabels"]
        .as_object()
        .cloned()
        .unwrap_or_default();
    !ml.is_empty() && ml.iter().all(|(k, v)| &labels[k] == v)
}

/// `command` followed by `args`.
pub fn cmdline(c: &Value) -> Vec<String> {
    strs(&c["command"])
        .into_iter()
        .chain(strs(&c["args"]))
        .map(str::to_string)
        .collect()
}

#[test]
fn deployment_is_highly_available() {
    assert_highly_available(base(), WEBHOOK, WEBHOOK, Some("8080"));
}

/// Deployment `name` of `r` and its PodDisruptionBudget (of the same name):
/// 2 replicas spread over nodes and zones, off Spotwright's own and Spot
/// nodes, a priority class, ServiceAccount `service_account` with its token,
/// 30s of grace, and (if `prometheus_port` is given) Prometheus annotations.
pub fn assert_highly_available(
    r: &Rendered,
    name: &str,
    service_account: &str,
    prometheus_port: Option<&str>,
) {
    let d = r.get("Deployment", name);
    let who = format!("Deployment/{name}");
    assert_eq!(d["spec"]["replicas"], 2, "{who}: must run 2 replicas");
    let pod = &d["spec"]["template"]["spec"];
    let anti = &pod["affinity"]["podAntiAffinity"];
    let terms: Vec<&Value> = items(&anti["requiredDuringSchedulingIgnoredDuringExecution"])
        .chain(
            items(&anti["preferredDuringSchedulingIgnoredDuringExecution"])
                .map(|p| &p["podAffinityTerm"]),
        )
        .collect();
    let tpl_labels = &d["spec"]["template"]["metadata"]["labels"];
    assert!(
        terms
            .iter()
            .any(|t| t["topologyKey"] == "kubernetes.io/hostname"
                && selector_matches(&t["labelSelector"], tpl_labels)),
        "{who}: needs pod anti-affinity on kubernetes.io/hostname selecting its own pods"
    );
    assert!(
        items(&pod["topologySpreadConstraints"]).any(|t| {
            t["topologyKey"] == "topology.kubernetes.io/zone"
                && t["whenUnsatisfiable"] == "ScheduleAnyway"
        }),
        "{who}: needs a ScheduleAnyway topology spread over zones"
    );
    let avoid_own_nodes =
        items(&pod["affinity"]["nodeAffinity"]["preferredDuringSchedulingIgnoredDuringExecution"])
            .flat_map(|p| items(&p["preference"]["matchExpressions"]))
            .any(|e| e["key"] == "spotwright.io/capacity-type" && e["operator"] == "DoesNotExist");
    assert!(
        avoid_own_nodes,
        "{who}: should prefer nodes without spotwright.io/capacity-type"
    );
    assert!(
        pod["tolerations"].as_array().is_none_or(|t| t.is_empty()),
        "{who}: must not tolerate anything (never on Spot nodes)"
    );
    let prio = pod["priorityClassName"]
        .as_str()
        .unwrap_or_else(|| panic!("{who}: needs a priorityClassName"));
    if !prio.starts_with("system-") {
        r.get("PriorityClass", prio);
    }
    assert_eq!(
        pod["terminationGracePeriodSeconds"], 30,
        "{who}: terminationGracePeriodSeconds must be 30"
    );
    assert_eq!(
        pod["serviceAccountName"], service_account,
        "{who}: must run as ServiceAccount {service_account}"
    );
    assert_eq!(
        pod["automountServiceAccountToken"], true,
        "{who}: needs its API token"
    );
    if let Some(port) = prometheus_port {
        let ann = &d["spec"]["template"]["metadata"]["annotations"];
        assert_eq!(
            ann["prometheus.io/scrape"], "true",
            "{who}: pods must be annotated prometheus.io/scrape"
        );
        assert_eq!(
            ann["prometheus.io/port"], port,
            "{who}: pods must be annotated prometheus.io/port={port}"
        );
    }

    let pdb = r.get("PodDisruptionBudget", name);
    assert_eq!(
        pdb["spec"]["minAvailable"], 1,
        "PodDisruptionBudget/{name}: minAvailable must be 1"
    );
    assert!(
        selector_matches(&pdb["spec"]["selector"], tpl_labels),
        "PodDisruptionBudget/{name}: selector must select the Deployment's pods"
    );
}

/// No host namespaces and no hostPath volumes in pod spec `pod` of `who`.
pub fn assert_pod_hardened(who: &str, pod: &Value) {
    for f in ["hostNetwork", "hostPID", "hostIPC"] {
        assert!(pod[f] != json!(true), "{who}: {f} must not be set");
    }
    for v in items(&pod["volumes"]) {
        assert!(
            v.get("hostPath").is_none(),
            "{who}: volume {} must not be a hostPath",
            v["name"]
        );
    }
}

/// Container `c` of pod spec `pod` runs as 65532, non-root, read-only,
/// without privileges or capabilities, under RuntimeDefault seccomp, with
/// CPU and memory requests and a memory limit.
pub fn assert_container_hardened(who: &str, pod: &Value, c: &Value) {
    let sc = &c["securityContext"];
    for (field, want) in [
        ("runAsNonRoot", json!(true)),
        ("runAsUser", json!(65532)),
        ("runAsGroup", json!(65532)),
        ("readOnlyRootFilesystem", json!(true)),
        ("allowPrivilegeEscalation", json!(false)),
    ] {
        assert_eq!(
            sc[field], want,
            "{who}: securityContext.{field} must be {want}"
        );
    }
    assert!(
        sc["privileged"] != json!(true),
        "{who}: must not be privileged"
    );
    assert!(
        strs(&sc["capabilities"]["drop"]).contains(&"ALL"),
        "{who}: capabilities must drop ALL"
    );
    assert!(
        sc["capabilities"]["add"]
            .as_array()
            .is_none_or(|a| a.is_empty()),
        "{who}: must not add capabilities"
    );
    let seccomp = if sc["seccompProfile"].is_null() {
        &pod["securityContext"]["seccompProfile"]
    } else {
        &sc["seccompProfile"]
    };
    assert_eq!(
        seccomp["type"], "RuntimeDefault",
        "{who}: seccompProfile must be RuntimeDefault"
    );

    let res = &c["resources"];
    for (kind_, field) in [
        ("requests", "cpu"),
        ("requests", "memory"),
        ("limits", "memory"),
    ] {
        assert!(
            res[kind_][field].is_string(),
            "{who}: resources.{kind_}.{field} must be set"
        );
    }
}

#[test]
fn every_container_is_hardened() {
    let d = base().deployment();
    let pod = &d["spec"]["template"]["spec"];
    assert_pod_hardened(&format!("Deployment/{WEBHOOK}"), pod);
    let containers = pod_containers(pod);
    assert!(
        containers.len() >= 3,
        "Deployment/{WEBHOOK}: expected certs-init, webhook and certs containers"
    );
    for (what, c) in containers {
        let who = format!("Deployment/{WEBHOOK} {what} {}", c["name"]);
        assert_container_hardened(&who, pod, c);
        assert!(
            c["image"]
                .as_str()
                .is_some_and(|i| i.starts_with("ghcr.io/spotwright/spotwright:")),
            "{who}: must use the ghcr.io/spotwright/spotwright image, got {}",
            c["image"]
        );
        let pod_ns = items(&c["env"]).find(|e| e["name"] == "POD_NAMESPACE");
        assert!(
            pod_ns.is_some_and(|e| e["valueFrom"]["fieldRef"]["fieldPath"] == "metadata.namespace"),
            "{who}: needs env POD_NAMESPACE from the downward API"
        );
        assert!(
            items(&c["volumeMounts"]).any(|m| m["name"] == "tls" && m["mountPath"] == "/tls"),
            "{who}: must mount the tls volume at /tls"
        );
    }
    let tls = items(&pod["volumes"]).find(|v| v["name"] == "tls");
    let tls = tls.unwrap_or_else(|| panic!("Deployment/{WEBHOOK}: no volume tls"));
    assert_eq!(
        tls["emptyDir"]["medium"], "Memory",
        "Deployment/{WEBHOOK}: volume tls must be an in-memory emptyDir"
    );
    assert!(
        tls["emptyDir"]["sizeLimit"].is_string(),
        "Deployment/{WEBHOOK}: volume tls needs a sizeLimit"
    );
}

#[test]
fn containers_run_the_right_commands() {
    let r = base();
    let writes_tls = |args: &[String]| {
        args.iter().any(|a| a == "--write-dir=/tls")
            || args
                .windows(2)
                .any(|w| w[0] == "--write-dir" && w[1] == "/tls")
    };
    let init = cmdline(container(r, "certs-init"));
    let side = cmdline(container(r, "certs"));
    for (who, args) in [
        ("initContainer certs-init", &init),
        ("container certs", &side),
    ] {
        assert_eq!(
            args[..2],
            ["spotwright-certs", "ensure"],
            "Deployment/{WEBHOOK} {who}: must run `spotwright-certs ensure`"
        );
        assert!(
            writes_tls(args),
            "Deployment/{WEBHOOK} {who}: must write the key pair with --write-dir /tls"
        );
    }
    assert!(
        init.iter().any(|a| a == "--once"),
        "Deployment/{WEBHOOK} initContainer certs-init: must run with --once"
    );
    let inits = &r.deployment()["spec"]["template"]["spec"]["initContainers"];
    assert!(
        items(inits).any(|c| c["name"] == "certs-init"),
        "Deployment/{WEBHOOK}: certs-init must be an initContainer so the webhook starts with a certificate"
    );
    assert!(
        !side.iter().any(|a| a == "--once"),
        "Deployment/{WEBHOOK} container certs: the sidecar must keep running (no --once)"
    );

    let wh = cmdline(container(r, "webhook"));
    assert_eq!(
        wh[0], "spotwright-webhook",
        "Deployment/{WEBHOOK} container webhook: must run spotwright-webhook"
    );
    for flag in [
        "--listen=0.0.0.0:8443",
        "--tls-cert-file=/tls/tls.crt",
        "--tls-key-file=/tls/tls.key",
        "--metrics-listen=0.0.0.0:8080",
        "--log-format=json",
    ] {
        assert!(
            wh.iter().any(|a| a == flag),
            "Deployment/{WEBHOOK} container webhook: missing flag {flag}"
        );
    }
}

#[test]
fn webhook_container_has_probes_on_the_metrics_port() {
    let c = container(base(), "webhook");
    for (probe, path) in [
        ("livenessProbe", "/healthz"),
        ("readinessProbe", "/readyz"),
        ("startupProbe", ""),
    ] {
        let get = &c[probe]["httpGet"];
        assert!(
            get.is_object(),
            "Deployment/{WEBHOOK} container webhook: {probe} must be an httpGet probe"
        );
        assert!(
            get["port"] == "metrics" || get["port"] == 8080,
            "Deployment/{WEBHOOK} container webhook: {probe} must use the metrics port, got {}",
            get["port"]
        );
        if !path.is_empty() {
            assert_eq!(
                get["path"], path,
                "Deployment/{WEBHOOK} container webhook: {probe} must GET {path}"
            );
        }
    }
}
