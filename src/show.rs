//! `fingerprint show`: what a learning database holds, for people (text, every name
//! escaped) and for machines (JSON, every name exact), with each workload's
//! convergence (see crate::convergence).

use serde_json::{json, Value};

use crate::convergence::Convergence;
use crate::event::describe_path_flags;
use crate::profile::{escape_bytes, path_json, ContentCoverage};
use crate::storage::{LearnedExecutable, LearnedWorkload, SessionRecord};

/// The text form; `now_ms` says how long ago each workload last found something new.
pub fn render_text(
    sessions: &[SessionRecord],
    workloads: &[LearnedWorkload],
    now_ms: i64,
) -> String {
    let mut out = String::new();
    let seen: u64 = sessions.iter().map(|s| s.events_seen).sum();
    let dropped: u64 = sessions.iter().map(|s| s.events_dropped).sum();
    out.push_str(&format!(
        "{} sessions, {seen} execs seen, {dropped} dropped, {} workloads\n",
        sessions.len(),
        workloads.len()
    ));
    if let Some(note) = coverage(workloads).path_only_note() {
        out.push_str(&format!("note: {note}\n"));
    }
    for workload in workloads {
        out.push_str(&format!(
            "\n{} ({}, {} executables)\n",
            escape_bytes(workload.name.as_bytes()),
            workload.id.kind(),
            workload.executables.len()
        ));
        if let Some(c) = Convergence::of(workload) {
            out.push_str(&convergence_line(&c, now_ms));
        }
        for exe in &workload.executables {
            out.push_str(&executable_line(exe));
            out.push_str(&content_lines(exe));
        }
    }
    out
}

/// "first seen ..., last new executable ... (3h ago), 120 execs, 7 executables".
fn convergence_line(c: &Convergence, now_ms: i64) -> String {
    let time = |ms: i64| {
        humantime::format_rfc3339_seconds(
            std::time::UNIX_EPOCH + std::time::Duration::from_millis(ms.max(0) as u64),
        )
    };
    let ago = std::time::Duration::from_secs(c.quiet_for(now_ms).as_secs());
    format!(
        "  first seen {}, last new executable {} ({} ago), {} execs, {} executables\n",
        time(c.first_seen_ms),
        time(c.last_new_ms),
        humantime::format_duration(ago),
        c.execs,
        c.executables
    )
}

fn executable_line(exe: &LearnedExecutable) -> String {
    let mut notes = Vec::new();
    let flags = describe_path_flags(exe.path_flags);
    if !flags.is_empty() {
        notes.push(flags);
    }
    if exe.running > 0 {
        notes.push(format!(
            "running: {} process(es) when learning started",
            exe.running
        ));
    }
    let note = match notes.is_empty() {
        true => String::new(),
        false => format!("  [{}]", notes.join("; ")),
    };
    format!("  {:>8}  {}{note}\n", exe.count, escape_bytes(&exe.path))
}

/// The digests learned for an executable, one per line, or that there are none.
fn content_lines(exe: &LearnedExecutable) -> String {
    if exe.sha256.is_empty() {
        return format!("{:>12}content not hashed: path-only\n", "");
    }
    exe.sha256
        .iter()
        .map(|digest| format!("{:>12}sha256 {digest}\n", ""))
        .collect()
}

/// Executables learned with and without digests.
fn coverage(workloads: &[LearnedWorkload]) -> ContentCoverage {
    let exes = workloads.iter().flat_map(|w| &w.executables);
    ContentCoverage {
        executables: exes.clone().count(),
        path_only: exes.filter(|e| e.sha256.is_empty()).count(),
    }
}

pub fn render_json(sessions: &[SessionRecord], workloads: &[LearnedWorkload]) -> Value {
    let sessions: Vec<Value> = sessions
        .iter()
        .map(|s| {
            json!({
                "uuid": s.uuid, "host": s.host, "kernel": s.kernel, "hook": s.hook,
                "started_at_ms": s.started_at_ms, "ended_at_ms": s.ended_at_ms,
                "events_seen": s.events_seen, "events_dropped": s.events_dropped,
                "merged_from": s.merged_from,
            })
        })
        .collect();
    let workloads: Vec<Value> = workloads
        .iter()
        .map(|w| {
            let executables: Vec<Value> = w
                .executables
                .iter()
                .map(|e| {
                    json!({
                        "path": path_json(&e.path), "flags": e.path_flags, "count": e.count,
                        "first_seen_ms": e.first_seen_ms, "last_seen_ms": e.last_seen_ms,
                        "sha256": e.sha256, "running": e.running,
                    })
                })
                .collect();
            json!({
                "name": w.name, "identity": w.id, "convergence": Convergence::of(w),
                "executables": executables,
            })
        })
        .collect();
    json!({ "sessions": sessions, "workloads": workloads })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn non_utf8_paths_become_hex_objects() {
        assert_eq!(path_json(b"/usr/bin/true"), json!("/usr/bin/true"));
        assert_eq!(path_json(b"/\xff"), json!({"hex": "2fff"}));
    }
}
