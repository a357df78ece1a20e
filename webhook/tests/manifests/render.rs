//! Rendering the kustomizations with `kubectl kustomize`, and the small
//! accessors the tests share.

use serde::Deserialize;
use serde_json::Value;
use std::io::ErrorKind;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;

use crate::WEBHOOK;

pub struct Rendered {
    /// "base", "overlays/local" or "observability", for messages.
    pub name: &'static str,
    pub objects: Vec<Value>,
}

pub fn manifests_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../manifests")
}

/// Runs `kubectl kustomize <dir>` with `$SPOTWRIGHT_KUBECTL` (./test points
/// it at the local cluster's kubectl), else kubectl from PATH. Panics (on one
/// line) if there is none or it fails.
fn kustomize(dir: &Path) -> String {
    let kubectl = std::env::var_os("SPOTWRIGHT_KUBECTL")
        .filter(|k| !k.is_empty())
        .map(PathBuf::from)
        .unwrap_or_else(|| "kubectl".into());
    let result: std::io::Result<Output> = Command::new(&kubectl).arg("kustomize").arg(dir).output();
    let places = "from $SPOTWRIGHT_KUBECTL, else PATH";
    match result {
        Ok(out) if out.status.success() => {
            String::from_utf8(out.stdout).expect("kubectl output is UTF-8")
        }
        Ok(out) => panic!(
            "`{} kustomize {}` failed ({}; {places}): {}",
            kubectl.display(),
            dir.display(),
            out.status,
            String::from_utf8_lossy(&out.stderr)
                .split_whitespace()
                .collect::<Vec<_>>()
                .join(" ")
        ),
        Err(e) if e.kind() == ErrorKind::NotFound => panic!(
            "kubectl not found ({places}); run ./test, which installs it, or put kubectl on PATH"
        ),
        Err(e) => panic!(
            "could not run `{} kustomize` ({places}): {e}",
            kubectl.display()
        ),
    }
}

fn render(name: &'static str) -> Rendered {
    let dir = manifests_dir().join(name);
    let text = kustomize(&dir);
    let objects = parse_docs(&text, &format!("`kubectl kustomize {}`", dir.display()));
    Rendered { name, objects }
}

pub fn base() -> &'static Rendered {
    static BASE: OnceLock<Rendered> = OnceLock::new();
    BASE.get_or_init(|| render("base"))
}

pub fn local() -> &'static Rendered {
    static LOCAL: OnceLock<Rendered> = OnceLock::new();
    LOCAL.get_or_init(|| render("overlays/local"))
}

/// manifests/overlays/eks: what EKS users apply.
pub fn eks() -> &'static Rendered {
    static EKS: OnceLock<Rendered> = OnceLock::new();
    EKS.get_or_init(|| render("overlays/eks"))
}

/// manifests/observability: ServiceMonitors and the Grafana dashboard.
pub fn observability() -> &'static Rendered {
    static OBSERVABILITY: OnceLock<Rendered> = OnceLock::new();
    OBSERVABILITY.get_or_init(|| render("observability"))
}

pub fn parse_docs(text: &str, origin: &str) -> Vec<Value> {
    let mut out = Vec::new();
    for doc in serde_yaml::Deserializer::from_str(text) {
        let v = Value::deserialize(doc).unwrap_or_else(|e| panic!("{origin}: invalid YAML: {e}"));
        match v {
            Value::Null => {}
            Value::Object(_) => out.push(v),
            other => panic!("{origin}: a document is not an object: {other}"),
        }
    }
    out
}

// ---------------------------------------------------------------------------
// Accessors
// ---------------------------------------------------------------------------

pub fn kind(o: &Value) -> &str {
    o["kind"].as_str().unwrap_or("")
}

pub fn obj_name(o: &Value) -> &str {
    o["metadata"]["name"].as_str().unwrap_or("")
}

/// The elements of `v` if it is an array, else none.
pub fn items(v: &Value) -> impl Iterator<Item = &Value> {
    v.as_array().into_iter().flatten()
}

/// The string elements of `v` if it is an array.
pub fn strs(v: &Value) -> Vec<&str> {
    items(v).filter_map(Value::as_str).collect()
}

