//! `spotwright-certs ensure` against the real API server: two replicas
//! starting at once from nothing agree on one CA and one serving pair, the
//! registration's caBundle trusts it, and a pass with nothing to do writes
//! nothing.

use std::path::Path;
use std::process::Command;

use spotwright_e2e::harness::webhook::ensure_command;
use spotwright_e2e::harness::{env, Env};

fn ensure(env: &Env, dir: &Path) -> std::process::Child {
    ensure_command(env, dir)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("spotwright-certs starts")
}

fn resource_versions(env: &Env) -> String {
    env.kubectl_ok(&[
        "-n",
        "spotwright-system",
        "get",
        "secret",
        "spotwright-webhook-ca",
        "spotwright-webhook-tls",
        "-o",
        "jsonpath={.items[*].metadata.resourceVersion}",
    ])
}

fn read(dir: &Path, file: &str) -> String {
    std::fs::read_to_string(dir.join(file))
        .unwrap_or_else(|e| panic!("{}/{file}: {e}", dir.display()))
}

#[test]
fn two_replicas_at_once_agree_and_a_second_pass_writes_nothing() {
    let env = env();
    env.kubectl_ok(&[
        "-n",
        "spotwright-system",
        "delete",
        "secret",
        "spotwright-webhook-tls",
        "spotwright-webhook-ca",
        "--ignore-not-found",
    ]);
    let (a, b) = (
        env.scratch("certs-replica-a"),
        env.scratch("certs-replica-b"),
    );
    let replicas = [ensure(env, &a), ensure(env, &b)];
    for replica in replicas {
        let output = replica
            .wait_with_output()
            .expect("spotwright-certs finishes");
        assert!(
            output.status.success(),
            "ensure failed:\n{}",
            String::from_utf8_lossy(&output.stderr)
        );
    }
    assert_eq!(
        read(&a, "tls.crt"),
        read(&b, "tls.crt"),
        "both replicas serve the same certificate"
    );
    assert_eq!(read(&a, "tls.key"), read(&b, "tls.key"));
    assert_eq!(read(&a, "ca.crt"), read(&b, "ca.crt"));

    let bundle_b64 = env.kubectl_ok(&[
        "get",
        "mutatingwebhookconfiguration",
        "spotwright-webhook",
        "-o",
        "jsonpath={.webhooks[0].clientConfig.caBundle}",
    ]);
    let bundle = Command::new("base64")
        .arg("-d")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn();
    let bundle = {
        use std::io::Write;
        let mut child = bundle.expect("base64 runs");
        child
            .stdin
            .take()
            .expect("stdin")
            .write_all(bundle_b64.trim().as_bytes())
            .expect("written");
        String::from_utf8(child.wait_with_output().expect("decoded").stdout).expect("PEM")
    };
    assert!(
        bundle.contains("BEGIN CERTIFICATE"),
        "caBundle is set: {bundle:?}"
    );
    let verify = Command::new("openssl")
        .args(["verify", "-CAfile"])
        .arg(a.join("ca.crt"))
        .arg(a.join("tls.crt"))
        .output()
        .expect("openssl runs");
    assert!(
        verify.status.success(),
        "the serving certificate chains to the bundle: {}",
        String::from_utf8_lossy(&verify.stdout)
    );
    assert_eq!(
        bundle.trim(),
        read(&a, "ca.crt").trim(),
        "the registration trusts exactly the bundle the pods were given"
    );

    let before = resource_versions(env);
    let output = ensure(env, &a).wait_with_output().expect("finishes");
    assert!(output.status.success());
    assert_eq!(
        resource_versions(env),
        before,
        "a pass with nothing to do writes nothing"
    );
}
