//! `make bench-scale`: exec cost, kernel memory and loading time of enforcement for
//! 1 to 10,000 workloads, for fingerprint's design and for the per-policy design it
//! replaces, measured side by side in one run.
//!
//! For each N (default 1, 10, 100, 1000, 10000) it builds N profiles of 25 executables
//! each (15 drawn from a shared pool of system binaries, 10 per workload), then:
//!
//! - **fingerprint**: loads them through the library's real path (`plan`,
//!   `EnforceProbe::load`, `MapState::apply`, `EnforceProbe::bind`) into ONE exec
//!   program's maps;
//! - **per-policy** (`bpf/bench_per_policy.bpf.c`, benchmark only): loads N copies of a
//!   program, each with its own cgroup id and its own preallocated allowlist map, and
//!   attaches every copy to the same exec hook.
//!
//! Only the measured workload (profile 0) has a real cgroup; the N-1 others are bound
//! to cgroup ids that do not exist (2^40 + i), which costs the maps and the programs
//! exactly what real, idle workloads would. The benchmark process moves itself into the
//! measured cgroup and times fork+exec+wait of a tiny static binary that is in profile
//! 0's allowlist: the allow path, the common case. Every exec must exit 0, and
//! fingerprint's own counters must show every exec checked and none refused.
//!
//! Per point it reports: median and p99 exec time, each against the same loop with
//! nothing on the exec hook (half just before attaching, half just after detaching);
//! BPF time per exec from the kernel's accounting over a further loop of half as many
//! execs (`kernel.bpf_stats_enabled=1` only then, since it taxes every program run;
//! `run_time_ns`/`run_cnt` of every program this process holds, from
//! /proc/self/fdinfo); kernel memory (`memlock` of every map and program fd,
//! de-duplicated by id); programs and links; loading time.
//!
//! Needs root. Settings, from the environment:
//!   FP_SCALE_N            comma-separated workload counts (default 1,10,100,1000,10000)
//!   FP_SCALE_EXECS        timed execs per block (default 2000; the VM run uses fewer)
//!   FP_SCALE_MECHANISM    auto | lsm | kill (default auto: the LSM where the kernel
//!                         accepts it, else kill mode); both designs use the same hook
//!   FP_SCALE_DESIGNS      fingerprint,per-policy (default both)
//!   FP_SCALE_PP_MEM_MIB   per-policy: do not load a point whose projected kernel
//!                         memory exceeds this (default: half of MemAvailable)
//!   FP_SCALE_PP_SECONDS   per-policy: do not load a point whose projected load time
//!                         exceeds this (default 600)
//!   FP_SCALE_TARGET       the exec target to use (default: build one with cc)
//!   FP_SCALE_JSON         write results as JSON to this file ("-": stdout, and the
//!                         table goes to stderr)
//!
//! Run with `cargo bench --bench scale` (release build). A benchmark reports; it does
//! not assert timings. It exits non-zero only when it cannot measure.

#[path = "support/mod.rs"]
mod support;
use support::BpfStatsSysctl;

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write as _;
use std::mem::MaybeUninit;
use std::os::fd::BorrowedFd;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{anyhow, bail, Context, Result};
use fingerprint::bpf::enforce::{EnforceProbe, Mechanism, MechanismChoice};
use fingerprint::cgroup::CgroupV2;
use fingerprint::digest::{digest, DigestKey};
use fingerprint::enforce::maps::MapState;
use fingerprint::enforce::plan::{plan, MapSizes, Mode, PolicyInput, ProfileIds};
use fingerprint::workload::WorkloadId;
use libbpf_rs::skel::{OpenSkel, SkelBuilder};
use libbpf_rs::{Link, MapCore, MapFlags, OpenObject};
use serde_json::{json, Value};

mod per_policy_skel {
    include!(concat!(env!("OUT_DIR"), "/bench_per_policy.skel.rs"));
}
use per_policy_skel::{BenchPerPolicySkel, BenchPerPolicySkelBuilder};

/// Executables per profile, and how many of them come from the shared pool.
const PER_PROFILE: usize = 25;
/// Shared pool: what most containers and services run.
const SHARED_POOL: [&str; 15] = [
    "/usr/bin/sh",
    "/usr/bin/bash",
    "/usr/bin/dash",
    "/usr/bin/env",
    "/usr/bin/cat",
    "/usr/bin/ls",
    "/usr/bin/grep",
    "/usr/bin/sed",
    "/usr/bin/sleep",
    "/usr/bin/date",
    "/usr/bin/id",
    "/usr/bin/curl",
    "/usr/bin/python3.11",
    "/usr/sbin/nginx",
    "/usr/local/bin/tini",
];
/// Per-workload executables, under the workload's own directory.
const OWN_NAMES: [&str; 10] = [
    "server",
    "worker",
    "migrate",
    "healthcheck",
    "entrypoint.sh",
    "cron",
    "cli",
    "backup",
    "metrics",
    "exec-target", // replaced by the real target in profile 0
];
/// Fake cgroup ids start here: far above any inode number a cgroup fs hands out.
const FAKE_CGROUP_BASE: u64 = 1 << 40;
/// Execs before each timed block, not counted: page cache, lazy kernel state.
const WARMUP_EXECS: usize = 50;
/// Targets from issue 5.
const TARGET_COST_RATIO: f64 = 1.05;
const TARGET_MEMORY_BYTES: u64 = 16 << 20;
const TARGET_LOAD: Duration = Duration::from_secs(1);

