//! `application/x-www-form-urlencoded` bodies, as the AWS Query protocol
//! (EC2) sends them.
//!
//! Each pair keeps its value exactly as it arrived, so that a rewritten body
//! changes only the keys we renumber and never re-encodes a value the SDK
//! signed (moto ignores signatures, but a byte-identical value is one less
//! thing to differ from what the SDK sent).

use super::FaultError;

/// One `key=value` pair: the decoded key and value, and the value as sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pair {
    pub key: String,
    pub value: String,
    raw_value: String,
}

/// A parsed form body, in the order it was sent.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Form {
    pairs: Vec<Pair>,
}

impl Form {
    /// Parses a form body. Fails on bytes that are not UTF-8 once decoded and
    /// on malformed `%` escapes, rather than guessing.
    pub fn parse(body: &[u8]) -> Result<Self, FaultError> {
        let text = std::str::from_utf8(body).map_err(|_| FaultError::NotUtf8)?;
        let mut pairs = Vec::new();
        for piece in text.split('&').filter(|p| !p.is_empty()) {
            let (raw_key, raw_value) = piece.split_once('=').unwrap_or((piece, ""));
            pairs.push(Pair {
                key: decode(raw_key)?,
                value: decode(raw_value)?,
                raw_value: raw_value.to_owned(),
            });
        }
        Ok(Self { pairs })
    }

    /// The first value of `key`, decoded.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.pairs
            .iter()
            .find(|p| p.key == key)
            .map(|p| p.value.as_str())
    }

    pub fn pairs(&self) -> &[Pair] {
        &self.pairs
    }

    /// The body for a form whose keys may be renamed by `rename` (which
    /// returns `None` to drop a pair); values are emitted as they were sent.
    pub fn encode_with(&self, mut rename: impl FnMut(&str) -> Option<String>) -> String {
        let mut out = String::new();
        for pair in &self.pairs {
            let Some(key) = rename(&pair.key) else {
                continue;
            };
            if !out.is_empty() {
                out.push('&');
            }
            out.push_str(&encode(&key));
            out.push('=');
            out.push_str(&pair.raw_value);
        }
        out
    }
}

/// Decodes one form component: `+` is a space, `%XX` a byte.
pub fn decode(raw: &str) -> Result<String, FaultError> {
    let bytes = raw.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            b'%' => {
                let hex = bytes
                    .get(i + 1..i + 3)
                    .and_then(|h| std::str::from_utf8(h).ok())
                    .and_then(|h| u8::from_str_radix(h, 16).ok())
                    .ok_or_else(|| FaultError::BadEscape(raw.chars().take(64).collect()))?;
                out.push(hex);
                i += 3;
            }
            b => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8(out).map_err(|_| FaultError::NotUtf8)
}

/// Encodes one form component, leaving RFC 3986's unreserved characters as
/// they are (the set the AWS SDKs leave unescaped).
pub fn encode(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for b in text.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_decodes_pairs() {
        let form = Form::parse(b"Action=CreateFleet&Version=%24Latest&A=b+c&Empty=&Flag").unwrap();
        assert_eq!(form.get("Action"), Some("CreateFleet"));
        assert_eq!(form.get("Version"), Some("$Latest"));
        assert_eq!(form.get("A"), Some("b c"));
        assert_eq!(form.get("Empty"), Some(""));
        assert_eq!(form.get("Flag"), Some(""));
        assert_eq!(form.get("Missing"), None);
    }

    #[test]
    fn rejects_bad_escapes_and_non_utf8() {
        assert!(matches!(
            Form::parse(b"A=%2"),
            Err(FaultError::BadEscape(_))
        ));
        assert!(matches!(
            Form::parse(b"A=%zz"),
            Err(FaultError::BadEscape(_))
        ));
        assert!(matches!(Form::parse(b"A=%FF"), Err(FaultError::NotUtf8)));
        assert!(matches!(
            Form::parse(&[b'A', b'=', 0xff]),
            Err(FaultError::NotUtf8)
        ));
    }

    #[test]
    fn encode_keeps_raw_values_and_renames_keys() {
        let form = Form::parse(b"A=%24Latest&B=x&C=y%2Fz").unwrap();
        let body = form.encode_with(|k| match k {
            "B" => None,
            "C" => Some("C.1".to_owned()),
            other => Some(other.to_owned()),
        });
        assert_eq!(body, "A=%24Latest&C.1=y%2Fz");
    }

    #[test]
    fn encode_escapes_reserved_characters() {
        assert_eq!(encode("a.b-c_d~e"), "a.b-c_d~e");
        assert_eq!(encode("$ /"), "%24%20%2F");
        assert_eq!(decode(&encode("é&=")).unwrap(), "é&=");
    }
}
