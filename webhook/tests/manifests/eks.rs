//! manifests/overlays/eks: the base, plus what an EKS user sets. Every
//! Deployment stays on the on-demand system node group (required affinity to
//! a managed node group's label, never a Spotwright node), tolerates that
//! group's CriticalAddonsOnly taint and keeps the PriorityClass; the cluster
//! name is the one value to set; the second scheduler's image is the
//! upstream kube-scheduler at a cluster version.

use serde_json::Value;

use crate::render::{base, eks, items, kind, label, obj_name, strs};
use crate::NS;

fn pod_spec(deployment: &Value) -> &Value {
    &deployment["spec"]["template"]["spec"]
}

#[test]
fn the_overlay_is_the_base_plus_settings() {
    let names = |objects: &[Value]| -> Vec<String> {
        let mut v: Vec<String> = objects.iter().map(label).collect();
        v.sort();
        v
    };
    assert_eq!(names(&eks().objects), names(&base().objects));
}

#[test]
fn every_deployment_runs_on_the_system_node_group() {
    let deployments = eks().all("Deployment");
    assert_eq!(deployments.len(), base().all("Deployment").len());
    for d in deployments {
        let who = label(d);
        let spec = pod_spec(d);
        let terms = &spec["affinity"]["nodeAffinity"]
            ["requiredDuringSchedulingIgnoredDuringExecution"]["nodeSelectorTerms"];
        let terms: Vec<&Value> = items(terms).collect();
        assert!(!terms.is_empty(), "{who}: no required node affinity");
        for term in terms {
            let expressions: Vec<(&str, &str)> = items(&term["matchExpressions"])
                .map(|e| {
                    (
                        e["key"].as_str().unwrap_or(""),
                        e["operator"].as_str().unwrap_or(""),
                    )
                })
                .collect();
            assert!(
                expressions.contains(&("eks.amazonaws.com/nodegroup", "Exists")),
                "{who}: every term must require a managed node group: {expressions:?}"
            );
            assert!(
                expressions.contains(&("spotwright.io/nodepool", "DoesNotExist")),
                "{who}: every term must keep off Spotwright's nodes: {expressions:?}"
            );
        }
        let tolerations: Vec<(&str, &str)> = items(&spec["tolerations"])
            .map(|t| {
                (
                    t["key"].as_str().unwrap_or(""),
                    t["operator"].as_str().unwrap_or(""),
                )
            })
            .collect();
        assert_eq!(tolerations, [("CriticalAddonsOnly", "Exists")], "{who}");
        assert_eq!(spec["priorityClassName"], "spotwright-critical", "{who}");
        let class_exists = eks()
            .all("PriorityClass")
            .iter()
            .any(|p| obj_name(p) == "spotwright-critical");
        assert!(
            class_exists,
            "{who}: its PriorityClass is not in the overlay"
        );
        // Still the base's preferences (anti-affinity, spread) and hardening.
        let base_spec = pod_spec(base().get("Deployment", obj_name(d)));
        assert_eq!(
            spec["affinity"]["podAntiAffinity"], base_spec["affinity"]["podAntiAffinity"],
            "{who}"
        );
        assert_eq!(
            spec["securityContext"], base_spec["securityContext"],
            "{who}"
        );
    }
}

#[test]
fn the_cluster_name_is_set_and_the_rest_is_discovered() {
    let config = eks().get("ConfigMap", "spotwright-provisioner");
    assert_eq!(config["metadata"]["namespace"], NS);
    let data = &config["data"];
    let name = data["cluster-name"].as_str().unwrap_or("");
    assert!(!name.is_empty(), "the overlay must set cluster-name");
    // Every other key the base has stays (empty: read from EKS DescribeCluster).
    let base_data = &base().get("ConfigMap", "spotwright-provisioner")["data"];
    for (key, value) in base_data.as_object().into_iter().flatten() {
        if key != "cluster-name" {
            assert_eq!(&data[key], value, "ConfigMap key {key}");
        }
    }
}

#[test]
fn the_scheduler_image_is_an_upstream_kube_scheduler_release() {
    let scheduler = eks().get("Deployment", "spotwright-scheduler");
    let images: Vec<&str> = items(&pod_spec(scheduler)["containers"])
        .filter_map(|c| c["image"].as_str())
        .collect();
    assert_eq!(images.len(), 1, "{images:?}");
    let tag = images[0]
        .strip_prefix("registry.k8s.io/kube-scheduler:v")
        .unwrap_or_else(|| panic!("not the upstream kube-scheduler: {}", images[0]));
    let parts: Vec<&str> = tag.split('.').collect();
    assert!(
        parts.len() == 3 && parts.iter().all(|p| p.parse::<u32>().is_ok()),
        "not a release tag: {tag}"
    );
    // Spotwright's own containers all run the one image.
    for d in eks().all("Deployment") {
        for c in items(&pod_spec(d)["containers"]).chain(items(&pod_spec(d)["initContainers"])) {
            let image = c["image"].as_str().unwrap_or("");
            assert!(
                image.starts_with("ghcr.io/spotwright/spotwright:") || image == images[0],
                "{}: {image}",
                label(d)
            );
        }
    }
    let _ = (kind, strs);
}
