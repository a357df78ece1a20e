//! The Spotwright image as `scripts/build-image` writes it (an OCI image
//! archive), without a cluster or a container engine: the archive's blobs
//! match their digests and sizes, every program `manifests/base` runs from our
//! image is an executable in it and starts (`--help`, as 65532:65532, chrooted
//! into the unpacked rootfs, so only with the libraries the image carries), the
//! image does not run as root, and there is no shell or package manager.
//!
//! The archive: `$SPOTWRIGHT_IMAGE_ARCHIVE` (./test builds it in the step
//! before), else `scripts/build-image` into a temporary folder. Needs root
//! (chroot) and GNU tar and gzip. Manifests are rendered with
//! `$SPOTWRIGHT_KUBECTL kustomize` (else kubectl from PATH). `skopeo.rs`: the
//! same archive read and copied by skopeo, as the install guides copy it.

use std::collections::BTreeSet;
use std::io::Read;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use serde::Deserialize;
use serde_json::Value;
use sha2::{Digest, Sha256};

mod skopeo;

/// The repository the manifests pull our image from (kustomization `images:`).
const IMAGE: &str = "ghcr.io/spotwright/spotwright";
const USER: &str = "65532:65532";
const MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
const CONFIG: &str = "application/vnd.oci.image.config.v1+json";
const LAYER: &str = "application/vnd.oci.image.layer.v1.tar+gzip";

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn run(cmd: &mut Command) -> std::process::Output {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("could not run {cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed ({}): {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// `$SPOTWRIGHT_KUBECTL kustomize manifests/base`, as documents (the way
/// webhook/tests/manifests/render.rs renders them).
fn render_base() -> Vec<Value> {
    let kubectl = std::env::var_os("SPOTWRIGHT_KUBECTL")
        .filter(|k| !k.is_empty())
        .map(PathBuf::from)
        .unwrap_or_else(|| "kubectl".into());
    let dir = repo().join("manifests/base");
    let out = run(Command::new(&kubectl).arg("kustomize").arg(&dir));
    let text = String::from_utf8(out.stdout).expect("kubectl output is UTF-8");
    let mut docs = Vec::new();
    for doc in serde_yaml::Deserializer::from_str(&text) {
        let v = Value::deserialize(doc).expect("kubectl kustomize prints YAML");
        if v.is_object() {
            docs.push(v);
        }
    }
    docs
}

/// `(Kind/name/container, image, command)` of every init and regular
/// container of every workload in the rendering.
fn containers(docs: &[Value]) -> Vec<(String, String, Vec<String>)> {
    let mut out = Vec::new();
    for o in docs {
        let spec = match o["kind"].as_str().unwrap_or("") {
            "Deployment" | "StatefulSet" | "DaemonSet" | "Job" => &o["spec"]["template"]["spec"],
            "CronJob" => &o["spec"]["jobTemplate"]["spec"]["template"]["spec"],
            "Pod" => &o["spec"],
            _ => continue,
        };
        for field in ["initContainers", "containers"] {
            for c in spec[field].as_array().into_iter().flatten() {
                let label = format!(
                    "{}/{}/{}",
                    o["kind"].as_str().unwrap_or(""),
                    o["metadata"]["name"].as_str().unwrap_or(""),
                    c["name"].as_str().unwrap_or("")
                );
                let command = c["command"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(|s| s.as_str().map(str::to_owned))
                    .collect();
                let image = c["image"].as_str().unwrap_or("").to_owned();
                out.push((label, image, command));
            }
        }
    }
    out
}

/// The archive to test, and the temporary folder it was built in (if it was).
fn archive() -> (PathBuf, Option<tempfile::TempDir>) {
    if let Some(path) = std::env::var_os("SPOTWRIGHT_IMAGE_ARCHIVE").filter(|p| !p.is_empty()) {
        return (PathBuf::from(path), None);
    }
    let dir = tempfile::tempdir().expect("a temporary folder");
    let out = dir.path().join("spotwright.tar");
    let status = Command::new(repo().join("scripts/build-image"))
        .arg(&out)
        .status()
        .expect("scripts/build-image runs");
    assert!(status.success(), "scripts/build-image failed ({status})");
    (out, Some(dir))
}

fn sha256_file(path: &Path) -> (String, u64) {
    let mut f = std::fs::File::open(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    let mut size = 0u64;
    loop {
        let n = f
            .read(&mut buf)
            .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        if n == 0 {
            break;
        }
        size += n as u64;
        hasher.update(&buf[..n]);
    }
    let hex: String = hasher
        .finalize()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    (format!("sha256:{hex}"), size)
}

/// The blob a descriptor names, after checking its media type, size and digest.
fn blob(layout: &Path, desc: &Value, media_type: &str, what: &str) -> PathBuf {
    assert_eq!(
        desc["mediaType"], media_type,
        "{what}: media type of {desc}"
    );
    let digest = desc["digest"]
        .as_str()
        .unwrap_or_else(|| panic!("{what}: descriptor without a digest: {desc}"));
    let hex = digest
        .strip_prefix("sha256:")
        .filter(|h| h.len() == 64 && h.bytes().all(|b| b.is_ascii_hexdigit()))
        .unwrap_or_else(|| panic!("{what}: digest {digest} is not sha256:<64 hex digits>"));
    let path = layout.join("blobs/sha256").join(hex);
    assert!(path.is_file(), "{what}: no blob {digest} in the archive");
    let (actual, size) = sha256_file(&path);
    assert_eq!(
        actual, digest,
        "{what}: the blob's sha256 is not its digest"
    );
    assert_eq!(
        desc["size"].as_u64(),
        Some(size),
        "{what}: the descriptor's size is not the blob's"
    );
    path
}

fn json(path: &Path) -> Value {
    let text = std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_slice(&text).unwrap_or_else(|e| panic!("{}: not JSON: {e}", path.display()))
}

struct Image {
    tag: String,
    config: Value,
    root: PathBuf,
}

/// The archive's OCI layout, extracted and read through: its one manifest's
/// descriptor and tag, the manifest and the config, every blob checked.
struct Layout {
    dir: PathBuf,
    tag: String,
    manifest_descriptor: Value,
    manifest: Value,
    config: Value,
}

impl Layout {
    /// The digests of the manifest's layers, in order.
    fn layer_digests(&self) -> Vec<Value> {
        let layers = self.manifest["layers"].as_array().expect("manifest layers");
        layers.iter().map(|l| l["digest"].clone()).collect()
    }
}

/// Extracts `archive` into `dir` and reads it ([`read_extracted`]).
fn read_layout(archive: &Path, dir: &Path) -> Layout {
    std::fs::create_dir_all(dir).expect("layout folder");
    run(Command::new("tar")
        .arg("-xf")
        .arg(archive)
        .arg("-C")
        .arg(dir));
    read_extracted(dir)
}

/// Walks an OCI layout's index.json -> manifest -> config.
fn read_extracted(dir: &Path) -> Layout {
    let layout = dir.to_path_buf();
    assert_eq!(
        json(&layout.join("oci-layout"))["imageLayoutVersion"],
        "1.0.0",
        "oci-layout"
    );
    let index = json(&layout.join("index.json"));
    assert_eq!(index["schemaVersion"], 2, "index.json schemaVersion");
    let manifests = index["manifests"].as_array().expect("index.json manifests");
    assert_eq!(manifests.len(), 1, "index.json: one manifest: {index}");
    let tag = manifests[0]["annotations"]["org.opencontainers.image.ref.name"]
        .as_str()
        .expect("index.json: the manifest descriptor's org.opencontainers.image.ref.name")
        .to_owned();
    let manifest = json(&blob(&layout, &manifests[0], MANIFEST, "manifest"));
    assert_eq!(manifest["schemaVersion"], 2, "manifest schemaVersion");
    let config = json(&blob(&layout, &manifest["config"], CONFIG, "config"));
    Layout {
        dir: layout,
        tag,
        manifest_descriptor: manifests[0].clone(),
        manifest,
        config,
    }
}

/// Reads the layout ([`read_layout`]), checks the layer against the config,
/// and unpacks it into `work/rootfs`.
fn unpack(archive: &Path, work: &Path) -> Image {
    let Layout {
        dir: layout,
        tag,
        manifest,
        config,
        ..
    } = read_layout(archive, &work.join("layout"));
    let layers = manifest["layers"].as_array().expect("manifest layers");
    assert_eq!(layers.len(), 1, "one layer: {manifest}");
    let layer_gz = blob(&layout, &layers[0], LAYER, "layer");

    // The uncompressed layer's digest is the config's diff_id.
    let layer_tar = work.join("layer.tar");
    let tar_file = std::fs::File::create(&layer_tar).expect("layer.tar");
    let status = Command::new("gzip")
        .arg("-dc")
        .arg(&layer_gz)
        .stdout(tar_file)
        .status()
        .expect("gzip runs");
    assert!(status.success(), "the layer is not gzip ({status})");
    let (diff_id, _) = sha256_file(&layer_tar);
    assert_eq!(
        config["rootfs"]["diff_ids"],
        serde_json::json!([diff_id]),
        "config rootfs.diff_ids against the uncompressed layer"
    );
    let root = work.join("rootfs");
    std::fs::create_dir_all(&root).expect("rootfs folder");
    run(Command::new("tar")
        .args(["--numeric-owner", "-xpf"])
        .arg(&layer_tar)
        .arg("-C")
        .arg(&root));
    std::fs::remove_file(&layer_tar).expect("remove layer.tar");
    Image { tag, config, root }
}

/// Every path under `root`, relative, symlinks not followed.
fn walk(root: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut todo = vec![root.to_path_buf()];
    while let Some(dir) = todo.pop() {
        for entry in std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
            let entry = entry.expect("a folder entry");
            let path = entry.path();
            if entry.file_type().expect("file type").is_dir() {
                todo.push(path.clone());
            }
            out.push(path.strip_prefix(root).expect("under root").to_path_buf());
        }
    }
    out
}

/// `command[0]` inside the image: as is if absolute, else looked up in the
/// config's PATH (symlinks inside the image followed).
fn resolve(image: &Image, program: &str) -> Option<PathBuf> {
    let path_var = image.config["config"]["Env"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .find_map(|e| e.strip_prefix("PATH="))
        .unwrap_or("");
    let candidates: Vec<String> = if program.starts_with('/') {
        vec![program.to_owned()]
    } else {
        path_var
            .split(':')
            .map(|d| format!("{}/{program}", d.trim_end_matches('/')))
            .collect()
    };
    candidates.into_iter().find_map(|c| {
        let mut p = c;
        for _ in 0..8 {
            let host = image.root.join(p.trim_start_matches('/'));
            let meta = std::fs::symlink_metadata(&host).ok()?;
            if meta.file_type().is_symlink() {
                let link = std::fs::read_link(&host).ok()?;
                let link = link.to_str()?;
                p = if link.starts_with('/') {
                    link.to_owned()
                } else {
                    let parent = Path::new(&p).parent().unwrap_or(Path::new("/"));
                    format!("{}/{link}", parent.display())
                };
                continue;
            }
            return meta.is_file().then_some(host);
        }
        None
    })
}

/// The checks, each adding to `failures` rather than stopping at the first.
fn check(image: &Image, docs: &[Value], failures: &mut Vec<String>) {
    // (a) every command of our containers is an executable file in the image.
    let ours: Vec<_> = containers(docs)
        .into_iter()
        .filter(|(_, image, _)| image.split(':').next() == Some(IMAGE))
        .collect();
    if ours.is_empty() {
        failures.push(format!("manifests/base runs no container from {IMAGE}"));
    }
    let mut programs = BTreeSet::new();
    for (label, img, command) in &ours {
        let want = format!("{IMAGE}:{}", image.tag);
        if img != &want {
            failures.push(format!(
                "{label}: image {img}, but the archive's ref.name makes it {want}"
            ));
        }
        match command.first() {
            None => failures.push(format!(
                "{label}: no `command` (the image has no Entrypoint)"
            )),
            Some(program) => {
                programs.insert(program.clone());
            }
        }
    }
    let mut started = Vec::new();
    for program in &programs {
        match resolve(image, program) {
            None => failures.push(format!(
                "`{program}` (a command in manifests/base) is not a file in the image's PATH"
            )),
            Some(path) => {
                let mode = std::fs::metadata(&path)
                    .expect("metadata")
                    .permissions()
                    .mode();
                if mode & 0o111 != 0o111 {
                    failures.push(format!(
                        "{}: mode {mode:o} is not executable",
                        path.display()
                    ));
                } else {
                    started.push((program.clone(), path));
                }
            }
        }
    }

    // (b) each starts, as the image's user, with only what the image holds.
    let user = image.config["config"]["User"].as_str().unwrap_or("");
    let env: Vec<(String, String)> = image.config["config"]["Env"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .filter_map(|e| e.split_once('='))
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
    // Found on the host's PATH before the child's environment is replaced.
    let chroot = ["/usr/sbin/chroot", "/usr/bin/chroot", "/sbin/chroot"]
        .into_iter()
        .find(|p| Path::new(p).is_file())
        .unwrap_or("chroot");
    for (program, path) in &started {
        let inside = Path::new("/").join(path.strip_prefix(&image.root).expect("under root"));
        let out = Command::new(chroot)
            .arg(format!("--userspec={USER}"))
            .arg(&image.root)
            .arg(&inside)
            .arg("--help")
            .env_clear()
            .envs(env.iter().cloned())
            .output()
            .expect("chroot runs (the test needs root)");
        let stdout = String::from_utf8_lossy(&out.stdout);
        if !out.status.success() || !stdout.contains("Usage") {
            failures.push(format!(
                "`chroot --userspec={USER} ROOT {} --help` ({program}): {}, stdout {:?}, stderr {:?}",
                inside.display(),
                out.status,
                stdout.lines().next().unwrap_or(""),
                String::from_utf8_lossy(&out.stderr).trim()
            ));
        }
    }

    // (c) not root, no Entrypoint, no shell and no package manager.
    if user != USER {
        failures.push(format!("config User is {user:?}, not {USER:?}"));
    }
    let uid = user.split(':').next().unwrap_or("");
    if uid.is_empty() || uid == "0" || uid == "root" {
        failures.push(format!("config User {user:?} runs as root"));
    }
    let entrypoint = &image.config["config"]["Entrypoint"];
    if !(entrypoint.is_null() || entrypoint.as_array().is_some_and(Vec::is_empty)) {
        failures.push(format!("config Entrypoint is {entrypoint}, want none"));
    }
    const SHELLS: &[&str] = &[
        "sh", "bash", "dash", "ash", "zsh", "ksh", "mksh", "csh", "tcsh", "fish", "busybox",
    ];
    const PACKAGE_MANAGERS: &[&str] = &["dpkg", "apt", "apt-get", "apk", "rpm", "yum", "dnf"];
    for rel in walk(&image.root) {
        let name = rel.file_name().and_then(|n| n.to_str()).unwrap_or("");
        if SHELLS.contains(&name) {
            failures.push(format!("/{}: a shell in the image", rel.display()));
        }
        if PACKAGE_MANAGERS.contains(&name) {
            failures.push(format!(
                "/{}: a package manager in the image",
                rel.display()
            ));
        }
    }
    if std::fs::symlink_metadata(image.root.join("bin/sh")).is_ok() {
        failures.push("/bin/sh is in the image".to_owned());
    }

    // What the programs need besides their libraries.
    let passwd = std::fs::read_to_string(image.root.join("etc/passwd")).unwrap_or_default();
    if !passwd
        .lines()
        .any(|l| l.starts_with("nonroot:x:65532:65532:"))
    {
        failures.push("/etc/passwd has no nonroot 65532:65532".to_owned());
    }
    let certs = image.root.join("etc/ssl/certs/ca-certificates.crt");
    let bundle = std::fs::read_to_string(&certs).unwrap_or_default();
    if bundle.matches("BEGIN CERTIFICATE").count() < 50 {
        failures.push("/etc/ssl/certs/ca-certificates.crt is missing or nearly empty".to_owned());
    }
    if !env
        .iter()
        .any(|(k, v)| k == "SSL_CERT_FILE" && v == "/etc/ssl/certs/ca-certificates.crt")
    {
        failures.push("config Env has no SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt".into());
    }
    let tmp_mode = std::fs::metadata(image.root.join("tmp"))
        .map(|m| m.permissions().mode() & 0o7777)
        .unwrap_or(0);
    if tmp_mode != 0o1777 {
        failures.push(format!("/tmp has mode {tmp_mode:o}, not 1777"));
    }
}

#[test]
fn the_image_holds_and_starts_every_program_the_manifests_run_as_nonroot() {
    let docs = render_base();
    let (archive, _built_in) = archive();
    let work = tempfile::tempdir().expect("a temporary folder");
    let image = unpack(&archive, work.path());
    let mut failures = Vec::new();
    check(&image, &docs, &mut failures);
    assert!(
        failures.is_empty(),
        "{}: {} problem(s):\n  {}",
        archive.display(),
        failures.len(),
        failures.join("\n  ")
    );
}
