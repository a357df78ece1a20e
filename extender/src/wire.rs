//! The kube-scheduler extender wire format (`k8s.io/kube-scheduler/extender/v1`).
//! The Go types have no JSON tags, so every field is PascalCase.
//!
//! - request, both verbs: `{"Pod": <v1.Pod>, "Nodes": <v1.NodeList>|null, "NodeNames": [..]|null}`;
//!   `NodeNames` when the scheduler runs with `nodeCacheCapable: true`, `Nodes` otherwise;
//! - filter reply: `{"Nodes": .., "NodeNames": .., "FailedNodes": {name: reason},
//!   "FailedAndUnresolvableNodes": {..}, "Error": ""}`;
//! - prioritize reply: a bare array `[{"Host": "n1", "Score": 7}]`.
//!
//! Requests are read without copying the node names, and the Pod only as
//! far as its resource requests.

use std::borrow::Cow;
use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

/// `ExtenderArgs`, as far as the extender reads it.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct ExtenderArgs<'a> {
    /// The pod being scheduled, kept raw: only prioritize reads it.
    #[serde(borrow, default)]
    pub pod: Option<&'a RawValue>,
    #[serde(borrow, default)]
    pub nodes: Option<NodeListIn<'a>>,
    /// Kept raw (serde_json has checked that it is JSON), then split by [`node_names`].
    #[serde(borrow, default)]
    pub node_names: Option<&'a RawValue>,
}

/// A `v1.NodeList` whose items stay raw, to be answered with as they came.
#[derive(Debug, Deserialize)]
pub struct NodeListIn<'a> {
    #[serde(borrow, default)]
    pub items: Option<Vec<&'a RawValue>>,
}

/// The names of a `NodeNames` array: borrowed from the body, or decoded
/// when a name holds a JSON escape (no valid node name needs one).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum NodeNames<'a> {
    Borrowed(Vec<&'a str>),
    Decoded(Vec<String>),
}

impl NodeNames<'_> {
    pub fn len(&self) -> usize {
        match self {
            NodeNames::Borrowed(names) => names.len(),
            NodeNames::Decoded(names) => names.len(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// How these names are written back into a reply.
    pub fn style(&self) -> NameStyle {
        match self {
            NodeNames::Borrowed(_) => NameStyle::Verbatim,
            NodeNames::Decoded(_) => NameStyle::Escaped,
        }
    }

    /// The names, in request order.
    pub fn strs(&self) -> Cow<'_, [&str]> {
        match self {
            NodeNames::Borrowed(names) => Cow::Borrowed(names.as_slice()),
            NodeNames::Decoded(names) => Cow::Owned(names.iter().map(String::as_str).collect()),
        }
    }
}

/// Reads a `NodeNames` array. The common case (names without escapes) is
/// split on quotes without decoding, which is most of a call's parse time
/// with thousands of nodes; anything else goes through serde_json.
pub fn node_names(raw: &RawValue) -> Result<NodeNames<'_>, serde_json::Error> {
    match split_plain_strings(raw.get()) {
        Some(names) => Ok(NodeNames::Borrowed(names)),
        None => serde_json::from_str(raw.get()).map(NodeNames::Decoded),
    }
}

/// Splits a JSON array of strings that hold no escapes. `raw` must already
/// be valid JSON (as a `RawValue` is); `None` for any other value.
fn split_plain_strings(raw: &str) -> Option<Vec<&str>> {
    let bytes = raw.as_bytes();
    let skip_ws = |mut i: usize| {
        while matches!(bytes.get(i), Some(b' ' | b'\t' | b'\n' | b'\r')) {
            i += 1;
        }
        i
    };
    let mut i = skip_ws(0);
    if bytes.get(i) != Some(&b'[') {
        return None;
    }
    i = skip_ws(i + 1);
    let mut names = Vec::with_capacity(raw.len() / 24 + 1);
    if bytes.get(i) == Some(&b']') {
        return Some(names);
    }
    loop {
        if bytes.get(i) != Some(&b'"') {
            return None;
        }
        let start = i + 1;
        let end = start + memchr::memchr2(b'"', b'\\', bytes.get(start..)?)?;
        if bytes.get(end) != Some(&b'"') {
            return None;
        }
        // Both ends are ASCII quotes, so they are character boundaries.
        names.push(raw.get(start..end)?);
        i = skip_ws(end + 1);
        match bytes.get(i) {
            Some(b',') => i = skip_ws(i + 1),
            Some(b']') => return Some(names),
            _ => return None,
        }
    }
}