/// `Kind/name`, for messages.
pub fn label(o: &Value) -> String {
    format!("{}/{}", kind(o), obj_name(o))
}

impl Rendered {
    pub fn get(&self, kind_: &str, name: &str) -> &Value {
        self.objects
            .iter()
            .find(|o| kind(o) == kind_ && obj_name(o) == name)
            .unwrap_or_else(|| {
                panic!(
                    "{}: no {kind_}/{name} in the kubectl kustomize output",
                    self.name
                )
            })
    }

    pub fn all(&self, kind_: &str) -> Vec<&Value> {
        self.objects.iter().filter(|o| kind(o) == kind_).collect()
    }

    /// The one webhook of MutatingWebhookConfiguration/spotwright-webhook.
    pub fn webhook(&self) -> &Value {
        let mwc = self.get("MutatingWebhookConfiguration", WEBHOOK);
        let hooks = mwc["webhooks"].as_array().unwrap_or_else(|| {
            panic!(
                "{}: MutatingWebhookConfiguration/{WEBHOOK} has no webhooks",
                self.name
            )
        });
        assert_eq!(
            hooks.len(),
            1,
            "{}: MutatingWebhookConfiguration/{WEBHOOK} must register exactly one webhook",
            self.name
        );
        assert_eq!(
            hooks[0]["name"], "pods.spotwright.io",
            "{}: MutatingWebhookConfiguration/{WEBHOOK}: the webhook must be named pods.spotwright.io",
            self.name
        );
        &hooks[0]
    }

    pub fn deployment(&self) -> &Value {
        self.get("Deployment", WEBHOOK)
    }

    /// The ConfigMap `name`'s `data[key]`, parsed as one YAML document.
    pub fn config_map_yaml(&self, name: &str, key: &str) -> Value {
        let cm = self.get("ConfigMap", name);
        let text = cm["data"][key]
            .as_str()
            .unwrap_or_else(|| panic!("{}: ConfigMap/{name} has no data key {key}", self.name));
        let mut docs = parse_docs(text, &format!("{}: ConfigMap/{name} data.{key}", self.name));
        assert_eq!(
            docs.len(),
            1,
            "{}: ConfigMap/{name} data.{key} must hold exactly one YAML document",
            self.name
        );
        docs.remove(0)
    }
}

/// `(workload, pod spec)` for every object of the rendering that carries a
/// pod template (or is a Pod).
pub fn pod_specs(r: &Rendered) -> Vec<(&Value, &Value)> {
    r.objects
        .iter()
        .filter_map(|o| {
            let spec = match kind(o) {
                "Deployment" | "StatefulSet" | "DaemonSet" | "ReplicaSet" | "Job" => {
                    &o["spec"]["template"]["spec"]
                }
                "CronJob" => &o["spec"]["jobTemplate"]["spec"]["template"]["spec"],
                "Pod" => &o["spec"],
                _ => return None,
            };
            Some((o, spec))
        })
        .collect()
}

/// `(kind-of-container, container)` for every init and regular container.
pub fn pod_containers(pod_spec: &Value) -> Vec<(&'static str, &Value)> {
    let mut out = Vec::new();
    for (field, what) in [
        ("initContainers", "initContainer"),
        ("containers", "container"),
    ] {
        out.extend(items(&pod_spec[field]).map(|c| (what, c)));
    }
    out
}

/// The Deployment's init or regular container called `name`.
pub fn container<'a>(r: &'a Rendered, name: &str) -> &'a Value {
    container_of(r, WEBHOOK, name)
}

/// Deployment `deployment`'s init or regular container called `name`.
pub fn container_of<'a>(r: &'a Rendered, deployment: &str, name: &str) -> &'a Value {
    let spec = &r.get("Deployment", deployment)["spec"]["template"]["spec"];
    let found = pod_containers(spec)
        .into_iter()
        .find(|(_, c)| c["name"] == name);
    found.map(|(_, c)| c).unwrap_or_else(|| {
        panic!(
            "{}: Deployment/{deployment} has no container named {name}",
            r.name
        )
    })
}
