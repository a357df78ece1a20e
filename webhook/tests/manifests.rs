//! The install manifests' contract (manifests/base and manifests/overlays/local).
//!
//! The manifests are rendered with `kubectl kustomize` when `kubectl` is on
//! PATH (or named by `$KUBECTL`). Without it, a small built-in renderer reads
//! the files listed in each kustomization.yaml and applies the handful of
//! kustomize features the manifests use (namespace, labels, images, replicas,
//! JSON6902 patches); it refuses anything else loudly rather than check a
//! half-rendered tree. `SPOTWRIGHT_MANIFESTS_RENDERER=files` forces the
//! built-in renderer. When kubectl is present, `fallback_renderer_agrees_with_kubectl`
//! checks that both renderers produce the same objects.
//!
//! Uses std, serde_yaml and serde_json only, not the webhook library.

use serde::Deserialize;
use serde_json::{json, Map, Value};
use std::collections::{BTreeMap, BTreeSet};
use std::io::ErrorKind;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

const NS: &str = "spotwright-system";
const WEBHOOK: &str = "spotwright-webhook";
const SYSTEM_NAMESPACES: [&str; 4] = ["kube-system", "kube-public", "kube-node-lease", NS];
const CRDS: [&str; 3] = [
    "nodepools.spotwright.io",
    "nodeclasses.spotwright.io",
    "nodeclaims.spotwright.io",
];
const SECRETS: [&str; 2] = ["spotwright-webhook-tls", "spotwright-webhook-ca"];

// ---------------------------------------------------------------------------
// Rendering
// ---------------------------------------------------------------------------

struct Rendered {
    /// "base" or "overlays/local", for messages.
    name: &'static str,
    /// "kubectl kustomize" or "built-in renderer".
    via: &'static str,
    objects: Vec<Value>,
}

fn manifests_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../manifests")
}

fn kubectl() -> String {
    std::env::var("KUBECTL").unwrap_or_else(|_| "kubectl".to_string())
}

/// Renders with kubectl; `None` when kubectl is not installed.
fn render_with_kubectl(dir: &Path) -> Option<Vec<Value>> {
    match Command::new(kubectl()).arg("kustomize").arg(dir).output() {
        Ok(out) if out.status.success() => {
            let text = String::from_utf8(out.stdout).expect("kubectl output is UTF-8");
            Some(parse_docs(
                &text,
                &format!("`kubectl kustomize {}`", dir.display()),
            ))
        }
        Ok(out) => panic!(
            "`{} kustomize {}` failed ({}): {}",
            kubectl(),
            dir.display(),
            out.status,
            String::from_utf8_lossy(&out.stderr)
        ),
        Err(e) if e.kind() == ErrorKind::NotFound => None,
        Err(e) => panic!("could not run `{} kustomize`: {e}", kubectl()),
    }
}

fn render(name: &'static str) -> Rendered {
    let dir = manifests_dir().join(name);
    let forced = std::env::var("SPOTWRIGHT_MANIFESTS_RENDERER").ok();
    if forced.as_deref() != Some("files") {
        if let Some(objects) = render_with_kubectl(&dir) {
            return Rendered {
                name,
                via: "kubectl kustomize",
                objects,
            };
        }
        eprintln!("kubectl not found: rendering {name} with the built-in renderer");
    }
    let objects = build(&dir);
    assert!(
        !objects.is_empty(),
        "neither kubectl nor the built-in renderer produced any object from {}",
        dir.display()
    );
    Rendered {
        name,
        via: "built-in renderer",
        objects,
    }
}

fn base() -> &'static Rendered {
    static BASE: OnceLock<Rendered> = OnceLock::new();
    BASE.get_or_init(|| render("base"))
}

fn local() -> &'static Rendered {
    static LOCAL: OnceLock<Rendered> = OnceLock::new();
    LOCAL.get_or_init(|| render("overlays/local"))
}

