//! What commands do to the files they are given: databases read by `show`, `diff`,
//! `export` and `merge` stay exactly as they were (opened read-only, never switched to
//! WAL or migrated), also on a read-only mount or as another user; what `merge` and
//! `export` write appears whole or not at all.

use std::collections::BTreeMap;
use std::ffi::{OsStr, OsString};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use fingerprint::storage::{Batch, Database, Observation, SessionInfo};
use fingerprint::workload::WorkloadId;

use crate::common::*;

/// A learning database as `learn` leaves it: one session in which each cgroup path
/// (the workload) ran its executables.
pub fn learned_db(path: &Path, workloads: &[(&str, &[&str])]) {
    let named: Vec<(WorkloadId, &[&str])> = workloads
        .iter()
        .map(|(cgroup, exes)| {
            let id = WorkloadId::Cgroup {
                path: cgroup.to_string(),
            };
            (id, *exes)
        })
        .collect();
    learned_db_of(path, &named);
}

/// A learning database with one session in which each workload ran its executables.
pub fn learned_db_of(path: &Path, workloads: &[(WorkloadId, &[&str])]) {
    let mut db = Database::open(path).expect("creating a learning database");
    let session = db
        .begin_session(&SessionInfo {
            host: "test-node".into(),
            kernel: "6.1.0".into(),
            hook: "tp_btf/sched_process_exec".into(),
            started_at_ms: 1_000,
        })
        .expect("session");
    let mut batch = Batch::default();
    for (workload, exes) in workloads {
        for exe in *exes {
            batch.add(Observation {
                workload: workload.clone(),
                cgroup_id: 42,
                cgroup_path: format!("/{}", workload.name().trim_start_matches('/')),
                path: exe.as_bytes().to_vec(),
                path_flags: 0,
                parent: b"/bin/sh".to_vec(),
                uid: 0,
                time_ms: 2_000,
            });
        }
    }
    db.record(session, &batch, batch.len(), 0, Some(3_000))
        .expect("recording");
}

/// `count` workloads `/w-N` with `per_workload` long executable paths each.
fn many_workloads(path: &Path, count: usize, per_workload: usize) {
    let names: Vec<String> = (0..count).map(|i| format!("/w-{i}")).collect();
    let exes: Vec<String> = (0..per_workload)
        .map(|i| format!("/opt/application/with/a/rather/long/path/bin/tool-{i:04}"))
        .collect();
    let exe_refs: Vec<&str> = exes.iter().map(String::as_str).collect();
    let workloads: Vec<(&str, &[&str])> = names
        .iter()
        .map(|name| (name.as_str(), exe_refs.as_slice()))
        .collect();
    learned_db(path, &workloads);
}

fn args(list: &[&dyn AsRef<OsStr>]) -> Vec<OsString> {
    list.iter().map(|a| a.as_ref().to_owned()).collect()
}

