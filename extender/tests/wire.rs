//! The kube-scheduler extender wire format, from request bytes to reply
//! bytes: field names, both nodeCacheCapable modes, the lists that must
//! always be there, and what a bad body gets.

mod common;

use std::collections::BTreeSet;

use common::*;
use proptest::prelude::*;
use serde_json::{json, Value};
use spotwright_extender::answer::{self, RequestError, Settings};
use spotwright_extender::filter::Reason;

fn filter(body: &[u8]) -> Value {
    let answer = answer::filter(body, &index(), &Settings::default(), NOW).expect("answered");
    serde_json::from_slice(&answer.body).expect("reply is JSON")
}

fn keys(value: &Value) -> Vec<&str> {
    let mut keys: Vec<&str> = value
        .as_object()
        .expect("an object")
        .keys()
        .map(String::as_str)
        .collect();
    keys.sort_unstable();
    keys
}

#[test]
fn filter_reply_fields_are_pascal_case_and_all_present() {
    let reply = filter(&args_names(&["full", "tainted", "notready"]));
    assert_eq!(
        keys(&reply),
        [
            "Error",
            "FailedAndUnresolvableNodes",
            "FailedNodes",
            "NodeNames",
            "Nodes"
        ]
    );
    assert_eq!(reply["Nodes"], Value::Null);
    assert_eq!(reply["NodeNames"], json!(["full"]));
    assert_eq!(reply["Error"], "");
    assert_eq!(
        reply["FailedNodes"],
        json!({"notready": Reason::NotReady.message()})
    );
    assert_eq!(
        reply["FailedAndUnresolvableNodes"],
        json!({"tainted": Reason::DisruptedTaint.message()})
    );
}

#[test]
fn every_reason_rejects_its_node_and_healthy_nodes_pass() {
    let mut names: Vec<&str> = HEALTHY.to_vec();
    names.extend(REJECTED);
    let answer = answer::filter(&args_names(&names), &index(), &Settings::default(), NOW).unwrap();
    let reply: Value = serde_json::from_slice(&answer.body).unwrap();
    assert_eq!(reply["NodeNames"], json!(HEALTHY));
    let failed = reply["FailedNodes"].as_object().unwrap();
    let unresolvable = reply["FailedAndUnresolvableNodes"].as_object().unwrap();
    let expected = [
        ("tainted", Reason::DisruptedTaint),
        ("deleting", Reason::Deleting),
        ("notready", Reason::NotReady),
        ("cordoned", Reason::Unschedulable),
        ("drifted", Reason::Drifted),
        ("disrupting", Reason::Disrupting),
    ];
    for (node, reason) in expected {
        let list = if reason.unresolvable() {
            unresolvable
        } else {
            failed
        };
        assert_eq!(list[node], reason.message(), "{node}");
        assert_eq!(answer.rejected[reason.index()], 1, "{node}");
    }
    assert_eq!(failed.len() + unresolvable.len(), REJECTED.len());
    assert_eq!(answer.passed, HEALTHY.len());
}

