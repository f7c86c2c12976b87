//! Merging profile sets: what several nodes or replicas saw, combined.
//!
//! Per workload name the result allows the union of executables and of patterns, keeps
//! the union of the content digests learned for each executable (a path-only entry
//! adds none: it means "content not known", and pinning is the stricter side), and
//! takes the stricter mode (`enforce` beats `audit`), so that merging in a node's
//! recording never silently turns enforcement off. Union and max are commutative,
//! associative and idempotent, and so is the merge. Two profiles of one name must
//! agree on how the workload is matched: combining allowlists of different workloads
//! would widen both, so that is an error naming both sources.

use std::collections::BTreeMap;

use super::error::{Origin, ProfileError};
use super::{Profile, ProfileSet, Stats};

impl ProfileSet {
    /// The union of `sets`; see the module doc for the rules.
    pub fn merge(sets: &[ProfileSet]) -> Result<ProfileSet, ProfileError> {
        let mut merged = ProfileSet::new();
        let mut first_origin: BTreeMap<String, Origin> = BTreeMap::new();
        for (index, set) in sets.iter().enumerate() {
            for profile in set {
                let origin = set.origin_of(&profile.name, index);
                match merged.profiles.get_mut(&profile.name) {
                    None => {
                        first_origin.insert(profile.name.clone(), origin);
                        merged
                            .profiles
                            .insert(profile.name.clone(), profile.clone());
                    }
                    Some(target) => {
                        check_same_match(target, profile, &first_origin, origin)?;
                        merge_into(target, profile);
                    }
                }
            }
        }
        Ok(merged)
    }
}

fn check_same_match(
    target: &Profile,
    other: &Profile,
    first_origin: &BTreeMap<String, Origin>,
    origin: Origin,
) -> Result<(), ProfileError> {
    if target.matcher == other.matcher {
        return Ok(());
    }
    Err(ProfileError::MatchConflict {
        name: other.name.clone(),
        first: first_origin
            .get(&other.name)
            .cloned()
            .unwrap_or(Origin::Input(0)),
        first_match: target.matcher.to_string(),
        second: origin,
        second_match: other.matcher.to_string(),
    })
}

fn merge_into(target: &mut Profile, other: &Profile) {
    target.mode = target.mode.max(other.mode);
    if target.cgroup_moves != other.cgroup_moves {
        target.cgroup_moves = Some(target.cgroup_moves().max(other.cgroup_moves()));
    }
    target.executables.extend(other.executables.iter().cloned());
    for (path, digests) in &other.content {
        target
            .content
            .entry(path.clone())
            .or_default()
            .extend(digests.iter().copied());
    }
    target.patterns.extend(other.patterns.iter().cloned());
    target.stats = merge_stats(target.stats.take(), other.stats.as_ref());
}

/// Stats of both sides, combined per executable with [`super::ExecStats::combine`].
fn merge_stats(target: Option<Stats>, other: Option<&Stats>) -> Option<Stats> {
    let Some(other) = other else { return target };
    let mut stats = target.unwrap_or_default();
    for (path, seen) in &other.executables {
        stats.record(path.clone(), *seen);
    }
    Some(stats)
}
