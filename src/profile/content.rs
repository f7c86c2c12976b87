//! The `executables` list of a profile file with its content digests (schema 2).
//!
//! An entry is a path (a string, or `{"hex": ...}`), which allows that path with any
//! content, or `{"path": <path>, "sha256": ["<hex>", ...]}`, which names the contents
//! learned for it. Plain paths stay plain so that schema-1 lists read unchanged and a
//! profile without digests is written byte for byte as before.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use serde::de::value::MapAccessDeserializer;
use serde::de::{self, Deserializer, MapAccess, SeqAccess, Visitor};
use serde::ser::{SerializeMap, SerializeSeq, Serializer};
use serde::{Deserialize, Serialize};

use super::paths::ExecPath;
use crate::content::Sha256;

/// Digests per executable; an executable without an entry is path-only.
pub type Content = BTreeMap<ExecPath, BTreeSet<Sha256>>;

/// How many executables of a set of profiles are pinned to content.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ContentCoverage {
    pub executables: usize,
    /// Listed without digests (schema-1 profiles, or content never hashed): any
    /// content under the path matches.
    pub path_only: usize,
}

impl ContentCoverage {
    pub fn pinned(&self) -> usize {
        self.executables - self.path_only
    }

    /// What `show`, `diff` and `enforce` say about path-only entries, if there are any.
    pub fn path_only_note(&self) -> Option<String> {
        (self.path_only > 0).then(|| {
            format!(
                "{} of {} executables have no content digest (schema-1 profiles, or content \
                 not hashed when learned): path-only, so any file at that path matches, \
                 which is weaker than a pinned entry",
                self.path_only, self.executables
            )
        })
    }
}

impl super::ProfileSet {
    pub fn content_coverage(&self) -> ContentCoverage {
        self.iter()
            .fold(ContentCoverage::default(), |sum, p| ContentCoverage {
                executables: sum.executables + p.executables.len(),
                path_only: sum.path_only + p.path_only_count(),
            })
    }
}

/// The executables and their content, as read from or written to a profile file.
pub struct Executables<'a> {
    pub paths: std::borrow::Cow<'a, BTreeSet<ExecPath>>,
    pub content: std::borrow::Cow<'a, Content>,
}

impl Serialize for Executables<'_> {
    /// In path order: plain paths as before, pinned ones as objects, digests sorted.
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut seq = serializer.serialize_seq(Some(self.paths.len()))?;
        for path in self.paths.iter() {
            match self.content.get(path).filter(|digests| !digests.is_empty()) {
                Some(digests) => seq.serialize_element(&Pinned { path, digests })?,
                None => seq.serialize_element(path)?,
            }
        }
        seq.end()
    }
}

struct Pinned<'a> {
    path: &'a ExecPath,
    digests: &'a BTreeSet<Sha256>,
}

impl Serialize for Pinned<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(Some(2))?;
        map.serialize_entry("path", self.path)?;
        map.serialize_entry("sha256", self.digests)?;
        map.end()
    }
}

/// The object form of an entry that carries digests.
#[derive(Deserialize)]
#[serde(rename = "executable", deny_unknown_fields)]
struct PinnedDoc {
    path: ExecPath,
    sha256: Vec<Sha256>,
}

impl<'de> Deserialize<'de> for Executables<'_> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_seq(ListVisitor)
    }
}

struct ListVisitor;

impl<'de> Visitor<'de> for ListVisitor {
    type Value = Executables<'static>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a list of executables")
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        let mut paths = Vec::with_capacity(seq.size_hint().unwrap_or(0));
        let mut content = Content::new();
        while let Some(Entry(path, digests)) = seq.next_element()? {
            if !digests.is_empty() {
                content.entry(path.clone()).or_default().extend(digests);
            }
            paths.push(path);
        }
        // Collected in one pass: lists written by export are sorted (see format.rs).
        Ok(Executables {
            paths: std::borrow::Cow::Owned(paths.into_iter().collect()),
            content: std::borrow::Cow::Owned(content),
        })
    }
}

/// One list entry: a path and its digests (none for a plain path).
struct Entry(ExecPath, Vec<Sha256>);

impl<'de> Deserialize<'de> for Entry {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Entry, D::Error> {
        deserializer.deserialize_any(EntryVisitor)
    }
}

struct EntryVisitor;

