//! The learning database: SQLite (WAL), a versioned schema with migrations, batched
//! writes of what learning observed, and merging of databases from several nodes.
//!
//! The unit of record is an *observation*: what one learning session saw one
//! workload execute. Per-workload executables are the aggregate over sessions, so a
//! merge is a union of sessions (keyed by a UUID): commutative and idempotent, and
//! provenance (which host, which session) is never lost.

mod merge;
mod read_only;
mod recorded;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use rusqlite::{
    params, Connection, ErrorCode, OptionalExtension, Transaction, TransactionBehavior,
};

pub use merge::merge_into;
pub use read_only::is_database_file;
pub use recorded::{RecordSource, RecordedExec};

use crate::content::Sha256;
use crate::workload::WorkloadId;

/// Schema migrations; `PRAGMA user_version` is the number applied.
const MIGRATIONS: &[&str] = &[
    r#"
CREATE TABLE sessions (
    id INTEGER PRIMARY KEY,
    uuid TEXT NOT NULL UNIQUE,
    host TEXT NOT NULL,
    kernel TEXT NOT NULL,
    hook TEXT NOT NULL,
    started_at_ms INTEGER NOT NULL,
    ended_at_ms INTEGER,
    events_seen INTEGER NOT NULL DEFAULT 0,
    events_dropped INTEGER NOT NULL DEFAULT 0,
    merged_from TEXT
);
CREATE TABLE workloads (
    id INTEGER PRIMARY KEY,
    name TEXT NOT NULL UNIQUE,
    kind TEXT NOT NULL,
    identity TEXT NOT NULL
);
CREATE TABLE cgroups (
    session_id INTEGER NOT NULL REFERENCES sessions(id),
    cgroup_id INTEGER NOT NULL,
    path TEXT NOT NULL,
    workload_id INTEGER NOT NULL REFERENCES workloads(id),
    PRIMARY KEY (session_id, cgroup_id)
) WITHOUT ROWID;
CREATE TABLE observations (
    session_id INTEGER NOT NULL REFERENCES sessions(id),
    workload_id INTEGER NOT NULL REFERENCES workloads(id),
    path BLOB NOT NULL,
    path_flags INTEGER NOT NULL,
    count INTEGER NOT NULL,
    first_seen_ms INTEGER NOT NULL,
    last_seen_ms INTEGER NOT NULL,
    PRIMARY KEY (session_id, workload_id, path, path_flags)
) WITHOUT ROWID;
CREATE TABLE observation_parents (
    session_id INTEGER NOT NULL,
    workload_id INTEGER NOT NULL,
    path BLOB NOT NULL,
    path_flags INTEGER NOT NULL,
    parent BLOB NOT NULL,
    count INTEGER NOT NULL,
    PRIMARY KEY (session_id, workload_id, path, path_flags, parent)
) WITHOUT ROWID;
CREATE TABLE observation_uids (
    session_id INTEGER NOT NULL,
    workload_id INTEGER NOT NULL,
    path BLOB NOT NULL,
    path_flags INTEGER NOT NULL,
    uid INTEGER NOT NULL,
    count INTEGER NOT NULL,
    PRIMARY KEY (session_id, workload_id, path, path_flags, uid)
) WITHOUT ROWID;
CREATE VIEW executables AS
    SELECT workload_id, path, path_flags, SUM(count) AS count,
           MIN(first_seen_ms) AS first_seen_ms, MAX(last_seen_ms) AS last_seen_ms
    FROM observations GROUP BY workload_id, path, path_flags;
"#,
    r#"
CREATE TABLE violations (
    id INTEGER PRIMARY KEY,
    time_ms INTEGER NOT NULL,
    host TEXT NOT NULL,
    workload TEXT NOT NULL,
    profile TEXT,
    cgroup_id INTEGER NOT NULL,
    cgroup_path TEXT NOT NULL,
    pid INTEGER NOT NULL,
    ppid INTEGER NOT NULL,
    uid INTEGER NOT NULL,
    executable BLOB NOT NULL,
    executable_flags INTEGER NOT NULL,
    parent BLOB NOT NULL,
    action TEXT NOT NULL,
    reason TEXT NOT NULL,
    mechanism TEXT NOT NULL
);
CREATE INDEX violations_by_workload ON violations (workload, time_ms);
"#,
    // What was executed: the SHA-256 of each version of an executable that ran, and how
    // many execs ran a file whose content could not be hashed (see crate::content).
    r#"
CREATE TABLE observation_digests (
    session_id INTEGER NOT NULL,
    workload_id INTEGER NOT NULL,
    path BLOB NOT NULL,
    path_flags INTEGER NOT NULL,
    sha256 BLOB NOT NULL CHECK (length(sha256) = 32),
    count INTEGER NOT NULL,
    PRIMARY KEY (session_id, workload_id, path, path_flags, sha256)
) WITHOUT ROWID;
CREATE VIEW executable_digests AS
    SELECT workload_id, path, path_flags, sha256, SUM(count) AS count
    FROM observation_digests GROUP BY workload_id, path, path_flags, sha256;
ALTER TABLE sessions ADD COLUMN content_unknown INTEGER NOT NULL DEFAULT 0;
"#,
    // Repeated violations the kernel only counted (enforce/repeats.rs): a row with
    // repeats N > 0 stands for N violations like the last row of its kind; its pid,
    // ppid and uid are 0 and its parent empty, since each repeat had its own.
    r#"
ALTER TABLE violations ADD COLUMN repeats INTEGER NOT NULL DEFAULT 0;
"#,
    // Executables of processes already running when a session started: seen running,
    // not seen exec'd (no exec count). `executables` includes them, with their
    // process count as `running`.
    r#"
CREATE TABLE running_observations (
    session_id INTEGER NOT NULL,
    workload_id INTEGER NOT NULL,
    path BLOB NOT NULL,
    path_flags INTEGER NOT NULL,
    processes INTEGER NOT NULL,
    seen_ms INTEGER NOT NULL,
    PRIMARY KEY (session_id, workload_id, path, path_flags)
) WITHOUT ROWID;
DROP VIEW executables;
CREATE VIEW executables AS
    SELECT workload_id, path, path_flags, SUM(count) AS count,
           MIN(first_seen_ms) AS first_seen_ms, MAX(last_seen_ms) AS last_seen_ms,
           SUM(processes) AS running
    FROM (SELECT workload_id, path, path_flags, count, first_seen_ms, last_seen_ms,
                 0 AS processes FROM observations
          UNION ALL
          SELECT workload_id, path, path_flags, 0, seen_ms, seen_ms, processes
          FROM running_observations)
    GROUP BY workload_id, path, path_flags;
"#,
];