fn main() -> ExitCode {
    support::bench_main(
        "bench-scale",
        "it creates a cgroup, loads BPF programs and sets kernel.bpf_stats_enabled",
        run,
    )
}

struct Config {
    ns: Vec<usize>,
    execs: usize,
    mechanism: MechanismChoice,
    fingerprint: bool,
    per_policy: bool,
    pp_mem_limit: u64,
    pp_seconds: f64,
    target: Option<PathBuf>,
    json: Option<String>,
}

impl Config {
    fn from_env() -> Result<Config> {
        let var = |name: &str| std::env::var(name).ok().filter(|v| !v.trim().is_empty());
        let ns = match var("FP_SCALE_N") {
            Some(text) => text
                .split(',')
                .map(|n| n.trim().parse::<usize>().ok().filter(|n| *n > 0))
                .collect::<Option<Vec<_>>>()
                .ok_or_else(|| anyhow!("FP_SCALE_N={text:?}: want positive numbers, a,b,c"))?,
            None => vec![1, 10, 100, 1000, 10000],
        };
        let number = |name: &str, default: f64| -> Result<f64> {
            match var(name) {
                Some(text) => text
                    .trim()
                    .parse::<f64>()
                    .ok()
                    .filter(|v| v.is_finite() && *v > 0.0)
                    .ok_or_else(|| anyhow!("{name}={text:?} is not a positive number")),
                None => Ok(default),
            }
        };
        let mechanism = match var("FP_SCALE_MECHANISM").as_deref() {
            None | Some("auto") => MechanismChoice::Auto,
            Some("lsm") => MechanismChoice::Lsm,
            Some("kill") => MechanismChoice::Kill,
            Some(other) => bail!("FP_SCALE_MECHANISM={other:?}: want auto, lsm or kill"),
        };
        let designs = var("FP_SCALE_DESIGNS").unwrap_or_else(|| "fingerprint,per-policy".into());
        let available = mem_available().unwrap_or(4 << 30);
        Ok(Config {
            ns,
            execs: number("FP_SCALE_EXECS", 2000.0)? as usize,
            mechanism,
            fingerprint: designs.contains("fingerprint"),
            per_policy: designs.contains("per-policy"),
            pp_mem_limit: (number("FP_SCALE_PP_MEM_MIB", (available / 2 / (1 << 20)) as f64)?
                * (1 << 20) as f64) as u64,
            pp_seconds: number("FP_SCALE_PP_SECONDS", 600.0)?,
            target: var("FP_SCALE_TARGET").map(PathBuf::from),
            json: var("FP_SCALE_JSON"),
        })
    }
}

impl Config {
    /// Execs timed by the kernel's accounting, after the wall-clock block.
    fn stats_execs(&self) -> usize {
        (self.execs / 2).max(100)
    }
}

fn mem_available() -> Option<u64> {
    let text = std::fs::read_to_string("/proc/meminfo").ok()?;
    let kib: u64 = text
        .lines()
        .find_map(|l| l.strip_prefix("MemAvailable:"))?
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()?;
    Some(kib * 1024)
}

fn run() -> Result<()> {
    let config = Config::from_env()?;
    fingerprint::bpf::preflight("bench-scale")?;
    raise_fd_limit();
    let machine = machine();
    let temp = tempfile::Builder::new()
        .prefix("fp-bench-scale")
        .tempdir()
        .context("creating a temporary directory")?;
    // The BPF side names the canonical file: keep our path canonical too.
    let dir = temp.path().canonicalize().context("canonical temp dir")?;
    let (target, target_desc) = exec_target(&dir, config.target.as_deref())?;
    let v2 = CgroupV2::discover().context("finding the cgroup v2 mount")?;
    let cgroup = BenchCgroup::create(&v2)?;
    // Fail now, not after minutes of loading, if the accounting cannot be turned on.
    drop(BpfStatsSysctl::enable("bench-scale")?);
    let key = DigestKey::random().context("reading random bytes for the digest key")?;
    let max_n = config.ns.iter().copied().max().unwrap_or(1);
    let inputs = policy_inputs(max_n, &target, &cgroup.relative);
    eprintln!(
        "bench-scale: N = {:?}, {} timed execs per block, target {}, cgroup {} (id {})",
        config.ns,
        config.execs,
        target_desc,
        cgroup.dir.display(),
        cgroup.id
    );

    let mut points = Vec::new();
    let mut mechanism = None;
    if config.fingerprint {
        for &n in &config.ns {
            eprintln!("bench-scale: fingerprint, N = {n} ...");
            let point = fingerprint_point(&config, &inputs[..n], &key, &cgroup, &target)
                .with_context(|| format!("fingerprint at N = {n}"))?;
            mechanism = Some(point.mechanism);
            eprintln!("  {}", point.summary());
            points.push(point);
        }
    }
    if config.per_policy {
        let mech = match (mechanism, config.mechanism) {
            (Some(m), _) => m,
            (None, MechanismChoice::Kill) => Mechanism::Kill,
            (None, _) => Mechanism::Lsm,
        };
        let mut pp = PerPolicyRun::new(mech);
        for &n in &config.ns {
            eprintln!("bench-scale: per-policy, N = {n} ...");
            let found = pp
                .point(&config, &inputs[..n], &key, &cgroup, &target)
                .with_context(|| format!("per-policy at N = {n}"))?;
            for point in found {
                eprintln!("  {}", point.summary());
                points.push(point);
            }
        }
    }

    let report = json!({
        "machine": machine,
        "target": target_desc,
        "execs_per_block": config.execs,
        "per_profile": PER_PROFILE,
        "points": points.iter().map(Point::to_json).collect::<Vec<_>>(),
        "targets": targets(&points),
    });
    let table = table(&points);
    match config.json.as_deref() {
        Some("-") => {
            eprint!("{table}");
            println!("{report}");
        }
        Some(path) => {
            print!("{table}");
            std::fs::write(path, format!("{report}\n"))
                .with_context(|| format!("writing {path}"))?;
        }
        None => print!("{table}"),
    }
    std::io::stdout().flush().context("writing stdout")?;
    Ok(())
}

