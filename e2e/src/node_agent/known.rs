//! What the agent remembers of the instances it has described. An
//! instance's type, zone, addresses, image and tags are fixed at launch, so
//! each one is described once; after that only its state is read, through
//! DescribeInstanceStatus. Describing every instance every second made the
//! emulator render hundreds of instances a second and starved the
//! provisioner's launches at a few thousand pods.

use std::collections::{HashMap, HashSet};

use super::Instance;

/// Where an instance is in its life, as far as Nodes go.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Lifecycle {
    Starting,
    Running,
    Stopped,
    /// Shutting down or terminated: it never runs again.
    Ended,
}

/// The instances described so far: the cluster's, and the ids that are not.
#[derive(Debug, Default)]
pub struct KnownInstances {
    owned: HashMap<String, Instance>,
    foreign: HashSet<String>,
}

impl KnownInstances {
    /// The ids among `states` that must be described: never seen, and not ended.
    pub fn unseen(&self, states: &[(String, Lifecycle)]) -> Vec<String> {
        states
            .iter()
            .filter(|(_, state)| *state != Lifecycle::Ended)
            .map(|(id, _)| id)
            .filter(|id| !self.owned.contains_key(*id) && !self.foreign.contains(*id))
            .cloned()
            .collect()
    }

    /// Records what describing `asked` found: the cluster's instances among
    /// them; the others are not the cluster's and are not asked about again.
    pub fn learn(&mut self, asked: &[String], described: Vec<Instance>) {
        let found: HashSet<&str> = described.iter().map(|i| i.id.as_str()).collect();
        self.foreign.extend(
            asked
                .iter()
                .filter(|id| !found.contains(id.as_str()))
                .cloned(),
        );
        for instance in described {
            self.owned.insert(instance.id.clone(), instance);
        }
    }

    /// The cluster's instances in their current state. One the states no
    /// longer list is gone, and forgotten.
    pub fn current(&mut self, states: &[(String, Lifecycle)]) -> Vec<Instance> {
        let by_id: HashMap<&str, Lifecycle> =
            states.iter().map(|(id, s)| (id.as_str(), *s)).collect();
        self.owned.retain(|id, _| by_id.contains_key(id.as_str()));
        self.foreign.retain(|id| by_id.contains_key(id.as_str()));
        let mut instances: Vec<Instance> = self
            .owned
            .values()
            .map(|instance| Instance {
                running: by_id.get(instance.id.as_str()) == Some(&Lifecycle::Running),
                ..instance.clone()
            })
            .collect();
        instances.sort_by(|a, b| a.id.cmp(&b.id));
        instances
    }
}
