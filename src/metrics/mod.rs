//! `--metrics-addr` on `learn` and `enforce`: Prometheus text at `/metrics` and a
//! health probe at `/healthz`, for the DaemonSets' scrape annotations and probes.
//!
//! Kernel-side figures are read at scrape time from the programs' own maps, with the
//! readers `status` uses (`bpf::readback`), so a scrape and `status` never disagree;
//! only what the kernel does not count (violations by workload, reloads, executables
//! recorded) is counted here. See docs/metrics.md for every metric.

pub mod enforce;
mod health;
pub mod learn;
mod server;

use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::registry::Registry;

use crate::bpf::readback::MapHandles;

pub use health::Health;
pub use server::listen;

/// Serve `registry` on `listener` and, unless `quiet`, say where on stderr (with
/// port 0, the only way to learn the port).
pub fn start(
    listener: std::net::TcpListener,
    registry: Registry,
    health: std::sync::Arc<Health>,
    quiet: bool,
) -> anyhow::Result<()> {
    let bound = server::serve(listener, registry, health)?;
    if !quiet {
        eprintln!(
            "fingerprint: metrics at http://{bound}/metrics, health at http://{bound}/healthz"
        );
    }
    Ok(())
}

/// Every metric is named `fingerprint_...`.
fn registry() -> Registry {
    Registry::with_prefix("fingerprint")
}

/// One unlabelled counter (the text encoding appends `_total`).
fn encode_counter(
    encoder: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    value: u64,
) -> Result<(), std::fmt::Error> {
    let counter = ConstCounter::new(value);
    counter.encode(encoder.encode_descriptor(name, help, None, counter.metric_type())?)
}

/// One unlabelled gauge.
fn encode_gauge(
    encoder: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    value: u64,
) -> Result<(), std::fmt::Error> {
    let gauge = ConstGauge::new(i64::try_from(value).unwrap_or(i64::MAX));
    gauge.encode(encoder.encode_descriptor(name, help, None, gauge.metric_type())?)
}

/// `fingerprint_bpf_map_memory_bytes{map}`: the kernel memory of each of the
/// program's maps (its `memlock`), one series per map the object defines.
fn encode_map_memory(
    encoder: &mut DescriptorEncoder,
    maps: &MapHandles,
) -> Result<(), std::fmt::Error> {
    let gauge = ConstGauge::new(0i64);
    let mut family = encoder.encode_descriptor(
        "bpf_map_memory_bytes",
        "Kernel memory charged to each BPF map of the program (memlock).",
        None,
        gauge.metric_type(),
    )?;
    for (map, bytes) in maps.memory() {
        let labels = [("map", map)];
        ConstGauge::new(i64::try_from(bytes).unwrap_or(i64::MAX))
            .encode(family.encode_family(&labels)?)?;
    }
    Ok(())
}
