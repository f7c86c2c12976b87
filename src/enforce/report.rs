//! Violations: one JSON line each (stdout or --events FILE) and a row in the
//! database, with the workload named the way learning names it. Neither write can
//! end enforcement: what cannot be written is kept, retried and counted.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;

use serde_json::json;

use super::event_log::EventLog;
use super::repeats::{as_repeats, LastOfKind, ViolationKind};
use crate::bpf::abi::{fp_fold_key, DENY_ALL_PROFILE};
use crate::bpf::enforce::Mechanism;
use crate::event::{describe_path_flags, path_flags, Action, ExecEvent, Reason, Verdict};
use crate::learn::Clock;
use crate::metrics::enforce::EnforceMetrics;
use crate::profile::path_json;
use crate::storage::{Database, ViolationRecord};
use crate::workload::facts::{self, KubernetesFacts};
use crate::workload::resolver::CgroupNames;

/// The version of the event layout (`schema_version` in each line): raised when a
/// field is renamed, removed or changes meaning; new fields may appear without it.
/// See docs/events.md.
pub const EVENT_SCHEMA_VERSION: u32 = 1;

/// Cgroups whose Kubernetes facts are kept; past this the cache starts over (cgroup
/// ids are not reused, so a long run would otherwise only grow it).
const FACTS_CACHED: usize = 10_000;

/// Rows kept while the database cannot be written; past this, the oldest are given
/// up, and counted as lost.
const PENDING_ROWS: usize = 100_000;

pub struct ViolationSink {
    log: EventLog,
    db: Option<Database>,
    pending: VecDeque<ViolationRecord>,
    /// Rows given up because too many were kept.
    rows_lost: u64,
    /// Why the last database write failed; None once one succeeds again.
    db_error: Option<String>,
    names: CgroupNames,
    /// Kubernetes facts by cgroup id, looked up once per cgroup.
    facts: HashMap<u64, KubernetesFacts>,
    node: Option<String>,
    clock: Clock,
    host: String,
    mechanism: Mechanism,
    /// Violations are counted there too, by workload, reason and action.
    metrics: Option<Arc<EnforceMetrics>>,
    /// The last violation event of each kind, to name the kernel's repeat counts.
    last_of_kind: LastOfKind,
    /// Violation lines of one exec each.
    pub reported: u64,
    /// Violations the kernel only counted, reported as `repeats` (see `repeats`).
    pub repeats: u64,
    pub undecodable: u64,
}

impl ViolationSink {
    pub fn new(
        log: EventLog,
        db: Option<Database>,
        names: CgroupNames,
        mechanism: Mechanism,
        fold_window: std::time::Duration,
    ) -> Self {
        ViolationSink {
            log,
            db,
            pending: VecDeque::new(),
            rows_lost: 0,
            db_error: None,
            names,
            facts: HashMap::new(),
            node: facts::node_name(),
            clock: Clock::new(),
            host: crate::learn::host_and_kernel().0,
            mechanism,
            metrics: None,
            last_of_kind: LastOfKind::new(fold_window),
            reported: 0,
            repeats: 0,
            undecodable: 0,
        }
    }

    /// Count each violation reported into `metrics` too.
    pub fn count_into(&mut self, metrics: Option<Arc<EnforceMetrics>>) {
        self.metrics = metrics;
    }

    /// One ring buffer record; `profile_name` turns a profile id into its name. A
    /// held exec is not a violation (yet): it is handed back for `enforce::hold`.
    pub fn on_event(
        &mut self,
        data: &[u8],
        profile_name: impl Fn(u32) -> Option<String>,
    ) -> Option<ExecEvent> {
        let Ok(event) = ExecEvent::decode(data) else {
            self.undecodable += 1;
            return None;
        };
        let Some(verdict) = event.verdict else {
            self.undecodable += 1;
            return None;
        };
        if verdict.action == Action::Held {
            return Some(event);
        }
        let record = self.report(&event, verdict, profile_name);
        if let Some(kind) = ViolationKind::of_event(&event) {
            self.last_of_kind.remember(kind, &record);
        }
        None
    }

