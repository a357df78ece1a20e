//! spotwright-scheduler (manifests/base/scheduler): a stock kube-scheduler
//! whose KubeSchedulerConfiguration calls the extender, bound to the same
//! built-in roles as the default scheduler plus its own lease.

use serde_json::{json, Value};
use std::collections::BTreeSet;

use crate::deployment::{assert_highly_available, cmdline, selector_matches};
use crate::rbac::{bindings_of, grant_set, grants};
use crate::render::{base, container_of, items, local, manifests_dir, Rendered};
use crate::{AUTH_READER_BINDING, EXTENDER, NS, SCHEDULER};

const CONFIG_MAP: &str = "spotwright-scheduler-config";
const CONFIG_DIR: &str = "/etc/spotwright-scheduler";
const CONFIG_KEY: &str = "config.yaml";
const LEASE_ROLE: &str = "spotwright-scheduler-leader-election";
/// The cluster's Kubernetes minor (the local plane and k8s-openapi's
/// `v1_36`): the upstream kube-scheduler image must match it.
const KUBE_MINOR: &str = "v1.36.";

/// The KubeSchedulerConfiguration of ConfigMap/spotwright-scheduler-config.
fn config(r: &Rendered) -> Value {
    let c = r.config_map_yaml(CONFIG_MAP, CONFIG_KEY);
    assert_eq!(
        c["apiVersion"], "kubescheduler.config.k8s.io/v1",
        "{}: ConfigMap/{CONFIG_MAP}: apiVersion must be kubescheduler.config.k8s.io/v1",
        r.name
    );
    assert_eq!(
        c["kind"], "KubeSchedulerConfiguration",
        "{}: ConfigMap/{CONFIG_MAP}: kind must be KubeSchedulerConfiguration",
        r.name
    );
    c
}

/// A Go `time.Duration` string (`2s`, `1500ms`, `1m30s`) in milliseconds.
fn go_duration_ms(s: &str) -> Option<f64> {
    let mut rest = s;
    let mut total = 0.0;
    if rest.is_empty() {
        return None;
    }
    while !rest.is_empty() {
        let num_len = rest
            .find(|ch: char| !(ch.is_ascii_digit() || ch == '.'))
            .unwrap_or(rest.len());
        let n: f64 = rest[..num_len].parse().ok()?;
        rest = &rest[num_len..];
        let unit_len = rest
            .find(|ch: char| ch.is_ascii_digit() || ch == '.')
            .unwrap_or(rest.len());
        let factor = match &rest[..unit_len] {
            "ns" => 1e-6,
            "us" | "µs" => 1e-3,
            "ms" => 1.0,
            "s" => 1e3,
            "m" => 60e3,
            "h" => 3600e3,
            _ => return None,
        };
        total += n * factor;
        rest = &rest[unit_len..];
    }
    Some(total)
}

#[test]
fn go_durations_parse() {
    assert_eq!(go_duration_ms("2s"), Some(2000.0));
    assert_eq!(go_duration_ms("1500ms"), Some(1500.0));
    assert_eq!(go_duration_ms("1m30s"), Some(90000.0));
    assert_eq!(go_duration_ms("2"), None);
    assert_eq!(go_duration_ms(""), None);
}

#[test]
fn scheduler_config_has_one_profile_named_spotwright_scheduler() {
    let c = config(base());
    assert_eq!(
        c["profiles"],
        json!([{"schedulerName": SCHEDULER}]),
        "ConfigMap/{CONFIG_MAP}: must have exactly one profile, schedulerName {SCHEDULER}, with the stock plugins (the webhook points opted-in pods at that name)"
    );
    assert!(
        c["clientConnection"]["kubeconfig"].is_null(),
        "ConfigMap/{CONFIG_MAP}: must use the in-cluster config (no clientConnection.kubeconfig)"
    );
}

