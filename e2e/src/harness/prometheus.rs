//! A real Prometheus server (Debian's `prometheus` package) scraping local targets.

use std::process::Command;
use std::time::Duration;

use serde_json::Value;

use super::process::{eventually, Process};
use super::webhook::get;
use super::Env;

pub const PROMETHEUS_PORT: u16 = 19090;

pub struct Prometheus {
    pub process: Process,
}

impl Prometheus {
    /// Starts Prometheus scraping `targets` (host:port) every second.
    pub async fn start(env: &'static Env, job: &str, targets: &[&str]) -> Prometheus {
        let dir = env.scratch("prometheus");
        let targets: Vec<String> = targets.iter().map(|t| format!("'{t}'")).collect();
        let config = format!(
            "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\nscrape_configs:\n  - job_name: {job}\n    static_configs:\n      - targets: [{}]\n",
            targets.join(", ")
        );
        std::fs::write(dir.join("prometheus.yml"), config).expect("prometheus config");
        let binary = which("prometheus")
            .expect("prometheus is installed (./test installs Debian's package)");
        let mut command = Command::new(binary);
        command
            .arg(format!(
                "--config.file={}",
                dir.join("prometheus.yml").display()
            ))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.join("data").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{PROMETHEUS_PORT}"));
        let process = Process::spawn("prometheus", command, &dir.join("prometheus.log"));
        eventually("Prometheus /-/ready", Duration::from_secs(30), || async {
            get(&format!("http://127.0.0.1:{PROMETHEUS_PORT}/-/ready"))
                .await
                .is_some_and(|(status, _)| status == 200)
        })
        .await;
        Prometheus { process }
    }

    /// An instant PromQL query; the first sample's value, if any.
    pub async fn query_value(&self, promql: &str) -> Option<f64> {
        let body = self.query(promql).await?;
        body["data"]["result"].get(0)?["value"]
            .get(1)?
            .as_str()?
            .parse()
            .ok()
    }

    /// An instant PromQL query: Prometheus's whole JSON answer, a refused
    /// query's (`"status": "error"`, `errorType`, `error`) included; `None`
    /// when Prometheus does not answer with JSON.
    pub async fn query(&self, promql: &str) -> Option<Value> {
        self.api("query", &[("query", promql)]).await
    }

    /// Every metric name Prometheus holds a series of (`/api/v1/label/__name__/values`).
    pub async fn metric_names(&self) -> Vec<String> {
        let body = self.api("label/__name__/values", &[]).await;
        body.as_ref()
            .and_then(|b| b["data"].as_array())
            .into_iter()
            .flatten()
            .filter_map(|n| n.as_str().map(str::to_owned))
            .collect()
    }

    async fn api(&self, path: &str, params: &[(&str, &str)]) -> Option<Value> {
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(10))
            .build()
            .ok()?;
        let response = client
            .get(format!("http://127.0.0.1:{PROMETHEUS_PORT}/api/v1/{path}"))
            .query(params)
            .send()
            .await
            .ok()?;
        response.json().await.ok()
    }
}

fn which(name: &str) -> Option<std::path::PathBuf> {
    std::env::var_os("PATH")?
        .to_str()?
        .split(':')
        .map(|d| std::path::Path::new(d).join(name))
        .find(|p| p.is_file())
}