/// The first schema version with `running_observations`; older files are read as
/// they are, with no process seen running.
const RUNNING_SCHEMA: u32 = 5;

/// The schema version this build writes and understands.
pub const SCHEMA_VERSION: u32 = MIGRATIONS.len() as u32;

/// How long a command waits for another process's lock on the database (a learner
/// committing, another learner creating the schema) before giving up.
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

// Each message says what is wrong with which file and what to do; SQLite's own text is
// part of the message, not a chained source, so the chain never repeats it.
#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    #[error("database {path}: {detail}")]
    Sqlite {
        path: PathBuf,
        detail: String,
        /// SQLite answered busy or locked: the same call may succeed when tried again.
        busy: bool,
    },
    #[error(
        "database {path} is corrupt ({detail}); fix: restore it from a copy, or learn into a new --db file"
    )]
    Corrupt { path: PathBuf, detail: String },
    #[error(
        "database {path} has schema version {found}, newer than this fingerprint supports \
         ({supported}); use a newer fingerprint, or a new --db file"
    )]
    TooNew {
        path: PathBuf,
        found: u32,
        supported: u32,
    },
    #[error("database {path} does not exist; run `fingerprint learn --db {path}` first")]
    Missing { path: PathBuf },
    #[error(
        "{path} is an empty file, not a fingerprint database; fix: pass the --db that \
         `fingerprint learn` wrote (learn creates it)"
    )]
    Empty { path: PathBuf },
    #[error(
        "{path} is not a SQLite database; fix: pass a database written by `fingerprint learn`"
    )]
    NotSqlite { path: PathBuf },
    #[error(
        "{path} is a SQLite database without fingerprint's tables; fix: pass a database \
         written by `fingerprint learn`"
    )]
    NoSchema { path: PathBuf },
    #[error("{path}: cannot {action}: {cause}")]
    Io {
        path: PathBuf,
        action: &'static str,
        cause: std::io::Error,
    },
    #[error("database {path}: workload {name:?} has an identity this build cannot read: {detail}")]
    BadIdentity {
        path: PathBuf,
        name: String,
        detail: String,
    },
}

/// Facts about a learning session, written when it starts.
#[derive(Debug, Clone)]
pub struct SessionInfo {
    pub host: String,
    pub kernel: String,
    pub hook: String,
    pub started_at_ms: i64,
}

/// What one exec contributes to a workload's record.
#[derive(Debug, Clone)]
pub struct Observation {
    pub workload: WorkloadId,
    pub cgroup_id: u64,
    pub cgroup_path: String,
    pub path: Vec<u8>,
    pub path_flags: u32,
    pub parent: Vec<u8>,
    pub uid: u32,
    pub time_ms: i64,
}

/// Observations aggregated in memory between two writes, so a flush costs one
/// upsert per distinct executable, not one per exec.
#[derive(Debug, Default)]
pub struct Batch {
    executables: HashMap<(WorkloadId, Vec<u8>, u32), Aggregate>,
    cgroups: HashMap<u64, (String, WorkloadId)>,
    observations: u64,
    /// Execs per (workload, path, path_flags, digest): the content that ran.
    digests: HashMap<(WorkloadId, Vec<u8>, u32, Sha256), u64>,
    /// Execs whose content could not be hashed.
    content_unknown: u64,
    /// Processes already running when the session started, per executable.
    running: HashMap<(WorkloadId, Vec<u8>, u32), Running>,
}

/// The processes seen running one executable when a session started.
#[derive(Debug, Default)]
struct Running {
    processes: u64,
    seen_ms: i64,
}

/// An executable a process was already running when learning started.
#[derive(Debug, Clone)]
pub struct RunningProcess {
    pub workload: WorkloadId,
    pub cgroup_id: u64,
    pub cgroup_path: String,
    pub path: Vec<u8>,
    pub path_flags: u32,
    pub seen_ms: i64,
}

#[derive(Debug, Default)]
struct Aggregate {
    count: u64,
    first_seen_ms: i64,
    last_seen_ms: i64,
    parents: HashMap<Vec<u8>, u64>,
    uids: HashMap<u32, u64>,
}

impl Batch {
    pub fn add(&mut self, obs: Observation) {
        self.observations += 1;
        self.cgroups
            .entry(obs.cgroup_id)
            .or_insert_with(|| (obs.cgroup_path, obs.workload.clone()));
        let agg = self
            .executables
            .entry((obs.workload, obs.path, obs.path_flags))
            .or_insert_with(|| Aggregate {
                first_seen_ms: obs.time_ms,
                last_seen_ms: obs.time_ms,
                ..Aggregate::default()
            });
        agg.count += 1;
        agg.first_seen_ms = agg.first_seen_ms.min(obs.time_ms);
        agg.last_seen_ms = agg.last_seen_ms.max(obs.time_ms);
        *agg.parents.entry(obs.parent).or_default() += 1;
        *agg.uids.entry(obs.uid).or_default() += 1;
    }

