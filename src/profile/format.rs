//! The on-disk JSON format of one profile (schemas 1 and 2): parsing and rendering.
//!
//! Schema 2 adds content digests to executables (see `content.rs`); a profile with
//! none is written as schema 1, byte for byte as before, so older readers still read
//! it. A schema-1 file holding digests is refused: its writer meant schema 2.
//!
//! The document types here are the file format, kept apart from the in-memory model
//! and from `WorkloadId`'s own serde derive on purpose: a rename in another module must
//! not silently change files that people keep in git, and the file format rejects
//! unknown fields everywhere (a typo such as `executable` must not be ignored and leave
//! a profile stricter or looser than its author thinks). See docs/profile-format.md.
//!
//! When a document fails to parse, its `schema` field is checked on its own first, so a
//! file from a newer version reports "unsupported schema version" rather than confusing
//! errors about fields this version does not know.

use std::borrow::Cow;
use std::collections::BTreeSet;
use std::fmt;
use std::path::Path;

use serde::de::{DeserializeOwned, Deserializer, Error as _, IgnoredAny, MapAccess, Visitor};
use serde::{Deserialize, Serialize, Serializer};
use serde_json::error::Category;

use super::content::Executables;
use super::error::ProfileError;
use super::paths::{ExecPath, Pattern};
use super::{CgroupMoves, ExecStats, Mode, Profile, Stats, WorkloadMatch};
use crate::workload::WorkloadId;

/// The newest schema this build writes (only for profiles that carry digests).
pub const SCHEMA_VERSION: u64 = 2;
/// The schema of profiles without content digests: path-only, any content.
pub const PATH_ONLY_SCHEMA: u64 = 1;
/// The schemas this build reads.
pub const SUPPORTED_SCHEMAS: &[u64] = &[1, 2];

/// The `schema` field: the version, checked when read.
struct Schema(u64);

impl Serialize for Schema {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_u64(self.0)
    }
}

impl<'de> Deserialize<'de> for Schema {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Schema, D::Error> {
        let version = u64::deserialize(deserializer)?;
        if SUPPORTED_SCHEMAS.contains(&version) {
            return Ok(Schema(version));
        }
        let supported: Vec<String> = SUPPORTED_SCHEMAS.iter().map(u64::to_string).collect();
        Err(D::Error::custom(format_args!(
            "unsupported schema version {version}; this build of fingerprint reads schema {}; fix: upgrade fingerprint, or export the profile again with this version",
            supported.join(", ")
        )))
    }
}

/// Reads only `schema`; everything else is skipped (but still syntax-checked). Written
/// by hand so that it accepts only a JSON object: serde's derive would also take a
/// profile written as an array of field values, which no person should have to read.
struct SchemaProbe;

impl<'de> Deserialize<'de> for SchemaProbe {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<SchemaProbe, D::Error> {
        deserializer.deserialize_map(SchemaProbe)
    }
}

impl<'de> Visitor<'de> for SchemaProbe {
    type Value = SchemaProbe;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a profile, which is a JSON object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<SchemaProbe, A::Error> {
        let mut schema = None;
        while let Some(key) = map.next_key::<Cow<'de, str>>()? {
            if key == "schema" {
                schema = Some(map.next_value::<Schema>()?);
            } else {
                map.next_value::<IgnoredAny>()?;
            }
        }
        schema
            .map(|_| SchemaProbe)
            .ok_or_else(|| A::Error::missing_field("schema"))
    }
}

#[derive(Serialize, Deserialize)]
#[serde(rename = "profile", deny_unknown_fields)]
struct ProfileDoc<'a> {
    schema: Schema,
    workload: WorkloadDoc<'a>,
    mode: Mode,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    cgroup_moves: Option<CgroupMoves>,
    executables: Executables<'a>,
    #[serde(default, deserialize_with = "set_from_list")]
    patterns: Cow<'a, BTreeSet<Pattern>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    stats: Option<StatsDoc>,
}

#[derive(Serialize, Deserialize)]
#[serde(rename = "workload", deny_unknown_fields)]
struct WorkloadDoc<'a> {
    #[serde(deserialize_with = "non_empty_name")]
    name: Cow<'a, str>,
    #[serde(rename = "match")]
    matcher: MatchDoc,
}

