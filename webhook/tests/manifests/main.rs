//! The install manifests' contract (manifests/base and manifests/overlays/local).
//!
//! Both kustomizations are rendered with `kubectl kustomize`: kubectl from
//! PATH, else from `${SPOTWRIGHT_CACHE:-$HOME/.cache/spotwright}/plane/bin`,
//! where ./test (which guarantees one or the other) may put it.
//!
//! - this file: shared constants and the checks that span the whole tree
//!   (CRDs, namespacing, labels);
//! - `registration`: the MutatingWebhookConfiguration, its Service and the
//!   local overlay;
//! - `deployment`: the webhook's Deployment, its PodDisruptionBudget and
//!   containers, and the availability and hardening rules every Deployment
//!   shares;
//! - `rbac`: Roles, ClusterRoles and their bindings;
//! - `extender`: the scheduler extender's Deployment, Service, PDB,
//!   NetworkPolicy and RBAC;
//! - `scheduler`: spotwright-scheduler (a second kube-scheduler), its
//!   KubeSchedulerConfiguration, Deployment and RBAC;
//! - `observability`: manifests/observability's ServiceMonitors (against
//!   the base's Services) and the Grafana dashboard's ConfigMap;
//! - `flowcontrol`: the FlowSchemas that put our ServiceAccounts' requests
//!   in built-in priority levels;
//! - `eks`: manifests/overlays/eks (cluster name, system node group
//!   placement, PriorityClass, scheduler image), against the base;
//! - `render`: rendering and the accessors the others share.
//!
//! Uses std, serde_yaml and serde_json only, not the webhook library.

mod deployment;
mod eks;
mod extender;
mod flowcontrol;
mod observability;
mod provisioner;
mod rbac;
mod registration;
mod render;
mod scheduler;

use render::{base, kind, label, local, manifests_dir, obj_name, parse_docs, pod_specs};

pub const NS: &str = "spotwright-system";
pub const WEBHOOK: &str = "spotwright-webhook";
pub const EXTENDER: &str = "spotwright-extender";
pub const SCHEDULER: &str = "spotwright-scheduler";
pub const PROVISIONER: &str = "spotwright-provisioner";
/// Every ServiceAccount of the base, one per component; each binding's name
/// starts with the name of the one it binds.
pub const SERVICE_ACCOUNTS: [&str; 4] = [WEBHOOK, EXTENDER, SCHEDULER, PROVISIONER];
/// The RoleBinding of spotwright-scheduler to the built-in Role
/// kube-system/extension-apiserver-authentication-reader: the one object
/// that must live in kube-system (a RoleBinding is only effective in its
/// Role's namespace).
pub const AUTH_READER_BINDING: &str = "spotwright-scheduler-authentication-reader";
pub const CRDS: [&str; 3] = [
    "nodepools.spotwright.io",
    "nodeclasses.spotwright.io",
    "nodeclaims.spotwright.io",
];

const CLUSTER_SCOPED: [&str; 13] = [
    "Namespace",
    "FlowSchema",
    "CustomResourceDefinition",
    "ClusterRole",
    "ClusterRoleBinding",
    "PriorityClass",
    "MutatingWebhookConfiguration",
    "ValidatingWebhookConfiguration",
    "ValidatingAdmissionPolicy",
    "ValidatingAdmissionPolicyBinding",
    "StorageClass",
    "IngressClass",
    "RuntimeClass",
];

#[test]
fn base_includes_the_three_crds() {
    let r = base();
    for name in CRDS {
        let crd = r.get("CustomResourceDefinition", name);
        assert_eq!(
            crd["spec"]["group"], "spotwright.io",
            "CustomResourceDefinition/{name}: group must be spotwright.io"
        );
        assert_eq!(
            crd["spec"]["scope"], "Cluster",
            "CustomResourceDefinition/{name}: kinds are cluster-scoped"
        );
    }
    // Every generated CRD file is listed, so a new kind is not forgotten.
    let crd_dir = manifests_dir().join("base/crds");
    for entry in std::fs::read_dir(&crd_dir).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "yaml") {
            for doc in parse_docs(&std::fs::read_to_string(&path).unwrap(), "crd") {
                r.get("CustomResourceDefinition", obj_name(&doc));
            }
        }
    }
}

#[test]
fn objects_are_in_spotwright_system_or_cluster_scoped() {
    let r = base();
    let ns = r.get("Namespace", NS);
    assert_eq!(
        ns["metadata"]["labels"]["spotwright.io/webhook"], "disabled",
        "Namespace/{NS}: must be labelled spotwright.io/webhook=disabled so the webhook's namespaceSelector skips it"
    );
    for o in &r.objects {
        let ns_field = &o["metadata"]["namespace"];
        if CLUSTER_SCOPED.contains(&kind(o)) {
            assert!(
                ns_field.is_null(),
                "{}: cluster-scoped, must not carry a namespace",
                label(o)
            );
        } else if kind(o) == "RoleBinding" && obj_name(o) == AUTH_READER_BINDING {
            assert_eq!(
                ns_field,
                "kube-system",
                "{}: must be in kube-system, the namespace of the Role it binds (the kustomization's `namespace:` must not move it)",
                label(o)
            );
        } else {
            assert_eq!(
                ns_field,
                NS,
                "{}: namespaced objects must be in {NS}",
                label(o)
            );
        }
    }
}

#[test]
fn every_object_is_labelled_part_of_spotwright() {
    for r in [base(), local()] {
        for o in &r.objects {
            assert_eq!(
                o["metadata"]["labels"]["app.kubernetes.io/part-of"],
                "spotwright",
                "{}: {} must carry app.kubernetes.io/part-of=spotwright",
                r.name,
                label(o)
            );
        }
        let d = r.deployment();
        assert!(
            d["spec"]["selector"]["matchLabels"]
                .get("app.kubernetes.io/part-of")
                .is_none(),
            "{}: Deployment/{WEBHOOK}: the part-of label must not enter the (immutable) selector",
            r.name
        );
        for d in r.all("Deployment") {
            assert!(
                d["spec"]["selector"]["matchLabels"]
                    .get("app.kubernetes.io/part-of")
                    .is_none(),
                "{}: {}: the part-of label must not enter the (immutable) selector",
                r.name,
                label(d)
            );
        }
    }
}

/// Every container of every workload in the base (not only the webhook's)
/// follows the hardening rules of `deployment::assert_container_hardened`.
#[test]
fn every_container_in_base_is_hardened() {
    let r = base();
    let specs = pod_specs(r);
    for name in [WEBHOOK, EXTENDER, SCHEDULER, PROVISIONER] {
        assert!(
            specs
                .iter()
                .any(|(o, _)| label(o) == format!("Deployment/{name}")),
            "base: Deployment/{name} is missing"
        );
    }
    for (o, pod) in specs {
        let who = label(o);
        deployment::assert_pod_hardened(&who, pod);
        let containers = render::pod_containers(pod);
        assert!(!containers.is_empty(), "{who}: has no containers");
        for (what, c) in containers {
            deployment::assert_container_hardened(&format!("{who} {what} {}", c["name"]), pod, c);
        }
    }
}