    /// A process seen running (not exec'd): recorded apart from execs, with no count.
    pub fn add_running(&mut self, process: RunningProcess) {
        self.cgroups
            .entry(process.cgroup_id)
            .or_insert_with(|| (process.cgroup_path, process.workload.clone()));
        let running = self
            .running
            .entry((process.workload, process.path, process.path_flags))
            .or_default();
        running.processes += 1;
        running.seen_ms = process.seen_ms;
    }

    /// Observations added since the batch was created.
    pub fn len(&self) -> u64 {
        self.observations
    }

    pub fn is_empty(&self) -> bool {
        self.observations == 0
    }

    /// What one exec of `path` ran: its digest, or `None` when it could not be hashed.
    /// Kept apart from [`Batch::add`] because a digest may be known only later.
    pub fn add_content(
        &mut self,
        workload: WorkloadId,
        path: Vec<u8>,
        path_flags: u32,
        sha256: Option<Sha256>,
    ) {
        match sha256 {
            Some(digest) => {
                *self
                    .digests
                    .entry((workload, path, path_flags, digest))
                    .or_default() += 1
            }
            None => self.content_unknown += 1,
        }
    }
}

/// One executable as learned for a workload, aggregated over every session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LearnedExecutable {
    pub path: Vec<u8>,
    pub path_flags: u32,
    pub count: u64,
    pub first_seen_ms: i64,
    pub last_seen_ms: i64,
    /// Every content seen executed under this path, sorted; empty when none could be
    /// hashed (or the database predates content recording).
    pub sha256: Vec<Sha256>,
    /// Processes seen running it when a session started (0: only seen exec'd).
    pub running: u64,
}

/// Everything learned about one workload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LearnedWorkload {
    pub id: WorkloadId,
    pub name: String,
    pub executables: Vec<LearnedExecutable>,
}

/// A learning session as stored (for status, merge reports and tests).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionRecord {
    pub uuid: String,
    pub host: String,
    pub kernel: String,
    pub hook: String,
    pub started_at_ms: i64,
    pub ended_at_ms: Option<i64>,
    pub events_seen: u64,
    pub events_dropped: u64,
    pub merged_from: Option<String>,
}

/// One exec that broke a profile, as enforcement reported it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ViolationRecord {
    pub time_ms: i64,
    pub host: String,
    pub workload: String,
    pub profile: Option<String>,
    pub cgroup_id: u64,
    pub cgroup_path: String,
    pub pid: u32,
    pub ppid: u32,
    pub uid: u32,
    pub executable: Vec<u8>,
    pub executable_flags: u32,
    pub parent: Vec<u8>,
    pub action: String,
    pub reason: String,
    pub mechanism: String,
    /// 0: this one exec. N > 0: N violations the kernel only counted, like the last
    /// one reported of their kind (pid, ppid, uid and parent are then 0 and empty).
    pub repeats: u64,
}

/// What a merge did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MergeReport {
    pub sessions_added: usize,
    pub sessions_already_present: usize,
}

pub struct Database {
    conn: Connection,
    path: PathBuf,
    /// How to open this file again for reading (merges ATTACH their sources so).
    read_uri: String,
}

impl Database {
    /// Open (creating it if missing) and migrate a database for writing.
    ///
    /// Several processes may do this at once on a new file (two learners started
    /// together): the busy timeout is set before anything takes a lock, and the schema
    /// version is read and brought up to date inside one IMMEDIATE transaction, so one
    /// creates the schema and the others wait and then find it.
    pub fn open(path: &Path) -> Result<Database, StorageError> {
        let conn = Connection::open(path).map_err(|e| sqlite_error(path, e))?;
        let mut db = Database {
            conn,
            path: path.to_owned(),
            read_uri: read_only::uri(path, false),
        };
        db.conn
            .busy_timeout(BUSY_TIMEOUT)
            .map_err(|e| sqlite_error(path, e))?;
        // SQLite answers SQLITE_BUSY at once, without waiting, where waiting could
        // deadlock: two connections each holding a shared lock while one switches a
        // new file to WAL and the other migrates it. Both steps are idempotent (the
        // migration is one transaction), so they are tried again until the timeout.
        let deadline = std::time::Instant::now() + BUSY_TIMEOUT;
        loop {
            match db.set_up() {
                Err(StorageError::Sqlite { busy: true, .. })
                    if std::time::Instant::now() < deadline =>
                {
                    std::thread::yield_now();
                }
                result => return result.map(|()| db),
            }
        }
    }

    /// WAL with synchronous=NORMAL (a crash of this process loses nothing committed),
    /// then the schema brought up to date.
    fn set_up(&mut self) -> Result<(), StorageError> {
        self.conn
            .execute_batch(
                "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL; PRAGMA foreign_keys=ON;",
            )
            .map_err(|e| self.err(e))?;
        self.migrate()
    }

