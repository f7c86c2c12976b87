//! `make bench-diff`: load and diff two directories of 10,000 profiles with 30
//! executables each, B being A with a few changes, and print how long each step takes.
//!
//! The target is under one second for load + diff of both directories in a
//! release build. The directories are generated first (not timed; set FP_BENCH_DIR to
//! keep them); each measurement is repeated and the best and median runs are printed,
//! since a shared 2-core machine adds noise that only ever makes a run slower.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use fingerprint::diff::diff;
use fingerprint::profile::{ExecPath, Mode, Profile, ProfileSet, WorkloadMatch};
use fingerprint::workload::WorkloadId;

const WORKLOADS: usize = 10_000;
const EXECUTABLES: usize = 30;
const RUNS: usize = 5;

/// A Kubernetes container, the common case at scale, with realistic name lengths.
fn workload(index: usize) -> (String, WorkloadMatch) {
    let pod_uid = format!("{index:08x}-1f2e-4d3c-8b4a-{:012x}", index * 7919);
    let container_id = format!("{:064x}", index as u128 * 0x9e37_79b9_7f4a_7c15);
    let id = WorkloadId::KubernetesContainer {
        qos: "burstable".into(),
        pod_uid: pod_uid.clone(),
        runtime: Some("containerd".into()),
        container_id: container_id.clone(),
    };
    (
        format!("kubernetes/burstable/pod{pod_uid}/{container_id}"),
        WorkloadMatch::Exact(id),
    )
}

fn executable(workload: usize, index: usize) -> ExecPath {
    let path = match index % 3 {
        0 => format!("/usr/bin/tool-{index:02}"),
        1 => format!("/usr/lib/app-{}/bin/worker-{index:02}", workload % 50),
        _ => format!("/opt/vendor/service-{workload}/libexec/helper-{index:02}"),
    };
    ExecPath::new(path).expect("generated paths are canonical")
}

fn set_a() -> ProfileSet {
    let mut set = ProfileSet::new();
    for w in 0..WORKLOADS {
        let (name, matcher) = workload(w);
        let mut profile = Profile::new(name, matcher, Mode::Audit);
        profile.executables = (0..EXECUTABLES).map(|e| executable(w, e)).collect();
        set.insert(profile);
    }
    set
}

/// A with a few changes: executables added and removed, a mode change, one workload
/// removed and one added.
fn set_b(a: &ProfileSet) -> ProfileSet {
    let mut b = a.clone();
    for w in [10, 2_000, 7_777] {
        let mut profile = b.remove(&workload(w).0).expect("exists");
        profile.executables.insert(executable(w, 99));
        profile.executables.remove(&executable(w, 3));
        b.insert(profile);
    }
    let mut enforced = b.remove(&workload(42).0).expect("exists");
    enforced.mode = Mode::Enforce;
    b.insert(enforced);
    b.remove(&workload(500).0).expect("exists");
    let (name, matcher) = workload(WORKLOADS);
    let mut added = Profile::new(name, matcher, Mode::Audit);
    added.executables.insert(executable(WORKLOADS, 0));
    b.insert(added);
    b
}

fn timed<T>(work: impl FnOnce() -> T) -> (T, Duration) {
    let start = Instant::now();
    let value = work();
    (value, start.elapsed())
}

struct Run {
    load_a: Duration,
    load_b: Duration,
    diff: Duration,
    render: Duration,
}

impl Run {
    fn total(&self) -> Duration {
        self.load_a + self.load_b + self.diff
    }
}

fn measure(dir_a: &Path, dir_b: &Path) -> Run {
    let (a, load_a) = timed(|| ProfileSet::load(dir_a).expect("load A"));
    let (b, load_b) = timed(|| ProfileSet::load(dir_b).expect("load B"));
    let (d, diff_time) = timed(|| diff(&a, &b));
    let (text, render) = timed(|| (d.render_text(false), d.to_json()));
    assert_eq!(d.workloads.len(), 6, "unexpected diff:\n{}", text.0);
    Run {
        load_a,
        load_b,
        diff: diff_time,
        render,
    }
}

fn ms(duration: Duration) -> String {
    format!("{:8.1} ms", duration.as_secs_f64() * 1e3)
}

fn main() {
    // FP_BENCH_DIR keeps the generated directories for inspection or profiling; a
    // second run into it is quick because unchanged profiles are not rewritten.
    let scratch = tempfile::tempdir().expect("temp dir");
    let root = std::env::var_os("FP_BENCH_DIR")
        .map_or_else(|| scratch.path().to_path_buf(), PathBuf::from);
    let (dir_a, dir_b) = (root.join("a"), root.join("b"));
    let (a, generate) = timed(set_a);
    let b = set_b(&a);
    let ((), write) = timed(|| {
        a.write_dir(&dir_a).expect("write A");
        b.write_dir(&dir_b).expect("write B");
    });
    let bytes: u64 = std::fs::read_dir(&dir_a)
        .expect("list")
        .map(|e| e.expect("entry").metadata().expect("stat").len())
        .sum();
    println!(
        "bench-diff: {WORKLOADS} profiles x {EXECUTABLES} executables per side ({:.1} MB per side); generated in {}, written in {}",
        bytes as f64 / 1e6,
        ms(generate).trim(),
        ms(write).trim()
    );

    // Wall-clock figures on a shared machine only make sense next to its load.
    if let Ok(load) = std::fs::read_to_string("/proc/loadavg") {
        let cores = std::thread::available_parallelism().map_or(1, usize::from);
        println!("machine: {cores} core(s), load average {}", load.trim());
    }
    let ((), diff_alone) = timed(|| {
        for _ in 0..RUNS {
            std::hint::black_box(diff(&a, &b));
        }
    });
    let mut runs: Vec<Run> = (0..RUNS).map(|_| measure(&dir_a, &dir_b)).collect();
    runs.sort_by_key(Run::total);
    println!(
        "{:>8} {:>11} {:>11} {:>11} {:>11} {:>14}",
        "run", "load A", "load B", "diff", "total", "render+json"
    );
    for (label, run) in [("best", &runs[0]), ("median", &runs[RUNS / 2])] {
        println!(
            "{label:>8} {} {} {} {} {:>14}",
            ms(run.load_a),
            ms(run.load_b),
            ms(run.diff),
            ms(run.total()),
            ms(run.render)
        );
    }
    println!(
        "diff alone (in memory, mean of {RUNS}): {}",
        ms(diff_alone / RUNS as u32).trim()
    );
    let verdict = if runs[RUNS / 2].total() < Duration::from_secs(1) {
        "PASS"
    } else {
        "FAIL"
    };
    println!(
        "{verdict}: median load + diff total {} (target < 1000 ms)",
        ms(runs[RUNS / 2].total()).trim()
    );
}
