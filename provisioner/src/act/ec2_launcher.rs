//! The `Launcher` on EC2: the catalog, the unavailable-offerings cache, a
//! launch template per (NodeClass, AMI, user data) and CreateFleet, retried
//! on what is left when capacity errors knock offerings out.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Mutex, RwLock};
use std::time::{Duration, Instant};

use spotwright_api::{keys, NodeClaim, NodeClass};
use spotwright_solver::model::{CapacityType, InstanceType};

use super::launcher::{LaunchFailure, Launched, Launcher, Lookup};
use crate::act::aws::catalog::Catalog;
use crate::act::aws::fleet::{
    self, ensure_launch_template, ClusterSettings, FleetRequest, LaunchError, LaunchTemplateSpec,
    NodeBootstrap,
};
use crate::model::claim::nodepool_of;
use crate::model::facts;
use crate::model::launch::{
    launch_from_requirements, plan_overrides, ErrorClass, OverrideError, UnavailableOfferings,
};
use crate::model::launch_group::unregistered_taint;
use crate::model::node::claim_taints;

/// How long a capacity error keeps an offering out (as Karpenter).
pub const UNAVAILABLE_FOR: Duration = Duration::from_secs(180);
/// CreateFleet attempts per launch: each retry runs without the offerings
/// the previous one found out of capacity.
const ATTEMPTS: usize = 4;

pub struct Ec2Launcher {
    ec2: aws_sdk_ec2::Client,
    cluster: ClusterSettings,
    catalog: RwLock<Catalog>,
    unavailable: Mutex<UnavailableOfferings>,
    /// Launch templates found or made, by name (a hash of their content):
    /// one DescribeLaunchTemplates per template, not per launch.
    templates: Mutex<HashMap<String, fleet::LaunchTemplateRef>>,
}

impl Ec2Launcher {
    pub fn new(ec2: aws_sdk_ec2::Client, cluster: ClusterSettings) -> Self {
        Ec2Launcher {
            ec2,
            cluster,
            catalog: RwLock::new(Catalog::default()),
            unavailable: Mutex::new(UnavailableOfferings::new(UNAVAILABLE_FOR)),
            templates: Mutex::new(HashMap::new()),
        }
    }

    pub fn ec2(&self) -> &aws_sdk_ec2::Client {
        &self.ec2
    }

    /// The labels a node of `instance_type` in `zone` carries beyond the
    /// claim's own: the catalog's labels for the type (what the solver
    /// matched pods against) and the zone's id from the NodeClass's subnets.
    fn node_labels(
        &self,
        class: &NodeClass,
        instance_type: &str,
        zone: &str,
    ) -> BTreeMap<String, String> {
        let mut labels = self
            .catalog
            .read()
            .ok()
            .and_then(|c| c.get(instance_type).map(|t| t.labels.clone()))
            .unwrap_or_default();
        let subnets = class.status.as_ref().map(|s| s.subnets.as_slice());
        let zone_id = subnets
            .unwrap_or_default()
            .iter()
            .find(|s| s.zone == zone)
            .and_then(|s| s.zone_id.clone());
        if let Some(zone_id) = zone_id {
            labels.insert(keys::ZONE_ID_LABEL.to_owned(), zone_id);
        }
        labels
    }

    /// Swaps in a freshly fetched catalog.
    pub fn set_instance_types(&self, types: Vec<InstanceType>) {
        if let Ok(mut catalog) = self.catalog.write() {
            catalog.replace(types, Instant::now());
        }
    }

    /// Rules an offering out for [`UNAVAILABLE_FOR`], as a capacity error
    /// would (an interruption says the same of its pool).
    pub fn mark_offering_unavailable(
        &self,
        capacity_type: CapacityType,
        instance_type: &str,
        zone: &str,
    ) {
        if let Ok(mut unavailable) = self.unavailable.lock() {
            tracing::info!(
                instance_type,
                zone,
                capacity_type = capacity_type.as_str(),
                "offering unavailable for 3 minutes (interruption)"
            );
            unavailable.mark(capacity_type, instance_type, zone, Instant::now());
        }
    }

    /// Whether an offering is ruled out now.
    pub fn is_offering_unavailable(
        &self,
        capacity_type: CapacityType,
        instance_type: &str,
        zone: &str,
    ) -> bool {
        self.unavailable
            .lock()
            .is_ok_and(|u| u.is_unavailable(capacity_type, instance_type, zone, Instant::now()))
    }

    fn mark_unavailable(&self, errors: &[OverrideError]) {
        let now = Instant::now();
        if let Ok(mut unavailable) = self.unavailable.lock() {
            for error in errors
                .iter()
                .filter(|e| matches!(e.class, ErrorClass::Capacity))
            {
                if let (Some(instance_type), Some(zone)) = (&error.instance_type, &error.zone) {
                    tracing::info!(
                        instance_type,
                        zone,
                        capacity_type = error.capacity_type.as_str(),
                        code = error.code,
                        "offering unavailable for 3 minutes"
                    );
                    unavailable.mark(error.capacity_type, instance_type, zone, now);
                }
            }
        }
    }

