//! The cgroup move guard's cost (LSM only). Its `lsm/file_open` program runs on every
//! open on the node and its `lsm/task_alloc` program on every fork; the exec figures
//! include both (an exec opens its file, the benchmark forks to exec). Here the open
//! is timed alone: open for writing and close of a regular file, with one point's
//! programs attached and with nothing, in alternating blocks (the pair's difference
//! cancels drift), plus the guard program's own run time from the kernel's accounting.

use std::fs::OpenOptions;
use std::os::fd::RawFd;
use std::path::Path;
use std::time::Instant;

use anyhow::{Context, Result};
use fingerprint::bpf::enforce::EnforceProbe;
use serde_json::{json, Value};

use super::rounds::prog_runs;
use super::rounds::Summary;
use super::support::BpfStatsSysctl;

/// Opens per block: enough that a block takes some milliseconds.
const OPENS_PER_BLOCK: u32 = 20_000;

/// Mean nanoseconds of one open for writing plus close of `file`, over a block.
fn open_block(file: &Path) -> Result<f64> {
    let started = Instant::now();
    for _ in 0..OPENS_PER_BLOCK {
        drop(
            OpenOptions::new()
                .write(true)
                .open(file)
                .context("opening for writing")?,
        );
    }
    Ok(started.elapsed().as_nanos() as f64 / f64::from(OPENS_PER_BLOCK))
}

/// `rounds` pairs of blocks, attached and detached in alternating order; then one
/// attached block under the kernel's accounting of the guard's programs.
pub fn measure(
    probe: &mut EnforceProbe,
    guard_progs: &[RawFd],
    dir: &Path,
    rounds: usize,
) -> Result<Value> {
    let file = dir.join("open-guard-target");
    std::fs::write(&file, b"").context("creating the file the guard benchmark opens")?;
    let (mut attached, mut detached, mut deltas) = (Vec::new(), Vec::new(), Vec::new());
    for round in 0..rounds {
        let mut pair = [0.0; 2];
        for attach in [round % 2 == 0, round % 2 != 0] {
            if attach {
                probe.attach_exec_hook()?;
            }
            pair[usize::from(attach)] = open_block(&file)?;
            probe.detach_exec_hook();
        }
        detached.push(pair[0]);
        attached.push(pair[1]);
        deltas.push(pair[1] - pair[0]);
    }
    probe.attach_exec_hook()?;
    let stats = BpfStatsSysctl::enable("bench-scale")?;
    let (time, runs) = prog_runs(guard_progs)?;
    open_block(&file)?;
    let (time_after, runs_after) = prog_runs(guard_progs)?;
    drop(stats);
    probe.detach_exec_hook();
    let runs = runs_after - runs;
    let per_run = (runs > 0).then(|| (time_after - time) as f64 / runs as f64);
    let (attached, detached, deltas) = (
        Summary::of(attached),
        Summary::of(detached),
        Summary::of(deltas),
    );
    eprintln!(
        "  move guard: open for writing + close {:.0} ns attached, {:.0} ns without, \
         difference {:.1} ns [{:.1}, {:.1}] (median of {rounds} paired blocks of \
         {OPENS_PER_BLOCK}); lsm/file_open {} ns per run ({runs} runs)",
        attached.median,
        detached.median,
        deltas.median,
        deltas.ci_lo,
        deltas.ci_hi,
        per_run.map_or("?".into(), |ns| format!("{ns:.1}")),
    );
    Ok(json!({
        "opens_per_block": OPENS_PER_BLOCK,
        "rounds": rounds,
        "open_write_ns_attached": attached.median,
        "open_write_ns_detached": detached.median,
        "difference_ns": {"median": deltas.median, "ci_lo": deltas.ci_lo, "ci_hi": deltas.ci_hi},
        "file_open_ns_per_run": per_run,
        "file_open_runs": runs,
    }))
}
