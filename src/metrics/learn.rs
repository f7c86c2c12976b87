//! The metrics of `learn`: the kernel's counters read at scrape time, and the
//! executables recorded, which only user space knows.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::DescriptorEncoder;
use prometheus_client::registry::Registry;

use super::{encode_counter, encode_map_memory};
use crate::bpf::readback::{LearnCounters, MapHandles};

#[derive(Debug, Default)]
pub struct LearnMetrics {
    recorded: AtomicU64,
}

impl LearnMetrics {
    /// The registry to serve for a learning program whose maps are `maps`.
    pub fn new(maps: MapHandles) -> (Registry, Arc<LearnMetrics>) {
        let metrics = Arc::new(LearnMetrics::default());
        let mut registry = super::registry();
        registry.register_collector(Box::new(LearnCollector {
            maps,
            metrics: Arc::clone(&metrics),
        }));
        (registry, metrics)
    }

    /// Executed files recorded so far (the recorder's running total).
    pub fn recorded(&self, total: u64) {
        self.recorded.store(total, Ordering::Relaxed);
    }
}

#[derive(Debug)]
struct LearnCollector {
    maps: MapHandles,
    metrics: Arc<LearnMetrics>,
}

impl Collector for LearnCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let e = &mut encoder;
        let counters = self.maps.get("fp_counters");
        if let Some(c) = counters.and_then(|m| LearnCounters::read(m).ok()) {
            encode_counter(
                e,
                "learn_exec_events",
                "Exec events seen in learned cgroups.",
                c.events,
            )?;
            encode_counter(
                e,
                "learn_events_dropped",
                "Exec events lost because the ring buffer was full (the profile may miss them).",
                c.dropped,
            )?;
        }
        encode_counter(
            e,
            "learn_executables_recorded",
            "Executed files recorded into the database (a script counts with its interpreter).",
            self.metrics.recorded.load(Ordering::Relaxed),
        )?;
        encode_map_memory(e, &self.maps)
    }
}
