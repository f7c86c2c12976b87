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

// `--duration 99999999999999999999s` used to panic (Duration::from_secs_f64), and
// `--duration 0` recorded an empty session without a word.
#[test]
fn durations_out_of_range_are_refused_with_the_fix() {
    let (_keep, tmp) = temp_dir();
    let db = tmp.join("learn.db");
    for (duration, needle) in [
        ("99999999999999999999s", "too long"),
        ("0", "must be longer than 0"),
        ("0s", "must be longer than 0"),
    ] {
        let out = fingerprint(&[
            OsStr::new("learn"),
            OsStr::new("--duration"),
            OsStr::new(duration),
            OsStr::new("--db"),
            db.as_os_str(),
        ]);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{duration}: {stderr}");
        assert!(stderr.contains(needle), "{duration}: {stderr}");
        assert!(
            stderr.contains("leave --duration out"),
            "{duration}: {stderr}"
        );
        assert!(!db.exists(), "{duration}: nothing recorded");
    }
}

fn help(command: &str) -> String {
    let out = fingerprint(&[OsStr::new(command), OsStr::new("--help")]);
    assert!(out.status.success());
    String::from_utf8(out.stdout).unwrap()
}

// `--mode`'s help showed a code comment; diff and enforce left exit statuses out.
#[test]
fn help_shows_no_code_notes_and_every_exit_status() {
    for command in ["enforce", "export"] {
        let text = help(command);
        assert!(!text.contains("Ordered after"), "{command}:\n{text}");
        assert!(text.contains("enforce: Deny"), "{command}:\n{text}");
    }
    let diff = help("diff");
    assert!(diff.contains("2 on an error"), "{diff}");
    let enforce = help("enforce");
    assert!(
        enforce.contains("Exit status: 0 when stopped; 1 when violation events were dropped"),
        "{enforce}"
    );
}

/// Run `fingerprint args` and wait at most `limit`: a hang is a failure, not a stuck test.
fn fingerprint_within(args: &[&OsStr], limit: std::time::Duration) -> std::process::Output {
    use std::io::Read;
    let mut child = Command::new(BIN)
        .args(args)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("running fingerprint");
    let deadline = std::time::Instant::now() + limit;
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("fingerprint {args:?} still running after {limit:?}");
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    };
    let (mut stdout, mut stderr) = (Vec::new(), Vec::new());
    child
        .stdout
        .take()
        .unwrap()
        .read_to_end(&mut stdout)
        .unwrap();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_end(&mut stderr)
        .unwrap();
    std::process::Output {
        status,
        stdout,
        stderr,
    }
}

// A FIFO named `*.json` hung `diff` (and the enforcer's reload); a link to
// /dev/zero was read without a limit.
#[test]
fn profile_directories_read_only_regular_files_of_bounded_size() {
    let (_keep, tmp) = temp_dir();
    /// A file name, how to make that file, what the error says about it.
    type Case<'a> = (&'a str, &'a dyn Fn(&std::path::Path), &'a str);
    let cases: [Case; 3] = [
        (
            "fifo.json",
            &|path| nix::unistd::mkfifo(path, nix::sys::stat::Mode::S_IRWXU).unwrap(),
            "not a regular file (a FIFO)",
        ),
        (
            "zero.json",
            &|path| std::os::unix::fs::symlink("/dev/zero", path).unwrap(),
            "not a regular file (a character device)",
        ),
        (
            "huge.json",
            &|path| std::fs::write(path, vec![b' '; 5 << 20]).unwrap(),
            "larger than 4 MiB",
        ),
    ];
    for (name, make, needle) in cases {
        let dir = tmp.join(name.replace(".json", ""));
        std::fs::create_dir(&dir).unwrap();
        make(&dir.join(name));
        let out = fingerprint_within(
            &[OsStr::new("diff"), dir.as_os_str(), dir.as_os_str()],
            std::time::Duration::from_secs(30),
        );
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{name}: {stderr}");
        assert!(
            stderr.contains(&format!("{}: ", dir.join(name).display())) && stderr.contains(needle),
            "{name}: {stderr}"
        );
    }
}

