//! Loading the learning programs: the LSM hook enforcement uses, where the kernel
//! allows it, else `tp_btf/sched_process_exec`; which one, and why, is reported.

use std::io::Read;
use std::time::Duration;

use libbpf_rs::skel::{OpenSkel, Skel, SkelBuilder};
use libbpf_rs::{Link, MapCore, MapFlags, RingBuffer, RingBufferBuilder};

use super::learn_skel::{LearnSkel, LearnSkelBuilder, OpenLearnSkel};
use super::readback::{LearnCounters, MapHandles};
use super::{load_reason, object_storage, refused, BpfError};
use crate::event::Hook;

/// Which hook to learn at.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum HookChoice {
    /// The LSM hook if this kernel allows BPF LSM programs, else the tracepoint.
    Auto,
    /// `lsm/bprm_check_security`, observe only: exactly what enforcement will check.
    Lsm,
    /// `tp_btf/sched_process_exec`: works wherever BTF does.
    Tracepoint,
}

/// The loaded, attached learning program.
pub struct LearnProbe {
    skel: LearnSkel<'static>,
    _link: Link,
    hook: Hook,
    lsm_refusal: Option<String>,
}

impl LearnProbe {
    /// Load and attach. `watched` restricts learning to these cgroup ids and their
    /// descendants; empty means every cgroup.
    pub fn attach(choice: HookChoice, watched: &[u64]) -> Result<LearnProbe, BpfError> {
        let (skel, hook, lsm_refusal) = match choice {
            HookChoice::Tracepoint => (
                load(Hook::SchedProcessExec, watched)?,
                Hook::SchedProcessExec,
                None,
            ),
            HookChoice::Lsm => (
                load(Hook::BprmCheckSecurity, watched)?,
                Hook::BprmCheckSecurity,
                None,
            ),
            HookChoice::Auto => match load(Hook::BprmCheckSecurity, watched) {
                Ok(skel) => (skel, Hook::BprmCheckSecurity, None),
                Err(refusal) => (
                    load(Hook::SchedProcessExec, watched)?,
                    Hook::SchedProcessExec,
                    Some(refusal.to_string()),
                ),
            },
        };
        let program = match hook {
            Hook::SchedProcessExec => &skel.progs.handle_sched_process_exec,
            Hook::BprmCheckSecurity => &skel.progs.handle_bprm_check_security,
            Hook::FileOpen | Hook::TaskAlloc | Hook::Running => {
                unreachable!("learning attaches an exec hook")
            }
        };
        let link = program
            .attach()
            .map_err(|e| refused(hook.name(), format!("attach failed: {e}")))?;
        Ok(LearnProbe {
            skel,
            _link: link,
            hook,
            lsm_refusal,
        })
    }

    pub fn hook(&self) -> Hook {
        self.hook
    }

    /// Why the LSM hook was not used, when `auto` fell back to the tracepoint.
    pub fn lsm_refusal(&self) -> Option<&str> {
        self.lsm_refusal.as_deref()
    }

    /// A ring buffer reader that hands each raw event to `on_event`.
    pub fn events<F>(&self, on_event: F) -> Result<RingBuffer<'_>, BpfError>
    where
        F: FnMut(&[u8]) -> i32 + 'static,
    {
        let map_error = |e: libbpf_rs::Error| BpfError::Map {
            map: "fp_events",
            reason: e.to_string(),
        };
        let mut builder = RingBufferBuilder::new();
        builder
            .add(&self.skel.maps.fp_events, on_event)
            .map_err(map_error)?;
        builder.build().map_err(map_error)
    }

    /// Every process running now, one exec-event record each (hook
    /// [`Hook::Running`]), back to back as the task iterator wrote them. Called after
    /// the exec program is attached, so a process is either in this snapshot or its
    /// exec is an event.
    pub fn running_processes(&self) -> Result<Vec<u8>, BpfError> {
        let refused = |reason: String| refused("iter/task", reason);
        let link = self
            .skel
            .progs
            .snapshot_running_task
            .attach()
            .map_err(|e| refused(format!("attach failed: {e}")))?;
        let mut records = Vec::new();
        libbpf_rs::Iter::new(&link)
            .map_err(|e| refused(format!("creating the iterator failed: {e}")))?
            .read_to_end(&mut records)
            .map_err(|e| refused(format!("reading the iterator failed: {e}")))?;
        Ok(records)
    }

    /// Sum of the per-CPU counters.
    pub fn counters(&self) -> Result<LearnCounters, BpfError> {
        LearnCounters::read(&self.skel.maps.fp_counters)
    }

    /// Handles on every map, for a reader on another thread (the metrics endpoint).
    pub fn map_handles(&self) -> Result<MapHandles, BpfError> {
        MapHandles::of(self.skel.object())
    }
}

/// How long a poll waits before the caller gets a chance to flush.
pub const POLL_INTERVAL: Duration = Duration::from_millis(100);

fn load(hook: Hook, watched: &[u64]) -> Result<LearnSkel<'static>, BpfError> {
    let refused = |reason: String| refused(hook.name(), reason);
    let mut open: OpenLearnSkel<'static> = LearnSkelBuilder::default()
        .open(object_storage())
        .map_err(|e| refused(format!("open failed: {e}")))?;
    open.progs
        .handle_bprm_check_security
        .set_autoload(hook == Hook::BprmCheckSecurity);
    open.progs
        .handle_sched_process_exec
        .set_autoload(hook == Hook::SchedProcessExec);
    // Without it the program would record every cgroup, not the watched ones: fail
    // here rather than learn what was not asked for.
    let rodata = open
        .maps
        .rodata_data
        .as_deref_mut()
        .ok_or_else(|| refused("the learning object has no .rodata".into()))?;
    rodata.filter_cgroups = !watched.is_empty();
    super::request_verifier_logs(open.open_object_mut());
    let skel = open
        .load()
        .map_err(|e| refused(load_reason(hook == Hook::BprmCheckSecurity, &e)))?;
    for id in watched {
        skel.maps
            .fp_watched_cgroups
            .update(&id.to_ne_bytes(), &[1], MapFlags::ANY)
            .map_err(|e| BpfError::Map {
                map: "fp_watched_cgroups",
                reason: format!("adding cgroup {id}: {e}"),
            })?;
    }
    Ok(skel)
}
