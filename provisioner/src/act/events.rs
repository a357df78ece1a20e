//! Events: the one publisher every controller reports through.
//!
//! Publishing is queued, as client-go's recorder does: a controller hands
//! its Event over and goes on, and one task publishes the queue a few at a
//! time. Under a burst the API server answers an Event create in tens or
//! hundreds of milliseconds; awaited one by one, thousands of `Nominated`
//! and `NominationMismatch` Events held each provisioning pass for seconds
//! (docs/benchmarks.md, "Scale on the local plane").

use futures::StreamExt;
use k8s_openapi::api::core::v1::{Node, ObjectReference};
use kube::runtime::events::{Event, EventType, Recorder, Reporter};
use kube::{Client, Resource};
use spotwright_api::NodeClaim;
use tokio::sync::mpsc;

use super::REPORTER;

/// Events longer than this are cut (the API server refuses notes over 1 KiB).
const MAX_NOTE: usize = 1000;
/// Events waiting to be published. A full queue makes `publish` wait: a
/// controller slows down rather than lose an Event. About 600 bytes each.
const QUEUE: usize = 8192;
/// Events being published at once.
const IN_FLIGHT: usize = 16;

/// Publishes Events as `spotwright-provisioner`; a failure to publish is
/// logged, never fatal.
#[derive(Clone)]
pub struct Events {
    queue: mpsc::Sender<(ObjectReference, Event)>,
}

/// One Event: its type, reason, the action taken, and what happened.
pub struct Notice<'a> {
    pub type_: EventType,
    pub reason: &'a str,
    pub action: &'a str,
    pub note: String,
}

impl<'a> Notice<'a> {
    pub fn normal(reason: &'a str, action: &'a str, note: String) -> Self {
        Notice {
            type_: EventType::Normal,
            reason,
            action,
            note,
        }
    }

    pub fn warning(reason: &'a str, action: &'a str, note: String) -> Self {
        Notice {
            type_: EventType::Warning,
            reason,
            action,
            note,
        }
    }
}

impl Events {
    /// Starts the publisher on the current Tokio runtime. It publishes what
    /// is queued and ends when the last clone of the returned `Events` is
    /// dropped.
    pub fn new(client: Client) -> Self {
        let reporter = Reporter {
            controller: REPORTER.to_owned(),
            instance: std::env::var("POD_NAME").ok(),
        };
        let (queue, queued) = mpsc::channel(QUEUE);
        tokio::spawn(publish_queued(Recorder::new(client, reporter), queued));
        Events { queue }
    }

    /// Queues `notice` about `reference`; waits only while the queue is full.
    pub async fn publish(&self, reference: &ObjectReference, notice: Notice<'_>) {
        let event = Event {
            type_: notice.type_,
            reason: notice.reason.to_owned(),
            note: Some(notice.note.chars().take(MAX_NOTE).collect()),
            action: notice.action.to_owned(),
            secondary: None,
        };
        if self.queue.send((reference.clone(), event)).await.is_err() {
            tracing::debug!(
                reason = notice.reason,
                "event not recorded: the publisher stopped"
            );
        }
    }

    /// Publishes `notice` about an object.
    pub async fn about<K: Resource<DynamicType = ()>>(&self, object: &K, notice: Notice<'_>) {
        self.publish(&object.object_ref(&()), notice).await;
    }

    /// The same Event on the claim and, when it has one, on its Node: users
    /// look at either.
    pub async fn on_claim_and_node(
        &self,
        claim: &NodeClaim,
        node: Option<&Node>,
        notice: Notice<'_>,
    ) {
        if let Some(node) = node {
            let copy = Notice {
                type_: notice.type_,
                reason: notice.reason,
                action: notice.action,
                note: notice.note.clone(),
            };
            self.about(node, copy).await;
        }
        self.about(claim, notice).await;
    }
}

