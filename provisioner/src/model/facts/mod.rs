//! Kubernetes objects into the solver's plain data (`spotwright_solver::model`).
//! Conversions are pure; anything unreadable is an error that names the
//! object and the field, so a bad pod is reported rather than guessed at.

mod daemonset;
mod node;
mod nodepool;
mod pod;
mod selectors;

pub use daemonset::daemonset_facts;
pub use node::{
    add as add_resources, existing_node, in_flight_node, labels_of, node_capacity, resources,
};
pub use nodepool::{nodepool_facts, requirement, taint};
pub use pod::{placement, pod_requests, requests_of, Placement, UnreadableField};
pub use selectors::node_requirement;

/// Why one field cannot be read into the solver's model.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum FieldError {
    #[error("missing")]
    Missing,
    #[error("unknown operator {0:?}")]
    UnknownOperator(String),
    #[error("unknown toleration operator {0:?}")]
    UnknownTolerationOperator(String),
    #[error("unknown taint effect {0:?}")]
    UnknownEffect(String),
    #[error("unknown label selector operator {0:?}")]
    UnknownSelectorOperator(String),
    #[error("{resource}: {source}")]
    Quantity {
        resource: String,
        source: spotwright_api::quantity::QuantityError,
    },
}

#[derive(Clone, Debug, thiserror::Error)]
pub enum FactsError {
    #[error("{object}: {field}: {reason}")]
    Unreadable {
        object: String,
        field: String,
        reason: String,
    },
}

impl FactsError {
    pub(crate) fn unreadable(object: &str, field: &str, reason: impl std::fmt::Display) -> Self {
        FactsError::Unreadable {
            object: object.to_owned(),
            field: field.to_owned(),
            reason: reason.to_string(),
        }
    }
}
