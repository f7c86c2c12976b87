//! `fingerprint diff A B`: what changed between two sets of profiles.
//!
//! Each side is a learn database, a profile file or a directory of profiles
//! ([`load_side`]). [`diff`] compares them per workload: workloads added and removed,
//! executables and patterns added and removed, changes of mode or of how the workload
//! is matched. An executable that B lists but one of A's patterns already allows is
//! still shown, marked as covered, but it does not count as added for
//! [`Diff::has_added`]: it widens nothing, and `--fail-on added` must not fail a CI
//! run because a versioned directory moved inside a pattern written for exactly that.
//! An executable present on both sides whose content digests differ is a content
//! change; it counts as added when B allows content that A did not (a new digest, or
//! no digest at all where A had some), unless a pattern of A allows the path anyway.
//! Output is a human summary ([`Diff::render_text`]) or stable JSON ([`Diff::to_json`]),
//! both documented in docs/profile-format.md.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::{self, Write as _};
use std::path::Path;

use serde_json::{json, Value};

use crate::content::Sha256;
use crate::profile::{
    escape_bytes, match_to_json, CgroupMoves, ExecPath, ExportReport, Mode, PathBytes, Pattern,
    Profile, ProfileError, ProfileSet, WorkloadMatch,
};
use crate::storage::{is_database_file, Database, StorageError};

/// Version of the JSON document that [`Diff::to_json`] produces.
pub const DIFF_SCHEMA_VERSION: u64 = 1;

#[derive(Debug, thiserror::Error)]
pub enum DiffError {
    #[error(transparent)]
    Profile(#[from] ProfileError),
    #[error(transparent)]
    Storage(#[from] StorageError),
}

/// Load one side of a diff: a database (recognised by its SQLite header, whatever its
/// name), a profile file, or a directory of profiles. A database is exported as
/// profiles in audit mode; use [`load_side_reported`] to also learn which executables
/// that export had to leave out, and tell the user.
pub fn load_side(path: &Path) -> Result<ProfileSet, DiffError> {
    load_side_reported(path).map(|(set, _)| set)
}

/// Like [`load_side`], plus the export report when the side is a database (an empty
/// report for profile files and directories).
pub fn load_side_reported(path: &Path) -> Result<(ProfileSet, ExportReport), DiffError> {
    if !is_database_file(path) {
        return Ok((ProfileSet::load(path)?, ExportReport::default()));
    }
    let learned = Database::open_read_only(path)?.learned_workloads()?;
    Ok(ProfileSet::from_learned(&learned, Mode::Audit))
}

/// Whether a workload exists only in B, only in A, or in both with differences.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    Added,
    Removed,
    Changed,
}

impl Status {
    fn as_str(self) -> &'static str {
        match self {
            Status::Added => "added",
            Status::Removed => "removed",
            Status::Changed => "changed",
        }
    }
}

/// A value before (A) and after (B); `None` where the workload does not exist.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Change<T> {
    pub from: Option<T>,
    pub to: Option<T>,
}

/// An executable that B lists and A does not.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AddedExecutable {
    pub path: ExecPath,
    /// A's pattern that already allows this path, if any.
    pub covered_by: Option<Pattern>,
}

/// An executable on both sides whose content digests differ. `None` is path-only: any
/// content (a schema-1 profile, or content never hashed).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContentChange {
    pub path: ExecPath,
    pub from: Option<BTreeSet<Sha256>>,
    pub to: Option<BTreeSet<Sha256>>,
    /// A's pattern that allows this path with any content, if any.
    pub covered_by: Option<Pattern>,
}

impl ContentChange {
    /// Digests B lists and A does not (all of B's when A was path-only).
    pub fn added(&self) -> Vec<Sha256> {
        only_in(self.to.as_ref(), self.from.as_ref()).collect()
    }

    pub fn removed(&self) -> Vec<Sha256> {
        only_in(self.from.as_ref(), self.to.as_ref()).collect()
    }