/// Publishes queued Events, `IN_FLIGHT` at a time, until every sender is gone.
async fn publish_queued(recorder: Recorder, queued: mpsc::Receiver<(ObjectReference, Event)>) {
    let queued = futures::stream::unfold(queued, |mut queued| async move {
        queued.recv().await.map(|item| (item, queued))
    });
    let recorder = &recorder;
    queued
        .for_each_concurrent(IN_FLIGHT, |(reference, event)| async move {
            if let Err(err) = recorder.publish(&event, &reference).await {
                tracing::debug!(error = %err, reason = event.reason, "event not recorded");
            }
        })
        .await;
}

#[cfg(test)]
mod tests {
    use std::convert::Infallible;
    use std::future::Future;
    use std::pin::Pin;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;
    use std::task::{Context, Poll};
    use std::time::Duration;

    use http::{Method, Request, Response};
    use kube::client::Body;
    use tokio::sync::Semaphore;

    use super::*;

    /// An API server that holds every answer until its gate opens, and
    /// counts the Event creates it got and the most it held at once.
    #[derive(Clone)]
    struct GatedApiServer {
        gate: Arc<Semaphore>,
        held: Arc<AtomicUsize>,
        most_held: Arc<AtomicUsize>,
        creates: Arc<AtomicUsize>,
    }

    impl GatedApiServer {
        fn closed() -> Self {
            GatedApiServer {
                gate: Arc::new(Semaphore::new(0)),
                held: Arc::default(),
                most_held: Arc::default(),
                creates: Arc::default(),
            }
        }
    }

    impl tower_service::Service<Request<Body>> for GatedApiServer {
        type Response = Response<Body>;
        type Error = Infallible;
        type Future = Pin<Box<dyn Future<Output = Result<Response<Body>, Infallible>> + Send>>;

        fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
            Poll::Ready(Ok(()))
        }

        fn call(&mut self, request: Request<Body>) -> Self::Future {
            let server = self.clone();
            let create =
                request.method() == Method::POST && request.uri().path().ends_with("/events");
            Box::pin(async move {
                let held = server.held.fetch_add(1, Ordering::SeqCst) + 1;
                server.most_held.fetch_max(held, Ordering::SeqCst);
                drop(server.gate.acquire().await);
                server.held.fetch_sub(1, Ordering::SeqCst);
                if create {
                    server.creates.fetch_add(1, Ordering::SeqCst);
                }
                let event =
                    br#"{"apiVersion":"events.k8s.io/v1","kind":"Event","metadata":{"name":"e"}}"#;
                Ok(Response::new(Body::from(event.to_vec())))
            })
        }
    }

    async fn until(what: &str, done: impl Fn() -> bool) {
        for _ in 0..500 {
            if done() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        panic!("timed out waiting for {what}");
    }

    fn pod(name: &str) -> ObjectReference {
        ObjectReference {
            kind: Some("Pod".to_owned()),
            namespace: Some("default".to_owned()),
            name: Some(name.to_owned()),
            ..ObjectReference::default()
        }
    }

    #[tokio::test]
    async fn a_controller_does_not_wait_for_the_api_server_to_take_its_events() {
        let server = GatedApiServer::closed();
        let events = Events::new(Client::new(server.clone(), "default"));
        let queued = async {
            for i in 0..100 {
                let notice = Notice::normal("Nominated", "Provision", format!("pod {i}"));
                events.publish(&pod(&format!("pod-{i}")), notice).await;
            }
        };
        tokio::time::timeout(Duration::from_secs(5), queued)
            .await
            .expect("100 Events queued while the API server answers none");

        until("the publisher to fill its slots", || {
            server.held.load(Ordering::SeqCst) == IN_FLIGHT
        })
        .await;
        server.gate.add_permits(Semaphore::MAX_PERMITS);
        until("every Event created", || {
            server.creates.load(Ordering::SeqCst) == 100
        })
        .await;
        assert_eq!(server.most_held.load(Ordering::SeqCst), IN_FLIGHT);
    }
}
