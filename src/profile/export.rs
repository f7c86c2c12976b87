//! Export: turn what `learn` recorded into a [`ProfileSet`].
//!
//! Not every executed path can be allowlisted: a truncated path is incomplete, a
//! deleted file or a memfd has no path anyone can install again, and a path outside
//! the process's root means nothing to the enforcer. Allowlisting such a path would be
//! a hole (or a rule that never matches), and dropping it quietly would hide fileless
//! execution from the reviewer, so every skipped path is listed in the
//! [`ExportReport`] with the reason and how often it ran.

use std::fmt;

use super::path_bytes::{escape_bytes, PathBytes};
use super::paths::{ExecPath, PathProblem};
use super::{ExecStats, Mode, Profile, ProfileSet, Stats, WorkloadMatch};
use crate::event::describe_path_flags;
use crate::storage::{LearnedExecutable, LearnedWorkload};
use crate::workload::WorkloadId;

/// Choices made at export time.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ExportOptions {
    /// Mode written into every new profile (audit unless a person decides otherwise).
    pub mode: Mode,
    /// Also write counts and first/last seen times into a separate `"stats"` object.
    /// Off by default: those change on every learn and would churn reviews.
    pub with_stats: bool,
    /// Also export the host's own cgroups that are no service: the root cgroup and
    /// interactive login sessions ([`host_only_reason`]). Off by default.
    pub include_host: bool,
}

/// Why an executable was not exported.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SkipReason {
    /// Learning flagged the path (the raw `path_flags`; unknown bits are treated as
    /// unallowlistable too, because we cannot know that they are harmless).
    Flags(u32),
    /// The path is not a canonical absolute path, so it could never match.
    NotCanonical(PathProblem),
}

impl fmt::Display for SkipReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SkipReason::Flags(flags) => f.write_str(&describe_path_flags(*flags)),
            SkipReason::NotCanonical(problem) => {
                write!(f, "not canonical: path {}", problem.problem())
            }
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SkippedExecutable {
    pub workload: String,
    pub path: PathBytes,
    pub reason: SkipReason,
    /// How many times it was executed, so a reviewer can tell noise from a pattern.
    pub count: u64,
}

/// A learned workload that could not become a profile.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SkippedWorkload {
    pub name: String,
    pub id: WorkloadId,
    pub reason: String,
}

/// Everything export left out, and why. Empty when everything was exported.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ExportReport {
    pub skipped_executables: Vec<SkippedExecutable>,
    pub skipped_workloads: Vec<SkippedWorkload>,
    /// Executables exported by path only, per workload (in export order): learning
    /// could not read what ran (the file was changed or gone first, a `#!` script
    /// learned after the exec), so any bytes at that path would be allowed.
    pub without_content: Vec<(String, PathBytes)>,
}

/// How many paths without content a line names before it says how many more.
const WITHOUT_CONTENT_SHOWN: usize = 5;

impl ExportReport {
    /// Whether nothing was left out (executables without content were exported).
    pub fn is_empty(&self) -> bool {
        self.skipped_executables.is_empty() && self.skipped_workloads.is_empty()
    }

    /// For `export`: one note per workload with executables written without content.
    /// (`diff` sums these up in its own note.)
    pub fn without_content_notes(&self) -> impl fmt::Display + '_ {
        WithoutContent(&self.without_content)
    }
}

struct WithoutContent<'a>(&'a [(String, PathBytes)]);

impl fmt::Display for WithoutContent<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for group in self.0.chunk_by(|a, b| a.0 == b.0) {
            let shown: Vec<String> = group
                .iter()
                .take(WITHOUT_CONTENT_SHOWN)
                .map(|(_, path)| path.to_string())
                .collect();
            let more = match group.len().saturating_sub(WITHOUT_CONTENT_SHOWN) {
                0 => String::new(),
                n => format!(" and {n} more"),
            };
            writeln!(
                f,
                "note: `{}`: {} executable(s) exported by path only, any content allowed \
                 (learning could not read what ran; fix: learn again while they run, or \
                 add their \"sha256\" by hand): {}{more}",
                escape_bytes(group[0].0.as_bytes()),
                group.len(),
                shown.join(", ")
            )?;
        }
        Ok(())
    }
}

impl fmt::Display for ExportReport {
    /// One line per skipped item, ready for stderr; nothing when the report is empty.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if !self.skipped_executables.is_empty() {
            writeln!(
                f,
                "{} executable(s) not exported because they cannot be allowlisted:",
                self.skipped_executables.len()
            )?;
        }
        for skipped in &self.skipped_executables {
            writeln!(
                f,
                "  {}: {} ({}; executed {} time(s))",
                escape_bytes(skipped.workload.as_bytes()),
                skipped.path,
                skipped.reason,
                skipped.count
            )?;
        }
        for skipped in &self.skipped_workloads {
            let name = escape_bytes(skipped.name.as_bytes());
            writeln!(f, "workload `{name}` not exported: {}", skipped.reason)?;
        }
        Ok(())
    }
}