/// The part of a `v1.Pod` the extender reads: who it is and what it requests.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PodView {
    #[serde(default)]
    pub metadata: Option<PodMeta>,
    #[serde(default)]
    pub spec: Option<PodSpecView>,
}

#[derive(Clone, Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PodMeta {
    #[serde(default)]
    pub namespace: Option<String>,
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub uid: Option<String>,
    #[serde(default)]
    pub owner_references: Option<Vec<OwnerView>>,
}

/// An owner reference: whether a DaemonSet controls the pod, and which
/// controller (its replicas share the room held for them).
#[derive(Clone, Debug, Default, Deserialize)]
pub struct OwnerView {
    #[serde(default)]
    pub kind: Option<String>,
    #[serde(default)]
    pub uid: Option<String>,
    #[serde(default)]
    pub controller: Option<bool>,
}

#[derive(Clone, Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PodSpecView {
    #[serde(default)]
    pub containers: Option<Vec<ContainerView>>,
    #[serde(default)]
    pub init_containers: Option<Vec<ContainerView>>,
    #[serde(default)]
    pub overhead: Option<BTreeMap<String, Quantity>>,
    /// Pod-level resources.
    #[serde(default)]
    pub resources: Option<RequirementsView>,
}

#[derive(Clone, Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ContainerView {
    #[serde(default)]
    pub resources: Option<RequirementsView>,
    #[serde(default)]
    pub restart_policy: Option<String>,
}

#[derive(Clone, Debug, Default, Deserialize)]
pub struct RequirementsView {
    #[serde(default)]
    pub requests: Option<BTreeMap<String, Quantity>>,
}

/// How node names are written into a reply.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NameStyle {
    /// Names split from the request by [`node_names`] without decoding: the
    /// body was valid JSON and they hold no escape, so they are valid JSON
    /// string contents and go back as they came.
    Verbatim,
    /// Any other string: escaped by [`write_str`].
    Escaped,
}

fn write_name(out: &mut Vec<u8>, name: &str, style: NameStyle) {
    match style {
        NameStyle::Verbatim => {
            out.push(b'"');
            out.extend_from_slice(name.as_bytes());
            out.push(b'"');
        }
        NameStyle::Escaped => write_str(out, name),
    }
}

/// `ExtenderFilterResult`.
#[derive(Debug)]
pub struct FilterResult<'a> {
    /// How the node names below are written.
    pub style: NameStyle,
    /// The passing nodes when the request carried `Nodes`; `null` otherwise.
    pub nodes: Option<Vec<&'a RawValue>>,
    /// The passing node names when the request carried `NodeNames` (always
    /// present then, even empty: a missing list filters out every node).
    pub node_names: Option<Vec<&'a str>>,
    /// `FailedNodesMap`: node name → reason.
    pub failed_nodes: Vec<(&'a str, &'a str)>,
    pub failed_and_unresolvable_nodes: Vec<(&'a str, &'a str)>,
    pub error: &'a str,
}

