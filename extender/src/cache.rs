//! The watches that feed the index: Nodes, bound Pods, NodeClaims and
//! interruption Events. The request path never calls the API server.
//!
//! Each watch turns objects into facts (`facts.rs`) as they arrive and keeps
//! nothing else; a relist is buffered and swapped in whole.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use futures::{Stream, StreamExt};
use k8s_openapi::api::core::v1::{Node, Pod};
use k8s_openapi::api::events::v1::Event;
use kube::runtime::{watcher, WatchStreamExt};
use kube::{Api, Client, ResourceExt};
use spotwright_api::interruption::{InterruptionRecord, LABEL_SELECTOR};
use spotwright_api::NodeClaim;
use tokio::sync::oneshot;

use crate::facts::{pod_key, ClaimFacts, NodeFacts, PodFacts};
use crate::index::{Change, Index, KeyedInterruption};
use crate::metrics::Metrics;
use crate::server::Clock;

/// Bound pods that still hold resources: what the scheduler itself watches.
pub const POD_FIELD_SELECTOR: &str = "spec.nodeName!=,status.phase!=Succeeded,status.phase!=Failed";

/// Starts the four watches; returns a future that resolves once each has
/// delivered its first full list.
pub fn start(
    client: Client,
    index: Arc<Index>,
    metrics: Metrics,
    interruption_window: Duration,
) -> impl Future<Output = ()> {
    let window = i64::try_from(interruption_window.as_secs()).unwrap_or(i64::MAX);
    let (nodes_tx, nodes_rx) = oneshot::channel();
    let (pods_tx, pods_rx) = oneshot::channel();
    let (claims_tx, claims_rx) = oneshot::channel();
    let (events_tx, events_rx) = oneshot::channel();

    let nodes = watcher(Api::<Node>::all(client.clone()), watcher::Config::default());
    let (i, m) = (index.clone(), metrics.clone());
    tokio::spawn(feed(
        "nodes",
        nodes,
        |node: &Node| Some(NodeFacts::from_node(node)),
        |node: &Node| Some(node.name_any()),
        move |change| {
            i.apply_nodes(change);
            m.record_sizes(i.sizes());
        },
        nodes_tx,
    ));

    let pods = watcher(
        Api::<Pod>::all(client.clone()),
        watcher::Config::default().fields(POD_FIELD_SELECTOR),
    );
    let (i, m) = (index.clone(), metrics.clone());
    tokio::spawn(feed(
        "pods",
        pods,
        PodFacts::from_pod,
        pod_key,
        move |change| {
            i.apply_pods(change);
            m.record_sizes(i.sizes());
        },
        pods_tx,
    ));

    let claims = watcher(
        Api::<NodeClaim>::all(client.clone()),
        watcher::Config::default(),
    );
    let (i, m) = (index.clone(), metrics.clone());
    tokio::spawn(feed(
        "nodeclaims",
        claims,
        |claim: &NodeClaim| Some(ClaimFacts::from_claim(claim)),
        |claim: &NodeClaim| Some(claim.name_any()),
        move |change| {
            i.apply_claims(change);
            m.record_sizes(i.sizes());
        },
        claims_tx,
    ));

    let events = watcher(
        Api::<Event>::all(client),
        watcher::Config::default().labels(LABEL_SELECTOR),
    );
    let (i, m) = (index, metrics);
    tokio::spawn(feed(
        "interruptions",
        events,
        |event: &Event| match InterruptionRecord::from_event(event) {
            Ok(record) => Some(KeyedInterruption {
                key: event_key(event),
                record,
            }),
            Err(err) => {
                tracing::warn!(event = %event_key(event), error = %err, "ignoring interruption event");
                None
            }
        },
        |event: &Event| Some(event_key(event)),
        move |change| {
            let forget_before = Clock::System.now().saturating_sub(window);
            i.apply_interruptions(change, forget_before);
            m.record_sizes(i.sizes());
        },
        events_tx,
    ));

    async move {
        let _ = futures::join!(nodes_rx, pods_rx, claims_rx, events_rx);
    }
}

fn event_key(event: &Event) -> String {
    format!(
        "{}/{}",
        event.metadata.namespace.as_deref().unwrap_or_default(),
        event.name_any()
    )
}

/// Drives one watch into the index: objects become facts (`convert`; `None`
/// drops an object, as when a pod finishes), deletions remove by `key`, and
/// a relist is collected and replaces the kind's contents at once.
async fn feed<K, T>(
    what: &'static str,
    stream: impl Stream<Item = Result<watcher::Event<K>, watcher::Error>> + Send,
    convert: impl Fn(&K) -> Option<T>,
    key: impl Fn(&K) -> Option<String>,
    apply: impl Fn(Change<T>),
    synced: oneshot::Sender<()>,
) {
    let stream = stream.default_backoff();
    futures::pin_mut!(stream);
    let mut synced = Some(synced);
    let mut relist: Vec<T> = Vec::new();
    while let Some(event) = stream.next().await {
        match event {
            // The backoff retries; the index keeps serving what it last saw.
            Err(err) => tracing::warn!(cache = what, error = %err, "watch failed; retrying"),
            Ok(watcher::Event::Init) => relist.clear(),
            Ok(watcher::Event::InitApply(object)) => relist.extend(convert(&object)),
            Ok(watcher::Event::InitDone) => {
                let all = std::mem::take(&mut relist);
                tracing::info!(cache = what, objects = all.len(), "listed");
                apply(Change::Replace(all));
                if let Some(synced) = synced.take() {
                    let _ = synced.send(());
                }
            }
            Ok(watcher::Event::Apply(object)) => match (convert(&object), key(&object)) {
                (Some(facts), _) => apply(Change::Upsert(facts)),
                (None, Some(key)) => apply(Change::Remove(key)),
                (None, None) => {}
            },
            Ok(watcher::Event::Delete(object)) => {
                if let Some(key) = key(&object) {
                    apply(Change::Remove(key));
                }
            }
        }
    }
}