    /// Whether B allows content that A did not: a new digest, or any content where A
    /// was pinned. Going from path-only to pinned narrows, and widens nothing.
    pub fn widens(&self) -> bool {
        self.covered_by.is_none()
            && match (&self.from, &self.to) {
                (None, _) => false,
                (Some(_), None) => true,
                (Some(from), Some(to)) => !to.is_subset(from),
            }
    }
}

/// Everything that differs for one workload. Sets are sorted by their bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WorkloadDiff {
    pub name: String,
    pub status: Status,
    pub mode: Option<Change<Mode>>,
    /// Whether its tasks may leave its cgroups, as enforced (written or default).
    pub cgroup_moves: Option<Change<CgroupMoves>>,
    pub matcher: Option<Change<WorkloadMatch>>,
    pub executables_added: Vec<AddedExecutable>,
    pub executables_removed: Vec<ExecPath>,
    pub content_changed: Vec<ContentChange>,
    pub patterns_added: Vec<Pattern>,
    pub patterns_removed: Vec<Pattern>,
}

impl WorkloadDiff {
    /// Whether B allows something that A did not (see the module doc on patterns).
    pub fn has_added(&self) -> bool {
        self.status == Status::Added
            || !self.patterns_added.is_empty()
            || self.content_changed.iter().any(ContentChange::widens)
            || self
                .executables_added
                .iter()
                .any(|added| added.covered_by.is_none())
    }

    fn covered_count(&self) -> usize {
        self.executables_added
            .iter()
            .filter(|added| added.covered_by.is_some())
            .count()
    }
}

/// The differences from A to B, one entry per differing workload, in name order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Diff {
    pub workloads: Vec<WorkloadDiff>,
}

/// Totals over a [`Diff`], for the summary line and the JSON `summary` object.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Summary {
    pub workloads_added: usize,
    pub workloads_removed: usize,
    pub workloads_changed: usize,
    pub executables_added: usize,
    pub executables_covered: usize,
    pub executables_removed: usize,
    pub content_changes: usize,
    pub patterns_added: usize,
    pub patterns_removed: usize,
    pub mode_changes: usize,
    pub match_changes: usize,
}

/// Compare A (before) with B (after).
pub fn diff(a: &ProfileSet, b: &ProfileSet) -> Diff {
    let names: BTreeSet<&String> = a.profiles().keys().chain(b.profiles().keys()).collect();
    let workloads = names
        .into_iter()
        .filter_map(|name| diff_workload(name, a.get(name), b.get(name)))
        .collect();
    Diff { workloads }
}

fn diff_workload(name: &str, a: Option<&Profile>, b: Option<&Profile>) -> Option<WorkloadDiff> {
    let status = match (a, b) {
        (None, None) => return None,
        (None, Some(_)) => Status::Added,
        (Some(_), None) => Status::Removed,
        // Most workloads do not change; one linear comparison settles those.
        (Some(a), Some(b)) if same_allowlist(a, b) => return None,
        (Some(_), Some(_)) => Status::Changed,
    };
    let executables_after = b.map(|p| &p.executables);
    let workload = WorkloadDiff {
        name: name.to_owned(),
        status,
        mode: change(a.map(|p| &p.mode), b.map(|p| &p.mode)),
        cgroup_moves: change(
            a.map(|p| p.cgroup_moves()).as_ref(),
            b.map(|p| p.cgroup_moves()).as_ref(),
        ),
        matcher: change(a.map(|p| &p.matcher), b.map(|p| &p.matcher)),
        executables_added: only_in(executables_after, a.map(|p| &p.executables))
            .map(|path| AddedExecutable {
                covered_by: a.and_then(|p| p.covering_pattern(path.as_bytes())).cloned(),
                path,
            })
            .collect(),
        executables_removed: only_in(a.map(|p| &p.executables), executables_after).collect(),
        content_changed: a.zip(b).map(content_changes).unwrap_or_default(),
        patterns_added: only_in(b.map(|p| &p.patterns), a.map(|p| &p.patterns)).collect(),
        patterns_removed: only_in(a.map(|p| &p.patterns), b.map(|p| &p.patterns)).collect(),
    };
    Some(workload)
}

