//! The enforcement process: load, bind, attach, then report violations until stopped.

use std::collections::{BTreeSet, HashMap};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, Receiver};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use libbpf_rs::RingBuffer;

use super::binding::{bind_existing, BindingPolicy};
use super::hold::{self, Holds};
use super::maps::{ApplyReport, MapState};
use super::plan::{plan, MapSizes, Mode, PlanError, PlannedProfile, PolicyInput, ProfileIds};
use super::report::ViolationSink;
use super::source::load_inputs;
use crate::bpf::enforce::{
    EnforceCounters, EnforceProbe, Mechanism, MechanismChoice, PENDING_PROFILE,
};
use crate::bpf::pinned;
use crate::digest::DigestKey;
use crate::event::{Action, ExecEvent};
use crate::storage::Database;
use crate::workload::cgroup::CgroupV2;
use crate::workload::kubeapi::ApiSettings;
use crate::workload::resolver::CgroupNames;
use crate::workload::runtime::ContainerMetadata;

pub struct EnforceOptions {
    pub profiles: PathBuf,
    pub mechanism: MechanismChoice,
    /// Force every profile into this mode; None: each profile's own.
    pub mode: Option<Mode>,
    /// Bind unprofiled cgroups at or below this cgroup path to deny-all.
    pub default_deny_scope: Option<String>,
    pub events: Option<PathBuf>,
    pub db: Option<PathBuf>,
    pub max_cgroups: u32,
    pub allow_capacity: Option<u32>,
    /// Pin programs and maps here, so enforcement outlives this process.
    pub pin_dir: Option<PathBuf>,
    /// With `pin_dir`: return once enforcement is pinned, instead of reporting.
    pub detach: bool,
    /// containerd state directories to name containers from; empty: the default.
    pub containerd_state: Vec<PathBuf>,
    /// Where the owners of Kubernetes pods come from.
    pub kube_api: ApiSettings,
    /// Cgroups where containers start (new cgroups below them are held until named);
    /// empty: /kubepods and /kubepods.slice where they exist.
    pub container_scopes: Vec<String>,
}

/// Flags set by signal handlers.
pub struct Signals {
    pub stop: Arc<AtomicBool>,
    pub reload: Arc<AtomicBool>,
}

#[derive(Debug, Clone)]
pub struct EnforceSummary {
    pub mechanism: Mechanism,
    pub profiles: usize,
    pub counters: EnforceCounters,
    pub reported: u64,
    pub reloads: usize,
    /// Execs held in new container cgroups, and how many of those were killed.
    pub held: u64,
    pub held_killed: u64,
    pub elapsed: Duration,
}

/// Everything enforcement keeps besides the loaded program itself.
struct Enforcer {
    state: MapState,
    ids: ProfileIds,
    key: DigestKey,
    mount: PathBuf,
    default_deny_scope: Option<String>,
    container_scopes: Vec<String>,
    metadata: ContainerMetadata,
    /// Profile id by workload name, and each profile's own mode, as last applied.
    by_name: HashMap<String, u32>,
    modes: HashMap<u32, Mode>,
}

impl Enforcer {
    /// Make the maps hold these profiles and rebind existing cgroups to them.
    fn apply(
        &mut self,
        probe: &EnforceProbe,
        inputs: &[PolicyInput],
    ) -> Result<(ApplyReport, usize)> {
        let planned = plan(inputs, &self.key, &mut self.ids)?;
        self.apply_planned(probe, inputs, planned)
    }

    /// `apply` for profiles already planned (at start, to size the maps).
    fn apply_planned(
        &mut self,
        probe: &EnforceProbe,
        inputs: &[PolicyInput],
        planned: Vec<PlannedProfile>,
    ) -> Result<(ApplyReport, usize)> {
        let report = self.state.apply(probe, planned)?;
        let by_name: HashMap<String, u32> = inputs
            .iter()
            .filter_map(|i| {
                self.state
                    .profile_id(&i.name)
                    .map(|id| (i.name.clone(), id))
            })
            .collect();
        self.modes = inputs
            .iter()
            .filter_map(|i| by_name.get(&i.name).map(|id| (*id, i.mode)))
            .collect();
        self.by_name = by_name;
        let bound = bind_existing(probe, &self.mount, &self.policy(), &self.metadata)?;
        Ok((report, bound))
    }

