//! The thin Kubernetes adapter of `ensure`: read the three objects
//! ([`observe`]), let [`crate::plan::plan`] decide, write ([`apply`]), and
//! repeat on conflicts ([`reconcile`]). [`run`] loops it.
//!
//! Concurrency: two replicas may run at once. Every write is conditional on
//! what was read (create fails with AlreadyExists; replace and patch carry
//! the read `resourceVersion` and fail with 409 Conflict), and on such a
//! failure the pass reads again and plans again, at most [`MAX_ATTEMPTS`] times.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use futures::{stream, Stream, StreamExt};
use k8s_openapi::api::admissionregistration::v1::MutatingWebhookConfiguration;
use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use k8s_openapi::ByteString;
use kube::api::{Api, Patch, PatchParams, PostParams};
use kube::runtime::{watcher, WatchStreamExt};
use kube::Client;
use serde::de::DeserializeOwned;
use time::OffsetDateTime;
use tokio::sync::Notify;
use tracing::{debug, info, warn};

use crate::plan::{
    materialize, plan, Action, CaSecretData, ObservedState, ServingSecretData, Settings, Warning,
    WebhookEntry, Write, CA_BUNDLE, CA_CRT, CA_KEY, TLS_CRT, TLS_KEY,
};

/// Field manager of every write.
pub const FIELD_MANAGER: &str = "spotwright-certs";
/// Attempts of one pass when writes conflict with another writer.
pub const MAX_ATTEMPTS: u32 = 5;
/// Type of the serving Secret.
pub const TLS_SECRET_TYPE: &str = "kubernetes.io/tls";
/// Type of the CA Secret.
pub const OPAQUE_SECRET_TYPE: &str = "Opaque";
/// Label on Secrets this program creates.
pub const MANAGED_BY: (&str, &str) = ("app.kubernetes.io/managed-by", "spotwright-certs");

/// The objects `ensure` keeps.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Target {
    pub namespace: String,
    /// The serving Secret (`kubernetes.io/tls`: `tls.crt`, `tls.key`, `ca.crt`).
    pub secret: String,
    /// The CA Secret (Opaque: `ca.crt`, `ca.key`, `ca-bundle.crt`).
    pub ca_secret: String,
    /// The MutatingWebhookConfiguration whose entries get `caBundle`.
    pub webhook_config: String,
}

/// What one read returned: the pure state plus what writes need (the objects
/// as read, for their `resourceVersion` and the fields we do not own).
#[derive(Clone, Debug, Default)]
pub struct Snapshot {
    pub state: ObservedState,
    pub ca_secret: Option<Secret>,
    pub serving_secret: Option<Secret>,
    pub webhook: Option<MutatingWebhookConfiguration>,
}

/// How a pass failed.
#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
    /// Another writer got there first; read again and plan again.
    #[error("conflict: {0}")]
    Conflict(String),
    #[error("{what}: {source}")]
    Kube {
        what: String,
        #[source]
        source: kube::Error,
    },
    #[error(transparent)]
    Certs(#[from] crate::Error),
    #[error("gave up after {0} attempts that conflicted with another writer")]
    TooManyConflicts(u32),
}

/// What a successful pass did.
#[derive(Clone, Debug, Default)]
pub struct PassOutcome {
    /// The actions of the plan that was applied (empty: nothing to do).
    pub actions: Vec<Action>,
    /// The serving Secret's data after the pass.
    pub serving: Option<ServingSecretData>,
    /// How many read-plan-write attempts it took.
    pub attempts: u32,
}

/// Reads the CA Secret, the serving Secret and the webhook configuration.
pub async fn observe(client: &Client, target: &Target) -> Result<Snapshot, ClusterError> {
    let secrets: Api<Secret> = Api::namespaced(client.clone(), &target.namespace);
    let webhooks: Api<MutatingWebhookConfiguration> = Api::all(client.clone());
    let ca_secret = get_opt(&secrets, &target.ca_secret, "Secret", &target.namespace).await?;
    let serving_secret = get_opt(&secrets, &target.secret, "Secret", &target.namespace).await?;
    let webhook = get_opt(
        &webhooks,
        &target.webhook_config,
        "MutatingWebhookConfiguration",
        "",
    )
    .await?;
    Ok(Snapshot {
        state: ObservedState {
            ca_secret: ca_secret.as_ref().map(|s| CaSecretData {
                ca_crt: secret_value(s, CA_CRT),
                ca_key: secret_value(s, CA_KEY),
                bundle: secret_value(s, CA_BUNDLE),
            }),
            serving_secret: serving_secret.as_ref().map(|s| ServingSecretData {
                tls_crt: secret_value(s, TLS_CRT),
                tls_key: secret_value(s, TLS_KEY),
                ca_crt: secret_value(s, CA_CRT),
            }),
            webhook: webhook.as_ref().map(webhook_entries),
        },
        ca_secret,
        serving_secret,
        webhook,
    })
}