fn parse_docs(text: &str, origin: &str) -> Vec<Value> {
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

// --- the built-in renderer -------------------------------------------------

const CLUSTER_SCOPED: [&str; 12] = [
    "Namespace",
    "CustomResourceDefinition",
    "ClusterRole",
    "ClusterRoleBinding",
    "PriorityClass",
    "MutatingWebhookConfiguration",
    "ValidatingWebhookConfiguration",
    "ValidatingAdmissionPolicy",
    "ValidatingAdmissionPolicyBinding",
    "StorageClass",
    "IngressClass",
    "RuntimeClass",
];

fn is_cluster_scoped(kind: &str) -> bool {
    CLUSTER_SCOPED.contains(&kind)
}

/// Renders a kustomization directory from its files. Supports exactly the
/// features Spotwright's manifests use and panics on any other.
fn build(dir: &Path) -> Vec<Value> {
    let kpath = ["kustomization.yaml", "kustomization.yml", "Kustomization"]
        .iter()
        .map(|f| dir.join(f))
        .find(|p| p.is_file())
        .unwrap_or_else(|| panic!("{}: no kustomization.yaml", dir.display()));
    let ktext = std::fs::read_to_string(&kpath).unwrap();
    let k: Value = serde_yaml::from_str(&ktext)
        .unwrap_or_else(|e| panic!("{}: invalid YAML: {e}", kpath.display()));
    let known = [
        "apiVersion",
        "kind",
        "resources",
        "namespace",
        "labels",
        "images",
        "replicas",
        "patches",
    ];
    for key in k.as_object().expect("kustomization is a map").keys() {
        assert!(
            known.contains(&key.as_str()),
            "{}: the built-in renderer does not support `{key}`; install kubectl (>= 1.27) \
             or teach tests/manifests.rs about it",
            kpath.display()
        );
    }

    let mut objs = Vec::new();
    for r in strs(&k["resources"]) {
        let p = dir.join(r);
        if p.is_dir() {
            objs.extend(build(&p));
        } else {
            let text = std::fs::read_to_string(&p)
                .unwrap_or_else(|e| panic!("{}: resource {r}: {e}", kpath.display()));
            objs.extend(parse_docs(&text, &p.display().to_string()));
        }
    }

    for patch in k["patches"].as_array().into_iter().flatten() {
        let text = match (patch.get("patch"), patch.get("path")) {
            (Some(Value::String(s)), _) => s.clone(),
            (_, Some(Value::String(f))) => std::fs::read_to_string(dir.join(f)).unwrap(),
            _ => panic!(
                "{}: a patch has neither `patch` nor `path`",
                kpath.display()
            ),
        };
        let ops: Value = serde_yaml::from_str(&text).unwrap();
        let ops = ops.as_array().unwrap_or_else(|| {
            panic!(
                "{}: the built-in renderer applies JSON6902 patches only (a YAML list of ops); \
                 install kubectl for strategic-merge patches",
                kpath.display()
            )
        });
        let target = &patch["target"];
        let mut hit = false;
        for o in objs.iter_mut() {
            if target_matches(target, o) {
                hit = true;
                for op in ops {
                    json6902(o, op);
                }
            }
        }
        assert!(
            hit,
            "{}: patch target {target} matches no object",
            kpath.display()
        );
    }

    for r in k["replicas"].as_array().into_iter().flatten() {
        let name = r["name"].as_str().unwrap();
        let mut hit = false;
        for o in objs.iter_mut() {
            let workload = ["Deployment", "StatefulSet", "ReplicaSet"].contains(&kind(o));
            if workload && obj_name(o) == name {
                o["spec"]["replicas"] = r["count"].clone();
                hit = true;
            }
        }
        assert!(
            hit,
            "{}: replicas for unknown workload {name}",
            kpath.display()
        );
    }

    for img in k["images"].as_array().into_iter().flatten() {
        let name = img["name"].as_str().unwrap();
        for o in objs.iter_mut() {
            for c in containers_mut(o) {
                let Some(image) = c["image"].as_str() else {
                    continue;
                };
                let (repo, tag) = split_image(image);
                if repo != name {
                    continue;
                }
                let repo = img["newName"].as_str().unwrap_or(repo).to_string();
                let new = match (img["digest"].as_str(), img["newTag"].as_str()) {
                    (Some(d), _) => format!("{repo}@{d}"),
                    (None, Some(t)) => format!("{repo}:{t}"),
                    (None, None) => format!("{repo}{tag}"),
                };
                c["image"] = json!(new);
            }
        }
    }

    if let Some(ns) = k["namespace"].as_str() {
        for o in objs.iter_mut() {
            match kind(o) {
                "Namespace" => o["metadata"]["name"] = json!(ns),
                k if is_cluster_scoped(k) => {}
                _ => o["metadata"]["namespace"] = json!(ns),
            }
            if ["RoleBinding", "ClusterRoleBinding"].contains(&kind(o)) {
                for s in o["subjects"].as_array_mut().into_iter().flatten() {
                    if s["kind"] == "ServiceAccount" {
                        s["namespace"] = json!(ns);
                    }
                }
            }
            if kind(o).ends_with("WebhookConfiguration") {
                for w in o["webhooks"].as_array_mut().into_iter().flatten() {
                    if let Some(svc) = w["clientConfig"].get_mut("service") {
                        svc["namespace"] = json!(ns);
                    }
                }
            }
        }
    }

    for l in k["labels"].as_array().into_iter().flatten() {
        assert!(
            l["includeSelectors"] != json!(true),
            "{}: the built-in renderer does not add labels to selectors",
            kpath.display()
        );
        let pairs = l["pairs"].as_object().cloned().unwrap_or_default();
        let templates = l["includeTemplates"] == json!(true);
        for o in objs.iter_mut() {
            merge_labels(&mut o["metadata"], &pairs);
            if templates && o["spec"].get("template").is_some() {
                merge_labels(&mut o["spec"]["template"]["metadata"], &pairs);
            }
        }
    }
    objs
}

fn merge_labels(meta: &mut Value, pairs: &Map<String, Value>) {
    if !meta.is_object() {
        *meta = json!({});
    }
    if !meta["labels"].is_object() {
        meta["labels"] = json!({});
    }
    for (k, v) in pairs {
        meta["labels"][k] = v.clone();
    }
}

fn split_image(image: &str) -> (&str, &str) {
    if let Some(i) = image.find('@') {
        return image.split_at(i);
    }
    match image.rfind(':') {
        Some(i) if !image[i..].contains('/') => image.split_at(i),
        _ => (image, ""),
    }
}

fn target_matches(target: &Value, o: &Value) -> bool {
    let api = o["apiVersion"].as_str().unwrap_or("");
    let (group, version) = api.rsplit_once('/').unwrap_or(("", api));
    let field = |f: &str, actual: &str| target[f].as_str().is_none_or(|want| want == actual);
    field("kind", kind(o))
        && field("name", obj_name(o))
        && field("group", group)
        && field("version", version)
        && field(
            "namespace",
            o["metadata"]["namespace"].as_str().unwrap_or(""),
        )
}

/// RFC 6902 add/remove/replace, enough for overlays.
fn json6902(doc: &mut Value, op: &Value) {
    let path = op["path"].as_str().expect("patch op without path");
    let (parent, last) = path.rsplit_once('/').expect("patch path must start with /");
    let last = last.replace("~1", "/").replace("~0", "~");
    let parent = doc
        .pointer_mut(parent)
        .unwrap_or_else(|| panic!("patch path {path}: parent does not exist"));
    match (op["op"].as_str(), parent) {
        (Some("add"), Value::Array(a)) if last == "-" => a.push(op["value"].clone()),
        (Some("add"), Value::Array(a)) => a.insert(last.parse().unwrap(), op["value"].clone()),
        (Some("add" | "replace"), Value::Object(m)) => {
            m.insert(last, op["value"].clone());
        }
        (Some("replace"), Value::Array(a)) => {
            a[last.parse::<usize>().unwrap()] = op["value"].clone()
        }
        (Some("remove"), Value::Object(m)) => {
            m.remove(&last)
                .unwrap_or_else(|| panic!("patch remove {path}: no such field"));
        }
        (Some("remove"), Value::Array(a)) => {
            a.remove(last.parse().unwrap());
        }
        (o, _) => panic!("patch op {o:?} on {path} is not supported by the built-in renderer"),
    }
}

// ---------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------

fn kind(o: &Value) -> &str {
    o["kind"].as_str().unwrap_or("")
}

fn obj_name(o: &Value) -> &str {
    o["metadata"]["name"].as_str().unwrap_or("")
}

fn strs(v: &Value) -> Vec<&str> {
    v.as_array()
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .collect()
}

fn label(o: &Value) -> String {
    format!("{}/{}", kind(o), obj_name(o))
}

impl Rendered {
    fn get(&self, kind_: &str, name: &str) -> &Value {
        self.objects
            .iter()
            .find(|o| kind(o) == kind_ && obj_name(o) == name)
            .unwrap_or_else(|| {
                panic!(
                    "{}: no {kind_}/{name} in the {} output",
                    self.name, self.via
                )
            })
    }

    fn all(&self, kind_: &str) -> Vec<&Value> {
        self.objects.iter().filter(|o| kind(o) == kind_).collect()
    }

    fn webhook(&self) -> &Value {
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

    fn deployment(&self) -> &Value {
        self.get("Deployment", WEBHOOK)
    }
}

/// `(kind-of-container, container)` for every init and regular container.
fn pod_containers(pod_spec: &Value) -> Vec<(&'static str, &Value)> {
    let mut out = Vec::new();
    for (field, what) in [
        ("initContainers", "initContainer"),
        ("containers", "container"),
    ] {
        for c in pod_spec[field].as_array().into_iter().flatten() {
            out.push((what, c));
        }
    }
    out
}

fn containers_mut(o: &mut Value) -> Vec<&mut Value> {
    let Some(spec) = o.pointer_mut("/spec/template/spec") else {
        return Vec::new();
    };
    let Value::Object(spec) = spec else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for (k, v) in spec.iter_mut() {
        if k == "initContainers" || k == "containers" {
            out.extend(v.as_array_mut().into_iter().flatten());
        }
    }
    out
}

fn container<'a>(r: &'a Rendered, name: &str) -> &'a Value {
    let spec = &r.deployment()["spec"]["template"]["spec"];
    let found = pod_containers(spec)
        .into_iter()
        .find(|(_, c)| c["name"] == name);
    found.map(|(_, c)| c).unwrap_or_else(|| {
        panic!(
            "{}: Deployment/{WEBHOOK} has no container named {name}",
            r.name
        )
    })
}

