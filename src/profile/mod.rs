//! Profiles as code: one reviewable JSON file per workload.
//!
//! A [`Profile`] says which workload it is for (its name and how it is matched), its
//! [`Mode`], the exact executables it allows and optional hand-written patterns. A
//! [`ProfileSet`] maps workload names to profiles; it is built from what `learn`
//! recorded ([`ProfileSet::from_learned`]), read from and written to a directory
//! ([`ProfileSet::load`], [`ProfileSet::write_dir`]), and combined
//! ([`ProfileSet::merge`]). The file format is in docs/profile-format.md; the
//! submodules hold the pieces: byte-exact paths, checked paths and patterns, the JSON
//! format, file naming, export, directory I/O and merging.

mod content;
mod error;
mod export;
mod file_names;
mod files;
mod format;
mod merge;
mod path_bytes;
mod paths;

#[cfg(test)]
pub(crate) mod testing;
#[cfg(test)]
mod tests;

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::workload::WorkloadId;

pub use content::{Content, ContentCoverage};
pub use error::{Origin, ProfileError};
pub use export::{ExportOptions, ExportReport, SkipReason, SkippedExecutable, SkippedWorkload};
pub use file_names::{file_name_for, file_name_with_suffix, workload_name_of};
pub use files::{write_file_set, WriteReport};
pub use format::{match_to_json, PATH_ONLY_SCHEMA, SCHEMA_VERSION, SUPPORTED_SCHEMAS};
pub use path_bytes::{escape_bytes, path_json, PathBytes};
pub use paths::{ExecPath, PathProblem, Pattern};

/// What enforcement does with an executable that the profile does not allow.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    Hash,
    Default,
    Serialize,
    Deserialize,
    clap::ValueEnum,
)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// Report only. The default for exported profiles: nothing breaks until a person
    /// has reviewed the profile and switched it to `enforce`.
    #[default]
    Audit,
    /// Deny.
    // Ordered after `Audit` so that "stricter wins" is simply `max`.
    Enforce,
}

impl Mode {
    pub fn as_str(self) -> &'static str {
        match self {
            Mode::Audit => "audit",
            Mode::Enforce => "enforce",
        }
    }
}

/// Whether a workload's tasks may leave its cgroups (`cgroup_moves` in a profile).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CgroupMoves {
    /// Tasks may be moved to other cgroups: what managers do (systemd moves each new
    /// service's first task, a container runtime each container's).
    Allow,
    /// Tasks stay in cgroups bound to this profile: with the LSM, writing another
    /// cgroup's files and cloning into another cgroup are refused.
    // Ordered after `Allow` so that "stricter wins" is simply `max`.
    Deny,
}

impl CgroupMoves {
    pub fn as_str(self) -> &'static str {
        match self {
            CgroupMoves::Allow => "allow",
            CgroupMoves::Deny => "deny",
        }
    }

    /// The default for a workload: containers keep their tasks (a container never
    /// moves its own tasks out); units and plain cgroups may move them, since the
    /// same write is how managers that run in them start services and containers.
    pub fn default_for(matcher: &WorkloadMatch) -> CgroupMoves {
        match matcher {
            WorkloadMatch::Exact(
                WorkloadId::Container { .. }
                | WorkloadId::EngineContainer { .. }
                | WorkloadId::KubernetesContainer { .. }
                | WorkloadId::KubernetesWorkload { .. },
            ) => CgroupMoves::Deny,
            WorkloadMatch::Exact(WorkloadId::SystemdUnit { .. } | WorkloadId::Cgroup { .. })
            | WorkloadMatch::CgroupPattern(_) => CgroupMoves::Allow,
        }
    }
}

impl fmt::Display for CgroupMoves {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl fmt::Display for Mode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// How the processes of a workload are recognised.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum WorkloadMatch {
    /// Exactly the workload that learning identified.
    Exact(WorkloadId),
    /// Every cgroup whose path matches the pattern (hand-written).
    CgroupPattern(Pattern),
}

