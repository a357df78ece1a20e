//! The extender's Prometheus metrics. The scheduler has no per-extender
//! latency metric, so the extender measures itself.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use prometheus::{
    HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGaugeVec, Opts, Registry,
};

use crate::answer::Steering;
use crate::filter::{self, Reason};
use crate::index::Sizes;

/// The two verbs, as the `verb` label spells them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verb {
    Filter,
    Prioritize,
}

impl Verb {
    pub fn as_label(self) -> &'static str {
        match self {
            Verb::Filter => "filter",
            Verb::Prioritize => "prioritize",
        }
    }
}

/// The `outcome` label of `spotwright_extender_requests_total`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Answered with 200.
    Ok,
    /// The body was refused (400, 413).
    BadRequest,
    /// The body could not be read (the connection failed mid-body).
    Error,
}

impl Outcome {
    pub fn as_label(self) -> &'static str {
        match self {
            Outcome::Ok => "ok",
            Outcome::BadRequest => "bad_request",
            Outcome::Error => "error",
        }
    }
}

#[derive(Clone)]
pub struct Metrics {
    pub requests: IntCounterVec,
    pub duration: HistogramVec,
    pub filtered: IntCounterVec,
    pub steering: IntCounterVec,
    pub cert_reloads: IntCounterVec,
    pub cache_objects: IntGaugeVec,
    pub slot_overfills: IntCounter,
    /// The index's overfill count last added to `slot_overfills`.
    overfills_recorded: Arc<AtomicU64>,
}

/// Histogram buckets, from 10 µs: a call over a few thousand nodes takes
/// hundreds of microseconds, and the scheduler gives up at its httpTimeout.
pub const DURATION_BUCKETS: [f64; 17] = [
    0.00001, 0.000025, 0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05,
    0.1, 0.25, 0.5, 1.0, 2.5,
];

impl Metrics {
    pub fn register(registry: &Registry) -> Result<Self, prometheus::Error> {
        let requests = IntCounterVec::new(
            Opts::new(
                "spotwright_extender_requests_total",
                "Scheduler extender calls answered, by verb and outcome.",
            ),
            &["verb", "outcome"],
        )?;
        let duration = HistogramVec::new(
            HistogramOpts::new(
                "spotwright_extender_request_duration_seconds",
                "Time to answer one extender call, body read included.",
            )
            .buckets(DURATION_BUCKETS.to_vec()),
            &["verb"],
        )?;
        let filtered = IntCounterVec::new(
            Opts::new(
                "spotwright_extender_filtered_nodes_total",
                "Nodes the filter rejected, by reason.",
            ),
            &["reason"],
        )?;
        let steering = IntCounterVec::new(
            Opts::new(
                "spotwright_extender_steering_total",
                "Prioritize calls by where the pod was steered: own_node, stand_in, own_node_taken, own_node_absent (nowhere, its node not a candidate), not_launched_for.",
            ),
            &["outcome"],
        )?;
        let cert_reloads = IntCounterVec::new(
            Opts::new(
                "spotwright_extender_cert_reloads_total",
                "Serving certificate reloads, by result (TLS only).",
            ),
            &["result"],
        )?;
        let cache_objects = IntGaugeVec::new(
            Opts::new(
                "spotwright_extender_cache_objects",
                "Objects in the watch-fed index, by kind.",
            ),
            &["kind"],
        )?;
        let slot_overfills = IntCounter::new(
            "spotwright_extender_slot_overfills_total",
            "Binds that put more pods of one controller on a new node than its NodeClaim was launched for: pods steered into a slot the extender did not yet know was taken.",
        )?;
        registry.register(Box::new(requests.clone()))?;
        registry.register(Box::new(slot_overfills.clone()))?;
        registry.register(Box::new(duration.clone()))?;
        registry.register(Box::new(filtered.clone()))?;
        registry.register(Box::new(steering.clone()))?;
        registry.register(Box::new(cert_reloads.clone()))?;
        registry.register(Box::new(cache_objects.clone()))?;
        // Every series exists from the start, so rates and alerts see zeros.
        for verb in [Verb::Filter, Verb::Prioritize] {
            duration.with_label_values(&[verb.as_label()]);
            for outcome in [Outcome::Ok, Outcome::BadRequest, Outcome::Error] {
                requests.with_label_values(&[verb.as_label(), outcome.as_label()]);
            }
        }
        for reason in Reason::ALL {
            filtered.with_label_values(&[reason.label()]);
        }
        for outcome in Steering::ALL {
            steering.with_label_values(&[outcome.as_label()]);
        }
        for result in ["success", "failure"] {
            cert_reloads.with_label_values(&[result]);
        }
        let metrics = Metrics {
            requests,
            duration,
            filtered,
            steering,
            cert_reloads,
            cache_objects,
            slot_overfills,
            overfills_recorded: Arc::default(),
        };
        metrics.record_sizes(Sizes::default());
        Ok(metrics)
    }

    pub fn record(&self, verb: Verb, outcome: Outcome, seconds: f64) {
        self.requests
            .with_label_values(&[verb.as_label(), outcome.as_label()])
            .inc();
        self.duration
            .with_label_values(&[verb.as_label()])
            .observe(seconds);
    }

    pub fn record_steering(&self, steering: Steering) {
        self.steering
            .with_label_values(&[steering.as_label()])
            .inc();
    }

    pub fn record_rejections(&self, counts: &[u64; filter::REASONS]) {
        for reason in Reason::ALL {
            let count = counts[reason.index()];
            if count > 0 {
                self.filtered
                    .with_label_values(&[reason.label()])
                    .inc_by(count);
            }
        }
    }

    pub fn record_sizes(&self, sizes: Sizes) {
        for (kind, n) in [
            ("nodes", sizes.nodes),
            ("pods", sizes.pods),
            ("nodeclaims", sizes.nodeclaims),
            ("interruptions", sizes.interruptions),
        ] {
            self.cache_objects
                .with_label_values(&[kind])
                .set(i64::try_from(n).unwrap_or(i64::MAX));
        }
        // Watchers report concurrently: each adds only what is new.
        let before = self
            .overfills_recorded
            .fetch_max(sizes.overfills, Ordering::Relaxed);
        if sizes.overfills > before {
            self.slot_overfills.inc_by(sizes.overfills - before);
        }
    }

    /// Calls answered for `verb` with `outcome`.
    pub fn count(&self, verb: Verb, outcome: Outcome) -> u64 {
        self.requests
            .with_label_values(&[verb.as_label(), outcome.as_label()])
            .get()
    }
}
