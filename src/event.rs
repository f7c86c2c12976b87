//! Decoding of the exec events the BPF programs send, and the facts user space
//! derives from them (which files an exec ran: a binary, or a script and its
//! interpreter). Pure code: unit tests reach it without root.

use std::fmt;

use crate::bpf::abi::{fp_action, fp_event_flags, fp_exec_event, fp_hook, fp_reason};
use crate::content::FileVersion;

/// Path flags, as set by the shared BPF path routine (`enum fp_path_flags`).
pub mod path_flags {
    use crate::bpf::abi::fp_path_flags;

    pub const TRUNCATED: u32 = fp_path_flags::FP_PATH_TRUNCATED.0;
    pub const DELETED: u32 = fp_path_flags::FP_PATH_DELETED.0;
    pub const UNREACHABLE: u32 = fp_path_flags::FP_PATH_UNREACHABLE.0;
    pub const ABSENT: u32 = fp_path_flags::FP_PATH_ABSENT.0;
}

/// The kernel hook an event came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Hook {
    /// `tp_btf/sched_process_exec`: once per exec, after it succeeded.
    SchedProcessExec,
    /// `lsm/bprm_check_security`: once per file checked (script, then interpreter).
    BprmCheckSecurity,
    /// `lsm/file_open`: the cgroup move guard saw a cgroup file opened for writing
    /// (`filename` is that file; `exe` the task's own executable).
    FileOpen,
    /// `lsm/task_alloc`: the cgroup move guard saw a clone into another cgroup.
    TaskAlloc,
    /// `iter/task`: not an exec, a process already running when learning started.
    Running,
}

impl Hook {
    pub fn name(self) -> &'static str {
        match self {
            Hook::SchedProcessExec => "tp_btf/sched_process_exec",
            Hook::BprmCheckSecurity => "lsm/bprm_check_security",
            Hook::FileOpen => "lsm/file_open",
            Hook::TaskAlloc => "lsm/task_alloc",
            Hook::Running => "iter/task",
        }
    }
}

impl fmt::Display for Hook {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A path as resolved in the kernel, with its `path_flags`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KernelPath {
    pub bytes: Vec<u8>,
    pub flags: u32,
}

/// One exec as reported by BPF.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExecEvent {
    pub cgroup_id: u64,
    pub ktime_ns: u64,
    pub pid: u32,
    pub ppid: u32,
    pub uid: u32,
    pub hook: Hook,
    /// A binfmt handler replaced the interpreter: `filename` named a script.
    pub interpreted: bool,
    pub exe: KernelPath,
    /// Which version of the `exe` file was executed (`None`: the hook had no file).
    pub exe_version: Option<FileVersion>,
    pub parent: KernelPath,
    /// The name the caller passed, as typed (relative, a symlink, /dev/fd/N...).
    pub filename: KernelPath,
    pub cwd: KernelPath,
    /// Enforcement only: the profile checked, what was done and why.
    pub verdict: Option<Verdict>,
}

