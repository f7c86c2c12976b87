//! `fingerprint learn`: attach the learning program, turn each exec event into an
//! observation of the workload its cgroup belongs to, and write them to the database
//! at least once a second. Stopping (Ctrl-C, SIGTERM, --duration) drains every event
//! already in the ring buffer before the session is closed, so nothing is lost.

use std::cell::RefCell;
use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};

use crate::bpf::learn::{HookChoice, LearnProbe, POLL_INTERVAL};
use crate::bpf::readback::LearnCounters;
use crate::content::{self, ContentHasher, HashStats, Sha256};
use crate::event::{ExecEvent, Hook, KernelPath};
use crate::metrics::{self, learn::LearnMetrics, Health};
use crate::progress::Progress;
use crate::running::running_files;
use crate::storage::{Batch, Database, LearnedWorkload, Observation, RunningProcess, SessionInfo};
use crate::workload::cgroup::CgroupV2;
use crate::workload::kubeapi::ApiSettings;
use crate::workload::resolver::CgroupNames;
use crate::workload::runtime::{ContainerMetadata, EngineSettings};
use crate::workload::WorkloadId;

/// How often observations are committed: `kill -9` loses at most this much.
pub const FLUSH_INTERVAL: Duration = Duration::from_secs(1);

/// The live display names a workload as still learning while it ran an executable new
/// to the database this recently.
pub const STILL_LEARNING: Duration = Duration::from_secs(60);

pub struct LearnOptions {
    pub db: PathBuf,
    pub duration: Option<Duration>,
    /// Cgroup directories to learn (with everything below them); empty: all.
    pub cgroups: Vec<PathBuf>,
    pub hook: HookChoice,
    pub quiet: bool,
    /// Where the container engines' metadata is, and how containers are named.
    pub engines: EngineSettings,
    /// Where the owners of Kubernetes pods come from.
    pub kube_api: ApiSettings,
    /// Serve /metrics and /healthz here (see `crate::metrics`).
    pub metrics_addr: Option<String>,
}

/// What a learning run did, for the closing summary.
#[derive(Debug, Clone)]
pub struct LearnSummary {
    pub hook: Hook,
    pub elapsed: Duration,
    pub counters: LearnCounters,
    pub recorded: u64,
    /// Files of processes already running when learning started (see `running`).
    pub running: u64,
    pub undecodable: u64,
    pub workloads: usize,
    pub executables: usize,
    pub unnamed_cgroups: usize,
    /// Container cgroups named from their path because no runtime metadata was found.
    pub metadata_fallbacks: usize,
    /// Containers named from their pod names because the Kubernetes API failed.
    pub api_fallbacks: u64,
    /// Executed files whose content was hashed, and what that cost.
    pub hashing: HashStats,
    /// Execs recorded without a digest: the file was gone or had changed before it
    /// could be hashed (or, at sched_process_exec, a script: see `executed_files`).
    pub content_unknown: u64,
}