impl FilterResult<'_> {
    /// The JSON body. Written by hand rather than through serde: a reply
    /// lists thousands of names, and this is most of a call's time otherwise.
    pub fn to_json(&self) -> Vec<u8> {
        let names = self.node_names.as_ref().map_or(0, Vec::len);
        let raw: usize = self.nodes.iter().flatten().map(|r| r.get().len() + 1).sum();
        let mut out = Vec::with_capacity(160 + names * 32 + raw);
        out.extend_from_slice(b"{\"Nodes\":");
        match &self.nodes {
            None => out.extend_from_slice(b"null"),
            Some(items) => {
                out.extend_from_slice(
                    b"{\"apiVersion\":\"v1\",\"kind\":\"NodeList\",\"metadata\":{},\"items\":[",
                );
                for (i, item) in items.iter().enumerate() {
                    if i > 0 {
                        out.push(b',');
                    }
                    out.extend_from_slice(item.get().as_bytes());
                }
                out.extend_from_slice(b"]}");
            }
        }
        out.extend_from_slice(b",\"NodeNames\":");
        match &self.node_names {
            None => out.extend_from_slice(b"null"),
            Some(names) => {
                out.push(b'[');
                for (i, name) in names.iter().enumerate() {
                    if i > 0 {
                        out.push(b',');
                    }
                    write_name(&mut out, name, self.style);
                }
                out.push(b']');
            }
        }
        for (key, map) in [
            (&b",\"FailedNodes\":"[..], &self.failed_nodes),
            (
                b",\"FailedAndUnresolvableNodes\":",
                &self.failed_and_unresolvable_nodes,
            ),
        ] {
            out.extend_from_slice(key);
            out.push(b'{');
            for (i, (name, reason)) in map.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                write_name(&mut out, name, self.style);
                out.push(b':');
                write_str(&mut out, reason);
            }
            out.push(b'}');
        }
        out.extend_from_slice(b",\"Error\":");
        write_str(&mut out, self.error);
        out.push(b'}');
        out
    }
}

/// `HostPriority`; the reply to prioritize is a bare array of them.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct HostPriority<'a> {
    #[serde(borrow)]
    pub host: Cow<'a, str>,
    pub score: i64,
}

/// The prioritize reply `[{"Host":..,"Score":..},..]`, written by hand like
/// [`FilterResult::to_json`].
pub fn priorities_json<'a>(
    priorities: impl ExactSizeIterator<Item = (&'a str, i64)>,
    style: NameStyle,
) -> Vec<u8> {
    let mut out = Vec::with_capacity(2 + priorities.len() * 56);
    out.push(b'[');
    for (i, (host, score)) in priorities.enumerate() {
        if i > 0 {
            out.push(b',');
        }
        out.extend_from_slice(b"{\"Host\":");
        write_name(&mut out, host, style);
        out.extend_from_slice(b",\"Score\":");
        write_int(&mut out, score);
        out.push(b'}');
    }
    out.push(b']');
    out
}

