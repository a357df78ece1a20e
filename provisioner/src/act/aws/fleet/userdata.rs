//! EKS Amazon Linux 2023 user data: a MIME multi-part document whose first
//! part is nodeadm's `NodeConfig` (cluster name, endpoint, CA, kubelet
//! flags), followed by the NodeClass's own `userData`.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::Taint;

/// The cluster facts every node needs to join.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ClusterSettings {
    pub name: String,
    /// `https://...`.
    pub endpoint: String,
    /// The cluster CA bundle, base64 (as EKS reports it).
    pub certificate_authority: String,
    /// The service CIDR, such as `10.100.0.0/16`.
    pub service_cidr: Option<String>,
}

/// What the kubelet registers the node with.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct NodeBootstrap {
    pub labels: BTreeMap<String, String>,
    pub taints: Vec<Taint>,
}

/// The MIME boundary of the documents we write.
pub const BOUNDARY: &str = "//spotwright//";

/// A YAML scalar: JSON string syntax is valid double-quoted YAML.
fn yaml_string(value: &str) -> String {
    serde_json::Value::String(value.to_owned()).to_string()
}

fn taint_flag(taint: &Taint) -> String {
    match &taint.value {
        Some(value) if !value.is_empty() => format!("{}={}:{}", taint.key, value, taint.effect),
        _ => format!("{}:{}", taint.key, taint.effect),
    }
}

/// The nodeadm `NodeConfig` document.
pub fn node_config(cluster: &ClusterSettings, node: &NodeBootstrap) -> String {
    let mut yaml = String::from(
        "---\napiVersion: node.eks.aws/v1alpha1\nkind: NodeConfig\nspec:\n  cluster:\n",
    );
    yaml += &format!("    name: {}\n", yaml_string(&cluster.name));
    yaml += &format!(
        "    apiServerEndpoint: {}\n",
        yaml_string(&cluster.endpoint)
    );
    yaml += &format!(
        "    certificateAuthority: {}\n",
        yaml_string(&cluster.certificate_authority)
    );
    if let Some(cidr) = &cluster.service_cidr {
        yaml += &format!("    cidr: {}\n", yaml_string(cidr));
    }
    let mut flags = Vec::new();
    if !node.labels.is_empty() {
        let labels: Vec<String> = node
            .labels
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect();
        flags.push(format!("--node-labels={}", labels.join(",")));
    }
    if !node.taints.is_empty() {
        let taints: Vec<String> = node.taints.iter().map(taint_flag).collect();
        flags.push(format!("--register-with-taints={}", taints.join(",")));
    }
    if !flags.is_empty() {
        yaml += "  kubelet:\n    flags:\n";
        for flag in flags {
            yaml += &format!("      - {}\n", yaml_string(&flag));
        }
    }
    yaml
}

/// One part of a MIME multi-part document: its headers and body.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Part {
    headers: String,
    body: String,
}

/// The parts of the NodeClass's `userData`: the parts of a MIME document
/// as they are, a bare `NodeConfig` as a nodeadm part, anything else as a
/// shell script.
fn user_parts(user_data: &str) -> Vec<Part> {
    let trimmed = user_data.trim_start();
    if trimmed.starts_with("MIME-Version:") {
        if let Some(parts) = mime_parts(trimmed) {
            return parts;
        }
    }
    let is_node_config = trimmed
        .trim_start_matches("---")
        .trim_start()
        .starts_with("apiVersion: node.eks.aws/");
    let content_type = if is_node_config {
        "application/node.eks.aws"
    } else {
        "text/x-shellscript; charset=\"us-ascii\""
    };
    vec![Part {
        headers: format!("Content-Type: {content_type}"),
        body: user_data.to_owned(),
    }]
}

/// Splits a MIME multi-part document; `None` when it is not one we can read.
fn mime_parts(document: &str) -> Option<Vec<Part>> {
    let normalized = document.replace("\r\n", "\n");
    let (headers, body) = normalized.split_once("\n\n")?;
    let boundary = headers
        .lines()
        .find(|l| l.to_ascii_lowercase().starts_with("content-type:"))?
        .split(';')
        .find_map(|p| p.trim().strip_prefix("boundary="))?
        .trim_matches('"')
        .to_owned();
    let delimiter = format!("--{boundary}");
    let mut parts = Vec::new();
    for chunk in body.split(&delimiter).skip(1) {
        if chunk.starts_with("--") {
            break;
        }
        let chunk = chunk.trim_start_matches('\n');
        let (headers, body) = chunk.split_once("\n\n").unwrap_or((chunk, ""));
        parts.push(Part {
            headers: headers.to_owned(),
            body: body.trim_end_matches('\n').to_owned(),
        });
    }
    (!parts.is_empty()).then_some(parts)
}