    fn policy(&self) -> BindingPolicy<'_> {
        BindingPolicy {
            profiles: &self.by_name,
            default_deny_scope: self.default_deny_scope.as_deref(),
            container_scopes: &self.container_scopes,
        }
    }

    fn holds<'a>(&'a self, probe: &'a EnforceProbe, mode_override: Option<Mode>) -> Holds<'a> {
        Holds {
            probe,
            mount: &self.mount,
            metadata: &self.metadata,
            policy: self.policy(),
            modes: &self.modes,
            mode_override,
        }
    }
}

pub fn run(opts: &EnforceOptions, signals: &Signals) -> Result<EnforceSummary> {
    let Started {
        probe,
        enforcer,
        db,
        out,
        cgroups,
        started_at,
    } = start(opts)?;
    if opts.detach {
        return Ok(EnforceSummary {
            mechanism: probe.mechanism(),
            profiles: enforcer.state.profiles(),
            counters: probe.counters()?,
            reported: 0,
            reloads: 0,
            held: 0,
            held_killed: 0,
            elapsed: Duration::ZERO,
        });
    }
    if !enforcer.container_scopes.is_empty() {
        eprintln!(
            "fingerprint: new containers below {} are held at their first exec until named \
             from {}",
            enforcer.container_scopes.join(", "),
            enforcer
                .metadata
                .state_dirs()
                .iter()
                .map(|d| d.display().to_string())
                .collect::<Vec<_>>()
                .join(", ")
        );
    }
    let names = CgroupNames::with_metadata(cgroups, enforcer.metadata.clone());
    let sink = ViolationSink::new(out, db, names, probe.mechanism());
    let mut session = Session::new(opts, &probe, enforcer, sink, started_at)?;
    while !signals.stop.load(Ordering::SeqCst) {
        session.poll()?;
        if signals.reload.swap(false, Ordering::SeqCst) {
            session.reload()?;
        }
    }
    session.drain()
}

/// What `start` leaves running: the program attached (and pinned with --pin), its
/// maps holding the profiles, and where violations are to go.
struct Started {
    probe: EnforceProbe,
    enforcer: Enforcer,
    db: Option<Database>,
    out: Box<dyn Write>,
    cgroups: CgroupV2,
    started_at: String,
}

