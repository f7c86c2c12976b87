//! `make bench-learn`: what learning costs under an exec storm.
//!
//! Several workers fork+exec a tiny program as fast as this machine allows, spread
//! over several cgroups, first without learning (the baseline) and then while
//! `fingerprint learn --cgroup ...` records them. It reports execs generated, events
//! recorded in the database, events seen and dropped, the exec rate against the
//! baseline, the recorder's CPU time per 1,000 execs and as a share of the CPU the
//! storm itself costs, and the BPF program's own run time per exec from the kernel's
//! accounting (`kernel.bpf_stats_enabled`, read with `bpftool prog show -j`).
//!
//! Targets (issue 2): zero drops at the maximum exec rate, and recorder CPU under 5%
//! of the storm's CPU. Misses are reported as MISS, not asserted: a benchmark reports.
//! It exits non-zero only when it cannot measure (not root, learner crashed, ...).
//!
//! Needs root (it creates cgroups and loads BPF). Settings, from the environment:
//!   FP_BENCH_WORKERS   exec workers (default: number of CPUs)
//!   FP_BENCH_CGROUPS   cgroups (workloads) the execs are spread over (default 4)
//!   FP_BENCH_SECONDS   length of each storm in seconds (default 10)
//!   FP_BENCH_ROUNDS    alternate baseline and learning storms this many times and
//!                      sum them (default 1); on a shared machine, where other load
//!                      drifts, alternating keeps that drift out of the comparison
//!   FP_BENCH_MARKDOWN  append the results as a markdown section to this file
//!
//! Run with `cargo bench --bench learn` (release build).

#[path = "support/mod.rs"]
mod support;
use support::BpfStatsSysctl;

use std::fmt::Write as _;
use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Write as _};
use std::os::fd::AsRawFd;
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitCode, ExitStatus, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc, Barrier};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{anyhow, bail, Context, Result};
use fingerprint::workload::cgroup::CgroupV2;

const BIN: &str = env!("CARGO_BIN_EXE_fingerprint");
/// The learner prints this on stderr once its program is attached.
const ATTACHED: &str = "fingerprint: learning at ";
/// Targets from issue 2.
const MAX_RECORDER_CPU_PERCENT: f64 = 5.0;

/// Set by SIGINT so that Ctrl-C ends the storm early and still runs every cleanup guard.
static INTERRUPTED: AtomicBool = AtomicBool::new(false);

extern "C" fn on_sigint(_: libc::c_int) {
    INTERRUPTED.store(true, Ordering::SeqCst);
}

fn main() -> ExitCode {
    support::bench_main(
        "bench-learn",
        "it creates cgroups, loads a BPF program and sets kernel.bpf_stats_enabled",
        run,
    )
}

struct Config {
    workers: usize,
    cgroups: usize,
    duration: Duration,
    rounds: usize,
    markdown: Option<PathBuf>,
}

impl Config {
    fn from_env() -> Result<Config> {
        let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
        let workers = env_number("FP_BENCH_WORKERS", cpus as f64)? as usize;
        let cgroups = env_number("FP_BENCH_CGROUPS", 4.0)? as usize;
        let seconds = env_number("FP_BENCH_SECONDS", 10.0)?;
        let rounds = env_number("FP_BENCH_ROUNDS", 1.0)? as usize;
        if workers == 0 || cgroups == 0 || seconds <= 0.0 || rounds == 0 {
            bail!(
                "FP_BENCH_WORKERS, FP_BENCH_CGROUPS, FP_BENCH_SECONDS and FP_BENCH_ROUNDS \
                 must be positive"
            );
        }
        Ok(Config {
            workers,
            cgroups,
            duration: Duration::from_secs_f64(seconds),
            rounds,
            markdown: std::env::var_os("FP_BENCH_MARKDOWN").map(PathBuf::from),
        })
    }
}

fn env_number(name: &str, default: f64) -> Result<f64> {
    match std::env::var(name) {
        Ok(text) => text
            .trim()
            .parse::<f64>()
            .ok()
            .filter(|v| v.is_finite())
            .ok_or_else(|| anyhow!("{name}={text:?} is not a number")),
        Err(_) => Ok(default),
    }
}