    /// Report one violation: a JSON line, and a database row at the next flush.
    /// Returns what was reported.
    pub fn report(
        &mut self,
        event: &ExecEvent,
        verdict: Verdict,
        profile_name: impl Fn(u32) -> Option<String>,
    ) -> ViolationRecord {
        let (cgroup_path, workload) = self.names.name(event.cgroup_id);
        let reason = if verdict.profile_id == DENY_ALL_PROFILE {
            Reason::NoProfile
        } else {
            verdict.reason
        };
        let profile = (verdict.profile_id != DENY_ALL_PROFILE)
            .then(|| profile_name(verdict.profile_id))
            .flatten();
        let record = ViolationRecord {
            time_ms: self.clock.wall_ms(event.ktime_ns),
            host: self.host.clone(),
            workload: workload.name(),
            profile,
            cgroup_id: event.cgroup_id,
            cgroup_path,
            pid: event.pid,
            ppid: event.ppid,
            uid: event.uid,
            executable: event.exe.bytes.clone(),
            executable_flags: event.exe.flags & !path_flags::ABSENT,
            parent: event.parent.bytes.clone(),
            action: verdict.action.name().into(),
            reason: reason.name().into(),
            mechanism: self.mechanism.name().into(),
            repeats: 0,
        };
        // A cgroup move names what the task tried to write: a cgroup's file (none for
        // a clone into a cgroup).
        let target = (reason == Reason::CgroupMove).then_some(event.filename.bytes.as_slice());
        self.write(&record, target);
        self.reported += 1;
        self.count(&record.workload, verdict.action, reason, 1);
        record
    }

    fn count(&self, workload: &str, action: Action, reason: Reason, violations: u64) {
        if let Some(metrics) = &self.metrics {
            metrics.violations(workload, reason.name(), action.name(), violations);
        }
    }

    /// Report `count` violations of the kind in `key` that the kernel only counted:
    /// one line and one row, named after the last event of that kind (or, if it is
    /// forgotten, after what the key says: cgroup, profile, action and reason).
    pub fn report_repeats(
        &mut self,
        key: &fp_fold_key,
        count: u64,
        profile_name: impl Fn(u32) -> Option<String>,
    ) {
        let kind = ViolationKind::of_key(key);
        let last = match kind.as_ref().and_then(|k| self.last_of_kind.get(k)) {
            Some(record) => record.clone(),
            None => {
                let (cgroup_path, workload) = self.names.name(key.cgroup_id);
                let verdict = kind.map(|k| k.verdict);
                ViolationRecord {
                    time_ms: 0,
                    host: self.host.clone(),
                    workload: workload.name(),
                    profile: profile_name(key.profile_id),
                    cgroup_id: key.cgroup_id,
                    cgroup_path,
                    pid: 0,
                    ppid: 0,
                    uid: 0,
                    executable: Vec::new(),
                    executable_flags: 0,
                    parent: Vec::new(),
                    action: verdict.map_or("unknown", |v| v.action.name()).into(),
                    reason: verdict.map_or("unknown", |v| v.reason.name()).into(),
                    mechanism: self.mechanism.name().into(),
                    repeats: 0,
                }
            }
        };
        let now_ms = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as i64);
        let repeats = as_repeats(last, now_ms, count);
        self.write(&repeats, None);
        self.repeats += count;
        if let Some(verdict) = kind.map(|k| k.verdict) {
            self.count(&repeats.workload, verdict.action, verdict.reason, count);
        }
    }

    /// A JSON line now, and a database row at the next flush. `target`: the cgroup
    /// file of a cgroup move (empty: a clone into a cgroup).
    fn write(&mut self, record: &ViolationRecord, target: Option<&[u8]>) {
        let facts = self.facts_of(record.cgroup_id, &record.cgroup_path);
        let mut line = violation_json(record, &facts);
        if let Some(target) = target {
            line["target"] = match target.is_empty() {
                true => serde_json::Value::Null,
                false => path_json(target),
            };
        }
        self.log.write_line(line.to_string().into_bytes());
        if self.db.is_some() {
            if self.pending.len() >= PENDING_ROWS {
                self.pending.pop_front();
                self.rows_lost += 1;
            }
            self.pending.push_back(record.clone());
        }
    }

    fn facts_of(&mut self, cgroup_id: u64, path: &str) -> KubernetesFacts {
        if let Some(facts) = self.facts.get(&cgroup_id) {
            return facts.clone();
        }
        if self.facts.len() >= FACTS_CACHED {
            self.facts.clear();
        }
        let (_, workload) = self.names.name(cgroup_id);
        let facts =
            KubernetesFacts::of(&workload, path, self.names.metadata(), self.node.as_deref());
        self.facts.insert(cgroup_id, facts.clone());
        facts
    }

    /// Forget the kinds the kernel no longer folds into (after a take).
    pub fn forget_old_kinds(&mut self) {
        self.last_of_kind.forget_old();
    }

    /// The cgroup's path (None when gone), with the names violations are reported under.
    pub fn cgroup_path(&mut self, cgroup_id: u64) -> Option<String> {
        let (path, _) = self.names.name(cgroup_id);
        (!path.starts_with("cgroup-id:")).then_some(path)
    }

    /// Write pending rows to the database, and event lines kept from before. What
    /// fails stays pending, for the next flush.
    pub fn flush(&mut self) {
        self.log.retry();
        if let Some(db) = &mut self.db {
            if !self.pending.is_empty() {
                match db.record_violations(self.pending.make_contiguous()) {
                    Ok(()) => {
                        self.pending.clear();
                        self.db_error = None;
                    }
                    Err(e) => self.db_error = Some(e.to_string()),
                }
            }
        }
    }

    /// Open the --events file again at its path (SIGHUP, for logrotate).
    pub fn reopen_events(&mut self) -> anyhow::Result<()> {
        self.log.reopen()
    }

    /// What could not be written so far: kept for a retry, or given up.
    pub fn unwritten(&self) -> Unwritten {
        let rows_kept = match self.db_error {
            Some(_) => self.pending.len() as u64,
            None => 0,
        };
        Unwritten {
            events: self.log.unwritten(),
            rows: rows_kept + self.rows_lost,
        }
    }

    /// Why writing fails now, naming where: None when everything is written.
    pub fn write_error(&self) -> Option<String> {
        let events = self
            .log
            .error()
            .map(|e| format!("{}: {e}", self.log.name()));
        let db = self.db_error.as_ref().map(|e| format!("the database: {e}"));
        let errors: Vec<String> = events.into_iter().chain(db).collect();
        (!errors.is_empty()).then(|| errors.join("; "))
    }
}

