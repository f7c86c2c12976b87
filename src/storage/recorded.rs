//! What a database recorded of each workload's execs, for `fingerprint check` to
//! replay: learned execs, processes seen already running, and violations an enforcer
//! wrote (`enforce --db`, e.g. in audit mode), each grouped per workload and
//! executable, optionally only what ran since a point in time. Every schema this
//! build knows is read as it is: an older file simply has fewer sources.

use rusqlite::params;

use super::{Database, StorageError, RUNNING_SCHEMA};

/// Where a recorded exec comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum RecordSource {
    /// Learning saw it exec'd.
    Learned,
    /// Learning found a process already running it.
    Running,
    /// An enforcer reported it as a violation (audit mode: it ran).
    Violation,
}

impl RecordSource {
    pub fn name(self) -> &'static str {
        match self {
            RecordSource::Learned => "learned",
            RecordSource::Running => "running",
            RecordSource::Violation => "violation",
        }
    }
}

/// One executable a workload ran, as one source recorded it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordedExec {
    pub workload: String,
    pub path: Vec<u8>,
    pub path_flags: u32,
    pub source: RecordSource,
    /// Execs (processes, for `Running`) in the rows read.
    pub count: u64,
    pub last_seen_ms: i64,
}

/// The first schema version with the `violations` table.
const VIOLATIONS_SCHEMA: u32 = 2;
/// The first with `violations.repeats`: a row with repeats N > 0 stands for N
/// violations the kernel only counted, any other row for one.
const REPEATS_SCHEMA: u32 = 4;

impl Database {
    /// Every executable each workload ran, per source; with `since_ms`, only rows
    /// last seen at or after it (a learning row covers one session: its count is the
    /// session's). Sorted by workload, path, flags and source.
    pub fn recorded_execs(&self, since_ms: Option<i64>) -> Result<Vec<RecordedExec>, StorageError> {
        let version = self.schema_version()?;
        let mut queries = vec![(
            RecordSource::Learned,
            "SELECT w.name, o.path, o.path_flags, SUM(o.count), MAX(o.last_seen_ms) \
             FROM observations o JOIN workloads w ON w.id = o.workload_id \
             WHERE o.last_seen_ms >= ?1 GROUP BY w.name, o.path, o.path_flags",
        )];
        if version >= RUNNING_SCHEMA {
            queries.push((
                RecordSource::Running,
                "SELECT w.name, r.path, r.path_flags, SUM(r.processes), MAX(r.seen_ms) \
                 FROM running_observations r JOIN workloads w ON w.id = r.workload_id \
                 WHERE r.seen_ms >= ?1 GROUP BY w.name, r.path, r.path_flags",
            ));
        }
        // A cgroup move is not an exec: its row names the mover's own executable.
        let violations = format!(
            "SELECT workload, executable, executable_flags, {}, MAX(time_ms) \
             FROM violations WHERE time_ms >= ?1 AND reason != 'cgroup_move' \
             GROUP BY workload, executable, executable_flags",
            violation_count(version)
        );
        if version >= VIOLATIONS_SCHEMA {
            queries.push((RecordSource::Violation, &violations));
        }
        let mut records = Vec::new();
        for (source, sql) in queries {
            let mut stmt = self.conn.prepare(sql).map_err(|e| self.err(e))?;
            let rows = stmt
                .query_map(params![since_ms.unwrap_or(i64::MIN)], |row| {
                    Ok(RecordedExec {
                        workload: row.get(0)?,
                        path: row.get(1)?,
                        path_flags: row.get(2)?,
                        source,
                        count: row.get::<_, i64>(3)? as u64,
                        last_seen_ms: row.get(4)?,
                    })
                })
                .map_err(|e| self.err(e))?;
            for row in rows {
                records.push(row.map_err(|e| self.err(e))?);
            }
        }
        records.sort_by(|a, b| {
            (&a.workload, &a.path, a.path_flags, a.source).cmp(&(
                &b.workload,
                &b.path,
                b.path_flags,
                b.source,
            ))
        });
        Ok(records)
    }

    /// Per profile, the violations enforcers reported with `action` (e.g. "audited"):
    /// (profile, count, first, last), sorted by profile. Empty for a schema without
    /// violations.
    pub fn violations_by_profile(
        &self,
        action: &str,
    ) -> Result<Vec<(String, u64, i64, i64)>, StorageError> {
        if self.schema_version()? < VIOLATIONS_SCHEMA {
            return Ok(Vec::new());
        }
        let mut stmt = self
            .conn
            .prepare(&format!(
                "SELECT profile, {}, MIN(time_ms), MAX(time_ms) FROM violations \
                 WHERE action = ?1 AND profile IS NOT NULL GROUP BY profile ORDER BY profile",
                violation_count(self.schema_version()?)
            ))
            .map_err(|e| self.err(e))?;
        let rows = stmt
            .query_map([action], |row| {
                Ok((
                    row.get(0)?,
                    row.get::<_, i64>(1)? as u64,
                    row.get(2)?,
                    row.get(3)?,
                ))
            })
            .map_err(|e| self.err(e))?;
        rows.collect::<Result<_, _>>().map_err(|e| self.err(e))
    }
}

/// How many violations the grouped `violations` rows stand for, in schema `version`.
fn violation_count(version: u32) -> &'static str {
    match version >= REPEATS_SCHEMA {
        true => "SUM(CASE repeats WHEN 0 THEN 1 ELSE repeats END)",
        false => "COUNT(*)",
    }
}
