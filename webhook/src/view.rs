//! Cluster views the decision reads: watch-fed caches in the cluster, a
//! fixed map in tests, benchmarks and fuzzing.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{Namespace, Taint};
use kube::core::PartialObjectMeta;
use kube::runtime::reflector::{ObjectRef, Store};
use spotwright_api::NodePool;

use crate::mutate::{ClusterView, NamespaceFacts};

/// Reflector stores fed by watches of Namespaces (metadata only) and NodePools.
#[derive(Clone)]
pub struct CachedView {
    pub namespaces: Store<PartialObjectMeta<Namespace>>,
    pub nodepools: Store<NodePool>,
}

impl ClusterView for CachedView {
    fn namespace(&self, name: &str) -> Option<NamespaceFacts> {
        let namespace = self.namespaces.get(&ObjectRef::new(name))?;
        Some(NamespaceFacts::from_annotations(
            namespace.metadata.annotations.as_ref(),
        ))
    }

    fn nodepool_taints(&self, name: &str) -> Option<Vec<Taint>> {
        let pool = self.nodepools.get(&ObjectRef::new(name))?;
        Some(pool.spec.template.spec.taints.clone())
    }
}

/// A fixed view.
#[derive(Clone, Debug, Default)]
pub struct StaticView {
    pub namespaces: BTreeMap<String, NamespaceFacts>,
    pub nodepools: BTreeMap<String, Vec<Taint>>,
}

impl StaticView {
    /// Namespaces with the given `spotwright.io/capacity` values (`None`: not opted in), no NodePools.
    pub fn with_capacities(capacities: &[(&str, Option<&str>)]) -> Self {
        let namespaces = capacities
            .iter()
            .map(|(name, capacity)| {
                let facts = NamespaceFacts {
                    capacity: capacity.map(str::to_owned),
                    nodepool: None,
                };
                ((*name).to_owned(), facts)
            })
            .collect();
        StaticView {
            namespaces,
            nodepools: BTreeMap::new(),
        }
    }
}

impl ClusterView for StaticView {
    fn namespace(&self, name: &str) -> Option<NamespaceFacts> {
        self.namespaces.get(name).cloned()
    }

    fn nodepool_taints(&self, name: &str) -> Option<Vec<Taint>> {
        self.nodepools.get(name).cloned()
    }
}
