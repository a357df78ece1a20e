//! The Grafana dashboard (manifests/observability/spotwright-dashboard.json)
//! against a real Prometheus scraping the real webhook, extender and
//! provisioner through a scale-up: every PromQL expression of every panel
//! parses, names only metrics the programs export, and returns data.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use spotwright_e2e::harness::extender::{Extender, EXTENDER_METRICS_PORT};
use spotwright_e2e::harness::process::eventually;
use spotwright_e2e::harness::prometheus::Prometheus;
use spotwright_e2e::harness::provisioner::{Provisioner, PROVISIONER_METRICS_PORT};
use spotwright_e2e::harness::webhook::{Webhook, WEBHOOK_METRICS_PORT};
use spotwright_e2e::harness::{env, unique_suffix, Env};

mod pools;

use pools::*;

const DASHBOARD: &str = "manifests/observability/spotwright-dashboard.json";
const REPLICAS: usize = 3;

/// Grafana's interval variables, as a dashboard over the last hour with a
/// 1 s scrape would set them (a wide `$__rate_interval` keeps the events
/// of the scale-up in every window).
const VARIABLES: [(&str, &str); 6] = [
    ("${__rate_interval}", "2m"),
    ("$__rate_interval", "2m"),
    ("${__interval}", "15s"),
    ("$__interval", "15s"),
    ("${__range}", "1h"),
    ("$__range", "1h"),
];

/// Panels whose data the scale-up itself makes: these must have a number,
/// not just a series (a histogram_quantile over no observations is NaN).
const MEASURED: [&str; 3] = [
    "spotwright_webhook_admission_duration_seconds",
    "spotwright_extender_request_duration_seconds",
    "spotwright_provisioner_nodeclaims_created_total",
];

/// `(panel title, expr)` of every target of every panel, rows' nested panels included.
fn expressions(dashboard: &Value) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut panels: Vec<&Value> = dashboard["panels"]
        .as_array()
        .into_iter()
        .flatten()
        .collect();
    while let Some(panel) = panels.pop() {
        panels.extend(panel["panels"].as_array().into_iter().flatten());
        let title = panel["title"].as_str().unwrap_or_default();
        for target in panel["targets"].as_array().into_iter().flatten() {
            if let Some(expr) = target["expr"].as_str() {
                out.push((title.to_owned(), expr.to_owned()));
            }
        }
    }
    out
}

/// The expression with Grafana's variables replaced; an error for any
/// other `$`, which Prometheus would not know.
fn substitute(expr: &str) -> Result<String, String> {
    let mut out = expr.to_owned();
    for (variable, value) in VARIABLES {
        out = out.replace(variable, value);
    }
    if out.contains('$') {
        return Err(format!("an unknown Grafana variable in {expr}"));
    }
    Ok(out)
}

/// The metric names an expression reads: its `spotwright_` identifiers,
/// less the histogram suffixes Prometheus stores apart.
fn metric_names(expr: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    let bytes = expr.as_bytes();
    let mut i = 0;
    while let Some(at) = expr[i..].find("spotwright_") {
        let start = i + at;
        let boundary = start == 0 || {
            let b = bytes[start - 1];
            !(b.is_ascii_alphanumeric() || b == b'_' || b == b'"')
        };
        let end = expr[start..]
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == ':'))
            .map_or(expr.len(), |n| start + n);
        if boundary {
            names.insert(expr[start..end].to_owned());
        }
        i = end;
    }
    names
}

/// Samples of an instant query's answer: `(labels, value)`.
fn samples(answer: &Value) -> Vec<(Value, f64)> {
    answer["data"]["result"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|s| {
            let value = s["value"].get(1)?.as_str()?;
            let value = match value {
                "NaN" => f64::NAN,
                "+Inf" => f64::INFINITY,
                "-Inf" => f64::NEG_INFINITY,
                v => v.parse().ok()?,
            };
            Some((s["metric"].clone(), value))
        })
        .collect()
}

fn deploy(env: &Env, namespace: &str) {
    env.apply(&json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": "observed", "namespace": namespace},
        "spec": {"replicas": REPLICAS, "selector": {"matchLabels": {"app": "observed"}},
            "template": {"metadata": {"labels": {"app": "observed"}}, "spec": {"containers": [{
                "name": "app", "image": "registry.k8s.io/pause:3.10",
                "resources": {"requests": {"cpu": "500m", "memory": "512Mi"}}}]}}}
    }));
}

#[test]
fn the_checks_catch_a_mistyped_metric_and_unknown_variables() {
    let names = metric_names(
        "sum by (le) (rate(spotwright_webhook_admission_duration_seconds_bucket{job=\"spotwright_x\"}[$__rate_interval])) / spotwright_bogus_total",
    );
    assert_eq!(
        names.into_iter().collect::<Vec<_>>(),
        [
            "spotwright_bogus_total",
            "spotwright_webhook_admission_duration_seconds_bucket"
        ]
    );
    assert_eq!(
        substitute("rate(x[$__rate_interval])").as_deref(),
        Ok("rate(x[2m])"),
        "the variable is replaced"
    );
    assert!(
        substitute("rate(x[$interval])").is_err(),
        "a variable the test does not know fails"
    );
}