/// Equal in everything a diff reports (stats are volatile and not compared).
fn same_allowlist(a: &Profile, b: &Profile) -> bool {
    a.mode == b.mode
        && a.cgroup_moves() == b.cgroup_moves()
        && a.matcher == b.matcher
        && a.executables == b.executables
        && a.content == b.content
        && a.patterns == b.patterns
}

/// Executables on both sides whose digests differ, in path order.
fn content_changes((a, b): (&Profile, &Profile)) -> Vec<ContentChange> {
    a.executables
        .intersection(&b.executables)
        .filter_map(|path| {
            let (from, to) = (a.content.get(path), b.content.get(path));
            (from != to).then(|| ContentChange {
                path: path.clone(),
                from: from.cloned(),
                to: to.cloned(),
                covered_by: a.covering_pattern(path.as_bytes()).cloned(),
            })
        })
        .collect()
}

/// Elements of `left` that `right` lacks, cloned, in order; a missing side (`None`: the
/// workload does not exist there) counts as empty.
fn only_in<'s, T: Ord + Clone>(
    left: Option<&'s BTreeSet<T>>,
    right: Option<&'s BTreeSet<T>>,
) -> impl Iterator<Item = T> + 's {
    left.into_iter()
        .flatten()
        .filter(move |item| !right.is_some_and(|set| set.contains(*item)))
        .cloned()
}

/// Clones only when the values differ, which at scale is the rare case.
fn change<T: PartialEq + Clone>(from: Option<&T>, to: Option<&T>) -> Option<Change<T>> {
    (from != to).then(|| Change {
        from: from.cloned(),
        to: to.cloned(),
    })
}

impl Diff {
    /// No differences at all (exit status 0).
    pub fn is_empty(&self) -> bool {
        self.workloads.is_empty()
    }

    /// B allows something A did not: a new workload, a new pattern, or a new executable
    /// that no pattern of A covers. What `--fail-on added` gates on.
    pub fn has_added(&self) -> bool {
        self.workloads.iter().any(WorkloadDiff::has_added)
    }

    pub fn summary(&self) -> Summary {
        let mut summary = Summary::default();
        for workload in &self.workloads {
            match workload.status {
                Status::Added => summary.workloads_added += 1,
                Status::Removed => summary.workloads_removed += 1,
                Status::Changed => summary.workloads_changed += 1,
            }
            summary.executables_added += workload.executables_added.len();
            summary.executables_covered += workload.covered_count();
            summary.executables_removed += workload.executables_removed.len();
            summary.content_changes += workload.content_changed.len();
            summary.patterns_added += workload.patterns_added.len();
            summary.patterns_removed += workload.patterns_removed.len();
            let changed = workload.status == Status::Changed;
            summary.mode_changes += usize::from(changed && workload.mode.is_some());
            summary.match_changes += usize::from(changed && workload.matcher.is_some());
        }
        summary
    }

    /// Human-readable report: a header per workload, `+`/`-` lines under it, and a
    /// summary line. `color` adds ANSI colours (green added, red removed); the caller
    /// decides, typically "stdout is a terminal and NO_COLOR is unset".
    pub fn render_text(&self, color: bool) -> String {
        let paint = Painter { color };
        let mut out = String::new();
        for workload in &self.workloads {
            render_workload(&mut out, workload, paint);
        }
        if !self.is_empty() {
            out.push('\n');
        }
        out.push_str(&self.summary().to_string());
        out.push('\n');
        out
    }

    /// Machine-readable report, documented in docs/profile-format.md. Keys are written
    /// in alphabetical order so the output is the same whether or not serde_json keeps
    /// insertion order (its `preserve_order` feature may be enabled by another crate).
    pub fn to_json(&self) -> Value {
        let summary = self.summary();
        json!({
            "has_added": self.has_added(),
            "schema": DIFF_SCHEMA_VERSION,
            "summary": {
                "executables_added": summary.executables_added,
                "executables_covered": summary.executables_covered,
                "executables_content_changed": summary.content_changes,
                "executables_removed": summary.executables_removed,
                "match_changes": summary.match_changes,
                "mode_changes": summary.mode_changes,
                "patterns_added": summary.patterns_added,
                "patterns_removed": summary.patterns_removed,
                "workloads_added": summary.workloads_added,
                "workloads_changed": summary.workloads_changed,
                "workloads_removed": summary.workloads_removed,
            },
            "workloads": self.workloads.iter().map(workload_json).collect::<Vec<_>>(),
        })
    }
}

