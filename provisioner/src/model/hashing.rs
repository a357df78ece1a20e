//! Stable hashes for names and annotations that outlive one process:
//! 64-bit FNV-1a, which (unlike the standard hasher) is the same across
//! Rust versions, processes and machines.

use k8s_openapi::api::core::v1::Taint;
use kube::ResourceExt;
use serde_json::{json, Value};
use spotwright_api::{keys, NodeClaim, NodeClass, NodePool};

/// The FNV-1a 64-bit offset basis: the hash of nothing.
pub const FNV_OFFSET: u64 = 0xcbf2_9ce4_8422_2325;

/// Folds `bytes` into `hash` with 64-bit FNV-1a.
pub fn fnv1a(bytes: &[u8], mut hash: u64) -> u64 {
    for byte in bytes {
        hash ^= u64::from(*byte);
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    hash
}

/// JSON with object keys sorted at every depth and no whitespace, so two
/// equal values always give the same text whatever order their keys came in.
pub fn canonical_json(value: &Value) -> String {
    let mut out = String::new();
    write_canonical(value, &mut out);
    out
}

fn write_canonical(value: &Value, out: &mut String) {
    match value {
        Value::Object(map) => {
            let mut entries: Vec<(&String, &Value)> = map.iter().collect();
            entries.sort_by(|a, b| a.0.cmp(b.0));
            out.push('{');
            for (i, (key, value)) in entries.into_iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                out.push_str(&Value::String(key.clone()).to_string());
                out.push(':');
                write_canonical(value, out);
            }
            out.push('}');
        }
        Value::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_canonical(item, out);
            }
            out.push(']');
        }
        scalar => out.push_str(&scalar.to_string()),
    }
}

/// 16 hex digits of the FNV-1a hash of `value`'s canonical JSON.
pub fn hash_json(value: &Value) -> String {
    format!(
        "{:016x}",
        fnv1a(canonical_json(value).as_bytes(), FNV_OFFSET)
    )
}

/// The hashes a NodeClaim records of the template it was made from (drift
/// compares them later).
/// A taint as hashed: without `timeAdded`, which the API server may set.
fn taint_value(taint: &Taint) -> Value {
    json!({"key": taint.key, "value": taint.value.clone().unwrap_or_default(), "effect": taint.effect})
}

/// Taints as a set: their order in the YAML does not matter.
fn taint_set(taints: &[Taint]) -> Value {
    let mut values: Vec<Value> = taints.iter().map(taint_value).collect();
    values.sort_by_key(|v| v.to_string());
    values.dedup();
    Value::Array(values)
}

/// Hash of the NodePool's `spec.template` without its requirements: labels,
/// annotations, taints, startup taints, NodeClass reference, `expireAfter`.
pub fn nodepool_hash(pool: &NodePool) -> String {
    let template = &pool.spec.template;
    hash_json(&json!({
        "labels": template.metadata.labels,
        "annotations": template.metadata.annotations,
        "taints": taint_set(&template.spec.taints),
        "startupTaints": taint_set(&template.spec.startup_taints),
        "nodeClassRef": template.spec.node_class_ref.name,
        "expireAfter": template.spec.expire_after,
    }))
}

/// Hash of the NodeClass's `spec`.
pub fn nodeclass_hash(class: &NodeClass) -> String {
    hash_json(&serde_json::to_value(&class.spec).unwrap_or(Value::Null))
}

/// The NodePool and NodeClass hashes a claim records when it is made.
pub fn template_hashes(pool: &NodePool, class: &NodeClass) -> (String, String) {
    (nodepool_hash(pool), nodeclass_hash(class))
}

/// Records [`template_hashes`] on a new claim as its hash annotations.
pub fn annotate_hashes(claim: &mut NodeClaim, pool: &NodePool, class: &NodeClass) {
    let (pool_hash, class_hash) = template_hashes(pool, class);
    let annotations = claim.annotations_mut();
    annotations.insert(keys::NODEPOOL_HASH_ANNOTATION.to_owned(), pool_hash);
    annotations.insert(keys::NODECLASS_HASH_ANNOTATION.to_owned(), class_hash);
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn fnv1a_matches_the_reference_vectors() {
        assert_eq!(fnv1a(b"", FNV_OFFSET), 0xcbf2_9ce4_8422_2325);
        assert_eq!(fnv1a(b"a", FNV_OFFSET), 0xaf63_dc4c_8601_ec8c);
        assert_eq!(fnv1a(b"foobar", FNV_OFFSET), 0x8594_4171_f739_67e8);
    }

    #[test]
    fn key_order_does_not_change_the_hash() {
        let a: Value =
            serde_json::from_str(r#"{"b":1,"a":{"y":[1,2],"x":"s"}}"#).unwrap_or_default();
        let b: Value =
            serde_json::from_str(r#"{"a":{"x":"s","y":[1,2]},"b":1}"#).unwrap_or_default();
        assert_eq!(canonical_json(&a), r#"{"a":{"x":"s","y":[1,2]},"b":1}"#);
        assert_eq!(hash_json(&a), hash_json(&b));
        assert_ne!(hash_json(&a), hash_json(&json!({"b": 2})));
        assert_eq!(hash_json(&a).len(), 16);
    }
}
