//! `fingerprint merge --into X A B ...` for learning databases: all or nothing.
//!
//! Every source is opened read-only and checked before anything is written. The
//! sources are merged into a temporary database beside X (a snapshot of X when it
//! exists, so the report says what is new to X). A new X is that file, linked into
//! place once complete and synced. An existing X takes the result in one transaction,
//! so a learner or an enforcer writing X at the same time loses nothing. A corrupt
//! source, a full disk or a crash leave X as it was, and a merge that fails creates
//! nothing. Sessions are keyed by UUID, so merging is commutative and idempotent.

use std::fs::{self, File};
use std::path::{Path, PathBuf};

use rusqlite::Connection;

use super::{sqlite_error, Database, MergeReport, StorageError};

/// Merge every source into `into` (created if missing); returns what each added, in
/// the order given.
pub fn merge_into(
    into: &Path,
    sources: &[PathBuf],
) -> Result<Vec<(PathBuf, MergeReport)>, StorageError> {
    // The target first: a target this build cannot write is the first thing to say.
    let mut target = match into.exists() {
        true => Some(Database::open(into)?),
        false => None,
    };
    let readers = sources
        .iter()
        .map(|source| Database::open_read_only(source))
        .collect::<Result<Vec<_>, _>>()?;
    let staged = staging_path(into);
    let result = merge_staged(into, &staged, target.as_mut(), &readers);
    for companion in ["", "-wal", "-shm", "-journal"] {
        let mut name = staged.as_os_str().to_owned();
        name.push(companion);
        // Already linked into place, or left by a failure: the name goes either way.
        let _ = fs::remove_file(PathBuf::from(name));
    }
    result
}

/// Hidden, beside the target: on the same filesystem, so it can become the target.
fn staging_path(into: &Path) -> PathBuf {
    let name = into
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    into.with_file_name(format!(".{name}.merge-{}.tmp", std::process::id()))
}

fn merge_staged(
    into: &Path,
    staged: &Path,
    target: Option<&mut Database>,
    readers: &[Database],
) -> Result<Vec<(PathBuf, MergeReport)>, StorageError> {
    if let Some(target) = &target {
        target
            .conn
            .execute("VACUUM INTO ?1", [staged.to_string_lossy()])
            .map_err(|e| sqlite_error(into, e))?;
    }
    let mut reports = Vec::with_capacity(readers.len());
    {
        let mut merged = Database::open(staged)?;
        // Errors name the database being made, not its temporary file.
        merged.path = into.to_owned();
        for reader in readers {
            reports.push((reader.path.clone(), merged.merge_from(reader)?));
        }
    } // Closed: its WAL is checkpointed into the file and removed.
    match target {
        Some(target) => {
            let mut result = Database::open_read_only(staged)?;
            result.path = into.to_owned();
            target.merge_from(&result)?;
        }
        None => {
            let io = |action| {
                move |cause| StorageError::Io {
                    path: into.to_owned(),
                    action,
                    cause,
                }
            };
            File::open(staged)
                .and_then(|file| file.sync_all())
                .map_err(io("write it"))?;
            // A link, unlike a rename, never replaces a file created meanwhile.
            fs::hard_link(staged, into).map_err(io("create it"))?;
            if let Some(dir) = into.parent().filter(|dir| !dir.as_os_str().is_empty()) {
                // Best effort: the file is complete either way; this persists its name.
                let _ = File::open(dir).and_then(|dir| dir.sync_all());
            }
        }
    }
    Ok(reports)
}

impl Database {
    /// Bring every session of `source` that this database lacks into it, with its
    /// observations, in one transaction. Sessions are matched by UUID, so merging the
    /// same source twice changes nothing. Sessions keep the source they were first
    /// merged from.
    fn merge_from(&mut self, source: &Database) -> Result<MergeReport, StorageError> {
        let path = self.path.clone();
        self.conn
            .execute("ATTACH DATABASE ?1 AS src", [&source.read_uri])
            .map_err(|e| sqlite_error(&source.path, e))?;
        let provenance = source.path.to_string_lossy();
        let result = merge_attached(&mut self.conn, &provenance);
        self.conn
            .execute("DETACH DATABASE src", [])
            .map_err(|e| sqlite_error(&path, e))?;
        result.map_err(|e| match source.is_damaged() {
            true => sqlite_error(&source.path, e),
            false => sqlite_error(&path, e),
        })
    }