fn selector_matches(selector: &Value, labels: &Value) -> bool {
    let ml = selector["matchLabels"]
        .as_object()
        .cloned()
        .unwrap_or_default();
    !ml.is_empty() && ml.iter().all(|(k, v)| &labels[k] == v)
}

// ---------------------------------------------------------------------------
// Base: CRDs, namespace, scoping
// ---------------------------------------------------------------------------

#[test]
fn base_includes_the_three_crds() {
    let r = base();
    for name in CRDS {
        let crd = r.get("CustomResourceDefinition", name);
        assert_eq!(
            crd["spec"]["group"], "spotwright.io",
            "CustomResourceDefinition/{name}: group must be spotwright.io"
        );
        assert_eq!(
            crd["spec"]["scope"], "Cluster",
            "CustomResourceDefinition/{name}: kinds are cluster-scoped"
        );
    }
    // Every generated CRD file is listed, so a new kind is not forgotten.
    let crd_dir = manifests_dir().join("base/crds");
    for entry in std::fs::read_dir(&crd_dir).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "yaml") {
            for doc in parse_docs(&std::fs::read_to_string(&path).unwrap(), "crd") {
                r.get("CustomResourceDefinition", obj_name(&doc));
            }
        }
    }
}

#[test]
fn objects_are_in_spotwright_system_or_cluster_scoped() {
    let r = base();
    let ns = r.get("Namespace", NS);
    assert_eq!(
        ns["metadata"]["labels"]["spotwright.io/webhook"], "disabled",
        "Namespace/{NS}: must be labelled spotwright.io/webhook=disabled so the webhook's namespaceSelector skips it"
    );
    for o in &r.objects {
        let ns_field = &o["metadata"]["namespace"];
        if is_cluster_scoped(kind(o)) {
            assert!(
                ns_field.is_null(),
                "{}: cluster-scoped, must not carry a namespace",
                label(o)
            );
        } else {
            assert_eq!(
                ns_field,
                NS,
                "{}: namespaced objects must be in {NS}",
                label(o)
            );
        }
    }
}