fn run(command: &[OsString]) -> Output {
    Command::new(BIN)
        .args(command)
        .output()
        .expect("running fingerprint")
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// The database file's bytes, and which of its `-wal`/`-shm` companions exist.
fn database_state(db: &Path) -> (Vec<u8>, Vec<&'static str>) {
    let companions = ["-wal", "-shm", "-journal"]
        .into_iter()
        .filter(|suffix| {
            let mut name = db.as_os_str().to_owned();
            name.push(suffix);
            Path::new(&name).exists()
        })
        .collect();
    (std::fs::read(db).expect("reading the database"), companions)
}

/// Every file in `dir` (not recursive) with its bytes.
fn directory_contents(dir: &Path) -> BTreeMap<String, Vec<u8>> {
    std::fs::read_dir(dir)
        .expect("listing")
        .map(|entry| {
            let entry = entry.expect("entry");
            let bytes = std::fs::read(entry.path()).unwrap_or_default();
            (entry.file_name().to_string_lossy().into_owned(), bytes)
        })
        .collect()
}

/// The first column of every row of `sql`, read without writing.
fn query_strings(db: &Path, sql: &str) -> Vec<String> {
    let flags = rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY;
    let conn = rusqlite::Connection::open_with_flags(db, flags).expect("opening");
    let mut stmt = conn.prepare(sql).expect("query");
    stmt.query_map([], |r| r.get(0))
        .expect("rows")
        .map(|r| r.expect("row"))
        .collect()
}

fn user_version(db: &Path) -> u32 {
    let flags = rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY;
    rusqlite::Connection::open_with_flags(db, flags)
        .expect("opening")
        .query_row("PRAGMA user_version", [], |r| r.get(0))
        .expect("user_version")
}

/// Every read-only command, each expected to succeed, on `db`; outputs go to `out`.
fn run_read_only_commands(db: &Path, out: &Path, as_user: Option<u32>) {
    let profiles = out.join("profiles");
    let merged = out.join("merged.db");
    let commands = [
        args(&[&"show", &"--db", &db]),
        args(&[&"show", &"--db", &db, &"-o", &"json"]),
        args(&[&"diff", &db, &db]),
        args(&[&"export", &"--db", &db, &"--out", &profiles]),
        args(&[&"merge", &"--into", &merged, &db]),
    ];
    for command in commands {
        let mut cmd = Command::new(BIN);
        cmd.args(&command);
        if let Some(uid) = as_user {
            cmd.uid(uid).gid(uid);
        }
        let output = cmd.output().expect("running fingerprint");
        assert_eq!(
            output.status.code(),
            Some(0),
            "{command:?} as {as_user:?}: {}",
            stderr(&output)
        );
    }
    assert!(
        profiles.join("%2Fweb.json").exists(),
        "export wrote the profile"
    );
    assert_eq!(
        query_strings(&merged, "SELECT host FROM sessions"),
        ["test-node"],
        "merge copied the session"
    );
}

// Read-only commands used to switch their input to WAL and migrate it in place.
#[test]
fn read_only_commands_leave_an_older_rollback_journal_database_as_it_is() {
    let (_keep, tmp) = temp_dir();
    let db = tmp.join("old.db");
    learned_db(&db, &[("/web", &["/usr/bin/true"])]);
    // As an older fingerprint left it: schema version 1, rollback journal.
    rusqlite::Connection::open(&db)
        .unwrap()
        .execute_batch(
            "PRAGMA journal_mode=DELETE; DROP TABLE violations; PRAGMA user_version = 1;",
        )
        .unwrap();
    let before = database_state(&db);
    run_read_only_commands(&db, &tmp, None);
    assert!(
        database_state(&db) == before,
        "the database changed or gained companions: {:?}",
        database_state(&db).1
    );
    assert_eq!(user_version(&db), 1, "not migrated");
}

// A 0-byte file used to be turned into a new, empty database.
#[test]
fn an_empty_file_is_not_a_database_and_stays_empty() {
    let (_keep, tmp) = temp_dir();
    let empty = tmp.join("empty.db");
    std::fs::write(&empty, b"").unwrap();
    for command in [
        args(&[&"show", &"--db", &empty]),
        args(&[&"export", &"--db", &empty, &"--out", &tmp.join("p")]),
    ] {
        let out = run(&command);
        assert_eq!(out.status.code(), Some(2), "{command:?}");
        let message = stderr(&out);
        assert!(
            message.contains("empty.db") && message.contains("empty file"),
            "{message}"
        );
    }
    assert_eq!(database_state(&empty), (Vec::new(), Vec::new()));
    assert!(!tmp.join("p").exists(), "export wrote nothing");
}

// As another user, a 0444 database in a directory it cannot write used to fail with
// "unable to open database file" (WAL needs a -shm file beside it).
#[test]
fn read_only_commands_work_as_another_user() {
    if !privileged("read_only_as_another_user") {
        return;
    }
    let (_keep, tmp) = temp_dir();
    let data = tmp.join("data");
    std::fs::create_dir(&data).unwrap();
    let db = data.join("learn.db");
    learned_db(&db, &[("/web", &["/usr/bin/true"])]);
    std::fs::set_permissions(&db, std::fs::Permissions::from_mode(0o444)).unwrap();
    std::fs::set_permissions(&data, std::fs::Permissions::from_mode(0o755)).unwrap();
    std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(0o755)).unwrap();
    let out = tmp.join("out");
    std::fs::create_dir(&out).unwrap();
    std::fs::set_permissions(&out, std::fs::Permissions::from_mode(0o777)).unwrap();
    let before = database_state(&db);
    run_read_only_commands(&db, &out, Some(65534));
    assert!(database_state(&db) == before, "the database changed");
}

