//! One launch template per distinct (NodeClass, AMI, user data, ...):
//! named from a hash of everything it holds, so a changed NodeClass gets a
//! new template and an unchanged one is found again after a restart.

use std::collections::BTreeMap;

use aws_sdk_ec2::types::{
    Filter, LaunchTemplateBlockDeviceMappingRequest, LaunchTemplateEbsBlockDeviceRequest,
    LaunchTemplateIamInstanceProfileSpecificationRequest, LaunchTemplateTagSpecificationRequest,
    RequestLaunchTemplateData, ResourceType, Tag, TagSpecification, VolumeType,
};
use base64::Engine;
use spotwright_api::keys::cluster_tag_key;
use spotwright_api::v1alpha1::{BlockDeviceMapping, NodeClassSpec};

use super::userdata::{self, ClusterSettings, NodeBootstrap};
use crate::act::aws::ami::ResolvedImage;
use crate::model::hashing::{fnv1a, FNV_OFFSET};

use crate::act::aws::error::{sdk_error, SdkCallError};

/// Tag naming the NodeClass a launch template was made for.
pub const NODECLASS_TAG: &str = "spotwright.io/nodeclass";

/// Everything a launch template holds.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct LaunchTemplateSpec {
    pub cluster_name: String,
    pub node_class: String,
    pub image_id: String,
    /// Rendered user data (`userdata::render`), not yet base64.
    pub user_data: String,
    pub security_group_ids: Vec<String>,
    pub instance_profile: Option<String>,
    pub block_device_mappings: Vec<BlockDeviceMapping>,
    /// The NodeClass's `tags`.
    pub tags: BTreeMap<String, String>,
}

/// A launch template that exists.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LaunchTemplateRef {
    pub name: String,
    pub id: String,
    pub image_id: String,
}

impl LaunchTemplateSpec {
    /// The template of a NodeClass for one of its resolved images: user
    /// data rendered from the cluster settings, the node's labels and
    /// taints, and the NodeClass's own `userData`.
    pub fn for_node_class(
        cluster: &ClusterSettings,
        node_class_name: &str,
        node_class: &NodeClassSpec,
        image: &ResolvedImage,
        security_group_ids: Vec<String>,
        bootstrap: &NodeBootstrap,
    ) -> Self {
        LaunchTemplateSpec {
            cluster_name: cluster.name.clone(),
            node_class: node_class_name.to_owned(),
            image_id: image.id.clone(),
            user_data: userdata::render(cluster, bootstrap, node_class.user_data.as_deref()),
            security_group_ids,
            instance_profile: node_class.instance_profile.clone(),
            block_device_mappings: node_class.block_device_mappings.clone(),
            tags: node_class.tags.clone(),
        }
    }

    /// `spotwright/<cluster>/<16 hex digits>`.
    pub fn name(&self) -> String {
        let mut hash = FNV_OFFSET;
        let mut field = |text: &str| {
            hash = fnv1a(text.as_bytes(), hash);
            // A separator no field contains, so ("ab","c") != ("a","bc").
            hash = fnv1a(&[0], hash);
        };
        field(&self.node_class);
        field(&self.image_id);
        field(&self.user_data);
        let mut groups = self.security_group_ids.clone();
        groups.sort();
        field(&groups.join(","));
        field(self.instance_profile.as_deref().unwrap_or_default());
        field(&format!("{:?}", self.block_device_mappings));
        for (key, value) in &self.tags {
            field(key);
            field(value);
        }
        format!("spotwright/{}/{hash:016x}", self.cluster_name)
    }

    fn ownership_tags(&self) -> Vec<Tag> {
        let mut tags: BTreeMap<String, String> = self.tags.clone();
        tags.insert(cluster_tag_key(&self.cluster_name), "owned".to_owned());
        tags.insert(NODECLASS_TAG.to_owned(), self.node_class.clone());
        tags.into_iter()
            .map(|(k, v)| Tag::builder().key(k).value(v).build())
            .collect()
    }

    fn data(&self) -> RequestLaunchTemplateData {
        let tags = self.ownership_tags();
        let mut data = RequestLaunchTemplateData::builder()
            .image_id(&self.image_id)
            .user_data(base64::engine::general_purpose::STANDARD.encode(&self.user_data))
            .set_security_group_ids(Some(self.security_group_ids.clone()))
            // Volumes cannot be tagged per launch by an instant fleet, so
            // the template tags them with what every node of the class shares.
            .tag_specifications(
                LaunchTemplateTagSpecificationRequest::builder()
                    .resource_type(ResourceType::Volume)
                    .set_tags(Some(tags))
                    .build(),
            );
        if let Some(profile) = &self.instance_profile {
            let spec = LaunchTemplateIamInstanceProfileSpecificationRequest::builder();
            let spec = if profile.starts_with("arn:") {
                spec.arn(profile)
            } else {
                spec.name(profile)
            };
            data = data.iam_instance_profile(spec.build());
        }
        for mapping in &self.block_device_mappings {
            data = data.block_device_mappings(block_device(mapping));
        }
        data.build()
    }
}

fn block_device(mapping: &BlockDeviceMapping) -> LaunchTemplateBlockDeviceMappingRequest {
    let mut request =
        LaunchTemplateBlockDeviceMappingRequest::builder().device_name(&mapping.device_name);
    if let Some(ebs) = &mapping.ebs {
        let size_gib = ebs
            .volume_size
            .as_ref()
            .and_then(|q| spotwright_api::quantity::value(&q.0).ok())
            .and_then(|bytes| u64::try_from(bytes).ok())
            .and_then(|bytes| i32::try_from(bytes.div_ceil(1 << 30)).ok());
        let to_i32 = |v: Option<i64>| v.and_then(|v| i32::try_from(v).ok());
        request = request.ebs(
            LaunchTemplateEbsBlockDeviceRequest::builder()
                .set_volume_size(size_gib)
                .set_volume_type(ebs.volume_type.as_deref().map(VolumeType::from))
                .set_iops(to_i32(ebs.iops))
                .set_throughput(to_i32(ebs.throughput))
                .set_encrypted(ebs.encrypted)
                .set_delete_on_termination(ebs.delete_on_termination.or(Some(true)))
                .build(),
        );
    }
    request.build()
}

