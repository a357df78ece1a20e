//! The top layer: starts every controller on the one cluster state, and
//! gives provisioning and disruption their turns ([`turns`]). `main` parses
//! the flags, serves health and metrics, and runs this while it leads.

pub mod catalog;
pub mod leader;
pub mod recover;
pub mod turns;

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use kube::Client;
use tokio::sync::Notify;

use crate::act::ec2_launcher::Ec2Launcher;
use crate::act::events::Events;
use crate::act::instances::{CountedInstances, Ec2Instances};
use crate::act::launcher::{Launcher, Launching};
use crate::controllers::disruption::{self, Disruption, DisruptionSettings, Memory};
use crate::controllers::drift::{self, Drift, DriftSettings};
use crate::controllers::emptiness::{self, Emptiness, EmptinessSettings};
use crate::controllers::interruption::{self, Interruption, InterruptionSettings};
use crate::controllers::nodeclass;
use crate::controllers::nodepool_deletion::{self, NodePoolDeletion};
use crate::controllers::orphans::{self, OrphanSettings, Orphans};
use crate::controllers::pod_events::{self, PodEvents};
use crate::controllers::provisioning::{
    self, changed_verdicts, crowded_keys, pending_keys, ready_claim_keys, verdicts, Provisioning,
    ProvisioningSettings, Verdicts,
};
use crate::controllers::registration::{self, Registration, RegistrationSettings};
use crate::controllers::termination::{self, Termination, TerminationSettings};
use crate::metrics::Metrics;
use crate::model::burst;
use crate::model::clock::SharedClock;
use crate::state::{Changes, ClusterState, Kind};
use turns::{take_turns, TurnSettings, Turns};

/// Everything the controllers are started with.
pub struct Wiring {
    pub client: Client,
    pub state: ClusterState,
    pub launcher: Arc<Ec2Launcher>,
    pub metrics: Metrics,
    pub clock: SharedClock,
    pub ec2: aws_sdk_ec2::Client,
    pub ssm: aws_sdk_ssm::Client,
    pub cluster_name: String,
    pub settings: Settings,
}

/// The controllers' settings, from the flags.
pub struct Settings {
    pub provisioning: ProvisioningSettings,
    pub turns: TurnSettings,
    pub disruption: DisruptionSettings,
    pub registration: RegistrationSettings,
    pub orphans: OrphanSettings,
    pub emptiness: EmptinessSettings,
    pub nodeclass_refresh: Duration,
    pub eks_ami_ssm_prefix: String,
    /// The interruption queue's URL and SQS client, when interruptions are read.
    pub interruption: Option<(aws_sdk_sqs::Client, InterruptionSettings)>,
}

/// Starts every controller; provisioning and disruption take their turns
/// here until the process ends.
pub async fn controllers(w: Wiring) {
    tracing::info!("leading: starting the controllers");
    let events = Events::new(w.client.clone());
    let nodeclass_changed = Arc::new(Notify::new());
    spawn_nodeclass(&w, nodeclass_changed.clone());
    tokio::spawn(registration::run(Registration {
        client: w.client.clone(),
        state: w.state.clone(),
        events: events.clone(),
        clock: w.clock.clone(),
        settings: w.settings.registration.clone(),
    }));
    tokio::spawn(drift::run(Drift {
        client: w.client.clone(),
        state: w.state.clone(),
        events: events.clone(),
        clock: w.clock.clone(),
        settings: DriftSettings {
            wake: Some(nodeclass_changed),
            drifted: Some(w.metrics.drifted_nodeclaims.clone()),
            ..DriftSettings::default()
        },
    }));
    tokio::spawn(emptiness::run(Emptiness {
        client: w.client.clone(),
        state: w.state.clone(),
        events: events.clone(),
        clock: w.clock.clone(),
        settings: w.settings.emptiness.clone(),
    }));
    tokio::spawn(pod_events::run(PodEvents {
        client: w.client.clone(),
        state: w.state.clone(),
        clock: w.clock.clone(),
        sweep_interval: pod_events::SWEEP_INTERVAL,
    }));
    tokio::spawn(nodepool_deletion::run(NodePoolDeletion {
        client: w.client.clone(),
        state: w.state.clone(),
        events: events.clone(),
        clock: w.clock.clone(),
    }));
    spawn_instance_controllers(&w, &events);
    spawn_interruption(&w, &events);
    let act = Launching {
        client: w.client.clone(),
        launcher: w.launcher.clone(),
        metrics: w.metrics.clone(),
        events,
    };
    let mut turns = ProvisionerTurns::new(act, &w);
    w.state.ready().await;
    tracing::info!("caches synced; provisioning");
    Box::pin(take_turns(&mut turns, w.settings.turns)).await;
}

fn spawn_nodeclass(w: &Wiring, changed: Arc<Notify>) {
    let clients = nodeclass::Clients {
        kube: w.client.clone(),
        ec2: w.ec2.clone(),
        ssm: w.ssm.clone(),
    };
    let settings = nodeclass::Settings {
        refresh: w.settings.nodeclass_refresh,
        eks_ami_ssm_prefix: w.settings.eks_ami_ssm_prefix.clone(),
        on_change: Some(changed),
    };
    tokio::spawn(nodeclass::run(
        clients,
        w.state.clone(),
        w.clock.clone(),
        settings,
    ));
}