impl fmt::Display for Summary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let differing = self.workloads_added + self.workloads_removed + self.workloads_changed;
        if differing == 0 {
            return f.write_str("no differences");
        }
        write!(
            f,
            "{differing} workload(s) differ ({} added, {} removed, {} changed); executables: +{} -{}",
            self.workloads_added,
            self.workloads_removed,
            self.workloads_changed,
            self.executables_added,
            self.executables_removed
        )?;
        if self.executables_covered > 0 {
            write!(
                f,
                " ({} of the added covered by a pattern)",
                self.executables_covered
            )?;
        }
        if self.content_changes > 0 {
            write!(f, "; content changes: {}", self.content_changes)?;
        }
        write!(
            f,
            "; patterns: +{} -{}; mode changes: {}; match changes: {}",
            self.patterns_added, self.patterns_removed, self.mode_changes, self.match_changes
        )
    }
}

/// ANSI styling that is a no-op when colour is off.
#[derive(Clone, Copy)]
struct Painter {
    color: bool,
}

impl Painter {
    const GREEN: &'static str = "32";
    const RED: &'static str = "31";
    const YELLOW: &'static str = "33";
    const BOLD: &'static str = "1";

    fn line(self, out: &mut String, style: &str, text: fmt::Arguments<'_>) {
        // Writing to a String cannot fail.
        let _ = if self.color {
            writeln!(out, "\x1b[{style}m{text}\x1b[0m")
        } else {
            writeln!(out, "{text}")
        };
    }
}

fn render_workload(out: &mut String, workload: &WorkloadDiff, paint: Painter) {
    let name = escape_bytes(workload.name.as_bytes());
    let header = match (workload.status, &workload.mode, &workload.matcher) {
        (
            Status::Added,
            Some(Change { to: Some(mode), .. }),
            Some(Change {
                to: Some(matcher), ..
            }),
        ) => {
            format!("workload {name} (added: {matcher}, mode {mode})")
        }
        (
            Status::Removed,
            Some(Change {
                from: Some(mode), ..
            }),
            Some(Change {
                from: Some(matcher),
                ..
            }),
        ) => {
            format!("workload {name} (removed: {matcher}, mode {mode})")
        }
        _ => format!("workload {name}"),
    };
    paint.line(out, Painter::BOLD, format_args!("{header}"));
    if workload.status == Status::Changed {
        render_changes(out, workload, paint);
    }
    for added in &workload.executables_added {
        match &added.covered_by {
            None => paint.line(out, Painter::GREEN, format_args!("  + {}", added.path)),
            Some(pattern) => paint.line(
                out,
                Painter::GREEN,
                format_args!("  + {} (covered by pattern {pattern})", added.path),
            ),
        }
    }
    for removed in &workload.executables_removed {
        paint.line(out, Painter::RED, format_args!("  - {removed}"));
    }
    for change in &workload.content_changed {
        render_content_change(out, change, paint);
    }
    for pattern in &workload.patterns_added {
        paint.line(out, Painter::GREEN, format_args!("  + pattern {pattern}"));
    }
    for pattern in &workload.patterns_removed {
        paint.line(out, Painter::RED, format_args!("  - pattern {pattern}"));
    }
}

