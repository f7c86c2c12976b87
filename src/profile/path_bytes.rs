//! Byte-exact paths: the JSON encoding and the human rendering.
//!
//! The kernel hands us paths as bytes, and enforcement compares them byte for byte,
//! so a path must survive export and import unchanged even when it is not UTF-8.
//! In JSON a path is a plain string when its bytes are valid UTF-8, and otherwise an
//! object `{"hex": "2f746d70ff"}` holding every byte in hex; the two forms cannot be
//! confused because one is a string and the other an object. Readers accept both forms
//! for any path; writers pick the string form whenever they can, so output is canonical.
//! For people (diff text, error messages) [`escape_bytes`] renders the same bytes on one
//! line with every ambiguous or invisible byte escaped.

use std::fmt;

use serde::de::{self, Deserializer, MapAccess, Visitor};
use serde::ser::{SerializeMap, Serializer};
use serde::{Deserialize, Serialize};

/// A sequence of path bytes with the string-or-hex JSON encoding; no validation here
/// (see [`super::ExecPath`] and [`super::Pattern`] for the checked kinds).
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct PathBytes(Vec<u8>);

impl PathBytes {
    pub fn new(bytes: impl Into<Vec<u8>>) -> PathBytes {
        PathBytes(bytes.into())
    }

    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }

    pub fn into_bytes(self) -> Vec<u8> {
        self.0
    }

    /// The JSON value of this path, as written in profiles and diff output.
    pub fn to_json(&self) -> serde_json::Value {
        path_json(&self.0)
    }
}

impl fmt::Debug for PathBytes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "\"{}\"", escape_bytes(&self.0))
    }
}

impl fmt::Display for PathBytes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&escape_bytes(&self.0))
    }
}

impl Serialize for PathBytes {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match std::str::from_utf8(&self.0) {
            Ok(text) => serializer.serialize_str(text),
            Err(_) => {
                let mut map = serializer.serialize_map(Some(1))?;
                map.serialize_entry("hex", &hex_encode(&self.0))?;
                map.end()
            }
        }
    }
}

impl<'de> Deserialize<'de> for PathBytes {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<PathBytes, D::Error> {
        deserializer.deserialize_any(PathBytesVisitor)
    }
}

struct PathBytesVisitor;

impl<'de> Visitor<'de> for PathBytesVisitor {
    type Value = PathBytes;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a path: a JSON string, or {\"hex\": \"...\"} for a path that is not UTF-8")
    }

    fn visit_str<E: de::Error>(self, text: &str) -> Result<PathBytes, E> {
        Ok(PathBytes(text.as_bytes().to_vec()))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<PathBytes, A::Error> {
        let mut bytes = None;
        while let Some(key) = map.next_key::<String>()? {
            if key != "hex" {
                return Err(de::Error::custom(format_args!(
                    "unknown field `{key}` in a path object; fix: a path object has exactly one field, `hex`"
                )));
            }
            if bytes.is_some() {
                return Err(de::Error::custom(
                    "duplicate field `hex` in a path object; fix: keep one",
                ));
            }
            let digits: String = map.next_value()?;
            bytes = Some(hex_decode(&digits).map_err(de::Error::custom)?);
        }
        bytes.map(PathBytes).ok_or_else(|| {
            de::Error::custom("empty path object; fix: write {\"hex\": \"<hex bytes>\"}")
        })
    }
}

/// The JSON value of any path bytes (profiles, diff, show and violation events): a
/// string when they are UTF-8, else `{"hex": "..."}`.
pub fn path_json(bytes: &[u8]) -> serde_json::Value {
    match std::str::from_utf8(bytes) {
        Ok(text) => serde_json::Value::String(text.to_owned()),
        Err(_) => serde_json::json!({ "hex": hex_encode(bytes) }),
    }
}

/// Lower-case hex of every byte; the encoding used by the `{"hex": ...}` form.
pub fn hex_encode(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(bytes.len() * 2);
    for &byte in bytes {
        out.push(char::from(DIGITS[usize::from(byte >> 4)]));
        out.push(char::from(DIGITS[usize::from(byte & 0xf)]));
    }
    out
}

/// Inverse of [`hex_encode`]; accepts either letter case so hand-written values work.
pub fn hex_decode(digits: &str) -> Result<Vec<u8>, String> {
    if !digits.len().is_multiple_of(2) {
        return Err(format!(
            "hex path has an odd number of digits ({}); fix: write two hex digits per byte",
            digits.len()
        ));
    }
    digits
        .as_bytes()
        .chunks(2)
        .map(|pair| match (hex_value(pair[0]), hex_value(pair[1])) {
            (Some(high), Some(low)) => Ok(high << 4 | low),
            _ => Err(format!(
                "`{}` is not a hex byte; fix: use only the digits 0-9 and a-f",
                String::from_utf8_lossy(pair)
            )),
        })
        .collect()
}

