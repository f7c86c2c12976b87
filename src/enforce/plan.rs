//! From profiles to what the enforcement maps hold: a stable id per profile, its
//! sorted digests placed in the shared allowlist array, its patterns, and the rules
//! that bind new cgroups. Pure code, so sizing and layout are unit-tested without
//! root, and every limit is checked before anything is attached.

use std::collections::{BTreeMap, HashMap};

use crate::bpf::abi::fp_mode;
pub use crate::bpf::abi::{MapSizes, RuleKind, MAX_PATTERNS, PATH_MAX, PATTERN_MAX};
use crate::digest::{digest, Digest, DigestKey};
pub use crate::profile::Mode;
use crate::workload::{cgroup_path, WorkloadId};

/// One profile as enforcement needs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PolicyInput {
    pub name: String,
    /// Where the profile came from, for error messages.
    pub file: String,
    pub workload: Option<WorkloadId>,
    pub mode: Mode,
    /// Whether its tasks must stay in its cgroups (`cgroup_moves: deny`).
    pub keep_cgroup: bool,
    pub executables: Vec<Vec<u8>>,
    pub patterns: Vec<Vec<u8>>,
}

/// A profile's mode as the kernel reads it (`enum fp_mode`).
impl From<Mode> for fp_mode {
    fn from(mode: Mode) -> fp_mode {
        match mode {
            Mode::Audit => fp_mode::FP_MODE_AUDIT,
            Mode::Enforce => fp_mode::FP_MODE_ENFORCE,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlannedProfile {
    pub id: u32,
    pub name: String,
    pub mode: Mode,
    pub keep_cgroup: bool,
    pub digests: Vec<Digest>,
    pub patterns: Vec<Vec<u8>>,
    pub rules: Vec<(RuleKind, Vec<u8>)>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PlanError {
    #[error(
        "{file}: profile {name:?} has {count} patterns; at most {MAX_PATTERNS} are \
         enforced per profile: list paths exactly, or merge patterns"
    )]
    TooManyPatterns {
        file: String,
        name: String,
        count: usize,
    },
    #[error(
        "{file}: profile {name:?}: pattern {pattern:?} is {len} bytes; at most {} bytes \
         are enforced",
        PATTERN_MAX - 1
    )]
    PatternTooLong {
        file: String,
        name: String,
        pattern: String,
        len: usize,
    },
    #[error("{file}: profile {name:?}: {path:?} is not an absolute path of at most {} bytes", PATH_MAX - 1)]
    BadPath {
        file: String,
        name: String,
        path: String,
    },
    #[error("profile {name:?} is defined twice: in {first} and in {second}")]
    Duplicate {
        name: String,
        first: String,
        second: String,
    },
    #[error(
        "the profiles need {needed} allowlist entries but the map holds {capacity}; \
         restart enforcement (it sizes the map from the profiles) or pass a larger \
         --allow-capacity"
    )]
    AllowlistFull { needed: usize, capacity: u32 },
}

/// Profile ids stay stable for a name across reloads, and across a takeover of
/// pinned enforcement (events already in the carried-over ring buffer name
/// profiles by id).
#[derive(Debug, Default, Clone)]
pub struct ProfileIds {
    ids: HashMap<String, u32>,
    next: u32,
}

impl ProfileIds {
    /// Continue the ids an earlier enforcement assigned.
    pub fn resume(ids: BTreeMap<String, u32>) -> ProfileIds {
        let next = ids.values().copied().max().unwrap_or(0);
        ProfileIds {
            ids: ids.into_iter().collect(),
            next,
        }
    }

    /// Every name ever given an id, by id.
    pub fn assigned(&self) -> BTreeMap<String, u32> {
        self.ids.iter().map(|(n, id)| (n.clone(), *id)).collect()
    }

    pub fn id(&mut self, name: &str) -> u32 {
        if let Some(id) = self.ids.get(name) {
            return *id;
        }
        self.next += 1;
        self.ids.insert(name.to_owned(), self.next);
        self.next
    }
}

/// Validate and digest every profile, in name order.
pub fn plan(
    inputs: &[PolicyInput],
    key: &DigestKey,
    ids: &mut ProfileIds,
) -> Result<Vec<PlannedProfile>, PlanError> {
    let mut by_name: BTreeMap<&str, &PolicyInput> = BTreeMap::new();
    for input in inputs {
        if let Some(first) = by_name.insert(&input.name, input) {
            return Err(PlanError::Duplicate {
                name: input.name.clone(),
                first: first.file.clone(),
                second: input.file.clone(),
            });
        }
    }
    by_name
        .into_values()
        .map(|input| plan_one(input, key, ids))
        .collect()
}

