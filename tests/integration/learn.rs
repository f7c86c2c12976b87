//! `fingerprint learn` on the real kernel: real cgroups, real processes, a real SQLite
//! file. Each test learns only its own cgroups, so tests can run side by side.

use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::symlink;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::time::{Duration, Instant};

use crate::common::*;

const TRUE: &str = "/usr/bin/true";
const DASH: &str = "/usr/bin/dash";
const BUSYBOX: &str = "/bin/busybox";

fn paths(rows: &[ExeRow]) -> Vec<Vec<u8>> {
    rows.iter().map(|r| r.path.clone()).collect()
}

#[test]
fn plain_exec_records_canonical_path_parent_and_count() {
    if !privileged("plain_exec") {
        return;
    }
    let (_keep, tmp) = temp_dir();
    let exe = install_binary(TRUE, &tmp.join("bin/fp-plain"));
    let cg = TestCgroup::new();
    let db = tmp.join("learn.db");
    let learner = Learner::start(&db, &[&cg]);
    cg.run_ok(&exe, &[]);
    cg.run_ok(&exe, &[]);
    learner.stop_ok();

    let rows = executables(&db, &cg.path);
    assert_eq!(
        rows,
        vec![ExeRow {
            path: bytes(&exe),
            flags: 0,
            count: 2
        }]
    );
    let test_binary = std::env::current_exe().unwrap().canonicalize().unwrap();
    assert_eq!(
        parents(&db, &cg.path, &bytes(&exe)),
        vec![bytes(&test_binary)]
    );
}

#[test]
fn symlink_and_relative_names_record_the_file_itself() {
    if !privileged("symlink_and_relative") {
        return;
    }
    let (_keep, tmp) = temp_dir();
    let exe = install_binary(TRUE, &tmp.join("bin/fp-target"));
    symlink(&exe, tmp.join("link-to-target")).unwrap();
    std::fs::create_dir_all(tmp.join("elsewhere")).unwrap();
    let cg = TestCgroup::new();
    let db = tmp.join("learn.db");
    let learner = Learner::start(&db, &[&cg]);
    cg.run_ok(tmp.join("link-to-target"), &[]);
    let status = cg
        .command("../bin/fp-target")
        .current_dir(tmp.join("elsewhere"))
        .status()
        .unwrap();
    assert!(status.success());
    learner.stop_ok();

    let rows = executables(&db, &cg.path);
    assert_eq!(
        paths(&rows),
        vec![bytes(&exe)],
        "only the target, by its absolute path"
    );
    assert_eq!(rows[0].count, 2);
}

#[test]
fn script_records_script_and_interpreter() {
    if !privileged("script") {
        return;
    }
    let (_keep, tmp) = temp_dir();
    let interpreter = install_binary(DASH, &tmp.join("bin/fp-sh"));
    let script = tmp.join("bin/fp-script");
    write_executable(
        &script,
        format!("#!{}\nexit 0\n", interpreter.display()).as_bytes(),
    );
    let cg = TestCgroup::new();
    let db = tmp.join("learn.db");
    let learner = Learner::start(&db, &[&cg]);
    cg.run_ok(&script, &[]);
    learner.stop_ok();

    let mut expected = vec![bytes(&interpreter), bytes(&script)];
    expected.sort();
    assert_eq!(paths(&executables(&db, &cg.path)), expected);
}

#[test]
fn odd_bytes_in_paths_survive_exactly() {
    if !privileged("odd_bytes") {
        return;
    }
    let (_keep, tmp) = temp_dir();
    let mut name = bytes(&tmp.join("dir with space"));
    name.extend_from_slice(b"/new\nline-\xff\xfe-bin");
    let exe = Path::new(OsStr::from_bytes(&name)).to_owned();
    install_binary(TRUE, &exe);
    let cg = TestCgroup::new();
    let db = tmp.join("learn.db");
    let learner = Learner::start(&db, &[&cg]);
    cg.run_ok(&exe, &[]);
    learner.stop_ok();

    assert_eq!(paths(&executables(&db, &cg.path)), vec![name]);
}

#[test]
fn long_paths_across_many_directories_are_complete() {
    if !privileged("long_paths") {
        return;
    }
    let (_keep, tmp) = temp_dir();
    let mut dir = tmp.clone();
    for level in 0..45 {
        dir.push(format!("level-{level:02}-dir"));
    }
    let exe = install_binary(TRUE, &dir.join("fp-deep"));
    assert!(
        bytes(&exe).len() > 500,
        "the path must exceed 255 bytes by far"
    );
    let cg = TestCgroup::new();
    let db = tmp.join("learn.db");
    let learner = Learner::start(&db, &[&cg]);
    cg.run_ok(&exe, &[]);
    learner.stop_ok();

    let rows = executables(&db, &cg.path);
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0].path, bytes(&exe));
    assert_eq!(rows[0].flags, 0, "complete, not truncated");
}

