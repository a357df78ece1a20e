//! The provisioner's load on the API server, seen from both ends: the API
//! server's `apiserver_longrunning_requests` gauge shows one WATCH per kind
//! for the provisioner, and the provisioner's own request counter shows one
//! LIST per kind at start-up and none after, while the cluster is idle.
//!
//! `SPOTWRIGHT_IDLE_SECONDS` sets the idle window (20 s here; 600 for the
//! figure in docs/benchmarks.md, via `bench/state/idle-requests`).

use std::collections::BTreeMap;
use std::time::Duration;

use kube::Client;
use spotwright_e2e::harness::process::eventually;
use spotwright_e2e::harness::provisioner::Provisioner;
use spotwright_e2e::harness::{env, Env};

const MOTO: &str = "http://127.0.0.1:15000";

/// The kinds the provisioner's cluster state watches, as the API server names them.
const KINDS: [&str; 11] = [
    "pods",
    "nodes",
    "nodeclaims",
    "nodepools",
    "nodeclasses",
    "daemonsets",
    "replicasets",
    "namespaces",
    "persistentvolumeclaims",
    "persistentvolumes",
    "storageclasses",
];

/// Open WATCH requests on the API server, by resource (all clients).
async fn open_watches(client: &Client) -> BTreeMap<String, i64> {
    let request = http::Request::get("/metrics")
        .body(Vec::new())
        .expect("metrics request");
    let text = client
        .request_text(request)
        .await
        .expect("API server metrics");
    let mut watches = BTreeMap::new();
    for line in text.lines() {
        let Some(labels) = line.strip_prefix("apiserver_longrunning_requests{") else {
            continue;
        };
        if !labels.contains("verb=\"WATCH\"") {
            continue;
        }
        let resource = label(labels, "resource");
        let value = line
            .rsplit(' ')
            .next()
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or(0.0);
        *watches.entry(resource).or_default() += value as i64;
    }
    watches
}

fn label(labels: &str, name: &str) -> String {
    labels
        .split(&format!("{name}=\""))
        .nth(1)
        .and_then(|rest| rest.split('"').next())
        .unwrap_or_default()
        .to_owned()
}

/// The provisioner's own request counter: (verb, resource) → requests.
fn requests(metrics: &str) -> BTreeMap<(String, String), u64> {
    metrics
        .lines()
        .filter_map(|line| {
            let labels = line.strip_prefix("spotwright_provisioner_kube_requests_total{")?;
            let value = line.rsplit(' ').next()?.parse::<f64>().ok()?;
            Some((
                (label(labels, "verb"), label(labels, "resource")),
                value as u64,
            ))
        })
        .collect()
}

fn of_verb(counts: &BTreeMap<(String, String), u64>, verb: &str) -> BTreeMap<String, u64> {
    counts
        .iter()
        .filter(|((v, _), _)| v == verb)
        .map(|((_, r), n)| (r.clone(), *n))
        .collect()
}

fn idle_window() -> Duration {
    let seconds = std::env::var("SPOTWRIGHT_IDLE_SECONDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(20);
    Duration::from_secs(seconds)
}

async fn started(env: &'static Env) -> Provisioner {
    let provisioner = Provisioner::start(env, "watches", MOTO, &[]).await;
    eventually(
        "a WATCH of every kind from the provisioner",
        Duration::from_secs(60),
        || async {
            let watches = of_verb(&requests(&provisioner.metrics().await), "WATCH");
            KINDS
                .iter()
                .all(|k| watches.get(*k).is_some_and(|n| *n >= 1))
        },
    )
    .await;
    provisioner
}

#[tokio::test]
async fn the_provisioner_holds_one_watch_per_kind_and_lists_only_at_start() {
    let env = env();
    let client = env.client().await;
    let before = open_watches(&client).await;
    let mut provisioner = started(env).await;
    // The server's gauge moves when the watch is served, just after the request.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let running = open_watches(&client).await;
    let at_start = requests(&provisioner.metrics().await);
    tokio::time::sleep(idle_window()).await;
    let after_idle = requests(&provisioner.metrics().await);
    provisioner.kill9();
    eventually(
        "the provisioner's watches to close",
        Duration::from_secs(30),
        || async {
            let now = open_watches(&client).await;
            KINDS
                .iter()
                .all(|k| now.get(*k).copied().unwrap_or(0) < running.get(*k).copied().unwrap_or(0))
        },
    )
    .await;
    let stopped = open_watches(&client).await;

    println!("kind            open WATCHes (server)   LIST at start   LIST after {}s idle   WATCH requests", idle_window().as_secs());
    for kind in KINDS {
        let count = |m: &BTreeMap<String, i64>| m.get(kind).copied().unwrap_or(0);
        // Another component's watch may restart in one of the two windows,
        // hardly in both: the smaller difference is the provisioner's.
        let own = (count(&running) - count(&before)).min(count(&running) - count(&stopped));
        let lists = of_verb(&at_start, "LIST").get(kind).copied().unwrap_or(0);
        let lists_later = of_verb(&after_idle, "LIST").get(kind).copied().unwrap_or(0);
        let watches = of_verb(&after_idle, "WATCH")
            .get(kind)
            .copied()
            .unwrap_or(0);
        println!("{kind:<15} {own:>20} {lists:>15} {lists_later:>20} {watches:>16}");
        assert_eq!(own, 1, "the provisioner holds exactly one WATCH of {kind}");
        assert_eq!(lists, 1, "one LIST of {kind} at start-up");
        assert_eq!(lists_later, lists, "no LIST of {kind} while idle");
    }
    println!("every request of the idle window, by verb and resource:");
    for ((verb, resource), n) in &after_idle {
        let before = at_start
            .get(&(verb.clone(), resource.clone()))
            .copied()
            .unwrap_or(0);
        if *n > before {
            println!("  {verb:<8} {resource:<24} {}", n - before);
        }
    }
    let listed_later: Vec<_> = of_verb(&after_idle, "LIST")
        .into_iter()
        .filter(|(resource, n)| of_verb(&at_start, "LIST").get(resource) != Some(n))
        .collect();
    assert!(
        listed_later.is_empty(),
        "LISTs while idle: {listed_later:?}"
    );
}