/// Load, bind, attach (and pin): from its return on, every exec is enforced.
fn start(opts: &EnforceOptions) -> Result<Started> {
    crate::bpf::preflight("fingerprint enforce")?;
    // A pinned enforcement is taken over, with no gap (see `pinned`).
    let takeover = opts.pin_dir.as_deref().filter(|d| pinned::is_pinned(d));
    let previous = takeover.and_then(pinned::read_state);
    let started_at = humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string();
    let inputs = load_inputs(&opts.profiles)?;
    let key = DigestKey::random().context("reading random bytes for the digest key")?;
    let mut ids = previous
        .as_ref()
        .map(|p| ProfileIds::resume(p.profile_ids.clone()))
        .unwrap_or_default();
    let planned = plan(&inputs, &key, &mut ids)?;
    let sizes = MapSizes::for_profiles(&planned, opts.allow_capacity, opts.max_cgroups);
    let needed: usize = planned.iter().map(|p| p.digests.len()).sum();
    if needed > sizes.allow as usize {
        // Before anything is loaded or attached.
        return Err(PlanError::AllowlistFull {
            needed,
            capacity: sizes.allow,
        }
        .into());
    }
    let cgroups = CgroupV2::discover()?;
    let db = opts
        .db
        .as_deref()
        .map(|p| Database::open(p).with_context(|| format!("opening {}", p.display())))
        .transpose()?;
    let out = event_output(opts.events.as_deref())?;
    let metadata = ContainerMetadata::from_flags(&opts.containerd_state, &opts.kube_api)?;

    let mut probe = EnforceProbe::load(opts.mechanism, sizes, takeover)?;
    if let Some(reason) = probe.lsm_refusal() {
        warn_fallback(reason);
    }
    probe.write_config(&key, opts.mode)?;
    let mut enforcer = Enforcer {
        state: MapState::new(key, sizes.allow),
        ids,
        key,
        mount: cgroups.mount_point().to_path_buf(),
        default_deny_scope: opts.default_deny_scope.clone(),
        // Held execs wait for this process: a detached enforcement must not hold any.
        container_scopes: match opts.detach {
            true => Vec::new(),
            false => container_scopes(&opts.container_scopes, cgroups.mount_point()),
        },
        metadata,
        by_name: HashMap::new(),
        modes: HashMap::new(),
    };
    // Track new cgroups before the scan, so none falls between the two.
    probe.attach_cgroup_tracking()?;
    if let Some(dir) = takeover.filter(|_| !enforcer.container_scopes.is_empty()) {
        for cgroup in pinned::pending_cgroups(dir)? {
            probe.bind(cgroup, PENDING_PROFILE)?;
        }
    }
    let (_, bound) = enforcer.apply_planned(&probe, &inputs, planned)?;
    probe.attach_exec_hook()?;
    let mechanism = probe.mechanism();
    if let Some(dir) = &opts.pin_dir {
        probe.pin(dir)?;
        write_pinned_state(opts, dir, mechanism, &inputs, &enforcer.ids, &started_at)?;
        if takeover.is_some() {
            announce_takeover(dir, previous.as_ref());
        }
        eprintln!(
            "fingerprint: pinned at {}: enforcement continues if this process exits; \
             `fingerprint stop` removes it",
            dir.display()
        );
    }
    eprintln!(
        "fingerprint: enforcing {} profiles ({} allowlist entries, {} cgroups bound) at {} \
         ({} mechanism{})",
        enforcer.state.profiles(),
        enforcer.state.entries(),
        bound,
        mechanism.hook(),
        mechanism.name(),
        opts.mode
            .map(|m| format!(", every profile in {m} mode"))
            .unwrap_or_default()
    );
    Ok(Started {
        probe,
        enforcer,
        db,
        out,
        cgroups,
        started_at,
    })
}

/// An enforcement session: reads the violations of a started enforcement, reports
/// them, decides on held execs, and reloads profiles, until drained.
struct Session<'p> {
    opts: &'p EnforceOptions,
    probe: &'p EnforceProbe,
    ring: RingBuffer<'p>,
    /// Ring buffer records, handed over by the ring's callback (which cannot borrow
    /// the session) and handled after each read.
    records: Receiver<Vec<u8>>,
    enforcer: Enforcer,
    sink: ViolationSink,
    /// Profile names by id (see `profile_names`).
    profile_names: HashMap<u32, String>,
    /// Held execs read, not decided yet.
    held: Vec<ExecEvent>,
    held_decided: u64,
    held_killed: u64,
    reloads: usize,
    started: Instant,
    started_at: String,
    last_flush: Instant,
}

