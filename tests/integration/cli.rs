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
