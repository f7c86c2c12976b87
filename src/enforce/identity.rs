//! Executable identity at enforcement: the decision on a held exec of a path pinned to
//! content.
//!
//! The exec hook cannot read a file, so the kernel knows a file version's content only
//! once user space has told it (`fp_versions`, bpf/content.h). The first exec of each
//! version of a pinned path is held (stopped before its first instruction, as a first
//! exec in a pending cgroup is); here its file is hashed, checked to be the very version
//! executed before and after reading (as learning does), recorded for the kernel, and
//! decided with the kernel's own decision code. Later execs of that version are decided
//! in the kernel alone: a listed content runs, another one is refused (LSM) or killed.

use std::time::Duration;

use anyhow::Result;

use crate::bpf::enforce::EnforceProbe;
use crate::content::{
    hash_version, open_image_of, open_in_root_of, open_in_task_root, FileVersion, Sha256,
};
use crate::event::{ExecEvent, Reason};

/// A file version whose change time is younger than this when it is hashed is decided
/// but not cached: the change time comes from a coarse clock (one tick, 1 to 10 ms), so
/// a second write of the same size within that tick would keep the cache key. Hashed
/// this long after its last change, any later change gets a later change time.
pub const YOUNG_CTIME: Duration = Duration::from_millis(100);

/// The tick of a filesystem that keeps change times in whole seconds (ext4 with
/// 128-byte inodes, ext3) or two (FAT): its versions wait this much longer.
pub const COARSE_CTIME_TICK: Duration = Duration::from_secs(2);

/// Whether `version` may be cached: hashed long enough after its last change that any
/// later change must get a later change time. A change time with no fraction of a
/// second is taken to come from a whole-second filesystem (on a fine one, that is
/// one change in 10^9 or so, which then waits two seconds more: harmless).
pub fn cacheable(version: &FileVersion) -> bool {
    let tick = match version.ctime_nsec {
        0 => COARSE_CTIME_TICK,
        _ => Duration::ZERO,
    };
    version.age() >= YOUNG_CTIME + tick
}

/// The decision on a held exec's file under profile `id`: None if allowed, else why.
/// A file that cannot be hashed as the version executed (gone, replaced, unreadable)
/// is a violation: content unknown.
pub fn decide_held(probe: &EnforceProbe, id: u32, event: &ExecEvent) -> Result<Option<Reason>> {
    let path = &event.exe.bytes;
    decide_with_content(probe, id, path, || {
        let version = event.exe_version?;
        let content = hash_executed(event.pid, path, &version)?;
        let cached = match cacheable(&version) {
            true => probe.record_version(&version.to_kernel(), &content),
            false => Ok(()),
        };
        if let Err(e) = cached {
            eprintln!("fingerprint: {e}; the next exec of this file version is held again");
        }
        Some(content)
    })
}

/// Kill mode: the decision on the `#!` script of held task `pid`, at `script` (the
/// name the caller typed, made absolute as learning records it). The kernel no longer
/// holds the script's file, so its content is what that path holds in the task's root
/// now, hashed while the task is stopped; nothing is cached (no version was seen).
pub fn decide_script(
    probe: &EnforceProbe,
    id: u32,
    pid: u32,
    script: &[u8],
) -> Result<Option<Reason>> {
    decide_with_content(probe, id, script, || {
        let (file, version) = open_in_task_root(pid, script)?;
        hash_version(file, &version).ok().map(|(digest, _)| digest)
    })
}

/// The kernel's decision on `path`, asking `hash` for the content only where the
/// profile pins the path; no content (`hash` gives None) is a violation.
fn decide_with_content(
    probe: &EnforceProbe,
    id: u32,
    path: &[u8],
    hash: impl FnOnce() -> Option<Sha256>,
) -> Result<Option<Reason>> {
    let reason = kernel_reason(probe.test_decision(id, path, None)?.0);
    if reason != Some(Reason::ContentUnknown) {
        return Ok(reason);
    }
    let Some(content) = hash() else {
        return Ok(Some(Reason::ContentUnknown));
    };
    Ok(kernel_reason(
        probe.test_decision(id, path, Some(&content))?.0,
    ))
}

/// The kernel's decision as a reason: 0 is allowed; a value this build does not know
/// fails closed.
fn kernel_reason(raw: u32) -> Option<Reason> {
    (raw != 0).then(|| Reason::from_raw(raw).unwrap_or(Reason::NotAllowed))
}

/// The digest of the file held task `pid` executed at `path`, if it is still `version`:
/// through the task's own image (`/proc/PID/exe`), else (a `#!` script, whose task maps
/// its interpreter) by the path inside the task's own root and mount namespace.
fn hash_executed(pid: u32, path: &[u8], version: &FileVersion) -> Option<Sha256> {
    let file =
        open_image_of(pid, version).or_else(|| open_in_root_of(&pid.to_string(), path, version))?;
    hash_version(file, version).ok().map(|(digest, _)| digest)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bpf::abi::fp_reason;

    #[test]
    fn a_whole_second_change_time_waits_out_the_coarse_tick() {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap();
        // Changed `ago`, on a filesystem that keeps nanoseconds or whole seconds.
        let changed = |ago: Duration, whole_seconds: bool| FileVersion {
            dev: 1,
            ino: 2,
            generation: 0,
            ctime_sec: (now - ago).as_secs() as i64,
            ctime_nsec: if whole_seconds {
                0
            } else {
                (now - ago).subsec_nanos() | 1
            },
            size: 3,
        };
        assert!(!cacheable(&changed(Duration::ZERO, false)), "young");
        assert!(cacheable(&changed(Duration::from_millis(200), false)));
        assert!(
            !cacheable(&changed(Duration::from_secs(1), true)),
            "a coarse tick"
        );
        assert!(cacheable(&changed(Duration::from_secs(4), true)));
    }

    #[test]
    fn an_unknown_kernel_reason_fails_closed() {
        assert_eq!(kernel_reason(0), None);
        let raw = |reason: fp_reason| reason.0;
        assert_eq!(
            kernel_reason(raw(fp_reason::FP_REASON_CONTENT_MISMATCH)),
            Some(Reason::ContentMismatch)
        );
        assert_eq!(
            kernel_reason(raw(fp_reason::FP_REASON_CONTENT_UNKNOWN)),
            Some(Reason::ContentUnknown)
        );
        assert_eq!(kernel_reason(999), Some(Reason::NotAllowed));
    }
}