#[test]
fn scheduler_config_calls_the_extender_as_documented() {
    let r = base();
    let c = config(r);
    let who = format!("ConfigMap/{CONFIG_MAP}");
    let extenders = c["extenders"]
        .as_array()
        .unwrap_or_else(|| panic!("{who}: no extenders"));
    assert_eq!(extenders.len(), 1, "{who}: must have exactly one extender");
    let e = &extenders[0];

    // Through the extender's Service, on its http port.
    let url = format!("http://{EXTENDER}.{NS}.svc:8888");
    assert_eq!(
        e["urlPrefix"], url,
        "{who}: urlPrefix must be {url} (the extender's Service)"
    );
    let svc = r.get("Service", EXTENDER);
    assert!(
        items(&svc["spec"]["ports"]).any(|p| p["port"] == 8888 && p["targetPort"] == "http"),
        "Service/{EXTENDER}: must serve the urlPrefix's port 8888 from the container port http"
    );

    for (field, want, why) in [
        ("filterVerb", json!("filter"), "POST /filter"),
        ("prioritizeVerb", json!("prioritize"), "POST /prioritize"),
        (
            "weight",
            json!(10),
            "10 (Score x weight x 10 spans about as much as all default plugins: decisive among feasible nodes)",
        ),
        (
            "nodeCacheCapable",
            json!(true),
            "true (names only; the extender reads nodes from its cache)",
        ),
        (
            "ignorable",
            json!(true),
            "true (deliberate: a down extender degrades to stock scheduling instead of blocking opted-in pods)",
        ),
        (
            "enableHTTPS",
            json!(false),
            "false (plain HTTP behind the NetworkPolicy)",
        ),
    ] {
        assert_eq!(e[field], want, "{who}: extenders[0].{field} must be {why}");
    }
    for absent in ["bindVerb", "preemptVerb", "managedResources", "tlsConfig"] {
        assert!(
            e.get(absent).is_none(),
            "{who}: extenders[0].{absent} must not be set (the extender serves only filter and prioritize)"
        );
    }
    let timeout = e["httpTimeout"].as_str().unwrap_or_else(|| {
        panic!("{who}: extenders[0].httpTimeout must be set (the default is 5s)")
    });
    let ms = go_duration_ms(timeout)
        .unwrap_or_else(|| panic!("{who}: extenders[0].httpTimeout {timeout:?} is not a duration"));
    assert!(
        ms > 0.0 && ms <= 2000.0,
        "{who}: extenders[0].httpTimeout must be at most 2s, got {timeout}"
    );
}

/// The local plane's configuration of spotwright-scheduler, which
/// `bench/scale/run` measures (its `@STATE@` and `@EXTENDER_PORT@` filled in).
fn local_plane_config() -> Value {
    let path = manifests_dir().join("../e2e/plane/scheduler/spotwright-scheduler.yaml");
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("reading {}: {e}", path.display()))
        .replace("@STATE@", "/state")
        .replace("@EXTENDER_PORT@", "18888");
    serde_yaml::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

#[test]
fn scheduler_client_limits_are_the_benchmarked_ones() {
    let shipped = &config(base())["clientConnection"];
    let measured = &local_plane_config()["clientConnection"];
    for field in ["qps", "burst"] {
        assert!(
            shipped[field].as_f64().is_some_and(|v| v > 100.0),
            "ConfigMap/{CONFIG_MAP}: clientConnection.{field} must be set above the default \
             (50/100 would make the scheduler the pace of a burst), got {}",
            shipped[field]
        );
        assert_eq!(
            shipped[field], measured[field],
            "ConfigMap/{CONFIG_MAP}: clientConnection.{field} must be the local plane's \
             (e2e/plane/scheduler/spotwright-scheduler.yaml), which bench/scale/run measures"
        );
    }
}

#[test]
fn scheduler_leader_election_uses_the_lease_its_role_allows() {
    let r = base();
    let c = config(r);
    let le = &c["leaderElection"];
    let who = format!("ConfigMap/{CONFIG_MAP}");
    assert_eq!(
        le["leaderElect"], true,
        "{who}: leaderElection.leaderElect must be true (2 replicas)"
    );
    assert!(
        le["resourceLock"].is_null() || le["resourceLock"] == "leases",
        "{who}: leaderElection.resourceLock must be leases"
    );
    assert_eq!(
        le["resourceNamespace"], NS,
        "{who}: leaderElection.resourceNamespace must be {NS}"
    );
    assert_eq!(
        le["resourceName"], SCHEDULER,
        "{who}: leaderElection.resourceName must be {SCHEDULER}, not the default scheduler's kube-scheduler"
    );

    let role = r.get("Role", LEASE_ROLE);
    assert_eq!(
        role["metadata"]["namespace"], le["resourceNamespace"],
        "Role/{LEASE_ROLE}: must be in the lease's namespace"
    );
    assert_eq!(
        grants(role),
        grant_set(&[
            ("coordination.k8s.io", "leases", "get", SCHEDULER),
            ("coordination.k8s.io", "leases", "update", SCHEDULER),
            ("coordination.k8s.io", "leases", "create", ""),
        ]),
        "Role/{LEASE_ROLE}: must grant exactly get/update on the lease {SCHEDULER} (by name) and create on leases"
    );
    // `create` carries no name RBAC could match: it must be a rule of its
    // own, not lumped with the named verbs (where it would never match).
    for rule in items(&role["rules"]) {
        let verbs = crate::render::strs(&rule["verbs"]);
        if verbs.contains(&"create") {
            assert!(
                rule.get("resourceNames").is_none(),
                "Role/{LEASE_ROLE}: create cannot be restricted by resourceNames"
            );
        }
    }
}

