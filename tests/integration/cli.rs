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

/// `make install-files` installs the binary, a completion script per shell that knows
/// every command, and a man page per command (made from the same definitions as --help).
#[test]
fn make_install_puts_binary_completions_and_man_pages_in_place() {
    let (_keep, tmp) = temp_dir();
    let status = Command::new("make")
        .arg("-C")
        .arg(env!("CARGO_MANIFEST_DIR"))
        .arg("--no-print-directory")
        .arg("install-files")
        .arg(format!("BIN={BIN}"))
        .arg(format!("DESTDIR={}", tmp.display()))
        .arg("PREFIX=/usr")
        .stdout(std::process::Stdio::null())
        .status()
        .expect("running make");
    assert!(status.success(), "make install-files: {status}");
    let usr = tmp.join("usr");
    assert!(usr.join("bin/fingerprint").is_file());
    let commands = [
        "learn", "merge", "export", "diff", "show", "enforce", "status", "stop",
    ];
    for script in [
        "share/bash-completion/completions/fingerprint",
        "share/zsh/site-functions/_fingerprint",
        "share/fish/vendor_completions.d/fingerprint.fish",
    ] {
        let text = std::fs::read_to_string(usr.join(script)).unwrap();
        for command in commands {
            assert!(
                text.contains(command),
                "{script} does not complete {command}"
            );
        }
        assert!(text.contains("include-host"), "{script}: export's flags");
    }
    let man = usr.join("share/man/man1");
    for command in commands {
        let page = std::fs::read_to_string(man.join(format!("fingerprint-{command}.1")))
            .unwrap_or_else(|e| panic!("man page of {command}: {e}"));
        assert!(page.contains(".SH NAME"), "{command}: {page}");
        assert!(
            page.contains(&format!("fingerprint {command}")),
            "{command}"
        );
    }
    assert!(man.join("fingerprint.1").is_file());
}
