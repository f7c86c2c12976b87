//! Deciding on an exec the kernel held: because its cgroup had not been named yet
//! (late binding of containers), or because its path is pinned to content and the
//! kernel did not know this file version's content (see `identity`).
//!
//! Why a hold: a container's cgroup is created by runc, and only the runtime's
//! metadata says which workload it belongs to, so the kernel cannot bind it inside
//! mkdir. Binding it from user space when the cgroup appears is a race with no
//! ordering guarantee: `ctr run` and kubelet create and start the task back to back,
//! and the entrypoint's exec can come before user space has read the metadata. So
//! new cgroups below a container scope are bound to a pending marker; their first
//! exec stops the task (SIGSTOP, before its first instruction) and is reported here.
//! We name the cgroup, bind it to its profile (later execs are decided in the kernel
//! as usual), then decide on the held exec with the kernel's own decision code
//! (BPF_PROG_TEST_RUN) and continue or kill the task.
//!
//! Limits (documented in docs/kubernetes.md): a held exec runs its new image only
//! after the decision, but as in kill mode the exec itself has happened; if its
//! event is lost (ring buffer full, counted as dropped) or the enforcer dies, the
//! task stays stopped: fail closed, never silently allowed (a pinned enforcement's
//! next enforcer reads the event from the carried ring buffer and decides it).

use std::collections::{BTreeMap, HashMap};
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::Result;
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

use super::binding::BindingPolicy;
use super::identity;
use super::plan::Mode;
use crate::bpf::abi::{DENY_ALL_PROFILE, PENDING_PROFILE, SCOPE_PROFILE};
use crate::bpf::enforce::EnforceProbe;
use crate::event::{path_flags, Action, ExecEvent, Reason, Verdict};
use crate::workload::cgroup_path;
use crate::workload::runtime::ContainerMetadata;

/// What happens to a held task.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Allowed (or not profiled): SIGCONT.
    Continue,
    /// A violation: reported, then SIGKILL (enforce) or SIGCONT (audit).
    Violation {
        profile_id: u32,
        reason: Reason,
        kill: bool,
    },
}

impl Outcome {
    /// The verdict to report, if any.
    pub fn verdict(self) -> Option<Verdict> {
        match self {
            Outcome::Continue => None,
            Outcome::Violation {
                profile_id,
                reason,
                kill,
            } => Some(Verdict {
                profile_id,
                action: if kill {
                    Action::Killed
                } else {
                    Action::Audited
                },
                reason,
            }),
        }
    }
}

/// The binding a pending cgroup gets once named: its own profile, its parent's real
/// profile, deny-all under --default deny, else the scope marker (unprofiled:
/// execs free, children still held). None: outside every scope now (a reload).
pub fn classify(
    policy: &BindingPolicy,
    name: &str,
    path: &str,
    parent: Option<u32>,
) -> Option<u32> {
    policy.profile_for(name, path, parent)
}

/// The decision on a held exec in a cgroup now bound to `binding`. `check` asks the
/// kernel's decision code (with the file's content where the path is pinned to it):
/// None if allowed, else why not; `mode` is the profile's effective mode.
pub fn decide(
    binding: Option<u32>,
    event: &ExecEvent,
    check: impl FnOnce(u32) -> Result<Option<Reason>>,
    mode: impl FnOnce(u32) -> Option<Mode>,
) -> Result<Outcome> {
    let id = match binding {
        None | Some(SCOPE_PROFILE) | Some(PENDING_PROFILE) => return Ok(Outcome::Continue),
        Some(id) => id,
    };
    let violation = |reason, mode: Option<Mode>| Outcome::Violation {
        profile_id: id,
        reason,
        // A profile that is not loaded fails closed, like the kernel.
        kill: mode.is_none_or(|m| m == Mode::Enforce),
    };
    if id == DENY_ALL_PROFILE {
        return Ok(violation(Reason::NoProfile, None));
    }
    let Some(mode) = mode(id) else {
        return Ok(violation(Reason::NoProfile, None));
    };
    let unnameable =
        path_flags::TRUNCATED | path_flags::DELETED | path_flags::UNREACHABLE | path_flags::ABSENT;
    if event.exe.flags & unnameable != 0 {
        return Ok(violation(Reason::Unnameable, Some(mode)));
    }
    match check(id)? {
        None => Ok(Outcome::Continue),
        Some(reason) => Ok(violation(reason, Some(mode))),
    }
}

/// Everything needed to resolve held execs.
pub struct Holds<'a> {
    pub probe: &'a EnforceProbe,
    pub mount: &'a Path,
    pub metadata: &'a ContainerMetadata,
    pub policy: BindingPolicy<'a>,
    pub modes: &'a HashMap<u32, Mode>,
    pub mode_override: Option<Mode>,
}