#[test]
fn thousands_of_short_lived_processes_lose_nothing() {
    if !privileged("thousands") {
        return;
    }
    const EXECS: u64 = 3000;
    let (_keep, tmp) = temp_dir();
    let exe = install_binary(TRUE, &tmp.join("bin/fp-storm"));
    let cg = TestCgroup::new();
    let db = tmp.join("learn.db");
    let learner = Learner::start(&db, &[&cg]);
    for _ in 0..EXECS {
        cg.run_ok(&exe, &[]);
    }
    learner.stop_ok();

    assert_eq!(executables(&db, &cg.path)[0].count, EXECS);
    let (seen, dropped) = session_counters(&db);
    assert_eq!((seen, dropped), (EXECS, 0));
}

#[test]
fn two_cgroups_are_kept_apart() {
    if !privileged("two_cgroups") {
        return;
    }
    let (_keep, tmp) = temp_dir();
    let a = install_binary(TRUE, &tmp.join("bin/fp-only-a"));
    let b = install_binary(TRUE, &tmp.join("bin/fp-only-b"));
    let (cg_a, cg_b) = (TestCgroup::new(), TestCgroup::new());
    let db = tmp.join("learn.db");
    let learner = Learner::start(&db, &[&cg_a, &cg_b]);
    cg_a.run_ok(&a, &[]);
    cg_b.run_ok(&b, &[]);
    learner.stop_ok();

    assert_eq!(paths(&executables(&db, &cg_a.path)), vec![bytes(&a)]);
    assert_eq!(paths(&executables(&db, &cg_b.path)), vec![bytes(&b)]);
}

