//! The command line's contract: help that teaches, errors that name the problem and
//! the fix, and exit statuses that mean something.

use std::ffi::OsStr;
use std::os::unix::process::CommandExt;
use std::process::Command;

use crate::common::*;

#[test]
fn learn_help_explains_every_flag_with_an_example() {
    let out = fingerprint(&[OsStr::new("learn"), OsStr::new("--help")]);
    assert!(out.status.success());
    let help = String::from_utf8(out.stdout).unwrap();
    for flag in [
        "--db",
        "--duration",
        "--cgroup",
        "--hook",
        "--quiet",
        "Examples:",
    ] {
        assert!(help.contains(flag), "learn --help lacks {flag}:\n{help}");
    }
}

#[test]
fn learn_without_privileges_says_so_and_exits_2() {
    if !privileged("learn_unprivileged") {
        return;
    }
    let (_keep, tmp) = temp_dir();
    let mut cmd = Command::new(BIN);
    cmd.args(["learn", "--duration", "1s", "--db"])
        .arg(tmp.join("x.db"))
        .uid(65534)
        .gid(65534);
    let out = cmd.output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("needs root"), "{stderr}");
}

#[test]
fn unwritable_database_is_a_clear_error() {
    if !privileged("unwritable_db") {
        return;
    }
    let out = fingerprint(&[
        OsStr::new("learn"),
        OsStr::new("--duration"),
        OsStr::new("1s"),
        OsStr::new("--db"),
        OsStr::new("/proc/fingerprint/learn.db"),
    ]);
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("/proc/fingerprint/learn.db"), "{stderr}");
}

#[test]
fn a_newer_database_schema_is_refused_without_changes() {
    let (_keep, tmp) = temp_dir();
    let newer = tmp.join("newer.db");
    {
        let conn = rusqlite::Connection::open(&newer).unwrap();
        conn.execute_batch("PRAGMA user_version = 99;").unwrap();
    }
    // A real (empty) SQLite file, so merge treats the sources as databases.
    rusqlite::Connection::open(tmp.join("other.db"))
        .unwrap()
        .execute_batch("CREATE TABLE placeholder (x);")
        .unwrap();
    let out = fingerprint(&[
        OsStr::new("merge"),
        OsStr::new("--into"),
        newer.as_os_str(),
        tmp.join("other.db").as_os_str(),
    ]);
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("schema version 99"), "{stderr}");
    let conn = rusqlite::Connection::open(&newer).unwrap();
    let version: u32 = conn
        .query_row("PRAGMA user_version", [], |r| r.get(0))
        .unwrap();
    assert_eq!(version, 99);
}

#[test]
fn bad_duration_is_rejected_with_the_fix() {
    let out = fingerprint(&[
        OsStr::new("learn"),
        OsStr::new("--duration"),
        OsStr::new("soon"),
    ]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("30s"));
}

#[test]
fn enforce_refuses_profiles_that_do_not_fit_before_attaching_anything() {
    if !privileged("enforce_does_not_fit") {
        return;
    }
    let (_keep, tmp) = temp_dir();
    let profiles = tmp.join("profiles");
    let exes: Vec<std::path::PathBuf> = (0..5).map(|i| tmp.join(format!("bin/{i}"))).collect();
    let refs: Vec<&std::path::Path> = exes.iter().map(|p| p.as_path()).collect();
    crate::enforce::write_profile(&profiles, "/fp-does-not-fit", "enforce", &refs, &[]);
    let out = fingerprint(&[
        OsStr::new("enforce"),
        OsStr::new("--profile"),
        profiles.as_os_str(),
        OsStr::new("--allow-capacity"),
        OsStr::new("4"),
        OsStr::new("--no-db"),
    ]);
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("need 5 allowlist entries but the map holds 4"),
        "{stderr}"
    );
}

#[test]
fn bad_profiles_are_rejected_naming_the_file_and_position() {
    let (_keep, tmp) = temp_dir();
    let dir = tmp.join("profiles");
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("broken.json");
    std::fs::write(
        &file,
        "{\n  \"schema\": 1,\n  \"mode\": \"audit\",\n  oops\n}\n",
    )
    .unwrap();
    let out = fingerprint(&[OsStr::new("diff"), dir.as_os_str(), dir.as_os_str()]);
    assert_eq!(
        out.status.code(),
        Some(2),
        "diff(1) convention: 2 is trouble"
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("broken.json:4:3"),
        "file:line:column: {stderr}"
    );
}

/// `-d` prints libbpf's debug log and the verifier's report of the program it loaded;
/// without it, neither reaches stderr.
#[test]
fn debug_flag_prints_the_libbpf_and_verifier_logs() {
    if !privileged("debug_flag") {
        return;
    }
    let (_keep, tmp) = temp_dir();
    let cgroup = TestCgroup::new();
    let db = tmp.join("d.db");
    let learn = |debug: bool| {
        let mut args = vec![OsStr::new("learn"), OsStr::new("--quiet")];
        args.extend([OsStr::new("--duration"), OsStr::new("1s")]);
        args.extend([OsStr::new("--hook"), OsStr::new("tracepoint")]);
        args.extend([OsStr::new("--cgroup"), OsStr::new(&cgroup.path)]);
        args.extend([OsStr::new("--db"), db.as_os_str()]);
        if debug {
            args.insert(0, OsStr::new("-d"));
        }
        let out = fingerprint(&args);
        assert!(out.status.success(), "{out:?}");
        String::from_utf8_lossy(&out.stderr).into_owned()
    };
    let verifier = "prog 'handle_sched_process_exec': -- BEGIN PROG LOAD LOG --";
    let debug = learn(true);
    assert!(debug.contains(verifier), "{debug}");
    assert!(
        debug.contains("processed "),
        "the verifier's statistics:\n{debug}"
    );
    assert!(debug.contains("libbpf: "), "libbpf's own lines:\n{debug}");
    let quiet = learn(false);
    assert!(!quiet.contains("libbpf: "), "{quiet}");
}