    async fn template(
        &self,
        claim: &NodeClaim,
        class: &NodeClass,
        arch: &str,
        capacity_type: CapacityType,
    ) -> Result<fleet::LaunchTemplateRef, LaunchFailure> {
        let status = class.status.clone().unwrap_or_default();
        let wanted = format!("({arch})");
        let image = status
            .amis
            .iter()
            .find(|a| a.source.as_deref().is_some_and(|s| s.ends_with(&wanted)))
            .or_else(|| {
                status
                    .amis
                    .iter()
                    .find(|a| a.source.as_deref().is_none_or(|s| !s.ends_with(')')))
            })
            .ok_or_else(|| {
                LaunchFailure::NodeClassNotReady(format!("no AMI resolved for {arch}"))
            })?;
        if status.security_groups.is_empty() {
            return Err(LaunchFailure::NodeClassNotReady(
                "no security group resolved".into(),
            ));
        }
        let bootstrap = node_bootstrap(claim, capacity_type);
        let spec = LaunchTemplateSpec {
            cluster_name: self.cluster.name.clone(),
            node_class: class.metadata.name.clone().unwrap_or_default(),
            image_id: image.id.clone(),
            user_data: fleet::userdata::render(
                &self.cluster,
                &bootstrap,
                class.spec.user_data.as_deref(),
            ),
            security_group_ids: status
                .security_groups
                .iter()
                .map(|g| g.id.clone())
                .collect(),
            instance_profile: class.spec.instance_profile.clone(),
            block_device_mappings: class.spec.block_device_mappings.clone(),
            tags: class.spec.tags.clone(),
        };
        let name = spec.name();
        let known = self
            .templates
            .lock()
            .ok()
            .and_then(|t| t.get(&name).cloned());
        if let Some(template) = known {
            return Ok(template);
        }
        let template = ensure_launch_template(&self.ec2, &spec)
            .await
            .map_err(|err| LaunchFailure::Failed {
                code: err
                    .code
                    .clone()
                    .unwrap_or_else(|| "CreateLaunchTemplate".into()),
                message: err.to_string(),
            })?;
        if let Ok(mut templates) = self.templates.lock() {
            templates.insert(name, template.clone());
        }
        Ok(template)
    }

    /// Forgets a template CreateFleet could not find (deleted behind our
    /// back), so the next attempt makes it again.
    fn forget_template(&self, name: &str) {
        if let Ok(mut templates) = self.templates.lock() {
            templates.remove(name);
        }
    }
}

impl Launcher for Ec2Launcher {
    fn instance_types(&self) -> Vec<InstanceType> {
        let now = Instant::now();
        let (Ok(catalog), Ok(mut unavailable)) = (self.catalog.read(), self.unavailable.lock())
        else {
            return Vec::new();
        };
        unavailable.prune(now);
        catalog.solver_input(&unavailable, now)
    }

    async fn launch(
        &self,
        claim: &NodeClaim,
        class: &NodeClass,
        lookup: Lookup,
    ) -> Result<Launched, LaunchFailure> {
        let name = claim.metadata.name.clone().unwrap_or_default();
        let uid = claim
            .metadata
            .uid
            .clone()
            .ok_or_else(|| LaunchFailure::Failed {
                code: "NoUID".into(),
                message: format!("NodeClaim {name} has no UID yet"),
            })?;
        let mut attempt = Attempt {
            claim,
            class,
            name,
            uid,
            last_errors: Vec::new(),
        };
        for number in 0..ATTEMPTS {
            let request = self.fleet_request(&mut attempt, number).await?;
            // A failed attempt launched nothing: only the first may find one.
            let lookup = if number == 0 { lookup } else { Lookup::Skip };
            match fleet::launch(&self.ec2, &request, lookup).await {
                Ok(outcome) => {
                    self.mark_unavailable(&outcome.errors);
                    let i = outcome.instance;
                    let labels = self.node_labels(class, &i.instance_type, &i.zone);
                    return Ok(Launched {
                        labels,
                        instance_id: i.instance_id,
                        instance_type: i.instance_type,
                        zone: i.zone,
                        capacity_type: i.capacity_type,
                        image_id: i.image_id,
                        price: i.price,
                    });
                }
                Err(LaunchError::NoCapacity { errors }) => {
                    tracing::info!(claim = attempt.name, attempt = number, errors = %codes(&errors), "capacity errors; retrying on what is left");
                    self.mark_unavailable(&errors);
                    attempt.last_errors = errors;
                }
                Err(LaunchError::Throttled { retry_after, .. }) => {
                    tokio::time::sleep(retry_after).await
                }
                Err(LaunchError::Failed { code, .. }) if is_missing_template(&code) => {
                    tracing::info!(
                        claim = attempt.name,
                        template = request.launch_template.name,
                        "launch template gone; making it again"
                    );
                    self.forget_template(&request.launch_template.name);
                }
                Err(LaunchError::Failed {
                    code,
                    message,
                    errors,
                }) => {
                    self.mark_unavailable(&errors);
                    return Err(LaunchFailure::Failed { code, message });
                }
                Err(LaunchError::EmptyPlan) => {
                    return Err(LaunchFailure::NoCapacity("no overrides".into()))
                }
            }
        }
        Err(LaunchFailure::NoCapacity(format!(
            "{ATTEMPTS} attempts: {}",
            codes(&attempt.last_errors)
        )))
    }
}