#[test]
fn scheduler_rbac_is_the_default_schedulers() {
    let r = base();
    let s = |v: &str| v.to_string();
    assert_eq!(
        bindings_of(r, SCHEDULER),
        BTreeSet::from([
            (s("ClusterRoleBinding"), s(""), s("ClusterRole"), s("system:kube-scheduler")),
            (s("ClusterRoleBinding"), s(""), s("ClusterRole"), s("system:volume-scheduler")),
            (
                s("RoleBinding"),
                s("kube-system"),
                s("Role"),
                s("extension-apiserver-authentication-reader")
            ),
            (s("RoleBinding"), s(NS), s("Role"), s(LEASE_ROLE)),
        ]),
        "ServiceAccount {NS}/{SCHEDULER}: must be bound to exactly system:kube-scheduler, system:volume-scheduler, kube-system's extension-apiserver-authentication-reader and Role/{LEASE_ROLE}"
    );
    r.get("ServiceAccount", SCHEDULER);
    for rr in [base(), local()] {
        assert_eq!(
            rr.get("RoleBinding", AUTH_READER_BINDING)["metadata"]["namespace"],
            "kube-system",
            "{}: RoleBinding/{AUTH_READER_BINDING} must stay in kube-system",
            rr.name
        );
    }
}

#[test]
fn scheduler_deployment_is_highly_available() {
    // No Prometheus annotations: its /metrics needs an authorized token.
    assert_highly_available(base(), SCHEDULER, SCHEDULER, None);
}

#[test]
fn scheduler_runs_upstream_kube_scheduler_with_the_config() {
    let r = base();
    let d = r.get("Deployment", SCHEDULER);
    let pod = &d["spec"]["template"]["spec"];
    let who = format!("Deployment/{SCHEDULER}");
    assert_eq!(
        items(&pod["containers"]).count(),
        1,
        "{who}: must have exactly one container, kube-scheduler"
    );
    let c = container_of(r, SCHEDULER, "kube-scheduler");
    let who = format!("{who} container kube-scheduler");
    let image = c["image"].as_str().unwrap_or("");
    assert!(
        image.starts_with(&format!("registry.k8s.io/kube-scheduler:{KUBE_MINOR}")),
        "{who}: must run the upstream registry.k8s.io/kube-scheduler of the cluster's minor ({KUBE_MINOR}x), got {image}"
    );
    assert_eq!(
        cmdline(c),
        [
            "kube-scheduler".to_string(),
            format!("--config={CONFIG_DIR}/{CONFIG_KEY}")
        ],
        "{who}: must run `kube-scheduler --config={CONFIG_DIR}/{CONFIG_KEY}`"
    );

    // The config file comes from the ConfigMap.
    let mount = items(&c["volumeMounts"])
        .find(|m| m["mountPath"] == CONFIG_DIR)
        .unwrap_or_else(|| panic!("{who}: must mount the config at {CONFIG_DIR}"));
    assert_eq!(
        mount["readOnly"], true,
        "{who}: the config mount must be read-only"
    );
    let vol = items(&pod["volumes"])
        .find(|v| v["name"] == mount["name"])
        .unwrap_or_else(|| panic!("{who}: no volume {}", mount["name"]));
    assert_eq!(
        vol["configMap"]["name"], CONFIG_MAP,
        "{who}: the config volume must be ConfigMap/{CONFIG_MAP}"
    );
    assert!(
        vol["configMap"]["items"].is_null()
            || items(&vol["configMap"]["items"])
                .any(|i| i["key"] == CONFIG_KEY && i["path"] == CONFIG_KEY),
        "{who}: the config volume must expose {CONFIG_KEY}"
    );

    assert!(
        items(&c["ports"]).any(|p| p["name"] == "https" && p["containerPort"] == 10259),
        "{who}: needs port https=10259 (kube-scheduler's secure port)"
    );
    for probe in ["livenessProbe", "readinessProbe", "startupProbe"] {
        let get = &c[probe]["httpGet"];
        assert_eq!(
            (&get["path"], &get["scheme"]),
            (&json!("/healthz"), &json!("HTTPS")),
            "{who}: {probe} must GET /healthz over HTTPS"
        );
        assert!(
            get["port"] == "https" || get["port"] == 10259,
            "{who}: {probe} must use port 10259, got {}",
            get["port"]
        );
    }
    assert!(
        c["resources"]["limits"].get("cpu").is_none(),
        "{who}: must not have a CPU limit (throttling slows every scheduling cycle)"
    );

    // The pods themselves go to the default scheduler: spotwright-scheduler
    // must never wait for itself.
    assert!(
        pod["schedulerName"].is_null() || pod["schedulerName"] == "default-scheduler",
        "{who}: its own pods must be scheduled by the default scheduler"
    );
    let pdb = r.get("PodDisruptionBudget", SCHEDULER);
    assert!(
        selector_matches(
            &pdb["spec"]["selector"],
            &d["spec"]["template"]["metadata"]["labels"]
        ),
        "PodDisruptionBudget/{SCHEDULER}: must select the scheduler's pods"
    );
}

#[test]
fn local_overlay_scales_the_scheduler_to_zero() {
    let r = local();
    assert_eq!(
        r.get("Deployment", SCHEDULER)["spec"]["replicas"],
        0,
        "overlays/local: Deployment/{SCHEDULER} must be scaled to 0 (e2e/cluster runs the second scheduler itself)"
    );
    // The config is still applied, the same as the base's.
    assert_eq!(
        config(r),
        config(base()),
        "overlays/local: ConfigMap/{CONFIG_MAP} must be the base's"
    );
}