#[tokio::test]
async fn every_dashboard_expression_returns_data_during_a_scale_up() {
    let began = Instant::now();
    let env = env();
    let client = env.client().await;
    let dashboard: Value = serde_json::from_str(
        &std::fs::read_to_string(env.repo.join(DASHBOARD)).expect("the dashboard file"),
    )
    .expect("the dashboard is JSON");
    let queries: Vec<(String, String)> = expressions(&dashboard)
        .into_iter()
        .map(|(title, expr)| {
            let expr = substitute(&expr).unwrap_or_else(|e| panic!("panel {title:?}: {e}"));
            (title, expr)
        })
        .collect();
    assert!(queries.len() > 10, "{} expressions", queries.len());

    let _webhook = Webhook::start(env, "observability").await;
    let _extender = Extender::start(env, "observability").await;
    let id = unique_suffix();
    let pool = pool(env, &client, &id).await;
    let namespace = format!("prov-{id}");
    let provisioner = Provisioner::start(env, "observability", MOTO, &[]).await;
    // Checked on a task of its own, so the pool's nodes and instances are
    // cleaned up (while the provisioner runs) whatever the checks find.
    let checks = tokio::spawn(check(
        env,
        client.clone(),
        namespace.clone(),
        queries,
        began,
    ));
    let outcome = checks.await;
    cleanup(env, &client, &pool, &namespace).await;
    // The NodePool's finalizer is the provisioner's to drop.
    let pools: kube::Api<spotwright_api::NodePool> = kube::Api::all(client.clone());
    let gone = || async { matches!(pools.get_opt(&pool).await, Ok(None)) };
    eventually("the NodePool to go", Duration::from_secs(30), gone).await;
    drop(provisioner);
    if let Err(failed) = outcome {
        std::panic::resume_unwind(failed.into_panic());
    }
    eprintln!("done after {:?}", began.elapsed());
}

/// Prometheus over the three programs, the scale-up, and every query.
async fn check(
    env: &'static Env,
    client: kube::Client,
    namespace: String,
    queries: Vec<(String, String)>,
    began: Instant,
) {
    let prometheus = Prometheus::start(
        env,
        "spotwright",
        &[
            &format!("127.0.0.1:{WEBHOOK_METRICS_PORT}"),
            &format!("127.0.0.1:{EXTENDER_METRICS_PORT}"),
            &format!("127.0.0.1:{PROVISIONER_METRICS_PORT}"),
        ],
    )
    .await;
    // Every target scraped once before anything happens, so each event of
    // the scale-up is an increase Prometheus sees.
    let prometheus = &prometheus;
    eventually(
        "Prometheus to scrape the three programs",
        Duration::from_secs(15),
        || async move { prometheus.query_value("sum(up)").await == Some(3.0) },
    )
    .await;

    // Pending pods, NodeClaims, nodes from moto, pods Running: through the
    // webhook (admission), the provisioner and the scheduler's extender.
    deploy(env, &namespace);
    eventually(
        &format!(
            "{REPLICAS} pods Running in {namespace}; see {}/e2e/observability-provisioner.log",
            env.state.display()
        ),
        Duration::from_secs(120),
        || async { running_pods(&client, &namespace).await.len() == REPLICAS },
    )
    .await;
    let scaled_up = began.elapsed();

    // Every metric an expression names is one Prometheus has scraped: a
    // mistyped or never-exported name fails here rather than after a wait.
    let wanted: BTreeSet<String> = queries.iter().flat_map(|(_, e)| metric_names(e)).collect();
    eventually(
        "Prometheus to hold the metrics the dashboard reads",
        Duration::from_secs(15),
        || async move {
            let known: BTreeSet<String> = prometheus.metric_names().await.into_iter().collect();
            // The three jobs' targets have been scraped once the scale-up's launches are in.
            known.contains("spotwright_provisioner_nodeclaims_created_total")
                && known.contains("spotwright_extender_requests_total")
                && known.contains("spotwright_webhook_admissions_total")
        },
    )
    .await;
    let known: BTreeSet<String> = prometheus.metric_names().await.into_iter().collect();
    let missing: Vec<&String> = wanted.difference(&known).collect();
    assert!(
        missing.is_empty(),
        "the dashboard names metrics no program exports: {missing:?}"
    );

    // Each expression parses and has data (a scrape or two after the
    // scale-up at most); the measured ones have a number.
    let deadline = Instant::now() + Duration::from_secs(30);
    for (title, expr) in &queries {
        let measured = MEASURED.iter().any(|m| expr.contains(m));
        loop {
            let answer = prometheus
                .query(expr)
                .await
                .unwrap_or_else(|| panic!("Prometheus answers {expr}"));
            assert_eq!(
                answer["status"], "success",
                "panel {title:?}: Prometheus refused {expr}: {answer}"
            );
            let found = samples(&answer);
            let has_data =
                !found.is_empty() && (!measured || found.iter().any(|(_, v)| v.is_finite()));
            if has_data {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "panel {title:?}: no data for {expr} (measured: {measured}): {answer}"
            );
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }
    let checked = began.elapsed();
    eprintln!(
        "{} expressions return data; scale-up after {scaled_up:?}, checked after {checked:?}",
        queries.len()
    );
}