impl Holds<'_> {
    /// Name and bind the held exec's cgroup (if still pending) and decide on it.
    /// The task stays stopped: `release` it once every event of its exec is decided.
    pub fn decide(&self, event: &ExecEvent, path: Option<&str>) -> Result<Outcome> {
        let mut binding = self.probe.binding(event.cgroup_id)?;
        if binding == Some(PENDING_PROFILE) && runtime_setup(event.pid, event.ppid) {
            // The runtime preparing the container, not the container: keep the
            // cgroup pending, so the entrypoint's exec is held next.
            return Ok(Outcome::Continue);
        }
        if binding == Some(PENDING_PROFILE) {
            binding = match path {
                Some(path) => {
                    let name = self.metadata.identify(path).0.name();
                    let parent = self.parent_binding(path)?;
                    let binding = classify(&self.policy, &name, path, parent);
                    match binding {
                        Some(id) => self.probe.bind(event.cgroup_id, id)?,
                        None => self.probe.unbind(event.cgroup_id)?,
                    }
                    binding
                }
                // The cgroup cannot be named (gone, or unreadable): this exec is no
                // known workload's, like an unprofiled container's, unless --default
                // deny says otherwise for everything. The cgroup stays as it is: a
                // gone one was unbound at rmdir (binding it now would leak an entry),
                // an unreadable one stays pending and its next exec is held again.
                None => self.policy.default_deny_scope.map(|_| DENY_ALL_PROFILE),
            };
        }
        decide(
            binding,
            event,
            |id| identity::decide_held(self.probe, id, event),
            |id| self.mode_of(id),
        )
    }

    /// Kill mode: the decision on the script of a held interpreted exec, with the
    /// exec as the script's to report (None: not such an exec). After [`Self::decide`],
    /// which has bound the cgroup if it was pending.
    pub fn decide_script(&self, event: &ExecEvent) -> Result<Option<(ExecEvent, Outcome)>> {
        let Some(script) = event.script_exec() else {
            return Ok(None);
        };
        let binding = self.probe.binding(event.cgroup_id)?;
        let outcome = decide(
            binding,
            &script,
            |id| identity::decide_script(self.probe, id, event.pid, &script.exe.bytes),
            |id| self.mode_of(id),
        )?;
        Ok(Some((script, outcome)))
    }

    /// Profile `id`'s effective mode; None if it is not loaded.
    fn mode_of(&self, id: u32) -> Option<Mode> {
        self.modes
            .get(&id)
            .map(|m| self.mode_override.unwrap_or(*m))
    }

    /// The binding of the parent cgroup: a nested cgroup of a profiled container
    /// follows the container.
    fn parent_binding(&self, path: &str) -> Result<Option<u32>> {
        let Some(parent) = cgroup_path::parent(path) else {
            return Ok(None);
        };
        let dir = cgroup_path::directory(self.mount, &parent);
        match std::fs::metadata(&dir) {
            Ok(meta) => Ok(self.probe.binding(meta.ino())?),
            Err(_) => Ok(None),
        }
    }
}

/// The signal that ends a held task's stop, given the outcome of every event of its
/// exec: one violation in enforce mode kills it, whatever the other levels say.
pub fn release_signal(outcomes: &[Outcome]) -> Signal {
    let kill = outcomes
        .iter()
        .any(|o| matches!(o, Outcome::Violation { kill: true, .. }));
    if kill {
        Signal::SIGKILL
    } else {
        Signal::SIGCONT
    }
}

/// Continue or kill a held task, once all its events are decided.
pub fn release(pid: u32, outcomes: &[Outcome]) {
    // ESRCH: the task is gone already (killed by someone else); nothing to do.
    let _ = kill(Pid::from_raw(pid as i32), release_signal(outcomes));
}

/// Held events grouped by task (by pid, each group in arrival order).
pub fn by_task(events: Vec<ExecEvent>) -> BTreeMap<u32, Vec<ExecEvent>> {
    let mut tasks: BTreeMap<u32, Vec<ExecEvent>> = BTreeMap::new();
    for event in events {
        tasks.entry(event.pid).or_default().push(event);
    }
    tasks
}

/// Wait (at most `limit`) until `pid` is stopped or gone. The kernel queues SIGSTOP
/// during the exec and the task stops when the exec returns to user space: once it
/// is stopped, every event its exec wrote (one per level, with the LSM: a script,
/// then its interpreter) is in the ring buffer.
pub fn wait_until_stopped(pid: u32, limit: Duration) {
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
            Ok(stat) if !matches!(task_state(&stat), Some('T' | 't' | 'Z' | 'X')) => {
                std::thread::sleep(Duration::from_micros(200));
            }
            _ => return, // stopped, dead, or gone
        }
    }
}

/// The state letter of a /proc/<pid>/stat line (after the command, which may hold
/// spaces and parentheses).
fn task_state(stat: &str) -> Option<char> {
    stat.rsplit_once(')')?.1.trim_start().chars().next()
}

