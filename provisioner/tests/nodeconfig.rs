//! The user data a Spotwright node boots with, read back the way nodeadm
//! reads it: a MIME multi-part document whose `application/node.eks.aws`
//! parts are `NodeConfig` objects (node.eks.aws/v1alpha1). The types below
//! mirror nodeadm's API reference field for field and refuse any other
//! field, so a misspelt or invented key fails here, not on a booting node.

use std::collections::BTreeMap;

use base64::Engine;
use k8s_openapi::api::core::v1::Taint;
use proptest::prelude::*;
use serde::Deserialize;
use spotwright_provisioner::act::aws::fleet::userdata::render;
use spotwright_provisioner::act::aws::fleet::{ClusterSettings, NodeBootstrap};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct NodeConfig {
    api_version: String,
    kind: String,
    #[serde(default)]
    metadata: Option<serde_yaml::Value>,
    spec: NodeConfigSpec,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct NodeConfigSpec {
    cluster: Option<ClusterDetails>,
    containerd: Option<serde_yaml::Value>,
    instance: Option<serde_yaml::Value>,
    kubelet: Option<KubeletOptions>,
    feature_gates: Option<BTreeMap<String, bool>>,
}

#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct ClusterDetails {
    name: Option<String>,
    api_server_endpoint: Option<String>,
    certificate_authority: Option<String>,
    cidr: Option<String>,
    enable_outpost: Option<bool>,
    id: Option<String>,
}

#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct KubeletOptions {
    config: Option<BTreeMap<String, serde_yaml::Value>>,
    flags: Option<Vec<String>>,
}

/// One MIME part: its content type and body.
#[derive(Debug)]
struct Part {
    content_type: String,
    body: String,
}

/// Splits a MIME multi-part document as cloud-init and nodeadm do: the
/// boundary from the top-level Content-Type, then each part's headers and body.
fn mime_parts(document: &str) -> Vec<Part> {
    let (headers, body) = document.split_once("\n\n").expect("MIME headers");
    assert!(
        headers.lines().any(|l| l == "MIME-Version: 1.0"),
        "{headers}"
    );
    let content_type = headers
        .lines()
        .find_map(|l| l.strip_prefix("Content-Type: "))
        .expect("a top-level Content-Type");
    assert!(
        content_type.starts_with("multipart/mixed;"),
        "{content_type}"
    );
    let boundary = content_type
        .split("boundary=")
        .nth(1)
        .expect("a boundary")
        .trim_matches('"');
    let closing = format!("--{boundary}--");
    assert!(body.trim_end().ends_with(&closing), "no closing boundary");
    let body = body.trim_end().trim_end_matches(&closing);
    body.split(&format!("--{boundary}\n"))
        .skip(1)
        .map(|chunk| {
            let (headers, body) = chunk.split_once("\n\n").expect("part headers");
            let content_type = headers
                .lines()
                .find_map(|l| l.strip_prefix("Content-Type: "))
                .expect("a part Content-Type")
                .to_owned();
            Part {
                content_type,
                body: body.to_owned(),
            }
        })
        .collect()
}

fn node_configs(document: &str) -> Vec<NodeConfig> {
    mime_parts(document)
        .into_iter()
        .filter(|p| p.content_type == "application/node.eks.aws")
        .map(|p| {
            let config: NodeConfig = serde_yaml::from_str(&p.body)
                .unwrap_or_else(|e| panic!("not a nodeadm NodeConfig: {e}\n{}", p.body));
            assert_eq!(config.api_version, "node.eks.aws/v1alpha1");
            assert_eq!(config.kind, "NodeConfig");
            config
        })
        .collect()
}

/// nodeadm's documented merge: the objects in document order, a later
/// value taking precedence (kubelet flags are appended).
fn merged(configs: Vec<NodeConfig>) -> (ClusterDetails, KubeletOptions) {
    let mut cluster = ClusterDetails::default();
    let mut kubelet = KubeletOptions::default();
    for config in configs {
        if let Some(c) = config.spec.cluster {
            cluster.name = c.name.or(cluster.name);
            cluster.api_server_endpoint = c.api_server_endpoint.or(cluster.api_server_endpoint);
            cluster.certificate_authority =
                c.certificate_authority.or(cluster.certificate_authority);
            cluster.cidr = c.cidr.or(cluster.cidr);
        }
        if let Some(k) = config.spec.kubelet {
            let mut settings = kubelet.config.take().unwrap_or_default();
            settings.extend(k.config.unwrap_or_default());
            kubelet.config = Some(settings).filter(|s| !s.is_empty());
            let mut flags = kubelet.flags.take().unwrap_or_default();
            flags.extend(k.flags.unwrap_or_default());
            kubelet.flags = Some(flags).filter(|f| !f.is_empty());
        }
    }
    (cluster, kubelet)
}

