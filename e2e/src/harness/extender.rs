//! `spotwright-extender` as a local process on the port the local cluster's
//! `spotwright-scheduler` calls (see e2e/plane/scheduler/spotwright-scheduler.yaml).

use std::process::Command;
use std::time::Duration;

use super::process::{eventually, Process};
use super::webhook::get;
use super::Env;

pub const EXTENDER_PORT: u16 = 18888;
pub const EXTENDER_METRICS_PORT: u16 = 18081;

pub struct Extender {
    pub process: Process,
}

impl Extender {
    /// Starts the extender and waits until its caches have synced (`/readyz`).
    pub async fn start(env: &'static Env, name: &str) -> Extender {
        Self::start_with(env, name, &[]).await
    }

    /// Starts the extender with extra flags (such as scoring weights).
    pub async fn start_with(env: &'static Env, name: &str, flags: &[&str]) -> Extender {
        let mut command = Command::new(env.bin("spotwright-extender"));
        command
            .args(flags)
            .args(["--listen", &format!("127.0.0.1:{EXTENDER_PORT}")])
            .args([
                "--metrics-listen",
                &format!("127.0.0.1:{EXTENDER_METRICS_PORT}"),
            ])
            .env("KUBECONFIG", &env.kubeconfig)
            .env("RUST_LOG", "info,spotwright_extender=debug");
        let log = env.state.join("e2e").join(format!("{name}-extender.log"));
        std::fs::create_dir_all(env.state.join("e2e")).expect("e2e state dir");
        let process = Process::spawn("spotwright-extender", command, &log);
        eventually(
            "the extender's /readyz",
            Duration::from_secs(30),
            || async {
                get(&format!("http://127.0.0.1:{EXTENDER_METRICS_PORT}/readyz"))
                    .await
                    .is_some_and(|(status, _)| status == 200)
            },
        )
        .await;
        Extender { process }
    }

    pub async fn metrics(&self) -> String {
        get(&format!("http://127.0.0.1:{EXTENDER_METRICS_PORT}/metrics"))
            .await
            .map(|(_, body)| body)
            .unwrap_or_default()
    }
}

impl Extender {
    /// Calls `/prioritize` as the scheduler would (`nodeCacheCapable`) and
    /// returns the scores by node name.
    pub async fn prioritize(
        &self,
        pod: &serde_json::Value,
        nodes: &[&str],
    ) -> Option<Vec<(String, i64)>> {
        let reply = post_args("prioritize", pod, nodes).await?;
        reply
            .as_array()?
            .iter()
            .map(|entry| Some((entry["Host"].as_str()?.to_owned(), entry["Score"].as_i64()?)))
            .collect()
    }

    /// Calls `/filter` and returns the node names that passed.
    pub async fn filter(&self, pod: &serde_json::Value, nodes: &[&str]) -> Option<Vec<String>> {
        let reply = post_args("filter", pod, nodes).await?;
        reply["NodeNames"]
            .as_array()?
            .iter()
            .map(|n| n.as_str().map(str::to_owned))
            .collect()
    }
}

async fn post_args(
    verb: &str,
    pod: &serde_json::Value,
    nodes: &[&str],
) -> Option<serde_json::Value> {
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(3))
        .build()
        .ok()?;
    let args = serde_json::json!({"Pod": pod, "NodeNames": nodes});
    let response = client
        .post(format!("http://127.0.0.1:{EXTENDER_PORT}/{verb}"))
        .json(&args)
        .send()
        .await
        .ok()?;
    if !response.status().is_success() {
        return None;
    }
    response.json().await.ok()
}
