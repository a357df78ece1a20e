//! The system node group as a test sees it: what Spotwright must never
//! change (its nodes, their instances and the add-ons on them).

use k8s_openapi::api::core::v1::{Node, Pod};
use kube::api::ListParams;
use kube::{Api, Client};
use spotwright_api::keys;

/// One system node: its identity and everything a disruption would change.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SystemNode {
    pub name: String,
    pub uid: String,
    pub provider_id: String,
    pub unschedulable: bool,
    pub taints: Vec<String>,
}

/// The system node group and its add-on pods, at one moment.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SystemView {
    pub nodes: Vec<SystemNode>,
    /// `name@node` of each add-on pod, with its uid.
    pub addons: Vec<(String, String)>,
}

/// Reads the system node group (`eks.amazonaws.com/nodegroup=system`) and
/// the coredns pods.
pub async fn system_view(client: &Client) -> SystemView {
    let selector = format!("{}=system", keys::EKS_NODEGROUP_LABEL);
    let listed = Api::<Node>::all(client.clone())
        .list(&ListParams::default().labels(&selector))
        .await
        .map(|l| l.items)
        .unwrap_or_default();
    let mut nodes: Vec<SystemNode> = listed
        .into_iter()
        .map(|n| {
            let spec = n.spec.unwrap_or_default();
            let mut taints: Vec<String> = spec
                .taints
                .unwrap_or_default()
                .into_iter()
                .map(|t| format!("{}:{}", t.key, t.effect))
                .collect();
            taints.sort();
            SystemNode {
                name: n.metadata.name.unwrap_or_default(),
                uid: n.metadata.uid.unwrap_or_default(),
                provider_id: spec.provider_id.unwrap_or_default(),
                unschedulable: spec.unschedulable.unwrap_or(false),
                taints,
            }
        })
        .collect();
    nodes.sort_by(|a, b| a.name.cmp(&b.name));
    let pods = Api::<Pod>::namespaced(client.clone(), "kube-system")
        .list(&ListParams::default().labels("k8s-app=kube-dns"))
        .await
        .map(|l| l.items)
        .unwrap_or_default();
    let mut addons: Vec<(String, String)> = pods
        .into_iter()
        .filter(|p| p.metadata.deletion_timestamp.is_none())
        .map(|p| {
            let node = p.spec.and_then(|s| s.node_name).unwrap_or_default();
            let name = p.metadata.name.unwrap_or_default();
            (format!("{name}@{node}"), p.metadata.uid.unwrap_or_default())
        })
        .collect();
    addons.sort();
    SystemView { nodes, addons }
}

impl SystemView {
    /// Two Ready-looking system nodes, schedulable, tainted only
    /// CriticalAddonsOnly, with an add-on pod on each.
    pub fn is_whole(&self) -> bool {
        self.nodes.len() == 2
            && self.addons.len() == 2
            && self
                .nodes
                .iter()
                .all(|n| !n.unschedulable && n.taints == ["CriticalAddonsOnly:NoSchedule"])
    }
}
