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
//! - `deployment`: the Deployment, its PodDisruptionBudget and containers;
//! - `rbac`: Roles, ClusterRoles and their bindings;
//! - `render`: rendering and the accessors the others share.
//!
//! Uses std, serde_yaml and serde_json only, not the webhook library.

mod deployment;
mod rbac;
mod registration;
mod render;

use render::{base, kind, label, local, manifests_dir, obj_name, parse_docs};

pub const NS: &str = "spotwright-system";
pub const WEBHOOK: &str = "spotwright-webhook";
pub const CRDS: [&str; 3] = [
    "nodepools.spotwright.io",
    "nodeclasses.spotwright.io",
    "nodeclaims.spotwright.io",
];

const CLUSTER_SCOPED: [&str; 12] = [
    "Namespace",
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
    }
}