fn cluster() -> ClusterSettings {
    ClusterSettings {
        name: "prod-eu".into(),
        endpoint: "https://0123ABCD.gr7.eu-west-1.eks.amazonaws.com".into(),
        certificate_authority: base64::engine::general_purpose::STANDARD
            .encode("-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n"),
        service_cidr: Some("172.20.0.0/16".into()),
    }
}

fn taint(key: &str, value: Option<&str>, effect: &str) -> Taint {
    Taint {
        key: key.into(),
        value: value.map(Into::into),
        effect: effect.into(),
        time_added: None,
    }
}

fn flag<'a>(flags: &'a [String], name: &str) -> Option<&'a str> {
    flags.iter().find_map(|f| f.strip_prefix(name))
}

#[test]
fn the_node_config_is_complete_and_names_only_nodeadm_fields() {
    let node = NodeBootstrap {
        labels: BTreeMap::from([
            ("spotwright.io/nodepool".into(), "spot".into()),
            ("team".into(), "a".into()),
        ]),
        taints: vec![
            taint("spotwright.io/capacity-type", Some("spot"), "NoSchedule"),
            taint("dedicated", None, "NoExecute"),
        ],
    };
    let document = render(&cluster(), &node, None);
    let configs = node_configs(&document);
    assert_eq!(configs.len(), 1);
    let spec = &configs[0].spec;
    assert!(configs[0].metadata.is_none());
    // Only what a node needs to join: containerd, instance and feature gates are the user's.
    assert!(spec.containerd.is_none() && spec.instance.is_none() && spec.feature_gates.is_none());
    let details = spec.cluster.clone().expect("spec.cluster");
    assert_eq!(details.name.as_deref(), Some("prod-eu"));
    assert_eq!(
        details.api_server_endpoint.as_deref(),
        Some("https://0123ABCD.gr7.eu-west-1.eks.amazonaws.com")
    );
    let ca = base64::engine::general_purpose::STANDARD
        .decode(details.certificate_authority.expect("certificateAuthority"))
        .expect("the CA is base64");
    assert!(String::from_utf8_lossy(&ca).starts_with("-----BEGIN CERTIFICATE-----"));
    assert_eq!(details.cidr.as_deref(), Some("172.20.0.0/16"));
    assert!(details.enable_outpost.is_none() && details.id.is_none());
    let flags = spec
        .kubelet
        .clone()
        .and_then(|k| k.flags)
        .expect("kubelet flags");
    assert_eq!(
        flag(&flags, "--node-labels="),
        Some("spotwright.io/nodepool=spot,team=a")
    );
    assert_eq!(
        flag(&flags, "--register-with-taints="),
        Some("spotwright.io/capacity-type=spot:NoSchedule,dedicated:NoExecute")
    );
}

#[test]
fn the_users_parts_follow_ours_so_nodeadm_lets_them_win() {
    let user = "MIME-Version: 1.0\nContent-Type: multipart/mixed; boundary=\"USER\"\n\n\
--USER\nContent-Type: text/x-shellscript; charset=\"us-ascii\"\n\n#!/bin/bash\necho tuned\n\
--USER\nContent-Type: application/node.eks.aws\n\n---\napiVersion: node.eks.aws/v1alpha1\nkind: NodeConfig\n\
spec:\n  kubelet:\n    config:\n      maxPods: 110\n    flags:\n      - --image-gc-high-threshold=70\n--USER--\n";
    let node = NodeBootstrap {
        labels: BTreeMap::from([("spotwright.io/nodepool".into(), "spot".into())]),
        taints: vec![],
    };
    let document = render(&cluster(), &node, Some(user));
    let parts = mime_parts(&document);
    let types: Vec<&str> = parts.iter().map(|p| p.content_type.as_str()).collect();
    assert_eq!(
        types,
        [
            "application/node.eks.aws",
            "text/x-shellscript; charset=\"us-ascii\"",
            "application/node.eks.aws"
        ]
    );
    assert!(parts[1].body.contains("echo tuned"));
    let (details, kubelet) = merged(node_configs(&document));
    assert_eq!(details.name.as_deref(), Some("prod-eu"));
    assert_eq!(details.cidr.as_deref(), Some("172.20.0.0/16"));
    let config = kubelet.config.expect("the user's kubelet config");
    assert_eq!(config.get("maxPods"), Some(&serde_yaml::Value::from(110)));
    let flags = kubelet.flags.expect("flags");
    assert_eq!(
        flag(&flags, "--node-labels="),
        Some("spotwright.io/nodepool=spot")
    );
    assert_eq!(flag(&flags, "--image-gc-high-threshold="), Some("70"));
}