#[test]
fn node_names_are_there_even_when_empty() {
    // Every node rejected.
    let reply = filter(&args_names(&["tainted", "drifted"]));
    assert_eq!(reply["NodeNames"], json!([]));
    // No node asked about.
    let reply = filter(&args_names(&[]));
    assert_eq!(reply["NodeNames"], json!([]));
    assert_eq!(reply["FailedNodes"], json!({}));
    assert_eq!(reply["FailedAndUnresolvableNodes"], json!({}));
    let raw = String::from_utf8(
        answer::filter(&args_names(&[]), &index(), &Settings::default(), NOW)
            .unwrap()
            .body,
    )
    .unwrap();
    assert!(raw.contains(r#""NodeNames":[]"#), "{raw}");
}

#[test]
fn nodes_the_index_has_not_seen_pass() {
    let reply = filter(&args_names(&["new-node", "full"]));
    assert_eq!(reply["NodeNames"], json!(["new-node", "full"]));
}

#[test]
fn full_node_lists_are_answered_with_nodes() {
    let nodes = [
        node_json("a", true),
        node_json("b", false),
        node_json("drifted", true),
    ];
    let reply = filter(&args_nodes(&nodes));
    assert_eq!(reply["NodeNames"], Value::Null);
    assert_eq!(reply["Nodes"]["kind"], "NodeList");
    // The passing node comes back exactly as it was sent.
    assert_eq!(reply["Nodes"]["items"], json!([nodes[0]]));
    // The request's own Node says NotReady; the index's NodeClaim says Drifted.
    assert_eq!(reply["FailedNodes"]["b"], Reason::NotReady.message());
    assert_eq!(
        reply["FailedAndUnresolvableNodes"]["drifted"],
        Reason::Drifted.message()
    );
}

#[test]
fn prioritize_reply_is_a_bare_array_of_host_and_score() {
    let body = args_names(&["full", "half", "empty", "ondemand", "noisy", "unknown"]);
    let reply = answer::prioritize(&body, &index(), &Settings::default(), NOW).unwrap();
    let list: Value = serde_json::from_slice(&reply).unwrap();
    let list = list.as_array().expect("a bare array");
    assert_eq!(list.len(), 6);
    for hp in list {
        assert_eq!(keys(hp), ["Host", "Score"]);
    }
    let hosts: Vec<&str> = list.iter().map(|hp| hp["Host"].as_str().unwrap()).collect();
    assert_eq!(
        hosts,
        ["full", "half", "empty", "ondemand", "noisy", "unknown"]
    );
    // See tests/common: packing, then price, then the pool's interruptions.
    let s = scores(&reply);
    assert_eq!(
        (
            s["full"],
            s["half"],
            s["empty"],
            s["ondemand"],
            s["noisy"],
            s["unknown"]
        ),
        (9, 8, 6, 4, 6, 5)
    );
}

#[test]
fn prioritize_with_full_nodes_scores_the_request_nodes() {
    let body = args_nodes(&[node_json("full", true), node_json("stranger", true)]);
    let reply = answer::prioritize(&body, &index(), &Settings::default(), NOW).unwrap();
    let s = scores(&reply);
    assert_eq!(s.keys().collect::<Vec<_>>(), ["full", "stranger"]);
    assert!(s["full"] > s["stranger"], "{s:?}");
}

#[test]
fn weights_change_the_ranking() {
    let body = args_names(&["empty", "ondemand"]);
    let only_interruption = Settings {
        weights: spotwright_extender::score::Weights {
            packing: 0,
            price: 0,
            interruption: 1,
            age: 0,
        },
        ..Settings::default()
    };
    let s = scores(&answer::prioritize(&body, &index(), &only_interruption, NOW).unwrap());
    assert_eq!((s["empty"], s["ondemand"]), (10, 10));
    let only_price = Settings {
        weights: spotwright_extender::score::Weights {
            packing: 0,
            price: 1,
            interruption: 0,
            age: 0,
        },
        ..Settings::default()
    };
    let s = scores(&answer::prioritize(&body, &index(), &only_price, NOW).unwrap());
    assert_eq!((s["empty"], s["ondemand"]), (10, 3));
}

#[test]
fn interruptions_outside_the_window_do_not_count() {
    let body = args_names(&["half", "noisy"]);
    let s = scores(&answer::prioritize(&body, &index(), &Settings::default(), NOW).unwrap());
    assert!(s["noisy"] < s["half"], "{s:?}");
    // Two hours later the three interruptions are outside the 60-minute window.
    let later = NOW + 2 * 3600;
    let s = scores(&answer::prioritize(&body, &index(), &Settings::default(), later).unwrap());
    assert_eq!(s["noisy"], s["half"], "{s:?}");
}

#[test]
fn bad_bodies_are_refused_with_a_one_line_reason() {
    type Expect = fn(&RequestError) -> bool;
    let cases: [(&[u8], Expect); 9] = [
        (b"{oops", |e| matches!(e, RequestError::Malformed(_))),
        (b"[]", |e| matches!(e, RequestError::Malformed(_))),
        (br#"{"NodeNames":["a"]}"#, |e| {
            *e == RequestError::MissingPod
        }),
        (br#"{"Pod":null,"NodeNames":["a"]}"#, |e| {
            *e == RequestError::MissingPod
        }),
        (br#"{"Pod":{}}"#, |e| *e == RequestError::NoNodes),
        (br#"{"Pod":{},"Nodes":null,"NodeNames":null}"#, |e| {
            *e == RequestError::NoNodes
        }),
        (br#"{"Pod":{},"NodeNames":5}"#, |e| {
            matches!(e, RequestError::BadNodeNames(_))
        }),
        (br#"{"Pod":{},"NodeNames":["a",7]}"#, |e| {
            matches!(e, RequestError::BadNodeNames(_))
        }),
        (br#"{"Pod":{},"Nodes":{"items":[{"metadata":{}}]}}"#, |e| {
            matches!(e, RequestError::BadNode { index: 0, .. })
        }),
    ];
    for (body, expected) in cases {
        let text = String::from_utf8_lossy(body);
        let err = answer::filter(body, &index(), &Settings::default(), NOW).expect_err(&text);
        assert!(expected(&err), "{text}: {err:?}");
        assert_eq!(err.to_string().lines().count(), 1, "{text}: {err}");
        let err = answer::prioritize(body, &index(), &Settings::default(), NOW).expect_err(&text);
        assert!(expected(&err), "{text}: {err:?}");
    }
    // A pod whose requests are not quantities is only a problem for prioritize.
    let bad_pod = br#"{"Pod":{"spec":{"containers":[{"resources":{"requests":{"cpu":"lots"}}}]}},"NodeNames":["full"]}"#;
    assert!(answer::filter(bad_pod, &index(), &Settings::default(), NOW).is_ok());
    let err = answer::prioritize(bad_pod, &index(), &Settings::default(), NOW).unwrap_err();
    assert!(matches!(err, RequestError::BadPod(_)), "{err:?}");
    // A multi-line body error still reads as one line.
    let err =
        answer::filter(b"{\n\n\"Pod\": {,\n}", &index(), &Settings::default(), NOW).unwrap_err();
    assert_eq!(err.to_string().lines().count(), 1);
}

