//! NodePools as the solver sees them.

use spotwright_api::keys;
use spotwright_api::quantity;
use spotwright_api::v1alpha1::{NodeSelectorRequirementWithMinValues, RequirementOperator};
use spotwright_api::NodePool;
use spotwright_solver::model::{NodePoolFacts, Operator, Requirement, Taint};

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

/// `used_*` is the capacity of the pool's nodes and in-flight NodeClaims.
pub fn nodepool_facts(
    pool: &NodePool,
    used_cpu_millis: u64,
    used_memory_bytes: u64,
) -> Result<NodePoolFacts, FactsError> {
    let name = pool.metadata.name.clone().unwrap_or_default();
    let object = format!("nodepool {name}");
    let template = &pool.spec.template;
    let mut labels = template.metadata.labels.clone();
    labels.insert(keys::NODEPOOL_LABEL.to_owned(), name.clone());
    let limits = pool.spec.limits.as_ref();
    let limit = |q: Option<&k8s_openapi::apimachinery::pkg::api::resource::Quantity>,
                 milli: bool,
                 field: &str| {
        q.map(|q| {
            let v = if milli {
                quantity::milli_value(&q.0)
            } else {
                quantity::value(&q.0)
            };
            v.map(|v| u64::try_from(v.max(0)).unwrap_or(0))
                .map_err(|e| FactsError::unreadable(&object, field, e))
        })
        .transpose()
    };
    Ok(NodePoolFacts {
        weight: pool.spec.weight.unwrap_or(0),
        requirements: template.spec.requirements.iter().map(requirement).collect(),
        labels,
        taints: template.spec.taints.iter().filter_map(taint).collect(),
        limit_cpu_millis: limit(limits.and_then(|l| l.cpu.as_ref()), true, "spec.limits.cpu")?,
        limit_memory_bytes: limit(
            limits.and_then(|l| l.memory.as_ref()),
            false,
            "spec.limits.memory",
        )?,
        used_cpu_millis,
        used_memory_bytes,
        name,
    })
}
