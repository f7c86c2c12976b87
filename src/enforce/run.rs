//! The enforcement process: load, bind, attach, then report violations until stopped.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use nix::sys::signal::{signal, SigHandler, Signal};

use super::binding::{bind_existing, watch_scopes, BindingPolicy};
use super::event_log::EventLog;
use super::hold::Holds;
use super::lock;
use super::maps::{ApplyReport, MapState};
use super::plan::{plan, MapSizes, Mode, PlanError, PlannedProfile, PolicyInput, ProfileIds};
use super::report::{Unwritten, ViolationSink};
use super::session::Session;
use super::source::{content_notices, load_inputs};
use crate::bpf::abi::PENDING_PROFILE;
use crate::bpf::enforce::{EnforceProbe, Mechanism, MechanismChoice};
use crate::bpf::pinned::{self, PinnedState};
use crate::bpf::readback::EnforceCounters;
use crate::digest::DigestKey;
use crate::metrics::{self, enforce::EnforceMetrics, Health};
use crate::storage::Database;
use crate::workload::cgroup::CgroupV2;
use crate::workload::kubeapi::ApiSettings;
use crate::workload::resolver::CgroupNames;
use crate::workload::runtime::{ContainerMetadata, EngineSettings};

/// Where containers start unless told otherwise, where these exist.
const DEFAULT_CONTAINER_SCOPES: [&str; 5] = [
    "/kubepods",
    "/kubepods.slice",
    "/docker",
    "/libpod_parent",
    "/machine.slice",
];

pub struct EnforceOptions {
    pub profiles: PathBuf,
    pub mechanism: MechanismChoice,
    /// Force every profile into this mode; None: each profile's own.
    pub mode: Option<Mode>,
    /// Bind unprofiled cgroups at or below this cgroup path to deny-all.
    pub default_deny_scope: Option<String>,
    pub events: Option<PathBuf>,
    /// Repeats of a violation within this long after its event are only counted in
    /// the kernel, and reported as counts (zero: every violation is sent).
    pub coalesce_window: Duration,
    pub db: Option<PathBuf>,
    /// Without `pin_dir`: the lock that keeps a second enforcer from running beside
    /// this one (with `pin_dir`, the pin directory is the lock).
    pub lock_file: PathBuf,
    pub max_cgroups: u32,
    pub allow_capacity: Option<u32>,
    /// Pin programs and maps here, so enforcement outlives this process.
    pub pin_dir: Option<PathBuf>,
    /// With `pin_dir`: return once enforcement is pinned (and the events an enforcement
    /// taken over left unread are reported), instead of reporting.
    pub detach: bool,
    /// Where the container engines' metadata is, and how containers are named.
    pub engines: EngineSettings,
    /// Where the owners of Kubernetes pods come from.
    pub kube_api: ApiSettings,
    /// Cgroups where containers start (new cgroups below them are held until named);
    /// empty: `DEFAULT_CONTAINER_SCOPES` where they exist.
    pub container_scopes: Vec<String>,
    /// Serve /metrics and /healthz here (see `crate::metrics`).
    pub metrics_addr: Option<String>,
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
    /// Violations the kernel only counted, reported as repeats of an earlier event.
    pub repeats: u64,
    /// Violations that could not be written (a full disk), and why, if it still fails.
    pub unwritten: Unwritten,
    pub write_error: Option<String>,
    pub reloads: usize,
    /// Execs held in new container cgroups, and how many of those were killed.
    pub held: u64,
    pub held_killed: u64,
    pub elapsed: Duration,
}

/// Everything enforcement keeps besides the loaded program itself.
pub(super) struct Enforcer {
    pub(super) state: MapState,
    pub(super) ids: ProfileIds,
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
    pub(super) fn apply(
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
        // After the profiles' rules, which a reload may have rewritten.
        watch_scopes(probe, &self.key, &self.policy())?;
        let bound = bind_existing(probe, &self.mount, &self.policy(), &self.metadata)?;
        Ok((report, bound))
    }

    /// Tell the metrics which profiles are loaded now.
    pub(super) fn report_loaded(&self, metrics: &EnforceMetrics) {
        metrics.loaded(
            self.by_name.keys().map(String::as_str),
            self.state.entries(),
        );
    }