/// One workload per profile; profile 0 is the measured one and allows the target.
fn policy_inputs(n: usize, target: &Path, measured_cgroup: &str) -> Vec<PolicyInput> {
    (0..n)
        .map(|i| {
            let mut executables: Vec<Vec<u8>> = (0..PER_PROFILE - OWN_NAMES.len())
                .map(|k| SHARED_POOL[(i + k) % SHARED_POOL.len()].as_bytes().to_vec())
                .collect();
            executables.extend(
                OWN_NAMES
                    .iter()
                    .map(|name| format!("/srv/app-{i:05}/bin/{name}").into_bytes()),
            );
            let path = if i == 0 {
                if let Some(last) = executables.last_mut() {
                    *last = target.as_os_str().as_encoded_bytes().to_vec();
                }
                measured_cgroup.to_owned()
            } else {
                format!("/fp-bench-scale-fake/w{i:05}")
            };
            PolicyInput {
                name: format!("bench/w{i:05}"),
                file: "bench-scale".into(),
                workload: Some(WorkloadId::Cgroup { path }),
                mode: Mode::Enforce,
                executables,
                patterns: Vec::new(),
            }
        })
        .collect()
}

fn cgroup_of(i: usize, measured: u64) -> u64 {
    if i == 0 {
        measured
    } else {
        FAKE_CGROUP_BASE + i as u64
    }
}

// ---------------------------------------------------------------------------------
// One measured point.

#[derive(Debug, Clone, Default)]
struct ExecStats {
    count: usize,
    median_ns: u64,
    p99_ns: u64,
    mean_ns: u64,
}

impl ExecStats {
    fn of(samples: &mut [u64]) -> ExecStats {
        if samples.is_empty() {
            return ExecStats::default();
        }
        samples.sort_unstable();
        let at = |q: f64| samples[((samples.len() - 1) as f64 * q).round() as usize];
        ExecStats {
            count: samples.len(),
            median_ns: at(0.5),
            p99_ns: at(0.99),
            mean_ns: samples.iter().sum::<u64>() / samples.len() as u64,
        }
    }

    fn to_json(&self) -> Value {
        json!({"count": self.count, "median_ns": self.median_ns, "p99_ns": self.p99_ns,
               "mean_ns": self.mean_ns})
    }
}

#[derive(Debug, Clone)]
struct Point {
    design: &'static str,
    mechanism: Mechanism,
    /// Workloads asked for.
    requested: usize,
    /// Workloads actually enforced (per-policy stops where attaching fails).
    n: usize,
    /// Empty when measured; else why not (or what broke).
    note: String,
    measured: bool,
    exec_programs: usize,
    objects: BpfObjects,
    plan: Duration,
    maps: Duration,
    binds: Duration,
    prog_load: Duration,
    attach: Duration,
    baseline: ExecStats,
    loaded: ExecStats,
    bpf_ns_per_exec: f64,
    runs_per_exec: f64,
    /// Program runs not caused by our loop (other processes exec'ing meanwhile).
    foreign_runs: u64,
}

impl Point {
    fn new(design: &'static str, mechanism: Mechanism, n: usize) -> Point {
        Point {
            design,
            mechanism,
            requested: n,
            n,
            note: String::new(),
            measured: false,
            exec_programs: 0,
            objects: BpfObjects::default(),
            plan: Duration::ZERO,
            maps: Duration::ZERO,
            binds: Duration::ZERO,
            prog_load: Duration::ZERO,
            attach: Duration::ZERO,
            baseline: ExecStats::default(),
            loaded: ExecStats::default(),
            bpf_ns_per_exec: 0.0,
            runs_per_exec: 0.0,
            foreign_runs: 0,
        }
    }

    fn load_time(&self) -> Duration {
        self.plan + self.maps + self.binds
    }

    fn ratio(&self, f: impl Fn(&ExecStats) -> u64) -> f64 {
        let base = f(&self.baseline);
        if base == 0 {
            return f64::NAN;
        }
        f(&self.loaded) as f64 / base as f64
    }

