//! Leader election over a `coordination.k8s.io/v1` Lease: only one replica
//! of the provisioner runs its controllers at a time.
//!
//! A candidate takes the Lease when nobody holds it, when the holder let it
//! expire (`renewTime + leaseDurationSeconds` passed), or when it already
//! holds it. Every write carries the resourceVersion it was computed from,
//! so two candidates racing for an expired Lease cannot both win.
//!
//! [`run_as_leader`] returns when the work ends or leadership is lost. On
//! loss the work future is dropped; tasks it spawned are not, so the caller
//! must exit the process then.

use std::future::Future;
use std::hash::{BuildHasher, Hasher};
use std::time::Duration;

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use k8s_openapi::jiff::Timestamp;
use kube::api::PostParams;
use kube::{Api, Client, ResourceExt};

use crate::model::claim::elapsed;

/// The Lease's name.
pub const LEASE_NAME: &str = "spotwright-provisioner";

/// How leader election behaves.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LeaderSettings {
    /// Namespace of the Lease: the controller's own.
    pub namespace: String,
    pub lease_name: String,
    /// Who this replica is: unique per process.
    pub identity: String,
    /// How long a Lease stays valid without renewal.
    pub lease_duration: Duration,
    /// How often the leader renews.
    pub renew_interval: Duration,
    /// How often a follower tries to take the Lease.
    pub retry_interval: Duration,
}

impl LeaderSettings {
    /// The defaults: a 15 s Lease renewed every 3 s, named
    /// `spotwright-provisioner`, held under [`default_identity`].
    pub fn new(namespace: impl Into<String>) -> Self {
        LeaderSettings {
            namespace: namespace.into(),
            lease_name: LEASE_NAME.to_owned(),
            identity: default_identity(),
            lease_duration: Duration::from_secs(15),
            renew_interval: Duration::from_secs(3),
            retry_interval: Duration::from_secs(2),
        }
    }

    /// The leader gives up if it could not renew for this long: before the
    /// Lease expires and another replica may take it.
    pub fn renew_deadline(&self) -> Duration {
        self.lease_duration
            .saturating_sub(self.renew_interval)
            .max(self.renew_interval)
    }
}

/// The pod's name (`POD_NAME`, else `HOSTNAME`, else `spotwright-provisioner`)
/// with a random suffix, so a restarted process never mistakes the old
/// process's Lease for its own.
pub fn default_identity() -> String {
    let base = std::env::var("POD_NAME")
        .or_else(|_| std::env::var("HOSTNAME"))
        .ok()
        .filter(|n| !n.is_empty())
        .unwrap_or_else(|| LEASE_NAME.to_owned());
    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
    hasher.write_u128(Timestamp::now().as_nanosecond().unsigned_abs());
    hasher.write_u32(std::process::id());
    format!("{base}-{:08x}", hasher.finish() & 0xffff_ffff)
}

/// Whether a candidate may take the Lease.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LeaseDecision {
    /// The candidate holds it: renew.
    Renew,
    /// Free or expired: take it.
    Take,
    /// Someone else holds it for `remaining` more.
    Wait { holder: String, remaining: Duration },
}

/// Decides from the Lease's spec (none when the Lease does not exist).
pub fn decide(spec: Option<&LeaseSpec>, identity: &str, now: Timestamp) -> LeaseDecision {
    let holder = spec
        .and_then(|s| s.holder_identity.as_deref())
        .filter(|h| !h.is_empty());
    let Some((spec, holder)) = spec.zip(holder) else {
        return LeaseDecision::Take;
    };
    if holder == identity {
        return LeaseDecision::Renew;
    }
    let duration = spec
        .lease_duration_seconds
        .and_then(|s| u64::try_from(s).ok())
        .map(Duration::from_secs);
    let held_for = spec.renew_time.as_ref().map(|t| elapsed(t.0, now));
    match (duration, held_for) {
        (Some(duration), Some(held_for)) if held_for < duration => LeaseDecision::Wait {
            holder: holder.to_owned(),
            remaining: duration - held_for,
        },
        _ => LeaseDecision::Take,
    }
}

/// The Lease spec after `identity` took or renewed it.
pub fn claimed(
    previous: Option<&LeaseSpec>,
    settings: &LeaderSettings,
    decision: &LeaseDecision,
    now: Timestamp,
) -> LeaseSpec {
    let previous = previous.cloned().unwrap_or_default();
    let transitions = previous.lease_transitions.unwrap_or(0);
    let duration = i32::try_from(settings.lease_duration.as_secs()).unwrap_or(i32::MAX);
    let (acquire_time, lease_transitions) = match decision {
        LeaseDecision::Renew => (previous.acquire_time.clone(), transitions),
        _ => (Some(MicroTime(now)), transitions.saturating_add(1)),
    };
    LeaseSpec {
        holder_identity: Some(settings.identity.clone()),
        lease_duration_seconds: Some(duration),
        renew_time: Some(MicroTime(now)),
        acquire_time,
        lease_transitions: Some(lease_transitions),
        ..previous
    }
}

