//! The EKS install path, as far as the local cluster can play it: the
//! `manifests/overlays/eks` overlay passes the real API server's
//! server-side dry-run, and the provisioner finds the cluster's endpoint,
//! CA, service CIDR and version through EKS DescribeCluster (moto's EKS,
//! where `e2e/cluster up` registers the local cluster).

use serde_json::Value;
use spotwright_e2e::harness::env;
use spotwright_e2e::harness::provisioner::CLUSTER_NAME;
use spotwright_provisioner::act::aws::eks::{discover, ClusterOverrides, IpFamily};

#[test]
fn the_eks_overlay_passes_server_side_dry_run() {
    let env = env();
    let output = env.kubectl_ok(&[
        "apply",
        "--server-side",
        "--force-conflicts",
        "--dry-run=server",
        "-k",
        "manifests/overlays/eks",
        "-o",
        "json",
    ]);
    let applied: Value = serde_json::from_str(&output).expect("kubectl -o json");
    let objects = applied["items"].as_array().cloned().unwrap_or_default();
    let rendered = env.kubectl_ok(&["kustomize", "manifests/overlays/eks"]);
    let expected = rendered.matches("\n---\n").count() + 1;
    assert_eq!(objects.len(), expected, "every object was accepted");
    // What the API server would store keeps the overlay's settings.
    let deployments: Vec<&Value> = objects
        .iter()
        .filter(|o| o["kind"] == "Deployment")
        .collect();
    assert_eq!(deployments.len(), 4);
    for d in deployments {
        let spec = &d["spec"]["template"]["spec"];
        assert_eq!(
            spec["tolerations"][0]["key"], "CriticalAddonsOnly",
            "{}",
            d["metadata"]["name"]
        );
        let terms = spec["affinity"]["nodeAffinity"]
            ["requiredDuringSchedulingIgnoredDuringExecution"]["nodeSelectorTerms"][0]
            ["matchExpressions"]
            .to_string();
        assert!(terms.contains("eks.amazonaws.com/nodegroup"), "{terms}");
    }
    let config = objects
        .iter()
        .find(|o| o["kind"] == "ConfigMap" && o["metadata"]["name"] == "spotwright-provisioner")
        .expect("the provisioner's ConfigMap");
    assert_eq!(config["data"]["cluster-name"], "my-cluster");
}

async fn eks() -> aws_sdk_eks::Client {
    env();
    aws_sdk_eks::Client::new(&spotwright_provisioner::act::aws::config::sdk_config().await)
}

#[tokio::test]
async fn the_provisioner_discovers_the_cluster_through_describe_cluster() {
    let eks = eks().await;
    let minor = std::fs::read_to_string(env().state.join("kubernetes-minor"))
        .map(|m| m.trim().to_owned())
        .expect("the running minor");
    let (settings, described) = discover(&eks, CLUSTER_NAME, &ClusterOverrides::default())
        .await
        .expect("DescribeCluster answers for the local cluster");
    let described = described.expect("EKS was asked");
    assert_eq!(settings.name, CLUSTER_NAME);
    assert!(
        settings.endpoint.starts_with("https://"),
        "{}",
        settings.endpoint
    );
    assert!(!settings.certificate_authority.is_empty());
    // The API server's own --service-cluster-ip-range (e2e/cluster).
    assert_eq!(settings.service_cidr.as_deref(), Some("10.0.0.0/24"));
    assert_eq!(described.ip_family, Some(IpFamily::Ipv4));
    assert_eq!(described.version.as_deref(), Some(minor.as_str()));

    // A flag wins over EKS; the rest still comes from EKS.
    let overrides = ClusterOverrides {
        endpoint: Some("https://private.example:443".into()),
        ..ClusterOverrides::default()
    };
    let (overridden, _) = discover(&eks, CLUSTER_NAME, &overrides)
        .await
        .expect("discovered");
    assert_eq!(overridden.endpoint, "https://private.example:443");
    assert_eq!(overridden.service_cidr, settings.service_cidr);

    // A cluster EKS does not know is a clear error, not a half-set node.
    let err = discover(&eks, "no-such-cluster", &ClusterOverrides::default())
        .await
        .expect_err("an unknown cluster");
    assert!(err.to_string().contains("DescribeCluster"), "{err}");
}