    fn summary(&self) -> String {
        if !self.measured {
            return format!("N = {}: not measured: {}", self.requested, self.note);
        }
        format!(
            "N = {}: exec median {:.0} us ({:.3}x), p99 {:.0} us ({:.3}x), BPF {:.0} ns/exec, \
             memory {:.2} MiB, {} progs, {} links, profiles loaded in {:.1} ms{}",
            self.n,
            self.loaded.median_ns as f64 / 1e3,
            self.ratio(|s| s.median_ns),
            self.loaded.p99_ns as f64 / 1e3,
            self.ratio(|s| s.p99_ns),
            self.bpf_ns_per_exec,
            mib(self.objects.total_bytes()),
            self.objects.progs.len(),
            self.objects.links,
            self.load_time().as_secs_f64() * 1e3,
            if self.note.is_empty() {
                String::new()
            } else {
                format!(" ({})", self.note)
            }
        )
    }

    fn to_json(&self) -> Value {
        let ms = |d: Duration| d.as_secs_f64() * 1e3;
        json!({
            "design": self.design,
            "mechanism": self.mechanism.name(),
            "hook": self.mechanism.hook(),
            "requested": self.requested,
            "n": self.n,
            "measured": self.measured,
            "note": self.note,
            "exec_programs": self.exec_programs,
            "programs": self.objects.progs.len(),
            "links": self.objects.links,
            "maps": self.objects.maps.len(),
            "map_bytes": self.objects.map_bytes(),
            "prog_bytes": self.objects.prog_bytes(),
            "total_bytes": self.objects.total_bytes(),
            "map_breakdown": self.objects.breakdown(),
            "plan_ms": ms(self.plan),
            "maps_ms": ms(self.maps),
            "binds_ms": ms(self.binds),
            "load_ms": ms(self.load_time()),
            "prog_load_ms": ms(self.prog_load),
            "attach_ms": ms(self.attach),
            "baseline": self.baseline.to_json(),
            "loaded": self.loaded.to_json(),
            "ratio_median": self.ratio(|s| s.median_ns),
            "ratio_p99": self.ratio(|s| s.p99_ns),
            "bpf_ns_per_exec": self.bpf_ns_per_exec,
            "runs_per_exec": self.runs_per_exec,
            "foreign_runs": self.foreign_runs,
        })
    }
}

fn mib(bytes: u64) -> f64 {
    bytes as f64 / (1u64 << 20) as f64
}

/// Baseline (nothing on the hook), then `hook(true)` attaches, the timed loop with BPF
/// stats, then `hook(false)` detaches, then the baseline again. Fills the exec figures
/// of `point`.
fn measure(
    point: &mut Point,
    config: &Config,
    cgroup: &BenchCgroup,
    target: &Path,
    hook: &mut dyn FnMut(bool) -> Result<()>,
) -> Result<()> {
    let inside = cgroup.enter()?;
    exec_loop(target, WARMUP_EXECS)?;
    let mut baseline = exec_loop(target, config.execs / 2)?;
    let started = Instant::now();
    hook(true)?;
    point.attach = started.elapsed();
    point.objects = BpfObjects::scan()?;
    exec_loop(target, WARMUP_EXECS)?;
    // Wall time with the kernel's accounting off: it adds two clock reads to every
    // program run, which would tax the N-program design N times.
    let mut loaded = exec_loop(target, config.execs)?;
    let stats_execs = config.stats_execs();
    let stats = BpfStatsSysctl::enable("bench-scale")?;
    let before = BpfObjects::scan()?;
    exec_loop(target, stats_execs)?;
    let after = BpfObjects::scan()?;
    drop(stats);
    hook(false)?;
    exec_loop(target, WARMUP_EXECS)?;
    baseline.extend(exec_loop(target, config.execs - config.execs / 2)?);
    drop(inside);

    let execs = stats_execs as u64;
    let (time, runs, max_runs) = after.runs_since(&before);
    point.bpf_ns_per_exec = time as f64 / execs as f64;
    point.runs_per_exec = runs as f64 / execs as f64;
    point.foreign_runs = max_runs.saturating_sub(execs);
    point.baseline = ExecStats::of(&mut baseline);
    point.loaded = ExecStats::of(&mut loaded);
    point.measured = true;
    Ok(())
}

/// `count` fork+exec+wait of the target, each timed; every one must succeed.
fn exec_loop(target: &Path, count: usize) -> Result<Vec<u64>> {
    (0..count)
        .map(|_| {
            let started = Instant::now();
            run_target(target)?;
            Ok(started.elapsed().as_nanos() as u64)
        })
        .collect()
}

fn run_target(target: &Path) -> Result<()> {
    let status = Command::new(target)
        .status()
        .with_context(|| format!("executing {} (denied?)", target.display()))?;
    if !status.success() {
        bail!(
            "{} ended with {status}: the allowed exec was refused or killed",
            target.display()
        );
    }
    Ok(())
}

// ---------------------------------------------------------------------------------
// fingerprint: one program, N profiles in its maps.

