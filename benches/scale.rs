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
//! - **content** (fingerprint with every executable pinned to content, issue #12): the
//!   same profiles, each path with one SHA-256 (the target's real one), and the
//!   target's file version already in the kernel's cache (`fp_versions`): the steady
//!   state, where only a version's first exec is held. Measured in the same rounds as
//!   the path-only points and paired with them round by round (content over path at
//!   the same N). Also measured: hashing a first-seen version, per MiB.
//!
//! Only the measured workload (profile 0) has a real cgroup; the N-1 others are bound
//! to cgroup ids that do not exist (2^40 + i), which costs the maps and the programs
//! exactly what real, idle workloads would. The benchmark moves itself into the
//! measured cgroup and times fork+exec+wait of a tiny static binary that is in profile
//! 0's allowlist: the allow path, the common case. Every exec must exit 0, and
//! fingerprint's own counters must show every exec checked and none refused.
//!
//! Exec cost is measured in interleaved rounds (`scale/rounds.rs`). fingerprint's
//! points are all loaded first, each `FP_SCALE_LOADS` times (where the maps land in
//! memory differs from load to load), exec programs detached; then each round runs one
//! block per loaded point and one with nothing on the hook, in a fresh random order:
//! attach, warm up, time `FP_SCALE_EXECS` execs, account as many more one by one with
//! `kernel.bpf_stats_enabled=1` (`run_time_ns`/`run_cnt` of the point's programs
//! before and after each exec), detach. Per point it reports the median over rounds,
//! and per N the ratio to N=1 paired round by round (drift on a shared machine
//! cancels; mean over loads over mean over loads), with a distribution-free 95%
//! confidence interval of its median. Per-policy points are
//! loaded one at a time (thousands of copies cost gigabytes) and measured in rounds
//! against their own baseline. Also per point: kernel memory (`memlock` of every map
//! and program fd the point added, de-duplicated by id); programs and links; loading
//! time.
//!
//! Needs root. Settings, from the environment:
//!   FP_SCALE_N            comma-separated workload counts (default 1,10,100,1000,10000)
//!   FP_SCALE_LOADS        independent loads of each fingerprint point (default 3)
//!   FP_SCALE_ROUNDS       rounds over fingerprint's points (default 200)
//!   FP_SCALE_PP_ROUNDS    rounds for each per-policy point (default 20)
//!   FP_SCALE_EXECS        timed execs per block, and as many accounted ones
//!                         (default 40; the VM run uses fewer)
//!   FP_SCALE_MECHANISM    auto | lsm | kill (default auto: the LSM where the kernel
//!                         accepts it, else kill mode); both designs use the same hook
//!   FP_SCALE_DESIGNS      fingerprint,content,per-policy,kernel-hash (default all;
//!                         content needs fingerprint: it is paired with it;
//!                         kernel-hash, LSM only: hashing at exec in the kernel,
//!                         `scale/kernel_hash.rs`)
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
#[path = "scale/kernel_hash.rs"]
mod kernel_hash;
#[path = "scale/open_guard.rs"]
mod open_guard;
#[path = "scale/rounds.rs"]
mod rounds;
#[path = "scale/script_hold.rs"]
mod script_hold;
use rounds::{Arm, Block, Summary};

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write as _;
use std::mem::MaybeUninit;
use std::os::fd::{BorrowedFd, RawFd};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitCode};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{anyhow, bail, Context, Result};
use fingerprint::bpf::enforce::{EnforceProbe, Mechanism, MechanismChoice};
use fingerprint::content::{hash_version, FileVersion, Sha256};
use fingerprint::digest::{digest, DigestKey};
use fingerprint::enforce::maps::MapState;
use fingerprint::enforce::plan::{plan, MapSizes, Mode, PolicyInput, ProfileIds};
use fingerprint::enforce::{hold, identity, YOUNG_CTIME};
use fingerprint::event::ExecEvent;
use fingerprint::workload::cgroup::CgroupV2;
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
/// Paired blocks of opens for the move guard's cost (at most; FP_SCALE_ROUNDS if fewer).
const GUARD_ROUNDS: usize = 40;
/// Pairs of script execs (held, and run as an argument) in kill mode.
const SCRIPT_ROUNDS: usize = 100;
/// Paired blocks per file for hashing in the kernel (at most; FP_SCALE_ROUNDS if fewer).
const KERNEL_HASH_ROUNDS: usize = 20;
/// Execs before each timed block, not counted: page cache, lazy kernel state.
const WARMUP_EXECS: usize = 10;
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
    loads: usize,
    rounds: usize,
    pp_rounds: usize,
    execs: usize,
    mechanism: MechanismChoice,
    fingerprint: bool,
    /// Also fingerprint with every executable pinned to content (cache hits).
    content: bool,
    per_policy: bool,
    /// Hashing the executable in the kernel (`scale/kernel_hash.rs`), LSM only.
    kernel_hash: bool,
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
        let designs = var("FP_SCALE_DESIGNS")
            .unwrap_or_else(|| "fingerprint,content,per-policy,kernel-hash".into());
        let available = mem_available().unwrap_or(4 << 30);
        Ok(Config {
            ns,
            loads: number("FP_SCALE_LOADS", 3.0)? as usize,
            rounds: number("FP_SCALE_ROUNDS", 200.0)? as usize,
            pp_rounds: number("FP_SCALE_PP_ROUNDS", 20.0)? as usize,
            execs: number("FP_SCALE_EXECS", 40.0)? as usize,
            mechanism,
            fingerprint: designs.contains("fingerprint"),
            content: designs.contains("content"),
            per_policy: designs.contains("per-policy"),
            kernel_hash: designs.contains("kernel-hash"),
            pp_mem_limit: (number("FP_SCALE_PP_MEM_MIB", (available / 2 / (1 << 20)) as f64)?
                * (1 << 20) as f64) as u64,
            pp_seconds: number("FP_SCALE_PP_SECONDS", 600.0)?,
            target: var("FP_SCALE_TARGET").map(PathBuf::from),
            json: var("FP_SCALE_JSON"),
        })
    }
}