/// Mode and match lines; only for workloads present on both sides (an added or
/// removed workload states its mode and match in its header instead).
fn render_changes(out: &mut String, workload: &WorkloadDiff, paint: Painter) {
    if let Some(Change {
        from: Some(from),
        to: Some(to),
    }) = &workload.mode
    {
        paint.line(
            out,
            Painter::YELLOW,
            format_args!("  ~ mode {from} -> {to}"),
        );
    }
    if let Some(Change {
        from: Some(from),
        to: Some(to),
    }) = &workload.cgroup_moves
    {
        paint.line(
            out,
            Painter::YELLOW,
            format_args!("  ~ cgroup moves {from} -> {to}"),
        );
    }
    if let Some(Change {
        from: Some(from),
        to: Some(to),
    }) = &workload.matcher
    {
        paint.line(
            out,
            Painter::YELLOW,
            format_args!("  ~ match {from} -> {to}"),
        );
    }
}

/// `~ PATH: content changed`, then the digests added and removed.
fn render_content_change(out: &mut String, change: &ContentChange, paint: Painter) {
    let note = match (&change.from, &change.to, &change.covered_by) {
        (_, _, Some(pattern)) => format!(" (covered by pattern {pattern})"),
        (None, _, None) => " (was path-only: any content)".to_owned(),
        (_, None, None) => " (now path-only: any content)".to_owned(),
        _ => String::new(),
    };
    let path = &change.path;
    paint.line(
        out,
        Painter::YELLOW,
        format_args!("  ~ {path}: content changed{note}"),
    );
    for digest in change.added() {
        paint.line(out, Painter::GREEN, format_args!("      + sha256 {digest}"));
    }
    for digest in change.removed() {
        paint.line(out, Painter::RED, format_args!("      - sha256 {digest}"));
    }
}

fn content_change_json(change: &ContentChange) -> Value {
    let digests = |set: Option<&BTreeSet<Sha256>>| set.map(|s| json!(s));
    json!({
        "from": digests(change.from.as_ref()),
        "path": change.path.path_bytes().to_json(),
        "pattern": change.covered_by.as_ref().map(|p| p.path_bytes().to_json()),
        "sha256_added": change.added(),
        "sha256_removed": change.removed(),
        "to": digests(change.to.as_ref()),
    })
}

fn workload_json(workload: &WorkloadDiff) -> Value {
    let covered: Vec<Value> = workload
        .executables_added
        .iter()
        .filter_map(|added| {
            let pattern = added.covered_by.as_ref()?;
            Some(json!({ "path": added.path.path_bytes().to_json(), "pattern": pattern.path_bytes().to_json() }))
        })
        .collect();
    json!({
        "executables": {
            "added": json_paths(workload.executables_added.iter().map(|added| added.path.path_bytes())),
            "content_changed": workload.content_changed.iter().map(content_change_json).collect::<Vec<_>>(),
            "covered": covered,
            "removed": json_paths(workload.executables_removed.iter().map(ExecPath::path_bytes)),
        },
        "cgroup_moves": workload.cgroup_moves.as_ref().map(|change| change_json(change, |moves| json!(moves.as_str()))),
        "match": workload.matcher.as_ref().map(|change| change_json(change, |m| sorted_keys(match_to_json(m)))),
        "mode": workload.mode.as_ref().map(|change| change_json(change, |mode| json!(mode.as_str()))),
        "name": workload.name,
        "patterns": {
            "added": json_paths(workload.patterns_added.iter().map(Pattern::path_bytes)),
            "removed": json_paths(workload.patterns_removed.iter().map(Pattern::path_bytes)),
        },
        "status": workload.status.as_str(),
    })
}

/// The same object with its keys in alphabetical order, whatever order serde_json
/// keeps (see [`Diff::to_json`]).
fn sorted_keys(value: Value) -> Value {
    match value {
        Value::Object(map) => Value::Object(
            map.into_iter()
                .collect::<BTreeMap<_, _>>()
                .into_iter()
                .collect(),
        ),
        other => other,
    }
}

/// Paths as in profile files: a string, or `{"hex": ...}` when not UTF-8.
fn json_paths<'a>(paths: impl Iterator<Item = &'a PathBytes>) -> Value {
    Value::Array(paths.map(PathBytes::to_json).collect())
}