impl<'de> Visitor<'de> for EntryVisitor {
    type Value = Entry;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(
            "an executable: a path, {\"hex\": \"...\"}, or {\"path\": ..., \"sha256\": [...]}",
        )
    }

    fn visit_str<E: de::Error>(self, text: &str) -> Result<Entry, E> {
        let path = ExecPath::deserialize(de::value::StrDeserializer::<E>::new(text))?;
        Ok(Entry(path, Vec::new()))
    }

    /// Objects are rare (non-UTF-8 paths, pinned entries): buffer one and decide by its
    /// keys, so each form keeps its own precise error messages.
    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Entry, A::Error> {
        let object = serde_json::Map::deserialize(MapAccessDeserializer::new(map))?;
        if !object.contains_key("path") && !object.contains_key("sha256") {
            let path = ExecPath::deserialize(serde_json::Value::Object(object))
                .map_err(de::Error::custom)?;
            return Ok(Entry(path, Vec::new()));
        }
        let pinned =
            PinnedDoc::deserialize(serde_json::Value::Object(object)).map_err(de::Error::custom)?;
        if pinned.sha256.is_empty() {
            return Err(de::Error::custom(format_args!(
                "executable `{}` has an empty sha256 list; fix: list its digests, or write \
                 the path alone to allow any content",
                pinned.path
            )));
        }
        Ok(Entry(pinned.path, pinned.sha256))
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::super::testing::*;
    use super::super::{Mode, Profile, ProfileSet};
    use super::*;

    fn digest(seed: &str) -> Sha256 {
        Sha256::of(seed.as_bytes())
    }

    /// What learning records when it hashed what ran: nginx seen in two versions
    /// (replicas on two images), logrotate in one, the non-UTF-8 path never hashed.
    fn learned_with_content() -> Vec<crate::storage::LearnedWorkload> {
        let mut learned = sample_learned();
        for exe in &mut learned[0].executables {
            exe.sha256 = match exe.path.as_slice() {
                b"/usr/sbin/nginx" => vec![digest("nginx 1.24"), digest("nginx 1.26")],
                b"/usr/bin/logrotate" => vec![digest("logrotate")],
                _ => Vec::new(),
            };
            exe.sha256.sort();
        }
        learned
    }

    fn parse(text: &str) -> Result<Profile, String> {
        Profile::from_json_bytes(text.as_bytes(), Path::new("p.json")).map_err(|e| e.to_string())
    }

    #[test]
    fn export_with_content_writes_schema_2_matching_golden() {
        let (set, _) = ProfileSet::from_learned(&learned_with_content(), Mode::Audit);
        let nginx = set.get("nginx.service").expect("exported");
        let bytes = nginx.to_json_bytes().expect("render");
        assert_golden("export-content/nginx.service.json", &bytes);
        let again = Profile::from_json_bytes(&bytes, Path::new("nginx.service.json")).unwrap();
        assert_eq!(&again, nginx, "round trip");
        assert_eq!((again.executables.len(), again.path_only_count()), (3, 1));
        // A profile without digests is still written as schema 1, byte for byte.
        let docker = set.get("docker/0123abcd").expect("exported");
        assert!(String::from_utf8(docker.to_json_bytes().unwrap())
            .unwrap()
            .contains("\"schema\": 1,"));
    }

    #[test]
    fn schema_1_means_any_content() {
        let profile =
            parse(r#"{"schema": 1, "workload": {"name": "x", "match": {"kind": "systemd_unit", "unit": "x"}}, "mode": "audit", "executables": ["/bin/a", {"hex": "2f62"}]}"#)
                .unwrap();
        assert!(profile.content.is_empty());
        assert_eq!(profile.path_only_count(), 2);
    }

    #[test]
    fn bad_pinned_entries_say_what_to_fix() {
        let with = |schema: u64, entry: &str| {
            format!(
                r#"{{"schema": {schema}, "workload": {{"name": "x", "match": {{"kind": "systemd_unit", "unit": "x"}}}}, "mode": "audit",
"executables": ["/bin/a", {entry}]}}"#
            )
        };
        let good = format!(r#"{{"path": "/bin/b", "sha256": ["{}"]}}"#, digest("b"));
        assert!(parse(&with(2, &good)).is_ok());
        let upper = good
            .to_uppercase()
            .replace("PATH", "path")
            .replace("SHA256", "sha256");
        let upper = upper.replace("/BIN/B", "/bin/b");
        assert_eq!(parse(&with(2, &upper)), parse(&with(2, &good)));

        let error = parse(&with(1, &good)).unwrap_err();
        assert!(
            error.starts_with("p.json:1:2: schema: schema 1 has no content digests"),
            "{error}"
        );
        assert!(error.contains("fix: set \"schema\": 2"), "{error}");

        let cases = [
            (
                r#"{"path": "/bin/b", "sha256": []}"#,
                "empty sha256 list; fix:",
            ),
            (
                r#"{"path": "/bin/b", "sha256": ["abc"]}"#,
                "`abc` is not a SHA-256 digest; fix:",
            ),
            (
                r#"{"path": "bin/b", "sha256": ["abc"]}"#,
                "path `bin/b` is relative",
            ),
            (r#"{"path": "/bin/b", "sha": []}"#, "unknown field `sha`"),
            (r#"{"sha256": []}"#, "missing field `path`"),
        ];
        for (entry, problem) in cases {
            let error = parse(&with(2, entry)).unwrap_err();
            assert!(error.contains("executables[1]"), "{entry}: {error}");
            assert!(error.contains(problem), "{entry}: {error}");
        }
    }

    #[test]
    fn merge_keeps_the_union_of_digests_and_path_only_adds_none() {
        let pinned = |digests: &[&str]| {
            let mut p = profile("web.service", Mode::Audit, &["/bin/web", "/bin/sh"], &[]);
            let set = digests.iter().map(|d| digest(d)).collect();
            p.content.insert(exec(b"/bin/web"), set);
            p
        };
        let a = set_of([pinned(&["v1"])]);
        let b = set_of([pinned(&["v2", "v1"])]);
        let path_only = set_of([profile("web.service", Mode::Audit, &["/bin/web"], &[])]);
        let merged = ProfileSet::merge(&[a.clone(), path_only.clone(), b.clone()]).unwrap();
        let web = merged.get("web.service").unwrap();
        let expected: BTreeSet<Sha256> = [digest("v1"), digest("v2")].into();
        assert_eq!(web.content.get(&exec(b"/bin/web")), Some(&expected));
        assert_eq!(web.path_only_count(), 1, "/bin/sh stays path-only");
        let again = ProfileSet::merge(&[merged.clone(), b, path_only, a]).unwrap();
        assert_eq!(again, merged, "idempotent and order-free");
    }
}
