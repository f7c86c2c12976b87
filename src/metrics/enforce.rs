//! The metrics of `enforce`: the kernel's counters and bindings read at scrape time,
//! and what only user space knows: violations by workload, reason and action (as
//! reported), reloads, allowlist entries.
//!
//! The `workload` label is bounded: every loaded profile's workload has a series,
//! and so do the first `OTHER_WORKLOADS` workloads without a profile (denied by
//! `--default deny`); violations of any further workload are counted under `other`.

use std::collections::HashSet;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeLabelSet};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::registry::Registry;

use super::{encode_counter, encode_gauge, encode_map_memory};
use crate::bpf::abi::PENDING_PROFILE;
use crate::bpf::readback::{self, EnforceCounters, MapHandles};

/// Workloads without a profile that get a `workload` series of their own.
pub const OTHER_WORKLOADS: usize = 100;
/// The `workload` label of violations past that cap.
pub const OTHER: &str = "other";

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ViolationLabels {
    workload: String,
    reason: &'static str,
    action: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReloadLabels {
    result: &'static str,
}

#[derive(Debug)]
pub struct EnforceMetrics {
    violations: Family<ViolationLabels, Counter>,
    reloads: Family<ReloadLabels, Counter>,
    workloads: Mutex<WorkloadLabels>,
    allowlist_entries: Arc<AtomicU64>,
}

impl EnforceMetrics {
    /// The registry to serve for an enforcement whose maps are `maps`.
    pub fn new(maps: MapHandles) -> (Registry, Arc<EnforceMetrics>) {
        let metrics = Arc::new(EnforceMetrics {
            violations: Family::default(),
            reloads: Family::default(),
            workloads: Mutex::new(WorkloadLabels::default()),
            allowlist_entries: Arc::new(AtomicU64::new(0)),
        });
        let mut registry = super::registry();
        registry.register(
            "enforce_violations",
            "Violations reported, by workload (bounded, see docs/metrics.md), reason and action",
            metrics.violations.clone(),
        );
        registry.register(
            "enforce_reloads",
            "Profile reloads (SIGHUP), by result: ok, or failed (the previous profiles stay)",
            metrics.reloads.clone(),
        );
        registry.register_collector(Box::new(KernelCollector {
            maps,
            allowlist_entries: Arc::clone(&metrics.allowlist_entries),
        }));
        (registry, metrics)
    }

    /// The profiles now loaded (at start and after each reload) and their entries.
    pub fn loaded<'a>(&self, profiles: impl IntoIterator<Item = &'a str>, entries: usize) {
        self.allowlist_entries
            .store(entries as u64, Ordering::Relaxed);
        if let Ok(mut workloads) = self.workloads.lock() {
            workloads.profiles = profiles.into_iter().map(str::to_owned).collect();
        }
    }

    /// One violation reported.
    /// Count `count` violations of one workload, reason and action.
    pub fn violations(
        &self,
        workload: &str,
        reason: &'static str,
        action: &'static str,
        count: u64,
    ) {
        let workload = match self.workloads.lock() {
            Ok(mut workloads) => workloads.label(workload),
            Err(_) => OTHER.to_owned(),
        };
        self.violations
            .get_or_create(&ViolationLabels {
                workload,
                reason,
                action,
            })
            .inc_by(count);
    }

    pub fn reload(&self, ok: bool) {
        let result = if ok { "ok" } else { "failed" };
        self.reloads.get_or_create(&ReloadLabels { result }).inc();
    }
}

/// Which workloads get a series of their own (see the module docs). Series once
/// made are kept: a counter must not vanish while the process runs.
#[derive(Debug, Default)]
struct WorkloadLabels {
    profiles: HashSet<String>,
    others: HashSet<String>,
}

impl WorkloadLabels {
    fn label(&mut self, workload: &str) -> String {
        if self.profiles.contains(workload) || self.others.contains(workload) {
            return workload.to_owned();
        }
        if self.others.len() < OTHER_WORKLOADS {
            self.others.insert(workload.to_owned());
            return workload.to_owned();
        }
        OTHER.to_owned()
    }
}

/// What the kernel counts, read at each scrape as `status` reads it.
#[derive(Debug)]
struct KernelCollector {
    maps: MapHandles,
    allowlist_entries: Arc<AtomicU64>,
}

impl Collector for KernelCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let e = &mut encoder;
        // A map that cannot be read leaves its metrics out of this scrape, rather
        // than failing the whole scrape.
        let counters = self.maps.get("fp_enforce_counters");
        if let Some(c) = counters.and_then(|m| EnforceCounters::read(m).ok()) {
            encode_counter(
                e,
                "enforce_execs_checked",
                "Execs checked against a profile.",
                c.checks,
            )?;
            encode_counter(
                e,
                "enforce_execs_violating",
                "Execs not allowed by their profile, as the kernel counted them (reported or not).",
                c.violations,
            )?;
            encode_counter(
                e,
                "enforce_events_dropped",
                "Violation events lost because the ring buffer was full (decisions still enforced).",
                c.dropped,
            )?;
            encode_counter(
                e,
                "enforce_cgroups_bound_at_creation",
                "Cgroups the kernel bound to a profile inside mkdir.",
                c.bound_at_mkdir,
            )?;
            encode_counter(
                e,
                "enforce_execs_held",
                "First execs held in a new container cgroup until it was named.",
                c.held,
            )?;
        }
        if let Some(bindings) = self
            .maps
            .get("fp_bindings")
            .and_then(|m| readback::bindings(m).ok())
        {
            let pending = bindings
                .iter()
                .filter(|(_, profile)| *profile == PENDING_PROFILE)
                .count();
            encode_gauge(
                e,
                "enforce_cgroups_bound",
                "Cgroups bound to a profile (or to deny-all).",
                (bindings.len() - pending) as u64,
            )?;
            encode_gauge(
                e,
                "enforce_cgroups_pending",
                "New container cgroups held unclassified until named.",
                pending as u64,
            )?;
        }
        if let Some(profiles) = self.maps.get("fp_profiles") {
            encode_gauge(
                e,
                "enforce_profiles_loaded",
                "Profiles loaded in the kernel.",
                readback::count(profiles) as u64,
            )?;
        }
        encode_gauge(
            e,
            "enforce_allowlist_entries",
            "Allowlist entries loaded for all profiles.",
            self.allowlist_entries.load(Ordering::Relaxed),
        )?;
        encode_map_memory(e, &self.maps)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn workload_label_is_capped_except_for_profiles() {
        let mut labels = WorkloadLabels::default();
        labels.profiles.insert("web".into());
        for i in 0..OTHER_WORKLOADS {
            assert_eq!(labels.label(&format!("w{i}")), format!("w{i}"));
        }
        assert_eq!(labels.label("one-too-many"), OTHER);
        assert_eq!(labels.label("w0"), "w0", "admitted names keep their series");
        assert_eq!(labels.label("web"), "web", "profiles always have their own");
    }
}