/// Termination and orphan collection, each counting what it terminates.
fn spawn_instance_controllers(w: &Wiring, events: &Events) {
    let ec2_instances = || Ec2Instances {
        ec2: w.ec2.clone(),
        cluster_name: w.cluster_name.clone(),
    };
    let drained = CountedInstances::new(ec2_instances(), &w.metrics, "nodeclaim_deleted");
    let orphaned = CountedInstances::new(ec2_instances(), &w.metrics, "orphan");
    tokio::spawn(termination::run(Termination {
        client: w.client.clone(),
        state: w.state.clone(),
        events: events.clone(),
        clock: w.clock.clone(),
        instances: Arc::new(drained),
        settings: TerminationSettings {
            evictions_blocked: Some(w.metrics.evictions_blocked.clone()),
            pods_deleted_at_grace: Some(w.metrics.pods_deleted_at_grace.clone()),
            ..TerminationSettings::default()
        },
    }));
    tokio::spawn(orphans::run(Orphans {
        state: w.state.clone(),
        instances: Arc::new(orphaned),
        clock: w.clock.clone(),
        settings: w.settings.orphans.clone(),
    }));
}

fn spawn_interruption(w: &Wiring, events: &Events) {
    let Some((sqs, settings)) = w.settings.interruption.clone() else {
        return;
    };
    tokio::spawn(interruption::run(Interruption {
        client: w.client.clone(),
        state: w.state.clone(),
        events: events.clone(),
        clock: w.clock.clone(),
        sqs,
        launcher: w.launcher.clone(),
        metrics: w.metrics.clone(),
        settings,
    }));
}

/// Provisioning and disruption, as the batching loop sees them.
pub struct ProvisionerTurns<L> {
    provisioning: Provisioning<L>,
    disruption: Disruption<L>,
    memory: Memory,
    changes: Changes,
    /// The scheduler's verdicts at the last look, to find the changed ones.
    verdicts: Verdicts,
}

impl<L> ProvisionerTurns<L> {
    fn new(act: Launching<L>, w: &Wiring) -> Self {
        // ReplicaSets: the status that says a burst's pods all exist.
        let changes = w.state.subscribe(&[
            Kind::Pods,
            Kind::Nodes,
            Kind::NodeClaims,
            Kind::NodePools,
            Kind::ReplicaSets,
        ]);
        ProvisionerTurns {
            provisioning: Provisioning {
                act: act.clone(),
                state: w.state.clone(),
                clock: w.clock.clone(),
                settings: w.settings.provisioning.clone(),
                nominations: Default::default(),
                nominated_events: provisioning::nominated_events_bucket(),
            },
            disruption: Disruption {
                act,
                state: w.state.clone(),
                clock: w.clock.clone(),
                settings: w.settings.disruption.clone(),
            },
            memory: Memory::default(),
            changes,
            verdicts: Verdicts::default(),
        }
    }
}

impl<L: Launcher> Turns for ProvisionerTurns<L> {
    fn pending(&mut self) -> BTreeSet<String> {
        let snapshot = self.provisioning.state.snapshot();
        let mut news = pending_keys(&snapshot, &self.provisioning.settings.scheduler_name);
        let count = i64::try_from(news.len()).unwrap_or(i64::MAX);
        self.provisioning.act.metrics.pending_pods.set(count);
        news.extend(ready_claim_keys(&snapshot.claims));
        let scheduler_name = &self.provisioning.settings.scheduler_name;
        let verdicts = verdicts(&snapshot.pods, scheduler_name, &snapshot.opted_in);
        news.extend(changed_verdicts(&self.verdicts, &verdicts));
        self.verdicts = verdicts;
        if let Ok(nominations) = self.provisioning.nominations.lock() {
            news.extend(crowded_keys(&snapshot, nominations.claims()));
        }
        news
    }

    fn complete(&mut self, arrivals: &BTreeSet<String>) -> bool {
        let snapshot = self.provisioning.state.snapshot();
        burst::batch_complete(
            arrivals,
            &snapshot.pods,
            &snapshot.replicasets,
            &snapshot.opted_in,
            &self.provisioning.settings.scheduler_name,
        )
    }

    async fn changed(&mut self) {
        self.changes.changed().await;
    }

    fn batch_closed(&mut self, open_for: Duration) {
        let metrics = &self.provisioning.act.metrics;
        metrics.batch_duration.observe(open_for.as_secs_f64());
    }

    async fn pass(&mut self) {
        if let Err(err) = provisioning::pass(&self.provisioning).await {
            tracing::warn!(error = %err, reason = err.metric_reason(), "provisioning pass failed; retrying at the next one");
        }
    }

    async fn sweep(&mut self) {
        disruption::sweep(&self.disruption, &mut self.memory).await;
    }
}
