//! What user space reads back from the programs' maps, whether it loaded them itself
//! or found them pinned by an earlier enforcement: the per-CPU counters (summed over
//! CPUs, indexed by the generated `enum fp_counter` / `enum fp_enforce_counter`) and
//! the cgroup bindings, the maps' kernel memory. One reader each, so a loaded and a
//! pinned map (or one read by the metrics thread) are never read two ways.

use libbpf_rs::{MapCore, MapFlags, MapHandle, Object};

use super::abi::{fp_counter, fp_enforce_counter};
use super::BpfError;

/// Exec counters kept by the learning program.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LearnCounters {
    pub events: u64,
    pub dropped: u64,
}

impl LearnCounters {
    /// Read from an `fp_counters` map.
    pub fn read(map: &dyn MapCore) -> Result<LearnCounters, BpfError> {
        let read = |counter: fp_counter| sum_percpu(map, counter.0, "fp_counters");
        Ok(LearnCounters {
            events: read(fp_counter::FP_COUNTER_EVENTS)?,
            dropped: read(fp_counter::FP_COUNTER_DROPPED)?,
        })
    }
}

/// Counters kept by the enforcement programs.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct EnforceCounters {
    pub checks: u64,
    pub violations: u64,
    pub dropped: u64,
    pub bound_at_mkdir: u64,
    /// Execs held in a new container cgroup until user space named it.
    pub held: u64,
    /// Cgroup moves out of a workload refused (or audited) by the move guard; also
    /// counted in `violations`.
    pub cgroup_moves: u64,
    /// Violations only counted (a violation of the same kind was sent within the
    /// fold window): reported as repeats.
    pub folded: u64,
}

impl EnforceCounters {
    /// Read from an `fp_enforce_counters` map, ours or a pinned one.
    pub fn read(map: &dyn MapCore) -> Result<EnforceCounters, BpfError> {
        let read = |counter: fp_enforce_counter| sum_percpu(map, counter.0, "fp_enforce_counters");
        Ok(EnforceCounters {
            checks: read(fp_enforce_counter::FP_ENFORCE_CHECKS)?,
            violations: read(fp_enforce_counter::FP_ENFORCE_VIOLATIONS)?,
            dropped: read(fp_enforce_counter::FP_ENFORCE_DROPPED)?,
            bound_at_mkdir: read(fp_enforce_counter::FP_ENFORCE_BOUND)?,
            held: read(fp_enforce_counter::FP_ENFORCE_HELD)?,
            cgroup_moves: read(fp_enforce_counter::FP_ENFORCE_MOVES)?,
            folded: read(fp_enforce_counter::FP_ENFORCE_FOLDED)?,
        })
    }
}

/// Every (cgroup id, profile id) entry of an `fp_bindings` map (ours, or a pinned one).
pub fn bindings(map: &dyn MapCore) -> Result<Vec<(u64, u32)>, BpfError> {
    let mut out = Vec::new();
    for key in map.keys() {
        let Some(value) = map.lookup(&key, MapFlags::ANY).map_err(|e| BpfError::Map {
            map: "fp_bindings",
            reason: e.to_string(),
        })?
        else {
            continue; // removed while we iterated
        };
        let cgroup = u64::from_ne_bytes(key.as_slice().try_into().unwrap_or_default());
        let profile = u32::from_ne_bytes(value.as_slice().try_into().unwrap_or_default());
        out.push((cgroup, profile));
    }
    Ok(out)
}

/// How many entries a hash map holds (e.g. profiles loaded).
pub fn count(map: &dyn MapCore) -> usize {
    map.keys().count()
}

/// A loaded object's maps, each through a handle of its own (a duplicated fd): the
/// metrics thread reads them with the readers above while the loader goes on using
/// its skeleton, which cannot cross threads.
#[derive(Debug)]
pub struct MapHandles(Vec<(String, MapHandle)>);

impl MapHandles {
    pub fn of(object: &Object) -> Result<MapHandles, BpfError> {
        let handles = object
            .maps()
            .map(|map| {
                let name = map.name().to_string_lossy().into_owned();
                MapHandle::try_from(&map)
                    .map(|handle| (name, handle))
                    .map_err(|e| BpfError::Map {
                        map: "metrics handles",
                        reason: e.to_string(),
                    })
            })
            .collect::<Result<_, _>>()?;
        Ok(MapHandles(handles))
    }

    pub fn get(&self, name: &str) -> Option<&MapHandle> {
        self.0.iter().find(|(n, _)| n == name).map(|(_, h)| h)
    }

    /// Kernel memory charged to each map (`memlock` in its fdinfo), by map name;
    /// maps whose fdinfo has no figure (older kernels) are left out.
    pub fn memory(&self) -> Vec<(&str, u64)> {
        self.0
            .iter()
            .filter_map(|(name, map)| Some((name.as_str(), map.query_fdinfo().ok()?.memlock?)))
            .collect()
    }
}

/// The sum over CPUs of entry `index` (a u64) of a per-CPU array.
fn sum_percpu(map: &dyn MapCore, index: u32, name: &'static str) -> Result<u64, BpfError> {
    let per_cpu = map
        .lookup_percpu(&index.to_ne_bytes(), MapFlags::ANY)
        .map_err(|e| BpfError::Map {
            map: name,
            reason: e.to_string(),
        })?
        .unwrap_or_default();
    Ok(per_cpu
        .iter()
        .filter_map(|v| v.get(..8).and_then(|b| b.try_into().ok()))
        .map(u64::from_ne_bytes)
        .sum())
}