/// Learn until `stop` is set or the duration elapses.
pub fn run(opts: &LearnOptions, stop: Arc<AtomicBool>) -> Result<LearnSummary> {
    crate::bpf::preflight("fingerprint learn")?;
    let cgroups = CgroupV2::discover()?;
    let watched = opts
        .cgroups
        .iter()
        .map(|path| {
            cgroups
                .id_of(path)
                .with_context(|| format!("--cgroup {}", path.display()))
        })
        .collect::<Result<Vec<u64>>>()?;
    let mut db = Database::open(&opts.db)
        .with_context(|| format!("opening the learning database {}", opts.db.display()))?;
    let metadata = ContainerMetadata::from_flags(&opts.engines, &opts.kube_api)?;
    let listener = opts
        .metrics_addr
        .as_deref()
        .map(metrics::listen)
        .transpose()?;

    let known = db
        .learned_workloads()
        .with_context(|| format!("reading what {} already holds", opts.db.display()))?;
    let recorder = Rc::new(RefCell::new(Recorder::new(cgroups, metadata, &known)));

    let probe = LearnProbe::attach(opts.hook, &watched)?;
    if !opts.quiet {
        if let Some(reason) = probe.lsm_refusal() {
            eprintln!(
                "fingerprint: the BPF LSM is not usable on this kernel, learning at {} \
                 instead (what is learned is the same files; scripts are named as typed)\n  \
                 reason: {}",
                probe.hook(),
                first_line(reason)
            );
        }
    }
    // After the exec program is attached: a process is in this snapshot, or its exec
    // is an event (or both). Events wait in the ring buffer meanwhile.
    let running = ExecEvent::decode_all(&probe.running_processes()?)
        .context("decoding the processes already running")?;
    let already_running = recorder.borrow_mut().on_running(&running, &watched);
    // Said once every process is covered: what starts from now on is an exec event.
    if !opts.quiet {
        eprintln!(
            "fingerprint: learning at {} into {} ({already_running} processes were already \
             running there)",
            probe.hook(),
            opts.db.display()
        );
    }
    let session = db.begin_session(&session_info(probe.hook()))?;
    let health = Arc::new(Health::default());
    health.set_attached(true);
    let learn_metrics = match listener {
        Some(listener) => {
            let (registry, learn_metrics) = LearnMetrics::new(probe.map_handles()?);
            metrics::start(listener, registry, Arc::clone(&health), opts.quiet)?;
            Some(learn_metrics)
        }
        None => None,
    };

    let sink = Rc::clone(&recorder);
    let ring = probe.events(move |data| {
        sink.borrow_mut().on_event(data);
        0
    })?;

    let progress = Progress::new(opts.quiet);
    let started = Instant::now();
    let mut last_flush = Instant::now();
    loop {
        let done =
            stop.load(Ordering::SeqCst) || opts.duration.is_some_and(|d| started.elapsed() >= d);
        if done {
            break;
        }
        // The kernel wakes us only when a lot is waiting (FP_WAKEUP_BYTES), so read
        // what has arrived after every poll. EINTR from a signal is expected here.
        let _ = ring.poll(POLL_INTERVAL);
        ring.consume().context("reading exec events")?;
        health.ring_read();
        if let Some(m) = &learn_metrics {
            m.recorded(recorder.borrow().recorded);
        }
        if last_flush.elapsed() >= FLUSH_INTERVAL {
            let counters = probe.counters()?;
            recorder
                .borrow_mut()
                .flush(&mut db, session, counters, None)?;
            let totals = recorder.borrow();
            let still_learning =
                totals.still_learning(now_ms() - STILL_LEARNING.as_millis() as i64);
            progress.update(
                counters,
                totals.workloads.len(),
                totals.executables.len(),
                &still_learning,
            );
            last_flush = Instant::now();
        }
    }
    // Everything the kernel produced before we stopped is in the ring: drain it.
    health.set_attached(false);
    ring.consume().context("draining the event ring buffer")?;
    let counters = probe.counters()?;
    let ended = now_ms();
    recorder
        .borrow_mut()
        .flush(&mut db, session, counters, Some(ended))?;
    progress.finish();
    let recorder = recorder.borrow();
    Ok(LearnSummary {
        hook: probe.hook(),
        elapsed: started.elapsed(),
        counters,
        recorded: recorder.recorded,
        running: recorder.running,
        undecodable: recorder.undecodable,
        workloads: recorder.workloads.len(),
        executables: recorder.executables.len(),
        unnamed_cgroups: recorder.names.unnamed(),
        metadata_fallbacks: recorder.names.metadata_fallbacks(),
        api_fallbacks: recorder
            .names
            .metadata()
            .api_stats()
            .map_or(0, |s| s.failures + s.skipped),
        hashing: recorder.content.stats(),
        content_unknown: recorder.content_unknown,
    })
}

fn first_line(text: &str) -> &str {
    text.lines().next().unwrap_or(text)
}

fn session_info(hook: Hook) -> SessionInfo {
    let (host, kernel) = host_and_kernel();
    SessionInfo {
        host,
        kernel,
        hook: hook.name().into(),
        started_at_ms: now_ms(),
    }
}