fn plan_one(
    input: &PolicyInput,
    key: &DigestKey,
    ids: &mut ProfileIds,
) -> Result<PlannedProfile, PlanError> {
    if input.patterns.len() > MAX_PATTERNS {
        return Err(PlanError::TooManyPatterns {
            file: input.file.clone(),
            name: input.name.clone(),
            count: input.patterns.len(),
        });
    }
    for pattern in &input.patterns {
        if pattern.len() >= PATTERN_MAX {
            return Err(PlanError::PatternTooLong {
                file: input.file.clone(),
                name: input.name.clone(),
                pattern: String::from_utf8_lossy(pattern).into_owned(),
                len: pattern.len(),
            });
        }
    }
    for path in &input.executables {
        if path.first() != Some(&b'/') || path.len() >= PATH_MAX {
            return Err(PlanError::BadPath {
                file: input.file.clone(),
                name: input.name.clone(),
                path: String::from_utf8_lossy(path).into_owned(),
            });
        }
    }
    let mut digests: Vec<Digest> = input.executables.iter().map(|p| digest(key, p)).collect();
    digests.sort_unstable();
    digests.dedup();
    Ok(PlannedProfile {
        id: ids.id(&input.name),
        name: input.name.clone(),
        mode: input.mode,
        keep_cgroup: input.keep_cgroup,
        digests,
        patterns: input.patterns.clone(),
        rules: input
            .workload
            .as_ref()
            .map(binding_rules)
            .unwrap_or_default(),
    })
}

/// How a new cgroup of this workload is recognised at creation, in the kernel.
/// Containers get new ids per instance and are bound by user space when seen.
pub fn binding_rules(workload: &WorkloadId) -> Vec<(RuleKind, Vec<u8>)> {
    match workload {
        WorkloadId::Cgroup { path } => {
            vec![(RuleKind::Path, cgroup_path::to_bytes(path).into_owned())]
        }
        WorkloadId::SystemdUnit { unit } if !unit.contains('/') => {
            vec![(RuleKind::Leaf, unit.as_bytes().to_vec())]
        }
        _ => Vec::new(),
    }
}

/// Map sizes for a set of profiles, with room to reload them. The sizes are plain
/// data of the BPF layer; how big they must be is this module's knowledge.
impl MapSizes {
    /// Room for the profiles plus a reload that replaces a quarter of them (at least
    /// 1024 entries); `allow_capacity` overrides the allowlist size.
    pub fn for_profiles(
        profiles: &[PlannedProfile],
        allow_capacity: Option<u32>,
        bindings: u32,
    ) -> MapSizes {
        let entries: usize = profiles.iter().map(|p| p.digests.len()).sum();
        let patterns: usize = profiles.iter().map(|p| p.patterns.len()).sum();
        let rules: usize = profiles.iter().map(|p| p.rules.len()).sum();
        let headroom = |n: usize, min: usize| (n + (n / 4).max(min)).min(u32::MAX as usize) as u32;
        MapSizes {
            profiles: headroom(profiles.len(), 64),
            allow: allow_capacity.unwrap_or_else(|| headroom(entries, 1024)),
            // Patterns are written under a fresh index range on reload: twice the room.
            patterns: headroom(2 * patterns.max(1), 64),
            rules: headroom(rules, 64),
            bindings,
        }
    }
}

/// Regions of the shared allowlist array. A region freed by a reload is reused only
/// after the next reload, so no exec still searching it can see it rewritten.
#[derive(Debug, Clone)]
pub struct AllowLayout {
    capacity: u32,
    free: Vec<(u32, u32)>,
    quarantined: Vec<(u32, u32)>,
}

impl AllowLayout {
    pub fn new(capacity: u32) -> AllowLayout {
        AllowLayout {
            capacity,
            free: vec![(0, capacity)],
            quarantined: Vec::new(),
        }
    }

    pub fn capacity(&self) -> u32 {
        self.capacity
    }

    /// First fit; None when no free region is large enough.
    pub fn allocate(&mut self, len: u32) -> Option<u32> {
        let slot = self.free.iter().position(|&(_, size)| size >= len)?;
        let (offset, size) = self.free[slot];
        if size == len {
            self.free.remove(slot);
        } else {
            self.free[slot] = (offset + len, size - len);
        }
        Some(offset)
    }

    /// Give a region back; usable after the next `end_reload`.
    pub fn release(&mut self, offset: u32, len: u32) {
        if len > 0 {
            self.quarantined.push((offset, len));
        }
    }