// A reader that closes early (`fingerprint show -o json | head`) used to make every
// command panic with "failed printing to stdout: Broken pipe".
#[test]
fn a_closed_stdout_ends_every_command_quietly() {
    use std::os::unix::process::ExitStatusExt;
    let (_keep, tmp) = temp_dir();
    let db = tmp.join("learn.db");
    let exes: Vec<String> = (0..2000).map(|i| format!("/usr/bin/tool-{i}")).collect();
    let exe_refs: Vec<&str> = exes.iter().map(String::as_str).collect();
    crate::storage::learned_db(&db, &[("/web", &exe_refs)]);
    let empty = tmp.join("empty");
    std::fs::create_dir(&empty).unwrap();
    let commands: Vec<Vec<&OsStr>> = vec![
        vec!["show".as_ref(), "--db".as_ref(), db.as_os_str()],
        vec![
            "show".as_ref(),
            "--db".as_ref(),
            db.as_os_str(),
            "-o".as_ref(),
            "json".as_ref(),
        ],
        vec!["diff".as_ref(), empty.as_os_str(), db.as_os_str()],
        vec![
            "diff".as_ref(),
            empty.as_os_str(),
            db.as_os_str(),
            "-o".as_ref(),
            "json".as_ref(),
        ],
        vec!["--help".as_ref()],
    ];
    for command in commands {
        // The reading end is closed before the command starts: its first write fails.
        let (read_end, write_end) = nix::unistd::pipe().unwrap();
        drop(read_end);
        let out = Command::new(BIN)
            .args(&command)
            .stdout(std::process::Stdio::from(write_end))
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            out.status.signal() == Some(libc::SIGPIPE),
            "{command:?}: ends as `yes | head` does (SIGPIPE), got {:?}: {stderr}",
            out.status
        );
        assert!(stderr.is_empty(), "{command:?}: quietly: {stderr}");
    }
}

// `stop --pin-dir` on a directory that holds no pins used to delete it.
#[test]
fn stop_leaves_a_directory_without_pins_alone() {
    let (_keep, tmp) = temp_dir();
    let unrelated = tmp.join("unrelated");
    std::fs::create_dir(&unrelated).unwrap();
    let out = fingerprint(&[
        OsStr::new("stop"),
        OsStr::new("--pin-dir"),
        unrelated.as_os_str(),
    ]);
    assert_eq!(out.status.code(), Some(0));
    assert!(unrelated.is_dir(), "the directory is still there");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("left as it is"), "{stdout}");
}

// `learn --quiet` used to print three lines.
#[test]
fn learn_quiet_prints_nothing_when_all_is_well() {
    if !privileged("learn_quiet") {
        return;
    }
    let (_keep, tmp) = temp_dir();
    let cgroup = TestCgroup::new();
    let out = fingerprint(&[
        OsStr::new("learn"),
        OsStr::new("--quiet"),
        OsStr::new("--duration"),
        OsStr::new("300ms"),
        OsStr::new("--cgroup"),
        cgroup.dir.as_os_str(),
        OsStr::new("--db"),
        tmp.join("quiet.db").as_os_str(),
    ]);
    assert_eq!(out.status.code(), Some(0));
    assert_eq!(String::from_utf8_lossy(&out.stdout), "");
    assert_eq!(String::from_utf8_lossy(&out.stderr), "");
}

// Database errors used to repeat themselves ("malformed: malformed: Error code 11").
#[test]
fn a_corrupt_database_is_named_once_with_one_clean_cause() {
    let (_keep, tmp) = temp_dir();
    let db = tmp.join("broken.db");
    crate::storage::corrupt_db(&db);
    let out = fingerprint(&[OsStr::new("show"), OsStr::new("--db"), db.as_os_str()]);
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(stderr.matches("broken.db").count(), 1, "{stderr}");
    assert_eq!(stderr.matches("malformed").count(), 1, "{stderr}");
    assert!(!stderr.contains("Error code"), "{stderr}");
}

// `show` printed workload names raw and escaped executables by other rules than
// `diff` (TAB, ESC and U+202E passed); JSON must stay exact.
#[test]
fn names_are_escaped_alike_on_terminals_and_exact_in_json() {
    let (_keep, tmp) = temp_dir();
    let db = tmp.join("odd.db");
    let workload = "/evil\tname\x1b[31m\u{202e}cod";
    let exe = "/usr/bin/\u{202e}fdp.exe\t\x1b[0m";
    crate::storage::learned_db(&db, &[(workload, &[exe])]);
    let show = fingerprint(&[OsStr::new("show"), OsStr::new("--db"), db.as_os_str()]);
    let empty = tmp.join("empty");
    std::fs::create_dir(&empty).unwrap();
    let diff = fingerprint(&[OsStr::new("diff"), empty.as_os_str(), db.as_os_str()]);
    for (command, out) in [("show", &show), ("diff", &diff)] {
        let text = String::from_utf8(out.stdout.clone()).unwrap();
        for raw in ['\t', '\x1b', '\u{202e}'] {
            assert!(
                !text.contains(raw),
                "{command} printed {raw:?} raw:\n{text}"
            );
        }
        assert!(
            text.contains("/evil\\x09name\\x1b[31m\\u{202e}cod"),
            "{command}: {text}"
        );
        assert!(
            text.contains("/usr/bin/\\u{202e}fdp.exe\\x09\\x1b[0m"),
            "{command}: {text}"
        );
    }
    let json = fingerprint(&[
        OsStr::new("show"),
        OsStr::new("--db"),
        db.as_os_str(),
        OsStr::new("-o"),
        OsStr::new("json"),
    ]);
    let value: serde_json::Value = serde_json::from_slice(&json.stdout).unwrap();
    assert_eq!(value["workloads"][0]["name"], workload);
    assert_eq!(value["workloads"][0]["executables"][0]["path"], exe);
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
