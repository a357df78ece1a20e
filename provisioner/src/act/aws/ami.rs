//! The node image: a NodeClass's `amiSelector` resolved through SSM.
//!
//! `alias: eks@latest` names the EKS-optimized Amazon Linux 2023 AMI for the
//! control plane's Kubernetes version, one per architecture, at
//! `<prefix>/<1.xx>/amazon-linux-2023/<x86_64|arm64>/standard/recommended/image_id`.
//! The prefix is a setting (`--eks-ami-ssm-prefix`) because moto refuses
//! writes under `/aws/`, so tests publish their AMIs elsewhere.

use spotwright_api::v1alpha1::AmiSelector;

use super::catalog::Arch;
use super::error::{sdk_error, SdkCallError};

/// Where AWS publishes the EKS-optimized AMI ids.
pub const DEFAULT_EKS_AMI_SSM_PREFIX: &str = "/aws/service/eks/optimized-ami";
/// The alias that follows the control plane's Kubernetes version.
pub const EKS_LATEST_ALIAS: &str = "eks@latest";

#[derive(Debug, thiserror::Error)]
pub enum AmiError {
    #[error("Kubernetes version {0:?} is not of the form v<major>.<minor>[.<patch>...]")]
    BadKubernetesVersion(String),
    #[error("amiSelector alias {0:?} is not supported (only {EKS_LATEST_ALIAS:?})")]
    UnknownAlias(String),
    #[error("amiSelector sets neither ssmParameter nor alias")]
    EmptySelector,
    #[error("amiSelector sets both ssmParameter and alias")]
    AmbiguousSelector,
    #[error("SSM parameter {path} holds {value:?}, not an AMI id")]
    NotAnAmi { path: String, value: String },
    #[error(transparent)]
    Call(#[from] SdkCallError),
}

/// `v1.36.3` (or `1.36`, `v1.36.3-eks-4a5b6c`) -> `1.36`.
pub fn kubernetes_minor(version: &str) -> Result<String, AmiError> {
    let bad = || AmiError::BadKubernetesVersion(version.to_owned());
    let trimmed = version.trim().trim_start_matches('v');
    let mut parts = trimmed.split(['.', '-', '+']);
    let (Some(major), Some(minor)) = (parts.next(), parts.next()) else {
        return Err(bad());
    };
    let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    if !digits(major) || !digits(minor) {
        return Err(bad());
    }
    Ok(format!("{major}.{minor}"))
}

/// The SSM path of the EKS AL2023 AMI for `minor` (`1.36`) and `arch`.
pub fn eks_ami_parameter(prefix: &str, minor: &str, arch: Arch) -> String {
    format!(
        "{}/{minor}/amazon-linux-2023/{}/standard/recommended/image_id",
        prefix.trim_end_matches('/'),
        arch.ec2()
    )
}

/// An SSM parameter to read, and the architecture it is for (`None`: the
/// NodeClass named one path, used for every architecture).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AmiParameter {
    pub arch: Option<Arch>,
    pub path: String,
}

/// Which SSM parameters a selector names; `kubernetes_version` is the API
/// server's `/version` `gitVersion`.
pub fn ami_parameters(
    selector: &AmiSelector,
    prefix: &str,
    kubernetes_version: &str,
) -> Result<Vec<AmiParameter>, AmiError> {
    match (&selector.ssm_parameter, &selector.alias) {
        (Some(_), Some(_)) => Err(AmiError::AmbiguousSelector),
        (None, None) => Err(AmiError::EmptySelector),
        (Some(path), None) => Ok(vec![AmiParameter {
            arch: None,
            path: path.clone(),
        }]),
        (None, Some(alias)) if alias == EKS_LATEST_ALIAS => {
            let minor = kubernetes_minor(kubernetes_version)?;
            Ok([Arch::Amd64, Arch::Arm64]
                .into_iter()
                .map(|arch| AmiParameter {
                    arch: Some(arch),
                    path: eks_ami_parameter(prefix, &minor, arch),
                })
                .collect())
        }
        (None, Some(alias)) => Err(AmiError::UnknownAlias(alias.clone())),
    }
}

