//! What the rollout tests hold a rollout to: a workload behind a
//! PodDisruptionBudget of `maxUnavailable: 1`, sampled every 100 ms for
//! violations, alongside the system node group, which must stay whole.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use kube::{Api, Client};
use serde_json::json;

use super::process::eventually;
use super::system::system_view;

/// A Deployment of `replicas` pause pods of `cpu`, labelled `app: <name>`.
pub fn deployment(
    namespace: &str,
    name: &str,
    replicas: u32,
    cpu: &str,
    memory: &str,
) -> serde_json::Value {
    json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {"replicas": replicas, "selector": {"matchLabels": {"app": name}},
            "template": {"metadata": {"labels": {"app": name}}, "spec": {"containers": [{
                "name": "app", "image": "registry.k8s.io/pause:3.10",
                "resources": {"requests": {"cpu": cpu, "memory": memory}}}]}}}
    })
}

/// A PodDisruptionBudget of `maxUnavailable: 1` over `app: <name>`.
pub fn one_at_a_time(namespace: &str, name: &str) -> serde_json::Value {
    json!({
        "apiVersion": "policy/v1", "kind": "PodDisruptionBudget",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {"maxUnavailable": 1, "selector": {"matchLabels": {"app": name}}}
    })
}

/// Waits until the PDB `name` counts all `replicas` healthy and wants one fewer.
pub async fn pdb_counts(client: &Client, namespace: &str, name: &str, replicas: i32) {
    let pdbs: Api<PodDisruptionBudget> = Api::namespaced(client.clone(), namespace);
    eventually(
        "the PDB to be computed",
        Duration::from_secs(30),
        || async {
            pdbs.get(name)
                .await
                .ok()
                .and_then(|p| p.status)
                .is_some_and(|s| {
                    s.desired_healthy == Some(replicas - 1) && s.current_healthy == Some(replicas)
                })
        },
    )
    .await;
}

/// What the guard saw.
#[derive(Default)]
pub struct Guard {
    stop: AtomicBool,
    /// Samples that read the PDB's status.
    pub pdb_samples: AtomicUsize,
    /// Samples where its healthy pods fell below its desired count.
    pub pdb_violations: AtomicUsize,
    pub lowest_healthy: AtomicUsize,
    /// Samples where the system node group was not whole.
    pub system_disturbed: AtomicUsize,
}

impl Guard {
    /// Samples the PDB `name` and the system node group every 100 ms
    /// until [`Guard::stop`].
    pub fn start(
        client: Client,
        namespace: &str,
        name: &str,
    ) -> (Arc<Guard>, tokio::task::JoinHandle<()>) {
        let guard = Arc::new(Guard {
            lowest_healthy: AtomicUsize::new(usize::MAX),
            ..Guard::default()
        });
        let pdbs: Api<PodDisruptionBudget> = Api::namespaced(client.clone(), namespace);
        let (seen, name) = (guard.clone(), name.to_owned());
        let task = tokio::spawn(async move {
            while !seen.stop.load(Ordering::SeqCst) {
                let status = pdbs.get(&name).await.ok().and_then(|p| p.status);
                if let Some((healthy, desired)) =
                    status.and_then(|s| Some((s.current_healthy?, s.desired_healthy?)))
                {
                    seen.pdb_samples.fetch_add(1, Ordering::SeqCst);
                    let healthy_count = usize::try_from(healthy).unwrap_or(0);
                    seen.lowest_healthy
                        .fetch_min(healthy_count, Ordering::SeqCst);
                    if healthy < desired {
                        seen.pdb_violations.fetch_add(1, Ordering::SeqCst);
                    }
                }
                if !system_view(&client).await.is_whole() {
                    seen.system_disturbed.fetch_add(1, Ordering::SeqCst);
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        });
        (guard, task)
    }

    pub fn stop(&self) {
        self.stop.store(true, Ordering::SeqCst);
    }

    /// The PDB was sampled at least `samples` times and never violated, and
    /// the system node group was never touched.
    pub fn assert_held(&self, samples: usize) {
        let taken = self.pdb_samples.load(Ordering::SeqCst);
        assert!(
            taken >= samples,
            "the PDB was sampled {taken} times, not throughout"
        );
        assert_eq!(
            self.pdb_violations.load(Ordering::SeqCst),
            0,
            "the PDB was violated"
        );
        assert_eq!(
            self.system_disturbed.load(Ordering::SeqCst),
            0,
            "the system node group was touched"
        );
    }
}
