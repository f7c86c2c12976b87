//! What the enforcement maps hold, and how a new set of profiles replaces it with no
//! moment where a workload is unprotected or wrongly denied: new digests and patterns
//! are written beside the old ones, then one descriptor update per profile switches
//! over; every allocation is checked before the first switch.

use std::collections::{BTreeMap, HashSet};

use anyhow::Result;

use super::plan::{AllowLayout, PlanError, PlannedProfile, RuleKind, MAX_PATTERNS};
use crate::bpf::enforce::{EnforceProbe, ProfileDescriptor};
use crate::digest::{digest, Digest, DigestKey};

#[derive(Debug, Clone)]
struct Loaded {
    planned: PlannedProfile,
    desc: ProfileDescriptor,
    rules: Vec<(RuleKind, Digest)>,
}

/// What an apply changed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ApplyReport {
    pub added: Vec<String>,
    pub changed: Vec<String>,
    pub removed: Vec<String>,
    pub unchanged: usize,
}

pub struct MapState {
    key: DigestKey,
    layout: AllowLayout,
    loaded: BTreeMap<String, Loaded>,
}

impl MapState {
    pub fn new(key: DigestKey, allow_capacity: u32) -> MapState {
        MapState {
            key,
            layout: AllowLayout::new(allow_capacity),
            loaded: BTreeMap::new(),
        }
    }

    pub fn profile_name(&self, id: u32) -> Option<&str> {
        self.loaded
            .values()
            .find(|l| l.planned.id == id)
            .map(|l| l.planned.name.as_str())
    }

    pub fn profile_id(&self, name: &str) -> Option<u32> {
        self.loaded.get(name).map(|l| l.planned.id)
    }

    pub fn profiles(&self) -> usize {
        self.loaded.len()
    }

    pub fn entries(&self) -> usize {
        self.loaded.values().map(|l| l.planned.digests.len()).sum()
    }

    /// Make the maps hold exactly `planned`.
    pub fn apply(
        &mut self,
        probe: &EnforceProbe,
        planned: Vec<PlannedProfile>,
    ) -> Result<ApplyReport> {
        let mut report = ApplyReport::default();
        let wanted: HashSet<String> = planned.iter().map(|p| p.name.clone()).collect();
        let mut work = Vec::new();
        for profile in planned {
            match self.loaded.get(&profile.name) {
                Some(old) if old.planned == profile => report.unchanged += 1,
                Some(_) => {
                    report.changed.push(profile.name.clone());
                    work.push(profile);
                }
                None => {
                    report.added.push(profile.name.clone());
                    work.push(profile);
                }
            }
        }
        let offsets = self.allocate_all(&work)?;
        self.switch(probe, work, offsets)?;
        report.removed = self.remove_missing(probe, &wanted)?;
        self.layout.end_reload();
        Ok(report)
    }

    /// Reserve every region first, so a reload that does not fit changes nothing.
    fn allocate_all(&mut self, work: &[PlannedProfile]) -> Result<Vec<u32>, PlanError> {
        let mut trial = self.layout.clone();
        let mut offsets = Vec::with_capacity(work.len());
        for profile in work {
            let len = profile.digests.len() as u32;
            match trial.allocate(len) {
                Some(offset) => offsets.push(offset),
                None => {
                    return Err(PlanError::AllowlistFull {
                        needed: self.entries()
                            + work.iter().map(|p| p.digests.len()).sum::<usize>(),
                        capacity: self.layout.capacity(),
                    })
                }
            }
        }
        self.layout = trial;
        Ok(offsets)
    }

