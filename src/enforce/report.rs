//! Violations: one JSON line each (stdout or --events FILE) and a row in the
//! database, with the workload named the way learning names it.

use std::io::Write;

use anyhow::{Context, Result};
use serde_json::json;

use crate::bpf::abi::DENY_ALL_PROFILE;
use crate::bpf::enforce::Mechanism;
use crate::event::{path_flags, Action, ExecEvent, Reason, Verdict};
use crate::learn::Clock;
use crate::show::{describe_flags, path_json};
use crate::storage::{Database, ViolationRecord};
use crate::workload::resolver::CgroupNames;

pub struct ViolationSink {
    out: Box<dyn Write>,
    db: Option<Database>,
    pending: Vec<ViolationRecord>,
    names: CgroupNames,
    clock: Clock,
    host: String,
    mechanism: Mechanism,
    pub reported: u64,
    pub undecodable: u64,
}

impl ViolationSink {
    pub fn new(
        out: Box<dyn Write>,
        db: Option<Database>,
        names: CgroupNames,
        mechanism: Mechanism,
    ) -> Self {
        ViolationSink {
            out,
            db,
            pending: Vec::new(),
            names,
            clock: Clock::new(),
            host: crate::learn::host_and_kernel().0,
            mechanism,
            reported: 0,
            undecodable: 0,
        }
    }

    /// One ring buffer record; `profile_name` turns a profile id into its name. A
    /// held exec is not a violation (yet): it is handed back for `enforce::hold`.
    pub fn on_event(
        &mut self,
        data: &[u8],
        profile_name: impl Fn(u32) -> Option<String>,
    ) -> Result<Option<ExecEvent>> {
        let Ok(event) = ExecEvent::decode(data) else {
            self.undecodable += 1;
            return Ok(None);
        };
        let Some(verdict) = event.verdict else {
            self.undecodable += 1;
            return Ok(None);
        };
        if verdict.action == Action::Held {
            return Ok(Some(event));
        }
        self.report(&event, verdict, profile_name)?;
        Ok(None)
    }

    /// Report one violation: a JSON line, and a database row at the next flush.
    pub fn report(
        &mut self,
        event: &ExecEvent,
        verdict: Verdict,
        profile_name: impl Fn(u32) -> Option<String>,
    ) -> Result<()> {
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
        };
        writeln!(self.out, "{}", violation_json(&record)).context("writing a violation event")?;
        self.out.flush().context("writing a violation event")?;
        self.reported += 1;
        if self.db.is_some() {
            self.pending.push(record);
        }
        Ok(())
    }

    /// The cgroup's path (None when gone), with the names violations are reported under.
    pub fn cgroup_path(&mut self, cgroup_id: u64) -> Option<String> {
        let (path, _) = self.names.name(cgroup_id);
        (!path.starts_with("cgroup-id:")).then_some(path)
    }

    /// Write pending rows to the database.
    pub fn flush(&mut self) -> Result<()> {
        if let Some(db) = &mut self.db {
            if !self.pending.is_empty() {
                db.record_violations(&self.pending)?;
                self.pending.clear();
            }
        }
        Ok(())
    }
}

pub fn violation_json(v: &ViolationRecord) -> serde_json::Value {
    let time = std::time::UNIX_EPOCH + std::time::Duration::from_millis(v.time_ms.max(0) as u64);
    json!({
        "time": humantime::format_rfc3339_millis(time).to_string(),
        "host": v.host,
        "workload": v.workload,
        "profile": v.profile,
        "cgroup": v.cgroup_path,
        "cgroup_id": v.cgroup_id,
        "pid": v.pid,
        "ppid": v.ppid,
        "uid": v.uid,
        "executable": path_json(&v.executable),
        "executable_flags": describe_flags(v.executable_flags),
        "parent": path_json(&v.parent),
        "action": v.action,
        "reason": v.reason,
        "mechanism": v.mechanism,
    })
}