#[test]
fn every_object_is_labelled_part_of_spotwright() {
    for r in [base(), local()] {
        for o in &r.objects {
            assert_eq!(
                o["metadata"]["labels"]["app.kubernetes.io/part-of"],
                "spotwright",
                "{}: {} must carry app.kubernetes.io/part-of=spotwright",
                r.name,
                label(o)
            );
        }
        let d = r.deployment();
        assert!(
            d["spec"]["selector"]["matchLabels"]
                .get("app.kubernetes.io/part-of")
                .is_none(),
            "{}: Deployment/{WEBHOOK}: the part-of label must not enter the (immutable) selector",
            r.name
        );
    }
}

// ---------------------------------------------------------------------------
// MutatingWebhookConfiguration
// ---------------------------------------------------------------------------

fn assert_registration(r: &Rendered) {
    let w = r.webhook();
    let who = format!("{}: MutatingWebhookConfiguration/{WEBHOOK}", r.name);
    assert_eq!(
        w["failurePolicy"], "Ignore",
        "{who}: failurePolicy must be Ignore (a down webhook must not stop pod creation)"
    );
    assert_eq!(w["sideEffects"], "None", "{who}: sideEffects must be None");
    assert_eq!(w["timeoutSeconds"], 2, "{who}: timeoutSeconds must be 2");
    assert_eq!(
        w["admissionReviewVersions"],
        json!(["v1"]),
        "{who}: admissionReviewVersions must be [v1]"
    );
    assert_eq!(
        w["reinvocationPolicy"], "IfNeeded",
        "{who}: reinvocationPolicy must be IfNeeded"
    );
    assert_eq!(
        w["matchPolicy"], "Equivalent",
        "{who}: matchPolicy must be Equivalent"
    );

    let rules = w["rules"]
        .as_array()
        .unwrap_or_else(|| panic!("{who}: no rules"));
    assert!(!rules.is_empty(), "{who}: rules must not be empty");
    for rule in rules {
        assert_eq!(
            rule["operations"],
            json!(["CREATE"]),
            "{who}: rules must be CREATE only, got {rule}"
        );
        assert_eq!(
            rule["apiGroups"],
            json!([""]),
            "{who}: rules must be the core group only, got {rule}"
        );
        assert_eq!(
            rule["apiVersions"],
            json!(["v1"]),
            "{who}: rules must be v1 only, got {rule}"
        );
        assert_eq!(
            rule["resources"],
            json!(["pods"]),
            "{who}: rules must be pods only (no subresources), got {rule}"
        );
        assert_eq!(
            rule["scope"], "Namespaced",
            "{who}: rules must have scope Namespaced, got {rule}"
        );
    }

    let sel = &w["namespaceSelector"];
    let excluded: BTreeSet<&str> = sel["matchExpressions"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|e| e["key"] == "kubernetes.io/metadata.name" && e["operator"] == "NotIn")
        .flat_map(|e| strs(&e["values"]))
        .collect();
    for ns in SYSTEM_NAMESPACES {
        assert!(
            excluded.contains(ns),
            "{who}: namespaceSelector must exclude kubernetes.io/metadata.name {ns} (NotIn); excludes {excluded:?}"
        );
    }
    let by_label = sel["matchExpressions"]
        .as_array()
        .into_iter()
        .flatten()
        .any(|e| {
            e["key"] == "spotwright.io/webhook"
                && e["operator"] == "NotIn"
                && strs(&e["values"]) == ["disabled"]
        });
    assert!(
        by_label,
        "{who}: namespaceSelector must exclude namespaces labelled spotwright.io/webhook=disabled"
    );
    assert!(
        sel.get("matchLabels").is_none(),
        "{who}: namespaceSelector must not require labels (opt-in is by annotation)"
    );

    let conds = w["matchConditions"]
        .as_array()
        .unwrap_or_else(|| panic!("{who}: no matchConditions"));
    assert!(
        !conds.is_empty(),
        "{who}: at least one matchCondition is required as a cheap pre-filter"
    );
    assert!(
        conds.len() <= 64,
        "{who}: at most 64 matchConditions are allowed"
    );
    let mut names = BTreeSet::new();
    for c in conds {
        let name = c["name"]
            .as_str()
            .unwrap_or_else(|| panic!("{who}: a matchCondition has no name"));
        assert!(
            !name.is_empty() && name.len() <= 63 && names.insert(name),
            "{who}: matchCondition names must be unique, non-empty, <= 63 chars: {name}"
        );
        let expr = c["expression"].as_str().unwrap_or("");
        assert!(
            expr.contains("object."),
            "{who}: matchCondition {name} must test the pod (`object`), got {expr:?}"
        );
        assert!(
            !expr.contains("oldObject"),
            "{who}: matchCondition {name}: CREATE has no oldObject"
        );
        assert_eq!(
            expr.matches('(').count(),
            expr.matches(')').count(),
            "{who}: matchCondition {name}: unbalanced parentheses in {expr:?}"
        );
    }
    for wanted in [
        "exclude-bound-pods",
        "exclude-daemonset-pods",
        "exclude-mirror-pods",
    ] {
        assert!(
            names.contains(wanted),
            "{who}: matchCondition {wanted} is missing"
        );
    }
}

#[test]
fn webhook_registration_follows_the_contract() {
    assert_registration(base());
}

