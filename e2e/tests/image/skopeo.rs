//! The archive through `skopeo`, the tool the install guides copy it with
//! (`skopeo copy oci-archive:spotwright.tar docker://…`): skopeo reads the
//! manifest, config and layers this suite checks, and copies the image into
//! an OCI layout (what a registry stores) and into a docker archive (what
//! `docker load` reads) under the manifests' image name. A tampered archive
//! is refused, so a copy that succeeds has had its digests checked. Needs
//! `skopeo` (./test installs Debian's).

use std::path::Path;
use std::process::{Command, Output};

use serde_json::{json, Value};

use super::{archive, blob, read_extracted, read_layout, run, IMAGE, LAYER};

/// The reference the OCI layout copy is stored under.
const COPY_REF: &str = "copied";

/// `skopeo` with no signature policy: only local archives and layouts are
/// read and written, and a fresh machine has no /etc/containers/policy.json.
fn skopeo(args: &[&str]) -> Command {
    let mut cmd = Command::new("skopeo");
    cmd.arg("--insecure-policy").args(args);
    cmd
}

fn oci_archive(path: &Path) -> String {
    format!("oci-archive:{}", path.display())
}

#[test]
fn skopeo_reads_the_archive_and_copies_it_as_the_install_guides_do() {
    let (archive, _built_in) = archive();
    let work = tempfile::tempdir().expect("a temporary folder");
    let ours = read_layout(&archive, &work.path().join("ours"));
    let source = oci_archive(&archive);

    let out = run(&mut skopeo(&["inspect", &source]));
    let inspected: Value = serde_json::from_slice(&out.stdout).expect("skopeo inspect prints JSON");
    assert_eq!(
        inspected["Digest"], ours.manifest_descriptor["digest"],
        "the manifest skopeo reads"
    );
    assert_eq!(
        inspected["Layers"],
        Value::Array(ours.layer_digests()),
        "the layers skopeo reads"
    );
    assert_eq!(inspected["Architecture"], ours.config["architecture"]);
    assert_eq!(inspected["Os"], ours.config["os"]);

    let copy_dir = work.path().join("copy");
    let to_layout = format!("oci:{}:{COPY_REF}", copy_dir.display());
    run(&mut skopeo(&["copy", &source, &to_layout]));
    let copied = read_extracted(&copy_dir);
    assert_eq!(copied.tag, COPY_REF, "the copy's reference");
    assert_eq!(
        copied.layer_digests(),
        ours.layer_digests(),
        "the copy's layers"
    );
    assert_eq!(copied.config, ours.config, "the copy's config");

    let docker = work.path().join("docker.tar");
    let name = format!("{IMAGE}:{}", ours.tag);
    let to_docker = format!("docker-archive:{}:{name}", docker.display());
    run(&mut skopeo(&["copy", &source, &to_docker]));
    let out = run(Command::new("tar")
        .arg("-xOf")
        .arg(&docker)
        .arg("manifest.json"));
    let manifest: Value =
        serde_json::from_slice(&out.stdout).expect("the docker archive's manifest.json");
    assert_eq!(manifest[0]["RepoTags"], json!([name]), "{manifest}");
    assert_eq!(
        manifest[0]["Layers"].as_array().map(Vec::len),
        Some(ours.layer_digests().len()),
        "{manifest}"
    );
}

#[test]
fn skopeo_refuses_an_archive_whose_layer_is_not_its_digest() {
    let (archive, _built_in) = archive();
    let work = tempfile::tempdir().expect("a temporary folder");
    let layout = read_layout(&archive, &work.path().join("layout"));
    let layer = blob(&layout.dir, &layout.manifest["layers"][0], LAYER, "layer");
    let mut bytes = std::fs::read(&layer).expect("the layer blob");
    *bytes.last_mut().expect("a layer of some bytes") ^= 0xff;
    std::fs::write(&layer, bytes).expect("rewrite the layer blob");
    let tampered = work.path().join("tampered.tar");
    run(Command::new("tar")
        .arg("-cf")
        .arg(&tampered)
        .arg("-C")
        .arg(&layout.dir)
        .args(["oci-layout", "index.json", "blobs"]));

    let to_layout = format!("oci:{}:{COPY_REF}", work.path().join("copy").display());
    let out: Output = skopeo(&["copy", &oci_archive(&tampered), &to_layout])
        .output()
        .expect("skopeo runs");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success(),
        "skopeo copied an archive whose layer does not match its digest"
    );
    assert!(
        stderr.to_lowercase().contains("digest"),
        "skopeo refused it for another reason: {stderr}"
    );
}