#[test]
fn escaped_names_are_decoded_and_answered_as_names() {
    let body = br#"{"Pod":{},"NodeNames":["fu\u006cl","tainted"]}"#;
    let reply: Value = serde_json::from_slice(
        &answer::filter(body, &index(), &Settings::default(), NOW)
            .unwrap()
            .body,
    )
    .unwrap();
    assert_eq!(reply["NodeNames"], json!(["full"]));
    assert!(reply["FailedAndUnresolvableNodes"]["tainted"].is_string());
}

fn any_name() -> impl Strategy<Value = String> {
    prop_oneof![
        proptest::sample::select(HEALTHY.to_vec()).prop_map(str::to_owned),
        proptest::sample::select(REJECTED.to_vec()).prop_map(str::to_owned),
        "[a-z0-9.-]{1,20}",
        "\\PC{0,8}",
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    /// The filter never returns a name the request did not carry, and puts
    /// every name of the request in exactly one list.
    #[test]
    fn filter_answers_only_about_the_request_names(names in proptest::collection::vec(any_name(), 0..40)) {
        let refs: Vec<&str> = names.iter().map(String::as_str).collect();
        let answer = answer::filter(&args_names(&refs), &index(), &Settings::default(), NOW).unwrap();
        let reply: Value = serde_json::from_slice(&answer.body).unwrap();
        let asked: BTreeSet<&str> = refs.iter().copied().collect();
        let passed: Vec<&str> = reply["NodeNames"].as_array().unwrap().iter().map(|v| v.as_str().unwrap()).collect();
        let failed: Vec<&str> = reply["FailedNodes"].as_object().unwrap().keys().map(String::as_str).collect();
        let unresolvable: Vec<&str> = reply["FailedAndUnresolvableNodes"].as_object().unwrap().keys().map(String::as_str).collect();
        for name in passed.iter().chain(&failed).chain(&unresolvable) {
            prop_assert!(asked.contains(name), "{name:?} was not asked about");
        }
        // Passed names keep the request's order and multiplicity.
        let expected_passed: Vec<&str> = refs.iter().copied().filter(|n| !REJECTED.contains(n)).collect();
        prop_assert_eq!(passed, expected_passed);
        let rejected: BTreeSet<&str> = refs.iter().copied().filter(|n| REJECTED.contains(n)).collect();
        let got: BTreeSet<&str> = failed.iter().chain(&unresolvable).copied().collect();
        prop_assert_eq!(got, rejected);
    }

    /// Prioritize answers once per requested node, in order, within 0..=10.
    #[test]
    fn prioritize_answers_every_request_name(names in proptest::collection::vec(any_name(), 0..40)) {
        let refs: Vec<&str> = names.iter().map(String::as_str).collect();
        let reply = answer::prioritize(&args_names(&refs), &index(), &Settings::default(), NOW).unwrap();
        let list: Vec<Value> = serde_json::from_slice(&reply).unwrap();
        let hosts: Vec<&str> = list.iter().map(|hp| hp["Host"].as_str().unwrap()).collect();
        prop_assert_eq!(hosts, refs);
        for hp in &list {
            let score = hp["Score"].as_i64().unwrap();
            prop_assert!((0..=10).contains(&score));
        }
    }
}