    /// Open an existing database to read it, without writing a byte: read-only, its
    /// journal mode and schema left as they are (every schema this build knows is
    /// readable as it is), on a read-only mount or as a user who may not write it.
    pub fn open_read_only(path: &Path) -> Result<Database, StorageError> {
        let (conn, read_uri) = read_only::connect(path)?;
        let db = Database {
            conn,
            path: path.to_owned(),
            read_uri,
        };
        match db.schema_version()? {
            0 => Err(StorageError::NoSchema {
                path: path.to_owned(),
            }),
            found if found > SCHEMA_VERSION => Err(StorageError::TooNew {
                path: path.to_owned(),
                found,
                supported: SCHEMA_VERSION,
            }),
            _ => Ok(db),
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    fn err(&self, e: rusqlite::Error) -> StorageError {
        sqlite_error(&self.path, e)
    }

    fn schema_version(&self) -> Result<u32, StorageError> {
        self.conn
            .query_row("PRAGMA user_version", [], |row| row.get(0))
            .map_err(|e| self.err(e))
    }

    fn migrate(&mut self) -> Result<(), StorageError> {
        let path = self.path.clone();
        let err = |e| sqlite_error(&path, e);
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(err)?;
        let found: u32 = tx
            .query_row("PRAGMA user_version", [], |row| row.get(0))
            .map_err(err)?;
        if found > SCHEMA_VERSION {
            return Err(StorageError::TooNew {
                path: path.clone(),
                found,
                supported: SCHEMA_VERSION,
            });
        }
        for (index, sql) in MIGRATIONS.iter().enumerate().skip(found as usize) {
            let version = index + 1;
            tx.execute_batch(&format!("{sql}; PRAGMA user_version = {version};"))
                .map_err(err)?;
        }
        tx.commit().map_err(err)
    }

    /// Record the start of a learning session; returns its row id.
    pub fn begin_session(&self, info: &SessionInfo) -> Result<i64, StorageError> {
        self.conn
            .execute(
                "INSERT INTO sessions (uuid, host, kernel, hook, started_at_ms) \
                 VALUES (?1, ?2, ?3, ?4, ?5)",
                params![
                    new_uuid(),
                    info.host,
                    info.kernel,
                    info.hook,
                    info.started_at_ms
                ],
            )
            .map_err(|e| self.err(e))?;
        Ok(self.conn.last_insert_rowid())
    }

    /// Write a batch of observations and the session's counters in one transaction.
    pub fn record(
        &mut self,
        session: i64,
        batch: &Batch,
        events_seen: u64,
        events_dropped: u64,
        ended_at_ms: Option<i64>,
    ) -> Result<(), StorageError> {
        let path = self.path.clone();
        let tx = self
            .conn
            .transaction()
            .map_err(|e| sqlite_error(&path, e))?;
        write_batch(&tx, session, batch).map_err(|e| sqlite_error(&path, e))?;
        write_content(&tx, session, batch).map_err(|e| sqlite_error(&path, e))?;
        tx.execute(
            "UPDATE sessions SET events_seen = ?2, events_dropped = ?3, \
             ended_at_ms = COALESCE(?4, ended_at_ms) WHERE id = ?1",
            params![
                session,
                events_seen as i64,
                events_dropped as i64,
                ended_at_ms
            ],
        )
        .map_err(|e| sqlite_error(&path, e))?;
        tx.commit().map_err(|e| sqlite_error(&path, e))
    }

    /// Append violations in one transaction.
    pub fn record_violations(&mut self, rows: &[ViolationRecord]) -> Result<(), StorageError> {
        let path = self.path.clone();
        let err = |e| sqlite_error(&path, e);
        let tx = self.conn.transaction().map_err(err)?;
        {
            let mut insert = tx
                .prepare_cached(
                    "INSERT INTO violations (time_ms, host, workload, profile, cgroup_id, \
                     cgroup_path, pid, ppid, uid, executable, executable_flags, parent, action, \
                     reason, mechanism, repeats) \
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, \
                     ?16)",
                )
                .map_err(err)?;
            for v in rows {
                insert
                    .execute(params![
                        v.time_ms,
                        v.host,
                        v.workload,
                        v.profile,
                        v.cgroup_id as i64,
                        v.cgroup_path,
                        v.pid,
                        v.ppid,
                        v.uid,
                        v.executable,
                        v.executable_flags,
                        v.parent,
                        v.action,
                        v.reason,
                        v.mechanism,
                        v.repeats as i64
                    ])
                    .map_err(err)?;
            }
        }
        tx.commit().map_err(err)
    }

    /// Everything learned, one entry per workload (sorted by name), executables
    /// sorted by path.
    pub fn learned_workloads(&self) -> Result<Vec<LearnedWorkload>, StorageError> {
        let mut workloads = self.workload_index()?;
        let running = match self.schema_version()? >= RUNNING_SCHEMA {
            true => "running",
            false => "0",
        };
        let mut stmt = self
            .conn
            .prepare(&format!(
                "SELECT workload_id, path, path_flags, count, first_seen_ms, last_seen_ms, \
                 {running} FROM executables ORDER BY workload_id, path, path_flags"
            ))
            .map_err(|e| self.err(e))?;
        let rows = stmt
            .query_map([], |row| {
                Ok((
                    row.get::<_, i64>(0)?,
                    LearnedExecutable {
                        path: row.get(1)?,
                        path_flags: row.get(2)?,
                        count: row.get::<_, i64>(3)? as u64,
                        first_seen_ms: row.get(4)?,
                        last_seen_ms: row.get(5)?,
                        sha256: Vec::new(),
                        running: row.get::<_, i64>(6)? as u64,
                    },
                ))
            })
            .map_err(|e| self.err(e))?;
        for row in rows {
            let (workload_id, exe) = row.map_err(|e| self.err(e))?;
            if let Some(workload) = workloads.get_mut(&workload_id) {
                workload.executables.push(exe);
            }
        }
        self.attach_digests(&mut workloads)?;
        let mut list: Vec<LearnedWorkload> = workloads.into_values().collect();
        list.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(list)
    }

    /// Fill in each learned executable's digests from `executable_digests`.
    fn attach_digests(
        &self,
        workloads: &mut HashMap<i64, LearnedWorkload>,
    ) -> Result<(), StorageError> {
        let mut stmt = self
            .conn
            .prepare(
                "SELECT workload_id, path, path_flags, sha256 FROM executable_digests \
                 ORDER BY workload_id, path, path_flags, sha256",
            )
            .map_err(|e| self.err(e))?;
        let rows = stmt
            .query_map([], |row| {
                Ok((
                    row.get::<_, i64>(0)?,
                    row.get::<_, Vec<u8>>(1)?,
                    row.get::<_, u32>(2)?,
                    row.get::<_, Vec<u8>>(3)?,
                ))
            })
            .map_err(|e| self.err(e))?;
        // (workload, flags) -> path -> digests, so lookups can borrow the path.
        let mut digests: HashMap<(i64, u32), HashMap<Vec<u8>, Vec<Sha256>>> = HashMap::new();
        for row in rows {
            let (workload, path, flags, digest) = row.map_err(|e| self.err(e))?;
            // The table's CHECK keeps every digest 32 bytes long.
            if let Some(digest) = Sha256::from_slice(&digest) {
                digests
                    .entry((workload, flags))
                    .or_default()
                    .entry(path)
                    .or_default()
                    .push(digest);
            }
        }
        for (id, workload) in workloads.iter_mut() {
            for exe in &mut workload.executables {
                if let Some(found) = digests
                    .get_mut(&(*id, exe.path_flags))
                    .and_then(|paths| paths.remove(&exe.path))
                {
                    exe.sha256 = found;
                }
            }
        }
        Ok(())
    }

    /// Execs whose content could not be hashed, over every session.
    pub fn content_unknown(&self) -> Result<u64, StorageError> {
        self.conn
            .query_row(
                "SELECT COALESCE(SUM(content_unknown), 0) FROM sessions",
                [],
                |row| row.get::<_, i64>(0),
            )
            .map(|n| n as u64)
            .map_err(|e| self.err(e))
    }

    fn workload_index(&self) -> Result<HashMap<i64, LearnedWorkload>, StorageError> {
        let mut stmt = self
            .conn
            .prepare("SELECT id, name, identity FROM workloads")
            .map_err(|e| self.err(e))?;
        let rows = stmt
            .query_map([], |row| {
                Ok((
                    row.get::<_, i64>(0)?,
                    row.get::<_, String>(1)?,
                    row.get::<_, String>(2)?,
                ))
            })
            .map_err(|e| self.err(e))?;
        let mut index = HashMap::new();
        for row in rows {
            let (id, name, identity) = row.map_err(|e| self.err(e))?;
            let workload_id: WorkloadId =
                serde_json::from_str(&identity).map_err(|e| StorageError::BadIdentity {
                    path: self.path.clone(),
                    name: name.clone(),
                    detail: e.to_string(),
                })?;
            index.insert(
                id,
                LearnedWorkload {
                    id: workload_id,
                    name,
                    executables: Vec::new(),
                },
            );
        }
        Ok(index)
    }

    /// Every session recorded or merged into this database, oldest first.
    pub fn sessions(&self) -> Result<Vec<SessionRecord>, StorageError> {
        let mut stmt = self
            .conn
            .prepare(
                "SELECT uuid, host, kernel, hook, started_at_ms, ended_at_ms, events_seen, \
                 events_dropped, merged_from FROM sessions ORDER BY started_at_ms, uuid",
            )
            .map_err(|e| self.err(e))?;
        let rows = stmt
            .query_map([], |row| {
                Ok(SessionRecord {
                    uuid: row.get(0)?,
                    host: row.get(1)?,
                    kernel: row.get(2)?,
                    hook: row.get(3)?,
                    started_at_ms: row.get(4)?,
                    ended_at_ms: row.get(5)?,
                    events_seen: row.get::<_, i64>(6)? as u64,
                    events_dropped: row.get::<_, i64>(7)? as u64,
                    merged_from: row.get(8)?,
                })
            })
            .map_err(|e| self.err(e))?;
        rows.collect::<Result<_, _>>().map_err(|e| self.err(e))
    }
}

/// A SQLite error on `path`: [`StorageError::Corrupt`] when SQLite says the file is
/// damaged, else [`StorageError::Sqlite`], with SQLite's message said once.
fn sqlite_error(path: &Path, error: rusqlite::Error) -> StorageError {
    let path = path.to_owned();
    let corrupt = matches!(
        error.sqlite_error_code(),
        Some(ErrorCode::DatabaseCorrupt | ErrorCode::NotADatabase)
    );
    let busy = matches!(
        error.sqlite_error_code(),
        Some(ErrorCode::DatabaseBusy | ErrorCode::DatabaseLocked)
    );
    let detail = match error {
        rusqlite::Error::SqliteFailure(_, Some(message)) => message,
        // rusqlite's text for a bare code is "Error code N: text": keep the text.
        other => {
            let text = other.to_string();
            match text.split_once(": ") {
                Some((code, rest)) if code.starts_with("Error code") => rest.to_owned(),
                _ => text,
            }
        }
    };
    match corrupt {
        true => StorageError::Corrupt { path, detail },
        false => StorageError::Sqlite { path, detail, busy },
    }
}

/// A random UUID (v4) from the kernel's random pool.
fn new_uuid() -> String {
    let mut bytes = [0u8; 16];
    // getrandom(2) only fails for invalid arguments; a short read cannot happen for 16 bytes.
    // SAFETY: the buffer is valid for 16 bytes of writes.
    let _ = unsafe { libc::getrandom(bytes.as_mut_ptr().cast(), bytes.len(), 0) };
    bytes[6] = (bytes[6] & 0x0f) | 0x40;
    bytes[8] = (bytes[8] & 0x3f) | 0x80;
    let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    format!(
        "{}-{}-{}-{}-{}",
        &hex[0..8],
        &hex[8..12],
        &hex[12..16],
        &hex[16..20],
        &hex[20..32]
    )
}

fn workload_row(tx: &Transaction, id: &WorkloadId) -> rusqlite::Result<i64> {
    let name = id.name();
    if let Some(row) = tx
        .query_row("SELECT id FROM workloads WHERE name = ?1", [&name], |r| {
            r.get(0)
        })
        .optional()?
    {
        return Ok(row);
    }
    let identity = serde_json::to_string(id).map_err(|e| {
        rusqlite::Error::ToSqlConversionFailure(
            Box::new(e) as Box<dyn std::error::Error + Send + Sync>
        )
    })?;
    tx.execute(
        "INSERT INTO workloads (name, kind, identity) VALUES (?1, ?2, ?3)",
        params![name, id.kind(), identity],
    )?;
    Ok(tx.last_insert_rowid())
}

fn write_batch(tx: &Transaction, session: i64, batch: &Batch) -> rusqlite::Result<()> {
    let mut workload_ids: HashMap<&WorkloadId, i64> = HashMap::new();
    for workload in batch
        .cgroups
        .values()
        .map(|(_, w)| w)
        .chain(batch.executables.keys().map(|(w, _, _)| w))
        .chain(batch.running.keys().map(|(w, _, _)| w))
    {
        if !workload_ids.contains_key(workload) {
            workload_ids.insert(workload, workload_row(tx, workload)?);
        }
    }
    let mut cgroup = tx.prepare_cached(
        "INSERT OR IGNORE INTO cgroups (session_id, cgroup_id, path, workload_id) \
         VALUES (?1, ?2, ?3, ?4)",
    )?;
    for (cgroup_id, (path, workload)) in &batch.cgroups {
        cgroup.execute(params![
            session,
            *cgroup_id as i64,
            path,
            workload_ids[workload]
        ])?;
    }
    let mut exe = tx.prepare_cached(
        "INSERT INTO observations (session_id, workload_id, path, path_flags, count, \
         first_seen_ms, last_seen_ms) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7) \
         ON CONFLICT DO UPDATE SET count = count + excluded.count, \
         first_seen_ms = MIN(first_seen_ms, excluded.first_seen_ms), \
         last_seen_ms = MAX(last_seen_ms, excluded.last_seen_ms)",
    )?;
    let mut parent = tx.prepare_cached(
        "INSERT INTO observation_parents (session_id, workload_id, path, path_flags, parent, \
         count) VALUES (?1, ?2, ?3, ?4, ?5, ?6) \
         ON CONFLICT DO UPDATE SET count = count + excluded.count",
    )?;
    let mut uid = tx.prepare_cached(
        "INSERT INTO observation_uids (session_id, workload_id, path, path_flags, uid, count) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6) ON CONFLICT DO UPDATE SET count = count + excluded.count",
    )?;
    for ((workload, path, flags), agg) in &batch.executables {
        let workload = workload_ids[workload];
        exe.execute(params![
            session,
            workload,
            path,
            flags,
            agg.count as i64,
            agg.first_seen_ms,
            agg.last_seen_ms
        ])?;
        for (parent_path, count) in &agg.parents {
            parent.execute(params![
                session,
                workload,
                path,
                flags,
                parent_path,
                *count as i64
            ])?;
        }
        for (user, count) in &agg.uids {
            uid.execute(params![session, workload, path, flags, user, *count as i64])?;
        }
    }
    let mut running = tx.prepare_cached(
        "INSERT INTO running_observations (session_id, workload_id, path, path_flags, \
         processes, seen_ms) VALUES (?1, ?2, ?3, ?4, ?5, ?6) \
         ON CONFLICT DO UPDATE SET processes = processes + excluded.processes, \
         seen_ms = MAX(seen_ms, excluded.seen_ms)",
    )?;
    for ((workload, path, flags), seen) in &batch.running {
        running.execute(params![
            session,
            workload_ids[workload],
            path,
            flags,
            seen.processes as i64,
            seen.seen_ms
        ])?;
    }
    Ok(())
}

/// The content half of a batch: digests per executable and the unknown count.
fn write_content(tx: &Transaction, session: i64, batch: &Batch) -> rusqlite::Result<()> {
    let mut workload_ids: HashMap<&WorkloadId, i64> = HashMap::new();
    let mut insert = tx.prepare_cached(
        "INSERT INTO observation_digests (session_id, workload_id, path, path_flags, sha256, \
         count) VALUES (?1, ?2, ?3, ?4, ?5, ?6) \
         ON CONFLICT DO UPDATE SET count = count + excluded.count",
    )?;
    for ((workload, path, flags, digest), count) in &batch.digests {
        let workload_id = match workload_ids.get(workload) {
            Some(id) => *id,
            None => {
                let id = workload_row(tx, workload)?;
                workload_ids.insert(workload, id);
                id
            }
        };
        insert.execute(params![
            session,
            workload_id,
            path,
            flags,
            &digest.0[..],
            *count as i64
        ])?;
    }
    if batch.content_unknown > 0 {
        tx.execute(
            "UPDATE sessions SET content_unknown = content_unknown + ?2 WHERE id = ?1",
            params![session, batch.content_unknown as i64],
        )?;
    }
    Ok(())
}

/// The content rows of the sessions a merge brings in (run inside `merge::merge_attached`'s
/// transaction, while its session and workload maps exist).
pub(crate) const MERGE_CONTENT: &str =
    "INSERT INTO main.observation_digests SELECT sm.dst_id, wm.dst_id, \
       o.path, o.path_flags, o.sha256, o.count FROM src.observation_digests o \
       JOIN temp.session_map sm ON sm.src_id = o.session_id \
       JOIN temp.workload_map wm ON wm.src_id = o.workload_id; \
     UPDATE main.sessions SET content_unknown = \
       (SELECT s.content_unknown FROM src.sessions s WHERE s.uuid = main.sessions.uuid) \
       WHERE uuid IN (SELECT uuid FROM temp.new_sessions);";

#[cfg(test)]
mod tests {
    use super::*;

    fn learn_into(path: &Path, host: &str, workload: &str, exes: &[&str]) {
        let mut db = Database::open(path).unwrap();
        let session = db
            .begin_session(&SessionInfo {
                host: host.into(),
                kernel: "6.1.0".into(),
                hook: "tp_btf/sched_process_exec".into(),
                started_at_ms: 1_000,
            })
            .unwrap();
        let mut batch = Batch::default();
        for (i, exe) in exes.iter().enumerate() {
            batch.add(Observation {
                workload: WorkloadId::Cgroup {
                    path: workload.into(),
                },
                cgroup_id: 42,
                cgroup_path: workload.into(),
                path: exe.as_bytes().to_vec(),
                path_flags: 0,
                parent: b"/bin/sh".to_vec(),
                uid: 0,
                time_ms: 2_000 + i as i64,
            });
        }
        db.record(session, &batch, exes.len() as u64, 0, Some(3_000))
            .unwrap();
    }

    /// Per workload name: (path, count) of each executable.
    type Summary = Vec<(String, Vec<(Vec<u8>, u64)>)>;

    fn summary(path: &Path) -> Summary {
        Database::open_read_only(path)
            .unwrap()
            .learned_workloads()
            .unwrap()
            .into_iter()
            .map(|w| {
                let exes = w
                    .executables
                    .into_iter()
                    .map(|e| (e.path, e.count))
                    .collect();
                (w.name, exes)
            })
            .collect()
    }

    #[test]
    fn merging_databases_is_a_union_idempotent_and_order_free() {
        let dir = tempfile::tempdir().unwrap();
        let (a, b) = (dir.path().join("a.db"), dir.path().join("b.db"));
        learn_into(
            &a,
            "node-a",
            "/web",
            &["/usr/bin/true", "/usr/bin/true", "/bin/ls"],
        );
        learn_into(&b, "node-b", "/web", &["/usr/bin/true", "/usr/bin/date"]);
        learn_into(&b, "node-b", "/batch", &["/usr/bin/sort"]);

        let (ab, ba) = (dir.path().join("ab.db"), dir.path().join("ba.db"));
        let added = |into: &Path, sources: &[&Path]| -> Vec<(usize, usize)> {
            let sources: Vec<PathBuf> = sources.iter().map(|s| s.to_path_buf()).collect();
            merge_into(into, &sources)
                .unwrap()
                .into_iter()
                .map(|(_, r)| (r.sessions_added, r.sessions_already_present))
                .collect()
        };
        assert_eq!(added(&ab, &[&a, &b]), [(1, 0), (2, 0)]);
        assert_eq!(added(&ab, &[&a]), [(0, 1)], "idempotent");
        added(&ba, &[&b, &a]);

        assert_eq!(summary(&ab), summary(&ba), "order does not matter");
        let web = summary(&ab)
            .into_iter()
            .find(|(n, _)| n == "/web")
            .unwrap()
            .1;
        assert_eq!(
            web,
            vec![
                (b"/bin/ls".to_vec(), 1),
                (b"/usr/bin/date".to_vec(), 1),
                (b"/usr/bin/true".to_vec(), 3)
            ]
        );
        let hosts: Vec<(String, Option<String>)> = Database::open_read_only(&ab)
            .unwrap()
            .sessions()
            .unwrap()
            .into_iter()
            .map(|s| {
                (
                    s.host,
                    s.merged_from
                        .map(|m| m.rsplit('/').next().unwrap().to_string()),
                )
            })
            .collect();
        assert!(
            hosts.contains(&("node-a".into(), Some("a.db".into()))),
            "{hosts:?}"
        );
        assert_eq!(hosts.len(), 3, "provenance: one session per source session");
    }

    /// One session in which `workload` ran `exe` with each of `contents` (None: the
    /// content could not be hashed).
    fn learn_content(path: &Path, workload: &str, exe: &str, contents: &[Option<&str>]) {
        learn_into(path, "h", workload, &vec![exe; contents.len()]);
        let mut db = Database::open(path).unwrap();
        let session: i64 = db
            .conn
            .query_row("SELECT MAX(id) FROM sessions", [], |row| row.get(0))
            .unwrap();
        let mut batch = Batch::default();
        for content in contents {
            let id = WorkloadId::Cgroup {
                path: workload.into(),
            };
            let digest = content.map(|c| Sha256::of(c.as_bytes()));
            batch.add_content(id, exe.as_bytes().to_vec(), 0, digest);
        }
        db.record(session, &batch, contents.len() as u64, 0, Some(3_000))
            .unwrap();
    }

    fn learned_digests(path: &Path) -> Vec<Sha256> {
        let learned = Database::open_read_only(path).unwrap().learned_workloads();
        learned.unwrap()[0].executables[0].sha256.clone()
    }

    #[test]
    fn merged_databases_keep_the_union_of_digests_and_unknown_counts() {
        let dir = tempfile::tempdir().unwrap();
        let (a, b, into) = (
            dir.path().join("a.db"),
            dir.path().join("b.db"),
            dir.path().join("into.db"),
        );
        learn_content(&a, "/web", "/bin/web", &[Some("v1"), Some("v1"), None]);
        learn_content(&b, "/web", "/bin/web", &[Some("v2"), Some("v1")]);
        let mut expected = vec![Sha256::of(b"v1"), Sha256::of(b"v2")];
        expected.sort();
        assert_eq!(learned_digests(&a), vec![Sha256::of(b"v1")]);
        merge::merge_into(&into, &[a.clone(), b.clone(), a.clone()]).unwrap();
        assert_eq!(learned_digests(&into), expected);
        let db = Database::open_read_only(&into).unwrap();
        assert_eq!(db.content_unknown().unwrap(), 1, "merged once, not twice");
    }

    /// A database as the previous schema (3) left it: read as it is (no process
    /// seen running), then migrated by the first writer with nothing lost.
    #[test]
    fn a_schema_3_database_is_read_as_it_is_and_migrates() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("v3.db");
        {
            let conn = Connection::open(&path).unwrap();
            for sql in &MIGRATIONS[..3] {
                conn.execute_batch(sql).unwrap();
            }
            conn.execute_batch(
                "PRAGMA user_version = 3; \
                 INSERT INTO sessions (id, uuid, host, kernel, hook, started_at_ms) \
                   VALUES (1, 'u', 'h', 'k', 'x', 0); \
                 INSERT INTO workloads (id, name, kind, identity) \
                   VALUES (1, '/w', 'cgroup', '{\"kind\":\"cgroup\",\"path\":\"/w\"}'); \
                 INSERT INTO observations VALUES (1, 1, X'2f62696e2f61', 0, 4, 10, 20);",
            )
            .unwrap();
        }
        let exes = |db: &Database| -> Vec<(u64, u64)> {
            db.learned_workloads().unwrap()[0]
                .executables
                .iter()
                .map(|e| (e.count, e.running))
                .collect()
        };
        let read = Database::open_read_only(&path).unwrap();
        assert_eq!(exes(&read), [(4, 0)]);
        assert_eq!(read.recorded_execs(None).unwrap().len(), 1);
        assert_eq!(
            read.schema_version().unwrap(),
            3,
            "reading does not migrate"
        );
        drop(read);
        let mut db = Database::open(&path).unwrap();
        assert_eq!(db.schema_version().unwrap(), SCHEMA_VERSION);
        let mut batch = Batch::default();
        batch.add_running(RunningProcess {
            workload: WorkloadId::Cgroup { path: "/w".into() },
            cgroup_id: 1,
            cgroup_path: "/w".into(),
            path: b"/bin/a".to_vec(),
            path_flags: 0,
            seen_ms: 30,
        });
        db.record(1, &batch, 0, 0, None).unwrap();
        assert_eq!(
            exes(&db),
            [(4, 1)],
            "the exec count is kept, the process added"
        );
    }

    /// Sources of every older schema merge: each brings its sessions and executions,
    /// and what its schema did not record yet (digests, running processes) is simply
    /// absent.
    #[test]
    fn sources_of_every_older_schema_merge() {
        let dir = tempfile::tempdir().unwrap();
        let sources: Vec<PathBuf> = (1..SCHEMA_VERSION)
            .map(|version| {
                let path = dir.path().join(format!("v{version}.db"));
                let conn = Connection::open(&path).unwrap();
                for sql in &MIGRATIONS[..version as usize] {
                    conn.execute_batch(sql).unwrap();
                }
                conn.execute_batch(&format!(
                    "PRAGMA user_version = {version}; \
                     INSERT INTO sessions (id, uuid, host, kernel, hook, started_at_ms) \
                       VALUES (1, 'u{version}', 'h', 'k', 'x', 0); \
                     INSERT INTO workloads (id, name, kind, identity) \
                       VALUES (1, '/w', 'cgroup', '{{\"kind\":\"cgroup\",\"path\":\"/w\"}}'); \
                     INSERT INTO observations VALUES (1, 1, X'2f62696e2f61', 0, {version}, 10, 20);",
                ))
                .unwrap();
                path
            })
            .collect();
        let into = dir.path().join("merged.db");
        let reports = merge::merge_into(&into, &sources).unwrap();
        assert!(
            reports.iter().all(|(_, r)| r.sessions_added == 1),
            "{reports:?}"
        );
        let merged = Database::open_read_only(&into).unwrap();
        let count: u64 = (1..SCHEMA_VERSION as u64).sum();
        let learned = merged.learned_workloads().unwrap();
        assert_eq!(learned[0].executables[0].count, count);
    }

    #[test]
    fn a_newer_schema_is_refused_and_left_alone() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("new.db");
        Connection::open(&path)
            .unwrap()
            .execute_batch("PRAGMA user_version = 99;")
            .unwrap();
        let err = Database::open(&path).err().expect("refused");
        assert!(
            matches!(err, StorageError::TooNew { found: 99, .. }),
            "{err}"
        );
        assert!(err.to_string().contains("newer"), "{err}");
    }