    /// Whether SQLite's own check finds this database damaged (used to tell which side
    /// of a failed merge is corrupt).
    fn is_damaged(&self) -> bool {
        self.conn
            .query_row("PRAGMA quick_check(1)", [], |row| row.get::<_, String>(0))
            .map_or(true, |verdict| verdict != "ok")
    }
}

/// Whether the attached source has `table` (its schema may be older than ours).
fn source_has(tx: &rusqlite::Transaction, table: &str) -> Result<bool, rusqlite::Error> {
    tx.query_row(
        "SELECT EXISTS (SELECT 1 FROM src.sqlite_master WHERE name = ?1)",
        [table],
        |row| row.get(0),
    )
}

fn merge_attached(conn: &mut Connection, source: &str) -> Result<MergeReport, rusqlite::Error> {
    let tx = conn.transaction()?;
    let total: i64 = tx.query_row("SELECT COUNT(*) FROM src.sessions", [], |r| r.get(0))?;
    tx.execute_batch(
        "CREATE TEMP TABLE new_sessions AS SELECT uuid FROM src.sessions \
         WHERE uuid NOT IN (SELECT uuid FROM main.sessions);",
    )?;
    let added = tx.execute(
        "INSERT INTO main.sessions (uuid, host, kernel, hook, started_at_ms, ended_at_ms, \
         events_seen, events_dropped, merged_from) \
         SELECT uuid, host, kernel, hook, started_at_ms, ended_at_ms, events_seen, \
         events_dropped, COALESCE(merged_from, ?1) FROM src.sessions \
         WHERE uuid IN (SELECT uuid FROM temp.new_sessions)",
        [source],
    )?;
    // Map the source's session and workload ids to ours; copy only new sessions' rows.
    tx.execute_batch(
        "INSERT OR IGNORE INTO main.workloads (name, kind, identity) \
           SELECT name, kind, identity FROM src.workloads; \
         CREATE TEMP TABLE session_map AS \
           SELECT s.id AS src_id, m.id AS dst_id FROM src.sessions s \
           JOIN main.sessions m ON m.uuid = s.uuid \
           WHERE s.uuid IN (SELECT uuid FROM temp.new_sessions); \
         CREATE TEMP TABLE workload_map AS \
           SELECT s.id AS src_id, m.id AS dst_id FROM src.workloads s \
           JOIN main.workloads m ON m.name = s.name; \
         INSERT INTO main.cgroups SELECT sm.dst_id, c.cgroup_id, c.path, wm.dst_id \
           FROM src.cgroups c JOIN temp.session_map sm ON sm.src_id = c.session_id \
           JOIN temp.workload_map wm ON wm.src_id = c.workload_id; \
         INSERT INTO main.observations SELECT sm.dst_id, wm.dst_id, o.path, o.path_flags, \
           o.count, o.first_seen_ms, o.last_seen_ms FROM src.observations o \
           JOIN temp.session_map sm ON sm.src_id = o.session_id \
           JOIN temp.workload_map wm ON wm.src_id = o.workload_id; \
         INSERT INTO main.observation_parents SELECT sm.dst_id, wm.dst_id, o.path, \
           o.path_flags, o.parent, o.count FROM src.observation_parents o \
           JOIN temp.session_map sm ON sm.src_id = o.session_id \
           JOIN temp.workload_map wm ON wm.src_id = o.workload_id; \
         INSERT INTO main.observation_uids SELECT sm.dst_id, wm.dst_id, o.path, \
           o.path_flags, o.uid, o.count FROM src.observation_uids o \
           JOIN temp.session_map sm ON sm.src_id = o.session_id \
           JOIN temp.workload_map wm ON wm.src_id = o.workload_id;",
    )?;
    // A source older than content (schema 3) or running-process records (schema 5)
    // has none to bring.
    if source_has(&tx, "observation_digests")? {
        tx.execute_batch(super::MERGE_CONTENT)?;
    }
    if source_has(&tx, "running_observations")? {
        tx.execute_batch(
            "INSERT INTO main.running_observations SELECT sm.dst_id, wm.dst_id, o.path, \
               o.path_flags, o.processes, o.seen_ms FROM src.running_observations o \
               JOIN temp.session_map sm ON sm.src_id = o.session_id \
               JOIN temp.workload_map wm ON wm.src_id = o.workload_id;",
        )?;
    }
    tx.execute_batch(
        "DROP TABLE temp.new_sessions; DROP TABLE temp.session_map; \
         DROP TABLE temp.workload_map;",
    )?;
    tx.commit()?;
    Ok(MergeReport {
        sessions_added: added,
        sessions_already_present: (total as usize).saturating_sub(added),
    })
}