/// This node's host name and kernel release.
pub(crate) fn host_and_kernel() -> (String, String) {
    let uname = nix::sys::utsname::uname().ok();
    (
        nix::unistd::gethostname()
            .map(|h| h.to_string_lossy().into_owned())
            .unwrap_or_else(|_| "unknown".into()),
        uname
            .map(|u| u.release().to_string_lossy().into_owned())
            .unwrap_or_else(|| "unknown".into()),
    )
}

pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// Converts BPF clock (CLOCK_MONOTONIC) readings to wall-clock milliseconds.
pub(crate) struct Clock {
    offset_ns: i128,
}

impl Clock {
    pub(crate) fn new() -> Clock {
        use nix::time::{clock_gettime, ClockId};
        let ns = |id| {
            clock_gettime(id)
                .map(|t| t.tv_sec() as i128 * 1_000_000_000 + t.tv_nsec() as i128)
                .unwrap_or(0)
        };
        Clock {
            offset_ns: ns(ClockId::CLOCK_REALTIME) - ns(ClockId::CLOCK_MONOTONIC),
        }
    }

    pub(crate) fn wall_ms(&self, ktime_ns: u64) -> i64 {
        ((ktime_ns as i128 + self.offset_ns) / 1_000_000) as i64
    }
}

/// Which executable of which workload a digest belongs to.
type ContentKey = (WorkloadId, Vec<u8>, u32);

/// Turns events into observations and keeps the running totals.
pub struct Recorder {
    names: CgroupNames,
    clock: Clock,
    batch: Batch,
    content: ContentHasher<ContentKey>,
    /// The cgroup v2 mount: where a cgroup's live processes are listed.
    cgroup_mount: PathBuf,
    pub content_unknown: u64,
    pub recorded: u64,
    pub running: u64,
    pub undecodable: u64,
    pub workloads: HashSet<WorkloadId>,
    pub executables: HashSet<(WorkloadId, Vec<u8>)>,
    /// Every (workload name, path, flags) known, from the database and since.
    known: HashSet<(String, Vec<u8>, u32)>,
    /// When each workload last ran an executable new to `known`.
    last_new_ms: HashMap<WorkloadId, i64>,
}

impl Recorder {
    fn new(cgroups: CgroupV2, metadata: ContainerMetadata, known: &[LearnedWorkload]) -> Recorder {
        let known = known
            .iter()
            .flat_map(|w| {
                w.executables
                    .iter()
                    .map(|e| (w.name.clone(), e.path.clone(), e.path_flags))
            })
            .collect();
        Recorder {
            cgroup_mount: cgroups.mount_point().to_path_buf(),
            names: CgroupNames::with_metadata(cgroups, metadata),
            clock: Clock::new(),
            batch: Batch::default(),
            content: ContentHasher::new(),
            content_unknown: 0,
            recorded: 0,
            running: 0,
            undecodable: 0,
            workloads: HashSet::new(),
            executables: HashSet::new(),
            known,
            last_new_ms: HashMap::new(),
        }
    }

    /// Note that `workload` ran `file`, and when, if it is new to the database.
    fn note(&mut self, workload: &WorkloadId, file: &KernelPath, time_ms: i64) {
        self.workloads.insert(workload.clone());
        self.executables
            .insert((workload.clone(), file.bytes.clone()));
        if self
            .known
            .insert((workload.name(), file.bytes.clone(), file.flags))
        {
            self.last_new_ms.insert(workload.clone(), time_ms);
        }
    }

    /// Workloads that ran an executable new to the database since `since_ms`, by name.
    pub fn still_learning(&self, since_ms: i64) -> Vec<String> {
        let mut names: Vec<String> = self
            .last_new_ms
            .iter()
            .filter(|(_, &ms)| ms >= since_ms)
            .map(|(w, _)| w.name())
            .collect();
        names.sort();
        names
    }

