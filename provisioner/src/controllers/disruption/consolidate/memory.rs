//! What consolidation remembers between sweeps: when each Node's pods
//! last changed, each pool's recent peak, its recent actions, and the
//! last question asked of it.

use std::collections::{HashMap, HashSet, VecDeque};
use std::hash::{Hash, Hasher};

use k8s_openapi::jiff::Timestamp;
use kube::ResourceExt;
use spotwright_solver::model::PendingPod;

use crate::model::claim::{node_name, nodepool_of};
use crate::model::consolidation::peak::PoolHistory;
use crate::model::consolidation::{underutilized_after, Pool};
use crate::model::hashing::{fnv1a, FNV_OFFSET};
use crate::model::pod::CachedPod;
use crate::model::pod_events::PodsSeenByNode;
use crate::state::Snapshot;

/// What consolidation remembers between sweeps.
#[derive(Default)]
pub struct Memory {
    /// Per Node: its workload pods and since when they are what they are.
    pub(super) settled: PodsSeenByNode,
    /// Per NodePool: when its recent actions began, oldest first.
    pub(super) begun: HashMap<String, VecDeque<Timestamp>>,
    /// Per NodePool: the last block announced, so each is said once.
    pub(super) announced: HashMap<String, String>,
    /// Per NodePool: its workload pods per template at each sweep.
    demand: HashMap<String, PoolHistory>,
    /// Per template: one of its pods, as the solver places it.
    templates: HashMap<u64, PendingPod>,
    /// Per NodePool: what its last evaluation that began nothing looked
    /// at, so the same question is not asked again every sweep.
    pub(super) asked: HashMap<String, u64>,
}

/// A question asked again is answered again at least this often (prices
/// and offerings change without the cluster changing).
const ASK_AGAIN_AFTER_SECONDS: i64 = 60;

/// The recent peak holds no more pods than this (it bounds the work).
const MOST_PEAK_PODS: usize = 500;

/// Updates each Node's settled time from its pods.
pub(super) fn remember_pods(memory: &mut Memory, snapshot: &Snapshot, now: Timestamp) {
    memory.settled = snapshot.pods_seen(&memory.settled, now);
}

/// Samples each consolidating pool's workload pods per template, and
/// forgets samples older than its `consolidateAfter`.
pub(super) fn remember_demand(memory: &mut Memory, snapshot: &Snapshot, now: Timestamp) {
    let mut windows = HashMap::new();
    for pool in &snapshot.nodepools {
        if let Some(after) = underutilized_after(pool) {
            windows.insert(pool.name_any(), after);
        }
    }
    let mut counts: HashMap<String, HashMap<u64, usize>> = HashMap::new();
    for claim in snapshot.claims.iter() {
        let pool = nodepool_of(claim);
        if !windows.contains_key(&pool) {
            continue;
        }
        let Some(node) = node_name(claim) else {
            continue;
        };
        let per_template = counts.entry(pool).or_default();
        for pod in snapshot
            .pods_on(node)
            .into_iter()
            .filter(|p| p.is_workload())
        {
            let template = template_key(pod);
            *per_template.entry(template).or_default() += 1;
            if let std::collections::hash_map::Entry::Vacant(slot) =
                memory.templates.entry(template)
            {
                if let Ok(pending) = pod.pending() {
                    slot.insert(pending);
                }
            }
        }
    }
    memory.demand.retain(|pool, _| windows.contains_key(pool));
    for (pool, window) in windows {
        let looks = counts.remove(&pool).unwrap_or_default();
        memory
            .demand
            .entry(pool)
            .or_default()
            .record(now, window, looks);
    }
    let live: HashSet<u64> = memory
        .demand
        .values()
        .flat_map(PoolHistory::templates)
        .collect();
    memory.templates.retain(|key, _| live.contains(key));
}

/// What the replicas of one template share, as a key.
fn template_key(pod: &CachedPod) -> u64 {
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    pod.shape.hash(&mut hasher);
    hasher.finish()
}

/// The pods `pool` held at its peak within its window and holds no longer.
pub(super) fn recent_peak(memory: &Memory, pool: &str) -> Vec<PendingPod> {
    let Some(history) = memory.demand.get(pool) else {
        return Vec::new();
    };
    let mut missing = Vec::new();
    for (template, gone) in history.missing() {
        let Some(sample) = memory.templates.get(&template) else {
            continue;
        };
        for i in 0..gone.min(MOST_PEAK_PODS) {
            let mut pod = sample.clone();
            pod.key = format!("{}/recent-peak-{template:x}-{i}", pod.namespace);
            missing.push(pod);
        }
    }
    missing.truncate(MOST_PEAK_PODS);
    missing
}
/// A fingerprint of what an evaluation of `question` reads: every node's
/// pods, the candidates, the recent peak, the rules, what holds it back
/// (budget, rate limit), and the minute.
pub(super) fn question_print(
    memory: &Memory,
    question: Pool,
    held_by: Option<&str>,
    now: Timestamp,
) -> u64 {
    let mut print = FNV_OFFSET;
    for (node, seen) in &memory.settled {
        print ^= fnv1a(node.as_bytes(), seen.fingerprint);
    }
    for candidate in question.candidates {
        print = fnv1a(candidate.claim.as_bytes(), print);
    }
    print = fnv1a(held_by.unwrap_or_default().as_bytes(), print);
    for pod in question.recent_peak {
        print = fnv1a(pod.key.as_bytes(), print);
    }
    let rules = question.rules;
    let minute = now.as_second().div_euclid(ASK_AGAIN_AFTER_SECONDS);
    for number in [
        rules.threshold.to_bits(),
        rules.min_types as u64,
        rules.budget as u64,
        minute as u64,
    ] {
        print = fnv1a(&number.to_le_bytes(), print);
    }
    print
}