/// Violations that could not be written: event lines, database rows.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Unwritten {
    pub events: u64,
    pub rows: u64,
}

impl Unwritten {
    pub fn any(self) -> bool {
        self.events + self.rows > 0
    }
}

/// The line of a violation. A line of repeats (`repeats` > 0) has null where each
/// repeat had its own value: pid, ppid, uid and parent (and the executable, when
/// its kind was forgotten before its count was taken). `kubernetes` is left out when
/// nothing of it is known.
pub fn violation_json(v: &ViolationRecord, kubernetes: &KubernetesFacts) -> serde_json::Value {
    let time = std::time::UNIX_EPOCH + std::time::Duration::from_millis(v.time_ms.max(0) as u64);
    let own = |value: serde_json::Value| match v.repeats {
        0 => value,
        _ => serde_json::Value::Null,
    };
    let executable = match v.repeats > 0 && v.executable.is_empty() {
        true => serde_json::Value::Null,
        false => path_json(&v.executable),
    };
    let mut event = json!({
        "schema_version": EVENT_SCHEMA_VERSION,
        "time": humantime::format_rfc3339_millis(time).to_string(),
        "host": v.host,
        "workload": v.workload,
        "profile": v.profile,
        "cgroup": v.cgroup_path,
        "cgroup_id": v.cgroup_id,
        "pid": own(v.pid.into()),
        "ppid": own(v.ppid.into()),
        "uid": own(v.uid.into()),
        "executable": executable,
        "executable_flags": describe_path_flags(v.executable_flags),
        "parent": own(path_json(&v.parent)),
        "action": v.action,
        "reason": v.reason,
        "mechanism": v.mechanism,
        "repeats": v.repeats,
    });
    if !kubernetes.is_empty() {
        event["kubernetes"] = json!(kubernetes);
    }
    event
}