/// The complete user data (not yet base64).
pub fn render(cluster: &ClusterSettings, node: &NodeBootstrap, user_data: Option<&str>) -> String {
    let mut parts = vec![Part {
        headers: "Content-Type: application/node.eks.aws".to_owned(),
        body: node_config(cluster, node),
    }];
    if let Some(extra) = user_data.filter(|u| !u.trim().is_empty()) {
        parts.extend(user_parts(extra));
    }
    let mut out =
        format!("MIME-Version: 1.0\nContent-Type: multipart/mixed; boundary=\"{BOUNDARY}\"\n\n");
    for part in parts {
        out += &format!(
            "--{BOUNDARY}\n{}\n\n{}\n",
            part.headers,
            part.body.trim_end_matches('\n')
        );
    }
    out += &format!("--{BOUNDARY}--\n");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cluster() -> ClusterSettings {
        ClusterSettings {
            name: "c1".into(),
            endpoint: "https://k8s.example".into(),
            certificate_authority: "Q0E=".into(),
            service_cidr: Some("10.100.0.0/16".into()),
        }
    }

    #[test]
    fn node_config_carries_the_cluster_and_kubelet_flags() {
        let node = NodeBootstrap {
            labels: BTreeMap::from([("spotwright.io/nodepool".into(), "default".into())]),
            taints: vec![Taint {
                key: "spotwright.io/capacity-type".into(),
                value: Some("spot".into()),
                effect: "NoSchedule".into(),
                time_added: None,
            }],
        };
        let text = render(&cluster(), &node, None);
        assert!(text.starts_with("MIME-Version: 1.0\nContent-Type: multipart/mixed;"));
        assert!(text.contains("Content-Type: application/node.eks.aws\n\n---\napiVersion: node.eks.aws/v1alpha1\nkind: NodeConfig"));
        assert!(text.contains("    name: \"c1\"\n    apiServerEndpoint: \"https://k8s.example\""));
        assert!(text.contains("cidr: \"10.100.0.0/16\""));
        assert!(text.contains("- \"--node-labels=spotwright.io/nodepool=default\""));
        assert!(text
            .contains("- \"--register-with-taints=spotwright.io/capacity-type=spot:NoSchedule\""));
        assert!(text.ends_with(&format!("--{BOUNDARY}--\n")));
    }

    #[test]
    fn a_script_is_appended_as_its_own_part() {
        let text = render(
            &cluster(),
            &NodeBootstrap::default(),
            Some("#!/bin/bash\necho hi\n"),
        );
        assert!(text.contains(
            "Content-Type: text/x-shellscript; charset=\"us-ascii\"\n\n#!/bin/bash\necho hi\n"
        ));
        assert_eq!(text.matches(&format!("--{BOUNDARY}\n")).count(), 2);
    }

    #[test]
    fn a_mime_document_contributes_its_parts() {
        let user = "MIME-Version: 1.0\nContent-Type: multipart/mixed; boundary=\"BB\"\n\n--BB\nContent-Type: text/x-shellscript\n\necho one\n--BB\nContent-Type: application/node.eks.aws\n\n---\napiVersion: node.eks.aws/v1alpha1\nkind: NodeConfig\nspec: {}\n--BB--\n";
        let text = render(&cluster(), &NodeBootstrap::default(), Some(user));
        assert_eq!(text.matches(&format!("--{BOUNDARY}\n")).count(), 3);
        assert!(text.contains("Content-Type: text/x-shellscript\n\necho one\n"));
        assert!(!text.contains("--BB"));
    }

    #[test]
    fn a_bare_node_config_is_a_nodeadm_part() {
        let user = "apiVersion: node.eks.aws/v1alpha1\nkind: NodeConfig\nspec: {}\n";
        let text = render(&cluster(), &NodeBootstrap::default(), Some(user));
        assert_eq!(
            text.matches("Content-Type: application/node.eks.aws")
                .count(),
            2
        );
    }
}