/// A tmpfs mounted for one test; unmounted on drop.
struct Tmpfs {
    dir: PathBuf,
}

impl Tmpfs {
    fn mount(dir: &Path, size: &str) -> Tmpfs {
        std::fs::create_dir_all(dir).unwrap();
        nix::mount::mount(
            Some("tmpfs"),
            dir,
            Some("tmpfs"),
            nix::mount::MsFlags::empty(),
            Some(format!("size={size},mode=0755").as_str()),
        )
        .expect("mounting a tmpfs");
        Tmpfs {
            dir: dir.to_owned(),
        }
    }

    fn remount_read_only(&self) {
        let flags = nix::mount::MsFlags::MS_REMOUNT | nix::mount::MsFlags::MS_RDONLY;
        nix::mount::mount(None::<&str>, &self.dir, None::<&str>, flags, None::<&str>)
            .expect("remounting read-only");
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = nix::mount::umount2(&self.dir, nix::mount::MntFlags::MNT_DETACH);
    }
}

#[test]
fn read_only_commands_work_on_a_read_only_mount() {
    if !privileged("read_only_mount") {
        return;
    }
    let (_keep, tmp) = temp_dir();
    let mount = Tmpfs::mount(&tmp.join("ro"), "4m");
    let db = mount.dir.join("learn.db");
    learned_db(&db, &[("/web", &["/usr/bin/true"])]);
    mount.remount_read_only();
    let before = database_state(&db);
    run_read_only_commands(&db, &tmp, None);
    assert!(database_state(&db) == before, "the database changed");
}

/// A database whose pages after the first (header and schema) are overwritten.
pub fn corrupt_db(path: &Path) {
    many_workloads(path, 4, 200);
    let mut bytes = std::fs::read(path).unwrap();
    let page = usize::from(u16::from_be_bytes([bytes[16], bytes[17]]));
    assert!(bytes.len() > 3 * page, "several pages to corrupt");
    bytes[page..].fill(0xa5);
    std::fs::write(path, bytes).unwrap();
}

// `merge --into new.db good.db corrupt.db` used to leave new.db holding good.db's
// session and to call new.db malformed.
#[test]
fn merge_is_all_or_nothing_and_names_the_corrupt_source() {
    let (_keep, tmp) = temp_dir();
    let good = tmp.join("good.db");
    let corrupt = tmp.join("corrupt.db");
    learned_db(&good, &[("/web", &["/usr/bin/true"])]);
    corrupt_db(&corrupt);
    let existing = tmp.join("existing.db");
    learned_db(&existing, &[("/batch", &["/usr/bin/sort"])]);
    let existing_before = database_state(&existing);
    let listing_before: Vec<String> = directory_contents(&tmp).into_keys().collect();

    for (into, sources) in [
        (tmp.join("new.db"), vec![&good, &corrupt]),
        (tmp.join("only-bad.db"), vec![&corrupt]),
        (existing.clone(), vec![&good, &corrupt]),
    ] {
        let mut command = args(&[&"merge", &"--into", &into]);
        command.extend(sources.iter().map(|s| s.as_os_str().to_owned()));
        let out = run(&command);
        assert_eq!(out.status.code(), Some(2), "{command:?}");
        let message = stderr(&out);
        assert!(
            message.contains(&format!("{} is corrupt", corrupt.display())),
            "the error names the corrupt source: {message}"
        );
        assert!(!message.contains("malformed: "), "said once: {message}");
    }
    // Reading a WAL database where it may be written gives it SQLite's -wal and -shm
    // companions (a lock and an index, no data), as `sqlite3 -readonly` does.
    let listing_after: Vec<String> = directory_contents(&tmp)
        .into_keys()
        .filter(|name| !(name.starts_with("good.db-") || name.starts_with("corrupt.db-")))
        .collect();
    assert_eq!(
        listing_after, listing_before,
        "nothing created, no temp left"
    );
    assert!(
        database_state(&existing) == existing_before,
        "the existing target is unchanged"
    );
}