/// The root volume size a NodeClass asks for, in GiB (the first mapping's),
/// for the catalog's ephemeral-storage figures.
pub fn root_volume_gib(mappings: &[BlockDeviceMapping]) -> Option<u64> {
    let size = mappings.first()?.ebs.as_ref()?.volume_size.as_ref()?;
    let bytes = spotwright_api::quantity::value(&size.0).ok()?;
    u64::try_from(bytes).ok().map(|b| b.div_ceil(1 << 30))
}

/// Finds the template `spec` names, creating it when absent. Safe to race:
/// a create that loses to another process reads the winner's template.
pub async fn ensure_launch_template(
    ec2: &aws_sdk_ec2::Client,
    spec: &LaunchTemplateSpec,
) -> Result<LaunchTemplateRef, SdkCallError> {
    let name = spec.name();
    if let Some(id) = find_launch_template(ec2, &name).await? {
        return Ok(LaunchTemplateRef {
            name,
            id,
            image_id: spec.image_id.clone(),
        });
    }
    let created = ec2
        .create_launch_template()
        .launch_template_name(&name)
        .launch_template_data(spec.data())
        .tag_specifications(
            TagSpecification::builder()
                .resource_type(ResourceType::LaunchTemplate)
                .set_tags(Some(spec.ownership_tags()))
                .build(),
        )
        .send()
        .await;
    let id = match created {
        Ok(reply) => reply
            .launch_template()
            .and_then(|t| t.launch_template_id())
            .map(str::to_owned),
        Err(err) => {
            let err = sdk_error("CreateLaunchTemplate")(err);
            if err.code.as_deref() != Some("InvalidLaunchTemplateName.AlreadyExistsException") {
                return Err(err);
            }
            None
        }
    };
    let id = match id {
        Some(id) => id,
        None => find_launch_template(ec2, &name)
            .await?
            .ok_or_else(|| SdkCallError {
                operation: "DescribeLaunchTemplates",
                code: None,
                message: format!("launch template {name} was created but cannot be found"),
            })?,
    };
    Ok(LaunchTemplateRef {
        name,
        id,
        image_id: spec.image_id.clone(),
    })
}

async fn find_launch_template(
    ec2: &aws_sdk_ec2::Client,
    name: &str,
) -> Result<Option<String>, SdkCallError> {
    // A name filter answers "none" with an empty list; naming the template
    // directly answers with an error.
    let reply = ec2
        .describe_launch_templates()
        .filters(
            Filter::builder()
                .name("launch-template-name")
                .values(name)
                .build(),
        )
        .send()
        .await
        .map_err(sdk_error("DescribeLaunchTemplates"))?;
    Ok(reply
        .launch_templates()
        .iter()
        .find(|t| t.launch_template_name() == Some(name))
        .and_then(|t| t.launch_template_id())
        .map(str::to_owned))
}

/// Deletes the cluster's launch templates that `keep` does not name (for
/// garbage collection after NodeClass changes); returns the deleted names.
pub async fn delete_unused_launch_templates(
    ec2: &aws_sdk_ec2::Client,
    cluster_name: &str,
    keep: &[String],
) -> Result<Vec<String>, SdkCallError> {
    let mut pages = ec2
        .describe_launch_templates()
        .filters(
            Filter::builder()
                .name(format!("tag:{}", cluster_tag_key(cluster_name)))
                .values("owned")
                .build(),
        )
        .into_paginator()
        .send();
    let mut unused = Vec::new();
    while let Some(page) = pages.next().await {
        let page = page.map_err(sdk_error("DescribeLaunchTemplates"))?;
        for template in page.launch_templates() {
            if let Some(name) = template.launch_template_name() {
                if !keep.iter().any(|k| k == name) {
                    unused.push(name.to_owned());
                }
            }
        }
    }
    for name in &unused {
        ec2.delete_launch_template()
            .launch_template_name(name)
            .send()
            .await
            .map_err(sdk_error("DeleteLaunchTemplate"))?;
    }
    Ok(unused)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec() -> LaunchTemplateSpec {
        LaunchTemplateSpec {
            cluster_name: "c1".into(),
            node_class: "default".into(),
            image_id: "ami-1".into(),
            user_data: "ud".into(),
            security_group_ids: vec!["sg-2".into(), "sg-1".into()],
            ..Default::default()
        }
    }

    #[test]
    fn the_name_is_stable_and_changes_with_the_content() {
        let name = spec().name();
        assert!(name.starts_with("spotwright/c1/"), "{name}");
        assert_eq!(name.len(), "spotwright/c1/".len() + 16);
        assert_eq!(name, spec().name());
        let reordered = LaunchTemplateSpec {
            security_group_ids: vec!["sg-1".into(), "sg-2".into()],
            ..spec()
        };
        assert_eq!(name, reordered.name());
        for changed in [
            LaunchTemplateSpec {
                image_id: "ami-2".into(),
                ..spec()
            },
            LaunchTemplateSpec {
                user_data: "ud2".into(),
                ..spec()
            },
            LaunchTemplateSpec {
                node_class: "other".into(),
                ..spec()
            },
        ] {
            assert_ne!(name, changed.name());
        }
    }
}
