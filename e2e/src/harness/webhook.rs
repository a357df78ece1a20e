//! `spotwright-webhook` as a local process, its certificate issued and its
//! caBundle set by `spotwright-certs ensure` against the local cluster.

use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use k8s_openapi::api::core::v1::Pod;
use kube::api::PostParams;
use kube::{Api, Client};

use super::process::{eventually, Process};
use super::Env;

/// Where the local overlay's registration calls the webhook.
pub const WEBHOOK_PORT: u16 = 18443;
pub const WEBHOOK_METRICS_PORT: u16 = 18080;

pub struct Webhook {
    pub process: Process,
    pub tls_dir: PathBuf,
}

impl Webhook {
    /// Issues (or reuses) the serving pair, then starts the webhook and waits for `/readyz`.
    pub async fn start(env: &'static Env, name: &str) -> Webhook {
        stop_demo_webhook(env);
        let tls_dir = env.scratch(&format!("{name}-tls"));
        ensure_certificate(env, &tls_dir);
        let mut command = Command::new(env.bin("spotwright-webhook"));
        command
            .args(["--listen", &format!("127.0.0.1:{WEBHOOK_PORT}")])
            .args([
                "--metrics-listen",
                &format!("127.0.0.1:{WEBHOOK_METRICS_PORT}"),
            ])
            .arg("--tls-cert-file")
            .arg(tls_dir.join("tls.crt"))
            .arg("--tls-key-file")
            .arg(tls_dir.join("tls.key"))
            .args([
                "--cert-reload-interval-ms",
                "200",
                "--shutdown-grace-seconds",
                "5",
            ])
            .env("KUBECONFIG", &env.kubeconfig)
            .env("RUST_LOG", "info");
        let log = env.state.join("e2e").join(format!("{name}-webhook.log"));
        let process = Process::spawn("spotwright-webhook", command, &log);
        let webhook = Webhook { process, tls_dir };
        eventually("the webhook's /readyz", Duration::from_secs(30), || async {
            get(&format!("http://127.0.0.1:{WEBHOOK_METRICS_PORT}/readyz"))
                .await
                .is_some_and(|(status, _)| status == 200)
        })
        .await;
        webhook
    }

    pub async fn metrics(&self) -> String {
        get(&format!("http://127.0.0.1:{WEBHOOK_METRICS_PORT}/metrics"))
            .await
            .map(|(_, body)| body)
            .unwrap_or_default()
    }

    /// A counter's value from `/metrics`, 0 when absent.
    pub async fn counter(&self, series: &str) -> f64 {
        counter_in(&self.metrics().await, series)
    }
}

/// `./run` leaves a webhook on the registration's port; the tests need it.
fn stop_demo_webhook(env: &Env) {
    let pidfile = env.state.join("pids/demo-webhook.pid");
    if let Ok(line) = std::fs::read_to_string(&pidfile) {
        let pid = line
            .split_whitespace()
            .next()
            .unwrap_or_default()
            .to_owned();
        let _ = Command::new("kill").arg(pid).status();
        let _ = std::fs::remove_file(pidfile);
        std::thread::sleep(Duration::from_millis(500));
    }
}

/// Re-issues the serving certificate the way a renewal does: the Secret
/// is replaced and the files in the webhook's folder are swapped.
pub fn rotate_certificate(env: &Env, tls_dir: &std::path::Path) {
    env.kubectl_ok(&[
        "-n",
        "spotwright-system",
        "delete",
        "secret",
        "spotwright-webhook-tls",
        "--ignore-not-found",
    ]);
    ensure_certificate(env, tls_dir);
}

/// The value of `series` (name with labels, exactly as exposed) in Prometheus text.
pub fn counter_in(text: &str, series: &str) -> f64 {
    text.lines()
        .find_map(|line| {
            line.strip_prefix(series)?
                .strip_prefix(' ')?
                .trim()
                .parse()
                .ok()
        })
        .unwrap_or(0.0)
}

/// `spotwright-certs ensure --once` for the local registration, writing the pair into `dir`.
pub fn ensure_command(env: &Env, dir: &std::path::Path) -> Command {
    let mut command = Command::new(env.bin("spotwright-certs"));
    command
        .args([
            "ensure",
            "--once",
            "--namespace",
            "spotwright-system",
            "--ip",
            "127.0.0.1",
        ])
        .arg("--write-dir")
        .arg(dir)
        .env("KUBECONFIG", &env.kubeconfig);
    command
}

fn ensure_certificate(env: &Env, dir: &std::path::Path) {
    let output = ensure_command(env, dir)
        .output()
        .expect("spotwright-certs runs");
    assert!(
        output.status.success(),
        "spotwright-certs ensure failed:\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
}

/// A plain-HTTP GET on loopback: status and body, `None` when nothing answers.
pub async fn get(url: &str) -> Option<(u16, String)> {
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(3))
        .build()
        .ok()?;
    let response = client.get(url).send().await.ok()?;
    let status = response.status().as_u16();
    Some((status, response.text().await.ok()?))
}

/// Creates `namespace` opted in to Spot capacity on `nodepool`, and waits
/// until the webhook serves it ([`await_opt_in`]).
pub async fn opted_in_namespace(env: &Env, client: &Client, namespace: &str, nodepool: &str) {
    env.apply(&serde_json::json!({
        "apiVersion": "v1", "kind": "Namespace",
        "metadata": {"name": namespace, "annotations": {
            "spotwright.io/capacity": "spot", "spotwright.io/nodepool": nodepool}}
    }));
    await_opt_in(client, namespace).await;
}

/// Waits until pods created in `namespace` reach the Spotwright scheduler:
/// the webhook's caches hold the namespace (and its NodePool) and the API
/// server trusts the current caBundle. A dry-run pod shows it without
/// creating anything.
pub async fn await_opt_in(client: &Client, namespace: &str) {
    let api = Api::<Pod>::namespaced(client.clone(), namespace);
    let probe: Pod = match serde_json::from_value(serde_json::json!({
        "metadata": {"name": "opt-in-probe"},
        "spec": {"containers": [{"name": "app", "image": "registry.k8s.io/pause:3.10"}]}
    })) {
        Ok(pod) => pod,
        Err(e) => panic!("probe pod: {e}"),
    };
    let params = PostParams {
        dry_run: true,
        ..PostParams::default()
    };
    eventually(
        &format!("the webhook to opt namespace {namespace} in"),
        Duration::from_secs(30),
        || async {
            api.create(&params, &probe).await.is_ok_and(|p| {
                p.spec.and_then(|s| s.scheduler_name).as_deref() == Some("spotwright-scheduler")
            })
        },
    )
    .await;
}