    /// Record the processes already running in the learned cgroups (`watched` ids
    /// and below; empty: all), except this learner itself; returns how many.
    fn on_running(&mut self, processes: &[ExecEvent], watched: &[u64]) -> usize {
        let watched: Vec<String> = watched.iter().map(|id| self.names.name(*id).0).collect();
        let under = |path: &str| {
            watched.is_empty()
                || watched.iter().any(|w| {
                    w == "/"
                        || path == w
                        || path
                            .strip_prefix(w.as_str())
                            .is_some_and(|r| r.starts_with('/'))
                })
        };
        let seen_ms = now_ms();
        let mut recorded = 0;
        for process in processes.iter().filter(|p| p.pid != std::process::id()) {
            let (cgroup_path, workload) = self.names.name(process.cgroup_id);
            if !under(&cgroup_path) {
                continue;
            }
            recorded += 1;
            for (index, file) in running_files(process).into_iter().enumerate() {
                let version = if index == 0 {
                    process.exe_version
                } else {
                    None
                };
                self.look_up_content(process, &cgroup_path, &workload, &file, version);
                self.note(&workload, &file, seen_ms);
                self.batch.add_running(RunningProcess {
                    workload: workload.clone(),
                    cgroup_id: process.cgroup_id,
                    cgroup_path: cgroup_path.clone(),
                    path: file.bytes,
                    path_flags: file.flags,
                    seen_ms,
                });
                self.running += 1;
            }
        }
        recorded
    }

    fn on_event(&mut self, data: &[u8]) {
        let event = match ExecEvent::decode(data) {
            Ok(event) => event,
            Err(_) => {
                self.undecodable += 1;
                return;
            }
        };
        let (cgroup_path, workload) = self.names.name(event.cgroup_id);
        let time_ms = self.clock.wall_ms(event.ktime_ns);
        for (index, file) in event.executed_files().into_iter().enumerate() {
            // Only the file executed at the hook has a version (a script seen at
            // sched_process_exec is no longer held by the kernel).
            let version = if index == 0 { event.exe_version } else { None };
            self.look_up_content(&event, &cgroup_path, &workload, &file, version);
            self.note(&workload, &file, time_ms);
            self.batch.add(Observation {
                workload: workload.clone(),
                cgroup_id: event.cgroup_id,
                cgroup_path: cgroup_path.clone(),
                path: file.bytes,
                path_flags: file.flags,
                parent: event.parent.bytes.clone(),
                uid: event.uid,
                time_ms,
            });
            self.recorded += 1;
        }
    }

    /// Ask for the digest of what `event` ran as `file`; it lands in the batch now
    /// (known version, or unknown) or when the worker has hashed it.
    fn look_up_content(
        &mut self,
        event: &ExecEvent,
        cgroup_path: &str,
        workload: &WorkloadId,
        file: &KernelPath,
        version: Option<content::FileVersion>,
    ) {
        let key = (workload.clone(), file.bytes.clone(), file.flags);
        let Some(version) = version else {
            return self.record_content(key, None);
        };
        // Only a version not seen before is opened; a known one costs a map lookup.
        let mount = &self.cgroup_mount;
        let open = || {
            let cgroup_dir = mount.join(cgroup_path.trim_start_matches('/'));
            content::open_executed(event.pid, event.ppid, &file.bytes, &cgroup_dir, &version)
        };
        if let Some((key, digest)) = self.content.lookup(version, key, open) {
            self.record_content(key, digest);
        }
    }

    fn record_content(&mut self, (workload, path, flags): ContentKey, digest: Option<Sha256>) {
        self.content_unknown += u64::from(digest.is_none());
        self.batch.add_content(workload, path, flags, digest);
    }

    fn flush(
        &mut self,
        db: &mut Database,
        session: i64,
        counters: LearnCounters,
        ended_at_ms: Option<i64>,
    ) -> Result<()> {
        // The last flush waits for every file still being hashed.
        let resolved = match ended_at_ms {
            Some(_) => self.content.finish(),
            None => self.content.poll(),
        };
        for (key, digest) in resolved {
            self.record_content(key, digest);
        }
        let batch = std::mem::take(&mut self.batch);
        db.record(
            session,
            &batch,
            counters.events,
            counters.dropped,
            ended_at_ms,
        )
        .with_context(|| format!("writing to {}", db.path().display()))
    }
}