impl ProfileSet {
    /// Profiles for everything learned, in `mode`, without stats.
    pub fn from_learned(learned: &[LearnedWorkload], mode: Mode) -> (ProfileSet, ExportReport) {
        ProfileSet::from_learned_with(
            learned,
            ExportOptions {
                mode,
                ..ExportOptions::default()
            },
        )
    }

    /// Profiles for everything learned, with the given options.
    pub fn from_learned_with(
        learned: &[LearnedWorkload],
        options: ExportOptions,
    ) -> (ProfileSet, ExportReport) {
        let mut set = ProfileSet::new();
        let mut report = ExportReport::default();
        for workload in learned {
            let left_out = host_only_reason(&workload.id).filter(|_| !options.include_host);
            let profile = match left_out {
                Some(reason) => Err(format!("{reason}; --include-host exports it")),
                None => profile_for(&mut set, workload, options),
            };
            match profile {
                Ok(profile) => add_executables(profile, workload, &mut report),
                Err(reason) => report.skipped_workloads.push(SkippedWorkload {
                    name: workload.name.clone(),
                    id: workload.id.clone(),
                    reason,
                }),
            }
        }
        (set, report)
    }
}

/// Why a workload is the host's own rather than a service, if it is: a profile for
/// it would lock an administrator, not a workload. The root cgroup's profile governs
/// only what runs in the root cgroup itself (an admin shell, init); a login session
/// (`session-N.scope`) gets a new scope, and so a new name, at every login, so its
/// profile would bind a later, unrelated login that reuses the number.
pub fn host_only_reason(id: &WorkloadId) -> Option<&'static str> {
    match id {
        WorkloadId::Cgroup { path } if path == "/" => Some(
            "the root cgroup holds the host's own processes (init, admin shells), not a workload",
        ),
        WorkloadId::SystemdUnit { unit } if is_login_session(unit) => {
            Some("an interactive login session: every login gets a new session scope")
        }
        _ => None,
    }
}

/// `session-<id>.scope`, or a user manager's `user@<uid>.service/session-<id>.scope`.
fn is_login_session(unit: &str) -> bool {
    let leaf = unit.rsplit('/').next().unwrap_or(unit);
    leaf.strip_prefix("session-")
        .and_then(|rest| rest.strip_suffix(".scope"))
        .is_some_and(|id| !id.is_empty() && id.bytes().all(|b| b.is_ascii_alphanumeric()))
}

/// The profile that `workload`'s executables go into: new, or the one already made for
/// the same name and id (learning may report a workload in several pieces); or why
/// there can be none.
fn profile_for<'s>(
    set: &'s mut ProfileSet,
    workload: &LearnedWorkload,
    options: ExportOptions,
) -> Result<&'s mut Profile, String> {
    if workload.name.is_empty() {
        return Err("it has an empty name".to_owned());
    }
    let matcher = WorkloadMatch::Exact(workload.id.clone());
    let profile = set
        .profiles
        .entry(workload.name.clone())
        .or_insert_with(|| {
            let mut profile = Profile::new(workload.name.clone(), matcher.clone(), options.mode);
            profile.stats = options.with_stats.then(Stats::default);
            profile
        });
    if profile.matcher != matcher {
        return Err(format!(
            "its name is already used by another workload ({}); it is {matcher}",
            profile.matcher
        ));
    }
    Ok(profile)
}

fn add_executables(profile: &mut Profile, workload: &LearnedWorkload, report: &mut ExportReport) {
    for learned in &workload.executables {
        match allowlistable(learned) {
            Ok(path) => {
                // `stats` is `Some` exactly when the options asked for stats.
                if let Some(stats) = profile.stats.as_mut() {
                    record_stats(stats, &path, learned);
                }
                if learned.sha256.is_empty() {
                    let path_only = (workload.name.clone(), PathBytes::new(learned.path.clone()));
                    report.without_content.push(path_only);
                } else {
                    let digests = profile.content.entry(path.clone()).or_default();
                    digests.extend(learned.sha256.iter().copied());
                }
                profile.executables.insert(path);
            }
            Err(reason) => report.skipped_executables.push(SkippedExecutable {
                workload: workload.name.clone(),
                path: PathBytes::new(learned.path.clone()),
                reason,
                count: learned.count,
            }),
        }
    }
}

fn allowlistable(learned: &LearnedExecutable) -> Result<ExecPath, SkipReason> {
    if learned.path_flags != 0 {
        return Err(SkipReason::Flags(learned.path_flags));
    }
    ExecPath::new(learned.path.clone()).map_err(SkipReason::NotCanonical)
}

fn record_stats(stats: &mut Stats, path: &ExecPath, learned: &LearnedExecutable) {
    let seen = ExecStats {
        count: learned.count,
        first_seen_ms: learned.first_seen_ms,
        last_seen_ms: learned.last_seen_ms,
    };
    stats.record(path.clone(), seen);
}