/// Applies `writes` in order; stops at the first failure.
pub async fn apply(
    client: &Client,
    target: &Target,
    snapshot: &Snapshot,
    writes: &[Write],
) -> Result<(), ClusterError> {
    let secrets: Api<Secret> = Api::namespaced(client.clone(), &target.namespace);
    let webhooks: Api<MutatingWebhookConfiguration> = Api::all(client.clone());
    let pp = PostParams {
        field_manager: Some(FIELD_MANAGER.to_string()),
        ..PostParams::default()
    };
    for write in writes {
        match write {
            Write::CaSecret(data) => {
                let secret = secret_for_write(
                    snapshot.ca_secret.as_ref(),
                    &target.namespace,
                    &target.ca_secret,
                    OPAQUE_SECRET_TYPE,
                    &[
                        (CA_CRT, data.ca_crt.as_deref()),
                        (CA_KEY, data.ca_key.as_deref()),
                        (CA_BUNDLE, data.bundle.as_deref()),
                    ],
                );
                put_secret(&secrets, &pp, secret, snapshot.ca_secret.is_some()).await?;
                info!(secret = %target.ca_secret, namespace = %target.namespace, "wrote CA Secret");
            }
            Write::WebhookCaBundle { entries, bundle } => {
                let resource_version = snapshot
                    .webhook
                    .as_ref()
                    .and_then(|w| w.metadata.resource_version.clone());
                let body = webhook_patch(resource_version.as_deref(), entries, bundle);
                let params = PatchParams {
                    field_manager: Some(FIELD_MANAGER.to_string()),
                    ..PatchParams::default()
                };
                match webhooks
                    .patch(&target.webhook_config, &params, &Patch::Strategic(&body))
                    .await
                {
                    Ok(_) => {
                        info!(config = %target.webhook_config, ?entries, "set caBundle");
                    }
                    Err(e) if is_conflict(&e) || is_not_found(&e) => {
                        return Err(ClusterError::Conflict(format!(
                            "MutatingWebhookConfiguration {} changed: {e}",
                            target.webhook_config
                        )));
                    }
                    Err(source) => {
                        return Err(ClusterError::Kube {
                            what: format!(
                                "patch MutatingWebhookConfiguration {}",
                                target.webhook_config
                            ),
                            source,
                        });
                    }
                }
            }
            Write::ServingSecret(data) => {
                let secret = secret_for_write(
                    snapshot.serving_secret.as_ref(),
                    &target.namespace,
                    &target.secret,
                    TLS_SECRET_TYPE,
                    &[
                        (TLS_CRT, data.tls_crt.as_deref()),
                        (TLS_KEY, data.tls_key.as_deref()),
                        (CA_CRT, data.ca_crt.as_deref()),
                    ],
                );
                put_secret(&secrets, &pp, secret, snapshot.serving_secret.is_some()).await?;
                info!(secret = %target.secret, namespace = %target.namespace, "wrote serving Secret");
            }
        }
    }
    Ok(())
}

