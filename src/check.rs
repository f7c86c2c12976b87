//! `fingerprint check`: what enforcing a set of profiles would refuse, from what a
//! database recorded (learned execs, processes seen running, violations an enforcer
//! reported), before anything is enforced.
//!
//! Every recorded executable is decided by the code enforcement runs: the profiles
//! are planned and loaded into the enforcement maps exactly as `enforce` loads them,
//! and each path is decided by `enforce::hold::decide` with the kernel's own decision
//! (`BPF_PROG_TEST_RUN` of `test_profile_allows`), so digests, the allowlist search
//! and the glob matcher agree with enforcement by construction. Nothing is attached:
//! no exec on the node is affected. A workload is matched to the profile of its name,
//! as enforcement binds it; workloads without a profile are left alone, as there.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, Result};
use serde_json::{json, Value};

use crate::bpf::enforce::{EnforceProbe, MechanismChoice};
use crate::digest::DigestKey;
use crate::enforce::hold::{decide, Outcome};
use crate::enforce::identity;
use crate::enforce::maps::MapState;
use crate::enforce::plan::{plan, MapSizes, Mode, ProfileIds};
use crate::enforce::source::load_inputs;
use crate::event::{path_flags, ExecEvent, Hook, KernelPath, Reason};
use crate::profile::{escape_bytes, path_json};
use crate::storage::{Database, RecordSource, RecordedExec};

/// The binding map is not used (nothing is bound); the smallest size will do.
const NO_BINDINGS: u32 = 1;

pub struct CheckOptions {
    pub profiles: PathBuf,
    pub db: PathBuf,
    /// Only what was recorded this long before now.
    pub since: Option<Duration>,
}

/// One executable a workload ran that its profile would refuse.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    pub workload: String,
    pub mode: Mode,
    pub path: Vec<u8>,
    pub path_flags: u32,
    pub reason: Reason,
    /// Execs (or processes seen running) per source.
    pub counts: BTreeMap<RecordSource, u64>,
    pub last_seen_ms: i64,
}

/// What a check found.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CheckReport {
    /// Sorted by workload, then path.
    pub refusals: Vec<Refusal>,
    /// Distinct (workload, executable) pairs decided.
    pub decided: usize,
    /// Workloads recorded with no profile of their name (enforcement leaves them alone).
    pub unprofiled: Vec<String>,
}

impl CheckReport {
    pub fn is_empty(&self) -> bool {
        self.refusals.is_empty()
    }

    /// For people: one block per workload with something refused.
    pub fn render_text(&self) -> String {
        let mut out = String::new();
        let mut by_workload: BTreeMap<&str, Vec<&Refusal>> = BTreeMap::new();
        for refusal in &self.refusals {
            by_workload
                .entry(&refusal.workload)
                .or_default()
                .push(refusal);
        }
        for (workload, refusals) in &by_workload {
            out.push_str(&format!(
                "{} ({} mode): {} executable(s) would be refused\n",
                escape_bytes(workload.as_bytes()),
                refusals[0].mode,
                refusals.len()
            ));
            for r in refusals {
                let counts: Vec<String> = r
                    .counts
                    .iter()
                    .map(|(source, n)| format!("{n} {}", source.name()))
                    .collect();
                out.push_str(&format!(
                    "  {}  {}: {}, last seen {}\n",
                    escape_bytes(&r.path),
                    r.reason.name(),
                    counts.join(", "),
                    humantime::format_rfc3339_seconds(
                        std::time::UNIX_EPOCH + Duration::from_millis(r.last_seen_ms.max(0) as u64)
                    )
                ));
            }
        }
        out.push_str(&format!(
            "{} executable(s) of {} recorded would be refused in {} workload(s)\n",
            self.refusals.len(),
            self.decided,
            by_workload.len()
        ));
        if !self.unprofiled.is_empty() {
            out.push_str(&format!(
                "{} recorded workload(s) have no profile and would be left alone\n",
                self.unprofiled.len()
            ));
        }
        out
    }

