//! What the end-to-end tests share: the local cluster (`e2e/cluster up`),
//! Spotwright installed from `manifests/overlays/local`, and the programs
//! run as local processes. Each test binary brings the cluster up once and
//! leaves it running for the next (`e2e/cluster down` stops it).

pub mod extender;
pub mod kubectl;
pub mod process;
pub mod prometheus;
pub mod provisioner;
pub mod rollout;
pub mod system;
pub mod webhook;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use kube::config::{KubeConfigOptions, Kubeconfig};

/// The running local cluster, with Spotwright's manifests applied.
#[derive(Debug)]
pub struct Env {
    pub repo: PathBuf,
    pub state: PathBuf,
    pub kubeconfig: PathBuf,
    pub kubectl: PathBuf,
    /// Where Cargo put the workspace's binaries.
    pub bin_dir: PathBuf,
}

static ENV: OnceLock<Env> = OnceLock::new();

/// The reasons of the Events about a cluster-scoped object (kept in `default`).
pub async fn event_reasons(client: &kube::Client, name: &str) -> Vec<String> {
    let events: kube::Api<k8s_openapi::api::events::v1::Event> =
        kube::Api::namespaced(client.clone(), "default");
    let list = events.list(&Default::default()).await.expect("events");
    list.items
        .into_iter()
        .filter(|e| e.regarding.as_ref().and_then(|r| r.name.as_deref()) == Some(name))
        .filter_map(|e| e.reason)
        .collect()
}

/// Waits up to 10 s for Events of every reason in `wanted` about a
/// cluster-scoped object, and fails the test naming what it saw. The
/// provisioner publishes Events from a queue, a moment after what they tell.
pub async fn expect_events(client: &kube::Client, name: &str, wanted: &[&str]) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let reasons = event_reasons(client, name).await;
        let missing: Vec<&&str> = wanted
            .iter()
            .filter(|w| !reasons.iter().any(|r| r == *w))
            .collect();
        if missing.is_empty() {
            return;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no {missing:?} Event about {name} within 10 s; its Events: {reasons:?}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
}

/// A short hex suffix that keeps one test run's object names apart from
/// another's on the long-lived local cluster.
pub fn unique_suffix() -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    format!("{:x}", nanos % 0xffff_ffff)
}

/// Brings the cluster up (idempotent) and installs Spotwright, once per test binary.
pub fn env() -> &'static Env {
    ENV.get_or_init(|| start(None))
}

/// As [`env`], with the plane at this Kubernetes minor (`e2e/cluster up
/// --kubernetes`): a cluster running another version is started again.
/// Only a binary's first call decides.
pub fn env_at(kubernetes: &str) -> &'static Env {
    ENV.get_or_init(|| start(Some(kubernetes)))
}

fn start(kubernetes: Option<&str>) -> Env {
    // Cargo sets CARGO_MANIFEST_DIR when it runs a test; the compile-time
    // value can name another clone that shares the target folder.
    let manifest_dir = std::env::var_os("CARGO_MANIFEST_DIR")
        .map_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")), PathBuf::from);
    let repo = manifest_dir.join("..").canonicalize().expect("repo root");
    // Test executables live in <target>/debug/deps; the binaries one level up.
    let exe = std::env::current_exe().expect("test executable path");
    let bin_dir = exe
        .parent()
        .and_then(Path::parent)
        .expect("target dir")
        .to_owned();
    let node_agent = bin_dir.join("spotwright-node-agent");
    let mut up = Command::new(repo.join("e2e/cluster"));
    up.arg("up");
    if let Some(minor) = kubernetes {
        up.args(["--kubernetes", minor]);
    }
    let output = up
        .env("SPOTWRIGHT_NODE_AGENT_BIN", &node_agent)
        .output()
        .expect("e2e/cluster runs");
    assert!(
        output.status.success(),
        "e2e/cluster up failed:\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let exports = String::from_utf8_lossy(&output.stdout);
    let export = |name: &str| {
        exports
            .lines()
            .find_map(|l| l.strip_prefix(&format!("export {name}=")))
            .unwrap_or_else(|| panic!("e2e/cluster up printed no {name}"))
            .to_owned()
    };
    let kubeconfig = PathBuf::from(export("KUBECONFIG"));
    let env = Env {
        state: kubeconfig.parent().expect("state dir").to_owned(),
        kubectl: PathBuf::from(export("SPOTWRIGHT_KUBECTL")),
        kubeconfig,
        repo,
        bin_dir,
    };
    for (key, value) in exports
        .lines()
        .filter_map(|l| l.strip_prefix("export ")?.split_once('='))
    {
        // Programs started by the tests inherit the cluster's AWS settings.
        std::env::set_var(key, value);
    }
    env.install();
    env
}

impl Env {
    /// A client for the local cluster; make one per test (it lives on the test's runtime).
    pub async fn client(&self) -> kube::Client {
        kube::Client::try_from(self.config().await).expect("client")
    }

    /// A client that impersonates `user` (e.g.
    /// `system:serviceaccount:<namespace>:<name>`), as the API server's
    /// Priority and Fairness, authorization and audit then see it.
    pub async fn client_as(&self, user: &str) -> kube::Client {
        let mut config = self.config().await;
        config.auth_info.impersonate = Some(user.to_owned());
        kube::Client::try_from(config).expect("client")
    }

    async fn config(&self) -> kube::Config {
        let kubeconfig = Kubeconfig::read_from(&self.kubeconfig).expect("kubeconfig readable");
        let mut config =
            kube::Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default())
                .await
                .expect("kubeconfig valid");
        // As the provisioner's own client: a refused eviction comes back at once.
        config.default_retry = false;
        config
    }

    /// A workspace binary built by `cargo build --workspace --bins`.
    pub fn bin(&self, name: &str) -> PathBuf {
        let path = self.bin_dir.join(name);
        assert!(
            path.exists(),
            "{} is missing: run `cargo build --workspace --bins` first (./test does)",
            path.display()
        );
        path
    }

    /// A scratch folder under the cluster's git-ignored state.
    pub fn scratch(&self, name: &str) -> PathBuf {
        let dir = self.state.join("e2e").join(name);
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("scratch dir");
        dir
    }

    /// Applies the local overlay (and dry-runs the base) and waits for the CRDs.
    pub fn install(&self) {
        // The local variant is what runs here...
        self.kubectl_ok(&[
            "apply",
            "--server-side",
            "--force-conflicts",
            "-k",
            "manifests/overlays/local",
        ]);
        // ...and the base, as users apply it, must be valid on a real API server too.
        self.kubectl_ok(&[
            "apply",
            "--server-side",
            "--force-conflicts",
            "--dry-run=server",
            "-k",
            "manifests/base",
        ]);
        self.kubectl_ok(&[
            "wait",
            "--for=condition=Established",
            "--timeout=60s",
            "crd/nodepools.spotwright.io",
            "crd/nodeclasses.spotwright.io",
            "crd/nodeclaims.spotwright.io",
        ]);
    }
}