#[test]
fn webhook_client_config_targets_the_service() {
    let r = base();
    let w = r.webhook();
    let who = format!("MutatingWebhookConfiguration/{WEBHOOK}");
    let cc = &w["clientConfig"];
    assert_eq!(
        cc["service"],
        json!({"name": WEBHOOK, "namespace": NS, "path": "/mutate", "port": 443}),
        "{who}: clientConfig.service must be {WEBHOOK}.{NS}:443/mutate"
    );
    assert!(
        cc.get("url").is_none(),
        "{who}: the base must use service, not url"
    );
    assert!(
        cc.get("caBundle").is_none(),
        "{who}: caBundle must be absent so that re-applying the manifests does not wipe the one the certs sidecar set"
    );

    let svc = r.get("Service", WEBHOOK);
    let ports = svc["spec"]["ports"].as_array().unwrap();
    let https = ports
        .iter()
        .find(|p| p["port"] == 443)
        .unwrap_or_else(|| panic!("Service/{WEBHOOK}: no port 443"));
    assert_eq!(
        https["targetPort"], "https",
        "Service/{WEBHOOK}: port 443 must target the container port named https"
    );
    assert!(
        ports
            .iter()
            .any(|p| p["port"] == 8080 && p["targetPort"] == "metrics"),
        "Service/{WEBHOOK}: must expose the metrics port 8080"
    );
    let tpl_labels = &r.deployment()["spec"]["template"]["metadata"]["labels"];
    assert!(
        svc["spec"]["selector"]
            .as_object()
            .is_some_and(|s| !s.is_empty() && s.iter().all(|(k, v)| &tpl_labels[k] == v)),
        "Service/{WEBHOOK}: selector must select the Deployment's pods"
    );
    let wh = container(r, "webhook");
    let ports: BTreeMap<&str, &Value> = wh["ports"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|p| (p["name"].as_str().unwrap_or(""), &p["containerPort"]))
        .collect();
    assert_eq!(
        ports.get("https"),
        Some(&&json!(8443)),
        "Deployment/{WEBHOOK}: container webhook needs port https=8443"
    );
    assert_eq!(
        ports.get("metrics"),
        Some(&&json!(8080)),
        "Deployment/{WEBHOOK}: container webhook needs port metrics=8080"
    );
}

// ---------------------------------------------------------------------------
// Deployment and PDB
// ---------------------------------------------------------------------------

#[test]
fn deployment_is_highly_available() {
    let r = base();
    let d = r.deployment();
    let who = format!("Deployment/{WEBHOOK}");
    assert_eq!(d["spec"]["replicas"], 2, "{who}: must run 2 replicas");
    let pod = &d["spec"]["template"]["spec"];
    let anti = &pod["affinity"]["podAntiAffinity"];
    let terms: Vec<&Value> = anti["requiredDuringSchedulingIgnoredDuringExecution"]
        .as_array()
        .into_iter()
        .flatten()
        .chain(
            anti["preferredDuringSchedulingIgnoredDuringExecution"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|p| &p["podAffinityTerm"]),
        )
        .collect();
    let tpl_labels = &d["spec"]["template"]["metadata"]["labels"];
    assert!(
        terms
            .iter()
            .any(|t| t["topologyKey"] == "kubernetes.io/hostname"
                && selector_matches(&t["labelSelector"], tpl_labels)),
        "{who}: needs pod anti-affinity on kubernetes.io/hostname selecting its own pods"
    );
    assert!(
        pod["topologySpreadConstraints"]
            .as_array()
            .into_iter()
            .flatten()
            .any(|t| {
                t["topologyKey"] == "topology.kubernetes.io/zone"
                    && t["whenUnsatisfiable"] == "ScheduleAnyway"
            }),
        "{who}: needs a ScheduleAnyway topology spread over zones"
    );
    let avoid_own_nodes = pod["affinity"]["nodeAffinity"]
        ["preferredDuringSchedulingIgnoredDuringExecution"]
        .as_array()
        .into_iter()
        .flatten()
        .flat_map(|p| {
            p["preference"]["matchExpressions"]
                .as_array()
                .into_iter()
                .flatten()
        })
        .any(|e| e["key"] == "spotwright.io/capacity-type" && e["operator"] == "DoesNotExist");
    assert!(
        avoid_own_nodes,
        "{who}: should prefer nodes without spotwright.io/capacity-type"
    );
    assert!(
        pod["tolerations"].as_array().is_none_or(|t| t.is_empty()),
        "{who}: must not tolerate anything (never on Spot nodes)"
    );
    let prio = pod["priorityClassName"]
        .as_str()
        .unwrap_or_else(|| panic!("{who}: needs a priorityClassName"));
    if !prio.starts_with("system-") {
        r.get("PriorityClass", prio);
    }
    assert_eq!(
        pod["terminationGracePeriodSeconds"], 30,
        "{who}: terminationGracePeriodSeconds must be 30"
    );
    assert_eq!(
        pod["serviceAccountName"], WEBHOOK,
        "{who}: must run as ServiceAccount {WEBHOOK}"
    );
    assert_eq!(
        pod["automountServiceAccountToken"], true,
        "{who}: needs its API token"
    );
    let ann = &d["spec"]["template"]["metadata"]["annotations"];
    assert_eq!(
        ann["prometheus.io/scrape"], "true",
        "{who}: pods must be annotated prometheus.io/scrape"
    );
    assert_eq!(
        ann["prometheus.io/port"], "8080",
        "{who}: pods must be annotated prometheus.io/port=8080"
    );

    let pdb = r.get("PodDisruptionBudget", WEBHOOK);
    assert_eq!(
        pdb["spec"]["minAvailable"], 1,
        "PodDisruptionBudget/{WEBHOOK}: minAvailable must be 1"
    );
    assert!(
        selector_matches(&pdb["spec"]["selector"], tpl_labels),
        "PodDisruptionBudget/{WEBHOOK}: selector must select the Deployment's pods"
    );
}