fn change_json<T>(change: &Change<T>, value: impl Fn(&T) -> Value) -> Value {
    json!({
        "from": change.from.as_ref().map(&value),
        "to": change.to.as_ref().map(&value),
    })
}

#[cfg(test)]
mod tests {
    use std::fs;

    use proptest::prelude::*;

    use super::*;
    use crate::profile::testing::*;
    use crate::workload::WorkloadId;

    /// A reviewed profile directory (A) and what a new learn run plus edits produced (B):
    /// every kind of difference, a path covered by a pattern, a non-UTF-8 path and a
    /// path holding a newline.
    fn before_and_after() -> (ProfileSet, ProfileSet) {
        let mut web_after = profile("web", Mode::Audit, &["/srv/web/run"], &[]);
        web_after.matcher = WorkloadMatch::CgroupPattern(pattern("/kubepods.slice/*/web-*.scope"));
        let mut nginx_after = profile(
            "nginx.service",
            Mode::Enforce,
            &[
                "/usr/sbin/nginx",
                "/usr/bin/logrotate",
                "/usr/bin/curl",
                "/opt/app-2.0/bin/server",
            ],
            &["/opt/app-*/bin/server", "/var/lib/*/hook"],
        );
        nginx_after
            .executables
            .insert(exec(b"/tmp/\xff\n+ /bin/sh"));
        let a = set_of([
            profile(
                "nginx.service",
                Mode::Audit,
                &["/usr/sbin/nginx", "/usr/bin/logrotate", "/usr/bin/wget"],
                &["/opt/app-*/bin/server"],
            ),
            profile("old.service", Mode::Enforce, &["/usr/bin/old"], &[]),
            profile("same.service", Mode::Audit, &["/bin/true"], &[]),
            profile("web", Mode::Audit, &["/srv/web/run"], &["/srv/*/run"]),
        ]);
        let b = set_of([
            nginx_after,
            profile("new.service", Mode::Audit, &["/usr/bin/new"], &[]),
            profile("same.service", Mode::Audit, &["/bin/true"], &[]),
            web_after,
        ]);
        (a, b)
    }

    #[test]
    fn text_output_matches_golden() {
        let (a, b) = before_and_after();
        assert_golden("diff/diff.txt", diff(&a, &b).render_text(false).as_bytes());
        assert_golden(
            "diff/diff-color.txt",
            diff(&a, &b).render_text(true).as_bytes(),
        );
    }

    #[test]
    fn json_output_matches_golden() {
        let (a, b) = before_and_after();
        let mut json = serde_json::to_string_pretty(&diff(&a, &b).to_json()).expect("json");
        json.push('\n');
        assert_golden("diff/diff.json", json.as_bytes());
    }

    /// A pinned profile (A) and B where one executable gained a digest, one lost its
    /// digests (path-only), one was pinned for the first time, and one covered by a
    /// pattern of A changed content.
    fn content_before_and_after() -> (ProfileSet, ProfileSet) {
        let pin = |profile: &mut Profile, path: &str, versions: &[&str]| {
            let digests = versions.iter().map(|v| Sha256::of(v.as_bytes())).collect();
            profile.content.insert(exec(path.as_bytes()), digests);
        };
        let paths = [
            "/usr/bin/app",
            "/usr/bin/helper",
            "/usr/bin/new-pin",
            "/opt/v1/run",
        ];
        let mut a = profile("app.service", Mode::Enforce, &paths, &["/opt/*/run"]);
        pin(&mut a, "/usr/bin/app", &["app 1"]);
        pin(&mut a, "/usr/bin/helper", &["helper"]);
        pin(&mut a, "/opt/v1/run", &["run 1"]);
        let mut b = profile("app.service", Mode::Enforce, &paths, &["/opt/*/run"]);
        pin(&mut b, "/usr/bin/app", &["app 1", "app 2"]);
        pin(&mut b, "/usr/bin/new-pin", &["pinned"]);
        pin(&mut b, "/opt/v1/run", &["run 2"]);
        (set_of([a]), set_of([b]))
    }