#[test]
fn a_bare_node_config_and_a_script_become_parts_of_their_own() {
    let bare = "apiVersion: node.eks.aws/v1alpha1\nkind: NodeConfig\nspec:\n  cluster:\n    cidr: 10.100.0.0/16\n";
    let document = render(&cluster(), &NodeBootstrap::default(), Some(bare));
    let (details, _) = merged(node_configs(&document));
    // The user's value comes last and wins, as nodeadm documents.
    assert_eq!(details.cidr.as_deref(), Some("10.100.0.0/16"));
    let script = "#!/bin/bash\necho hi\n";
    let document = render(&cluster(), &NodeBootstrap::default(), Some(script));
    let parts = mime_parts(&document);
    assert_eq!(parts.len(), 2);
    assert!(parts[1].content_type.starts_with("text/x-shellscript"));
    assert_eq!(node_configs(&document).len(), 1);
}

fn label_key() -> impl Strategy<Value = String> {
    (
        "([a-z]{1,8}(\\.[a-z]{1,5})?/)?",
        "[a-z][a-z0-9-]{0,10}[a-z0-9]",
    )
        .prop_map(|(prefix, name)| format!("{prefix}{name}"))
}

fn label_value() -> impl Strategy<Value = String> {
    "([a-zA-Z0-9]([a-zA-Z0-9._-]{0,10}[a-zA-Z0-9])?)?"
}

fn arb_taint() -> impl Strategy<Value = Taint> {
    (
        label_key(),
        proptest::option::of("[a-zA-Z0-9]{1,8}"),
        prop_oneof![
            Just("NoSchedule"),
            Just("PreferNoSchedule"),
            Just("NoExecute")
        ],
    )
        .prop_map(|(key, value, effect)| taint(&key, value.as_deref(), effect))
}

proptest! {
    /// Any labels and taints a NodePool can carry come back from the
    /// kubelet flags exactly, in a document nodeadm can read.
    #[test]
    fn labels_and_taints_survive_the_round_trip(
        labels in proptest::collection::btree_map(label_key(), label_value(), 0..6),
        taints in proptest::collection::vec(arb_taint(), 0..4),
    ) {
        let node = NodeBootstrap { labels: labels.clone(), taints: taints.clone() };
        let configs = node_configs(&render(&cluster(), &node, None));
        prop_assert_eq!(configs.len(), 1);
        let flags = configs[0]
            .spec
            .kubelet
            .clone()
            .and_then(|k| k.flags)
            .unwrap_or_default();
        let parsed_labels: BTreeMap<String, String> = flag(&flags, "--node-labels=")
            .map(|v| {
                v.split(',')
                    .map(|kv| {
                        let (k, v) = kv.split_once('=').expect("key=value");
                        (k.to_owned(), v.to_owned())
                    })
                    .collect()
            })
            .unwrap_or_default();
        prop_assert_eq!(parsed_labels, labels);
        let parsed_taints: Vec<Taint> = flag(&flags, "--register-with-taints=")
            .map(|v| {
                v.split(',')
                    .map(|t| {
                        let (key_value, effect) = t.rsplit_once(':').expect("key[=value]:effect");
                        let (key, value) = match key_value.split_once('=') {
                            Some((k, v)) => (k, Some(v)),
                            None => (key_value, None),
                        };
                        taint(key, value, effect)
                    })
                    .collect()
            })
            .unwrap_or_default();
        prop_assert_eq!(parsed_taints, taints);
    }
}
