//! Selectors, requirements, taints and tolerations.

use std::collections::BTreeMap;

use super::FieldError;
use k8s_openapi::api::core::v1::{Affinity, NodeSelectorRequirement, Toleration as K8sToleration};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector as K8sLabelSelector;
use spotwright_solver::model::{
    LabelSelector, NodeSelectorTerms, Operator, PreferredTerm, Requirement, TaintEffect, Toleration,
};

pub fn operator(value: &str) -> Option<Operator> {
    Some(match value {
        "In" => Operator::In,
        "NotIn" => Operator::NotIn,
        "Exists" => Operator::Exists,
        "DoesNotExist" => Operator::DoesNotExist,
        "Gt" => Operator::Gt,
        "Lt" => Operator::Lt,
        _ => return None,
    })
}

pub fn effect(value: &str) -> Option<TaintEffect> {
    Some(match value {
        "NoSchedule" => TaintEffect::NoSchedule,
        "PreferNoSchedule" => TaintEffect::PreferNoSchedule,
        "NoExecute" => TaintEffect::NoExecute,
        _ => return None,
    })
}

pub fn node_requirement(r: &NodeSelectorRequirement) -> Result<Requirement, FieldError> {
    Ok(Requirement {
        key: r.key.clone(),
        operator: operator(&r.operator)
            .ok_or_else(|| FieldError::UnknownOperator(r.operator.clone()))?,
        values: r.values.clone().unwrap_or_default(),
        min_values: None,
    })
}

/// The required node affinity of a pod spec; an empty list means none.
pub fn required_node_affinity(
    affinity: Option<&Affinity>,
) -> Result<NodeSelectorTerms, FieldError> {
    let Some(required) = affinity
        .and_then(|a| a.node_affinity.as_ref())
        .and_then(|n| {
            n.required_during_scheduling_ignored_during_execution
                .as_ref()
        })
    else {
        return Ok(Vec::new());
    };
    required
        .node_selector_terms
        .iter()
        .map(|term| {
            // matchFields can only name metadata.name, which no new node has yet.
            term.match_expressions
                .iter()
                .flatten()
                .map(node_requirement)
                .collect::<Result<Vec<_>, _>>()
        })
        .collect()
}

/// The preferred node-affinity terms, as written (the solver orders them).
pub fn preferred_node_affinity(
    affinity: Option<&Affinity>,
) -> Result<Vec<PreferredTerm>, FieldError> {
    let preferred = affinity
        .and_then(|a| a.node_affinity.as_ref())
        .and_then(|n| {
            n.preferred_during_scheduling_ignored_during_execution
                .as_ref()
        });
    preferred
        .into_iter()
        .flatten()
        .map(|term| {
            let requirements = term
                .preference
                .match_expressions
                .iter()
                .flatten()
                .map(node_requirement)
                .collect::<Result<Vec<_>, _>>()?;
            Ok(PreferredTerm {
                weight: term.weight,
                requirements,
            })
        })
        .collect()
}

pub fn tolerations(list: Option<&Vec<K8sToleration>>) -> Result<Vec<Toleration>, FieldError> {
    list.into_iter()
        .flatten()
        .map(|t| {
            let exists = match t.operator.as_deref() {
                None | Some("Equal") => false,
                Some("Exists") => true,
                Some(other) => return Err(FieldError::UnknownTolerationOperator(other.to_owned())),
            };
            let effect = match t.effect.as_deref() {
                None | Some("") => None,
                Some(e) => Some(effect(e).ok_or_else(|| FieldError::UnknownEffect(e.to_owned()))?),
            };
            Ok(Toleration {
                key: t.key.clone().filter(|k| !k.is_empty()),
                exists,
                value: t.value.clone(),
                effect,
            })
        })
        .collect()
}

pub fn label_selector(selector: Option<&K8sLabelSelector>) -> Result<LabelSelector, FieldError> {
    let mut requirements = Vec::new();
    let Some(selector) = selector else {
        return Ok(LabelSelector { requirements });
    };
    for (key, value) in selector.match_labels.iter().flatten() {
        requirements.push(Requirement {
            key: key.clone(),
            operator: Operator::In,
            values: vec![value.clone()],
            min_values: None,
        });
    }
    for e in selector.match_expressions.iter().flatten() {
        let op = match e.operator.as_str() {
            "In" => Operator::In,
            "NotIn" => Operator::NotIn,
            "Exists" => Operator::Exists,
            "DoesNotExist" => Operator::DoesNotExist,
            other => return Err(FieldError::UnknownSelectorOperator(other.to_owned())),
        };
        requirements.push(Requirement {
            key: e.key.clone(),
            operator: op,
            values: e.values.clone().unwrap_or_default(),
            min_values: None,
        });
    }
    Ok(LabelSelector { requirements })
}

pub fn labels(map: Option<&BTreeMap<String, String>>) -> BTreeMap<String, String> {
    map.cloned().unwrap_or_default()
}
