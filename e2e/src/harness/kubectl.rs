//! Running the cluster's own kubectl, as a user would.

use std::process::{Command, Output};

use super::Env;

impl Env {
    pub fn kubectl(&self, args: &[&str]) -> Output {
        self.kubectl_with_input(args, None)
    }

    pub fn kubectl_with_input(&self, args: &[&str], stdin: Option<&str>) -> Output {
        use std::io::Write;
        let mut command = Command::new(&self.kubectl);
        command
            .args(args)
            .env("KUBECONFIG", &self.kubeconfig)
            .current_dir(&self.repo);
        command
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped());
        let mut child = command.spawn().expect("kubectl runs");
        if let Some(mut pipe) = child.stdin.take() {
            pipe.write_all(stdin.unwrap_or_default().as_bytes())
                .expect("kubectl stdin");
        }
        child.wait_with_output().expect("kubectl finishes")
    }

    /// `kubectl apply --server-side` of one object; fails the test when refused.
    pub fn apply(&self, object: &serde_json::Value) {
        let output = self.kubectl_with_input(
            &["apply", "--server-side", "-f", "-"],
            Some(&object.to_string()),
        );
        assert!(
            output.status.success(),
            "kubectl apply failed:\n{}\n{object}",
            String::from_utf8_lossy(&output.stderr)
        );
    }

    /// Runs kubectl and fails the test with its stderr when it fails.
    pub fn kubectl_ok(&self, args: &[&str]) -> String {
        let output = self.kubectl(args);
        assert!(
            output.status.success(),
            "kubectl {} failed:\n{}",
            args.join(" "),
            String::from_utf8_lossy(&output.stderr)
        );
        String::from_utf8_lossy(&output.stdout).into_owned()
    }
}
