//! Profiles, as enforcement needs them: read with the profile module (so enforcement
//! accepts exactly what review and diff accept) and reduced to paths and patterns.

use std::path::Path;

use anyhow::{Context, Result};

use super::plan::PolicyInput;
use crate::profile::{ProfileSet, WorkloadMatch};

pub fn load_inputs(path: &Path) -> Result<Vec<PolicyInput>> {
    let set = ProfileSet::load(path)
        .with_context(|| format!("loading profiles from {}", path.display()))?;
    Ok(inputs_of(&set, path))
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
            executables: p
                .executables
                .iter()
                .map(|e| e.as_bytes().to_vec())
                .collect(),
            patterns: p.patterns.iter().map(|e| e.as_bytes().to_vec()).collect(),
        })
        .collect()
}