impl<'p> Session<'p> {
    fn new(
        opts: &'p EnforceOptions,
        probe: &'p EnforceProbe,
        enforcer: Enforcer,
        sink: ViolationSink,
        started_at: String,
    ) -> Result<Session<'p>> {
        let (sender, records) = mpsc::channel();
        let ring = probe.violations(move |data| match sender.send(data.to_vec()) {
            Ok(()) => 0,
            Err(_) => -1,
        })?;
        let profile_names = profile_names(&enforcer.ids);
        Ok(Session {
            opts,
            probe,
            ring,
            records,
            enforcer,
            sink,
            profile_names,
            held: Vec::new(),
            held_decided: 0,
            held_killed: 0,
            reloads: 0,
            started: Instant::now(),
            started_at,
            last_flush: Instant::now(),
        })
    }

    /// Wait a moment for violations, report them, decide on held execs.
    fn poll(&mut self) -> Result<()> {
        // EINTR from a signal is expected here; the caller re-checks the flags.
        let _ = self.ring.poll(Duration::from_millis(100));
        self.handle_records()?;
        self.resolve_held()?;
        if self.last_flush.elapsed() >= Duration::from_secs(1) {
            self.sink.flush()?;
            self.last_flush = Instant::now();
        }
        Ok(())
    }

    /// Report each record read; keep held execs for `resolve_held`.
    fn handle_records(&mut self) -> Result<()> {
        let names = &self.profile_names;
        for data in self.records.try_iter() {
            let event = self
                .sink
                .on_event(&data, |id| names.get(&id).cloned())
                // A violation that cannot be written stops enforcement loudly.
                .context("reporting a violation")?;
            self.held.extend(event);
        }
        Ok(())
    }

    /// Decide on every held exec whose task has stopped.
    fn resolve_held(&mut self) -> Result<()> {
        let pids: BTreeSet<u32> = self.held.iter().map(|e| e.pid).collect();
        if pids.is_empty() {
            return Ok(());
        }
        // An exec may be held at several levels (with the LSM: a script, then its
        // interpreter). Once each task has stopped, its exec has written all its
        // events: read them, and decide on a task only with all of them, so that
        // no level runs before every level is decided.
        for pid in &pids {
            hold::wait_until_stopped(*pid, Duration::from_secs(1));
        }
        self.ring.consume().context("reading held execs")?;
        self.handle_records()?;
        let (ready, later): (Vec<ExecEvent>, Vec<ExecEvent>) = std::mem::take(&mut self.held)
            .into_iter()
            .partition(|e| pids.contains(&e.pid));
        // Tasks first held during that read: next round, once they have stopped.
        self.held = later;
        let holds = self.enforcer.holds(self.probe, self.opts.mode);
        let names = &self.profile_names;
        for (pid, task) in hold::by_task(ready) {
            let mut outcomes = Vec::new();
            for event in &task {
                let path = self.sink.cgroup_path(event.cgroup_id);
                let outcome = holds
                    .decide(event, path.as_deref())
                    .context("deciding on a held exec")?;
                self.held_decided += 1;
                if let Some(verdict) = outcome.verdict() {
                    if verdict.action == Action::Killed {
                        self.held_killed += 1;
                    }
                    self.sink
                        .report(event, verdict, |id| names.get(&id).cloned())?;
                }
                outcomes.push(outcome);
            }
            hold::release(pid, &outcomes);
        }
        Ok(())
    }

    /// Load the profiles again (SIGHUP). A bad profile must not stop enforcement:
    /// the loaded set stays.
    fn reload(&mut self) -> Result<()> {
        match reload(&mut self.enforcer, self.probe, &self.opts.profiles) {
            Ok(inputs) => {
                self.profile_names = profile_names(&self.enforcer.ids);
                if let Some(dir) = &self.opts.pin_dir {
                    write_pinned_state(
                        self.opts,
                        dir,
                        self.probe.mechanism(),
                        &inputs,
                        &self.enforcer.ids,
                        &self.started_at,
                    )?;
                }
                self.reloads += 1;
            }
            Err(e) => eprintln!(
                "fingerprint: reload failed, still enforcing the previous profiles: {e:#}"
            ),
        }
        Ok(())
    }

    /// Read what is left, decide on every held exec, and write everything out.
    fn drain(mut self) -> Result<EnforceSummary> {
        self.ring.consume().context("draining violation events")?;
        self.handle_records()?;
        // No task may stay stopped because we stopped: decide on every held exec (a
        // round leaves tasks first held during it to the next).
        for _ in 0..10 {
            if self.held.is_empty() {
                break;
            }
            self.resolve_held()?;
        }
        self.sink.flush()?;
        Ok(EnforceSummary {
            mechanism: self.probe.mechanism(),
            profiles: self.enforcer.state.profiles(),
            counters: self.probe.counters()?,
            reported: self.sink.reported,
            reloads: self.reloads,
            held: self.held_decided,
            held_killed: self.held_killed,
            elapsed: self.started.elapsed(),
        })
    }
}

