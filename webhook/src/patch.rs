//! JSON Patch (RFC 6902) operations and JSON Pointer (RFC 6901) paths.
//! The webhook only ever adds: it never replaces or removes what a user wrote.

use serde::Serialize;
use serde_json::Value;

/// A JSON Pointer, built segment by segment with RFC 6901 escaping.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Pointer(String);

impl Pointer {
    pub fn root() -> Self {
        Pointer(String::new())
    }

    /// The pointer to the member or index `segment` under this one.
    pub fn child(&self, segment: impl AsRef<str>) -> Self {
        let mut path = String::with_capacity(self.0.len() + 1 + segment.as_ref().len());
        path.push_str(&self.0);
        path.push('/');
        path.push_str(&escape(segment.as_ref()));
        Pointer(path)
    }

    /// The pointer to element `index` of the array this one names.
    pub fn index(&self, index: usize) -> Self {
        self.child(index.to_string())
    }

    /// The pointer that appends to the array this one names.
    pub fn end(&self) -> Self {
        Pointer(format!("{}/-", self.0))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// RFC 6901: `~` becomes `~0` first, then `/` becomes `~1`.
pub fn escape(segment: &str) -> String {
    segment.replace('~', "~0").replace('/', "~1")
}

/// One RFC 6902 `add` operation.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Add {
    op: &'static str,
    path: String,
    value: Value,
}

impl Add {
    pub fn new(path: &Pointer, value: Value) -> Self {
        Add {
            op: "add",
            path: path.0.clone(),
            value,
        }
    }

    pub fn path(&self) -> &str {
        &self.path
    }

    pub fn value(&self) -> &Value {
        &self.value
    }
}

/// The whole patch for one pod.
pub type Patch = Vec<Add>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_tilde_before_slash() {
        assert_eq!(escape("spotwright.io/capacity"), "spotwright.io~1capacity");
        assert_eq!(escape("a~/b"), "a~0~1b");
        assert_eq!(escape("~1"), "~01");
    }

    #[test]
    fn builds_paths_from_segments() {
        let p = Pointer::root()
            .child("metadata")
            .child("annotations")
            .child("spotwright.io/capacity");
        assert_eq!(p.as_str(), "/metadata/annotations/spotwright.io~1capacity");
        assert_eq!(
            Pointer::root()
                .child("spec")
                .child("tolerations")
                .end()
                .as_str(),
            "/spec/tolerations/-"
        );
        assert_eq!(Pointer::root().child("terms").index(3).as_str(), "/terms/3");
    }

    #[test]
    fn serialises_as_rfc6902_add() {
        let op = Add::new(&Pointer::root().child("spec"), serde_json::json!({}));
        assert_eq!(
            serde_json::to_value(&op).unwrap(),
            serde_json::json!({"op": "add", "path": "/spec", "value": {}})
        );
    }
}