    pub fn to_json(&self) -> Value {
        let refusals: Vec<Value> = self
            .refusals
            .iter()
            .map(|r| {
                let counts: BTreeMap<&str, u64> =
                    r.counts.iter().map(|(s, n)| (s.name(), *n)).collect();
                json!({
                    "workload": r.workload, "mode": r.mode.to_string(),
                    "path": path_json(&r.path), "flags": r.path_flags,
                    "reason": r.reason.name(), "counts": counts,
                    "last_seen_ms": r.last_seen_ms,
                })
            })
            .collect();
        json!({
            "refusals": refusals, "decided": self.decided,
            "workloads_without_profile": self.unprofiled,
        })
    }
}

/// Decide every executable `opts.db` recorded against the profiles in `opts.profiles`.
pub fn run(opts: &CheckOptions, now_ms: i64) -> Result<CheckReport> {
    let (inputs, _) = load_inputs(&opts.profiles)?;
    let since_ms = opts
        .since
        .map(|since| now_ms.saturating_sub(since.as_millis().min(i64::MAX as u128) as i64));
    let records = Database::open_read_only(&opts.db)?
        .recorded_execs(since_ms)
        .with_context(|| format!("reading what {} recorded", opts.db.display()))?;

    crate::bpf::preflight("fingerprint check")?;
    let key = DigestKey::random().context("reading random bytes for the digest key")?;
    let planned = plan(&inputs, &key, &mut ProfileIds::default())?;
    let sizes = MapSizes::for_profiles(&planned, None, NO_BINDINGS);
    // Nothing is attached, so no violation is ever sent: no window to fold them in.
    let probe = EnforceProbe::load(MechanismChoice::Kill, sizes, Duration::ZERO, None)?;
    probe.write_config(&key, None, true)?;
    let mut state = MapState::new(key, sizes.allow);
    state.apply(&probe, planned)?;
    let profiles: HashMap<&str, (u32, Mode)> = inputs
        .iter()
        .filter_map(|i| {
            state
                .profile_id(&i.name)
                .map(|id| (i.name.as_str(), (id, i.mode)))
        })
        .collect();

    let mut report = CheckReport::default();
    let mut unprofiled = BTreeSet::new();
    // Records come sorted, so each (workload, path, flags) is one run of sources.
    for group in records.chunk_by(|a, b| {
        (&a.workload, &a.path, a.path_flags) == (&b.workload, &b.path, b.path_flags)
    }) {
        let first = &group[0];
        let Some(&(id, mode)) = profiles.get(first.workload.as_str()) else {
            unprofiled.insert(first.workload.clone());
            continue;
        };
        report.decided += 1;
        let event = replayed_exec(first);
        let outcome = decide(
            Some(id),
            &event,
            // A replayed exec carries no content: enforcement holds and hashes the first
            // exec of each version of a pinned path, so `check` judges its path alone.
            |id| match identity::decide_held(&probe, id, &event)? {
                Some(Reason::ContentUnknown) => Ok(None),
                other => Ok(other),
            },
            |_| Some(mode),
        )?;
        if let Outcome::Violation { reason, .. } = outcome {
            report.refusals.push(refusal(group, mode, reason));
        }
    }
    report.unprofiled = unprofiled.into_iter().collect();
    Ok(report)
}

/// A recorded executable as the exec that enforcement would decide on.
fn replayed_exec(record: &RecordedExec) -> ExecEvent {
    let absent = KernelPath {
        bytes: Vec::new(),
        flags: path_flags::ABSENT,
    };
    ExecEvent {
        cgroup_id: 0,
        ktime_ns: 0,
        pid: 0,
        ppid: 0,
        uid: 0,
        hook: Hook::SchedProcessExec,
        interpreted: false,
        exe: KernelPath {
            bytes: record.path.clone(),
            flags: record.path_flags,
        },
        exe_version: None,
        parent: absent.clone(),
        filename: absent.clone(),
        cwd: absent,
        verdict: None,
    }
}

fn refusal(group: &[RecordedExec], mode: Mode, reason: Reason) -> Refusal {
    Refusal {
        workload: group[0].workload.clone(),
        mode,
        path: group[0].path.clone(),
        path_flags: group[0].path_flags,
        reason,
        counts: group.iter().map(|r| (r.source, r.count)).collect(),
        last_seen_ms: group.iter().map(|r| r.last_seen_ms).max().unwrap_or(0),
    }
}
