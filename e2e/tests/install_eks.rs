//! The EKS install path, as far as the local cluster can play it: the
//! `manifests/overlays/eks` overlay passes the real API server's
//! server-side dry-run, the installed FlowSchemas classify every
//! ServiceAccount's requests as docs/install.md says, and the provisioner
//! finds the cluster's endpoint, CA, service CIDR and version through EKS
//! DescribeCluster (moto's EKS, where `e2e/cluster up` registers the local
//! cluster).

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

/// The UID of a cluster-scoped flow-control object (`flowschema/<name>`,
/// `prioritylevelconfiguration/<name>`).
fn uid_of(object: &str) -> String {
    env().kubectl_ok(&["get", object, "-o", "jsonpath={.metadata.uid}"])
}

/// The FlowSchema and priority level the API server classified one request
/// of `service_account` (in spotwright-system) into, by the UIDs it returns
/// in the `X-Kubernetes-PF-*` response headers. Classification comes before
/// authorization, so it holds whatever the answer.
async fn classified(service_account: &str, path: &str) -> (String, String) {
    let user = format!("system:serviceaccount:spotwright-system:{service_account}");
    let client = env().client_as(&user).await;
    let request = http::Request::get(path)
        .body(Vec::new())
        .expect("a GET request");
    let response = client
        .send(request.map(Into::into))
        .await
        .expect("an answer");
    let header = |name: &str| {
        response
            .headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_else(|| panic!("{service_account} GET {path}: no {name} header"))
            .to_owned()
    };
    (
        header("X-Kubernetes-PF-FlowSchema-UID"),
        header("X-Kubernetes-PF-PriorityLevel-UID"),
    )
}

#[tokio::test]
async fn the_api_server_puts_our_service_accounts_in_our_flowschemas() {
    let workload = (
        uid_of("flowschema/spotwright-workload"),
        uid_of("prioritylevelconfiguration/workload-high"),
    );
    let leader_election = (
        uid_of("flowschema/spotwright-leader-election"),
        uid_of("prioritylevelconfiguration/leader-election"),
    );
    // Without ours, these would be the built-in `service-accounts` in `workload-low`.
    let fallback = uid_of("flowschema/service-accounts");
    let leases = "/apis/coordination.k8s.io/v1/namespaces/spotwright-system/leases";
    let cases = [
        (
            "spotwright-webhook",
            "/api/v1/namespaces?limit=1".to_owned(),
            &workload,
        ),
        (
            "spotwright-extender",
            "/api/v1/nodes?limit=1".to_owned(),
            &workload,
        ),
        (
            "spotwright-scheduler",
            "/api/v1/pods?limit=1".to_owned(),
            &workload,
        ),
        (
            "spotwright-provisioner",
            "/api/v1/nodes?limit=1".to_owned(),
            &workload,
        ),
        (
            "spotwright-scheduler",
            format!("{leases}/spotwright-scheduler"),
            &leader_election,
        ),
        (
            "spotwright-provisioner",
            format!("{leases}/spotwright-provisioner"),
            &leader_election,
        ),
    ];
    for (service_account, path, expected) in cases {
        let got = classified(service_account, &path).await;
        assert_ne!(
            got.0, fallback,
            "{service_account} GET {path}: fell to service-accounts"
        );
        assert_eq!(
            &got, expected,
            "{service_account} GET {path}: (FlowSchema, priority level) UIDs"
        );
    }
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