/// Appends an integer in decimal, without allocating.
pub fn write_int(out: &mut Vec<u8>, value: i64) {
    // Scores are 0..=10: one or two digits.
    if (0..10).contains(&value) {
        out.push(b'0' + value as u8);
        return;
    }
    if value < 0 {
        out.push(b'-');
    }
    let mut n = value.unsigned_abs();
    let mut digits = [0u8; 20];
    let mut start = digits.len();
    loop {
        start -= 1;
        digits[start] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    out.extend_from_slice(&digits[start..]);
}

/// Appends `s` as a JSON string, escaped as RFC 8259 requires.
pub fn write_str(out: &mut Vec<u8>, s: &str) {
    out.push(b'"');
    let bytes = s.as_bytes();
    // No short-circuit, so that the check compiles to vector instructions.
    let plain = bytes.iter().fold(true, |plain, &b| {
        plain & (b >= 0x20) & (b != b'"') & (b != b'\\')
    });
    if plain {
        // Node names are DNS subdomains: this is the path they take.
        out.extend_from_slice(bytes);
    } else {
        for &b in bytes {
            match b {
                b'"' => out.extend_from_slice(b"\\\""),
                b'\\' => out.extend_from_slice(b"\\\\"),
                b'\n' => out.extend_from_slice(b"\\n"),
                b'\r' => out.extend_from_slice(b"\\r"),
                b'\t' => out.extend_from_slice(b"\\t"),
                b if b < 0x20 => {
                    const HEX: &[u8; 16] = b"0123456789abcdef";
                    out.extend_from_slice(b"\\u00");
                    out.push(HEX[usize::from(b >> 4)]);
                    out.push(HEX[usize::from(b & 0xf)]);
                }
                b => out.push(b),
            }
        }
    }
    out.push(b'"');
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(json: &str) -> Result<Vec<String>, serde_json::Error> {
        let raw: Box<RawValue> = serde_json::from_str(json)?;
        let names = node_names(&raw)?;
        Ok(names.strs().iter().map(|s| (*s).to_owned()).collect())
    }

    #[test]
    fn names_are_split_without_decoding_unless_escaped() {
        let raw: Box<RawValue> = serde_json::from_str(r#" [ "a" , "b.c",""] "#).unwrap();
        assert_eq!(
            node_names(&raw).unwrap(),
            NodeNames::Borrowed(vec!["a", "b.c", ""])
        );
        let raw: Box<RawValue> = serde_json::from_str(r#"["a","b\u002dc"]"#).unwrap();
        assert_eq!(
            node_names(&raw).unwrap(),
            NodeNames::Decoded(vec!["a".into(), "b-c".into()])
        );
        assert_eq!(names("[]").unwrap(), Vec::<String>::new());
        assert_eq!(names("[\n]").unwrap(), Vec::<String>::new());
    }

    #[test]
    fn node_names_of_the_wrong_shape_are_errors() {
        for json in [
            "5",
            r#"{"a":1}"#,
            "[1]",
            r#"["a",2]"#,
            r#"[["a"]]"#,
            "null",
            r#""a""#,
        ] {
            assert!(names(json).is_err(), "{json}");
        }
    }

    #[test]
    fn filter_results_are_pascal_case_with_null_lists() {
        let result = FilterResult {
            style: NameStyle::Escaped,
            nodes: None,
            node_names: Some(vec![]),
            failed_nodes: vec![("n1", "why")],
            failed_and_unresolvable_nodes: vec![],
            error: "",
        };
        assert_eq!(
            String::from_utf8(result.to_json()).unwrap(),
            r#"{"Nodes":null,"NodeNames":[],"FailedNodes":{"n1":"why"},"FailedAndUnresolvableNodes":{},"Error":""}"#
        );
        let raw: Vec<Box<RawValue>> =
            vec![RawValue::from_string(r#"{"metadata":{"name":"a"}}"#.into()).unwrap()];
        let result = FilterResult {
            style: NameStyle::Verbatim,
            nodes: Some(raw.iter().map(|r| &**r).collect()),
            node_names: None,
            failed_nodes: vec![],
            failed_and_unresolvable_nodes: vec![("b", "gone"), ("c", "going")],
            error: "",
        };
        let value: serde_json::Value = serde_json::from_slice(&result.to_json()).unwrap();
        assert_eq!(value["Nodes"]["items"][0]["metadata"]["name"], "a");
        assert_eq!(value["Nodes"]["kind"], "NodeList");
        assert_eq!(value["NodeNames"], serde_json::Value::Null);
        assert_eq!(value["FailedAndUnresolvableNodes"]["c"], "going");
    }

    #[test]
    fn integers_are_written_in_decimal() {
        for n in [0i64, 7, 10, -3, 1234567890, i64::MAX, i64::MIN] {
            let mut out = Vec::new();
            write_int(&mut out, n);
            assert_eq!(String::from_utf8(out).unwrap(), n.to_string());
        }
    }

    #[test]
    fn strings_are_escaped_like_serde_json_does() {
        for s in [
            "plain",
            "q\"uote",
            "back\\slash",
            "line\nfeed",
            "\u{1}ctl\t",
            "ünï",
            "",
        ] {
            let mut out = Vec::new();
            write_str(&mut out, s);
            let back: String = serde_json::from_slice(&out).unwrap();
            assert_eq!(back, s);
        }
    }

    #[test]
    fn host_priorities_are_pascal_case() {
        let hp = HostPriority {
            host: "n1".into(),
            score: 7,
        };
        assert_eq!(
            serde_json::to_string(&[hp]).unwrap(),
            r#"[{"Host":"n1","Score":7}]"#
        );
        let written = priorities_json([("n1", 7i64), ("n\"2", 10)].into_iter(), NameStyle::Escaped);
        assert_eq!(
            String::from_utf8(written).unwrap(),
            r#"[{"Host":"n1","Score":7},{"Host":"n\"2","Score":10}]"#
        );
        assert_eq!(
            priorities_json(std::iter::empty(), NameStyle::Verbatim),
            b"[]"
        );
        let verbatim = priorities_json([("n1", 7i64)].into_iter(), NameStyle::Verbatim);
        assert_eq!(verbatim, br#"[{"Host":"n1","Score":7}]"#);
    }
}
