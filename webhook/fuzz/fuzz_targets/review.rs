//! Fuzzes the whole request-to-response path. The oracle: no panic; every
//! error is one line; every answer allows the pod; every patch decodes,
//! applies to the pod it was computed for, and a second admission of the
//! patched pod yields no patch.
#![no_main]

use std::collections::BTreeMap;

use base64::Engine;
use k8s_openapi::api::core::v1::Taint;
use libfuzzer_sys::fuzz_target;
use serde_json::Value;
use spotwright_webhook::mutate::{NamespaceFacts, Settings};
use spotwright_webhook::review::answer;
use spotwright_webhook::view::StaticView;

fn view() -> StaticView {
    let facts = |capacity: &str, nodepool: Option<&str>| NamespaceFacts {
        capacity: Some(capacity.to_owned()),
        nodepool: nodepool.map(str::to_owned),
    };
    let mut namespaces = BTreeMap::new();
    namespaces.insert("team-spot".to_owned(), facts("spot", None));
    namespaces.insert("team-pref".to_owned(), facts("spot-preferred", None));
    namespaces.insert("team-od".to_owned(), facts("on-demand", None));
    namespaces.insert("team-pool".to_owned(), facts("spot", Some("gpu")));
    let mut nodepools = BTreeMap::new();
    nodepools.insert(
        "gpu".to_owned(),
        vec![Taint { key: "nvidia.com/gpu".into(), value: Some("true".into()), effect: "NoSchedule".into(), time_added: None }],
    );
    StaticView { namespaces, nodepools }
}

fuzz_target!(|data: &[u8]| {
    let view = view();
    let settings = Settings::default();
    let answered = match answer(data, &view, &settings) {
        Err(err) => {
            assert!(!err.to_string().contains('\n'), "multi-line error: {err}");
            return;
        }
        Ok(answered) => answered,
    };
    let out: Value = serde_json::from_slice(&answered.body).expect("the response is JSON");
    assert_eq!(out["response"]["allowed"], Value::Bool(true));
    let Some(encoded) = out["response"]["patch"].as_str() else { return };
    let bytes = base64::engine::general_purpose::STANDARD.decode(encoded).expect("standard base64");
    let patch: json_patch::Patch = serde_json::from_slice(&bytes).expect("an RFC 6902 patch");
    // The typed parse skips unknown fields without checking their escapes, so
    // a body can be answered yet not be valid JSON as a whole: nothing to replay.
    let Ok(mut review) = serde_json::from_slice::<Value>(data) else { return };
    let object = &mut review["request"]["object"];
    json_patch::patch(object, &patch).expect("the patch applies to the pod it was made for");
    let again_body = serde_json::to_vec(&review).expect("serialises");
    let again = answer(&again_body, &view, &settings).expect("the patched review is answered");
    let again: Value = serde_json::from_slice(&again.body).expect("JSON");
    assert!(again["response"].get("patch").is_none(), "a second admission patched again");
});