/// How the workload is recognised; mirrors `WorkloadId` plus `cgroup_pattern`.
#[derive(Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
enum MatchDoc {
    SystemdUnit {
        unit: String,
    },
    Container {
        runtime: String,
        id: String,
    },
    EngineContainer {
        engine: String,
        #[serde(deserialize_with = "container_rule")]
        by: String,
        name: String,
    },
    KubernetesContainer {
        qos: String,
        pod_uid: String,
        container_id: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        runtime: Option<String>,
    },
    KubernetesWorkload {
        namespace: String,
        owner_kind: String,
        owner_name: String,
        container: String,
        /// How learning found the owner ("pod-name", "kubernetes-api"); informational.
        #[serde(default, skip_serializing_if = "String::is_empty")]
        owner_source: String,
    },
    Cgroup {
        #[serde(deserialize_with = "absolute_cgroup")]
        path: String,
    },
    CgroupPattern {
        pattern: Pattern,
    },
}

#[derive(Serialize, Deserialize)]
#[serde(rename = "stats", deny_unknown_fields)]
struct StatsDoc {
    executables: Vec<ExecStatsDoc>,
}

#[derive(Serialize, Deserialize)]
#[serde(rename = "executable stats", deny_unknown_fields)]
struct ExecStatsDoc {
    path: ExecPath,
    count: u64,
    first_seen_ms: i64,
    last_seen_ms: i64,
}

/// A list read as a set. Going through a `Vec` lets the set be built in one sorted
/// bulk pass (lists written by export are already sorted) instead of one search per
/// element, which is a measurable share of loading ten thousand profiles.
fn set_from_list<'de, D, T>(deserializer: D) -> Result<Cow<'static, BTreeSet<T>>, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de> + Ord + Clone,
{
    let list = Vec::<T>::deserialize(deserializer)?;
    Ok(Cow::Owned(list.into_iter().collect()))
}

fn non_empty_name<'de, D: Deserializer<'de>>(
    deserializer: D,
) -> Result<Cow<'static, str>, D::Error> {
    let name = String::deserialize(deserializer)?;
    if name.is_empty() {
        return Err(D::Error::custom(
            "the workload name is empty; fix: write the name that `fingerprint learn` gives the workload",
        ));
    }
    Ok(Cow::Owned(name))
}

fn absolute_cgroup<'de, D: Deserializer<'de>>(deserializer: D) -> Result<String, D::Error> {
    let path = String::deserialize(deserializer)?;
    if !path.starts_with('/') {
        return Err(D::Error::custom(format_args!(
            "cgroup path `{path}` is relative; fix: write it from the cgroup root, e.g. /system.slice/nginx.service"
        )));
    }
    Ok(path)
}

/// How an engine's container is named: only the rules `learn` applies.
fn container_rule<'de, D: Deserializer<'de>>(deserializer: D) -> Result<String, D::Error> {
    let by = String::deserialize(deserializer)?;
    if !matches!(by.as_str(), "name" | "image") {
        return Err(D::Error::custom(format_args!(
            "engine_container `by` is `{by}`; fix: write \"name\" or \"image\" (the --container-names rule it was learned with)"
        )));
    }
    Ok(by)
}

impl From<&WorkloadMatch> for MatchDoc {
    fn from(matcher: &WorkloadMatch) -> MatchDoc {
        match matcher.clone() {
            WorkloadMatch::Exact(WorkloadId::SystemdUnit { unit }) => {
                MatchDoc::SystemdUnit { unit }
            }
            WorkloadMatch::Exact(WorkloadId::Container { runtime, id }) => {
                MatchDoc::Container { runtime, id }
            }
            WorkloadMatch::Exact(WorkloadId::EngineContainer { engine, by, name }) => {
                MatchDoc::EngineContainer { engine, by, name }
            }
            WorkloadMatch::Exact(WorkloadId::KubernetesContainer {
                qos,
                pod_uid,
                runtime,
                container_id,
            }) => MatchDoc::KubernetesContainer {
                qos,
                pod_uid,
                container_id,
                runtime,
            },
            WorkloadMatch::Exact(WorkloadId::KubernetesWorkload {
                namespace,
                owner_kind,
                owner_name,
                container,
                owner_source,
            }) => MatchDoc::KubernetesWorkload {
                namespace,
                owner_kind,
                owner_name,
                container,
                owner_source,
            },
            WorkloadMatch::Exact(WorkloadId::Cgroup { path }) => MatchDoc::Cgroup { path },
            WorkloadMatch::CgroupPattern(pattern) => MatchDoc::CgroupPattern { pattern },
        }
    }
}