/// Whether an exec is the container runtime's own set-up rather than the container's:
/// the task still shares its parent's mount namespace. runc moves `runc init` into
/// the new cgroup and `runc init` may then re-execute itself from a sealed memfd
/// (its CVE-2019-5736 defence) before it enters the container's namespaces; every
/// exec of the container itself (its entrypoint) happens after runc init switched
/// to the container's own mount namespace and root, whose parent (the shim) is
/// outside it. Inside a profiled container nothing is held (its cgroup is bound on
/// the entrypoint's exec), so this cannot be used to slip past a profile.
fn runtime_setup(pid: u32, ppid: u32) -> bool {
    let ns = |pid: u32| std::fs::read_link(format!("/proc/{pid}/ns/mnt")).ok();
    match (ns(pid), ns(ppid)) {
        (Some(own), Some(parent)) => own == parent,
        // Gone, or unreadable: decide on it as the container's.
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::{Hook, KernelPath};

    fn event(exe: &[u8], flags: u32) -> ExecEvent {
        let path = |bytes: &[u8]| KernelPath {
            bytes: bytes.to_vec(),
            flags: 0,
        };
        ExecEvent {
            ktime_ns: 0,
            cgroup_id: 9,
            pid: 1,
            ppid: 0,
            uid: 0,
            hook: Hook::SchedProcessExec,
            interpreted: false,
            exe: KernelPath {
                bytes: exe.to_vec(),
                flags,
            },
            exe_version: None,
            parent: path(b"/"),
            filename: path(exe),
            cwd: path(b"/"),
            verdict: None,
        }
    }

    fn run(binding: Option<u32>, exe: &[u8], flags: u32, mode: Option<Mode>) -> Outcome {
        decide(
            binding,
            &event(exe, flags),
            |_| Ok((exe != b"/bin/busybox").then_some(Reason::NotAllowed)),
            |_| mode,
        )
        .unwrap()
    }

    #[test]
    fn one_violating_level_kills_the_task() {
        let violation = |kill| Outcome::Violation {
            profile_id: 3,
            reason: Reason::NotAllowed,
            kill,
        };
        assert_eq!(release_signal(&[Outcome::Continue]), Signal::SIGCONT);
        assert_eq!(
            release_signal(&[Outcome::Continue, violation(false)]),
            Signal::SIGCONT
        );
        assert_eq!(
            release_signal(&[Outcome::Continue, violation(true)]),
            Signal::SIGKILL
        );
        let mut second = event(b"/usr/bin/dash", 0);
        second.pid = 7;
        let tasks = by_task(vec![event(b"/s", 0), second, event(b"/bin/dash", 0)]);
        let paths: Vec<(u32, Vec<&[u8]>)> = tasks
            .iter()
            .map(|(pid, evs)| (*pid, evs.iter().map(|e| &e.exe.bytes[..]).collect()))
            .collect();
        assert_eq!(
            paths,
            vec![
                (1, vec![&b"/s"[..], &b"/bin/dash"[..]]),
                (7, vec![&b"/usr/bin/dash"[..]])
            ]
        );
    }

    #[test]
    fn task_state_is_read_past_the_command() {
        assert_eq!(task_state("12 (sh) T 1 2"), Some('T'));
        assert_eq!(task_state("12 (a) b) (c) S 1 2"), Some('S'));
        assert_eq!(task_state("12 (x"), None);
    }

    #[test]
    fn unprofiled_and_allowed_execs_continue() {
        assert_eq!(run(None, b"/x", 0, None), Outcome::Continue);
        assert_eq!(run(Some(SCOPE_PROFILE), b"/x", 0, None), Outcome::Continue);
        assert_eq!(
            run(Some(3), b"/bin/busybox", 0, Some(Mode::Enforce)),
            Outcome::Continue
        );
    }

    #[test]
    fn violations_kill_in_enforce_mode_and_continue_in_audit() {
        let kill = |reason| Outcome::Violation {
            profile_id: 3,
            reason,
            kill: true,
        };
        assert_eq!(
            run(Some(3), b"/opt/evil", 0, Some(Mode::Enforce)),
            kill(Reason::NotAllowed)
        );
        assert_eq!(
            run(
                Some(3),
                b"/bin/busybox",
                path_flags::DELETED,
                Some(Mode::Enforce)
            ),
            kill(Reason::Unnameable)
        );
        assert_eq!(run(Some(3), b"/x", 0, None), kill(Reason::NoProfile));
        let audited = run(Some(3), b"/opt/evil", 0, Some(Mode::Audit));
        assert_eq!(audited.verdict().map(|v| v.action), Some(Action::Audited));
        assert!(matches!(
            run(Some(DENY_ALL_PROFILE), b"/bin/busybox", 0, None),
            Outcome::Violation {
                reason: Reason::NoProfile,
                kill: true,
                ..
            }
        ));
    }
}