    /// Regions released before this reload become free; neighbours merge.
    pub fn end_reload(&mut self) {
        self.free.append(&mut self.quarantined);
        self.free.sort_unstable();
        let mut merged: Vec<(u32, u32)> = Vec::with_capacity(self.free.len());
        for (offset, len) in self.free.drain(..) {
            match merged.last_mut() {
                Some((o, l)) if *o + *l == offset => *l += len,
                _ => merged.push((offset, len)),
            }
        }
        self.free = merged;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn input(name: &str, exes: &[&str]) -> PolicyInput {
        PolicyInput {
            name: name.into(),
            file: format!("profiles/{name}.json"),
            workload: Some(WorkloadId::Cgroup {
                path: format!("/{name}"),
            }),
            mode: Mode::Enforce,
            keep_cgroup: false,
            executables: exes.iter().map(|e| e.as_bytes().to_vec()).collect(),
            patterns: Vec::new(),
        }
    }

    #[test]
    fn digests_are_sorted_and_deduplicated() {
        let key = DigestKey([7, 9]);
        let planned = plan(
            &[input("a", &["/usr/bin/b", "/usr/bin/a", "/usr/bin/b"])],
            &key,
            &mut ProfileIds::default(),
        )
        .unwrap();
        let digests = &planned[0].digests;
        assert_eq!(digests.len(), 2);
        assert!(digests.windows(2).all(|w| w[0] < w[1]));
        assert_eq!(planned[0].rules, vec![(RuleKind::Path, b"/a".to_vec())]);
    }

    #[test]
    fn ids_are_stable_across_reloads() {
        let key = DigestKey([1, 1]);
        let mut ids = ProfileIds::default();
        let first = plan(&[input("b", &[]), input("a", &[])], &key, &mut ids).unwrap();
        let second = plan(&[input("c", &[]), input("b", &[])], &key, &mut ids).unwrap();
        let id_of = |plan: &[PlannedProfile], name: &str| {
            plan.iter().find(|p| p.name == name).map(|p| p.id)
        };
        assert_eq!(id_of(&first, "b"), id_of(&second, "b"));
        assert_ne!(id_of(&second, "c"), id_of(&first, "a"));
    }

    #[test]
    fn limits_are_checked_with_the_source_named() {
        let key = DigestKey([1, 1]);
        let mut bad = input("x", &["relative/path"]);
        let err = plan(&[bad.clone()], &key, &mut ProfileIds::default()).unwrap_err();
        assert!(err.to_string().contains("profiles/x.json"), "{err}");
        bad.executables.clear();
        bad.patterns = vec![b"/a/*".to_vec(); MAX_PATTERNS + 1];
        assert!(matches!(
            plan(&[bad], &key, &mut ProfileIds::default()),
            Err(PlanError::TooManyPatterns { .. })
        ));
        let dup = plan(
            &[input("d", &[]), input("d", &[])],
            &key,
            &mut ProfileIds::default(),
        );
        assert!(matches!(dup, Err(PlanError::Duplicate { .. })));
    }

    #[test]
    fn released_regions_are_reused_only_after_the_next_reload() {
        let mut layout = AllowLayout::new(10);
        assert_eq!(layout.allocate(4), Some(0));
        assert_eq!(layout.allocate(4), Some(4));
        layout.release(0, 4);
        assert_eq!(
            layout.allocate(4),
            None,
            "quarantined until the reload ends"
        );
        layout.end_reload();
        assert_eq!(layout.allocate(4), Some(0));
        layout.release(0, 4);
        layout.release(4, 4);
        layout.end_reload();
        assert_eq!(
            layout.allocate(10),
            Some(0),
            "neighbours merge back into one region"
        );
    }

    #[test]
    fn map_sizes_follow_the_profiles() {
        let key = DigestKey([1, 1]);
        let many: Vec<String> = (0..4000).map(|i| format!("/bin/{i}")).collect();
        let refs: Vec<&str> = many.iter().map(String::as_str).collect();
        let planned = plan(&[input("a", &refs)], &key, &mut ProfileIds::default()).unwrap();
        let sizes = MapSizes::for_profiles(&planned, None, 100);
        assert_eq!(sizes.allow, 4000 + 1024);
        assert_eq!(sizes.profiles, 65);
        assert_eq!(MapSizes::for_profiles(&planned, Some(9), 100).allow, 9);
    }

    #[test]
    fn resumed_ids_keep_their_names_and_new_names_get_fresh_ids() {
        let mut first = ProfileIds::default();
        let (a, b) = (first.id("a"), first.id("b"));
        let mut resumed = ProfileIds::resume(first.assigned());
        assert_eq!((resumed.id("b"), resumed.id("a")), (b, a));
        let c = resumed.id("c");
        assert!(c != a && c != b, "a new name reuses no carried id");
        assert_eq!(resumed.assigned().len(), 3);
    }
}