    /// Write each profile beside its old version, then switch each with one descriptor
    /// update. Each step covers all profiles at once: the digests (stores into the
    /// mapped array), then one batched update of the descriptors, then one of the
    /// rules; so a profile's digests are in place before its descriptor points at
    /// them, and loading costs a few system calls whatever the number of profiles.
    fn switch(
        &mut self,
        probe: &EnforceProbe,
        work: Vec<PlannedProfile>,
        offsets: Vec<u32>,
    ) -> Result<()> {
        let runs: Vec<(u32, &[Digest])> = offsets
            .iter()
            .zip(&work)
            .map(|(offset, profile)| (*offset, profile.digests.as_slice()))
            .collect();
        probe.write_digests(&runs)?;
        let mut descs = Vec::with_capacity(work.len());
        for (profile, offset) in work.iter().zip(offsets) {
            let pattern_base = match self.loaded.get(&profile.name) {
                Some(old) if old.desc.pattern_base == 0 => MAX_PATTERNS as u32,
                _ => 0,
            };
            for (i, pattern) in profile.patterns.iter().enumerate() {
                probe.write_pattern(profile.id, pattern_base + i as u32, pattern)?;
            }
            let desc = ProfileDescriptor {
                allow_offset: offset,
                allow_count: profile.digests.len() as u32,
                pattern_base,
                pattern_count: profile.patterns.len() as u32,
                mode: profile.mode.into(),
                keep_cgroup: profile.keep_cgroup,
            };
            descs.push((profile.id, desc));
        }
        probe.write_profiles(&descs)?;
        let rules: Vec<Vec<(RuleKind, Digest)>> = work
            .iter()
            .map(|profile| {
                profile
                    .rules
                    .iter()
                    .map(|(kind, name)| (*kind, digest(&self.key, name)))
                    .collect()
            })
            .collect();
        let writes: Vec<(RuleKind, Digest, u32)> = work
            .iter()
            .zip(&rules)
            .flat_map(|(profile, rules)| rules.iter().map(|(kind, d)| (*kind, *d, profile.id)))
            .collect();
        probe.write_rules(&writes)?;
        // A rule that moved from one profile to another is written, not retired.
        let written: HashSet<(RuleKind, Digest)> =
            writes.iter().map(|(kind, d, _)| (*kind, *d)).collect();
        for ((profile, (_, desc)), rules) in work.into_iter().zip(descs).zip(rules) {
            if let Some(old) = self.loaded.remove(&profile.name) {
                self.retire_parts(probe, &old, &written)?;
            }
            self.loaded.insert(
                profile.name.clone(),
                Loaded {
                    planned: profile,
                    desc,
                    rules,
                },
            );
        }
        Ok(())
    }

    /// Free what an old version used and the new one does not.
    fn retire_parts(
        &mut self,
        probe: &EnforceProbe,
        old: &Loaded,
        keep_rules: &HashSet<(RuleKind, Digest)>,
    ) -> Result<()> {
        for i in 0..old.desc.pattern_count {
            probe.delete_pattern(old.planned.id, old.desc.pattern_base + i)?;
        }
        for rule in &old.rules {
            if !keep_rules.contains(rule) {
                probe.delete_rule(rule.0, rule.1)?;
            }
        }
        self.layout
            .release(old.desc.allow_offset, old.desc.allow_count);
        Ok(())
    }

    /// Remove profiles no longer wanted: unbind their cgroups first, so a cgroup is
    /// never bound to a profile that is gone.
    fn remove_missing(
        &mut self,
        probe: &EnforceProbe,
        wanted: &HashSet<String>,
    ) -> Result<Vec<String>> {
        let gone: Vec<String> = self
            .loaded
            .keys()
            .filter(|name| !wanted.contains(*name))
            .cloned()
            .collect();
        if gone.is_empty() {
            return Ok(gone);
        }
        let ids: HashSet<u32> = gone.iter().filter_map(|n| self.profile_id(n)).collect();
        for (cgroup, profile) in probe.bindings()? {
            if ids.contains(&profile) {
                probe.unbind(cgroup)?;
            }
        }
        let removed: Vec<Loaded> = gone.iter().filter_map(|n| self.loaded.remove(n)).collect();
        // Rules the remaining profiles use stay, even where a removed one had them.
        let kept: HashSet<(RuleKind, Digest)> = self
            .loaded
            .values()
            .flat_map(|l| l.rules.iter().copied())
            .collect();
        for old in &removed {
            probe.delete_profile(old.planned.id)?;
            self.retire_parts(probe, old, &kept)?;
        }
        Ok(gone)
    }
}
