//! The AdmissionReview wire format (`admission.k8s.io/v1`): from request
//! bytes to response bytes, around [`crate::mutate::decide`].

use base64::Engine;
use serde::{Deserialize, Serialize};

use crate::mutate::{decide, ClusterView, Decision, Settings};
use crate::pod::PodView;

const API_VERSION: &str = "admission.k8s.io/v1";
const KIND: &str = "AdmissionReview";

/// Why a request body is not a review this webhook can answer (HTTP 400).
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ReviewError {
    #[error("malformed AdmissionReview: {0}")]
    Malformed(String),
    #[error("expected apiVersion {API_VERSION} kind {KIND}, got apiVersion {api_version:?} kind {kind:?}")]
    WrongKind { api_version: String, kind: String },
    #[error("AdmissionReview has no request")]
    MissingRequest,
    #[error("this webhook admits core/v1 Pods, not {0}")]
    NotAPod(String),
    #[error("AdmissionReview request for a CREATE has no object")]
    MissingObject,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ReviewIn {
    #[serde(default)]
    api_version: String,
    #[serde(default)]
    kind: String,
    request: Option<RequestIn>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RequestIn {
    #[serde(default)]
    uid: Option<String>,
    #[serde(default)]
    kind: GroupVersionKind,
    #[serde(default)]
    namespace: Option<String>,
    #[serde(default)]
    operation: String,
    #[serde(default)]
    object: Option<PodView>,
}

#[derive(Default, Deserialize)]
struct GroupVersionKind {
    #[serde(default)]
    group: String,
    #[serde(default)]
    version: String,
    #[serde(default)]
    kind: String,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct ReviewOut<'a> {
    api_version: &'static str,
    kind: &'static str,
    response: ResponseOut<'a>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct ResponseOut<'a> {
    uid: &'a str,
    allowed: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    patch_type: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    patch: Option<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    warnings: Vec<String>,
}

/// An answered review: the response body and what was decided.
#[derive(Debug)]
pub struct Answer {
    pub body: Vec<u8>,
    pub decision: Decision,
}

/// Answers one AdmissionReview. Every pod is allowed: the webhook only
/// ever adds scheduling hints, so refusing would be failing closed.
pub fn answer(
    body: &[u8],
    view: &impl ClusterView,
    settings: &Settings,
) -> Result<Answer, ReviewError> {
    let review: ReviewIn =
        serde_json::from_slice(body).map_err(|e| ReviewError::Malformed(e.to_string()))?;
    if review.api_version != API_VERSION || review.kind != KIND {
        return Err(ReviewError::WrongKind {
            api_version: review.api_version,
            kind: review.kind,
        });
    }
    let request = review.request.ok_or(ReviewError::MissingRequest)?;
    let uid = request
        .uid
        .as_deref()
        .ok_or_else(|| ReviewError::Malformed("request.uid is missing".to_owned()))?;
    let gvk = &request.kind;
    if !(gvk.group.is_empty() && gvk.version == "v1" && gvk.kind == "Pod") {
        let group = if gvk.group.is_empty() {
            "core"
        } else {
            &gvk.group
        };
        return Err(ReviewError::NotAPod(format!(
            "{group}/{}/{}",
            gvk.version, gvk.kind
        )));
    }
    let decision = if request.operation != "CREATE" {
        Decision::Skipped(crate::mutate::SkipReason::NotCreate)
    } else {
        let pod = request.object.as_ref().ok_or(ReviewError::MissingObject)?;
        let namespace = request
            .namespace
            .as_deref()
            .or(pod.metadata.namespace.as_deref())
            .unwrap_or("default");
        decide(namespace, pod, view, settings)
    };
    let mut response = ResponseOut {
        uid,
        allowed: true,
        patch_type: None,
        patch: None,
        warnings: Vec::new(),
    };
    match &decision {
        Decision::Mutated(patch) => {
            let json =
                serde_json::to_vec(patch).map_err(|e| ReviewError::Malformed(e.to_string()))?;
            response.patch_type = Some("JSONPatch");
            response.patch = Some(base64::engine::general_purpose::STANDARD.encode(json));
        }
        Decision::Invalid(invalid) => response.warnings.push(invalid.warning()),
        Decision::Skipped(_) | Decision::Unchanged => {}
    }
    let out = ReviewOut {
        api_version: API_VERSION,
        kind: KIND,
        response,
    };
    let body = serde_json::to_vec(&out).map_err(|e| ReviewError::Malformed(e.to_string()))?;
    Ok(Answer { body, decision })
}
