//! The provisioner's Prometheus metrics.

use prometheus::{
    Gauge, Histogram, HistogramOpts, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts,
    Registry,
};

#[derive(Clone)]
pub struct Metrics {
    pub pending_pods: IntGauge,
    pub batch_duration: Histogram,
    pub solve_duration: Histogram,
    pub nodeclaims_created: IntCounterVec,
    pub launch_failures: IntCounterVec,
    pub nodes_terminated: IntCounterVec,
    pub unschedulable_pods: IntCounterVec,
    pub nomination_mismatches: IntCounterVec,
    pub events_sampled_out: IntCounterVec,
    pub fleet_cost: Gauge,
    pub nodeclaims: IntGaugeVec,
    pub interruption_messages: IntCounterVec,
    pub drifted_nodeclaims: IntGaugeVec,
    pub disruption_decisions: IntCounterVec,
    pub evictions_blocked: IntCounter,
    pub pods_deleted_at_grace: IntCounter,
    pub drift_replacement: Histogram,
    pub consolidation_actions: IntCounterVec,
    pub consolidation_savings: Gauge,
    pub consolidation_evaluation: Histogram,
    pub kube_requests: IntCounterVec,
    pub snapshot_builds: IntCounter,
}

const SOLVE_BUCKETS: [f64; 14] = [
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
];
const REPLACEMENT_BUCKETS: [f64; 10] = [
    10.0, 20.0, 30.0, 45.0, 60.0, 90.0, 120.0, 300.0, 600.0, 1800.0,
];
const BATCH_BUCKETS: [f64; 10] = [0.1, 0.25, 0.5, 1.0, 1.5, 2.0, 3.0, 5.0, 7.5, 10.0];

/// The internal `reason`s of `launch_failures_total` (an EC2 error code is
/// the reason otherwise, and has its series from its first failure).
pub const LAUNCH_FAILURE_REASONS: [&str; 2] = ["no_capacity", "nodeclass_not_ready"];
/// The `capacity_type`s of `nodeclaims`.
pub const NODECLAIM_CAPACITY_TYPES: [&str; 3] = ["spot", "on-demand", "launching"];
/// The `reason`s of `nodes_terminated_total`.
pub const TERMINATION_REASONS: [&str; 2] = ["nodeclaim_deleted", "orphan"];
/// The `reason`s of `disruption_decisions_total`: every disruption
/// `Cause` (a test in controllers::disruption::decide keeps them equal).
pub const DISRUPTION_CAUSES: [&str; 4] = ["Expired", "Rebalance", "Drifted", "Underutilized"];
/// The `result`s of `disruption_decisions_total`, for every cause.
pub const DISRUPTION_RESULTS: [&str; 6] = [
    "replacing",
    "drained",
    "budget",
    "do_not_disrupt",
    "unschedulable",
    "rolled_back",
];
/// The `action`s and `result`s of `consolidation_actions_total`.
pub const CONSOLIDATION_ACTIONS: [&str; 2] = ["delete", "replace"];
pub const CONSOLIDATION_RESULTS: [&str; 5] =
    ["started", "completed", "rolled_back", "held", "blocked"];
/// The `(kind, outcome)` of `interruption_messages_total` that act on a
/// claim: the notices that delete one, and the rebalance that marks one.
pub const INTERRUPTION_ACTIONS: [(&str, &str); 4] = [
    ("spot_interruption", "deleted"),
    ("scheduled_change", "deleted"),
    ("state_change", "deleted"),
    ("rebalance", "marked"),
];