fn hex_value(digit: u8) -> Option<u8> {
    char::from(digit)
        .to_digit(16)
        .and_then(|value| u8::try_from(value).ok())
}

/// One-line, unambiguous rendering of arbitrary bytes for people: the one escaping of
/// paths and workload names in every text output (show, diff, export's report, errors).
///
/// Valid UTF-8 is shown as is, except: a backslash becomes `\\` (so escapes cannot be
/// forged), bytes that are not UTF-8 become `\xNN`, and control or bidirectional
/// formatting characters become `\xNN` or `\u{NNNN}`. Without that a path holding a
/// newline could print a fake `+ /bin/sh` line in a diff, and a right-to-left override
/// could make a path read differently from what it is.
pub fn escape_bytes(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len());
    for chunk in bytes.utf8_chunks() {
        for c in chunk.valid().chars() {
            push_escaped_char(&mut out, c);
        }
        for byte in chunk.invalid() {
            out.push_str(&format!("\\x{byte:02x}"));
        }
    }
    out
}

fn push_escaped_char(out: &mut String, c: char) {
    match c {
        '\\' => out.push_str("\\\\"),
        c if c.is_ascii_control() => out.push_str(&format!("\\x{:02x}", u32::from(c))),
        c if c.is_control() || is_bidi_control(c) => {
            out.push_str(&format!("\\u{{{:04x}}}", u32::from(c)))
        }
        c => out.push(c),
    }
}

/// Unicode characters that reorder how the text around them is displayed, or end a
/// line without being a control character.
fn is_bidi_control(c: char) -> bool {
    matches!(c, '\u{061c}' | '\u{200e}' | '\u{200f}' | '\u{2028}'..='\u{202e}' | '\u{2066}'..='\u{2069}')
}

#[cfg(test)]
mod tests {
    use super::*;

    fn round_trip(bytes: &[u8]) -> (String, PathBytes) {
        let text = serde_json::to_string(&PathBytes::new(bytes)).expect("serialize");
        let back: PathBytes = serde_json::from_str(&text).expect("deserialize");
        (text, back)
    }

    #[test]
    fn utf8_paths_are_plain_strings() {
        let (text, back) = round_trip(b"/usr/bin/caf\xc3\xa9");
        assert_eq!(text, "\"/usr/bin/café\"");
        assert_eq!(back.as_bytes(), b"/usr/bin/caf\xc3\xa9");
    }

    #[test]
    fn non_utf8_paths_are_hex_objects() {
        let (text, back) = round_trip(b"/tmp\xff");
        assert_eq!(text, r#"{"hex":"2f746d70ff"}"#);
        assert_eq!(back.as_bytes(), b"/tmp\xff");
    }

    #[test]
    fn hex_input_accepts_upper_case_and_utf8_content() {
        let back: PathBytes = serde_json::from_str(r#"{"hex":"2F62696E"}"#).expect("parse");
        assert_eq!(back.as_bytes(), b"/bin");
    }

    #[test]
    fn bad_hex_objects_are_rejected_with_a_fix() {
        for (input, needle) in [
            (r#"{"hex":"2f6"}"#, "odd number"),
            (r#"{"hex":"zz"}"#, "not a hex byte"),
            (r#"{"hex":"2f","x":1}"#, "unknown field `x`"),
            (r#"{}"#, "empty path object"),
            ("42", "a path: a JSON string"),
        ] {
            let err = serde_json::from_str::<PathBytes>(input).expect_err(input);
            assert!(err.to_string().contains(needle), "{input}: {err}");
        }
    }

    #[test]
    fn escaping_is_one_line_and_unambiguous() {
        assert_eq!(escape_bytes(b"/a b/c"), "/a b/c");
        assert_eq!(escape_bytes(b"/x\n+ /bin/sh"), "/x\\x0a+ /bin/sh");
        assert_eq!(escape_bytes(b"/a\\x41"), "/a\\\\x41");
        assert_eq!(escape_bytes(b"/t\xffmp"), "/t\\xffmp");
        assert_eq!(escape_bytes("/e\u{202e}vil".as_bytes()), "/e\\u{202e}vil");
        assert_eq!(escape_bytes("/\u{85}".as_bytes()), "/\\u{0085}");
        assert_eq!(escape_bytes(b"\tname\x1b[31m"), "\\x09name\\x1b[31m");
        assert_eq!(escape_bytes("a\u{2028}b".as_bytes()), "a\\u{2028}b");
    }
}