/// An AMI the selector resolves to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ResolvedImage {
    /// `None`: usable for any architecture (an explicit `ssmParameter`).
    pub arch: Option<Arch>,
    pub id: String,
    /// The SSM path it was read from.
    pub source: String,
}

/// Reads the selector's parameters. A missing `eks@latest` parameter for
/// one architecture is skipped (that arch cannot launch); a missing
/// explicit parameter, or no AMI at all, is an error.
pub async fn resolve_amis(
    ssm: &aws_sdk_ssm::Client,
    selector: &AmiSelector,
    prefix: &str,
    kubernetes_version: &str,
) -> Result<Vec<ResolvedImage>, AmiError> {
    let parameters = ami_parameters(selector, prefix, kubernetes_version)?;
    let mut images = Vec::new();
    let mut last_error = None;
    for parameter in parameters {
        match read_parameter(ssm, &parameter.path).await {
            Ok(id) => images.push(ResolvedImage {
                arch: parameter.arch,
                id,
                source: parameter.path,
            }),
            Err(err) => {
                tracing::debug!(path = %parameter.path, error = %err, "AMI parameter unreadable");
                last_error = Some(err);
            }
        }
    }
    match (images.is_empty(), last_error) {
        (true, Some(err)) => Err(err),
        _ => Ok(images),
    }
}

/// The AMI id an SSM parameter holds.
pub async fn read_parameter(ssm: &aws_sdk_ssm::Client, path: &str) -> Result<String, AmiError> {
    let reply = ssm
        .get_parameter()
        .name(path)
        .send()
        .await
        .map_err(sdk_error("GetParameter"))?;
    let value = reply
        .parameter()
        .and_then(|p| p.value())
        .unwrap_or_default()
        .trim()
        .to_owned();
    if !value.starts_with("ami-") {
        return Err(AmiError::NotAnAmi {
            path: path.to_owned(),
            value,
        });
    }
    Ok(value)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_minor_version_comes_from_the_api_server_version() {
        assert_eq!(kubernetes_minor("v1.36.3").unwrap(), "1.36");
        assert_eq!(kubernetes_minor("v1.36.3-eks-4a5b6c").unwrap(), "1.36");
        assert_eq!(kubernetes_minor("1.29").unwrap(), "1.29");
        for bad in ["", "v1", "vx.y", "1.", "v1.36a.0"] {
            assert!(kubernetes_minor(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn eks_latest_names_one_path_per_arch() {
        let selector = AmiSelector {
            alias: Some(EKS_LATEST_ALIAS.into()),
            ssm_parameter: None,
        };
        let params =
            ami_parameters(&selector, "/aws/service/eks/optimized-ami/", "v1.36.3").unwrap();
        assert_eq!(
            params[0].path,
            "/aws/service/eks/optimized-ami/1.36/amazon-linux-2023/x86_64/standard/recommended/image_id"
        );
        assert_eq!(params[1].arch, Some(Arch::Arm64));
        assert!(params[1].path.contains("/arm64/"));
    }

    #[test]
    fn selectors_must_name_exactly_one_source() {
        let both = AmiSelector {
            alias: Some(EKS_LATEST_ALIAS.into()),
            ssm_parameter: Some("/x".into()),
        };
        assert!(matches!(
            ami_parameters(&both, "/p", "v1.36.0"),
            Err(AmiError::AmbiguousSelector)
        ));
        assert!(matches!(
            ami_parameters(&AmiSelector::default(), "/p", "v1.36.0"),
            Err(AmiError::EmptySelector)
        ));
        let other = AmiSelector {
            alias: Some("bottlerocket@latest".into()),
            ssm_parameter: None,
        };
        assert!(matches!(
            ami_parameters(&other, "/p", "v1.36.0"),
            Err(AmiError::UnknownAlias(_))
        ));
        let path = AmiSelector {
            alias: None,
            ssm_parameter: Some("/mine/ami".into()),
        };
        assert_eq!(
            ami_parameters(&path, "/p", "garbage").unwrap(),
            [AmiParameter {
                arch: None,
                path: "/mine/ami".into()
            }]
        );
    }
}