#[test]
fn every_container_is_hardened() {
    let r = base();
    let d = r.deployment();
    let pod = &d["spec"]["template"]["spec"];
    for f in ["hostNetwork", "hostPID", "hostIPC"] {
        assert!(
            pod[f] != json!(true),
            "Deployment/{WEBHOOK}: {f} must not be set"
        );
    }
    for v in pod["volumes"].as_array().into_iter().flatten() {
        assert!(
            v.get("hostPath").is_none(),
            "Deployment/{WEBHOOK}: volume {} must not be a hostPath",
            v["name"]
        );
    }
    let containers = pod_containers(pod);
    assert!(
        containers.len() >= 3,
        "Deployment/{WEBHOOK}: expected certs-init, webhook and certs containers"
    );
    for (what, c) in containers {
        let who = format!("Deployment/{WEBHOOK} {what} {}", c["name"]);
        let sc = &c["securityContext"];
        assert_eq!(
            sc["runAsNonRoot"], true,
            "{who}: securityContext.runAsNonRoot must be true"
        );
        assert_eq!(
            sc["runAsUser"], 65532,
            "{who}: securityContext.runAsUser must be 65532"
        );
        assert_eq!(
            sc["runAsGroup"], 65532,
            "{who}: securityContext.runAsGroup must be 65532"
        );
        assert_eq!(
            sc["readOnlyRootFilesystem"], true,
            "{who}: securityContext.readOnlyRootFilesystem must be true"
        );
        assert_eq!(
            sc["allowPrivilegeEscalation"], false,
            "{who}: securityContext.allowPrivilegeEscalation must be false"
        );
        assert!(
            sc["privileged"] != json!(true),
            "{who}: must not be privileged"
        );
        assert!(
            strs(&sc["capabilities"]["drop"]).contains(&"ALL"),
            "{who}: capabilities must drop ALL"
        );
        assert!(
            sc["capabilities"]["add"]
                .as_array()
                .is_none_or(|a| a.is_empty()),
            "{who}: must not add capabilities"
        );
        let seccomp = if sc["seccompProfile"].is_null() {
            &pod["securityContext"]["seccompProfile"]
        } else {
            &sc["seccompProfile"]
        };
        assert_eq!(
            seccomp["type"], "RuntimeDefault",
            "{who}: seccompProfile must be RuntimeDefault"
        );

        let res = &c["resources"];
        for (kind_, field) in [
            ("requests", "cpu"),
            ("requests", "memory"),
            ("limits", "memory"),
        ] {
            assert!(
                res[kind_][field].is_string(),
                "{who}: resources.{kind_}.{field} must be set"
            );
        }
        assert!(
            c["image"]
                .as_str()
                .is_some_and(|i| i.starts_with("ghcr.io/spotwright/spotwright:")),
            "{who}: must use the ghcr.io/spotwright/spotwright image, got {}",
            c["image"]
        );
        let pod_ns = c["env"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|e| e["name"] == "POD_NAMESPACE");
        assert!(
            pod_ns.is_some_and(|e| e["valueFrom"]["fieldRef"]["fieldPath"] == "metadata.namespace"),
            "{who}: needs env POD_NAMESPACE from the downward API"
        );
        assert!(
            c["volumeMounts"]
                .as_array()
                .into_iter()
                .flatten()
                .any(|m| m["name"] == "tls" && m["mountPath"] == "/tls"),
            "{who}: must mount the tls volume at /tls"
        );
    }
    let tls = pod["volumes"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|v| v["name"] == "tls");
    let tls = tls.unwrap_or_else(|| panic!("Deployment/{WEBHOOK}: no volume tls"));
    assert_eq!(
        tls["emptyDir"]["medium"], "Memory",
        "Deployment/{WEBHOOK}: volume tls must be an in-memory emptyDir"
    );
    assert!(
        tls["emptyDir"]["sizeLimit"].is_string(),
        "Deployment/{WEBHOOK}: volume tls needs a sizeLimit"
    );
}

#[test]
fn containers_run_the_right_commands() {
    let r = base();
    let cmdline = |c: &Value| -> Vec<String> {
        strs(&c["command"])
            .into_iter()
            .chain(strs(&c["args"]))
            .map(str::to_string)
            .collect()
    };
    let init = cmdline(container(r, "certs-init"));
    assert_eq!(
        init[..2],
        ["spotwright-certs", "ensure"],
        "Deployment/{WEBHOOK} initContainer certs-init: must run `spotwright-certs ensure`"
    );
    assert!(
        init.iter().any(|a| a == "--once"),
        "Deployment/{WEBHOOK} initContainer certs-init: must run with --once"
    );
    let inits = &r.deployment()["spec"]["template"]["spec"]["initContainers"];
    assert!(
        inits.as_array().into_iter().flatten().any(|c| c["name"] == "certs-init"),
        "Deployment/{WEBHOOK}: certs-init must be an initContainer so the webhook starts with a certificate"
    );

    let writes_tls = |args: &[String]| {
        args.iter().any(|a| a == "--write-dir=/tls")
            || args
                .windows(2)
                .any(|w| w[0] == "--write-dir" && w[1] == "/tls")
    };
    assert!(
        writes_tls(&init),
        "Deployment/{WEBHOOK} initContainer certs-init: must write the key pair with --write-dir /tls"
    );
    let side = cmdline(container(r, "certs"));
    assert!(
        writes_tls(&side),
        "Deployment/{WEBHOOK} container certs: must write the key pair with --write-dir /tls"
    );
    assert_eq!(
        side[..2],
        ["spotwright-certs", "ensure"],
        "Deployment/{WEBHOOK} container certs: must run `spotwright-certs ensure`"
    );
    assert!(
        !side.iter().any(|a| a == "--once"),
        "Deployment/{WEBHOOK} container certs: the sidecar must keep running (no --once)"
    );

    let wh = cmdline(container(r, "webhook"));
    assert_eq!(
        wh[0], "spotwright-webhook",
        "Deployment/{WEBHOOK} container webhook: must run spotwright-webhook"
    );
    for flag in [
        "--listen=0.0.0.0:8443",
        "--tls-cert-file=/tls/tls.crt",
        "--tls-key-file=/tls/tls.key",
        "--metrics-listen=0.0.0.0:8080",
        "--log-format=json",
    ] {
        assert!(
            wh.iter().any(|a| a == flag),
            "Deployment/{WEBHOOK} container webhook: missing flag {flag}"
        );
    }
}

