//! API Priority and Fairness (manifests/base/flowcontrol.yaml): every
//! request of Spotwright's ServiceAccounts is classified by our FlowSchemas
//! into built-in priority levels, not left to `service-accounts`
//! (`workload-low`). That the API server really classifies them so is
//! checked in e2e/tests/install_eks.rs.

use serde_json::Value;
use std::collections::BTreeSet;

use crate::render::{base, eks, items, local, strs, Rendered};
use crate::{NS, PROVISIONER, SCHEDULER, SERVICE_ACCOUNTS};

const LEADER_ELECTION: &str = "spotwright-leader-election";
const WORKLOAD: &str = "spotwright-workload";
/// The built-in `service-accounts` FlowSchema's precedence: ours must come first.
const SERVICE_ACCOUNTS_PRECEDENCE: i64 = 9000;
/// The built-in `workload-leader-election`'s: a lease renewal must not fall into it first.
const WORKLOAD_LEADER_ELECTION_PRECEDENCE: i64 = 200;

/// The ServiceAccounts a FlowSchema's rules match, as `namespace/name`.
fn subjects(schema: &Value) -> BTreeSet<String> {
    items(&schema["spec"]["rules"])
        .flat_map(|rule| items(&rule["subjects"]))
        .map(|s| {
            assert_eq!(s["kind"], "ServiceAccount", "only ServiceAccounts: {s}");
            let sa = &s["serviceAccount"];
            format!(
                "{}/{}",
                sa["namespace"].as_str().unwrap_or(""),
                sa["name"].as_str().unwrap_or("")
            )
        })
        .collect()
}

fn ours(names: &[&str]) -> BTreeSet<String> {
    names.iter().map(|n| format!("{NS}/{n}")).collect()
}

fn precedence(schema: &Value) -> i64 {
    schema["spec"]["matchingPrecedence"].as_i64().unwrap_or(0)
}

fn assert_schema_shape<'a>(r: &'a Rendered, name: &str, level: &str) -> &'a Value {
    let schema = r.get("FlowSchema", name);
    let who = format!("{}: FlowSchema/{name}", r.name);
    assert_eq!(
        schema["apiVersion"], "flowcontrol.apiserver.k8s.io/v1",
        "{who}"
    );
    assert!(
        schema["metadata"]["namespace"].is_null(),
        "{who}: cluster-scoped, must carry no namespace (the transformer takes kustomize's off)"
    );
    assert_eq!(
        schema["spec"]["priorityLevelConfiguration"]["name"], level,
        "{who}"
    );
    assert_eq!(
        schema["spec"]["distinguisherMethod"]["type"], "ByUser",
        "{who}: one flow per ServiceAccount, so that one component cannot crowd out another"
    );
    schema
}

#[test]
fn every_service_account_goes_to_workload_high() {
    for r in [base(), local(), eks()] {
        let schema = assert_schema_shape(r, WORKLOAD, "workload-high");
        assert_eq!(subjects(schema), ours(&SERVICE_ACCOUNTS), "{}", r.name);
        let rules: Vec<&Value> = items(&schema["spec"]["rules"]).collect();
        assert_eq!(rules.len(), 1, "{}: one rule for all", r.name);
        let resources: Vec<&Value> = items(&rules[0]["resourceRules"]).collect();
        assert_eq!(resources.len(), 1, "{}", r.name);
        for field in ["apiGroups", "resources", "verbs", "namespaces"] {
            assert_eq!(strs(&resources[0][field]), ["*"], "{}: {field}", r.name);
        }
        assert_eq!(
            resources[0]["clusterScope"], true,
            "{}: Nodes, NodeClaims",
            r.name
        );
        let p = precedence(schema);
        assert!(
            p > 900 && p < SERVICE_ACCOUNTS_PRECEDENCE,
            "{}: precedence {p}: after the built-in system and kube-system schemas, before service-accounts",
            r.name
        );
    }
}

#[test]
fn lease_renewals_go_to_leader_election() {
    for r in [base(), local(), eks()] {
        let schema = assert_schema_shape(r, LEADER_ELECTION, "leader-election");
        assert_eq!(
            subjects(schema),
            ours(&[SCHEDULER, PROVISIONER]),
            "{}: the two components that elect a leader",
            r.name
        );
        for rule in items(&schema["spec"]["rules"]) {
            assert!(rule["nonResourceRules"].is_null(), "{}", r.name);
            for resource in items(&rule["resourceRules"]) {
                assert_eq!(strs(&resource["apiGroups"]), ["coordination.k8s.io"]);
                assert_eq!(strs(&resource["resources"]), ["leases"]);
                assert_eq!(strs(&resource["verbs"]), ["get", "create", "update"]);
            }
        }
        let workload = precedence(r.get("FlowSchema", WORKLOAD));
        let p = precedence(schema);
        assert!(
            p < WORKLOAD_LEADER_ELECTION_PRECEDENCE && p < workload,
            "{}: precedence {p} must come before workload-leader-election and {WORKLOAD} ({workload})",
            r.name
        );
    }
}