impl Config {
    /// Execs timed by the kernel's accounting, after the wall-clock part of a block.
    fn stats_execs(&self) -> usize {
        self.execs
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
    let temp = tempfile::Builder::new()
        .prefix("fp-bench-scale")
        .tempdir()
        .context("creating a temporary directory")?;
    // The BPF side names the canonical file: keep our path canonical too.
    let dir = temp.path().canonicalize().context("canonical temp dir")?;
    let (target, target_desc) = exec_target(&dir, config.target.as_deref())?;
    // Kill mode holds a script's exec: the measured profile allows one, and its
    // interpreter (by its canonical path, as the kernel names it).
    let interpreter = std::fs::canonicalize("/bin/sh").context("finding /bin/sh")?;
    let script = script_hold::write_script(&dir, &interpreter)?;
    let v2 = CgroupV2::discover().context("finding the cgroup v2 mount")?;
    let cgroup = BenchCgroup::create(&v2)?;
    // Fail now, not after minutes of loading, if the accounting cannot be turned on.
    drop(BpfStatsSysctl::enable("bench-scale")?);
    let key = DigestKey::random().context("reading random bytes for the digest key")?;
    let max_n = config.ns.iter().copied().max().unwrap_or(1);
    let inputs = policy_inputs(max_n, &[&target, &interpreter, &script], &cgroup.relative);
    eprintln!(
        "bench-scale: N = {:?}, {} rounds ({} per per-policy point) of {} timed + {} \
         accounted execs per block, target {}, cgroup {} (id {})",
        config.ns,
        config.rounds,
        config.pp_rounds,
        config.execs,
        config.stats_execs(),
        target_desc,
        cgroup.dir.display(),
        cgroup.id
    );

    let mut points = Vec::new();
    let mut pooled = Vec::new();
    let mut content_vs_path = Vec::new();
    let mut first_exec = Value::Null;
    let mut mechanism = None;
    let mut open_guard_result = None;
    let mut script_hold_result = None;
    if config.fingerprint {
        let mut loaded = Vec::new();
        let pinned = config
            .content
            .then(|| pinned_inputs(&inputs, &target))
            .transpose()?;
        let designs =
            std::iter::once((FINGERPRINT, &inputs)).chain(pinned.iter().map(|p| (CONTENT, p)));
        for (design, inputs) in designs {
            for &n in &config.ns {
                for load in 0..config.loads {
                    eprintln!("bench-scale: {design}, loading N = {n} ({}) ...", load + 1);
                    let first = (design == CONTENT).then_some(target.as_path());
                    let mut point = load_fingerprint(&config, &inputs[..n], &key, &cgroup, first)
                        .with_context(|| format!("{design} at N = {n}"))?;
                    point.0.design = design;
                    point.0.load = load;
                    mechanism = Some(point.0.mechanism);
                    loaded.push(point);
                }
            }
        }
        if let Some((point, probe)) = loaded.first_mut() {
            if point.mechanism == Mechanism::Lsm {
                eprintln!("bench-scale: the cgroup move guard on open ...");
                let guard = point.objects.prog_fds("guard_cgroup_fi");
                let rounds = config.rounds.min(GUARD_ROUNDS);
                open_guard_result = Some(open_guard::measure(probe, &guard, &dir, rounds)?);
            } else {
                eprintln!("bench-scale: a script's exec, held in kill mode ...");
                probe.attach_exec_hook()?;
                let rounds = config.rounds.min(SCRIPT_ROUNDS);
                let held = script_hold::measure(probe, &cgroup, &interpreter, &script, rounds);
                probe.detach_exec_hook();
                script_hold_result = Some(held?);
            }
        }
        eprintln!("bench-scale: fingerprint, {} rounds ...", config.rounds);
        let measured = measure_fingerprint(&config, loaded, &cgroup, &target)?;
        for point in measured.0 {
            eprintln!("  {}", point.summary());
            points.push(point);
        }
        for p in &measured.1 {
            eprintln!(
                "  N = {}, {} loads: against N=1: BPF {:.3} [{:.3}, {:.3}], exec {:.3} [{:.3}, {:.3}]",
                p.n, p.loads, p.bpf.median, p.bpf.ci_lo, p.bpf.ci_hi, p.wall.median,
                p.wall.ci_lo, p.wall.ci_hi
            );
        }
        pooled = measured.1;
        for c in &measured.2 {
            eprintln!(
                "  content over path at N = {}, {} loads: BPF {:.3} [{:.3}, {:.3}], exec {:.3} \
                 [{:.3}, {:.3}]",
                c.n,
                c.loads,
                c.bpf.median,
                c.bpf.ci_lo,
                c.bpf.ci_hi,
                c.wall.median,
                c.wall.ci_lo,
                c.wall.ci_hi
            );
        }
        content_vs_path = measured.2;
        if config.content {
            first_exec = hashing_cost(&dir)?;
            eprintln!("  {}", first_exec["summary"].as_str().unwrap_or_default());
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

    // Needs the LSM: not measured in kill mode (JSON null).
    let lsm = mechanism != Some(Mechanism::Kill) && config.mechanism != MechanismChoice::Kill;
    let mut kernel_hash_result = None;
    if config.kernel_hash && lsm {
        eprintln!("bench-scale: hashing the executable in the kernel (IMA) ...");
        let rounds = config.rounds.min(KERNEL_HASH_ROUNDS);
        kernel_hash_result = Some(kernel_hash::measure(&cgroup, &target, &dir, rounds)?);
    }

    let report = json!({
        "machine": machine(),
        "target": target_desc,
        "execs_per_block": config.execs,
        "stats_execs_per_block": config.stats_execs(),
        "warmup_execs_per_block": WARMUP_EXECS,
        "rounds": config.rounds,
        "pp_rounds": config.pp_rounds,
        "per_profile": PER_PROFILE,
        "loads": config.loads,
        "points": points.iter().map(Point::to_json).collect::<Vec<_>>(),
        "pooled": pooled.iter().map(Pooled::to_json).collect::<Vec<_>>(),
        "content_vs_path": content_vs_path.iter().map(Pooled::to_json).collect::<Vec<_>>(),
        "first_exec_hashing": first_exec,
        "targets": targets(&points, &pooled),
        "open_guard": open_guard_result,
        "script_hold": script_hold_result,
        "kernel_hash": kernel_hash_result,
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
fn policy_inputs(n: usize, measured: &[&Path], measured_cgroup: &str) -> Vec<PolicyInput> {
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
                let own = executables.len() - measured.len();
                for (entry, file) in executables[own..].iter_mut().zip(measured) {
                    *entry = file.as_os_str().as_encoded_bytes().to_vec();
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
                // As for containers, by default: the move guard's full check applies.
                keep_cgroup: true,
                executables,
                content: Vec::new(),
                patterns: Vec::new(),
            }
        })
        .collect()
}

/// The design names of fingerprint's points: path-only, and pinned to content.
const FINGERPRINT: &str = "fingerprint";
const CONTENT: &str = "fingerprint+content";

/// The same profiles with every executable pinned to one content: the target's real
/// digest, a made-up one for the others (never executed).
fn pinned_inputs(inputs: &[PolicyInput], target: &Path) -> Result<Vec<PolicyInput>> {
    let real = Sha256::of(&std::fs::read(target).context("reading the exec target")?);
    let target = target.as_os_str().as_encoded_bytes();
    Ok(inputs
        .iter()
        .map(|input| {
            let mut pinned = input.clone();
            pinned.content = input
                .executables
                .iter()
                .map(|path| match path.as_slice() == target {
                    true => (path.clone(), real),
                    false => (path.clone(), Sha256::of(path)),
                })
                .collect();
            pinned
        })
        .collect())
}

/// The target's first exec under enforcement, decided as `enforce` decides it: the
/// kernel holds it (the version is unknown), user space reads the held event, hashes
/// and caches the version (`identity::decide_held`) and continues the task. Leaves the
/// version cached: the steady state the rounds measure. Returns how long the exec took,
/// fork to exit, hold and hashing included.
fn held_first_exec(
    probe: &EnforceProbe,
    id: u32,
    cgroup: &BenchCgroup,
    target: &Path,
) -> Result<Duration> {
    // A version changed less than YOUNG_CTIME ago is decided but not cached.
    let age = std::fs::metadata(target)?
        .modified()?
        .elapsed()
        .unwrap_or_default();
    std::thread::sleep(YOUNG_CTIME.saturating_sub(age));
    let held = HeldExecs::new(probe)?;
    let started = Instant::now();
    let (mut child, event) = held.spawn(cgroup, Command::new(target))?;
    let decision = identity::decide_held(probe, id, &event)?;
    hold::release(child.id(), &[]);
    let status = child.wait()?;
    let took = started.elapsed();
    if decision.is_some() || !status.success() {
        bail!("the target's first exec was refused ({decision:?}, {status})");
    }
    let version = event
        .exe_version
        .ok_or_else(|| anyhow!("held event without a version"))?;
    if probe.known_version(&version.to_kernel())?.is_none() {
        bail!("the target's version was not cached");
    }
    Ok(took)
}

/// Execs the kernel holds, read as `enforce` reads them: from the violations ring.
struct HeldExecs<'p> {
    ring: libbpf_rs::RingBuffer<'p>,
    events: std::sync::mpsc::Receiver<Vec<u8>>,
}

impl<'p> HeldExecs<'p> {
    fn new(probe: &'p EnforceProbe) -> Result<HeldExecs<'p>> {
        let (sender, events) = std::sync::mpsc::channel();
        let ring = probe.violations(move |data| match sender.send(data.to_vec()) {
            Ok(()) => 0,
            Err(_) => -1,
        })?;
        Ok(HeldExecs { ring, events })
    }

    /// Spawn `command` in the measured cgroup; once the kernel has stopped it, the
    /// task and the event of its held exec.
    fn spawn(&self, cgroup: &BenchCgroup, mut command: Command) -> Result<(Child, ExecEvent)> {
        let child = {
            let _inside = cgroup.enter()?;
            command
                .stdout(std::process::Stdio::null())
                .spawn()
                .context("spawning in the measured cgroup")?
        };
        hold::wait_until_stopped(child.id(), Duration::from_secs(10));
        self.ring.consume().context("reading the held exec")?;
        let event = self
            .events
            .try_iter()
            .find_map(|data| {
                ExecEvent::decode(&data)
                    .ok()
                    .filter(|e| e.pid == child.id())
            })
            .ok_or_else(|| anyhow!("the exec of {:?} was not held", command.get_program()))?;
        Ok((child, event))
    }
}

/// What a first-seen file version costs user space before the held exec is decided:
/// hashing it (open, check the version, read, check again), per MiB, for executables of
/// 1, 16 and 64 MiB.
fn hashing_cost(dir: &Path) -> Result<Value> {
    let mut rows = Vec::new();
    for mib in [1usize, 16, 64] {
        let path = dir.join(format!("hash-{mib}m"));
        let bytes: Vec<u8> = (0..mib << 20)
            .map(|i| (i.wrapping_mul(2654435761) >> 13) as u8)
            .collect();
        std::fs::write(&path, &bytes).with_context(|| format!("writing {}", path.display()))?;
        let version = FileVersion::of_metadata(&std::fs::metadata(&path)?);
        let mut times = Vec::new();
        for _ in 0..5 {
            let file = std::fs::File::open(&path)?;
            let started = Instant::now();
            hash_version(file, &version)
                .map_err(|e| anyhow!("hashing {}: {e:?}", path.display()))?;
            times.push(started.elapsed().as_nanos() as u64);
        }
        std::fs::remove_file(&path)?;
        let median = ExecStats::of(&mut times).median_ns;
        rows.push(json!({"mib": mib, "median_ns": median, "ns_per_mib": median / mib as u64}));
    }
    let per_mib: Vec<String> = rows
        .iter()
        .map(|r| {
            format!(
                "{} MiB: {:.2} ms/MiB",
                r["mib"],
                r["ns_per_mib"].as_u64().unwrap_or(0) as f64 / 1e6
            )
        })
        .collect();
    Ok(json!({
        "summary": format!("first exec of a version, hashing (page cache warm): {}", per_mib.join(", ")),
        "sizes": rows,
    }))
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
    /// Which of the independent loads of this N (fingerprint), from 0.
    load: usize,
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
    /// Content points: the target's first exec, held and hashed (fork to exit).
    first_exec: Option<Duration>,
    /// Per round: this point's block and the same round's block with no program.
    rounds: Vec<(Block, Block)>,
    /// Every timed exec, pooled over rounds.
    baseline: ExecStats,
    loaded: ExecStats,
    /// (BPF time, exec median) as ratios to the same load of the design's smallest N,
    /// paired round by round; only where both were measured in the same rounds.
    vs_first: Option<(Summary, Summary)>,
}

impl Point {
    fn new(design: &'static str, mechanism: Mechanism, n: usize) -> Point {
        Point {
            design,
            mechanism,
            requested: n,
            n,
            load: 0,
            note: String::new(),
            measured: false,
            exec_programs: 0,
            objects: BpfObjects::default(),
            plan: Duration::ZERO,
            maps: Duration::ZERO,
            binds: Duration::ZERO,
            prog_load: Duration::ZERO,
            attach: Duration::ZERO,
            first_exec: None,
            rounds: Vec::new(),
            baseline: ExecStats::default(),
            loaded: ExecStats::default(),
            vs_first: None,
        }
    }

    /// The exec figures, from `arm`'s blocks paired with `baseline`'s.
    fn record(&mut self, arm: &mut Arm<'_>, baseline: &mut Arm<'_>) {
        self.rounds = arm
            .blocks
            .iter()
            .copied()
            .zip(baseline.blocks.iter().copied())
            .collect();
        self.loaded = ExecStats::of(&mut arm.samples);
        self.baseline = ExecStats::of(&mut baseline.samples);
        self.measured = true;
    }

    fn load_time(&self) -> Duration {
        self.plan + self.maps + self.binds
    }

    fn bpf(&self) -> Summary {
        Summary::of(self.rounds.iter().map(|(b, _)| b.bpf_ns_per_exec))
    }

    /// Exec median against no program, paired round by round.
    fn wall_ratio(&self) -> Summary {
        Summary::of(
            self.rounds
                .iter()
                .map(|(b, base)| b.median_ns as f64 / base.median_ns as f64),
        )
    }

    /// Pooled p99 against no program's pooled p99.
    fn p99_ratio(&self) -> f64 {
        self.loaded.p99_ns as f64 / self.baseline.p99_ns as f64
    }

    /// Pair this point's rounds with `first`'s: the same rounds of the smallest N.
    fn pair_with(&mut self, first: &[(f64, f64)]) {
        self.vs_first = Some(paired(&round_means(&[self]), first));
    }

    fn summary(&self) -> String {
        if !self.measured {
            return format!("N = {}: not measured: {}", self.requested, self.note);
        }
        let bpf = self.bpf();
        let paired = self.vs_first.map_or(String::new(), |(b, w)| {
            format!(
                ", against N=1: BPF {:.3} [{:.3}, {:.3}], exec {:.3} [{:.3}, {:.3}]",
                b.median, b.ci_lo, b.ci_hi, w.median, w.ci_lo, w.ci_hi
            )
        });
        format!(
            "N = {} (load {}): exec median {:.0} us ({:.3}x), p99 {:.0} us ({:.3}x), BPF {:.0} ns/exec \
             [IQR {:.0}-{:.0}]{paired}, memory {:.2} MiB, {} progs, {} links, profiles loaded \
             in {:.1} ms{}{}",
            self.n,
            self.load + 1,
            self.loaded.median_ns as f64 / 1e3,
            self.wall_ratio().median,
            self.loaded.p99_ns as f64 / 1e3,
            self.p99_ratio(),
            bpf.median,
            bpf.q1,
            bpf.q3,
            mib(self.objects.total_bytes()),
            self.objects.progs.len(),
            self.objects.links.len(),
            self.load_time().as_secs_f64() * 1e3,
            self.first_exec.map_or(String::new(), |d| format!(
                ", first exec of the target (held, hashed) {:.1} ms",
                d.as_secs_f64() * 1e3
            )),
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
            "load": self.load,
            "measured": self.measured,
            "note": self.note,
            "exec_programs": self.exec_programs,
            "programs": self.objects.progs.len(),
            "links": self.objects.links.len(),
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
            "first_exec_ms": self.first_exec.map(ms),
            "baseline": self.baseline.to_json(),
            "loaded": self.loaded.to_json(),
            "ratio_median": self.wall_ratio().to_json(),
            "ratio_p99": self.p99_ratio(),
            "bpf_ns_per_exec": self.bpf().to_json(),
            "vs_first": self.vs_first.map(|(bpf, wall)| json!({
                "bpf": bpf.to_json(),
                "exec_median": wall.to_json(),
            })),
            "rounds": self.rounds.iter().map(|(b, base)| json!({
                "median_ns": b.median_ns,
                "baseline_median_ns": base.median_ns,
                "bpf_ns_per_exec": b.bpf_ns_per_exec,
                "bpf_mean_ns": b.bpf_mean_ns,
                "foreign": b.foreign,
            })).collect::<Vec<_>>(),
        })
    }
}

fn mib(bytes: u64) -> f64 {
    bytes as f64 / (1u64 << 20) as f64
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

/// Load one point through the library's real path; its exec program is attached
/// once (to count it) and left detached for the rounds.
/// `first_exec`: exec this target once while attached, as its first exec under
/// enforcement (held, hashed, cached: see `first_exec`), and time that.
fn load_fingerprint(
    config: &Config,
    inputs: &[PolicyInput],
    key: &DigestKey,
    cgroup: &BenchCgroup,
    first_exec: Option<&Path>,
) -> Result<(Point, EnforceProbe)> {
    let n = inputs.len();
    let before = BpfObjects::scan()?;
    let started = Instant::now();
    let mut ids = ProfileIds::default();
    let planned = plan(inputs, key, &mut ids)?;
    let plan_time = started.elapsed();
    // As `enforce` sizes them: --max-cgroups defaults to 65536.
    let bindings = 65536u32.max(2 * n as u32);
    let sizes = MapSizes::for_profiles(&planned, None, bindings);

    let started = Instant::now();
    let mut probe = EnforceProbe::load(config.mechanism, sizes, Duration::from_secs(10), None)?;
    probe.write_config(key, None, true)?;
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
    let started = Instant::now();
    probe.attach_exec_hook()?;
    point.attach = started.elapsed();
    point.objects = BpfObjects::scan()?.since(&before);
    if let Some(target) = first_exec {
        let id = state
            .profile_id(&inputs[0].name)
            .ok_or_else(|| anyhow!("profile {} was not loaded", inputs[0].name))?;
        point.first_exec = Some(held_first_exec(&probe, id, cgroup, target)?);
    }
    probe.detach_exec_hook();
    Ok((point, probe))
}

/// The rounds over every loaded point and no program; then each point's figures,
/// paired with the smallest N's.
/// Also returns, per N, the content points over the path-only ones, paired round by
/// round.
fn measure_fingerprint(
    config: &Config,
    loaded: Vec<(Point, EnforceProbe)>,
    cgroup: &BenchCgroup,
    target: &Path,
) -> Result<(Vec<Point>, Vec<Pooled>, Vec<Pooled>)> {
    let (mut points, mut probes): (Vec<Point>, Vec<EnforceProbe>) = loaded.into_iter().unzip();
    let before = probes
        .iter()
        .map(EnforceProbe::counters)
        .collect::<Result<Vec<_>, _>>()?;
    let mut arms: Vec<Arm<'_>> = points
        .iter()
        .zip(probes.iter_mut())
        .map(|(point, probe)| {
            let hook: rounds::Hook<'_> = Box::new(move |attach| {
                if attach {
                    probe.attach_exec_hook()?;
                } else {
                    probe.detach_exec_hook();
                }
                Ok(())
            });
            let label = format!("{} N={}#{}", point.design, point.n, point.load + 1);
            // The exec program alone: the move guard runs on the exec's open and
            // fork too, and is measured apart (open_guard.rs).
            Arm::hooked(label, hook, point.objects.prog_fds("enforce_"), 1)
        })
        .collect();
    arms.push(Arm::baseline());
    rounds::interleave(&mut arms, config.rounds, config, cgroup, target)?;
    let mut baseline = arms.pop().ok_or_else(|| anyhow!("no baseline arm"))?;
    for (point, arm) in points.iter_mut().zip(arms.iter_mut()) {
        point.record(arm, &mut baseline);
    }
    drop((arms, baseline));

    let expected = (config.rounds * (WARMUP_EXECS + config.execs + config.stats_execs())) as u64;
    for ((point, probe), before) in points.iter().zip(&probes).zip(before) {
        let now = probe.counters()?;
        let (checks, violations) = (
            now.checks - before.checks,
            now.violations - before.violations,
        );
        if violations != 0 || checks < expected {
            eprintln!(
                "bench-scale: WARNING: N = {}: {checks} checks (expected >= {expected}), \
                 {violations} violations (expected 0)",
                point.n
            );
        }
    }
    let mut ns: Vec<usize> = points.iter().map(|p| p.n).collect();
    ns.sort_unstable();
    ns.dedup();
    let of = |design: &str, n: usize| {
        points
            .iter()
            .filter(|p| p.design == design && p.n == n)
            .collect::<Vec<_>>()
    };
    let of_n = |n: usize| of(FINGERPRINT, n);
    let first = round_means(&of_n(ns[0]));
    let content_vs_path: Vec<Pooled> = ns
        .iter()
        .filter(|&&n| !of(CONTENT, n).is_empty())
        .map(|&n| {
            let (bpf, wall) = paired(&round_means(&of(CONTENT, n)), &round_means(&of_n(n)));
            Pooled {
                n,
                loads: of(CONTENT, n).len(),
                bpf,
                wall,
            }
        })
        .collect();
    let pooled = ns
        .iter()
        .map(|&n| {
            let loads = of_n(n);
            let (bpf, wall) = paired(&round_means(&loads), &first);
            Pooled {
                n,
                loads: loads.len(),
                bpf,
                wall,
            }
        })
        .collect();
    // Each load against the same load of the smallest N: one block over one block, as
    // the pooled figure is a mean over loads over a mean over loads.
    let firsts: Vec<Vec<(f64, f64)>> = points
        .iter()
        .filter(|p| p.design == FINGERPRINT && p.n == ns[0])
        .map(|p| round_means(&[p]))
        .collect();
    for point in points.iter_mut().filter(|p| p.design == FINGERPRINT) {
        if let Some(first) = firsts.get(point.load) {
            point.pair_with(first);
        }
    }
    Ok((points, pooled, content_vs_path))
}

/// Per round, the means over `points` (loads measured in the same rounds) of the
/// block's BPF time and exec median; a load without a BPF figure that round is left
/// out of its mean.
fn round_means(points: &[&Point]) -> Vec<(f64, f64)> {
    let rounds = points.iter().map(|p| p.rounds.len()).min().unwrap_or(0);
    let mean = |values: Vec<f64>| values.iter().sum::<f64>() / values.len() as f64;
    (0..rounds)
        .map(|r| {
            let blocks = points.iter().map(|p| p.rounds[r].0);
            (
                mean(
                    blocks
                        .clone()
                        .map(|b| b.bpf_ns_per_exec)
                        .filter(|v| v.is_finite())
                        .collect(),
                ),
                mean(blocks.map(|b| b.median_ns as f64).collect()),
            )
        })
        .collect()
}

/// (BPF time, exec median) of `series` over `first`, round by round.
fn paired(series: &[(f64, f64)], first: &[(f64, f64)]) -> (Summary, Summary) {
    let pairs = || series.iter().zip(first);
    (
        Summary::of(pairs().map(|(s, f)| s.0 / f.0)),
        Summary::of(pairs().map(|(s, f)| s.1 / f.1)),
    )
}

/// Every load of one N, against every load of the smallest N, paired round by round.
struct Pooled {
    n: usize,
    loads: usize,
    bpf: Summary,
    wall: Summary,
}

impl Pooled {
    fn to_json(&self) -> Value {
        json!({"n": self.n, "loads": self.loads, "bpf": self.bpf.to_json(),
               "exec_median": self.wall.to_json()})
    }
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
        let before = BpfObjects::scan()?;
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
        let objects = BpfObjects::scan()?.since(&before);
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
        point.objects = objects;
        let mechanism = self.mechanism;
        let hook: rounds::Hook<'_> = Box::new(|attach| {
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
        });
        let mut arms = [
            Arm::hooked(
                format!("N={}", point.n),
                hook,
                point.objects.prog_fds(""),
                point.n as u64,
            ),
            Arm::baseline(),
        ];
        rounds::interleave(&mut arms, config.pp_rounds, config, cgroup, target)?;
        let [arm, baseline] = &mut arms;
        point.record(arm, baseline);
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
    /// The program's name (at most 15 bytes, as the kernel keeps it).
    name: String,
    memlock: u64,
    /// One fd of this process that holds the program.
    fd: RawFd,
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
    links: BTreeSet<u64>,
}