impl fmt::Display for WorkloadMatch {
    /// Compact `kind field=value ...` form for messages and diff text; values are
    /// escaped like paths, so a crafted unit name cannot break a line of output.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let field = |name: &str, value: &str| format!(" {name}={}", escape_bytes(value.as_bytes()));
        match self {
            WorkloadMatch::Exact(WorkloadId::SystemdUnit { unit }) => {
                write!(f, "systemd_unit{}", field("unit", unit))
            }
            WorkloadMatch::Exact(WorkloadId::Container { runtime, id }) => {
                write!(
                    f,
                    "container{}{}",
                    field("runtime", runtime),
                    field("id", id)
                )
            }
            WorkloadMatch::Exact(WorkloadId::EngineContainer { engine, by, name }) => {
                write!(
                    f,
                    "engine_container{}{}{}",
                    field("engine", engine),
                    field("by", by),
                    field("name", name)
                )
            }
            WorkloadMatch::Exact(WorkloadId::KubernetesContainer {
                qos,
                pod_uid,
                runtime,
                container_id,
            }) => {
                let runtime = runtime
                    .as_deref()
                    .map(|r| field("runtime", r))
                    .unwrap_or_default();
                write!(
                    f,
                    "kubernetes_container{}{}{}{runtime}",
                    field("qos", qos),
                    field("pod_uid", pod_uid),
                    field("container_id", container_id)
                )
            }
            WorkloadMatch::Exact(WorkloadId::KubernetesWorkload {
                namespace,
                owner_kind,
                owner_name,
                container,
                ..
            }) => write!(
                f,
                "kubernetes_workload{}{}{}{}",
                field("namespace", namespace),
                field("owner_kind", owner_kind),
                field("owner_name", owner_name),
                field("container", container)
            ),
            WorkloadMatch::Exact(WorkloadId::Cgroup { path }) => {
                write!(f, "cgroup{}", field("path", path))
            }
            WorkloadMatch::CgroupPattern(pattern) => write!(f, "cgroup_pattern pattern={pattern}"),
        }
    }
}

/// Volatile facts about one executable; kept out of profiles unless asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ExecStats {
    pub count: u64,
    pub first_seen_ms: i64,
    pub last_seen_ms: i64,
}

impl ExecStats {
    /// Combine two observations of the same executable. `count` takes the larger, not
    /// the sum, because merge must be idempotent (merging a set with itself must not
    /// double it): a merged count is a lower bound. The database keeps true totals.
    pub fn combine(&self, other: &ExecStats) -> ExecStats {
        ExecStats {
            count: self.count.max(other.count),
            first_seen_ms: self.first_seen_ms.min(other.first_seen_ms),
            last_seen_ms: self.last_seen_ms.max(other.last_seen_ms),
        }
    }
}

/// The optional `"stats"` object: per-executable counts and times.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Stats {
    pub executables: BTreeMap<ExecPath, ExecStats>,
}

impl Stats {
    /// Add an observation, combining it with one already recorded for the same path.
    pub fn record(&mut self, path: ExecPath, seen: ExecStats) {
        self.executables
            .entry(path)
            .and_modify(|known| *known = known.combine(&seen))
            .or_insert(seen);
    }
}

/// The allowlist of one workload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Profile {
    /// The workload's name as learning gives it; the key of a [`ProfileSet`] and the
    /// source of the file name.
    pub name: String,
    pub matcher: WorkloadMatch,
    pub mode: Mode,
    pub executables: BTreeSet<ExecPath>,
    /// The contents learned for executables (SHA-256 of the file's bytes), one or
    /// several each; an executable without an entry is path-only: any content. Keys are
    /// always in `executables`, and sets are never empty.
    pub content: Content,
    pub patterns: BTreeSet<Pattern>,
    /// Written in the file only when it differs from the workload's default
    /// ([`CgroupMoves::default_for`]); see [`Profile::cgroup_moves`].
    pub cgroup_moves: Option<CgroupMoves>,
    /// Only present when exported with stats or read from a file that has them.
    pub stats: Option<Stats>,
}

