//! Profiles, as enforcement needs them: read with the profile module (so enforcement
//! accepts exactly what review and diff accept) and reduced to paths and patterns.

use std::path::Path;

use anyhow::{Context, Result};

use super::plan::PolicyInput;
use crate::profile::{CgroupMoves, ContentCoverage, ProfileSet, WorkloadMatch};

/// The profiles' inputs, and how many of their executables are pinned to content.
pub fn load_inputs(path: &Path) -> Result<(Vec<PolicyInput>, ContentCoverage)> {
    let set = ProfileSet::load(path)
        .with_context(|| format!("loading profiles from {}", path.display()))?;
    Ok((inputs_of(&set, path), set.content_coverage()))
}

/// Startup lines about content: how many executables are checked by content, and
/// that path-only entries are the weaker kind. `checked`: false when content is not
/// checked (a detached enforcement has nobody to hash held execs).
pub fn content_notices(coverage: &ContentCoverage, checked: bool) -> Vec<String> {
    let mut lines = Vec::new();
    if coverage.pinned() > 0 {
        lines.push(match checked {
            true => format!(
                "{} of {} executables are pinned to content: an exec of another file under \
                 their paths is a violation (content_mismatch); the first exec of each file \
                 version is held until it is hashed",
                coverage.pinned(),
                coverage.executables
            ),
            false => format!(
                "WARNING: content digests are NOT checked while detached (nobody would hash \
                 held execs): the {} of {} executables pinned to content are checked by \
                 path only; run without --detach to check them",
                coverage.pinned(),
                coverage.executables
            ),
        });
    }
    lines.extend(
        coverage
            .path_only_note()
            .map(|note| format!("note: {note}")),
    );
    lines
}

pub fn inputs_of(set: &ProfileSet, origin: &Path) -> Vec<PolicyInput> {
    set.iter()
        .map(|p| PolicyInput {
            name: p.name.clone(),
            file: set.file_of(&p.name).unwrap_or(origin).display().to_string(),
            workload: match &p.matcher {
                WorkloadMatch::Exact(id) => Some(id.clone()),
                WorkloadMatch::CgroupPattern(_) => None,
            },
            mode: p.mode,
            keep_cgroup: p.cgroup_moves() == CgroupMoves::Deny,
            executables: p
                .executables
                .iter()
                .map(|e| e.as_bytes().to_vec())
                .collect(),
            content: p
                .content
                .iter()
                .flat_map(|(path, digests)| digests.iter().map(|d| (path.as_bytes().to_vec(), *d)))
                .collect(),
            patterns: p.patterns.iter().map(|e| e.as_bytes().to_vec()).collect(),
        })
        .collect()
}