fn run() -> Result<()> {
    let config = Config::from_env()?;
    install_sigint_handler()?;
    let machine = Machine::probe();

    let temp = tempfile::Builder::new()
        .prefix("fp-bench-learn")
        .tempdir()
        .context("creating a temporary directory")?;
    // Learning records canonical paths; keep ours canonical too (e.g. /tmp may be a link).
    let temp_path = temp.path().canonicalize().context("canonical temp dir")?;
    let target = ExecTarget::build(&temp_path)?;
    let v2 = CgroupV2::discover().context("finding the cgroup v2 mount")?;
    let cgroups = BenchCgroups::create(&v2, config.cgroups)?;

    eprintln!(
        "bench-learn: {} workers, {} cgroups under {}, {} round(s) of {:.0} s storms, \
         target: {}",
        config.workers,
        config.cgroups,
        v2.mount_point().display(),
        config.rounds,
        config.duration.as_secs_f64(),
        target.description
    );
    let mut baseline: Option<Storm> = None;
    let mut learned: Option<Learned> = None;
    for round in 1..=config.rounds {
        eprintln!("bench-learn: round {round}: baseline storm (no learning) ...");
        let b = storm(&target.path, &cgroups, config.workers, config.duration)?;
        baseline = Some(baseline.map_or(b, |sum| sum.add(&b)));
        eprintln!("bench-learn: round {round}: storm while learning ...");
        // A fresh database per round, so each round's counts stand alone.
        let db = temp_path.join(format!("learn-{round}.db"));
        let l = learn_storm(&config, &target.path, &cgroups, &db)?;
        learned = Some(match learned {
            Some(sum) => sum.add(l),
            None => l,
        });
    }
    let (Some(baseline), Some(learned)) = (baseline, learned) else {
        bail!("no round ran");
    };

    let report = Report {
        machine,
        config: &config,
        target: &target,
        baseline,
        learned,
    };
    println!("{}", report.table());
    if let Some(path) = &config.markdown {
        append_markdown(path, &report.markdown())?;
        eprintln!("bench-learn: appended the results to {}", path.display());
    }
    // Exit 1 is the learner's verdict on drops, a result like any other; anything else
    // means it failed, and the figures above measured a broken run.
    let exit = report.learned.exit;
    if !matches!(exit.code(), Some(0 | 1)) {
        bail!(
            "the learner failed (exit {}): the figures above are not a valid measurement",
            exit_text(exit)
        );
    }
    Ok(())
    // Drops, in reverse order: cgroups removed, then the temp dir with target and DB.
}

fn install_sigint_handler() -> Result<()> {
    use nix::sys::signal::{sigaction, SaFlags, SigAction, SigHandler, SigSet, Signal};
    let action = SigAction::new(
        SigHandler::Handler(on_sigint),
        // Restart interrupted syscalls; the storm loops poll INTERRUPTED instead.
        SaFlags::SA_RESTART,
        SigSet::empty(),
    );
    // SAFETY: the handler only stores to an atomic, which is async-signal-safe.
    unsafe { sigaction(Signal::SIGINT, &action) }.context("installing a SIGINT handler")?;
    Ok(())
}

fn check_interrupted() -> Result<()> {
    if INTERRUPTED.load(Ordering::SeqCst) {
        bail!("interrupted; cleaned up, no results");
    }
    Ok(())
}

// ---------------------------------------------------------------------------------
// The program the storm execs.

struct ExecTarget {
    path: PathBuf,
    description: String,
}

impl ExecTarget {
    /// A static do-nothing binary if a C compiler can make one: it costs the kernel an
    /// exec and nothing else (no dynamic loader, no libraries), so the storm is as
    /// exec-heavy as possible. Else a copy of /usr/bin/true. Either way a private copy,
    /// so nothing else on the host execs the same file.
    fn build(dir: &Path) -> Result<ExecTarget> {
        let why_not = match support::static_exec_target(dir) {
            Ok((path, kib)) => {
                return Ok(ExecTarget {
                    path,
                    description: format!(
                        "static C program built with `cc -O2 -static` ({kib} KiB)"
                    ),
                })
            }
            Err(err) => format!("{err:#}"),
        };
        let path = dir.join("exec-target");
        std::fs::copy("/usr/bin/true", &path).context("copying /usr/bin/true")?;
        Ok(ExecTarget {
            path,
            description: format!("copy of /usr/bin/true, dynamically linked ({why_not})"),
        })
    }
}

// ---------------------------------------------------------------------------------
// Cgroups: one per simulated workload, removed on drop (also on error and Ctrl-C).

struct BenchCgroup {
    dir: PathBuf,
    /// Path relative to the v2 root, as the learner records it in `cgroups.path`.
    path: String,
}

struct BenchCgroups(Vec<BenchCgroup>);

impl BenchCgroups {
    fn create(v2: &CgroupV2, count: usize) -> Result<BenchCgroups> {
        let mut made = BenchCgroups(Vec::new());
        for i in 0..count {
            let path = format!("/fp-bench-learn-{}-{i}", std::process::id());
            let (dir, _id) = v2
                .create(&path)
                .with_context(|| format!("creating cgroup {path}"))?;
            made.0.push(BenchCgroup { dir, path });
        }
        Ok(made)
    }
}

impl Drop for BenchCgroups {
    fn drop(&mut self) {
        for cg in &self.0 {
            // Every child was reaped, but the kernel may take a moment to unlink an
            // exited task from its cgroup; rmdir says EBUSY until then.
            let mut result = CgroupV2::remove(&cg.dir);
            for _ in 0..50 {
                if result.is_ok() {
                    break;
                }
                std::thread::sleep(Duration::from_millis(20));
                result = CgroupV2::remove(&cg.dir);
            }
            if let Err(err) = result {
                eprintln!("bench-learn: warning: {err}");
            }
        }
    }
}

// ---------------------------------------------------------------------------------
// The exec storm.

#[derive(Debug, Clone, Copy, Default)]
struct CpuTime {
    user: Duration,
    sys: Duration,
}

impl CpuTime {
    fn total(self) -> Duration {
        self.user + self.sys
    }