/// One pass: read, plan, write; on a conflict read again, at most [`MAX_ATTEMPTS`] times.
pub async fn reconcile(
    client: &Client,
    target: &Target,
    settings: &Settings,
    clock: impl Fn() -> OffsetDateTime,
) -> Result<PassOutcome, ClusterError> {
    for attempt in 1..=MAX_ATTEMPTS {
        let snapshot = observe(client, target).await?;
        let now = clock();
        let plan = plan(&snapshot.state, settings, now);
        for warning in &plan.warnings {
            match warning {
                Warning::WebhookConfigMissing => warn!(
                    config = %target.webhook_config,
                    "MutatingWebhookConfiguration not found; caBundle will be set on a later pass"
                ),
            }
        }
        if plan.is_empty() {
            debug!(attempt, "nothing to do");
            return Ok(PassOutcome {
                actions: Vec::new(),
                serving: snapshot.state.serving_secret,
                attempts: attempt,
            });
        }
        for action in &plan.actions {
            info!(attempt, "planned: {action}");
        }
        let writes = materialize(&plan, &snapshot.state, settings, now)?;
        match apply(client, target, &snapshot, &writes).await {
            Ok(()) => {
                let mut after = snapshot.state.clone();
                for write in &writes {
                    after.apply(write);
                }
                return Ok(PassOutcome {
                    actions: plan.actions,
                    serving: after.serving_secret,
                    attempts: attempt,
                });
            }
            Err(ClusterError::Conflict(why)) => {
                info!(attempt, "{why}; reading again");
                tokio::time::sleep(conflict_backoff(attempt)).await;
            }
            Err(e) => return Err(e),
        }
    }
    Err(ClusterError::TooManyConflicts(MAX_ATTEMPTS))
}

/// How the loop runs.
#[derive(Clone, Debug)]
pub struct LoopOptions {
    /// Period between passes.
    pub interval: Duration,
    /// Where to copy the serving pair after each pass.
    pub write_dir: Option<std::path::PathBuf>,
}

/// Loop mode: a pass every `interval`, and soon after any of the three
/// objects changes; failed passes are retried with backoff. Returns on SIGTERM / Ctrl-C.
pub async fn run(
    client: Client,
    watch_client: Client,
    target: Target,
    settings: Settings,
    options: LoopOptions,
) -> anyhow::Result<()> {
    let changed = Arc::new(Notify::new());
    let watcher_task = tokio::spawn(watch_changes(watch_client, target.clone(), changed.clone()));
    let mut failures: u32 = 0;
    let shutdown = shutdown_signal();
    tokio::pin!(shutdown);
    loop {
        let wait = match reconcile(&client, &target, &settings, OffsetDateTime::now_utc).await {
            Ok(outcome) => {
                failures = 0;
                sync_write_dir(&options, &outcome);
                options.interval
            }
            Err(e) => {
                failures = failures.saturating_add(1);
                let wait = error_backoff(failures).min(options.interval);
                warn!(
                    error = %one_line(&e),
                    retry_in_secs = wait.as_secs(),
                    "pass failed"
                );
                wait
            }
        };
        tokio::select! {
            _ = &mut shutdown => {
                info!("shutting down");
                watcher_task.abort();
                return Ok(());
            }
            _ = tokio::time::sleep(wait) => {}
            _ = changed.notified(), if failures == 0 => {
                // Let a burst of changes (ours included) settle into one pass.
                tokio::time::sleep(Duration::from_secs(2)).await;
            }
        }
    }
}

/// `--once`: one pass, then the files.
pub async fn run_once(
    client: Client,
    target: Target,
    settings: Settings,
    options: LoopOptions,
) -> anyhow::Result<()> {
    let outcome = reconcile(&client, &target, &settings, OffsetDateTime::now_utc).await?;
    if let (Some(dir), Some(serving)) = (&options.write_dir, &outcome.serving) {
        crate::files::sync_dir(dir, serving)?;
    }
    info!(
        writes = outcome.actions.len(),
        attempts = outcome.attempts,
        "pass done"
    );
    Ok(())
}

fn sync_write_dir(options: &LoopOptions, outcome: &PassOutcome) {
    if let (Some(dir), Some(serving)) = (&options.write_dir, &outcome.serving) {
        match crate::files::sync_dir(dir, serving) {
            Ok(changed) if !changed.is_empty() => {
                info!(dir = %dir.display(), files = ?changed, "updated files");
            }
            Ok(_) => {}
            Err(e) => warn!(error = %e, "cannot update files"),
        }
    }
}

/// Notifies `changed` whenever one of the three objects is created, changed or deleted.
/// Watch errors (e.g. no `watch` permission) are logged; the interval still applies.
async fn watch_changes(client: Client, target: Target, changed: Arc<Notify>) {
    let by_name = |name: &str| watcher::Config::default().fields(&format!("metadata.name={name}"));
    let secrets: Api<Secret> = Api::namespaced(client.clone(), &target.namespace);
    let webhooks: Api<MutatingWebhookConfiguration> = Api::all(client);
    let mut events = stream::select_all([
        touches(watcher(secrets.clone(), by_name(&target.secret))),
        touches(watcher(secrets, by_name(&target.ca_secret))),
        touches(watcher(webhooks, by_name(&target.webhook_config))),
    ]);
    while let Some(event) = events.next().await {
        match event {
            Ok(true) => changed.notify_one(),
            Ok(false) => {}
            Err(e) => debug!(error = %e, "watch failed; retrying"),
        }
    }
}