fn fingerprint_point(
    config: &Config,
    inputs: &[PolicyInput],
    key: &DigestKey,
    cgroup: &BenchCgroup,
    target: &Path,
) -> Result<Point> {
    let n = inputs.len();
    let started = Instant::now();
    let mut ids = ProfileIds::default();
    let planned = plan(inputs, key, &mut ids)?;
    let plan_time = started.elapsed();
    // As `enforce` sizes them: --max-cgroups defaults to 65536.
    let bindings = 65536u32.max(2 * n as u32);
    let sizes = MapSizes::for_profiles(&planned, None, bindings);

    let started = Instant::now();
    let mut probe = EnforceProbe::load(config.mechanism, sizes, None)?;
    probe.write_config(key, None)?;
    probe.attach_cgroup_tracking()?;
    let prog_load = started.elapsed();

    let started = Instant::now();
    let mut state = MapState::new(*key, sizes.allow);
    state.apply(&probe, planned)?;
    let maps = started.elapsed();
    let started = Instant::now();
    for (i, input) in inputs.iter().enumerate() {
        let id = state
            .profile_id(&input.name)
            .ok_or_else(|| anyhow!("profile {} was not loaded", input.name))?;
        probe.bind(cgroup_of(i, cgroup.id), id)?;
    }
    let binds = started.elapsed();

    let mut point = Point::new("fingerprint", probe.mechanism(), n);
    point.exec_programs = 1;
    point.plan = plan_time;
    point.maps = maps;
    point.binds = binds;
    point.prog_load = prog_load;
    let before = probe.counters()?;
    // Detaching means dropping the probe: EnforceProbe keeps its links to itself.
    let mut probe = Some(probe);
    measure(&mut point, config, cgroup, target, &mut |attach| {
        if attach {
            return probe
                .as_mut()
                .map_or(Ok(()), |p| p.attach_exec_hook().map_err(Into::into));
        }
        if let Some(p) = probe.as_ref() {
            let counters = p.counters();
            // Checked here, while the probe still exists; reported through note.
            if let Ok(c) = counters {
                let checks = c.checks - before.checks;
                let violations = c.violations - before.violations;
                let expected = (config.execs + config.stats_execs() + WARMUP_EXECS) as u64;
                if violations != 0 || checks < expected {
                    eprintln!(
                        "bench-scale: WARNING: {checks} checks (expected >= {expected}), \
                             {violations} violations (expected 0)"
                    );
                }
            }
        }
        probe = None;
        Ok(())
    })?;
    Ok(point)
}

// ---------------------------------------------------------------------------------
// The per-policy design: N copies of a program on the same hook.

struct PerPolicyRun {
    mechanism: Mechanism,
    /// Where it broke, once it has: later points are not attempted.
    broke: Option<String>,
    /// Kernel memory and load time of one copy, from the first point.
    per_copy: Option<(u64, f64)>,
}

struct PolicyCopy {
    skel: BenchPerPolicySkel<'static>,
    link: Option<Link>,
}

impl PerPolicyRun {
    fn new(mechanism: Mechanism) -> PerPolicyRun {
        PerPolicyRun {
            mechanism,
            broke: None,
            per_copy: None,
        }
    }

    fn skipped(&self, n: usize, note: String) -> Point {
        let mut point = Point::new("per-policy", self.mechanism, n);
        point.note = note;
        point
    }

    fn point(
        &mut self,
        config: &Config,
        inputs: &[PolicyInput],
        key: &DigestKey,
        cgroup: &BenchCgroup,
        target: &Path,
    ) -> Result<Vec<Point>> {
        let n = inputs.len();
        if let Some(broke) = &self.broke {
            return Ok(vec![self.skipped(n, format!("not attempted: {broke}"))]);
        }
        if let Some((bytes, seconds)) = self.per_copy {
            let need = bytes * n as u64;
            if need > config.pp_mem_limit {
                return Ok(vec![self.skipped(
                    n,
                    format!(
                        "not run: would need {:.1} GiB of kernel memory ({:.2} MiB per policy), \
                         over the {:.1} GiB limit (FP_SCALE_PP_MEM_MIB)",
                        need as f64 / (1u64 << 30) as f64,
                        mib(bytes),
                        config.pp_mem_limit as f64 / (1u64 << 30) as f64
                    ),
                )]);
            }
            if seconds * n as f64 > config.pp_seconds {
                return Ok(vec![self.skipped(
                    n,
                    format!(
                        "not run: loading would take about {:.0} s ({:.0} ms per policy), over \
                         FP_SCALE_PP_SECONDS={:.0}",
                        seconds * n as f64,
                        seconds * 1e3,
                        config.pp_seconds
                    ),
                )]);
            }
        }

        // One object per policy, each verified on its own and attached to the same
        // hook right away, as adding a policy does there; until the kernel says no.
        let mut copies: Vec<PolicyCopy> = Vec::with_capacity(n);
        let mut load = Duration::ZERO;
        let mut attach = Duration::ZERO;
        let mut failure = None;
        for (i, input) in inputs.iter().enumerate() {
            let started = Instant::now();
            let mut copy = self.load_copy(cgroup_of(i, cgroup.id), input, key)?;
            load += started.elapsed();
            let started = Instant::now();
            let attached = self.program(&copy).attach();
            attach += started.elapsed();
            match attached {
                Ok(link) => {
                    copy.link = Some(link);
                    copies.push(copy);
                }
                Err(err) => {
                    failure = Some(format!(
                        "attaching program {} of {n} to {} failed: {:#}",
                        i + 1,
                        self.mechanism.hook(),
                        anyhow::Error::from(err)
                    ));
                    break;
                }
            }
        }
        let attached = copies.len();
        // Detached again until the measurement: the baseline runs with none attached.
        for copy in &mut copies {
            copy.link = None;
        }
        let mut out = Vec::new();
        if let Some(failure) = &failure {
            eprintln!("bench-scale: per-policy: {failure}");
            out.push(self.skipped(n, format!("BROKEN: {failure}")));
            self.broke = Some(format!("broke at {} programs", attached + 1));
        }
        if copies.is_empty() {
            return Ok(out);
        }
        let mut point = Point::new("per-policy", self.mechanism, n);
        point.n = copies.len();
        point.exec_programs = copies.len();
        if failure.is_some() {
            point.note = format!("the most that attach (asked for {n})");
        }
        let mechanism = self.mechanism;
        measure(&mut point, config, cgroup, target, &mut |attach| {
            for copy in copies.iter_mut() {
                copy.link = None;
                if attach {
                    let link = Self::program_of(mechanism, copy)
                        .attach()
                        .context("re-attaching a per-policy copy")?;
                    copy.link = Some(link);
                }
            }
            Ok(())
        })?;
        point.attach = attach;
        point.prog_load = load;
        // There, a policy's allowlist arrives with its program: adding workloads means
        // loading (and verifying) programs, so that is its profile loading time.
        point.maps = load;
        if self.per_copy.is_none() {
            let copies_n = point.n.max(1);
            self.per_copy = Some((
                point.objects.total_bytes() / copies_n as u64,
                load.as_secs_f64() / copies_n as f64,
            ));
        }
        out.insert(0, point);
        Ok(out)
    }