impl Metrics {
    pub fn register(registry: &Registry) -> prometheus::Result<Self> {
        let metrics = Metrics {
            kube_requests: IntCounterVec::new(
                Opts::new(
                    "spotwright_provisioner_kube_requests_total",
                    "Requests to the Kubernetes API server, by verb (WATCH, LIST, GET, CREATE, PATCH, ...) and resource.",
                ),
                &["verb", "resource"],
            )?,
            snapshot_builds: IntCounter::with_opts(Opts::new(
                "spotwright_provisioner_state_snapshot_builds_total",
                "Snapshots of the cluster state built (once per change that a controller read).",
            ))?,
            pending_pods: IntGauge::with_opts(Opts::new(
                "spotwright_provisioner_pending_pods",
                "Pending pods that are Spotwright's to place (marked unschedulable, or not yet tried by its scheduler), at the last look.",
            ))?,
            batch_duration: Histogram::with_opts(
                HistogramOpts::new(
                    "spotwright_provisioner_batch_duration_seconds",
                    "From the first pending pod of a batch to its close.",
                )
                .buckets(BATCH_BUCKETS.to_vec()),
            )?,
            solve_duration: Histogram::with_opts(
                HistogramOpts::new(
                    "spotwright_provisioner_solve_duration_seconds",
                    "Time of one scheduling simulation (the solver alone).",
                )
                .buckets(SOLVE_BUCKETS.to_vec()),
            )?,
            nodeclaims_created: IntCounterVec::new(
                Opts::new(
                    "spotwright_provisioner_nodeclaims_created_total",
                    "NodeClaims launched, by NodePool, capacity type and instance type.",
                ),
                &["nodepool", "capacity_type", "instance_type"],
            )?,
            launch_failures: IntCounterVec::new(
                Opts::new(
                    "spotwright_provisioner_launch_failures_total",
                    "Failed launch attempts, by reason (EC2 error code or internal cause).",
                ),
                &["reason"],
            )?,
            nodes_terminated: IntCounterVec::new(
                Opts::new(
                    "spotwright_provisioner_nodes_terminated_total",
                    "Instances terminated, by reason: `nodeclaim_deleted` (drained after its NodeClaim was deleted: empty, registration timeout, user) or `orphan` (no NodeClaim).",
                ),
                &["reason"],
            )?,
            unschedulable_pods: IntCounterVec::new(
                Opts::new(
                    "spotwright_provisioner_unschedulable_pods_total",
                    "Pods a solve could give no node, by NodePool-independent reason class.",
                ),
                &["reason"],
            )?,
            nomination_mismatches: IntCounterVec::new(
                Opts::new(
                    "spotwright_provisioner_nomination_mismatches_total",
                    "Pods the scheduler did not place on the node launched for them, by the scheduler's reason (or bound_elsewhere).",
                ),
                &["reason"],
            )?,
            events_sampled_out: IntCounterVec::new(
                Opts::new(
                    "spotwright_provisioner_events_sampled_out_total",
                    "Events not published because their kind is sampled under a burst, by reason (Nominated).",
                ),
                &["reason"],
            )?,
            fleet_cost: Gauge::with_opts(Opts::new(
                "spotwright_provisioner_fleet_cost_dollars_per_hour",
                "Estimated $/h of the instances behind Spotwright's NodeClaims (Spot prices where known).",
            ))?,
            nodeclaims: IntGaugeVec::new(
                Opts::new(
                    "spotwright_provisioner_nodeclaims",
                    "Spotwright's NodeClaims at the last provisioning pass, by capacity type (spot, on-demand; launching until the launch records one).",
                ),
                &["capacity_type"],
            )?,
            interruption_messages: IntCounterVec::new(
                Opts::new(
                    "spotwright_provisioner_interruption_messages_total",
                    "Interruption-queue messages handled (each deleted from the queue), by kind and outcome.",
                ),
                &["kind", "outcome"],
            )?,
            drifted_nodeclaims: IntGaugeVec::new(
                Opts::new(
                    "spotwright_provisioner_drifted_nodeclaims",
                    "NodeClaims whose Drifted condition is True, by drift reason, at the last drift check.",
                ),
                &["reason"],
            )?,
            disruption_decisions: IntCounterVec::new(
                Opts::new(
                    "spotwright_provisioner_disruption_decisions_total",
                    "Voluntary disruption decisions, by reason (Drifted, Expired, Rebalance) and result (replacing, drained, budget, do_not_disrupt, unschedulable, rolled_back).",
                ),
                &["reason", "result"],
            )?,
            evictions_blocked: IntCounter::with_opts(Opts::new(
                "spotwright_provisioner_evictions_blocked_total",
                "Evictions a PodDisruptionBudget refused (429) while draining; each is retried with backoff.",
            ))?,
            pods_deleted_at_grace: IntCounter::with_opts(Opts::new(
                "spotwright_provisioner_pods_deleted_after_grace_period_total",
                "Pods deleted, PodDisruptionBudgets notwithstanding, because their node's drain outlasted its terminationGracePeriod.",
            ))?,
            drift_replacement: Histogram::with_opts(
                HistogramOpts::new(
                    "spotwright_provisioner_drift_replacement_seconds",
                    "From a NodeClaim's drift being detected to its replacements being initialized (the drain starts then).",
                )
                .buckets(REPLACEMENT_BUCKETS.to_vec()),
            )?,
            consolidation_actions: IntCounterVec::new(
                Opts::new(
                    "spotwright_provisioner_consolidation_actions_total",
                    "Underutilized consolidation actions, by action (delete, replace) and result (started, completed, rolled_back, held by budget or rate limit, blocked).",
                ),
                &["action", "result"],
            )?,
            consolidation_savings: Gauge::with_opts(Opts::new(
                "spotwright_provisioner_consolidation_savings_dollars_per_hour",
                "$/h saved by completed consolidation actions since start, counted at the dearest type each replacement could land on.",
            ))?,
            consolidation_evaluation: Histogram::with_opts(
                HistogramOpts::new(
                    "spotwright_provisioner_consolidation_evaluation_seconds",
                    "Time to evaluate one NodePool's consolidation candidates (every simulation included).",
                )
                .buckets(SOLVE_BUCKETS.to_vec()),
            )?,
        };
        registry.register(Box::new(metrics.pending_pods.clone()))?;
        registry.register(Box::new(metrics.batch_duration.clone()))?;
        registry.register(Box::new(metrics.solve_duration.clone()))?;
        registry.register(Box::new(metrics.nodeclaims_created.clone()))?;
        registry.register(Box::new(metrics.launch_failures.clone()))?;
        registry.register(Box::new(metrics.nodes_terminated.clone()))?;
        registry.register(Box::new(metrics.unschedulable_pods.clone()))?;
        registry.register(Box::new(metrics.nomination_mismatches.clone()))?;
        registry.register(Box::new(metrics.events_sampled_out.clone()))?;
        registry.register(Box::new(metrics.fleet_cost.clone()))?;
        registry.register(Box::new(metrics.nodeclaims.clone()))?;
        registry.register(Box::new(metrics.interruption_messages.clone()))?;
        registry.register(Box::new(metrics.drifted_nodeclaims.clone()))?;
        registry.register(Box::new(metrics.disruption_decisions.clone()))?;
        registry.register(Box::new(metrics.evictions_blocked.clone()))?;
        registry.register(Box::new(metrics.pods_deleted_at_grace.clone()))?;
        registry.register(Box::new(metrics.drift_replacement.clone()))?;
        registry.register(Box::new(metrics.consolidation_actions.clone()))?;
        registry.register(Box::new(metrics.consolidation_savings.clone()))?;
        registry.register(Box::new(metrics.consolidation_evaluation.clone()))?;
        registry.register(Box::new(metrics.kube_requests.clone()))?;
        registry.register(Box::new(metrics.snapshot_builds.clone()))?;
        metrics.zero_known_series();
        Ok(metrics)
    }