/// One launch across its attempts.
struct Attempt<'a> {
    claim: &'a NodeClaim,
    class: &'a NodeClass,
    name: String,
    uid: String,
    /// The capacity errors of the previous attempt.
    last_errors: Vec<OverrideError>,
}

impl Ec2Launcher {
    /// The CreateFleet request of attempt `number`: the claim's
    /// requirements over what the catalog still offers, one architecture.
    async fn fleet_request(
        &self,
        attempt: &mut Attempt<'_>,
        number: usize,
    ) -> Result<FleetRequest, LaunchFailure> {
        let requirements: Vec<_> = attempt
            .claim
            .spec
            .requirements
            .iter()
            .map(facts::requirement)
            .collect();
        let subnets = attempt
            .class
            .status
            .as_ref()
            .map(|s| s.subnets.clone())
            .unwrap_or_default();
        // The catalog's copy (every type: about 0.7 MB) must be gone before
        // the template's await: a burst's launches each held one there, and
        // 36 at once put up to 50 MB on the provisioner's peak heap
        // (heaptrack, docs/benchmarks.md).
        let planned = {
            let catalog = self.instance_types();
            let request = launch_from_requirements(&requirements, &catalog);
            plan_overrides(&request, &subnets, &catalog)
        };
        let mut plan = planned.map_err(|err| match number {
            0 => LaunchFailure::NoCapacity(err.to_string()),
            _ => LaunchFailure::NoCapacity(format!(
                "{err} after capacity errors: {}",
                codes(&attempt.last_errors)
            )),
        })?;
        if !plan.min_values_met() {
            return Err(LaunchFailure::NoCapacity(format!(
                "minValues not met: {:?}",
                plan.unmet_min_values
            )));
        }
        // One template (one AMI) per request: keep the cheapest override's architecture.
        let arch = plan.cheapest_arch().unwrap_or("amd64").to_owned();
        plan.retain_arch(&arch);
        // One template per architecture and capacity type (the user data's
        // taints differ); `template` makes each once.
        let template = self
            .template(attempt.claim, attempt.class, &arch, plan.capacity_type)
            .await?;
        Ok(FleetRequest {
            cluster_name: self.cluster.name.clone(),
            nodepool: nodepool_of(attempt.claim),
            nodeclaim_name: attempt.name.clone(),
            nodeclaim_uid: attempt.uid.clone(),
            launch_template: template,
            plan,
            tags: attempt.class.spec.tags.clone(),
        })
    }
}

/// CreateFleet's codes for a launch template that does not exist.
fn is_missing_template(code: &str) -> bool {
    code.starts_with("InvalidLaunchTemplateName.NotFound")
        || code.starts_with("InvalidLaunchTemplateId.NotFound")
}

fn codes(errors: &[OverrideError]) -> String {
    let mut codes: Vec<String> = errors
        .iter()
        .map(|e| {
            format!(
                "{} {} {}",
                e.code,
                e.instance_type.as_deref().unwrap_or("-"),
                e.zone.as_deref().unwrap_or("-")
            )
        })
        .collect();
    codes.truncate(5);
    codes.join(", ")
}

/// What the claim's kubelet registers with: the claim's labels, its taints
/// for this capacity type, and the registration taint that registration
/// lifts.
fn node_bootstrap(claim: &NodeClaim, capacity_type: CapacityType) -> NodeBootstrap {
    NodeBootstrap {
        labels: claim.metadata.labels.clone().unwrap_or_default(),
        taints: claim_taints(claim, Some(capacity_type))
            .cloned()
            .chain([unregistered_taint()])
            .collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use spotwright_api::keys;

    #[test]
    fn every_node_registers_with_the_registration_taint_and_spot_ones_with_the_spot_taint() {
        let claim: NodeClaim = serde_json::from_value(serde_json::json!({
            "apiVersion": "spotwright.io/v1alpha1", "kind": "NodeClaim",
            "metadata": {"name": "c", "labels": {"team": "a"}},
            "spec": {"nodeClassRef": {"name": "default"},
                "taints": [{"key": keys::CAPACITY_TYPE_LABEL, "value": keys::SPOT, "effect": "NoSchedule"}]}
        }))
        .expect("claim");
        let keys_for = |capacity| {
            node_bootstrap(&claim, capacity)
                .taints
                .into_iter()
                .map(|t| t.key)
                .collect::<Vec<_>>()
        };
        assert_eq!(
            keys_for(CapacityType::Spot),
            [keys::CAPACITY_TYPE_LABEL, keys::UNREGISTERED_TAINT_KEY]
        );
        assert_eq!(
            keys_for(CapacityType::OnDemand),
            [keys::UNREGISTERED_TAINT_KEY]
        );
        assert_eq!(
            node_bootstrap(&claim, CapacityType::Spot).labels["team"],
            "a"
        );
    }
}