impl BpfObjects {
    fn scan() -> Result<BpfObjects> {
        let mut out = BpfObjects::default();
        for entry in std::fs::read_dir("/proc/self/fdinfo").context("listing fdinfo")? {
            let entry = entry.context("reading fdinfo")?;
            // An fd closed since the listing is simply skipped.
            let Ok(text) = std::fs::read_to_string(entry.path()) else {
                continue;
            };
            let Some(fd) = entry
                .file_name()
                .to_str()
                .and_then(|fd| fd.parse::<RawFd>().ok())
            else {
                continue;
            };
            let field = |name: &str| -> Option<u64> {
                text.lines()
                    .find_map(|l| l.strip_prefix(name)?.strip_prefix(':'))
                    .and_then(|v| v.trim().parse().ok())
            };
            if let Some(id) = field("link_id") {
                out.links.insert(id);
            } else if let Some(id) = field("prog_id") {
                if text.contains("prog_type:") {
                    out.progs.insert(
                        id,
                        ProgFd {
                            name: rounds::prog_info(fd).map(|i| i.name).unwrap_or_default(),
                            memlock: field("memlock").unwrap_or(0),
                            fd,
                        },
                    );
                }
            } else if let Some(id) = field("map_id") {
                if out.maps.contains_key(&id) {
                    continue;
                }
                // SAFETY: the fd is open in this process (we just read its fdinfo)
                // and is only borrowed for this one call.
                let borrowed = unsafe { BorrowedFd::borrow_raw(fd) };
                let name = libbpf_rs::MapInfo::new(borrowed)
                    .ok()
                    .and_then(|info| info.name().ok().map(str::to_owned))
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
        Ok(out)
    }

    /// What this scan holds that `before` did not: what was loaded in between.
    fn since(mut self, before: &BpfObjects) -> BpfObjects {
        self.progs.retain(|id, _| !before.progs.contains_key(id));
        self.maps.retain(|id, _| !before.maps.contains_key(id));
        self.links.retain(|id| !before.links.contains(id));
        self
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

    /// One fd of each program whose name starts with `prefix`, for reading its run
    /// statistics.
    fn prog_fds(&self, prefix: &str) -> Vec<RawFd> {
        self.progs
            .values()
            .filter(|p| p.name.starts_with(prefix))
            .map(|p| p.fd)
            .collect()
    }
}

// ---------------------------------------------------------------------------------
// Report.

/// MET when the whole 95% interval of the paired ratio is within the target, MISSED
/// when all of it is beyond, NOT RESOLVED when the run could not tell.
fn verdict(ratio: &Summary) -> &'static str {
    if ratio.ci_hi <= TARGET_COST_RATIO {
        "MET"
    } else if ratio.ci_lo > TARGET_COST_RATIO {
        "MISSED"
    } else {
        "NOT RESOLVED"
    }
}

fn targets(points: &[Point], pooled: &[Pooled]) -> Value {
    let fp: Vec<&Point> = points
        .iter()
        .filter(|p| p.design == "fingerprint" && p.measured)
        .collect();
    let (Some(first), Some(last)) = (fp.iter().min_by_key(|p| p.n), fp.iter().max_by_key(|p| p.n))
    else {
        return json!([]);
    };
    let (bpf, wall, loads) = pooled
        .iter()
        .find(|p| p.n == last.n)
        .map_or(Default::default(), |p| (p.bpf, p.wall, p.loads));
    let cost = match (verdict(&bpf), verdict(&wall)) {
        ("MET", "MET") => "MET",
        ("MISSED", _) | (_, "MISSED") => "MISSED",
        _ => "NOT RESOLVED",
    };
    // Over rounds, of the mean over loads.
    let median_bpf = |n: usize| {
        let loads: Vec<&Point> = fp.iter().copied().filter(|p| p.n == n).collect();
        Summary::of(round_means(&loads).into_iter().map(|(bpf, _)| bpf)).median
    };
    let bytes = last.objects.total_bytes();
    let met = |yes: bool| if yes { "MET" } else { "MISSED" };
    // Judged on the slowest load: a target met only sometimes is not met.
    let slowest_load = fp
        .iter()
        .filter(|p| p.n == last.n)
        .map(|p| p.load_time())
        .max()
        .unwrap_or_default();
    json!([
        {
            "target": format!("exec cost at N={} within 5% of N={}", last.n, first.n),
            "verdict": cost,
            "loads": loads,
            "bpf_ns_first": median_bpf(first.n),
            "bpf_ns_last": median_bpf(last.n),
            "bpf": {"verdict": verdict(&bpf), "ratio": bpf.to_json()},
            "exec_median": {"verdict": verdict(&wall), "ratio": wall.to_json()},
        },
        {
            "target": format!("kernel memory at N={} x {PER_PROFILE} <= 16 MiB", last.n),
            "verdict": met(bytes <= TARGET_MEMORY_BYTES),
            "bytes": bytes,
        },
        {
            "target": format!("loading {} profiles < 1 s", last.n),
            "verdict": met(slowest_load < TARGET_LOAD),
            "load_ms": slowest_load.as_secs_f64() * 1e3,
        },
    ])
}

fn table(points: &[Point]) -> String {
    let mut out = String::from(
        "\n| design | hook | N | exec median (x no program) | exec p99 (x no program) \
         | BPF ns/exec [IQR] | vs smallest N: BPF, exec [95% CI] | progs / links \
         | kernel memory | per workload | load profiles | note |\n\
         |---|---|---:|---:|---:|---:|---|---:|---:|---:|---:|---|\n",
    );
    for p in points {
        if !p.measured {
            out += &format!(
                "| {} | {} | {} | – | – | – | – | – | – | – | – | {} |\n",
                p.design,
                p.mechanism.hook(),
                p.requested,
                p.note
            );
            continue;
        }
        let bpf = p.bpf();
        let paired = p.vs_first.map_or("–".into(), |(b, w)| {
            format!(
                "{:.3} [{:.3}, {:.3}], {:.3} [{:.3}, {:.3}]",
                b.median, b.ci_lo, b.ci_hi, w.median, w.ci_lo, w.ci_hi
            )
        });
        out += &format!(
            "| {} | {} | {} | {:.0} us ({:.3}) | {:.0} us ({:.3}) | {:.0} [{:.0}, {:.0}] | {paired} \
             | {} / {} | {:.2} MiB | {:.1} KiB | {:.1} ms | {} |\n",
            p.design,
            p.mechanism.hook(),
            p.n,
            p.loaded.median_ns as f64 / 1e3,
            p.wall_ratio().median,
            p.loaded.p99_ns as f64 / 1e3,
            p.p99_ratio(),
            bpf.median,
            bpf.q1,
            bpf.q3,
            p.objects.progs.len(),
            p.objects.links.len(),
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