/// `true` for events that mean "something changed".
fn touches<K, S>(s: S) -> std::pin::Pin<Box<dyn Stream<Item = Result<bool, String>> + Send>>
where
    K: Send + 'static,
    S: Stream<Item = Result<watcher::Event<K>, watcher::Error>> + Send + 'static,
{
    Box::pin(s.default_backoff().map(|r| {
        r.map(|event| {
            matches!(
                event,
                watcher::Event::Apply(_) | watcher::Event::Delete(_) | watcher::Event::InitDone
            )
        })
        .map_err(|e| e.to_string())
    }))
}

async fn shutdown_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = term.recv() => {}
                    _ = tokio::signal::ctrl_c() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}

async fn get_opt<K>(
    api: &Api<K>,
    name: &str,
    kind: &str,
    namespace: &str,
) -> Result<Option<K>, ClusterError>
where
    K: Clone + DeserializeOwned + std::fmt::Debug,
{
    api.get_opt(name)
        .await
        .map_err(|source| ClusterError::Kube {
            what: if namespace.is_empty() {
                format!("get {kind} {name}")
            } else {
                format!("get {kind} {namespace}/{name}")
            },
            source,
        })
}

async fn put_secret(
    api: &Api<Secret>,
    pp: &PostParams,
    secret: Secret,
    exists: bool,
) -> Result<(), ClusterError> {
    let name = secret.metadata.name.clone().unwrap_or_default();
    let result = if exists {
        api.replace(&name, pp, &secret).await.map(|_| ())
    } else {
        api.create(pp, &secret).await.map(|_| ())
    };
    match result {
        Ok(()) => Ok(()),
        Err(e) if is_conflict(&e) || (exists && is_not_found(&e)) => Err(ClusterError::Conflict(
            format!("Secret {name} changed: {e}"),
        )),
        Err(source) => Err(ClusterError::Kube {
            what: format!(
                "{} Secret {name}",
                if exists { "replace" } else { "create" }
            ),
            source,
        }),
    }
}

/// The Secret to create or replace: the one read (keeping its metadata, type
/// and other keys) or a new one, with these keys set (`None` removes a key).
pub fn secret_for_write(
    existing: Option<&Secret>,
    namespace: &str,
    name: &str,
    type_: &str,
    values: &[(&str, Option<&str>)],
) -> Secret {
    let mut secret = match existing {
        Some(s) => {
            let mut s = s.clone();
            // Unset means "keep" on update; sending them back is just noise.
            s.metadata.managed_fields = None;
            s
        }
        None => Secret {
            metadata: ObjectMeta {
                name: Some(name.to_string()),
                namespace: Some(namespace.to_string()),
                labels: Some(BTreeMap::from([(
                    MANAGED_BY.0.to_string(),
                    MANAGED_BY.1.to_string(),
                )])),
                ..ObjectMeta::default()
            },
            type_: Some(type_.to_string()),
            ..Secret::default()
        },
    };
    let data = secret.data.get_or_insert_with(BTreeMap::new);
    for (key, value) in values {
        match value {
            Some(v) => {
                data.insert((*key).to_string(), ByteString(v.as_bytes().to_vec()));
            }
            None => {
                data.remove(*key);
            }
        }
    }
    secret
}

/// Strategic merge patch setting `clientConfig.caBundle` on the named entries
/// (webhooks merge by `name`), conditional on `resource_version`.
pub fn webhook_patch(
    resource_version: Option<&str>,
    entries: &[String],
    bundle: &str,
) -> serde_json::Value {
    let ca_bundle = base64::engine::general_purpose::STANDARD.encode(bundle.as_bytes());
    let webhooks: Vec<serde_json::Value> = entries
        .iter()
        .map(|name| {
            serde_json::json!({
                "name": name,
                "clientConfig": { "caBundle": ca_bundle },
            })
        })
        .collect();
    let mut body = serde_json::json!({ "webhooks": webhooks });
    if let Some(rv) = resource_version {
        body["metadata"] = serde_json::json!({ "resourceVersion": rv });
    }
    body
}

