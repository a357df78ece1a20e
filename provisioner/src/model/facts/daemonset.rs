//! DaemonSets: the overhead they add to every node they would run on.

use k8s_openapi::api::apps::v1::DaemonSet;
use spotwright_solver::model::DaemonSetFacts;

use super::pod::pod_requests;
use super::selectors::{required_node_affinity, tolerations};
use super::FactsError;

pub fn daemonset_facts(ds: &DaemonSet) -> Result<DaemonSetFacts, FactsError> {
    let name = format!(
        "{}/{}",
        ds.metadata.namespace.as_deref().unwrap_or_default(),
        ds.metadata.name.as_deref().unwrap_or_default()
    );
    let object = format!("daemonset {name}");
    let spec = ds
        .spec
        .as_ref()
        .and_then(|s| s.template.spec.as_ref())
        .ok_or_else(|| FactsError::unreadable(&object, "spec.template.spec", "missing"))?;
    Ok(DaemonSetFacts {
        requests: pod_requests(spec)
            .map_err(|e| FactsError::unreadable(&object, "resources", e))?,
        node_selector: spec.node_selector.clone().unwrap_or_default(),
        required_affinity: required_node_affinity(spec.affinity.as_ref())
            .map_err(|e| FactsError::unreadable(&object, "affinity", e))?,
        tolerations: tolerations(spec.tolerations.as_ref())
            .map_err(|e| FactsError::unreadable(&object, "tolerations", e))?,
        name,
    })
}