    #[test]
    fn content_changes_match_golden_and_new_content_counts_as_added() {
        let (a, b) = content_before_and_after();
        let result = diff(&a, &b);
        assert_golden(
            "diff/diff-content.txt",
            result.render_text(false).as_bytes(),
        );
        let mut json = serde_json::to_string_pretty(&result.to_json()).expect("json");
        json.push('\n');
        assert_golden("diff/diff-content.json", json.as_bytes());
        let changes = &result.workloads[0].content_changed;
        let widening: Vec<String> = changes
            .iter()
            .filter(|c| c.widens())
            .map(|c| c.path.to_string())
            .collect();
        assert_eq!(widening, ["/usr/bin/app", "/usr/bin/helper"]);
        assert!(result.has_added());

        // Only pinning what was path-only, or content under a pattern: nothing added.
        let (a, mut b) = content_before_and_after();
        let mut narrowed = b.get("app.service").unwrap().clone();
        narrowed.content = a.get("app.service").unwrap().content.clone();
        narrowed
            .content
            .insert(exec(b"/usr/bin/new-pin"), [Sha256::of(b"x")].into());
        narrowed
            .content
            .insert(exec(b"/opt/v1/run"), [Sha256::of(b"run 2")].into());
        b.insert(narrowed);
        let result = diff(&a, &b);
        assert_eq!(result.workloads[0].content_changed.len(), 2);
        assert!(!result.has_added(), "{}", result.render_text(false));
    }

    #[test]
    fn no_differences() {
        let (a, _) = before_and_after();
        let same = diff(&a, &a);
        assert!(same.is_empty() && !same.has_added());
        assert_eq!(same.render_text(true), "no differences\n");
        assert_eq!(same.to_json()["workloads"], serde_json::json!([]));
    }

    #[test]
    fn executables_covered_by_a_pattern_are_not_added() {
        let a = set_of([profile(
            "x",
            Mode::Audit,
            &["/bin/a"],
            &["/opt/app-*/bin/server"],
        )]);
        let b = set_of([profile(
            "x",
            Mode::Audit,
            &["/bin/a", "/opt/app-3/bin/server"],
            &["/opt/app-*/bin/server"],
        )]);
        let covered = diff(&a, &b);
        assert!(!covered.is_empty(), "still shown");
        assert!(!covered.has_added(), "but allows nothing new");
        let mut c = b.clone();
        c.insert(profile(
            "x",
            Mode::Audit,
            &["/bin/a", "/opt/app-3/bin/server", "/bin/b"],
            &["/opt/app-*/bin/server"],
        ));
        assert!(diff(&a, &c).has_added());
    }

    #[test]
    fn what_counts_as_added() {
        let base = set_of([profile("x", Mode::Enforce, &["/bin/a"], &["/opt/*/a"])]);
        let variants = [
            (profile("x", Mode::Audit, &["/bin/a"], &["/opt/*/a"]), false),
            (profile("x", Mode::Enforce, &[], &["/opt/*/a"]), false),
            (profile("x", Mode::Enforce, &["/bin/a"], &[]), false),
            (
                profile("x", Mode::Enforce, &["/bin/a", "/bin/b"], &["/opt/*/a"]),
                true,
            ),
            (
                profile("x", Mode::Enforce, &["/bin/a"], &["/opt/*/a", "/opt/*/b"]),
                true,
            ),
        ];
        for (after, added) in variants {
            let after = set_of([after]);
            assert_eq!(
                diff(&base, &after).has_added(),
                added,
                "{}",
                diff(&base, &after).render_text(false)
            );
        }
        assert!(
            diff(&set_of([]), &base).has_added(),
            "a new workload is added"
        );
        assert!(
            !diff(&base, &set_of([])).has_added(),
            "a removed one is not"
        );
    }

    #[test]
    fn load_side_reads_directories_and_files() {
        let (a, _) = before_and_after();
        let dir = tempfile::tempdir().expect("tempdir");
        a.write_dir(dir.path()).expect("write");
        assert_eq!(load_side(dir.path()).expect("dir"), a);
        let one = load_side(&dir.path().join("web.json")).expect("file");
        assert_eq!(
            one.iter().map(|p| p.name.as_str()).collect::<Vec<_>>(),
            ["web"]
        );
    }

