//! Repeated violations, coalesced in the kernel (`fp_fold` in bpf/enforce.bpf.c): the
//! first violation of a kind in a window is sent as an event; the others are only
//! counted, and `Session` takes the counts every second, at a reload and at the end.
//! Each count taken becomes one line (and database row) with `repeats`, named after
//! the last event of its kind, so that event lines plus the sum of `repeats` is every
//! violation.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use crate::bpf::abi::{fp_file_id, fp_fold_key};
use crate::content::FileVersion;
use crate::event::{ExecEvent, Verdict};
use crate::storage::ViolationRecord;

/// One kind of violation, as the kernel folds them (`struct fp_fold_key`): one
/// cgroup running one version of one file, checked against one profile, with one
/// outcome.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ViolationKind {
    pub cgroup_id: u64,
    pub exe: Option<FileVersion>,
    pub verdict: Verdict,
}

impl ViolationKind {
    /// The kind of a violation event (None for an event with no verdict).
    pub fn of_event(event: &ExecEvent) -> Option<ViolationKind> {
        Some(ViolationKind {
            cgroup_id: event.cgroup_id,
            exe: event.exe_version,
            verdict: event.verdict?,
        })
    }

    /// The kind a key of `fp_folds` stands for (None if its action or reason is not
    /// one this build knows).
    pub fn of_key(key: &fp_fold_key) -> Option<ViolationKind> {
        Some(ViolationKind {
            cgroup_id: key.cgroup_id,
            // The same C struct, generated into each skeleton's types.
            exe: FileVersion::from_event(&fp_file_id {
                ino: key.exe_id.ino,
                size: key.exe_id.size,
                ctime_sec: key.exe_id.ctime_sec,
                ctime_nsec: key.exe_id.ctime_nsec,
                dev: key.exe_id.dev,
                generation: key.exe_id.generation,
                pad: key.exe_id.pad,
            }),
            verdict: Verdict::from_raw(key.profile_id, key.action, key.reason)?,
        })
    }
}

/// The last violation reported of each kind, to name its repeats after. A kind is
/// folded only within `window` of its last event, so it is forgotten once two
/// windows have passed since; a count taken later than that (a run preempted for
/// that long) is still reported, with the names the kernel key carries.
pub struct LastOfKind {
    window: Duration,
    records: HashMap<ViolationKind, (ViolationRecord, Instant)>,
}

impl LastOfKind {
    pub fn new(window: Duration) -> LastOfKind {
        LastOfKind {
            window,
            records: HashMap::new(),
        }
    }

    pub fn remember(&mut self, kind: ViolationKind, record: &ViolationRecord) {
        if !self.window.is_zero() {
            self.records.insert(kind, (record.clone(), Instant::now()));
        }
    }

    pub fn get(&self, kind: &ViolationKind) -> Option<&ViolationRecord> {
        self.records.get(kind).map(|(record, _)| record)
    }

    /// Forget the kinds the kernel no longer folds into (after a take).
    pub fn forget_old(&mut self) {
        let keep = self.window.saturating_mul(2);
        self.records.retain(|_, (_, at)| at.elapsed() < keep);
    }
}

/// `count` repeats of the violation `last` (reported before), as of `time_ms`: what
/// they share, with no pid, ppid, uid or parent, since each repeat had its own.
pub fn as_repeats(last: ViolationRecord, time_ms: i64, count: u64) -> ViolationRecord {
    ViolationRecord {
        time_ms,
        pid: 0,
        ppid: 0,
        uid: 0,
        parent: Vec::new(),
        repeats: count,
        ..last
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::enforce::report::violation_json;
    use crate::event::{Action, Reason};

    fn kind(cgroup_id: u64) -> ViolationKind {
        ViolationKind {
            cgroup_id,
            exe: None,
            verdict: Verdict {
                profile_id: 1,
                action: Action::Killed,
                reason: Reason::NotAllowed,
            },
        }
    }

    fn record() -> ViolationRecord {
        ViolationRecord {
            time_ms: 0,
            host: "h".into(),
            workload: "w".into(),
            profile: None,
            cgroup_id: 1,
            cgroup_path: "/w".into(),
            pid: 7,
            ppid: 1,
            uid: 1000,
            executable: b"/bin/x".to_vec(),
            executable_flags: 0,
            parent: b"/bin/sh".to_vec(),
            action: "killed".into(),
            reason: "not_in_profile".into(),
            mechanism: "kill".into(),
            repeats: 0,
        }
    }

    #[test]
    fn a_repeats_line_keeps_what_repeats_share_and_nulls_what_varies() {
        let line = violation_json(&as_repeats(record(), 0, 41), &Default::default());
        assert_eq!(line["repeats"], 41);
        assert_eq!(line["executable"], "/bin/x");
        assert_eq!(line["workload"], "w");
        assert!(line["pid"].is_null() && line["ppid"].is_null());
        assert!(line["uid"].is_null() && line["parent"].is_null());
        assert_eq!(line["time"], "1970-01-01T00:00:00.000Z");
        let own = violation_json(&record(), &Default::default());
        assert_eq!(
            (own["repeats"].clone(), own["pid"].clone()),
            (0.into(), 7.into())
        );
        assert_eq!(own["parent"], "/bin/sh");
    }

    #[test]
    fn kinds_are_remembered_only_while_folding_is_on() {
        let mut off = LastOfKind::new(Duration::ZERO);
        off.remember(kind(1), &record());
        assert!(off.get(&kind(1)).is_none());
        let mut on = LastOfKind::new(Duration::from_secs(60));
        on.remember(kind(1), &record());
        on.forget_old();
        assert_eq!(on.get(&kind(1)), Some(&record()));
        assert!(on.get(&kind(2)).is_none());
    }
}
