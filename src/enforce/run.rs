//! The enforcement process: load, bind, attach, then report violations until stopped.

use std::cell::RefCell;
use std::collections::{BTreeSet, HashMap};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};

use super::binding::{bind_existing, BindingPolicy};
use super::hold::{self, Holds};
use super::maps::{ApplyReport, MapState};
use super::plan::{plan, MapSizes, Mode, PlanError, PlannedProfile, PolicyInput, ProfileIds};
use super::report::ViolationSink;
use super::source::{content_notices, load_inputs};
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
    crate::bpf::preflight("fingerprint enforce")?;
    // A pinned enforcement is taken over, with no gap (see `pinned`).
    let takeover = opts.pin_dir.as_deref().filter(|d| pinned::is_pinned(d));
    let previous = takeover.and_then(pinned::read_state);
    let started_at = humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string();
    let (inputs, content) = load_inputs(&opts.profiles)?;
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

    if opts.detach {
        return Ok(EnforceSummary {
            mechanism,
            profiles: enforcer.state.profiles(),
            counters: probe.counters()?,
            reported: 0,
            reloads: 0,
            held: 0,
            held_killed: 0,
            elapsed: Duration::ZERO,
        });
    }
    for notice in content_notices(&content) {
        eprintln!("fingerprint: {notice}");
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
    let sink = Rc::new(RefCell::new(ViolationSink::new(out, db, names, mechanism)));
    let profile_names: Rc<RefCell<HashMap<u32, String>>> = Rc::default();
    refresh_names(&profile_names, &enforcer.ids);
    // A violation that cannot be written stops enforcement loudly, never silently.
    let sink_error: Rc<RefCell<Option<anyhow::Error>>> = Rc::default();
    // Held execs are resolved after each poll, outside the callback, which cannot
    // borrow the probe.
    let held: Rc<RefCell<Vec<ExecEvent>>> = Rc::default();
    let ring = {
        let sink = Rc::clone(&sink);
        let names = Rc::clone(&profile_names);
        let sink_error = Rc::clone(&sink_error);
        let held = Rc::clone(&held);
        probe.violations(move |data| {
            let names = names.borrow();
            match sink
                .borrow_mut()
                .on_event(data, |id| names.get(&id).cloned())
            {
                Ok(Some(event)) => {
                    held.borrow_mut().push(event);
                    0
                }
                Ok(None) => 0,
                Err(e) => {
                    sink_error.borrow_mut().get_or_insert(e);
                    -1
                }
            }
        })?
    };

    let started = Instant::now();
    let mut last_flush = Instant::now();
    let mut reloads = 0;
    let mut held_stats = (0u64, 0u64);
    let resolve_held = |enforcer: &Enforcer, stats: &mut (u64, u64)| -> Result<()> {
        let pids: BTreeSet<u32> = held.borrow().iter().map(|e| e.pid).collect();
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
        ring.consume().context("reading held execs")?;
        let events = std::mem::take(&mut *held.borrow_mut());
        let (ready, later): (Vec<ExecEvent>, Vec<ExecEvent>) =
            events.into_iter().partition(|e| pids.contains(&e.pid));
        // Tasks first held during that read: next round, once they have stopped.
        *held.borrow_mut() = later;
        let holds = enforcer.holds(&probe, opts.mode);
        for (pid, task) in hold::by_task(ready) {
            let mut outcomes = Vec::new();
            for event in &task {
                let path = sink.borrow_mut().cgroup_path(event.cgroup_id);
                let outcome = holds
                    .decide(event, path.as_deref())
                    .context("deciding on a held exec")?;
                stats.0 += 1;
                if let Some(verdict) = outcome.verdict() {
                    if verdict.action == Action::Killed {
                        stats.1 += 1;
                    }
                    let names = profile_names.borrow();
                    sink.borrow_mut()
                        .report(event, verdict, |id| names.get(&id).cloned())?;
                }
                outcomes.push(outcome);
            }
            hold::release(pid, &outcomes);
        }
        Ok(())
    };
    while !signals.stop.load(Ordering::SeqCst) {
        // EINTR from a signal is expected here; the loop re-checks the flags.
        let _ = ring.poll(Duration::from_millis(100));
        if let Some(e) = sink_error.borrow_mut().take() {
            return Err(e.context("reporting a violation"));
        }
        resolve_held(&enforcer, &mut held_stats)?;
        if signals.reload.swap(false, Ordering::SeqCst) {
            match reload(&mut enforcer, &probe, &opts.profiles) {
                Ok(inputs) => {
                    refresh_names(&profile_names, &enforcer.ids);
                    if let Some(dir) = &opts.pin_dir {
                        write_pinned_state(
                            opts,
                            dir,
                            mechanism,
                            &inputs,
                            &enforcer.ids,
                            &started_at,
                        )?;
                    }
                    reloads += 1;
                }
                // A bad profile must not stop enforcement: keep the loaded set.
                Err(e) => eprintln!(
                    "fingerprint: reload failed, still enforcing the previous profiles: {e:#}"
                ),
            }
        }
        if last_flush.elapsed() >= Duration::from_secs(1) {
            sink.borrow_mut().flush()?;
            last_flush = Instant::now();
        }
    }
    ring.consume().context("draining violation events")?;
    // No task may stay stopped because we stopped: decide on every held exec (a
    // round leaves tasks first held during it to the next).
    for _ in 0..10 {
        if held.borrow().is_empty() {
            break;
        }
        resolve_held(&enforcer, &mut held_stats)?;
    }
    sink.borrow_mut().flush()?;
    let counters = probe.counters()?;
    let reported = sink.borrow().reported;
    Ok(EnforceSummary {
        mechanism,
        profiles: enforcer.state.profiles(),
        counters,
        reported,
        reloads,
        held: held_stats.0,
        held_killed: held_stats.1,
        elapsed: started.elapsed(),
    })
}

fn reload(
    enforcer: &mut Enforcer,
    probe: &EnforceProbe,
    profiles: &Path,
) -> Result<Vec<PolicyInput>> {
    let (inputs, content) = load_inputs(profiles)?;
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
    for notice in content_notices(&content) {
        eprintln!("fingerprint: {notice}");
    }
    Ok(inputs)
}

/// Name profiles by every id ever assigned: an event read late (after a reload,
/// or carried over by a takeover) may name a profile no longer loaded.
fn refresh_names(names: &RefCell<HashMap<u32, String>>, ids: &ProfileIds) {
    *names.borrow_mut() = ids.assigned().into_iter().map(|(n, id)| (id, n)).collect();
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
