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

/// Startup lines about content: digests are not enforced yet (see docs/architecture.md,
/// "Executable identity (design)"), and path-only entries are the weaker kind.
pub fn content_notices(coverage: &ContentCoverage) -> Vec<String> {
    let mut lines = Vec::new();
    if coverage.pinned() > 0 {
        lines.push(format!(
            "content digests are recorded but not yet enforced: only paths are checked \
             ({} of {} executables carry digests)",
            coverage.pinned(),
            coverage.executables
        ));
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
            patterns: p.patterns.iter().map(|e| e.as_bytes().to_vec()).collect(),
        })
        .collect()
}