impl Profile {
    /// An empty profile: allows nothing until executables or patterns are added.
    pub fn new(name: impl Into<String>, matcher: WorkloadMatch, mode: Mode) -> Profile {
        Profile {
            name: name.into(),
            matcher,
            mode,
            executables: BTreeSet::new(),
            content: Content::new(),
            patterns: BTreeSet::new(),
            cgroup_moves: None,
            stats: None,
        }
    }

    /// Whether this workload's tasks may leave its cgroups: as written, else the
    /// workload's default.
    pub fn cgroup_moves(&self) -> CgroupMoves {
        self.cgroup_moves
            .unwrap_or_else(|| CgroupMoves::default_for(&self.matcher))
    }

    /// The bytes of this profile's file (deterministic; see docs/profile-format.md).
    pub fn to_json_bytes(&self) -> Result<Vec<u8>, ProfileError> {
        format::render(self)
    }

    /// Parse a profile file's bytes; `file` only names the file in errors.
    pub fn from_json_bytes(bytes: &[u8], file: &Path) -> Result<Profile, ProfileError> {
        format::parse(bytes, file)
    }

    /// The file name this profile is written to inside a profile directory.
    pub fn file_name(&self) -> String {
        file_names::file_name_for(&self.name)
    }

    /// The first pattern (in sorted order) that matches `path`, if any.
    pub fn covering_pattern(&self, path: &[u8]) -> Option<&Pattern> {
        self.patterns.iter().find(|pattern| pattern.matches(path))
    }

    /// Executables listed without a content digest (path-only: any content matches).
    pub fn path_only_count(&self) -> usize {
        self.executables.len() - self.content.len()
    }

    /// Whether executing `path` is allowed: listed exactly, or matched by a pattern.
    pub fn allows(&self, path: &[u8]) -> bool {
        self.executables.iter().any(|exec| exec.as_bytes() == path)
            || self.covering_pattern(path).is_some()
    }
}

/// Profiles keyed by workload name, plus where each one was read from (for messages).
#[derive(Debug, Clone, Default)]
pub struct ProfileSet {
    profiles: BTreeMap<String, Profile>,
    files: BTreeMap<String, PathBuf>,
}

/// Two sets are equal when their profiles are; where they were read from is not content.
impl PartialEq for ProfileSet {
    fn eq(&self, other: &ProfileSet) -> bool {
        self.profiles == other.profiles
    }
}

impl Eq for ProfileSet {}

impl ProfileSet {
    pub fn new() -> ProfileSet {
        ProfileSet::default()
    }

    /// Add or replace the profile for `profile.name`; returns the one it replaced.
    pub fn insert(&mut self, profile: Profile) -> Option<Profile> {
        self.files.remove(&profile.name);
        self.profiles.insert(profile.name.clone(), profile)
    }

    /// Remove the profile of `name`; returns it.
    pub fn remove(&mut self, name: &str) -> Option<Profile> {
        self.files.remove(name);
        self.profiles.remove(name)
    }

    pub fn get(&self, name: &str) -> Option<&Profile> {
        self.profiles.get(name)
    }

    /// Profiles in name order.
    pub fn iter(&self) -> impl Iterator<Item = &Profile> {
        self.profiles.values()
    }

    pub fn profiles(&self) -> &BTreeMap<String, Profile> {
        &self.profiles
    }

    pub fn len(&self) -> usize {
        self.profiles.len()
    }

    pub fn is_empty(&self) -> bool {
        self.profiles.is_empty()
    }

    /// The file a profile was loaded from, when it was loaded from one.
    pub fn file_of(&self, name: &str) -> Option<&Path> {
        self.files.get(name).map(PathBuf::as_path)
    }

    /// How to name where a profile came from: its file, else the index of its set.
    fn origin_of(&self, name: &str, index: usize) -> Origin {
        match self.files.get(name) {
            Some(file) => Origin::File(file.clone()),
            None => Origin::Input(index),
        }
    }
}

impl<'a> IntoIterator for &'a ProfileSet {
    type Item = &'a Profile;
    type IntoIter = std::collections::btree_map::Values<'a, String, Profile>;

    fn into_iter(self) -> Self::IntoIter {
        self.profiles.values()
    }
}
