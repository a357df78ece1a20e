//! Pod events. Watches (through the cluster state) NodePools, NodeClaims,
//! Nodes and Pods. Decides ([`crate::model::pod_events`], [`decide`]):
//! since when each claim's Node has held the workload pods it holds, for
//! the claims a restart could resume. Does: records that time and the
//! pods' fingerprint on the claim (`status.lastPodEventTime`,
//! `status.lastPodEventPods`), at most every 10 s per claim, so that
//! emptiness and consolidation resume their `consolidateAfter` timers from
//! it after a restart or a change of leader.

mod decide;

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::{Client, ResourceExt};
use serde_json::json;
use spotwright_api::NodeClaim;

use crate::act::claims;
use crate::model::clock::SharedClock;
use crate::model::pod_events::{fingerprint_text, record_pruned, PodsSeenByNode, Written};
use crate::state::ClusterState;

/// How often every claim is looked at.
pub const SWEEP_INTERVAL: Duration = Duration::from_secs(5);

/// What the pod-events loop works with.
pub struct PodEvents {
    pub client: Client,
    pub state: ClusterState,
    pub clock: SharedClock,
    pub sweep_interval: Duration,
}

/// What the loop remembers between sweeps.
#[derive(Debug, Default)]
struct Memory {
    /// Per Node: its workload pods, and since when.
    pods: PodsSeenByNode,
    /// Per claim: what this process last wrote, and when.
    written: HashMap<String, Written>,
    /// Whether a record the API did not keep whole was reported.
    pruning_reported: bool,
}

/// Runs the pod-events loop forever.
pub async fn run(ctx: PodEvents) {
    ctx.state.ready().await;
    let mut memory = Memory::default();
    let mut ticker = tokio::time::interval(ctx.sweep_interval);
    loop {
        ticker.tick().await;
        sweep(&ctx, &mut memory).await;
    }
}

async fn sweep(ctx: &PodEvents, memory: &mut Memory) {
    let now = ctx.clock.now();
    let snapshot = ctx.state.snapshot();
    memory.pods = snapshot.pods_seen(&memory.pods, now);
    memory
        .written
        .retain(|name, _| snapshot.claim(name).is_some());
    report_pruning(&snapshot.claims, memory);
    let timed_pools: HashSet<String> = snapshot
        .nodepools
        .iter()
        .filter(|pool| decide::resumes_timers(pool))
        .map(|pool| pool.name_any())
        .collect();
    let due = decide::records_due(
        &snapshot.claims,
        &timed_pools,
        &memory.pods,
        &memory.written,
        now,
    );
    for (name, seen) in due {
        let status = json!({"status": {"lastPodEventTime": Time(seen.since),
            "lastPodEventPods": fingerprint_text(seen.fingerprint)}});
        match claims::merge_status(&ctx.client, &name, &status).await {
            Ok(()) => {
                let written = Written {
                    at: now,
                    what: seen,
                };
                memory.written.insert(name, written);
            }
            // The next sweep tries again: the time is in memory.
            Err(err) => {
                tracing::debug!(claim = %name, error = %err, "recording the last pod event failed")
            }
        }
    }
}

/// Warns once per process when the API server drops `lastPodEventPods`
/// from what was written: the NodeClaim CRD predates the field, and a
/// restart will start every `consolidateAfter` timer again.
fn report_pruning(claims: &[Arc<NodeClaim>], memory: &mut Memory) {
    if memory.pruning_reported {
        return;
    }
    let pruned = claims.iter().find(|claim| {
        let written = memory.written.get(&claim.name_any());
        written.is_some_and(|&written| record_pruned(claim, written))
    });
    if let Some(claim) = pruned {
        tracing::warn!(
            claim = %claim.name_any(),
            "status.lastPodEventPods was not kept: the NodeClaim CRD predates it; apply this release's CRDs, or a restart starts every consolidateAfter timer again"
        );
        memory.pruning_reported = true;
    }
}