    fn from_rusage(ru: &libc::rusage) -> CpuTime {
        let tv = |t: libc::timeval| {
            Duration::from_secs(t.tv_sec as u64) + Duration::from_micros(t.tv_usec as u64)
        };
        CpuTime {
            user: tv(ru.ru_utime),
            sys: tv(ru.ru_stime),
        }
    }

    fn add(self, other: CpuTime) -> CpuTime {
        CpuTime {
            user: self.user + other.user,
            sys: self.sys + other.sys,
        }
    }

    fn saturating_sub(self, earlier: CpuTime) -> CpuTime {
        CpuTime {
            user: self.user.saturating_sub(earlier.user),
            sys: self.sys.saturating_sub(earlier.sys),
        }
    }
}

fn rusage(who: libc::c_int) -> Result<CpuTime> {
    // SAFETY: getrusage fills the zeroed struct we pass; rusage is plain old data.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    if unsafe { libc::getrusage(who, &mut ru) } != 0 {
        return Err(std::io::Error::last_os_error()).context("getrusage");
    }
    Ok(CpuTime::from_rusage(&ru))
}

#[derive(Debug, Clone, Copy)]
struct Storm {
    execs: u64,
    /// Children that ran but did not exit 0 (killed, or the exec failed).
    failed: u64,
    wall: Duration,
    /// CPU of the exec'd children (fork-to-exit, including BPF run in their exec).
    children_cpu: CpuTime,
    /// CPU of this process: the workers' fork and wait calls.
    spawner_cpu: CpuTime,
}

impl Storm {
    fn add(&self, other: &Storm) -> Storm {
        Storm {
            execs: self.execs + other.execs,
            failed: self.failed + other.failed,
            wall: self.wall + other.wall,
            children_cpu: self.children_cpu.add(other.children_cpu),
            spawner_cpu: self.spawner_cpu.add(other.spawner_cpu),
        }
    }

    fn cpu(&self) -> Duration {
        self.children_cpu.total() + self.spawner_cpu.total()
    }

    fn rate(&self) -> f64 {
        self.execs as f64 / self.wall.as_secs_f64()
    }
}

/// `workers` threads fork+exec `target` back to back for `duration`, waiting for each
/// child; exec k of worker w runs in cgroup (w + k) mod W, so every workload is busy
/// whatever the ratio of workers to cgroups.
///
/// RUSAGE_CHILDREN only grows when a child is reaped and no other child of ours may be
/// reaped during the storm (the learner is reaped after it), so its delta is exactly the
/// storm's children.
fn storm(
    target: &Path,
    cgroups: &BenchCgroups,
    workers: usize,
    duration: Duration,
) -> Result<Storm> {
    let start = Arc::new(Barrier::new(workers + 1));
    let mut handles = Vec::with_capacity(workers);
    for w in 0..workers {
        // Open every cgroup.procs before forking: the child may only write(2).
        let mut commands = cgroups
            .0
            .iter()
            .map(|cg| command_in_cgroup(target, &cg.dir))
            .collect::<Result<Vec<Command>>>()?;
        let start = Arc::clone(&start);
        handles.push(std::thread::spawn(move || -> Result<(u64, u64)> {
            start.wait();
            let deadline = Instant::now() + duration;
            let (mut execs, mut failed) = (0u64, 0u64);
            let n = commands.len();
            let mut k = w;
            while Instant::now() < deadline && !INTERRUPTED.load(Ordering::Relaxed) {
                let cmd = &mut commands[k % n];
                k += 1;
                let status = cmd.status().context("fork+exec of the exec target")?;
                if status.success() {
                    execs += 1;
                } else {
                    failed += 1;
                }
            }
            Ok((execs, failed))
        }));
    }
    let self_before = rusage(libc::RUSAGE_SELF)?;
    let children_before = rusage(libc::RUSAGE_CHILDREN)?;
    start.wait();
    let began = Instant::now();
    let mut totals = (0u64, 0u64);
    let mut first_error = None;
    for handle in handles {
        match handle.join() {
            Ok(Ok((execs, failed))) => {
                totals.0 += execs;
                totals.1 += failed;
            }
            Ok(Err(err)) => {
                first_error.get_or_insert(err);
            }
            Err(_) => {
                first_error.get_or_insert(anyhow!("a storm worker panicked"));
            }
        }
    }
    let wall = began.elapsed();
    let children_after = rusage(libc::RUSAGE_CHILDREN)?;
    let self_after = rusage(libc::RUSAGE_SELF)?;
    if let Some(err) = first_error {
        return Err(err);
    }
    check_interrupted()?;
    if totals.0 == 0 {
        bail!("the storm ran no exec successfully ({} failed)", totals.1);
    }
    Ok(Storm {
        execs: totals.0,
        failed: totals.1,
        wall,
        children_cpu: children_after.saturating_sub(children_before),
        spawner_cpu: self_after.saturating_sub(self_before),
    })
}

