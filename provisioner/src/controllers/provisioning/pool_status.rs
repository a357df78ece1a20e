//! Each NodePool's status: its nodes, their capacity (what `limits` count
//! against) and whether it can launch (`Ready`, with the reason when not).

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, Patch, PatchParams};
use serde_json::json;
use spotwright_api::conditions;
use spotwright_api::NodePool;

use crate::model::problem::PoolUsage;

/// What the status should say; `None` when it already does.
pub fn desired(
    pool: &NodePool,
    usage: &PoolUsage,
    not_ready: Option<&str>,
    now: Timestamp,
) -> Option<serde_json::Value> {
    let resources = resources(usage);
    let nodes = i64::try_from(usage.nodes).unwrap_or(i64::MAX);
    let (state, reason, message) = match not_ready {
        None => ("True", "Ready", "its NodeClass is resolved".to_owned()),
        Some(why) => ("False", "NodeClassNotReady", why.to_owned()),
    };
    let status = pool.status.clone().unwrap_or_default();
    let previous = status
        .conditions
        .iter()
        .find(|c| c.type_ == conditions::READY);
    let same = status.nodes == Some(nodes)
        && status.resources == resources
        && previous.is_some_and(|c| c.status == state && c.message == message);
    if same {
        return None;
    }
    let transition = match previous {
        Some(c) if c.status == state => c.last_transition_time.0,
        _ => Timestamp::from_second(now.as_second()).unwrap_or(Timestamp::UNIX_EPOCH),
    };
    // A merge patch keeps keys it does not name: a resource the pool no
    // longer has is removed by name.
    let mut patched: serde_json::Map<String, serde_json::Value> = status
        .resources
        .keys()
        .map(|k| (k.clone(), serde_json::Value::Null))
        .collect();
    for (key, value) in &resources {
        patched.insert(key.clone(), json!(value));
    }
    Some(json!({"status": {
        "nodes": nodes,
        "resources": patched,
        "conditions": [{"type": conditions::READY, "status": state, "reason": reason, "message": message,
            "lastTransitionTime": transition.to_string(), "observedGeneration": pool.metadata.generation}]
    }}))
}

/// Every resource `spec.limits` can name, summed over the pool's nodes.
fn resources(usage: &PoolUsage) -> BTreeMap<String, Quantity> {
    let capacity = &usage.capacity;
    let mut resources = BTreeMap::from([
        ("cpu".to_owned(), format!("{}m", capacity.cpu_millis)),
        (
            "memory".to_owned(),
            format!("{}Ki", capacity.memory_bytes / 1024),
        ),
        (
            "ephemeral-storage".to_owned(),
            format!("{}Ki", capacity.ephemeral_bytes / 1024),
        ),
        ("pods".to_owned(), capacity.pods.to_string()),
        ("nodes".to_owned(), usage.nodes.to_string()),
    ]);
    for (name, amount) in &capacity.extended {
        resources.insert(name.clone(), amount.to_string());
    }
    resources
        .into_iter()
        .map(|(k, v)| (k, Quantity(v)))
        .collect()
}

pub async fn write(api: &Api<NodePool>, pool: &NodePool, status: &serde_json::Value) {
    let name = pool.metadata.name.clone().unwrap_or_default();
    if let Err(err) = api
        .patch_status(&name, &PatchParams::default(), &Patch::Merge(status))
        .await
    {
        tracing::debug!(nodepool = name, error = %err, "NodePool status not written");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use spotwright_solver::model::Resources;

    fn pool() -> NodePool {
        serde_json::from_value(
            json!({"apiVersion": "spotwright.io/v1alpha1", "kind": "NodePool",
            "metadata": {"name": "p", "generation": 2},
            "spec": {"template": {"spec": {"nodeClassRef": {"name": "c"}}}}}),
        )
        .unwrap()
    }

    fn at() -> Timestamp {
        Timestamp::from_second(1_700_000_000).unwrap()
    }

    #[test]
    fn reports_usage_and_readiness_then_stays_quiet() {
        let mut usage = PoolUsage {
            nodes: 2,
            capacity: Resources {
                cpu_millis: 4000,
                memory_bytes: 16 << 30,
                ephemeral_bytes: 40 << 30,
                pods: 58,
                extended: vec![("nvidia.com/gpu".into(), 2)],
            },
        };
        let mut p = pool();
        let status = desired(&p, &usage, None, at()).expect("a first status");
        assert_eq!(status["status"]["nodes"], 2);
        let resources = &status["status"]["resources"];
        assert_eq!(resources["cpu"], "4000m");
        assert_eq!(resources["memory"], "16777216Ki");
        assert_eq!(resources["pods"], "58");
        assert_eq!(resources["nodes"], "2");
        assert_eq!(resources["nvidia.com/gpu"], "2");
        assert_eq!(status["status"]["conditions"][0]["status"], "True");
        assert_eq!(
            status["status"]["conditions"][0]["lastTransitionTime"],
            at().to_string(),
            "the transition is stamped with the injected clock"
        );
        p.status = serde_json::from_value(status["status"].clone()).unwrap();
        assert!(
            desired(&p, &usage, None, at()).is_none(),
            "unchanged: no write"
        );
        usage.capacity.extended.clear();
        let gone = desired(&p, &usage, None, at()).expect("the GPUs went");
        assert!(
            gone["status"]["resources"]["nvidia.com/gpu"].is_null(),
            "removed by name in the merge patch: {gone}"
        );
        let not_ready = desired(
            &p,
            &usage,
            Some("NodeClass c has no resolved subnets yet"),
            at(),
        )
        .expect("a change");
        assert_eq!(not_ready["status"]["conditions"][0]["status"], "False");
        assert_eq!(
            not_ready["status"]["conditions"][0]["reason"],
            "NodeClassNotReady"
        );
    }
}