    fn policy(&self) -> BindingPolicy<'_> {
        BindingPolicy {
            profiles: &self.by_name,
            default_deny_scope: self.default_deny_scope.as_deref(),
            container_scopes: &self.container_scopes,
        }
    }

    pub(super) fn holds<'a>(
        &'a self,
        probe: &'a EnforceProbe,
        mode_override: Option<Mode>,
    ) -> Holds<'a> {
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
    // A closed stdout must not end enforcement: its writes fail, and are counted.
    // SAFETY: SIG_IGN is what the Rust runtime sets for SIGPIPE at start; no handler
    // that any code here relies on is replaced.
    unsafe { signal(Signal::SIGPIPE, SigHandler::SigIgn) }.context("ignoring SIGPIPE")?;
    // Before anything is loaded: never two enforcers at once (see `lock`).
    let _lock = match &opts.pin_dir {
        Some(dir) => lock::lock_pin_dir(dir, &signals.stop)?,
        None => lock::lock_file(&opts.lock_file)?,
    };
    let listener = opts
        .metrics_addr
        .as_deref()
        .map(metrics::listen)
        .transpose()?;
    let started = start(opts)?;
    let enforcer = started.enforcer;
    if !enforcer.container_scopes.is_empty() {
        eprintln!(
            "fingerprint: new containers below {} are held at their first exec until named \
             from {}",
            enforcer.container_scopes.join(", "),
            enforcer
                .metadata
                .sources()
                .iter()
                .map(|d| d.display().to_string())
                .collect::<Vec<_>>()
                .join(", ")
        );
    }
    let probe = &started.probe;
    let health = Arc::new(Health::default());
    health.set_attached(true);
    let enforce_metrics = match listener {
        Some(listener) => {
            let (registry, enforce_metrics) = EnforceMetrics::new(probe.map_handles()?);
            enforcer.report_loaded(&enforce_metrics);
            metrics::start(listener, registry, Arc::clone(&health), false)?;
            Some(enforce_metrics)
        }
        None => None,
    };
    let names = CgroupNames::with_metadata(started.cgroups, enforcer.metadata.clone());
    let mut sink = ViolationSink::new(
        started.log,
        started.db,
        names,
        probe.mechanism(),
        opts.coalesce_window,
    );
    sink.count_into(enforce_metrics.clone());
    let mut session = Session::new(opts, probe, enforcer, sink, started.state)?
        .with_metrics(health, enforce_metrics);
    // Detached, nothing is reported while the program runs on; the events left
    // unread by an enforcement taken over are read (in `drain`) before this exits.
    while !opts.detach && !signals.stop.load(Ordering::SeqCst) {
        session.poll()?;
        if signals.reload.swap(false, Ordering::SeqCst) {
            session.reload();
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
    log: EventLog,
    cgroups: CgroupV2,
    /// What is recorded for `status`, when pinned.
    state: Option<PinnedState>,
}

/// Load, bind, attach (and pin): from its return on, every exec is enforced.
fn start(opts: &EnforceOptions) -> Result<Started> {
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
    let log = EventLog::open(opts.events.as_deref())?;
    let metadata = ContainerMetadata::from_flags(&opts.engines, &opts.kube_api)?;

    let mut probe = EnforceProbe::load(opts.mechanism, sizes, opts.coalesce_window, takeover)?;
    if let Some(reason) = probe.lsm_refusal() {
        warn_fallback(reason);
    }
    probe.write_config(&key, opts.mode.map(Into::into))?;
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
    let mut state = None;
    if let Some(dir) = &opts.pin_dir {
        probe.pin(dir)?;
        let pinned = PinnedState {
            pin_dir: dir.to_path_buf(),
            profiles: opts.profiles.clone(),
            mechanism: mechanism.name().into(),
            hook: mechanism.hook().into(),
            started_at,
            pid: std::process::id(),
            profile_names: inputs.iter().map(|i| i.name.clone()).collect(),
            profile_ids: enforcer.ids.assigned(),
            reporting: Default::default(),
        };
        pinned::write_state(&pinned)?;
        state = Some(pinned);
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
    for notice in content_notices(&content) {
        eprintln!("fingerprint: {notice}");
    }
    let keeping = inputs.iter().filter(|i| i.keep_cgroup).count();
    if keeping > 0 && mechanism == Mechanism::Kill {
        eprintln!(
            "fingerprint: {keeping} profiles keep their tasks in their cgroups \
             (cgroup_moves: deny), which needs the LSM: in kill mode a task of theirs \
             that can write another cgroup's cgroup.procs can leave its profile"
        );
    }
    Ok(Started {
        probe,
        enforcer,
        db,
        log,
        cgroups,
        state,
    })
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

/// The container scopes: as given, else kubelet's and the engines' roots (cgroupfs
/// drivers; systemd's `machine.slice` for Podman) that exist on this node.
fn container_scopes(given: &[String], mount: &Path) -> Vec<String> {
    if !given.is_empty() {
        return given
            .iter()
            .map(|s| format!("/{}", s.trim_matches('/')))
            .collect();
    }
    DEFAULT_CONTAINER_SCOPES
        .into_iter()
        .filter(|scope| mount.join(&scope[1..]).is_dir())
        .map(str::to_string)
        .collect()
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