/// What enforcement did about an exec (`enum fp_action`, `enum fp_reason`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Verdict {
    pub profile_id: u32,
    pub action: Action,
    pub reason: Reason,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Action {
    Audited,
    Denied,
    Killed,
    /// Stopped in a cgroup not classified yet; user space decides (see enforce::hold).
    Held,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Reason {
    NotAllowed,
    Unnameable,
    NoProfile,
    /// A new container cgroup that user space had not named yet.
    Unclassified,
    /// The path is allowed and pinned to content, and the file executed has other
    /// content (drift).
    ContentMismatch,
    /// The path is pinned to content and the file's content could not be known (held
    /// for hashing; a violation when it could not be hashed).
    ContentUnknown,
    /// A task tried to leave its workload's cgroups (the cgroup move guard).
    CgroupMove,
}

impl Verdict {
    /// From the kernel's profile id, `enum fp_action` and `enum fp_reason`; None when
    /// either is not one (an event of learning, or of a newer program).
    pub fn from_raw(profile_id: u32, action: u16, reason: u16) -> Option<Verdict> {
        Some(Verdict {
            profile_id,
            action: Action::from_raw(action)?,
            reason: Reason::from_raw(reason.into())?,
        })
    }
}

impl Action {
    fn from_raw(raw: u16) -> Option<Action> {
        match fp_action(raw.into()) {
            fp_action::FP_ACTION_AUDITED => Some(Action::Audited),
            fp_action::FP_ACTION_DENIED => Some(Action::Denied),
            fp_action::FP_ACTION_KILLED => Some(Action::Killed),
            fp_action::FP_ACTION_HELD => Some(Action::Held),
            _ => None,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Action::Audited => "audited",
            Action::Denied => "denied",
            Action::Killed => "killed",
            Action::Held => "held",
        }
    }
}

impl Reason {
    /// The reason the kernel wrote (`enum fp_reason`), if it names one.
    pub fn from_raw(raw: u32) -> Option<Reason> {
        match fp_reason(raw) {
            fp_reason::FP_REASON_NOT_ALLOWED => Some(Reason::NotAllowed),
            fp_reason::FP_REASON_UNNAMEABLE => Some(Reason::Unnameable),
            fp_reason::FP_REASON_NO_PROFILE => Some(Reason::NoProfile),
            fp_reason::FP_REASON_UNCLASSIFIED => Some(Reason::Unclassified),
            fp_reason::FP_REASON_CGROUP_MOVE => Some(Reason::CgroupMove),
            fp_reason::FP_REASON_CONTENT_MISMATCH => Some(Reason::ContentMismatch),
            fp_reason::FP_REASON_CONTENT_UNKNOWN => Some(Reason::ContentUnknown),
            _ => None,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Reason::NotAllowed => "not_in_profile",
            Reason::Unnameable => "unnameable_path",
            Reason::NoProfile => "no_profile",
            Reason::Unclassified => "unclassified",
            Reason::CgroupMove => "cgroup_move",
            Reason::ContentMismatch => "content_mismatch",
            Reason::ContentUnknown => "content_unknown",
        }
    }
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum DecodeError {
    #[error("exec event of {0} bytes is shorter than its {1}-byte header")]
    Short(usize, usize),
    #[error("exec event paths need {0} bytes but the event carries {1}")]
    PathsOverrun(usize, usize),
    #[error("exec event has unknown hook {0}")]
    UnknownHook(u16),
}

impl ExecEvent {
    /// Decode one ring buffer record.
    pub fn decode(data: &[u8]) -> Result<ExecEvent, DecodeError> {
        let header_len = std::mem::size_of::<fp_exec_event>();
        let mut header = fp_exec_event::default();
        plain::copy_from_bytes(&mut header, data)
            .map_err(|_| DecodeError::Short(data.len(), header_len))?;
        let hook = match fp_hook(header.hook.into()) {
            fp_hook::FP_HOOK_SCHED_PROCESS_EXEC => Hook::SchedProcessExec,
            fp_hook::FP_HOOK_BPRM_CHECK_SECURITY => Hook::BprmCheckSecurity,
            fp_hook::FP_HOOK_FILE_OPEN => Hook::FileOpen,
            fp_hook::FP_HOOK_TASK_ALLOC => Hook::TaskAlloc,
            fp_hook::FP_HOOK_RUNNING => Hook::Running,
            _ => return Err(DecodeError::UnknownHook(header.hook)),
        };
        let body = &data[header_len..];
        let needed: usize = header.len.iter().map(|&l| usize::from(l)).sum();
        if needed > body.len() {
            return Err(DecodeError::PathsOverrun(needed, body.len()));
        }
        let mut offset = 0;
        let mut paths = header
            .len
            .iter()
            .zip(header.path_flags.iter())
            .map(|(&len, &flags)| {
                let bytes = body[offset..offset + usize::from(len)].to_vec();
                offset += usize::from(len);
                KernelPath {
                    bytes,
                    flags: u32::from(flags),
                }
            });
        let mut next = || {
            paths.next().unwrap_or(KernelPath {
                bytes: Vec::new(),
                flags: path_flags::ABSENT,
            })
        };
        // The order of `enum fp_event_path`.
        let (exe, parent, filename, cwd) = (next(), next(), next(), next());
        Ok(ExecEvent {
            cgroup_id: header.cgroup_id,
            ktime_ns: header.ktime_ns,
            pid: header.pid,
            ppid: header.ppid,
            uid: header.uid,
            hook,
            interpreted: u32::from(header.event_flags) & fp_event_flags::FP_EVENT_INTERPRETED.0
                != 0,
            exe,
            exe_version: FileVersion::from_event(&header.exe_id),
            parent,
            filename,
            cwd,
            verdict: Verdict::from_raw(header.profile_id, header.action, header.reason),
        })
    }

    /// The files this exec ran, as they should be recorded: the file executed and,
    /// when sched_process_exec reports an interpreted script, the script too (that
    /// hook only sees the final interpreter; bprm_check_security reports each level
    /// as its own event).
    pub fn executed_files(&self) -> Vec<KernelPath> {
        let mut files = vec![self.exe.clone()];
        if self.interpreted && self.hook == Hook::SchedProcessExec {
            files.push(self.script_path());
        }
        files
    }

    /// At sched_process_exec, an interpreted exec as the exec of its script: the
    /// script's path as the file (no version: the kernel no longer holds it). None for
    /// any other exec (the LSM hook reports each level as its own event).
    pub fn script_exec(&self) -> Option<ExecEvent> {
        (self.interpreted && self.hook == Hook::SchedProcessExec).then(|| ExecEvent {
            exe: self.script_path(),
            exe_version: None,
            ..self.clone()
        })
    }

    /// The script's path, from the name the caller typed (see [`script_path`]).
    fn script_path(&self) -> KernelPath {
        script_path(&self.filename, &self.cwd)
    }

    /// Decode records written back to back (the task iterator's output).
    pub fn decode_all(mut data: &[u8]) -> Result<Vec<ExecEvent>, DecodeError> {
        let header_len = std::mem::size_of::<fp_exec_event>();
        let mut events = Vec::new();
        while !data.is_empty() {
            let event = ExecEvent::decode(data)?;
            let len = header_len
                + [&event.exe, &event.parent, &event.filename, &event.cwd]
                    .iter()
                    .map(|p| p.bytes.len())
                    .sum::<usize>();
            events.push(event);
            data = &data[len..];
        }
        Ok(events)
    }
}

/// A script's path from the name the caller typed (`filename`): made absolute against
/// the kernel-resolved `cwd` and normalised. The kernel no longer holds the script's
/// file at sched_process_exec (nor for a process already running), so symlinks in
/// that name stay unresolved; a script run through a file descriptor cannot be named
/// and is UNREACHABLE.
pub fn script_path(filename: &KernelPath, cwd: &KernelPath) -> KernelPath {
    let typed = &filename.bytes;
    if typed.starts_with(b"/dev/fd/") || typed.starts_with(b"/proc/self/fd/") {
        return KernelPath {
            bytes: typed.clone(),
            flags: path_flags::UNREACHABLE,
        };
    }
    let mut flags = filename.flags;
    let joined = if typed.first() == Some(&b'/') {
        typed.clone()
    } else {
        flags |= cwd.flags & !path_flags::ABSENT;
        let mut joined = cwd.bytes.clone();
        joined.push(b'/');
        joined.extend_from_slice(typed);
        joined
    };
    KernelPath {
        bytes: normalize(&joined),
        flags,
    }
}

/// Lexically normalise an absolute path: drop empty and `.` components, apply `..`.
pub fn normalize(path: &[u8]) -> Vec<u8> {
    let mut parts: Vec<&[u8]> = Vec::new();
    for part in path.split(|&b| b == b'/') {
        match part {
            b"" | b"." => {}
            b".." => {
                parts.pop();
            }
            _ => parts.push(part),
        }
    }
    let mut out = Vec::with_capacity(path.len());
    for part in &parts {
        out.push(b'/');
        out.extend_from_slice(part);
    }
    if out.is_empty() {
        out.push(b'/');
    }
    out
}

/// Words for the flags of a recorded path, e.g. "deleted, unreachable from the process
/// root"; bits this build does not know are named as unknown, never dropped.
pub fn describe_path_flags(flags: u32) -> String {
    const NAMES: [(u32, &str); 3] = [
        (path_flags::TRUNCATED, "truncated"),
        (path_flags::DELETED, "deleted"),
        (path_flags::UNREACHABLE, "unreachable from the process root"),
    ];
    let mut parts: Vec<String> = NAMES
        .iter()
        .filter(|(bit, _)| flags & bit != 0)
        .map(|(_, name)| (*name).to_owned())
        .collect();
    let unknown = flags & !NAMES.iter().fold(0, |all, (bit, _)| all | bit);
    if unknown != 0 {
        parts.push(format!("unknown flags {unknown:#x}"));
    }
    parts.join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn encode(hook: u16, flags: u16, paths: [(&[u8], u16); 4]) -> Vec<u8> {
        let mut header = fp_exec_event {
            cgroup_id: 42,
            ktime_ns: 7,
            pid: 100,
            ppid: 99,
            uid: 1000,
            hook,
            event_flags: flags,
            ..Default::default()
        };
        for (i, (bytes, f)) in paths.iter().enumerate() {
            header.len[i] = bytes.len() as u16;
            header.path_flags[i] = *f;
        }
        // SAFETY: fp_exec_event is a plain C struct with no padding-sensitive invariants.
        let mut data = unsafe { plain::as_bytes(&header) }.to_vec();
        for (bytes, _) in paths {
            data.extend_from_slice(bytes);
        }
        data
    }

    #[test]
    fn decodes_all_four_paths() {
        let data = encode(
            1,
            0,
            [
                (b"/usr/bin/true", 0),
                (b"/bin/sh", 0),
                (b"true", 0),
                (b"", 8),
            ],
        );
        let ev = ExecEvent::decode(&data).unwrap();
        assert_eq!(ev.exe.bytes, b"/usr/bin/true");
        assert_eq!(ev.parent.bytes, b"/bin/sh");
        assert_eq!(ev.filename.bytes, b"true");
        assert_eq!(ev.cwd.flags, path_flags::ABSENT);
        assert_eq!((ev.cgroup_id, ev.pid, ev.ppid, ev.uid), (42, 100, 99, 1000));
        assert_eq!(ev.executed_files(), vec![ev.exe.clone()]);
    }

    #[test]
    fn decodes_an_enforcement_verdict() {
        let mut data = encode(2, 0, [(b"/bin/x", 0), (b"/bin/sh", 0), (b"x", 0), (b"", 8)]);
        assert_eq!(
            ExecEvent::decode(&data).unwrap().verdict,
            None,
            "learning events have none"
        );
        let header = std::mem::size_of::<fp_exec_event>();
        data[header - 8..header - 4].copy_from_slice(&7u32.to_ne_bytes());
        data[header - 4..header - 2].copy_from_slice(&2u16.to_ne_bytes());
        data[header - 2..header].copy_from_slice(&1u16.to_ne_bytes());
        let verdict = ExecEvent::decode(&data).unwrap().verdict.unwrap();
        assert_eq!(
            verdict,
            Verdict {
                profile_id: 7,
                action: Action::Denied,
                reason: Reason::NotAllowed
            }
        );
    }

    #[test]
    fn rejects_truncated_records() {
        let data = encode(1, 0, [(b"/a", 0), (b"/b", 0), (b"c", 0), (b"", 8)]);
        assert!(matches!(
            ExecEvent::decode(&data[..data.len() - 1]),
            Err(DecodeError::PathsOverrun(..))
        ));
        assert!(matches!(
            ExecEvent::decode(&data[..4]),
            Err(DecodeError::Short(..))
        ));
        let bad = encode(9, 0, [(b"", 0), (b"", 0), (b"", 0), (b"", 0)]);
        assert_eq!(ExecEvent::decode(&bad), Err(DecodeError::UnknownHook(9)));
    }

    #[test]
    fn tracepoint_script_records_script_relative_to_cwd() {
        let data = encode(
            1,
            1,
            [
                (b"/usr/bin/dash", 0),
                (b"/bin/bash", 0),
                (b"./run/../x.sh", 0),
                (b"/srv/app", 0),
            ],
        );
        let files = ExecEvent::decode(&data).unwrap().executed_files();
        assert_eq!(files.len(), 2);
        assert_eq!(files[1].bytes, b"/srv/app/x.sh");
    }

    #[test]
    fn lsm_interpreter_event_does_not_duplicate_the_script() {
        let data = encode(
            2,
            1,
            [
                (b"/usr/bin/dash", 0),
                (b"/bin/bash", 0),
                (b"/x.sh", 0),
                (b"", 8),
            ],
        );
        assert_eq!(ExecEvent::decode(&data).unwrap().executed_files().len(), 1);
    }

    #[test]
    fn script_run_by_fd_is_unreachable() {
        let data = encode(
            1,
            1,
            [
                (b"/bin/sh", 0),
                (b"/bin/sh", 0),
                (b"/dev/fd/3", 0),
                (b"", 8),
            ],
        );
        let files = ExecEvent::decode(&data).unwrap().executed_files();
        assert_eq!(files[1].flags, path_flags::UNREACHABLE);
    }

    #[test]
    fn normalize_handles_dots_and_root() {
        assert_eq!(normalize(b"/a/./b//c/../d"), b"/a/b/d");
        assert_eq!(normalize(b"/.."), b"/");
        assert_eq!(normalize(b"/"), b"/");
    }

    #[test]
    fn flags_are_named_and_unknown_bits_kept() {
        assert_eq!(describe_path_flags(0), "");
        assert_eq!(
            describe_path_flags(2 | 4),
            "deleted, unreachable from the process root"
        );
        assert_eq!(describe_path_flags(1 | 8), "truncated, unknown flags 0x8");
    }
}