    fn program<'a>(&self, copy: &'a PolicyCopy) -> &'a libbpf_rs::ProgramMut<'static> {
        Self::program_of(self.mechanism, copy)
    }

    fn program_of(mechanism: Mechanism, copy: &PolicyCopy) -> &libbpf_rs::ProgramMut<'static> {
        match mechanism {
            Mechanism::Lsm => &copy.skel.progs.per_policy_bprm_check_security,
            Mechanism::Kill => &copy.skel.progs.per_policy_sched_process_exec,
        }
    }

    fn load_copy(
        &self,
        cgroup_id: u64,
        input: &PolicyInput,
        key: &DigestKey,
    ) -> Result<PolicyCopy> {
        // Each skeleton borrows its storage for as long as it lives; the storage is a
        // few pointers, so leaking one per copy is the simple, safe choice in a bench.
        let storage: &'static mut MaybeUninit<OpenObject> =
            Box::leak(Box::new(MaybeUninit::uninit()));
        let mut open = BenchPerPolicySkelBuilder::default()
            .open(storage)
            .context("opening bench_per_policy")?;
        open.progs
            .per_policy_bprm_check_security
            .set_autoload(self.mechanism == Mechanism::Lsm);
        open.progs
            .per_policy_sched_process_exec
            .set_autoload(self.mechanism == Mechanism::Kill);
        let rodata = open
            .maps
            .rodata_data
            .as_deref_mut()
            .ok_or_else(|| anyhow!("bench_per_policy has no .rodata"))?;
        rodata.pp_policy_cgroup = cgroup_id;
        let skel = open.load().context("loading bench_per_policy")?;

        let mut config = Vec::with_capacity(24);
        config.extend(key.0[0].to_ne_bytes());
        config.extend(key.0[1].to_ne_bytes());
        config.extend([0u8; 8]);
        skel.maps
            .pp_config
            .update(&0u32.to_ne_bytes(), &config, MapFlags::ANY)
            .context("writing pp_config")?;
        let mut keys = Vec::with_capacity(16 * input.executables.len());
        for path in &input.executables {
            let d = digest(key, path);
            keys.extend(d.hi.to_ne_bytes());
            keys.extend(d.lo.to_ne_bytes());
        }
        let values = vec![1u8; input.executables.len()];
        skel.maps
            .pp_allow
            .update_batch(
                &keys,
                &values,
                input.executables.len() as u32,
                MapFlags::ANY,
                MapFlags::ANY,
            )
            .context("writing pp_allow")?;
        Ok(PolicyCopy { skel, link: None })
    }
}

// ---------------------------------------------------------------------------------
// What this process holds in the kernel, from /proc/self/fdinfo.

#[derive(Debug, Clone, Default)]
struct ProgFd {
    memlock: u64,
    run_time_ns: u64,
    run_cnt: u64,
}

#[derive(Debug, Clone, Default)]
struct MapFd {
    name: String,
    memlock: u64,
}

#[derive(Debug, Clone, Default)]
struct BpfObjects {
    progs: BTreeMap<u64, ProgFd>,
    maps: BTreeMap<u64, MapFd>,
    links: usize,
}

