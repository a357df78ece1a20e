//! The part of a Pod the decision reads. Deserialising only these fields
//! (serde skips the rest) costs a fraction of building a whole `v1.Pod`,
//! and admission latency adds up in every pod creation of the cluster.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{NodeAffinity, Toleration};
use serde::Deserialize;

#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct PodView {
    #[serde(default)]
    pub metadata: MetadataView,
    #[serde(default)]
    pub spec: Option<SpecView>,
}

#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct MetadataView {
    #[serde(default)]
    pub namespace: Option<String>,
    #[serde(default)]
    pub annotations: Option<BTreeMap<String, String>>,
    #[serde(default)]
    pub owner_references: Option<Vec<OwnerView>>,
}

#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
pub struct OwnerView {
    #[serde(default)]
    pub kind: String,
}

#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct SpecView {
    #[serde(default)]
    pub node_name: Option<String>,
    #[serde(default)]
    pub node_selector: Option<BTreeMap<String, String>>,
    #[serde(default)]
    pub affinity: Option<AffinityView>,
    #[serde(default)]
    pub tolerations: Option<Vec<Toleration>>,
    #[serde(default)]
    pub scheduler_name: Option<String>,
}

/// `spec.affinity`: whether it is there, and its node affinity.
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct AffinityView {
    #[serde(default)]
    pub node_affinity: Option<NodeAffinity>,
}
