//! NodePools as the solver sees them.

use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use spotwright_api::keys;
use spotwright_api::quantity;
use spotwright_api::v1alpha1::{
    MinValuesPolicy as ApiMinValuesPolicy, NodeSelectorRequirementWithMinValues,
    RequirementOperator,
};
use spotwright_api::NodePool;
use spotwright_solver::model::{
    Limit, LimitedResource, MinValuesPolicy, NodePoolFacts, Operator, Requirement, Resources, Taint,
};

use super::selectors::effect;
use super::FactsError;

pub fn requirement(r: &NodeSelectorRequirementWithMinValues) -> Requirement {
    Requirement {
        key: r.key.clone(),
        operator: match r.operator {
            RequirementOperator::In => Operator::In,
            RequirementOperator::NotIn => Operator::NotIn,
            RequirementOperator::Exists => Operator::Exists,
            RequirementOperator::DoesNotExist => Operator::DoesNotExist,
            RequirementOperator::Gt => Operator::Gt,
            RequirementOperator::Lt => Operator::Lt,
            RequirementOperator::Gte => Operator::Gte,
            RequirementOperator::Lte => Operator::Lte,
        },
        values: r.values.clone(),
        min_values: r.min_values.and_then(|v| u32::try_from(v).ok()),
    }
}

pub fn taint(t: &k8s_openapi::api::core::v1::Taint) -> Option<Taint> {
    Some(Taint {
        key: t.key.clone(),
        value: t.value.clone(),
        effect: effect(&t.effect)?,
    })
}

/// `nodes` and `capacity`: the pool's nodes and in-flight NodeClaims, and
/// their summed capacity, which its limits are held against.
pub fn nodepool_facts(
    pool: &NodePool,
    nodes: u64,
    capacity: &Resources,
) -> Result<NodePoolFacts, FactsError> {
    let name = pool.metadata.name.clone().unwrap_or_default();
    let object = format!("nodepool {name}");
    let template = &pool.spec.template;
    let mut labels = template.metadata.labels.clone();
    labels.insert(keys::NODEPOOL_LABEL.to_owned(), name.clone());
    let limits = pool
        .spec
        .limits
        .iter()
        .flat_map(|l| &l.0)
        .map(|(key, max)| limit(&object, key, max, nodes, capacity))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(NodePoolFacts {
        weight: pool.spec.weight.unwrap_or(0),
        requirements: template.spec.requirements.iter().map(requirement).collect(),
        labels,
        taints: template.spec.taints.iter().filter_map(taint).collect(),
        limits,
        min_values_policy: match template.spec.min_values_policy {
            Some(ApiMinValuesPolicy::BestEffort) => MinValuesPolicy::BestEffort,
            Some(ApiMinValuesPolicy::Strict) | None => MinValuesPolicy::Strict,
        },
        name,
    })
}

/// One `spec.limits` entry in base units (millicores for `cpu`), with what
/// the pool holds now. An unknown key or an unreadable quantity is an
/// error, never an ignored limit.
fn limit(
    object: &str,
    key: &str,
    max: &Quantity,
    nodes: u64,
    capacity: &Resources,
) -> Result<Limit, FactsError> {
    let field = format!("spec.limits.{key}");
    let resource = LimitedResource::parse(key).ok_or_else(|| {
        FactsError::unreadable(object, &field, "not a resource Spotwright can limit")
    })?;
    let value = if resource == LimitedResource::Cpu {
        quantity::milli_value(&max.0)
    } else {
        quantity::value(&max.0)
    }
    .map_err(|e| FactsError::unreadable(object, &field, e))?;
    let used = match resource {
        LimitedResource::Nodes => nodes,
        _ => resource.of(capacity),
    };
    Ok(Limit {
        resource,
        max: u64::try_from(value.max(0)).unwrap_or(0),
        used,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn pool(limits: serde_json::Value) -> NodePool {
        serde_json::from_value(json!({
            "apiVersion": "spotwright.io/v1alpha1", "kind": "NodePool",
            "metadata": {"name": "p"},
            "spec": {"template": {"spec": {"nodeClassRef": {"name": "c"}}}, "limits": limits}
        }))
        .expect("a NodePool")
    }

    #[test]
    fn every_limit_is_read_in_base_units_with_what_the_pool_holds() {
        let held = Resources {
            cpu_millis: 8000,
            memory_bytes: 16 << 30,
            ephemeral_bytes: 40 << 30,
            pods: 58,
            extended: vec![("nvidia.com/gpu".into(), 1)],
        };
        let limits = json!({"cpu": "10", "memory": "64Gi", "ephemeral-storage": "1Ti",
            "pods": 100, "nodes": 3, "nvidia.com/gpu": "2"});
        let facts = nodepool_facts(&pool(limits), 2, &held).expect("readable");
        let read: Vec<(&str, u64, u64)> = facts
            .limits
            .iter()
            .map(|l| (l.resource.key(), l.max, l.used))
            .collect();
        assert_eq!(
            read,
            vec![
                ("cpu", 10_000, 8000),
                ("ephemeral-storage", 1 << 40, 40 << 30),
                ("memory", 64 << 30, 16 << 30),
                ("nodes", 3, 2),
                ("nvidia.com/gpu", 2, 1),
                ("pods", 100, 58),
            ]
        );
    }

    #[test]
    fn an_unknown_key_or_a_bad_quantity_is_an_error_not_an_ignored_limit() {
        for limits in [json!({"gpus": "4"}), json!({"cpu": "lots"})] {
            let err = nodepool_facts(&pool(limits.clone()), 0, &Resources::default());
            assert!(
                err.as_ref()
                    .is_err_and(|e| e.to_string().contains("spec.limits.")),
                "{limits}: {err:?}"
            );
        }
    }
}