    #[test]
    fn load_side_sends_sqlite_files_to_storage() {
        let dir = tempfile::tempdir().expect("tempdir");
        let file = dir.path().join("learned.json");
        fs::write(&file, b"SQLite format 3\0 but not really a database").expect("write");
        let error = load_side(&file).expect_err("not a database");
        assert!(matches!(error, DiffError::Storage(_)), "{error}");
        let message = error.to_string();
        assert!(
            message.starts_with(&format!("database {} is corrupt", file.display())),
            "{message}"
        );
    }

    #[test]
    fn load_side_reports_profile_errors_with_position() {
        let dir = tempfile::tempdir().expect("tempdir");
        let file = dir.path().join("x.json");
        fs::write(&file, b"{\"schema\": 1,}").expect("write");
        let error = load_side(&file).expect_err("bad json").to_string();
        assert!(
            error.starts_with(&format!("{}:1:14: ", file.display())),
            "{error}"
        );
    }

    #[test]
    fn match_changes_render_every_kind() {
        let mut a = profile("k", Mode::Audit, &[], &[]);
        a.matcher = WorkloadMatch::Exact(WorkloadId::KubernetesContainer {
            qos: "besteffort".into(),
            pod_uid: "u".into(),
            runtime: None,
            container_id: "c\n1".into(),
        });
        let mut b = a.clone();
        b.matcher = WorkloadMatch::Exact(WorkloadId::Container {
            runtime: "docker".into(),
            id: "c1".into(),
        });
        let text = diff(&set_of([a]), &set_of([b])).render_text(false);
        assert!(
            text.contains("~ match kubernetes_container qos=besteffort pod_uid=u container_id=c\\x0a1 -> container runtime=docker id=c1"),
            "{text}"
        );
    }

    proptest! {
        #[test]
        fn diff_with_itself_is_empty(a in any_profile_set()) {
            prop_assert!(diff(&a, &a).is_empty());
        }

        #[test]
        fn merging_only_adds(a in mergeable_profile_set(), b in mergeable_profile_set()) {
            let merged = ProfileSet::merge(&[a.clone(), b]).expect("same names, same matches");
            for workload in diff(&a, &merged).workloads {
                prop_assert!(workload.status != Status::Removed);
                prop_assert!(workload.executables_removed.is_empty() && workload.patterns_removed.is_empty());
                prop_assert!(workload.matcher.is_none() || workload.status == Status::Added);
                let stricter_or_new = workload.status == Status::Added
                    || workload.mode.as_ref().is_none_or(|m| m.to == Some(Mode::Enforce));
                prop_assert!(stricter_or_new, "mode may only become enforce");
            }
        }

        #[test]
        fn reversing_sides_swaps_added_and_removed(a in mergeable_profile_set(), b in mergeable_profile_set()) {
            let (forward, backward) = (diff(&a, &b).summary(), diff(&b, &a).summary());
            prop_assert_eq!(forward.executables_added, backward.executables_removed);
            prop_assert_eq!(forward.patterns_added, backward.patterns_removed);
            prop_assert_eq!(forward.workloads_added, backward.workloads_removed);
            prop_assert_eq!(forward.mode_changes, backward.mode_changes);
        }

        #[test]
        fn json_paths_round_trip(a in any_profile_set(), b in any_profile_set()) {
            // Every path in the JSON output decodes back to the exact bytes.
            let d = diff(&a, &b);
            let json = d.to_json();
            for (workload, value) in d.workloads.iter().zip(json["workloads"].as_array().expect("array")) {
                let added: Vec<crate::profile::PathBytes> =
                    serde_json::from_value(value["executables"]["added"].clone()).expect("paths");
                let expected: Vec<_> = workload.executables_added.iter().map(|e| e.path.path_bytes().clone()).collect();
                prop_assert_eq!(added, expected);
            }
        }
    }
}