#[test]
fn nested_cgroups_belong_to_the_watched_one() {
    if !privileged("nested_cgroups") {
        return;
    }
    let (_keep, tmp) = temp_dir();
    let exe = install_binary(TRUE, &tmp.join("bin/fp-nested"));
    let cg = TestCgroup::new();
    let child = cg.dir.join("child");
    std::fs::create_dir(&child).unwrap();
    let db = tmp.join("learn.db");
    let learner = Learner::start(&db, &[&cg]);
    let procs = std::fs::OpenOptions::new()
        .write(true)
        .open(child.join("cgroup.procs"))
        .unwrap();
    let mut cmd = std::process::Command::new(&exe);
    // SAFETY: only write(2) on an fd opened before fork.
    unsafe {
        use std::os::fd::AsRawFd;
        cmd.pre_exec(move || {
            if libc::write(procs.as_raw_fd(), b"0".as_ptr().cast(), 1) != 1 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    assert!(cmd.status().unwrap().success());
    learner.stop_ok();
    std::fs::remove_dir(&child).unwrap();

    let nested = format!("{}/child", cg.path);
    assert_eq!(
        paths(&executables(&tmp.join("learn.db"), &nested)),
        vec![bytes(&exe)]
    );
}

#[test]
fn own_root_in_a_new_mount_namespace_records_the_path_seen_inside() {
    if !privileged("own_root") {
        return;
    }
    let (_keep, tmp) = temp_dir();
    let root = tmp.join("rootfs");
    install_binary(BUSYBOX, &root.join("bin/busybox"));
    symlink("busybox", root.join("bin/true")).unwrap();
    let cg = TestCgroup::new();
    let db = tmp.join("learn.db");
    let learner = Learner::start(&db, &[&cg]);
    let root_c = std::ffi::CString::new(root.as_os_str().as_bytes()).unwrap();
    let mut cmd = cg.command("/bin/true");
    // SAFETY: raw syscalls only, on data prepared before fork.
    unsafe {
        cmd.pre_exec(move || {
            let check = |rc: libc::c_int| {
                if rc == 0 {
                    Ok(())
                } else {
                    Err(std::io::Error::last_os_error())
                }
            };
            check(libc::unshare(libc::CLONE_NEWNS))?;
            check(libc::mount(
                c"none".as_ptr(),
                c"/".as_ptr(),
                std::ptr::null(),
                libc::MS_REC | libc::MS_PRIVATE,
                std::ptr::null(),
            ))?;
            check(libc::mount(
                root_c.as_ptr(),
                root_c.as_ptr(),
                std::ptr::null(),
                libc::MS_BIND,
                std::ptr::null(),
            ))?;
            check(libc::chroot(root_c.as_ptr()))?;
            check(libc::chdir(c"/".as_ptr()))
        });
    }
    assert!(cmd.status().unwrap().success());
    learner.stop_ok();

    assert_eq!(
        paths(&executables(&db, &cg.path)),
        vec![b"/bin/busybox".to_vec()]
    );
}

#[test]
fn an_existing_database_is_appended_to() {
    if !privileged("append") {
        return;
    }
    let (_keep, tmp) = temp_dir();
    let exe = install_binary(TRUE, &tmp.join("bin/fp-append"));
    let cg = TestCgroup::new();
    let db = tmp.join("learn.db");
    for _ in 0..2 {
        let learner = Learner::start(&db, &[&cg]);
        cg.run_ok(&exe, &[]);
        learner.stop_ok();
    }
    assert_eq!(executables(&db, &cg.path)[0].count, 2);
    let conn = rusqlite::Connection::open(&db).unwrap();
    let sessions: i64 = conn
        .query_row(
            "SELECT COUNT(*) FROM sessions WHERE ended_at_ms IS NOT NULL",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(sessions, 2);
}

#[test]
fn sigkill_loses_at_most_the_last_second() {
    if !privileged("sigkill") {
        return;
    }
    let (_keep, tmp) = temp_dir();
    let exe = install_binary(TRUE, &tmp.join("bin/fp-killed"));
    let cg = TestCgroup::new();
    let db = tmp.join("learn.db");
    let learner = Learner::start(&db, &[&cg]);
    for _ in 0..20 {
        cg.run_ok(&exe, &[]);
    }
    // The flush interval is one second: within a few the rows must be committed.
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut count = 0;
    while Instant::now() < deadline {
        count = executables(&db, &cg.path).first().map_or(0, |r| r.count);
        if count == 20 {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    learner.signal(nix::sys::signal::Signal::SIGKILL);
    assert!(!learner.wait().success());
    assert_eq!(count, 20, "committed within the flush interval");
    assert_eq!(
        executables(&db, &cg.path)[0].count,
        20,
        "still there after kill -9"
    );
}

#[test]
fn sigterm_stops_cleanly_and_closes_the_session() {
    if !privileged("sigterm") {
        return;
    }
    let (_keep, tmp) = temp_dir();
    let cg = TestCgroup::new();
    let db = tmp.join("learn.db");
    let learner = Learner::start(&db, &[&cg]);
    learner.signal(nix::sys::signal::Signal::SIGTERM);
    assert!(learner.wait().success());
    let conn = rusqlite::Connection::open(&db).unwrap();
    let open: i64 = conn
        .query_row(
            "SELECT COUNT(*) FROM sessions WHERE ended_at_ms IS NULL",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(open, 0);
}

// ---- Content: what was executed, by SHA-256 ----

/// The digests learned for one executable of a cgroup's workload, as hex, sorted.
fn digests(db: &Path, cgroup_path: &str, exe: &Path) -> Vec<String> {
    let conn = rusqlite::Connection::open(db).expect("opening db");
    let mut stmt = conn
        .prepare(
            "SELECT sha256 FROM executable_digests WHERE path = ?2 AND workload_id IN \
             (SELECT workload_id FROM cgroups WHERE path = ?1) ORDER BY sha256",
        )
        .expect("query");
    stmt.query_map(rusqlite::params![cgroup_path, bytes(exe)], |r| {
        r.get::<_, Vec<u8>>(0)
    })
    .expect("rows")
    .map(|r| r.expect("row").iter().map(|b| format!("{b:02x}")).collect())
    .collect()
}

/// Execs recorded without a digest, over the database's sessions.
fn content_unknown(db: &Path) -> u64 {
    let conn = rusqlite::Connection::open(db).expect("opening db");
    conn.query_row("SELECT SUM(content_unknown) FROM sessions", [], |r| {
        r.get::<_, i64>(0)
    })
    .expect("content_unknown") as u64
}

/// What `sha256sum` says of a file: an oracle independent of the learner.
fn sha256sum(file: &Path) -> String {
    let out = std::process::Command::new("sha256sum")
        .arg(file)
        .output()
        .expect("running sha256sum");
    assert!(out.status.success(), "sha256sum {}", file.display());
    String::from_utf8(out.stdout).unwrap()[..64].to_string()
}

/// A process of the workload that lives until dropped (a shell reading its stdin), so
/// its cgroup has a live process whose root the learner can open files through.
struct LiveProcess(std::process::Child);

impl LiveProcess {
    fn start(cg: &TestCgroup, shell: &Path) -> LiveProcess {
        let child = cg
            .command(shell)
            .args(["-c", "read line"])
            .stdin(std::process::Stdio::piped())
            .spawn()
            .expect("spawning a live process");
        LiveProcess(child)
    }
}

impl Drop for LiveProcess {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// `source`'s bytes plus a tail, at `dest`: another version of a working binary.
fn install_variant(source: &str, dest: &Path, tail: &[u8]) -> Vec<u8> {
    let mut content = std::fs::read(source).expect("reading a binary");
    content.extend_from_slice(tail);
    let staged = dest.with_extension("new");
    write_executable(&staged, &content);
    // A rename onto the name: a new inode, as a package update or an attacker does it.
    std::fs::rename(&staged, dest).unwrap();
    content
}

/// Learn `cg` into `db` with a live process of `shell` in the cgroup; `while_stopped`
/// runs while the learner is stopped, so it reads those execs only afterwards, when
/// their processes are gone and files are reached through the live process's root.
fn learn_while_stopped(db: &Path, cg: &TestCgroup, shell: &Path, while_stopped: impl FnOnce()) {
    let learner = Learner::start(db, &[cg]);
    let live = LiveProcess::start(cg, shell);
    learner.signal(nix::sys::signal::Signal::SIGSTOP);
    while_stopped();
    learner.signal(nix::sys::signal::Signal::SIGCONT);
    learner.stop_ok();
    drop(live);
}

#[test]
fn learned_digest_is_the_sha256sum_of_the_executed_file() {
    if !privileged("content_digest") {
        return;
    }
    let (_keep, tmp) = temp_dir();
    let shell = install_binary(DASH, &tmp.join("bin/fp-live"));
    let short = install_binary(TRUE, &tmp.join("bin/fp-short"));
    let cg = TestCgroup::new();
    let db = tmp.join("learn.db");
    learn_while_stopped(&db, &cg, &shell, || cg.run_ok(&short, &[]));

    assert_eq!(digests(&db, &cg.path, &shell), vec![sha256sum(&shell)]);
    assert_eq!(digests(&db, &cg.path, &short), vec![sha256sum(&short)]);
    assert_eq!(content_unknown(&db), 0);
}

/// A process that has exited, alone in its cgroup, before the learner reads its exec:
/// neither its own image nor a neighbour's root is left to open the file through.
/// The file is still at its path, the same version, so its digest is still learned:
/// a short-lived tool must not become a path-only entry (any content allowed).
#[test]
fn a_short_lived_exec_alone_in_its_cgroup_is_hashed() {
    if !privileged("content_alone") {
        return;
    }
    let (_keep, tmp) = temp_dir();
    let short = install_binary(TRUE, &tmp.join("bin/fp-alone"));
    let cg = TestCgroup::new();
    let db = tmp.join("learn.db");
    let learner = Learner::start(&db, &[&cg]);
    learner.signal(nix::sys::signal::Signal::SIGSTOP);
    cg.run_ok(&short, &[]);
    learner.signal(nix::sys::signal::Signal::SIGCONT);
    learner.stop_ok();

    assert_eq!(digests(&db, &cg.path, &short), vec![sha256sum(&short)]);
    assert_eq!(content_unknown(&db), 0);
}

#[test]
fn a_file_replaced_between_two_execs_gives_two_digests() {
    if !privileged("content_replaced") {
        return;
    }
    let (_keep, tmp) = temp_dir();
    let exe = install_binary(DASH, &tmp.join("bin/fp-updated"));
    let first = sha256sum(&exe);
    let cg = TestCgroup::new();
    let db = tmp.join("learn.db");
    let learner = Learner::start(&db, &[&cg]);
    let old = LiveProcess::start(&cg, &exe);
    // Replacing a file changes its ctime (its link count drops), so the old version
    // must have been hashed first: wait until the learner has committed its digest.
    let deadline = Instant::now() + Duration::from_secs(10);
    while digests(&db, &cg.path, &exe).is_empty() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(digests(&db, &cg.path, &exe), vec![first.clone()]);
    let new_content = install_variant(DASH, &exe, b"\0version two");
    let new = LiveProcess::start(&cg, &exe);
    learner.stop_ok();
    drop((old, new));

    let second = sha256sum(&exe);
    assert_ne!(first, second);
    assert_eq!(
        new_content.len() as u64,
        std::fs::metadata(&exe).unwrap().len()
    );
    let mut expected = vec![first, second];
    expected.sort();
    assert_eq!(digests(&db, &cg.path, &exe), expected);
}

#[test]
fn an_exec_whose_file_is_gone_is_content_unknown_not_a_wrong_digest() {
    if !privileged("content_gone") {
        return;
    }
    let (_keep, tmp) = temp_dir();
    let shell = install_binary(DASH, &tmp.join("bin/fp-live"));
    let deleted = install_binary(TRUE, &tmp.join("bin/fp-deleted"));
    let replaced = install_binary(TRUE, &tmp.join("bin/fp-replaced"));
    let fifo = install_binary(TRUE, &tmp.join("bin/fp-fifo"));
    let cg = TestCgroup::new();
    let db = tmp.join("learn.db");
    // The processes exit, and their files are deleted, replaced under their name, or
    // replaced by a FIFO (which must not block the learner) before the learner reads
    // their execs: what ran can no longer be read.
    learn_while_stopped(&db, &cg, &shell, || {
        for exe in [&deleted, &replaced, &fifo] {
            cg.run_ok(exe, &[]);
        }
        std::fs::remove_file(&deleted).unwrap();
        install_variant(TRUE, &replaced, b"\0not what ran");
        std::fs::remove_file(&fifo).unwrap();
        nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::from_bits_truncate(0o755)).unwrap();
    });

    let recorded = paths(&executables(&db, &cg.path));
    assert!(recorded.contains(&bytes(&deleted)), "{recorded:?}");
    assert!(recorded.contains(&bytes(&replaced)), "{recorded:?}");
    assert_eq!(digests(&db, &cg.path, &deleted), Vec::<String>::new());
    assert_eq!(
        digests(&db, &cg.path, &replaced),
        Vec::<String>::new(),
        "the file now at that path is not what ran"
    );
    assert_eq!(digests(&db, &cg.path, &fifo), Vec::<String>::new());
    assert_eq!(content_unknown(&db), 3);
    assert_eq!(digests(&db, &cg.path, &shell), vec![sha256sum(&shell)]);
}

#[test]
fn new_content_under_a_learned_path_fails_the_ci_gate() {
    if !privileged("content_ci_gate") {
        return;
    }
    let (_keep, tmp) = temp_dir();
    let exe = install_binary(DASH, &tmp.join("bin/fp-app"));
    let reviewed = sha256sum(&exe);
    let cg = TestCgroup::new();
    let (before, after, profiles) = (tmp.join("1.db"), tmp.join("2.db"), tmp.join("profiles"));
    // One run of `exe`, alive until the learner has stopped.
    learn_while_stopped(&before, &cg, &exe, || {});
    export_profiles(&before, &profiles, &[]);
    install_variant(DASH, &exe, b"\0an update");
    learn_while_stopped(&after, &cg, &exe, || {});
    let updated = sha256sum(&exe);

    let diff = |db: &Path, format: &str| {
        fingerprint(&[
            OsStr::new("diff"),
            profiles.as_os_str(),
            db.as_os_str(),
            OsStr::new("--fail-on"),
            OsStr::new("added"),
            OsStr::new("-o"),
            OsStr::new(format),
        ])
    };
    assert_eq!(diff(&before, "text").status.code(), Some(0), "same content");
    let changed = diff(&after, "text");
    assert_eq!(changed.status.code(), Some(1), "a new digest is added");
    let text = String::from_utf8_lossy(&changed.stdout);
    assert!(
        text.contains(&format!("~ {}: content changed", exe.display())),
        "{text}"
    );
    assert!(text.contains(&format!("+ sha256 {updated}")), "{text}");
    assert!(text.contains(&format!("- sha256 {reviewed}")), "{text}");
    let json: serde_json::Value =
        serde_json::from_slice(&diff(&after, "json").stdout).expect("diff json");
    let change = &json["workloads"][0]["executables"]["content_changed"][0];
    assert_eq!(change["path"], path_value(&bytes(&exe)));
    assert_eq!(change["sha256_added"], serde_json::json!([updated]));
    assert_eq!(change["sha256_removed"], serde_json::json!([reviewed]));

    // Enforcement checks content: the reviewed profile (audit mode, as exported)
    // reports the updated file under the same path as drift.
    let enforcer =
        crate::enforce::Enforcer::start(&tmp, &profiles, crate::enforce::Mech::Kill, &[]);
    enforcer.wait_for_line("1 of 1 executables are pinned to content");
    let mut run = cg.command(&exe);
    run.args(["-c", "exit 0"]);
    assert_eq!(
        crate::enforce::outcome(&mut run),
        crate::enforce::Outcome::Ran(0)
    );
    let events = enforcer.stop();
    let seen: Vec<(&str, &str)> = events
        .iter()
        .map(|e| {
            (
                e["action"].as_str().unwrap_or_default(),
                e["reason"].as_str().unwrap_or_default(),
            )
        })
        .collect();
    assert_eq!(seen, vec![("audited", "content_mismatch")]);
}
