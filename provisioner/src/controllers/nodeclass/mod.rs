//! Resolves every NodeClass into its status: the AMIs (SSM, re-read every
//! refresh, so a new EKS image or a control-plane upgrade is seen within a
//! minute), subnets and security groups, and a `Ready` condition that says
//! what is missing. Reads the NodeClasses from the cluster state; writes
//! their status; wakes drift when a resolution changed.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Notify;

use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, Patch, PatchParams};
use kube::Client;
use serde_json::json;
use spotwright_api::conditions;
use spotwright_api::v1alpha1::{NodeClassStatus, ResolvedAmi};
use spotwright_api::NodeClass;

use crate::act::aws::ami::resolve_amis;
use crate::act::aws::network::{resolve_security_groups, resolve_subnets};
use crate::model::clock::SharedClock;
use crate::state::ClusterState;

#[derive(Clone, Debug)]
pub struct Settings {
    pub refresh: Duration,
    pub eks_ami_ssm_prefix: String,
    /// Notified when a NodeClass's resolution changed, so drift is judged
    /// at once instead of at its next round.
    pub on_change: Option<Arc<Notify>>,
}

pub struct Clients {
    pub kube: Client,
    pub ec2: aws_sdk_ec2::Client,
    pub ssm: aws_sdk_ssm::Client,
}

/// Resolves one NodeClass, with why it is not ready (`None`: it is).
pub async fn resolve(
    clients: &Clients,
    class: &NodeClass,
    settings: &Settings,
    kubernetes_version: &str,
) -> (NodeClassStatus, Option<String>) {
    let mut status = NodeClassStatus::default();
    let mut problems = Vec::new();
    match resolve_amis(
        &clients.ssm,
        &class.spec.ami_selector,
        &settings.eks_ami_ssm_prefix,
        kubernetes_version,
    )
    .await
    {
        Ok(images) => {
            status.amis = images
                .into_iter()
                .map(|i| ResolvedAmi {
                    id: i.id,
                    source: Some(match i.arch {
                        Some(arch) => format!("{} ({})", i.source, arch.kubernetes()),
                        None => i.source,
                    }),
                })
                .collect();
        }
        Err(err) => problems.push(format!("AMI: {err}")),
    }
    match resolve_subnets(&clients.ec2, &class.spec.subnet_selector).await {
        Ok(subnets) if subnets.is_empty() => {
            problems.push("no subnet matches subnetSelector".into())
        }
        Ok(subnets) => status.subnets = subnets,
        Err(err) => problems.push(format!("subnets: {err}")),
    }
    match resolve_security_groups(&clients.ec2, &class.spec.security_group_selector).await {
        Ok(groups) if groups.is_empty() => {
            problems.push("no security group matches securityGroupSelector".into())
        }
        Ok(groups) => status.security_groups = groups,
        Err(err) => problems.push(format!("security groups: {err}")),
    }
    let not_ready = (!problems.is_empty()).then(|| problems.join("; "));
    (status, not_ready)
}

/// The API server's version (`gitVersion`, such as `v1.36.3`).
pub async fn kubernetes_version(client: &Client) -> Result<String, kube::Error> {
    Ok(client.apiserver_version().await?.git_version)
}

/// How often the API server's version is read between two resolutions: a
/// control-plane upgrade changes `eks@latest`'s path, and its nodes should
/// not wait a whole refresh to drift.
const VERSION_POLL: Duration = Duration::from_secs(5);

/// Waits `refresh`, or less when the API server's version stops being
/// `resolved_at` (the plane was upgraded).
async fn wait_for_refresh_or_upgrade(
    client: &Client,
    resolved_at: Option<&str>,
    refresh: Duration,
) {
    let deadline = tokio::time::Instant::now() + refresh;
    loop {
        let now = tokio::time::Instant::now();
        if now >= deadline {
            return;
        }
        tokio::time::sleep(VERSION_POLL.min(deadline - now)).await;
        let Some(resolved_at) = resolved_at else {
            continue;
        };
        match kubernetes_version(client).await {
            Ok(version) if version != resolved_at => {
                tracing::info!(from = resolved_at, to = %version, "the API server's version changed; resolving NodeClasses now");
                return;
            }
            _ => {}
        }
    }
}

