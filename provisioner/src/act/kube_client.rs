//! The provisioner's Kubernetes client: the default stack from the
//! kubeconfig or the in-cluster config, plus a layer that counts every
//! request by verb and resource (`kube_requests_total`), so the claim "one
//! WATCH per kind, no LIST after start-up" can be checked from outside.

use std::task::{Context, Poll};
use std::time::Duration;

use http::{Method, Request};
use kube::client::{Body, ClientBuilder};
use prometheus::IntCounterVec;
use tower_layer::Layer;
use tower_service::Service;

use crate::Error;

/// How long the API server may take to answer the first request.
const API_SERVER_DEADLINE: Duration = Duration::from_secs(30);

/// A client whose every request is counted in `requests`
/// (`verb`, `resource` labels), checked to reach the API server.
///
/// Without kube's built-in retry of 429, 503 and 504: it retries a request
/// up to 15 times over minutes, so an eviction a PodDisruptionBudget refuses
/// (429) would hold its drain worker for that long instead of coming back
/// at once to be backed off, reported and retried by termination. Every
/// controller loop already retries with its own backoff.
pub async fn counted_client(requests: IntCounterVec) -> Result<kube::Client, Error> {
    let mut config = kube::Config::infer()
        .await
        .map_err(|e| Error::Config(format!("no Kubernetes configuration: {e}")))?;
    config.default_retry = false;
    // Names the provisioner in the API server's audit log and request
    // metrics (kube sends no User-Agent of its own).
    config.headers.push((
        http::header::USER_AGENT,
        http::HeaderValue::from_static(concat!(
            "spotwright-provisioner/",
            env!("CARGO_PKG_VERSION")
        )),
    ));
    let client = ClientBuilder::try_from(config)
        .map_err(|e| Error::Config(format!("Kubernetes client: {e}")))?
        .with_layer(&CountRequests { requests })
        .build();
    match tokio::time::timeout(API_SERVER_DEADLINE, client.apiserver_version()).await {
        Ok(Ok(_)) => Ok(client),
        Ok(Err(source)) => Err(Error::Kube {
            verb: "get",
            object: "/version".to_owned(),
            source,
        }),
        Err(_) => Err(Error::Config(format!(
            "the API server did not answer within {}s",
            API_SERVER_DEADLINE.as_secs()
        ))),
    }
}

/// The verb and resource of an API request, as the API server names them:
/// `WATCH pods`, `LIST nodes`, `PATCH nodeclaims/status`, `CREATE pods/eviction`.
pub fn classify(method: &Method, path: &str, query: Option<&str>) -> (&'static str, String) {
    let segments: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
    let rest: &[&str] = match segments.as_slice() {
        ["api", _version, rest @ ..] => rest,
        ["apis", _group, _version, rest @ ..] => rest,
        // /version, /healthz, ...: read as a whole, never listed.
        _ => return (verb(method, true, false), "nonresource".to_owned()),
    };
    let rest = match rest {
        ["namespaces", _namespace, more @ ..] if !more.is_empty() => more,
        other => other,
    };
    let (resource, named) = match rest {
        [] => return (verb(method, true, false), "discovery".to_owned()),
        [resource] => ((*resource).to_owned(), false),
        [resource, _name] => ((*resource).to_owned(), true),
        [resource, _name, sub, ..] => (format!("{resource}/{sub}"), true),
    };
    let watch = query.is_some_and(|q| {
        q.split('&')
            .any(|pair| pair == "watch=true" || pair == "watch=1")
    });
    (verb(method, named, watch), resource)
}

fn verb(method: &Method, named: bool, watch: bool) -> &'static str {
    match *method {
        Method::GET if watch => "WATCH",
        Method::GET if named => "GET",
        Method::GET => "LIST",
        Method::POST => "CREATE",
        Method::PUT => "UPDATE",
        Method::PATCH => "PATCH",
        Method::DELETE if named => "DELETE",
        Method::DELETE => "DELETECOLLECTION",
        _ => "OTHER",
    }
}

/// Counts each request before it is sent.
#[derive(Clone)]
struct CountRequests {
    requests: IntCounterVec,
}

impl<S> Layer<S> for CountRequests {
    type Service = Counted<S>;

    fn layer(&self, inner: S) -> Counted<S> {
        Counted {
            inner,
            requests: self.requests.clone(),
        }
    }
}

#[derive(Clone)]
struct Counted<S> {
    inner: S,
    requests: IntCounterVec,
}

impl<S: Service<Request<Body>>> Service<Request<Body>> for Counted<S> {
    type Response = S::Response;
    type Error = S::Error;
    type Future = S::Future;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<Body>) -> S::Future {
        let uri = request.uri();
        let (verb, resource) = classify(request.method(), uri.path(), uri.query());
        self.requests.with_label_values(&[verb, &resource]).inc();
        self.inner.call(request)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn named(method: Method, path: &str, query: Option<&str>) -> (String, String) {
        let (verb, resource) = classify(&method, path, query);
        (verb.to_owned(), resource)
    }

    fn pair(verb: &str, resource: &str) -> (String, String) {
        (verb.to_owned(), resource.to_owned())
    }

    #[test]
    fn requests_are_named_as_the_api_server_names_them() {
        let cases = [
            (
                Method::GET,
                "/api/v1/pods",
                Some("watch=true&resourceVersion=5"),
                pair("WATCH", "pods"),
            ),
            (
                Method::GET,
                "/api/v1/pods",
                Some("limit=500"),
                pair("LIST", "pods"),
            ),
            (Method::GET, "/api/v1/nodes/n1", None, pair("GET", "nodes")),
            (
                Method::GET,
                "/api/v1/namespaces",
                None,
                pair("LIST", "namespaces"),
            ),
            (
                Method::GET,
                "/api/v1/namespaces/team-a",
                None,
                pair("GET", "namespaces"),
            ),
            (
                Method::POST,
                "/api/v1/namespaces/a/pods/p/eviction",
                None,
                pair("CREATE", "pods/eviction"),
            ),
            (
                Method::PATCH,
                "/apis/spotwright.io/v1alpha1/nodeclaims/c1/status",
                Some("fieldManager=x"),
                pair("PATCH", "nodeclaims/status"),
            ),
            (
                Method::GET,
                "/apis/apps/v1/daemonsets",
                Some("watch=1"),
                pair("WATCH", "daemonsets"),
            ),
            (
                Method::DELETE,
                "/apis/spotwright.io/v1alpha1/nodeclaims/c1",
                None,
                pair("DELETE", "nodeclaims"),
            ),
            (
                Method::POST,
                "/apis/events.k8s.io/v1/namespaces/default/events",
                None,
                pair("CREATE", "events"),
            ),
            (Method::GET, "/version", None, pair("GET", "nonresource")),
            (
                Method::GET,
                "/apis/coordination.k8s.io/v1",
                None,
                pair("GET", "discovery"),
            ),
        ];
        for (method, path, query, expected) in cases {
            assert_eq!(named(method, path, query), expected, "{path}");
        }
    }
}