impl From<MatchDoc> for WorkloadMatch {
    fn from(doc: MatchDoc) -> WorkloadMatch {
        match doc {
            MatchDoc::SystemdUnit { unit } => {
                WorkloadMatch::Exact(WorkloadId::SystemdUnit { unit })
            }
            MatchDoc::Container { runtime, id } => {
                WorkloadMatch::Exact(WorkloadId::Container { runtime, id })
            }
            MatchDoc::EngineContainer { engine, by, name } => {
                WorkloadMatch::Exact(WorkloadId::EngineContainer { engine, by, name })
            }
            MatchDoc::KubernetesContainer {
                qos,
                pod_uid,
                container_id,
                runtime,
            } => WorkloadMatch::Exact(WorkloadId::KubernetesContainer {
                qos,
                pod_uid,
                runtime,
                container_id,
            }),
            MatchDoc::KubernetesWorkload {
                namespace,
                owner_kind,
                owner_name,
                container,
                owner_source,
            } => WorkloadMatch::Exact(WorkloadId::KubernetesWorkload {
                namespace,
                owner_kind,
                owner_name,
                container,
                owner_source,
            }),
            MatchDoc::Cgroup { path } => WorkloadMatch::Exact(WorkloadId::Cgroup { path }),
            MatchDoc::CgroupPattern { pattern } => WorkloadMatch::CgroupPattern(pattern),
        }
    }
}

impl From<&Stats> for StatsDoc {
    fn from(stats: &Stats) -> StatsDoc {
        let executables = stats
            .executables
            .iter()
            .map(|(path, s)| ExecStatsDoc {
                path: path.clone(),
                count: s.count,
                first_seen_ms: s.first_seen_ms,
                last_seen_ms: s.last_seen_ms,
            })
            .collect();
        StatsDoc { executables }
    }
}

impl From<StatsDoc> for Stats {
    /// Repeated entries for one path are combined as merge combines them, so their
    /// order in the file does not matter.
    fn from(doc: StatsDoc) -> Stats {
        let mut stats = Stats::default();
        for entry in doc.executables {
            let seen = ExecStats {
                count: entry.count,
                first_seen_ms: entry.first_seen_ms,
                last_seen_ms: entry.last_seen_ms,
            };
            stats.record(entry.path, seen);
        }
        stats
    }
}

impl<'a> ProfileDoc<'a> {
    fn borrowing(profile: &'a Profile) -> ProfileDoc<'a> {
        let pinned = profile.content.values().any(|digests| !digests.is_empty());
        ProfileDoc {
            schema: Schema(match pinned {
                true => SCHEMA_VERSION,
                false => PATH_ONLY_SCHEMA,
            }),
            workload: WorkloadDoc {
                name: Cow::Borrowed(&profile.name),
                matcher: MatchDoc::from(&profile.matcher),
            },
            mode: profile.mode,
            cgroup_moves: profile.cgroup_moves,
            executables: Executables {
                paths: Cow::Borrowed(&profile.executables),
                content: Cow::Borrowed(&profile.content),
            },
            patterns: Cow::Borrowed(&profile.patterns),
            stats: profile.stats.as_ref().map(StatsDoc::from),
        }
    }

    fn into_profile(self) -> Profile {
        Profile {
            name: self.workload.name.into_owned(),
            matcher: self.workload.matcher.into(),
            mode: self.mode,
            executables: self.executables.paths.into_owned(),
            content: self.executables.content.into_owned(),
            patterns: self.patterns.into_owned(),
            cgroup_moves: self.cgroup_moves,
            stats: self.stats.map(Stats::from),
        }
    }
}

/// The exact bytes of a profile file: 2-space pretty JSON, fields in a fixed order,
/// sets sorted by their bytes, and a final newline (so tools that append lines and
/// `git diff` both behave).
pub fn render(profile: &Profile) -> Result<Vec<u8>, ProfileError> {
    let mut out = serde_json::to_vec_pretty(&ProfileDoc::borrowing(profile)).map_err(|source| {
        ProfileError::Render {
            name: profile.name.clone(),
            source,
        }
    })?;
    out.push(b'\n');
    Ok(out)
}

/// Parse one profile file's bytes; `file` is only used to name it in errors.
///
/// A valid file is parsed once (its `schema` is checked as part of the document). Only
/// when that fails is the schema probed on its own, so that a file from a newer
/// version is reported as such rather than by the first field we do not know.
pub fn parse(bytes: &[u8], file: &Path) -> Result<Profile, ProfileError> {
    match deserialize::<ProfileDoc<'static>>(bytes, file) {
        Ok(doc) if doc.schema.0 == PATH_ONLY_SCHEMA && !doc.executables.content.is_empty() => {
            Err(digests_need_schema_2(bytes, file))
        }
        Ok(doc) => Ok(doc.into_profile()),
        Err(error) => Err(deserialize::<SchemaProbe>(bytes, file)
            .err()
            .unwrap_or(error)),
    }
}