/// Resolves every NodeClass of the state each `refresh`, and at once when
/// the control plane's version changes, until the process ends.
pub async fn run(clients: Clients, state: ClusterState, clock: SharedClock, settings: Settings) {
    let api: Api<NodeClass> = Api::all(clients.kube.clone());
    state.ready().await;
    loop {
        let mut resolved_at = None;
        match kubernetes_version(&clients.kube).await {
            Ok(version) => {
                resolved_at = Some(version.clone());
                for class in &state.snapshot().nodeclasses {
                    let (status, not_ready) = resolve(&clients, class, &settings, &version).await;
                    match write_status(&api, class, status, not_ready, clock.now()).await {
                        Ok(true) => {
                            if let Some(on_change) = &settings.on_change {
                                on_change.notify_one();
                            }
                        }
                        Ok(false) => {}
                        Err(err) => {
                            tracing::warn!(nodeclass = class.metadata.name.as_deref().unwrap_or_default(), error = %err, "status not written");
                        }
                    }
                }
            }
            Err(err) => tracing::warn!(error = %err, "NodeClasses not resolved this round"),
        }
        wait_for_refresh_or_upgrade(&clients.kube, resolved_at.as_deref(), settings.refresh).await;
    }
}

/// What the NodeClass's status should say, as a merge patch; `None` when
/// it already does.
pub fn desired_status(
    class: &NodeClass,
    status: &NodeClassStatus,
    not_ready: Option<&str>,
    now: Timestamp,
) -> Option<serde_json::Value> {
    let (state, reason, message) = match not_ready {
        None => (
            "True",
            "Resolved",
            "AMIs, subnets and security groups resolved".to_owned(),
        ),
        Some(why) => ("False", "NotResolved", why.to_owned()),
    };
    let previous = class
        .status
        .as_ref()
        .and_then(|s| s.conditions.iter().find(|c| c.type_ == conditions::READY));
    let unchanged = previous.is_some_and(|c| c.status == state && c.message == message);
    let same_resolution = class.status.as_ref().is_some_and(|s| {
        s.amis == status.amis
            && s.subnets == status.subnets
            && s.security_groups == status.security_groups
    });
    if unchanged && same_resolution {
        return None;
    }
    let transition = match previous {
        Some(c) if c.status == state => c.last_transition_time.0,
        _ => Timestamp::from_second(now.as_second()).unwrap_or(Timestamp::UNIX_EPOCH),
    };
    Some(json!({"status": {
        "amis": status.amis, "subnets": status.subnets, "securityGroups": status.security_groups,
        "conditions": [{"type": conditions::READY, "status": state, "reason": reason, "message": message,
            "lastTransitionTime": transition.to_string(), "observedGeneration": class.metadata.generation}]
    }}))
}

/// Writes the status when it changed; returns whether it did.
async fn write_status(
    api: &Api<NodeClass>,
    class: &NodeClass,
    status: NodeClassStatus,
    not_ready: Option<String>,
    now: Timestamp,
) -> Result<bool, kube::Error> {
    let Some(patch) = desired_status(class, &status, not_ready.as_deref(), now) else {
        return Ok(false);
    };
    let name = class.metadata.name.clone().unwrap_or_default();
    if let Some(why) = &not_ready {
        tracing::warn!(nodeclass = name, reason = why, "NodeClass not ready");
    }
    api.patch_status(&name, &PatchParams::default(), &Patch::Merge(&patch))
        .await?;
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_change_is_stamped_with_the_clock_and_a_repeat_writes_nothing() {
        let mut class: NodeClass = serde_json::from_value(json!({
            "apiVersion": "spotwright.io/v1alpha1", "kind": "NodeClass",
            "metadata": {"name": "c", "generation": 3}, "spec": {"amiSelector": {"alias": "eks@latest"}}
        }))
        .unwrap();
        let at = Timestamp::from_second(1_700_000_000).unwrap();
        let status = NodeClassStatus::default();
        let patch = desired_status(&class, &status, Some("no subnet"), at).expect("a first status");
        let condition = &patch["status"]["conditions"][0];
        assert_eq!(condition["status"], "False");
        assert_eq!(condition["message"], "no subnet");
        assert_eq!(condition["lastTransitionTime"], at.to_string());
        class.status = serde_json::from_value(patch["status"].clone()).unwrap();
        let later = Timestamp::from_second(1_700_000_100).unwrap();
        assert!(desired_status(&class, &status, Some("no subnet"), later).is_none());
        let resolved = desired_status(&class, &status, None, later).expect("a change");
        assert_eq!(
            resolved["status"]["conditions"][0]["lastTransitionTime"],
            later.to_string()
        );
    }
}
