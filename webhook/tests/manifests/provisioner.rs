//! The provisioner (manifests/base/provisioner): RBAC that covers evictions,
//! nodes and Spotwright's CRDs and nothing more, a Lease Role limited to its
//! one Lease, and a highly available Deployment that never runs on nodes
//! Spotwright launched.

use std::collections::BTreeSet;

use crate::deployment::{assert_highly_available, cmdline};
use crate::rbac::{bindings_of, grant_set, grants};
use crate::render::{base, container_of};
use crate::{NS, PROVISIONER};

const LEADER_ELECTION: &str = "spotwright-provisioner-leader-election";

fn verbs<'a>(
    group: &'a str,
    resource: &'a str,
    verbs: &[&'a str],
) -> Vec<(&'a str, &'a str, &'a str, &'a str)> {
    verbs.iter().map(|v| (group, resource, *v, "")).collect()
}

#[test]
fn provisioner_rbac_is_exactly_what_the_controllers_use() {
    let r = base();
    let read = ["get", "list", "watch"];
    let mut want = Vec::new();
    want.extend(verbs("", "pods", &["get", "list", "watch", "delete"]));
    want.extend(verbs("", "pods/eviction", &["create"]));
    want.extend(verbs(
        "",
        "nodes",
        &["get", "list", "watch", "patch", "update", "delete"],
    ));
    want.extend(verbs("", "namespaces", &read));
    want.extend(verbs("apps", "daemonsets", &read));
    want.extend(verbs("apps", "replicasets", &read));
    want.extend(verbs("", "persistentvolumeclaims", &read));
    want.extend(verbs("", "persistentvolumes", &read));
    want.extend(verbs("storage.k8s.io", "storageclasses", &read));
    want.extend(verbs(
        "spotwright.io",
        "nodeclaims",
        &[
            "get", "list", "watch", "create", "update", "patch", "delete",
        ],
    ));
    for status in [
        "nodeclaims/status",
        "nodepools/status",
        "nodeclasses/status",
    ] {
        want.extend(verbs("spotwright.io", status, &["get", "update", "patch"]));
    }
    want.extend(verbs(
        "spotwright.io",
        "nodepools",
        &["get", "list", "watch", "patch"],
    ));
    want.extend(verbs("spotwright.io", "nodeclasses", &read));
    want.extend(verbs("events.k8s.io", "events", &["create", "patch"]));
    want.extend(verbs("", "events", &["create", "patch"]));
    assert_eq!(
        grants(r.get("ClusterRole", PROVISIONER)),
        grant_set(&want),
        "ClusterRole/{PROVISIONER}: grants changed; every rule must be one the controllers use"
    );
    let lease = grants(r.get("Role", LEADER_ELECTION));
    assert_eq!(
        lease,
        grant_set(&[
            ("coordination.k8s.io", "leases", "create", ""),
            ("coordination.k8s.io", "leases", "get", PROVISIONER),
            ("coordination.k8s.io", "leases", "update", PROVISIONER),
        ]),
        "Role/{LEADER_ELECTION}: only its own Lease, by name"
    );
    assert_eq!(
        bindings_of(r, PROVISIONER),
        BTreeSet::from([
            (
                "ClusterRoleBinding".to_string(),
                String::new(),
                "ClusterRole".to_string(),
                PROVISIONER.to_string()
            ),
            (
                "RoleBinding".to_string(),
                NS.to_string(),
                "Role".to_string(),
                LEADER_ELECTION.to_string()
            ),
        ]),
        "ServiceAccount {NS}/{PROVISIONER}: bound to its ClusterRole and its Lease Role only"
    );
}

#[test]
fn provisioner_deployment_is_highly_available() {
    assert_highly_available(base(), PROVISIONER, PROVISIONER, Some("8080"));
}

#[test]
fn provisioner_runs_with_leader_election_off_spotwright_nodes() {
    let r = base();
    let c = container_of(r, PROVISIONER, "provisioner");
    assert_eq!(
        cmdline(c),
        [
            "spotwright-provisioner",
            "--metrics-listen=0.0.0.0:8080",
            "--log-format=json"
        ],
        "leader election stays on (the default); no flag turns it off"
    );
    let env: Vec<&str> = c["env"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|e| e["name"].as_str())
        .collect();
    for name in [
        "SPOTWRIGHT_CLUSTER_NAME",
        "SPOTWRIGHT_CLUSTER_ENDPOINT",
        "SPOTWRIGHT_CLUSTER_CA_BUNDLE",
        "SPOTWRIGHT_CLUSTER_SERVICE_CIDR",
        "SPOTWRIGHT_CLUSTER_IP_FAMILY",
        "SPOTWRIGHT_INTERRUPTION_QUEUE",
        "POD_NAMESPACE",
        "POD_NAME",
    ] {
        assert!(
            env.contains(&name),
            "container provisioner: env {name} missing"
        );
    }
    let pod = &r.get("Deployment", PROVISIONER)["spec"]["template"]["spec"];
    let required = &pod["affinity"]["nodeAffinity"]
        ["requiredDuringSchedulingIgnoredDuringExecution"]["nodeSelectorTerms"][0]
        ["matchExpressions"][0];
    assert_eq!(required["key"], "spotwright.io/nodepool");
    assert_eq!(
        required["operator"], "DoesNotExist",
        "the provisioner must not run on nodes it may remove"
    );
}