#[test]
fn merge_into_an_existing_database_keeps_it_and_adds_every_source() {
    let (_keep, tmp) = temp_dir();
    let (a, b, into) = (tmp.join("a.db"), tmp.join("b.db"), tmp.join("into.db"));
    learned_db(&a, &[("/web", &["/usr/bin/true"])]);
    learned_db(&b, &[("/batch", &["/usr/bin/sort"])]);
    learned_db(&into, &[("/db", &["/usr/bin/postgres"])]);
    let out = run(&args(&[&"merge", &"--into", &into, &a, &b]));
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(
        query_strings(&into, "SELECT name FROM workloads ORDER BY name"),
        ["/batch", "/db", "/web"]
    );
    let leftovers: Vec<String> = directory_contents(&tmp)
        .into_keys()
        .filter(|name| name.starts_with('.'))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
}

// On a full filesystem, export used to write some profiles and not others.
#[test]
fn export_onto_a_full_filesystem_changes_no_profile() {
    if !privileged("export_full_filesystem") {
        return;
    }
    let (_keep, tmp) = temp_dir();
    let (small, big) = (tmp.join("small.db"), tmp.join("big.db"));
    many_workloads(&small, 2, 3);
    many_workloads(&big, 60, 40);
    let mount = Tmpfs::mount(&tmp.join("full"), "64k");
    let profiles = mount.dir.join("profiles");
    let out = run(&args(&[&"export", &"--db", &small, &"--out", &profiles]));
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    // A reviewer's change, which a merge must keep.
    let reviewed = profiles.join("%2Fw-0.json");
    let text = std::fs::read_to_string(&reviewed).unwrap();
    std::fs::write(
        &reviewed,
        text.replace("\"mode\": \"audit\"", "\"mode\": \"enforce\""),
    )
    .unwrap();
    let before = directory_contents(&profiles);

    let out = run(&args(&[&"export", &"--db", &big, &"--out", &profiles]));
    assert_eq!(out.status.code(), Some(2), "the set does not fit");
    assert!(stderr(&out).contains("No space left"), "{}", stderr(&out));
    assert!(
        directory_contents(&profiles) == before,
        "every old profile as it was, nothing added, no temp left: {:?}",
        directory_contents(&profiles).keys().collect::<Vec<_>>()
    );

    let fresh = mount.dir.join("fresh");
    let out = run(&args(&[&"export", &"--db", &big, &"--out", &fresh]));
    assert_eq!(out.status.code(), Some(2));
    assert!(
        !fresh.exists(),
        "a new directory appears whole or not at all"
    );
    assert_eq!(
        directory_contents(&mount.dir)
            .into_keys()
            .collect::<Vec<_>>(),
        ["profiles"],
        "no temporary directory left"
    );
}

// Merging into a database that a learner has open must lose neither side's writes.
#[test]
fn merge_into_a_database_a_learner_is_writing_loses_nothing() {
    let (_keep, tmp) = temp_dir();
    let (source, into) = (tmp.join("source.db"), tmp.join("busy.db"));
    learned_db(&source, &[("/web", &["/usr/bin/true"])]);
    learned_db(&into, &[("/db", &["/usr/bin/postgres"])]);
    let mut learner = Database::open(&into).expect("held open, as a learner does");
    let out = run(&args(&[&"merge", &"--into", &into, &source]));
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let session = learner
        .begin_session(&SessionInfo {
            host: "learner".into(),
            kernel: "6.1.0".into(),
            hook: "tp_btf/sched_process_exec".into(),
            started_at_ms: 5_000,
        })
        .expect("the learner still writes");
    learner
        .record(session, &Batch::default(), 0, 0, Some(6_000))
        .expect("and commits");
    drop(learner);
    assert_eq!(
        query_strings(&into, "SELECT host FROM sessions ORDER BY host"),
        ["learner", "test-node", "test-node"]
    );
    assert_eq!(
        query_strings(&into, "SELECT name FROM workloads ORDER BY name"),
        ["/db", "/web"]
    );
}