#[test]
fn webhook_container_has_probes_on_the_metrics_port() {
    let r = base();
    let c = container(r, "webhook");
    for (probe, path) in [
        ("livenessProbe", "/healthz"),
        ("readinessProbe", "/readyz"),
        ("startupProbe", ""),
    ] {
        let get = &c[probe]["httpGet"];
        assert!(
            get.is_object(),
            "Deployment/{WEBHOOK} container webhook: {probe} must be an httpGet probe"
        );
        assert!(
            get["port"] == "metrics" || get["port"] == 8080,
            "Deployment/{WEBHOOK} container webhook: {probe} must use the metrics port, got {}",
            get["port"]
        );
        if !path.is_empty() {
            assert_eq!(
                get["path"], path,
                "Deployment/{WEBHOOK} container webhook: {probe} must GET {path}"
            );
        }
    }
}

// ---------------------------------------------------------------------------
// RBAC
// ---------------------------------------------------------------------------

fn roles(r: &Rendered) -> Vec<&Value> {
    r.objects
        .iter()
        .filter(|o| ["Role", "ClusterRole"].contains(&kind(o)))
        .collect()
}

#[test]
fn rbac_has_no_wildcards() {
    for role in roles(base()) {
        for rule in role["rules"].as_array().into_iter().flatten() {
            for field in ["verbs", "resources", "apiGroups", "resourceNames"] {
                assert!(
                    !strs(&rule[field]).iter().any(|s| s.contains('*')),
                    "{}: rule {rule} must not use a wildcard in {field}",
                    label(role)
                );
            }
            assert!(
                rule.get("nonResourceURLs").is_none(),
                "{}: must not grant nonResourceURLs",
                label(role)
            );
            for verb in [
                "escalate",
                "bind",
                "impersonate",
                "delete",
                "deletecollection",
            ] {
                assert!(
                    !strs(&rule["verbs"]).contains(&verb),
                    "{}: must not grant {verb}",
                    label(role)
                );
            }
        }
    }
}

#[test]
fn secrets_are_namespaced_and_restricted_by_name() {
    let r = base();
    let mut can_create = false;
    let mut can_read = BTreeSet::new();
    for role in roles(r) {
        for rule in role["rules"].as_array().into_iter().flatten() {
            if !strs(&rule["resources"]).contains(&"secrets") {
                continue;
            }
            let who = format!("{} ({})", label(role), rule);
            assert_eq!(
                kind(role),
                "Role",
                "{who}: secrets may only be granted by a namespaced Role"
            );
            assert_eq!(
                role["metadata"]["namespace"], NS,
                "{who}: secrets may only be granted in {NS}"
            );
            let verbs = strs(&rule["verbs"]);
            let names = strs(&rule["resourceNames"]);
            if verbs.contains(&"create") {
                assert_eq!(
                    verbs,
                    ["create"],
                    "{who}: create (which cannot be limited by name) must be a rule of its own"
                );
                can_create = true;
            } else {
                assert!(
                    !names.is_empty(),
                    "{who}: secrets rules other than create must have resourceNames"
                );
                for n in &names {
                    assert!(
                        SECRETS.contains(n),
                        "{who}: resourceName {n} is not one of the webhook's Secrets"
                    );
                }
                for v in &verbs {
                    assert!(
                        ["get", "list", "watch", "update", "patch"].contains(v),
                        "{who}: verb {v} on Secrets is more than the certs containers need"
                    );
                }
                // `spotwright-certs ensure` reads, watches by name and replaces them.
                for v in ["get", "list", "watch", "update"] {
                    assert!(
                        verbs.contains(&v),
                        "{who}: the certs containers need {v} on their Secrets"
                    );
                }
                can_read.extend(names);
            }
        }
    }
    assert!(
        can_create,
        "Role/spotwright-webhook-certs: the certs containers need to create their Secrets"
    );
    assert_eq!(
        can_read,
        BTreeSet::from(SECRETS),
        "Role/spotwright-webhook-certs: must reach both Secrets by name"
    );
}

/// `(apiGroups, resources, verbs, resourceNames)` of one RBAC rule.
type Rule = (Vec<String>, Vec<String>, Vec<String>, Vec<String>);

