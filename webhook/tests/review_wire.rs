//! The AdmissionReview wire format: uid echo, base64 patch, warnings, and
//! the one-line errors for bodies that are not a Pod review.

mod common;

use base64::Engine;
use common::*;
use serde_json::{json, Value};
use spotwright_webhook::mutate::{Decision, Settings};
use spotwright_webhook::review::{answer, ReviewError};

fn review(namespace: &str, object: Value, operation: &str) -> Vec<u8> {
    serde_json::to_vec(&json!({
        "apiVersion": "admission.k8s.io/v1",
        "kind": "AdmissionReview",
        "request": {
            "uid": "705ab4f5-6393-11e8-b7cc-42010a800002",
            "kind": {"group": "", "version": "v1", "kind": "Pod"},
            "resource": {"group": "", "version": "v1", "resource": "pods"},
            "namespace": namespace,
            "operation": operation,
            "userInfo": {"username": "admin"},
            "object": object,
            "dryRun": false
        }
    }))
    .unwrap()
}

fn respond(body: &[u8]) -> Value {
    let answered = answer(body, &view(), &Settings::default()).expect("answered");
    serde_json::from_slice(&answered.body).expect("response is JSON")
}

#[test]
fn a_mutation_carries_the_uid_and_a_standard_base64_json_patch() {
    let out = respond(&review("team-spot", pod_json("team-spot"), "CREATE"));
    assert_eq!(out["apiVersion"], "admission.k8s.io/v1");
    assert_eq!(out["kind"], "AdmissionReview");
    let response = &out["response"];
    assert_eq!(response["uid"], "705ab4f5-6393-11e8-b7cc-42010a800002");
    assert_eq!(response["allowed"], true);
    assert_eq!(response["patchType"], "JSONPatch");
    let encoded = response["patch"].as_str().expect("patch is a string");
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(encoded)
        .expect("standard padded base64");
    let ops: Value = serde_json::from_slice(&decoded).expect("patch is JSON");
    assert!(ops
        .as_array()
        .is_some_and(|ops| !ops.is_empty() && ops.iter().all(|op| op["op"] == "add")));
}

#[test]
fn an_unchanged_pod_gets_no_patch_fields() {
    let out = respond(&review("plain", pod_json("plain"), "CREATE"));
    assert_eq!(out["response"]["allowed"], true);
    assert!(out["response"].get("patch").is_none() && out["response"].get("patchType").is_none());
}

#[test]
fn an_invalid_opt_in_is_allowed_with_a_warning() {
    let out = respond(&review("typo", pod_json("typo"), "CREATE"));
    assert_eq!(out["response"]["allowed"], true);
    assert!(out["response"].get("patch").is_none());
    let warnings = out["response"]["warnings"].as_array().expect("warnings");
    assert!(warnings[0].as_str().is_some_and(|w| w.contains("spto")));
}

#[test]
fn updates_are_allowed_untouched() {
    let body = review("team-spot", pod_json("team-spot"), "UPDATE");
    let answered = answer(&body, &view(), &Settings::default()).unwrap();
    assert!(matches!(answered.decision, Decision::Skipped(_)));
}

#[test]
fn bad_bodies_get_one_line_reasons() {
    type Expectation = fn(&ReviewError) -> bool;
    let cases: Vec<(Vec<u8>, Expectation)> = vec![
        (b"{not json".to_vec(), |e| matches!(e, ReviewError::Malformed(_))),
        (br#"{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview"}"#.to_vec(), |e| *e == ReviewError::MissingRequest),
        (br#"{"apiVersion":"v1","kind":"Pod"}"#.to_vec(), |e| matches!(e, ReviewError::WrongKind { .. })),
        (br#"{"apiVersion":"admission.k8s.io/v1beta1","kind":"AdmissionReview","request":{}}"#.to_vec(), |e| matches!(e, ReviewError::WrongKind { .. })),
        (
            br#"{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","request":{"uid":"u","kind":{"group":"apps","version":"v1","kind":"Deployment"},"operation":"CREATE","object":{}}}"#.to_vec(),
            |e| matches!(e, ReviewError::NotAPod(_)),
        ),
        (
            br#"{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","request":{"uid":"u","kind":{"group":"","version":"v1","kind":"Pod"},"operation":"CREATE"}}"#.to_vec(),
            |e| *e == ReviewError::MissingObject,
        ),
        (
            br#"{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","request":{"uid":"u","kind":{"group":"","version":"v1","kind":"Pod"},"operation":"CREATE","object":{"spec":{"tolerations":"nope"}}}}"#.to_vec(),
            |e| matches!(e, ReviewError::Malformed(_)),
        ),
    ];
    for (body, expected) in cases {
        let err = answer(&body, &view(), &Settings::default()).expect_err("rejected");
        assert!(
            expected(&err),
            "{} gave {err:?}",
            String::from_utf8_lossy(&body)
        );
        assert!(!err.to_string().contains('\n'), "one line: {err}");
    }
}