impl BpfObjects {
    fn scan() -> Result<BpfObjects> {
        let mut out = BpfObjects::default();
        let mut link_ids = BTreeSet::new();
        for entry in std::fs::read_dir("/proc/self/fdinfo").context("listing fdinfo")? {
            let entry = entry.context("reading fdinfo")?;
            // An fd closed since the listing is simply skipped.
            let Ok(text) = std::fs::read_to_string(entry.path()) else {
                continue;
            };
            let field = |name: &str| -> Option<u64> {
                text.lines()
                    .find_map(|l| l.strip_prefix(name)?.strip_prefix(':'))
                    .and_then(|v| v.trim().parse().ok())
            };
            if let Some(id) = field("link_id") {
                link_ids.insert(id);
            } else if let Some(id) = field("prog_id") {
                if text.contains("prog_type:") {
                    out.progs.insert(
                        id,
                        ProgFd {
                            memlock: field("memlock").unwrap_or(0),
                            run_time_ns: field("run_time_ns").unwrap_or(0),
                            run_cnt: field("run_cnt").unwrap_or(0),
                        },
                    );
                }
            } else if let Some(id) = field("map_id") {
                if out.maps.contains_key(&id) {
                    continue;
                }
                let name = entry
                    .file_name()
                    .to_str()
                    .and_then(|fd| fd.parse::<i32>().ok())
                    .and_then(|fd| {
                        // SAFETY: the fd is open in this process (we just read its
                        // fdinfo) and is only borrowed for this one call.
                        let fd = unsafe { BorrowedFd::borrow_raw(fd) };
                        libbpf_rs::MapInfo::new(fd)
                            .ok()
                            .and_then(|info| info.name().ok().map(str::to_owned))
                    })
                    .unwrap_or_default();
                out.maps.insert(
                    id,
                    MapFd {
                        name,
                        memlock: field("memlock").unwrap_or(0),
                    },
                );
            }
        }
        out.links = link_ids.len();
        Ok(out)
    }

    fn map_bytes(&self) -> u64 {
        self.maps.values().map(|m| m.memlock).sum()
    }

    fn prog_bytes(&self) -> u64 {
        self.progs.values().map(|p| p.memlock).sum()
    }

    fn total_bytes(&self) -> u64 {
        self.map_bytes() + self.prog_bytes()
    }

    /// Bytes per map name (summed over copies), largest first.
    fn breakdown(&self) -> Value {
        let mut by_name: BTreeMap<&str, (u64, usize)> = BTreeMap::new();
        for map in self.maps.values() {
            let e = by_name.entry(map.name.as_str()).or_default();
            e.0 += map.memlock;
            e.1 += 1;
        }
        let mut rows: Vec<_> = by_name.into_iter().collect();
        rows.sort_by_key(|row| std::cmp::Reverse(row.1 .0));
        rows.into_iter()
            .map(|(name, (bytes, count))| json!({"map": name, "bytes": bytes, "count": count}))
            .collect()
    }

    /// (run time, runs, most runs of one program) since `before`, over programs
    /// present in both scans.
    fn runs_since(&self, before: &BpfObjects) -> (u64, u64, u64) {
        let mut time = 0;
        let mut runs = 0;
        let mut max_runs = 0;
        for (id, now) in &self.progs {
            if let Some(then) = before.progs.get(id) {
                time += now.run_time_ns.saturating_sub(then.run_time_ns);
                let r = now.run_cnt.saturating_sub(then.run_cnt);
                runs += r;
                max_runs = max_runs.max(r);
            }
        }
        (time, runs, max_runs)
    }
}

// ---------------------------------------------------------------------------------
// Report.

fn targets(points: &[Point]) -> Value {
    let fp: Vec<&Point> = points
        .iter()
        .filter(|p| p.design == "fingerprint" && p.measured)
        .collect();
    let (Some(first), Some(last)) = (fp.iter().min_by_key(|p| p.n), fp.iter().max_by_key(|p| p.n))
    else {
        return json!([]);
    };
    let wall = last.ratio(|s| s.median_ns) / first.ratio(|s| s.median_ns);
    let bpf = last.bpf_ns_per_exec / first.bpf_ns_per_exec;
    json!([
        {
            "target": format!("exec cost at N={} within 5% of N={}", last.n, first.n),
            "met": wall <= TARGET_COST_RATIO && bpf <= TARGET_COST_RATIO,
            "wall_ratio": wall,
            "bpf_ratio": bpf,
        },
        {
            "target": format!("kernel memory at N={} x {PER_PROFILE} <= 16 MiB", last.n),
            "met": last.objects.total_bytes() <= TARGET_MEMORY_BYTES,
            "bytes": last.objects.total_bytes(),
        },
        {
            "target": format!("loading {} profiles < 1 s", last.n),
            "met": last.load_time() < TARGET_LOAD,
            "load_ms": last.load_time().as_secs_f64() * 1e3,
        },
    ])
}