#[test]
fn rbac_grants_exactly_what_the_webhook_needs() {
    let r = base();
    let rules = |role: &Value| -> Vec<Rule> {
        role["rules"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|x| {
                let s = |f: &str| {
                    strs(&x[f])
                        .into_iter()
                        .map(str::to_string)
                        .collect::<Vec<_>>()
                };
                (
                    s("apiGroups"),
                    s("resources"),
                    s("verbs"),
                    s("resourceNames"),
                )
            })
            .collect()
    };
    let owned = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
    let read = owned(&["get", "list", "watch"]);

    let caches = r.get("ClusterRole", WEBHOOK);
    assert_eq!(
        rules(caches),
        vec![
            (owned(&[""]), owned(&["namespaces"]), read.clone(), vec![]),
            (owned(&["spotwright.io"]), owned(&["nodepools"]), read.clone(), vec![]),
        ],
        "ClusterRole/{WEBHOOK}: must grant exactly get/list/watch on namespaces and nodepools.spotwright.io"
    );
    let certs = r.get("ClusterRole", "spotwright-webhook-certs");
    assert_eq!(
        rules(certs),
        vec![(
            owned(&["admissionregistration.k8s.io"]),
            owned(&["mutatingwebhookconfigurations"]),
            owned(&["get", "list", "watch", "patch"]),
            owned(&[WEBHOOK])
        )],
        "ClusterRole/spotwright-webhook-certs: must grant only get/list/watch/patch on MutatingWebhookConfiguration {WEBHOOK} (by name)"
    );

    let mut bound = BTreeSet::new();
    for b in r
        .all("RoleBinding")
        .into_iter()
        .chain(r.all("ClusterRoleBinding"))
    {
        let role_kind = b["roleRef"]["kind"].as_str().unwrap_or("");
        let role_name = b["roleRef"]["name"].as_str().unwrap_or("");
        r.get(role_kind, role_name);
        if kind(b) == "ClusterRoleBinding" {
            assert_eq!(
                role_kind,
                "ClusterRole",
                "{}: must bind a ClusterRole",
                label(b)
            );
        }
        assert_eq!(
            b["subjects"],
            json!([{"kind": "ServiceAccount", "name": WEBHOOK, "namespace": NS}]),
            "{}: must bind only ServiceAccount {NS}/{WEBHOOK}",
            label(b)
        );
        bound.insert((role_kind.to_string(), role_name.to_string()));
    }
    for role in roles(r) {
        assert!(
            bound.contains(&(kind(role).to_string(), obj_name(role).to_string())),
            "{}: is bound by nothing",
            label(role)
        );
    }
    r.get("ServiceAccount", WEBHOOK);
}

// ---------------------------------------------------------------------------
// Local overlay
// ---------------------------------------------------------------------------

#[test]
fn local_overlay_calls_the_webhook_on_loopback() {
    let r = local();
    let w = r.webhook();
    let who = format!("overlays/local: MutatingWebhookConfiguration/{WEBHOOK}");
    let url = w["clientConfig"]["url"]
        .as_str()
        .unwrap_or_else(|| panic!("{who}: clientConfig.url must be set"));
    assert!(
        url.starts_with("https://127.0.0.1:") && url.ends_with("/mutate"),
        "{who}: clientConfig.url must be https://127.0.0.1:<port>/mutate, got {url}"
    );
    assert!(
        w["clientConfig"].get("service").is_none(),
        "{who}: clientConfig must not also have a service"
    );
    assert_registration(r);
    assert_eq!(
        r.deployment()["spec"]["replicas"], 0,
        "overlays/local: Deployment/{WEBHOOK} must be scaled to 0 (the webhook runs as a local process)"
    );
    for name in CRDS {
        r.get("CustomResourceDefinition", name);
    }
}

// ---------------------------------------------------------------------------
// The built-in renderer is faithful
// ---------------------------------------------------------------------------

#[test]
fn fallback_renderer_agrees_with_kubectl() {
    for name in ["base", "overlays/local"] {
        let dir = manifests_dir().join(name);
        let Some(from_kubectl) = render_with_kubectl(&dir) else {
            eprintln!("kubectl not found: cannot compare the built-in renderer with it");
            return;
        };
        let key = |o: &Value| {
            format!(
                "{}/{}/{}",
                kind(o),
                o["metadata"]["namespace"].as_str().unwrap_or(""),
                obj_name(o)
            )
        };
        let a: BTreeMap<String, Value> = from_kubectl.into_iter().map(|o| (key(&o), o)).collect();
        let b: BTreeMap<String, Value> = build(&dir).into_iter().map(|o| (key(&o), o)).collect();
        assert_eq!(
            a.keys().collect::<Vec<_>>(),
            b.keys().collect::<Vec<_>>(),
            "{name}: the built-in renderer must produce the same objects as kubectl kustomize"
        );
        for (k, v) in &a {
            let mut diffs = Vec::new();
            diff("", v, &b[k], &mut diffs);
            assert!(
                diffs.is_empty(),
                "{name}: {k} differs between kubectl kustomize and the built-in renderer at:\n{}",
                diffs.join("\n")
            );
        }
    }
}

/// JSON pointers where `a` (kubectl) and `b` (built-in) differ.
fn diff(at: &str, a: &Value, b: &Value, out: &mut Vec<String>) {
    match (a, b) {
        (Value::Object(x), Value::Object(y)) => {
            for k in x.keys().chain(y.keys().filter(|k| !x.contains_key(*k))) {
                let path = format!("{at}/{}", k.replace('~', "~0").replace('/', "~1"));
                diff(
                    &path,
                    x.get(k).unwrap_or(&Value::Null),
                    y.get(k).unwrap_or(&Value::Null),
                    out,
                );
            }
        }
        (Value::Array(x), Value::Array(y)) if x.len() == y.len() => {
            for (i, (p, q)) in x.iter().zip(y).enumerate() {
                diff(&format!("{at}/{i}"), p, q, out);
            }
        }
        // kustomize re-serialises `50.0` as `50`.
        (Value::Number(x), Value::Number(y)) if x.as_f64() == y.as_f64() => {}
        _ if a == b => {}
        _ => out.push(format!("  {at}: kubectl {a} vs built-in {b}")),
    }
}