/// A schema-1 file with `sha256` lists: its author wrote schema 2 and forgot to say so,
/// or an older tool would read it as something else. Points at the `schema` field.
fn digests_need_schema_2(bytes: &[u8], file: &Path) -> ProfileError {
    let at = bytes
        .windows(b"\"schema\"".len())
        .position(|w| w == b"\"schema\"")
        .unwrap_or(0);
    let before = &bytes[..at];
    let line = 1 + before.iter().filter(|&&b| b == b'\n').count();
    let column = 1 + before.iter().rev().take_while(|&&b| b != b'\n').count();
    ProfileError::Invalid {
        file: file.to_path_buf(),
        line,
        column,
        field: "schema".to_owned(),
        message: "schema 1 has no content digests, but executables carry `sha256`; fix: \
                  set \"schema\": 2 (or remove the digests to allow any content)"
            .to_owned(),
    }
}

/// Deserialize without tracking the JSON path, which is the common, fast case; on
/// failure parse again with tracking to say which field was wrong.
fn deserialize<T: DeserializeOwned>(bytes: &[u8], file: &Path) -> Result<T, ProfileError> {
    serde_json::from_slice(bytes).map_err(|plain| locate_error::<T>(bytes, file, plain))
}

fn locate_error<T: DeserializeOwned>(
    bytes: &[u8],
    file: &Path,
    plain: serde_json::Error,
) -> ProfileError {
    let mut deserializer = serde_json::Deserializer::from_slice(bytes);
    match serde_path_to_error::deserialize::<_, T>(&mut deserializer) {
        Err(tracked) => {
            let field = tracked.path().to_string();
            invalid(file, field, &tracked.into_inner())
        }
        // Only trailing characters after a valid document fail plain but pass here.
        Ok(_) => invalid(
            file,
            ".".to_owned(),
            &deserializer.end().err().unwrap_or(plain),
        ),
    }
}

fn invalid(file: &Path, field: String, error: &serde_json::Error) -> ProfileError {
    let text = error.to_string();
    // serde_json appends the position to its message; we show it in front instead.
    let position = format!(" at line {} column {}", error.line(), error.column());
    let problem = text.strip_suffix(&position).unwrap_or(&text);
    let message = match hint(error.classify(), problem) {
        Some(fix) => format!("{problem}; fix: {fix}"),
        None => problem.to_owned(),
    };
    ProfileError::Invalid {
        file: file.to_path_buf(),
        line: error.line(),
        column: error.column(),
        field,
        message,
    }
}

/// How to fix what serde_json or serde's derive reported. Our own validators already
/// end their message with "; fix: ...", so they get no second hint.
fn hint(category: Category, problem: &str) -> Option<&'static str> {
    if problem.contains("; fix: ") {
        return None;
    }
    Some(match category {
        Category::Syntax => {
            "correct the JSON syntax at this position (a missing comma, quote or bracket?)"
        }
        Category::Eof => "the file ends too early: complete it, or export it again",
        Category::Io => "check that the file is readable",
        Category::Data => data_hint(problem),
    })
}

/// Hints keyed on serde's standard message openings, which are part of its stable
/// `de::Error` helpers (`unknown_field`, `missing_field`, ...).
fn data_hint(problem: &str) -> &'static str {
    const HINTS: [(&str, &str); 5] = [
        (
            "unknown field",
            "remove the field or correct its spelling; the fields of each schema are listed in docs/profile-format.md",
        ),
        ("missing field", "add the field; see docs/profile-format.md"),
        ("duplicate field", "keep only one of them"),
        ("unknown variant", "use one of the values listed"),
        ("invalid type", "use the type described in docs/profile-format.md"),
    ];
    HINTS
        .iter()
        .find(|(opening, _)| problem.starts_with(opening))
        .map_or(
            "see docs/profile-format.md for the expected value",
            |(_, fix)| *fix,
        )
}

/// The `match` object exactly as a profile file writes it (used by diff's JSON output,
/// so both documents describe a workload match the same way).
pub fn match_to_json(matcher: &WorkloadMatch) -> serde_json::Value {
    // Cannot fail for these types; the text form keeps the value visible if it ever did.
    serde_json::to_value(MatchDoc::from(matcher))
        .unwrap_or_else(|_| serde_json::Value::String(matcher.to_string()))
}