/// Why leadership ended.
#[derive(Debug, thiserror::Error)]
pub enum LeaderError {
    #[error("lost the lease {namespace}/{lease} to {holder}")]
    Lost {
        namespace: String,
        lease: String,
        holder: String,
    },
    #[error("could not renew the lease {namespace}/{lease} for {waited:?}: {last_error}")]
    RenewTimedOut {
        namespace: String,
        lease: String,
        waited: Duration,
        last_error: String,
    },
}

/// One attempt's outcome.
#[derive(Debug)]
enum Attempt {
    Held,
    HeldBy(String),
    /// A concurrent write won the race; look again.
    Conflict,
}

async fn attempt(api: &Api<Lease>, settings: &LeaderSettings) -> Result<Attempt, kube::Error> {
    let now = Timestamp::now();
    let current = api.get_opt(&settings.lease_name).await?;
    let spec = current.as_ref().and_then(|l| l.spec.as_ref());
    let decision = decide(spec, &settings.identity, now);
    if let LeaseDecision::Wait { holder, .. } = decision {
        return Ok(Attempt::HeldBy(holder));
    }
    let new_spec = claimed(spec, settings, &decision, now);
    let result = match current {
        Some(mut lease) => {
            // The resourceVersion read above travels with the replace.
            lease.spec = Some(new_spec);
            api.replace(&settings.lease_name, &PostParams::default(), &lease)
                .await
        }
        None => {
            let lease = Lease {
                metadata: ObjectMeta {
                    name: Some(settings.lease_name.clone()),
                    namespace: Some(settings.namespace.clone()),
                    ..ObjectMeta::default()
                },
                spec: Some(new_spec),
            };
            api.create(&PostParams::default(), &lease).await
        }
    };
    match result {
        Ok(_) => Ok(Attempt::Held),
        Err(kube::Error::Api(status)) if status.code == 409 => Ok(Attempt::Conflict),
        Err(err) => Err(err),
    }
}

/// Waits until this replica holds the Lease.
async fn acquire(api: &Api<Lease>, settings: &LeaderSettings) {
    let mut announced = None;
    loop {
        match attempt(api, settings).await {
            Ok(Attempt::Held) => {
                tracing::info!(identity = %settings.identity, lease = %settings.lease_name, "became the leader");
                return;
            }
            Ok(Attempt::HeldBy(holder)) => {
                if announced.as_ref() != Some(&holder) {
                    tracing::info!(leader = %holder, "another replica leads; waiting");
                    announced = Some(holder);
                }
            }
            Ok(Attempt::Conflict) => continue,
            Err(err) => tracing::warn!(error = %err, "leader election: lease unreadable; retrying"),
        }
        tokio::time::sleep(settings.retry_interval).await;
    }
}

/// Renews until leadership is lost; returns why.
async fn keep_renewing(api: &Api<Lease>, settings: &LeaderSettings) -> LeaderError {
    let mut last_renewed = tokio::time::Instant::now();
    loop {
        tokio::time::sleep(settings.renew_interval).await;
        let last_error = match attempt(api, settings).await {
            Ok(Attempt::Held) => {
                last_renewed = tokio::time::Instant::now();
                continue;
            }
            Ok(Attempt::HeldBy(holder)) => {
                return LeaderError::Lost {
                    namespace: settings.namespace.clone(),
                    lease: settings.lease_name.clone(),
                    holder,
                }
            }
            Ok(Attempt::Conflict) => "write conflict".to_owned(),
            Err(err) => err.to_string(),
        };
        let waited = last_renewed.elapsed();
        if waited >= settings.renew_deadline() {
            return LeaderError::RenewTimedOut {
                namespace: settings.namespace.clone(),
                lease: settings.lease_name.clone(),
                waited,
                last_error,
            };
        }
        tracing::warn!(error = %last_error, "leader election: renewal failed; retrying");
    }
}

/// Lets the Lease go, so a successor need not wait for it to expire.
async fn release(api: &Api<Lease>, settings: &LeaderSettings) {
    let Ok(Some(mut lease)) = api.get_opt(&settings.lease_name).await else {
        return;
    };
    let Some(spec) = lease.spec.as_mut() else {
        return;
    };
    if spec.holder_identity.as_deref() != Some(settings.identity.as_str()) {
        return;
    }
    spec.holder_identity = None;
    let name = lease.name_any();
    if let Err(err) = api.replace(&name, &PostParams::default(), &lease).await {
        tracing::debug!(error = %err, "could not release the lease; it will expire");
    }
}

/// Waits for leadership, then runs `work` while renewing the Lease. Returns
/// the work's output when it ends (the Lease is then released), or an error
/// as soon as leadership is lost (the work is dropped: exit the process).
pub async fn run_as_leader<F: Future>(
    client: Client,
    settings: LeaderSettings,
    work: F,
) -> Result<F::Output, LeaderError> {
    let api: Api<Lease> = Api::namespaced(client, &settings.namespace);
    acquire(&api, &settings).await;
    let outcome = tokio::select! {
        output = work => Ok(output),
        lost = keep_renewing(&api, &settings) => Err(lost),
    };
    match &outcome {
        Ok(_) => release(&api, &settings).await,
        Err(err) => tracing::error!(error = %err, "leadership lost; stopping"),
    }
    outcome
}
