//! Resolves every NodeClass into its status: the AMIs (SSM, re-read every
//! refresh, so a new EKS image or a control-plane upgrade is seen within a
//! minute), subnets and security groups, and a `Ready` condition that says
//! what is missing. Reads the NodeClasses from the cluster state; writes
//! their status; wakes drift when a resolution changed.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Notify;

use kube::api::{Api, Patch, PatchParams};
use kube::Client;
use serde_json::json;
use spotwright_api::conditions;
use spotwright_api::v1alpha1::{NodeClassStatus, ResolvedAmi};
use spotwright_api::NodeClass;

use crate::act::aws::ami::resolve_amis;
use crate::act::aws::network::{resolve_security_groups, resolve_subnets};
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

/// Resolves every NodeClass of the state each `refresh`, until the process ends.
pub async fn run(clients: Clients, state: ClusterState, settings: Settings) {
    let api: Api<NodeClass> = Api::all(clients.kube.clone());
    state.ready().await;
    loop {
        match kubernetes_version(&clients.kube).await {
            Ok(version) => {
                for class in &state.snapshot().nodeclasses {
                    let (status, not_ready) = resolve(&clients, class, &settings, &version).await;
                    match write_status(&api, class, status, not_ready).await {
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
        tokio::time::sleep(settings.refresh).await;
    }
}

async fn write_status(
    api: &Api<NodeClass>,
    class: &NodeClass,
    status: NodeClassStatus,
    not_ready: Option<String>,
) -> Result<bool, kube::Error> {
    let name = class.metadata.name.clone().unwrap_or_default();
    let (state, reason, message) = match &not_ready {
        None => (
            "True",
            "Resolved",
            "AMIs, subnets and security groups resolved".to_owned(),
        ),
        Some(why) => ("False", "NotResolved", why.clone()),
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
        return Ok(false);
    }
    if let Some(why) = &not_ready {
        tracing::warn!(nodeclass = name, reason = why, "NodeClass not ready");
    }
    let transition = match previous {
        Some(c) if c.status == state => c.last_transition_time.0.to_string(),
        _ => now(),
    };
    let patch = json!({"status": {
        "amis": status.amis, "subnets": status.subnets, "securityGroups": status.security_groups,
        "conditions": [{"type": conditions::READY, "status": state, "reason": reason, "message": message,
            "lastTransitionTime": transition, "observedGeneration": class.metadata.generation}]
    }});
    api.patch_status(&name, &PatchParams::default(), &Patch::Merge(&patch))
        .await?;
    Ok(true)
}

fn now() -> String {
    let now = k8s_openapi::jiff::Timestamp::now();
    k8s_openapi::jiff::Timestamp::from_second(now.as_second())
        .unwrap_or(k8s_openapi::jiff::Timestamp::UNIX_EPOCH)
        .to_string()
}