/// A reusable command that runs `target` inside the cgroup `dir`.
fn command_in_cgroup(target: &Path, dir: &Path) -> Result<Command> {
    let procs: File = OpenOptions::new()
        .write(true)
        .open(dir.join("cgroup.procs"))
        .with_context(|| format!("opening {}/cgroup.procs", dir.display()))?;
    let mut cmd = Command::new(target);
    // SAFETY: between fork and exec the child only calls write(2) on an fd opened
    // before the fork, which is async-signal-safe. "0" means "the writing process".
    unsafe {
        cmd.pre_exec(move || {
            if libc::write(procs.as_raw_fd(), b"0".as_ptr().cast(), 1) != 1 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    Ok(cmd)
}

// ---------------------------------------------------------------------------------
// The storm with a learner attached.

struct Learned {
    storm: Storm,
    hook: String,
    /// Sum of `executables.count` over the benchmark's workloads.
    recorded: u64,
    /// Distinct (workload, path) rows: one per cgroup expected.
    distinct_executables: u64,
    events_seen: u64,
    events_dropped: u64,
    exit: ExitStatus,
    /// Learner CPU from just before the storm until it exited (includes the drain).
    recorder_cpu: Duration,
    /// Learner CPU before the storm: loading, verifying, attaching, opening the DB
    /// (summed over rounds).
    startup_cpu: Duration,
    /// From SIGINT until the learner exited: up to one poll interval (100 ms) before it
    /// notices, then draining the ring buffer and the last commit.
    drain: Duration,
    /// Voluntary context switches of the learner during the storm: how often the ring
    /// buffer woke it up.
    wakeups: u64,
    bpf: Result<BpfRun, String>,
}

impl Learned {
    /// Two rounds as one: counts and times add up; the worst exit and the longest
    /// drain are kept.
    fn add(self, other: Learned) -> Learned {
        let bpf = match (self.bpf, other.bpf) {
            (Ok(a), Ok(b)) => Ok(BpfRun {
                prog_id: b.prog_id,
                run_cnt: a.run_cnt + b.run_cnt,
                run_time_ns: a.run_time_ns + b.run_time_ns,
                source: b.source,
            }),
            (Err(e), _) | (_, Err(e)) => Err(e),
        };
        Learned {
            storm: self.storm.add(&other.storm),
            hook: other.hook,
            recorded: self.recorded + other.recorded,
            distinct_executables: self.distinct_executables.max(other.distinct_executables),
            events_seen: self.events_seen + other.events_seen,
            events_dropped: self.events_dropped + other.events_dropped,
            exit: if self.exit.success() {
                other.exit
            } else {
                self.exit
            },
            recorder_cpu: self.recorder_cpu + other.recorder_cpu,
            startup_cpu: self.startup_cpu + other.startup_cpu,
            drain: self.drain.max(other.drain),
            wakeups: self.wakeups + other.wakeups,
            bpf,
        }
    }
}

#[derive(Debug, Clone, Copy)]
struct BpfRun {
    prog_id: u32,
    run_cnt: u64,
    run_time_ns: u64,
    source: &'static str,
}

fn learn_storm(
    config: &Config,
    target: &Path,
    cgroups: &BenchCgroups,
    db: &Path,
) -> Result<Learned> {
    // The kernel only accounts BPF run time while this is on; restored on drop.
    let stats = BpfStatsSysctl::enable("bench-learn")?;
    let mut learner = Learner::start(db, cgroups)?;
    let prog = learner.find_prog();
    let bpf_before = prog
        .as_ref()
        .map_err(Clone::clone)
        .and_then(|&id| prog_stats(learner.pid(), id));
    let startup_cpu = learner.cpu_from_proc()?;
    let startup_wakeups = learner.wakeups_from_proc()?;

    let storm = storm(target, cgroups, config.workers, config.duration);
    // Read the BPF counters while the program is still loaded.
    let bpf_after = prog.and_then(|id| prog_stats(learner.pid(), id));
    let storm = storm?;
    let (exit, total_cpu, total_wakeups, drain) = learner.stop()?;
    drop(stats);
    if !exit.success() {
        // Exit 1 means drops; anything else is a failure. Either way, show why.
        eprintln!(
            "bench-learn: the learner exited {}; its stderr:\n{}",
            exit_text(exit),
            learner.seen.join("\n")
        );
    }

    let bpf = match (bpf_before, bpf_after) {
        (Ok(before), Ok(after)) => Ok(BpfRun {
            prog_id: after.prog_id,
            run_cnt: after.run_cnt.saturating_sub(before.run_cnt),
            run_time_ns: after.run_time_ns.saturating_sub(before.run_time_ns),
            source: after.source,
        }),
        (Err(e), _) | (_, Err(e)) => Err(e),
    };
    let counts = database_counts(db, cgroups)?;
    Ok(Learned {
        storm,
        hook: learner.hook.clone(),
        recorded: counts.recorded,
        distinct_executables: counts.distinct,
        events_seen: counts.seen,
        events_dropped: counts.dropped,
        exit,
        recorder_cpu: total_cpu.saturating_sub(startup_cpu),
        startup_cpu,
        drain,
        wakeups: total_wakeups.saturating_sub(startup_wakeups),
        bpf,
    })
}

/// `fingerprint learn` in the background; killed and reaped on drop unless stopped.
struct Learner {
    child: Child,
    reaped: bool,
    stderr: mpsc::Receiver<String>,
    /// Every stderr line so far, for error messages.
    seen: Vec<String>,
    hook: String,
}

impl Learner {
    fn start(db: &Path, cgroups: &BenchCgroups) -> Result<Learner> {
        let mut cmd = Command::new(BIN);
        // Not --quiet: the start-up line says when the program is attached, and where.
        cmd.args(["learn", "--db"]).arg(db);
        for cg in &cgroups.0 {
            cmd.arg("--cgroup").arg(&cg.dir);
        }
        // Its own process group: a Ctrl-C on the terminal reaches only us, and we stop
        // the learner ourselves after the storm is cut short.
        cmd.process_group(0)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        let mut child = cmd
            .spawn()
            .with_context(|| format!("starting {BIN} learn"))?;
        let (tx, rx) = mpsc::channel();
        let pipe = child.stderr.take().context("learner stderr is piped")?;
        std::thread::spawn(move || {
            for line in BufReader::new(pipe).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let mut learner = Learner {
            child,
            reaped: false,
            stderr: rx,
            seen: Vec::new(),
            hook: String::new(),
        };
        learner.wait_attached()?;
        Ok(learner)
    }

    fn pid(&self) -> i32 {
        self.child.id() as i32
    }

    fn wait_attached(&mut self) -> Result<()> {
        let deadline = Instant::now() + Duration::from_secs(60);
        while Instant::now() < deadline {
            check_interrupted()?;
            match self.stderr.recv_timeout(Duration::from_millis(100)) {
                Ok(line) => {
                    if let Some(rest) = line.strip_prefix(ATTACHED) {
                        self.hook = rest.split(" into ").next().unwrap_or(rest).to_string();
                        self.seen.push(line);
                        return Ok(());
                    }
                    self.seen.push(line);
                }
                Err(mpsc::RecvTimeoutError::Timeout) => {}
                Err(mpsc::RecvTimeoutError::Disconnected) => break,
            }
        }
        bail!(
            "the learner did not attach; its stderr:\n{}",
            self.seen.join("\n")
        )
    }

    /// User+system CPU so far, from /proc/PID/stat (clock ticks; the learner is running).
    fn cpu_from_proc(&self) -> Result<Duration> {
        let path = format!("/proc/{}/stat", self.pid());
        let stat = std::fs::read_to_string(&path).with_context(|| format!("reading {path}"))?;
        // Fields after the parenthesised command name, which may itself hold spaces.
        let after_comm = stat
            .rsplit_once(')')
            .map(|(_, rest)| rest)
            .with_context(|| format!("unexpected {path}: {stat}"))?;
        let fields: Vec<&str> = after_comm.split_whitespace().collect();
        // utime and stime are fields 14 and 15 of stat(5); field 3 is fields[0] here.
        let ticks = |i: usize| -> Result<u64> {
            fields
                .get(i)
                .and_then(|f| f.parse().ok())
                .with_context(|| format!("unexpected {path}: {stat}"))
        };
        let total = ticks(11)? + ticks(12)?;
        // SAFETY: sysconf has no preconditions.
        let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as u64;
        Ok(Duration::from_nanos(total * 1_000_000_000 / hz))
    }

    /// The learning program's id: a BPF program fd the learner holds (found through
    /// /proc/PID/fdinfo, so another fingerprint on the host cannot be mistaken for it)
    /// whose name matches the hook it reported.
    fn find_prog(&self) -> Result<u32, String> {
        let prefix = if self.hook.contains("sched_process_exec") {
            "handle_sched_p"
        } else {
            "handle_bprm_c"
        };
        let ids = prog_fds(self.pid())
            .map_err(|e| format!("listing the learner's BPF programs: {e:#}"))?
            .into_iter()
            .map(|(id, _)| id)
            .collect::<Vec<u32>>();
        match bpftool_progs() {
            Ok(progs) => progs
                .iter()
                .find(|p| {
                    p["id"]
                        .as_u64()
                        .is_some_and(|id| ids.contains(&(id as u32)))
                        && p["name"].as_str().is_some_and(|n| n.starts_with(prefix))
                })
                .and_then(|p| p["id"].as_u64())
                .map(|id| id as u32)
                .ok_or_else(|| format!("no program named {prefix}... among the learner's {ids:?}")),
            // Without bpftool the per-fd accounting still works if there is one program.
            Err(_) if ids.len() == 1 => Ok(ids[0]),
            Err(e) => Err(e),
        }
    }

    /// Voluntary context switches so far (of its main thread, the one that polls).
    fn wakeups_from_proc(&self) -> Result<u64> {
        let path = format!("/proc/{}/status", self.pid());
        let status = std::fs::read_to_string(&path).with_context(|| format!("reading {path}"))?;
        status
            .lines()
            .find_map(|l| l.strip_prefix("voluntary_ctxt_switches:"))
            .and_then(|v| v.trim().parse().ok())
            .with_context(|| format!("no voluntary_ctxt_switches in {path}"))
    }

    /// SIGINT (what Ctrl-C does), then wait. Returns the exit status, total CPU and
    /// voluntary context switches (from wait4, all threads), and how long it took.
    fn stop(&mut self) -> Result<(ExitStatus, Duration, u64, Duration)> {
        let pid = nix::unistd::Pid::from_raw(self.pid());
        nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGINT)
            .context("sending SIGINT to the learner")?;
        let stopping = Instant::now();
        let mut status = 0;
        // SAFETY: rusage is plain old data, for which all zeroes is a valid value.
        let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
        loop {
            // SAFETY: both pointers are to live locals that wait4 only writes to. Our own
            // child, so no one else reaps it (Child::wait is not used once this is).
            let r = unsafe { libc::wait4(pid.as_raw(), &mut status, 0, &mut ru) };
            if r == pid.as_raw() {
                break;
            }
            let err = std::io::Error::last_os_error();
            if err.kind() != std::io::ErrorKind::Interrupted {
                return Err(err).context("waiting for the learner");
            }
        }
        self.reaped = true;
        let drain = stopping.elapsed();
        self.seen.extend(self.stderr.try_iter());
        Ok((
            ExitStatus::from_raw(status),
            CpuTime::from_rusage(&ru).total(),
            ru.ru_nvcsw as u64,
            drain,
        ))
    }
}

impl Drop for Learner {
    fn drop(&mut self) {
        if !self.reaped {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// (prog_id, fd) of every BPF program fd (and link fd, which names its program) of `pid`.
fn prog_fds(pid: i32) -> Result<Vec<(u32, String)>> {
    let mut found = Vec::new();
    let dir = format!("/proc/{pid}/fdinfo");
    for entry in std::fs::read_dir(&dir).with_context(|| format!("reading {dir}"))? {
        let entry = entry?;
        let fd = entry.file_name().to_string_lossy().into_owned();
        let Ok(info) = std::fs::read_to_string(entry.path()) else {
            continue; // closed meanwhile
        };
        if let Some(id) = fdinfo_field(&info, "prog_id") {
            if !found.iter().any(|(known, _)| *known == id as u32) {
                found.push((id as u32, fd));
            }
        }
    }
    Ok(found)
}

fn fdinfo_field(info: &str, name: &str) -> Option<u64> {
    info.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(':'))
        .and_then(|v| v.trim().parse().ok())
}

fn bpftool_progs() -> Result<Vec<serde_json::Value>, String> {
    let out = Command::new("bpftool")
        .args(["prog", "show", "-j"])
        .stderr(Stdio::piped())
        .output()
        .map_err(|e| format!("running bpftool: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "bpftool prog show failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    match serde_json::from_slice(&out.stdout) {
        Ok(serde_json::Value::Array(progs)) => Ok(progs),
        Ok(other) => Ok(vec![other]),
        Err(e) => Err(format!("parsing bpftool's JSON: {e}")),
    }
}

/// run_cnt and run_time_ns of program `id`: from `bpftool prog show -j`, else from the
/// learner's fdinfo for that program (the same kernel counters).
fn prog_stats(pid: i32, id: u32) -> Result<BpfRun, String> {
    match bpftool_progs() {
        Ok(progs) => {
            let prog = progs
                .iter()
                .find(|p| p["id"].as_u64() == Some(u64::from(id)))
                .ok_or_else(|| format!("bpftool does not list program {id}"))?;
            // bpftool leaves the fields out while they are zero.
            Ok(BpfRun {
                prog_id: id,
                run_cnt: prog["run_cnt"].as_u64().unwrap_or(0),
                run_time_ns: prog["run_time_ns"].as_u64().unwrap_or(0),
                source: "bpftool prog show -j",
            })
        }
        Err(bpftool_error) => {
            let fds = prog_fds(pid).map_err(|e| format!("{bpftool_error}; {e:#}"))?;
            let (_, fd) = fds
                .iter()
                .find(|(known, _)| *known == id)
                .ok_or_else(|| format!("{bpftool_error}; program {id} not open in the learner"))?;
            let info = std::fs::read_to_string(format!("/proc/{pid}/fdinfo/{fd}"))
                .map_err(|e| format!("{bpftool_error}; fdinfo: {e}"))?;
            Ok(BpfRun {
                prog_id: id,
                run_cnt: fdinfo_field(&info, "run_cnt").unwrap_or(0),
                run_time_ns: fdinfo_field(&info, "run_time_ns").unwrap_or(0),
                source: "/proc/PID/fdinfo (bpftool unavailable)",
            })
        }
    }
}

struct DbCounts {
    recorded: u64,
    distinct: u64,
    seen: u64,
    dropped: u64,
}

fn database_counts(db: &Path, cgroups: &BenchCgroups) -> Result<DbCounts> {
    let conn = rusqlite::Connection::open(db)
        .with_context(|| format!("opening the learned database {}", db.display()))?;
    let mut counts = DbCounts {
        recorded: 0,
        distinct: 0,
        seen: 0,
        dropped: 0,
    };
    for cg in &cgroups.0 {
        let (count, distinct): (i64, i64) = conn
            .query_row(
                "SELECT COALESCE(SUM(count), 0), COUNT(*) FROM executables WHERE workload_id IN \
                 (SELECT workload_id FROM cgroups WHERE path = ?1)",
                [&cg.path],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .context("counting recorded executables")?;
        counts.recorded += count as u64;
        counts.distinct += distinct as u64;
    }
    let (seen, dropped): (i64, i64) = conn
        .query_row(
            "SELECT COALESCE(SUM(events_seen), 0), COALESCE(SUM(events_dropped), 0) FROM sessions",
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .context("reading the session counters")?;
    counts.seen = seen as u64;
    counts.dropped = dropped as u64;
    Ok(counts)
}

// ---------------------------------------------------------------------------------
// Reporting.

struct Machine {
    cpus: usize,
    cpu_model: String,
    kernel: String,
    /// Other load on the host skews every wall-clock figure; say how much there was.
    loadavg: String,
}

impl Machine {
    fn probe() -> Machine {
        let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
        Machine {
            cpus: std::thread::available_parallelism().map_or(1, |n| n.get()),
            cpu_model: cpuinfo
                .lines()
                .find_map(|l| {
                    let (key, value) = l.split_once(':')?;
                    (key.trim() == "model name").then(|| value.trim().to_string())
                })
                .unwrap_or_else(|| "unknown".into()),
            kernel: nix::sys::utsname::uname()
                .map(|u| u.release().to_string_lossy().into_owned())
                .unwrap_or_else(|_| "unknown".into()),
            loadavg: std::fs::read_to_string("/proc/loadavg")
                .map(|l| l.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
                .unwrap_or_else(|_| "unknown".into()),
        }
    }
}

struct Report<'a> {
    machine: Machine,
    config: &'a Config,
    target: &'a ExecTarget,
    baseline: Storm,
    learned: Learned,
}

struct Verdict {
    name: String,
    pass: bool,
    detail: String,
}

impl Report<'_> {
    fn recorder_percent(&self) -> f64 {
        percent(self.learned.recorder_cpu, self.learned.storm.cpu())
    }

    fn bpf_total(&self) -> Option<Duration> {
        self.learned
            .bpf
            .as_ref()
            .ok()
            .map(|b| Duration::from_nanos(b.run_time_ns))
    }

    fn verdicts(&self) -> Vec<Verdict> {
        let l = &self.learned;
        let execs = l.storm.execs;
        vec![
            Verdict {
                name: "every exec recorded".into(),
                pass: l.recorded == execs,
                detail: format!("{} recorded of {} execs", l.recorded, execs),
            },
            Verdict {
                name: "zero drops at max exec rate".into(),
                pass: l.events_dropped == 0 && l.exit.success(),
                detail: format!(
                    "{} dropped, learner exit {}",
                    l.events_dropped,
                    exit_text(l.exit)
                ),
            },
            Verdict {
                name: format!("recorder CPU < {MAX_RECORDER_CPU_PERCENT}% of storm CPU"),
                pass: self.recorder_percent() < MAX_RECORDER_CPU_PERCENT,
                detail: format!("{:.2}%", self.recorder_percent()),
            },
        ]
    }

    /// (label, baseline, learning) rows shared by the text and markdown tables.
    fn storm_rows(&self) -> Vec<(&'static str, String, String)> {
        let (b, l) = (&self.baseline, &self.learned.storm);
        let per_exec = |s: &Storm| format!("{:.0} us", micros(s.cpu()) / s.execs as f64);
        vec![
            ("execs", b.execs.to_string(), l.execs.to_string()),
            (
                "failed children",
                b.failed.to_string(),
                l.failed.to_string(),
            ),
            ("wall time", secs(b.wall), secs(l.wall)),
            (
                "exec rate",
                format!("{:.0}/s", b.rate()),
                format!(
                    "{:.0}/s ({:+.1}% vs baseline)",
                    l.rate(),
                    (l.rate() / b.rate() - 1.0) * 100.0
                ),
            ),
            (
                "storm CPU (children + spawner)",
                format!(
                    "{} + {}",
                    secs(b.children_cpu.total()),
                    secs(b.spawner_cpu.total())
                ),
                format!(
                    "{} + {}",
                    secs(l.children_cpu.total()),
                    secs(l.spawner_cpu.total())
                ),
            ),
            ("storm CPU per exec", per_exec(b), per_exec(l)),
        ]
    }

    fn recorder_rows(&self) -> Vec<(&'static str, String)> {
        let l = &self.learned;
        let execs = l.storm.execs as f64;
        let mut rows = vec![
            ("hook", l.hook.clone()),
            ("events recorded in DB", l.recorded.to_string()),
            (
                "distinct executables",
                format!(
                    "{} ({} workloads)",
                    l.distinct_executables, self.config.cgroups
                ),
            ),
            ("events seen (sessions)", l.events_seen.to_string()),
            ("events dropped (sessions)", l.events_dropped.to_string()),
            ("learner exit", exit_text(l.exit)),
            (
                "recorder CPU (learner process)",
                format!(
                    "{:.0} ms = {:.2} ms per 1,000 execs = {:.2}% of storm CPU",
                    millis(l.recorder_cpu),
                    millis(l.recorder_cpu) * 1000.0 / execs,
                    self.recorder_percent()
                ),
            ),
            (
                "learner start-up CPU (load, verify)",
                format!(
                    "{:.0} ms per start",
                    millis(l.startup_cpu) / self.config.rounds as f64
                ),
            ),
            (
                "learner wakeups (voluntary switches)",
                format!(
                    "{} = {:.0} per 1,000 execs",
                    l.wakeups,
                    l.wakeups as f64 * 1000.0 / execs
                ),
            ),
            ("drain after SIGINT", format!("{:.0} ms", millis(l.drain))),
        ];
        match &l.bpf {
            Ok(b) => {
                let per_run = if b.run_cnt > 0 {
                    b.run_time_ns as f64 / b.run_cnt as f64
                } else {
                    0.0
                };
                rows.push((
                    "BPF program runs (run_cnt)",
                    format!(
                        "{} (prog id {}; counts every exec on the host)",
                        b.run_cnt, b.prog_id
                    ),
                ));
                rows.push((
                    "BPF run time",
                    format!(
                        "{:.0} ms = {:.0} ns per run = {:.2}% of storm CPU [{}]",
                        b.run_time_ns as f64 / 1e6,
                        per_run,
                        percent(Duration::from_nanos(b.run_time_ns), l.storm.cpu()),
                        b.source
                    ),
                ));
            }
            Err(e) => rows.push(("BPF run time", format!("not measured: {e}"))),
        }
        if let Some(bpf) = self.bpf_total() {
            rows.push((
                "recorder + BPF",
                format!(
                    "{:.2} ms per 1,000 execs = {:.2}% of storm CPU",
                    millis(l.recorder_cpu + bpf) * 1000.0 / execs,
                    percent(l.recorder_cpu + bpf, l.storm.cpu())
                ),
            ));
        }
        rows
    }

    fn storm_text(&self) -> String {
        let c = self.config;
        let rounds = match c.rounds {
            1 => String::new(),
            n => format!("{n} alternating rounds (figures are sums), "),
        };
        format!(
            "{} workers over {} cgroups, {rounds}{:.0} s per storm; target: {}",
            c.workers,
            c.cgroups,
            c.duration.as_secs_f64(),
            self.target.description
        )
    }

    fn table(&self) -> String {
        let m = &self.machine;
        let mut out = String::new();
        let _ = writeln!(out, "\nfingerprint learn under an exec storm");
        let _ = writeln!(
            out,
            "machine: {} CPUs, {}, kernel {}, load average before the run {}",
            m.cpus, m.cpu_model, m.kernel, m.loadavg
        );
        let _ = writeln!(out, "storm:   {}\n", self.storm_text());
        let _ = writeln!(out, "{:<32} {:>18}   learning", "", "baseline");
        for (label, b, l) in self.storm_rows() {
            let _ = writeln!(out, "{label:<32} {b:>18}   {l}");
        }
        let _ = writeln!(out);
        for (label, value) in self.recorder_rows() {
            let _ = writeln!(out, "{label:<36} {value}");
        }
        let _ = writeln!(out);
        for v in self.verdicts() {
            let mark = if v.pass { "PASS" } else { "MISS" };
            let _ = writeln!(out, "{mark}  {:<42} {}", v.name, v.detail);
        }
        out
    }

    fn markdown(&self) -> String {
        let m = &self.machine;
        let mut out = String::new();
        let _ = writeln!(out, "### Run of {}\n", utc_now());
        let _ = writeln!(
            out,
            "- Machine: {} CPUs (`nproc`), {}, kernel {}; load average before the run {}",
            m.cpus, m.cpu_model, m.kernel, m.loadavg
        );
        let _ = writeln!(out, "- Storm: {}\n", self.storm_text());
        let _ = writeln!(out, "| | baseline | learning |\n|---|---:|---:|");
        for (label, b, l) in self.storm_rows() {
            let _ = writeln!(out, "| {label} | {b} | {l} |");
        }
        let _ = writeln!(out, "\n| recorder | |\n|---|---|");
        for (label, value) in self.recorder_rows() {
            let _ = writeln!(out, "| {label} | {value} |");
        }
        let _ = writeln!(out);
        for v in self.verdicts() {
            let mark = if v.pass { "PASS" } else { "MISS" };
            let _ = writeln!(out, "- **{mark}** {}: {}", v.name, v.detail);
        }
        out
    }
}

fn append_markdown(path: &Path, section: &str) -> Result<()> {
    let mut file = OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .with_context(|| format!("opening {} to append", path.display()))?;
    writeln!(file, "\n{section}").with_context(|| format!("writing {}", path.display()))
}

fn exit_text(status: ExitStatus) -> String {
    match (status.code(), status.signal()) {
        (Some(code), _) => code.to_string(),
        (None, Some(sig)) => format!("killed by signal {sig}"),
        _ => status.to_string(),
    }
}

fn percent(part: Duration, whole: Duration) -> f64 {
    if whole.is_zero() {
        return 0.0;
    }
    part.as_secs_f64() / whole.as_secs_f64() * 100.0
}

fn secs(d: Duration) -> String {
    format!("{:.2} s", d.as_secs_f64())
}

fn millis(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

fn micros(d: Duration) -> f64 {
    d.as_secs_f64() * 1e6
}

/// "YYYY-MM-DD HH:MM UTC" without a date crate (civil-from-days, proleptic Gregorian).
fn utc_now() -> String {
    let secs = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64);
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02} {:02}:{:02} UTC",
        rem / 3_600,
        rem % 3_600 / 60
    )
}