fn reload(
    enforcer: &mut Enforcer,
    probe: &EnforceProbe,
    profiles: &Path,
) -> Result<Vec<PolicyInput>> {
    let inputs = load_inputs(profiles)?;
    let (report, bound) = enforcer.apply(probe, &inputs)?;
    eprintln!(
        "fingerprint: reloaded {}: {} added, {} changed, {} removed, {} unchanged; {} cgroups bound",
        profiles.display(),
        report.added.len(),
        report.changed.len(),
        report.removed.len(),
        report.unchanged,
        bound
    );
    Ok(inputs)
}

/// Profile names by every id ever assigned: an event read late (after a reload, or
/// carried over by a takeover) may name a profile no longer loaded.
fn profile_names(ids: &ProfileIds) -> HashMap<u32, String> {
    ids.assigned().into_iter().map(|(n, id)| (id, n)).collect()
}

fn announce_takeover(dir: &Path, previous: Option<&pinned::PinnedState>) {
    match previous {
        Some(p) => eprintln!(
            "fingerprint: took over the enforcement pinned at {} (started {} by pid {}) \
             with no gap: its programs are replaced, its unread events are read here",
            dir.display(),
            p.started_at,
            p.pid
        ),
        None => eprintln!(
            "fingerprint: took over the enforcement pinned at {} with no gap; its state \
             file {} is missing, so its unread events may name the wrong profiles",
            dir.display(),
            pinned::state_file(dir).display()
        ),
    }
}

/// Record what is pinned, for `status` and for the next takeover.
fn write_pinned_state(
    opts: &EnforceOptions,
    dir: &Path,
    mechanism: Mechanism,
    inputs: &[PolicyInput],
    ids: &ProfileIds,
    started_at: &str,
) -> Result<()> {
    Ok(pinned::write_state(&pinned::PinnedState {
        pin_dir: dir.to_path_buf(),
        profiles: opts.profiles.clone(),
        mechanism: mechanism.name().into(),
        hook: mechanism.hook().into(),
        started_at: started_at.to_string(),
        pid: std::process::id(),
        profile_names: inputs.iter().map(|i| i.name.clone()).collect(),
        profile_ids: ids.assigned(),
    })?)
}

/// The container scopes: as given, else kubelet's roots that exist on this node.
fn container_scopes(given: &[String], mount: &Path) -> Vec<String> {
    if !given.is_empty() {
        return given
            .iter()
            .map(|s| format!("/{}", s.trim_matches('/')))
            .collect();
    }
    ["/kubepods", "/kubepods.slice"]
        .into_iter()
        .filter(|scope| mount.join(&scope[1..]).is_dir())
        .map(str::to_string)
        .collect()
}

fn event_output(path: Option<&Path>) -> Result<Box<dyn Write>> {
    Ok(match path {
        None => Box::new(std::io::stdout()),
        Some(path) => Box::new(
            std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(path)
                .with_context(|| format!("opening --events {}", path.display()))?,
        ),
    })
}

/// Kill mode is not an LSM denial; nobody should learn that from a footnote.
fn warn_fallback(reason: &str) {
    eprintln!(
        "fingerprint: WARNING: the BPF LSM is not available on this kernel; falling back to \
         KILL MODE (tp_btf/sched_process_exec + SIGKILL).\n  In kill mode a forbidden exec \
         HAPPENS and the new program is killed before it runs its first instruction: side \
         effects of exec itself (file opened, setuid transition, audit records) are not \
         prevented. Use --mechanism lsm to refuse to run without the LSM.\n  reason: {}",
        reason.lines().next().unwrap_or(reason)
    );
}