fn webhook_entries(config: &MutatingWebhookConfiguration) -> Vec<WebhookEntry> {
    config
        .webhooks
        .iter()
        .flatten()
        .map(|w| WebhookEntry {
            name: w.name.clone(),
            ca_bundle: w.client_config.ca_bundle.as_ref().map(|b| b.0.clone()),
        })
        .collect()
}

fn secret_value(secret: &Secret, key: &str) -> Option<String> {
    secret
        .data
        .as_ref()
        .and_then(|d| d.get(key))
        .map(|v| String::from_utf8_lossy(&v.0).into_owned())
}

fn is_conflict(e: &kube::Error) -> bool {
    matches!(e, kube::Error::Api(s) if s.is_conflict() || s.is_already_exists())
}

fn is_not_found(e: &kube::Error) -> bool {
    matches!(e, kube::Error::Api(s) if s.is_not_found())
}

/// 100 ms, 200 ms, 400 ms … plus up to 100 ms of jitter, so two replicas drift apart.
fn conflict_backoff(attempt: u32) -> Duration {
    let jitter = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos() % 100)
        .unwrap_or(0);
    Duration::from_millis(100 * 2u64.pow(attempt.saturating_sub(1).min(6)) + u64::from(jitter))
}

/// 1 s, 2 s, 4 s … up to 5 min.
fn error_backoff(failures: u32) -> Duration {
    Duration::from_secs(2u64.pow(failures.saturating_sub(1).min(9))).min(Duration::from_secs(300))
}

/// An error and its causes on one line.
pub fn one_line(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let text = s.to_string();
        if !out.contains(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        source = s.source();
    }
    out.replace(['\n', '\r'], " ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn webhook_patch_touches_only_ca_bundle() {
        let body = webhook_patch(Some("42"), &["a.spotwright.io".to_string()], "PEM\n");
        assert_eq!(
            body,
            serde_json::json!({
                "metadata": {"resourceVersion": "42"},
                "webhooks": [{"name": "a.spotwright.io", "clientConfig": {"caBundle": "UEVNCg=="}}],
            })
        );
    }

    #[test]
    fn secret_for_write_keeps_what_it_does_not_own() {
        let mut existing =
            secret_for_write(None, "ns", "s", TLS_SECRET_TYPE, &[("other", Some("x"))]);
        existing.metadata.resource_version = Some("7".to_string());
        existing.metadata.annotations = Some(BTreeMap::from([("a".to_string(), "b".to_string())]));
        let written = secret_for_write(
            Some(&existing),
            "ns",
            "s",
            TLS_SECRET_TYPE,
            &[(TLS_CRT, Some("crt")), ("other", None)],
        );
        assert_eq!(written.metadata.resource_version.as_deref(), Some("7"));
        assert_eq!(written.metadata.annotations, existing.metadata.annotations);
        assert_eq!(written.type_.as_deref(), Some(TLS_SECRET_TYPE));
        let data = written.data.unwrap();
        assert_eq!(data.get(TLS_CRT).map(|b| b.0.as_slice()), Some(&b"crt"[..]));
        assert!(!data.contains_key("other"));

        let fresh = secret_for_write(None, "ns", "ca", OPAQUE_SECRET_TYPE, &[(CA_KEY, Some("k"))]);
        assert_eq!(fresh.metadata.namespace.as_deref(), Some("ns"));
        assert_eq!(fresh.type_.as_deref(), Some(OPAQUE_SECRET_TYPE));
        assert_eq!(
            fresh
                .metadata
                .labels
                .unwrap()
                .get(MANAGED_BY.0)
                .map(String::as_str),
            Some(MANAGED_BY.1)
        );
        assert!(fresh.metadata.resource_version.is_none());
    }

    #[test]
    fn backoffs_grow_and_cap() {
        assert!(conflict_backoff(1) < Duration::from_millis(200));
        assert!(conflict_backoff(3) >= Duration::from_millis(400));
        assert_eq!(error_backoff(1), Duration::from_secs(1));
        assert_eq!(error_backoff(3), Duration::from_secs(4));
        assert_eq!(error_backoff(100), Duration::from_secs(300));
    }

    #[test]
    fn one_line_joins_causes() {
        let e = ClusterError::Certs(crate::Error::Io {
            path: "/x".into(),
            source: std::io::Error::other("multi\nline"),
        });
        assert_eq!(one_line(&e), "/x: multi line");
    }
}