    // Two `learn`s started together on a new database: one used to die with
    // "database is locked" or "table sessions already exists".
    #[test]
    fn openers_racing_on_a_new_database_all_succeed() {
        const OPENERS: usize = 8;
        let dir = tempfile::tempdir().unwrap();
        for round in 0..10 {
            let path = dir.path().join(format!("race-{round}.db"));
            let start = std::sync::Barrier::new(OPENERS);
            let results: Vec<Result<(), String>> = std::thread::scope(|scope| {
                let openers: Vec<_> = (0..OPENERS)
                    .map(|_| {
                        scope.spawn(|| {
                            start.wait();
                            Database::open(&path).map(drop).map_err(|e| e.to_string())
                        })
                    })
                    .collect();
                openers.into_iter().map(|o| o.join().unwrap()).collect()
            });
            for result in results {
                assert_eq!(result, Ok(()), "round {round}");
            }
            let version: u32 = Connection::open(&path)
                .unwrap()
                .query_row("PRAGMA user_version", [], |r| r.get(0))
                .unwrap();
            assert_eq!(version, SCHEMA_VERSION);
        }
    }

    #[test]
    fn paths_are_stored_losslessly() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("bytes.db");
        learn_into(&path, "h", "/w", &[]);
        let mut db = Database::open(&path).unwrap();
        let session = db
            .begin_session(&SessionInfo {
                host: "h".into(),
                kernel: "k".into(),
                hook: "x".into(),
                started_at_ms: 0,
            })
            .unwrap();
        let odd = b"/tmp/new\nline \xff\xfe".to_vec();
        let mut batch = Batch::default();
        batch.add(Observation {
            workload: WorkloadId::Cgroup { path: "/w".into() },
            cgroup_id: 1,
            cgroup_path: "/w".into(),
            path: odd.clone(),
            path_flags: 0,
            parent: Vec::new(),
            uid: 0,
            time_ms: 0,
        });
        db.record(session, &batch, 1, 0, None).unwrap();
        assert_eq!(summary(&path)[0].1, vec![(odd, 1)]);
    }
}