fn table(points: &[Point]) -> String {
    let mut out = String::from(
        "\n| design | hook | N | exec median (x baseline) | exec p99 (x baseline) | BPF ns/exec \
         | progs / links | kernel memory | per workload | load profiles | note |\n\
         |---|---|---:|---:|---:|---:|---:|---:|---:|---:|---|\n",
    );
    for p in points {
        if !p.measured {
            out += &format!(
                "| {} | {} | {} | – | – | – | – | – | – | – | {} |\n",
                p.design,
                p.mechanism.hook(),
                p.requested,
                p.note
            );
            continue;
        }
        out += &format!(
            "| {} | {} | {} | {:.0} us ({:.3}) | {:.0} us ({:.3}) | {:.0} | {} / {} | {:.2} MiB \
             | {:.1} KiB | {:.1} ms | {} |\n",
            p.design,
            p.mechanism.hook(),
            p.n,
            p.loaded.median_ns as f64 / 1e3,
            p.ratio(|s| s.median_ns),
            p.loaded.p99_ns as f64 / 1e3,
            p.ratio(|s| s.p99_ns),
            p.bpf_ns_per_exec,
            p.objects.progs.len(),
            p.objects.links,
            mib(p.objects.total_bytes()),
            p.objects.total_bytes() as f64 / 1024.0 / p.n as f64,
            p.load_time().as_secs_f64() * 1e3,
            p.note
        );
    }
    out
}

// ---------------------------------------------------------------------------------
// Environment: exec target, cgroup, sysctl, limits, machine.

fn exec_target(dir: &Path, given: Option<&Path>) -> Result<(PathBuf, String)> {
    let path = dir.join("exec-target");
    if let Some(given) = given {
        // A private copy, so that nothing else on the machine execs the same file.
        std::fs::copy(given, &path).with_context(|| format!("copying {}", given.display()))?;
        return Ok((path, format!("{} (FP_SCALE_TARGET)", given.display())));
    }
    let (path, kib) = support::static_exec_target(dir)
        .context("building the exec target (install gcc and libc6-dev, or set FP_SCALE_TARGET)")?;
    Ok((
        path,
        format!("static C program, `cc -O2 -static` ({kib} KiB)"),
    ))
}

/// The measured workload's cgroup; removed on drop.
struct BenchCgroup {
    dir: PathBuf,
    /// Relative to the v2 root, as profiles name it.
    relative: String,
    id: u64,
    /// Where this process was, to go back after each timed block.
    home: PathBuf,
}

impl BenchCgroup {
    fn create(v2: &CgroupV2) -> Result<BenchCgroup> {
        let relative = format!("/fp-bench-scale-{}", std::process::id());
        let (dir, id) = v2.create(&relative)?;
        let own = std::fs::read_to_string("/proc/self/cgroup").context("/proc/self/cgroup")?;
        let home_rel = own
            .lines()
            .find_map(|l| l.strip_prefix("0::"))
            .ok_or_else(|| anyhow!("no cgroup v2 line in /proc/self/cgroup"))?;
        let home = v2.mount_point().join(home_rel.trim_start_matches('/'));
        Ok(BenchCgroup {
            dir,
            relative,
            id,
            home,
        })
    }

    /// Move this process in; it moves back when the guard is dropped.
    fn enter(&self) -> Result<InCgroup<'_>> {
        CgroupV2::enter(&self.dir, std::process::id())?;
        Ok(InCgroup(self))
    }
}

struct InCgroup<'a>(&'a BenchCgroup);

impl Drop for InCgroup<'_> {
    fn drop(&mut self) {
        if let Err(err) = CgroupV2::enter(&self.0.home, std::process::id()) {
            eprintln!(
                "bench-scale: warning: could not move back to {}: {err}",
                self.0.home.display()
            );
        }
    }
}

impl Drop for BenchCgroup {
    fn drop(&mut self) {
        if let Err(err) = CgroupV2::remove(&self.dir) {
            eprintln!(
                "bench-scale: warning: could not remove {}: {err}",
                self.dir.display()
            );
        }
    }
}

/// Thousands of copies hold several fds each: lift the soft limit (and, as root, the
/// hard one) so the per-policy design fails on its own limits, not on ours.
fn raise_fd_limit() {
    let wanted = libc::rlimit {
        rlim_cur: 1 << 20,
        rlim_max: 1 << 20,
    };
    // SAFETY: setrlimit/getrlimit read or write only the struct passed.
    unsafe {
        if libc::setrlimit(libc::RLIMIT_NOFILE, &wanted) != 0 {
            let mut now = libc::rlimit {
                rlim_cur: 0,
                rlim_max: 0,
            };
            if libc::getrlimit(libc::RLIMIT_NOFILE, &mut now) == 0 {
                now.rlim_cur = now.rlim_max;
                libc::setrlimit(libc::RLIMIT_NOFILE, &now);
            }
        }
    }
}

fn machine() -> Value {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let cpu_model = cpuinfo
        .lines()
        .find_map(|l| {
            let (key, value) = l.split_once(':')?;
            (key.trim() == "model name").then(|| value.trim().to_string())
        })
        .unwrap_or_else(|| "unknown".into());
    let mem_total = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|t| {
            t.lines()
                .find_map(|l| l.strip_prefix("MemTotal:"))
                .map(|v| v.trim().to_string())
        })
        .unwrap_or_default();
    json!({
        "cpus": std::thread::available_parallelism().map_or(1, |n| n.get()),
        "cpu_model": cpu_model,
        "mem_total": mem_total,
        "kernel": nix::sys::utsname::uname()
            .map(|u| u.release().to_string_lossy().into_owned())
            .unwrap_or_else(|_| "unknown".into()),
        "loadavg": std::fs::read_to_string("/proc/loadavg")
            .map(|l| l.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
            .unwrap_or_default(),
        "unix_time": SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs()),
    })
}