    /// Every series of a fixed, known label set exists from the start at
    /// 0, so rates, dashboards and alerts see zeros rather than nothing.
    /// Labels from open sets (EC2 error codes, NodePools, instance types)
    /// appear with their first event.
    fn zero_known_series(&self) {
        for reason in LAUNCH_FAILURE_REASONS {
            self.launch_failures.with_label_values(&[reason]);
        }
        for reason in TERMINATION_REASONS {
            self.nodes_terminated.with_label_values(&[reason]);
        }
        for cause in DISRUPTION_CAUSES {
            for result in DISRUPTION_RESULTS {
                self.disruption_decisions
                    .with_label_values(&[cause, result]);
            }
        }
        for action in CONSOLIDATION_ACTIONS {
            for result in CONSOLIDATION_RESULTS {
                self.consolidation_actions
                    .with_label_values(&[action, result]);
            }
        }
        for (kind, outcome) in INTERRUPTION_ACTIONS {
            self.interruption_messages
                .with_label_values(&[kind, outcome]);
        }
        self.events_sampled_out.with_label_values(&["Nominated"]);
        for capacity in NODECLAIM_CAPACITY_TYPES {
            self.nodeclaims.with_label_values(&[capacity]);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_label_sets_are_exported_at_zero_from_the_start() {
        let registry = Registry::new();
        Metrics::register(&registry).expect("registers");
        let text = prometheus::TextEncoder::new()
            .encode_to_string(&registry.gather())
            .expect("encodes");
        for series in [
            "spotwright_provisioner_launch_failures_total{reason=\"no_capacity\"} 0",
            "spotwright_provisioner_nodes_terminated_total{reason=\"orphan\"} 0",
            "spotwright_provisioner_disruption_decisions_total{reason=\"Drifted\",result=\"drained\"} 0",
            "spotwright_provisioner_consolidation_actions_total{action=\"replace\",result=\"completed\"} 0",
            "spotwright_provisioner_interruption_messages_total{kind=\"spot_interruption\",outcome=\"deleted\"} 0",
        ] {
            assert!(text.contains(series), "{series} missing from:\n{text}");
        }
    }
}
