//! Deployment/spotwright-webhook and its PodDisruptionBudget: availability,
//! hardening, and what each container runs.

use serde_json::{json, Value};

use crate::render::{base, container, items, pod_containers, strs};
use crate::WEBHOOK;

/// A non-empty `matchLabels` selector that `labels` satisfies.
fn selector_matches(selector: &Value, labels: &Value) -> bool {
    let ml = selector["matchLabels"]
        .as_object()
        .cloned()
        .unwrap_or_default();
    !ml.is_empty() && ml.iter().all(|(k, v)| &labels[k] == v)
}

/// `command` followed by `args`.
fn cmdline(c: &Value) -> Vec<String> {
    strs(&c["command"])
        .into_iter()
        .chain(strs(&c["args"]))
        .map(str::to_string)
        .collect()
}

#[test]
fn deployment_is_highly_available() {
    let r = base();
    let d = r.deployment();
    let who = format!("Deployment/{WEBHOOK}");
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
        pod["serviceAccountName"], WEBHOOK,
        "{who}: must run as ServiceAccount {WEBHOOK}"
    );
    assert_eq!(
        pod["automountServiceAccountToken"], true,
        "{who}: needs its API token"
    );
    let ann = &d["spec"]["template"]["metadata"]["annotations"];
    assert_eq!(
        ann["prometheus.io/scrape"], "true",
        "{who}: pods must be annotated prometheus.io/scrape"
    );
    assert_eq!(
        ann["prometheus.io/port"], "8080",
        "{who}: pods must be annotated prometheus.io/port=8080"
    );

    let pdb = r.get("PodDisruptionBudget", WEBHOOK);
    assert_eq!(
        pdb["spec"]["minAvailable"], 1,
        "PodDisruptionBudget/{WEBHOOK}: minAvailable must be 1"
    );
    assert!(
        selector_matches(&pdb["spec"]["selector"], tpl_labels),
        "PodDisruptionBudget/{WEBHOOK}: selector must select the Deployment's pods"
    );
}

#[test]
fn every_container_is_hardened() {
    let d = base().deployment();
    let pod = &d["spec"]["template"]["spec"];
    for f in ["hostNetwork", "hostPID", "hostIPC"] {
        assert!(
            pod[f] != json!(true),
            "Deployment/{WEBHOOK}: {f} must not be set"
        );
    }
    for v in items(&pod["volumes"]) {
        assert!(
            v.get("hostPath").is_none(),
            "Deployment/{WEBHOOK}: volume {} must not be a hostPath",
            v["name"]
        );
    }
    let containers = pod_containers(pod);
    assert!(
        containers.len() >= 3,
        "Deployment/{WEBHOOK}: expected certs-init, webhook and certs containers"
    );
    for (what, c) in containers {
        let who = format!("Deployment/{WEBHOOK} {what} {}", c["name"]);
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
