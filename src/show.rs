//! `fingerprint show`: what a learning database holds, for people (text, every name
//! escaped) and for machines (JSON, every name exact).

use serde_json::{json, Value};

use crate::event::describe_path_flags;
use crate::profile::{escape_bytes, path_json};
use crate::storage::{LearnedExecutable, LearnedWorkload, SessionRecord};

pub fn render_text(sessions: &[SessionRecord], workloads: &[LearnedWorkload]) -> String {
    let mut out = String::new();
    let seen: u64 = sessions.iter().map(|s| s.events_seen).sum();
    let dropped: u64 = sessions.iter().map(|s| s.events_dropped).sum();
    out.push_str(&format!(
        "{} sessions, {seen} execs seen, {dropped} dropped, {} workloads\n",
        sessions.len(),
        workloads.len()
    ));
    for workload in workloads {
        out.push_str(&format!(
            "\n{} ({}, {} executables)\n",
            escape_bytes(workload.name.as_bytes()),
            workload.id.kind(),
            workload.executables.len()
        ));
        for exe in &workload.executables {
            out.push_str(&executable_line(exe));
        }
    }
    out
}

fn executable_line(exe: &LearnedExecutable) -> String {
    let flags = describe_path_flags(exe.path_flags);
    let note = if flags.is_empty() {
        String::new()
    } else {
        format!("  [{flags}]")
    };
    format!("  {:>8}  {}{note}\n", exe.count, escape_bytes(&exe.path))
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
                    })
                })
                .collect();
            json!({ "name": w.name, "identity": w.id, "executables": executables })
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
