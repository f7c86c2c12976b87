//! Enforcement on an operator's bad day: a full disk under its reports, log rotation,
//! a second enforcer started beside it, a flood of violations, a detaching takeover.
//! Kill mode on this host: what is tested here is the user-space side, which is the
//! same with the LSM.

use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use nix::sys::signal::Signal;
use serde_json::json;

use crate::common::*;
use crate::enforce::{outcome, read_events, status, Enforcer, Fixture, Mech, Outcome};

/// A small tmpfs (1 MiB: a fresh database takes about 45 KiB) mounted for one test; unmounted on drop.
struct SmallFs {
    dir: PathBuf,
}

impl SmallFs {
    fn mount(at: &Path) -> SmallFs {
        std::fs::create_dir_all(at).unwrap();
        nix::mount::mount(
            Some("tmpfs"),
            at,
            Some("tmpfs"),
            nix::mount::MsFlags::empty(),
            Some("size=1m"),
        )
        .expect("mounting a 64k tmpfs");
        SmallFs { dir: at.to_owned() }
    }

    /// Write a file until the file system is full.
    fn fill(&self) -> PathBuf {
        use std::io::Write;
        let path = self.dir.join("filler");
        let mut file = std::fs::File::create(&path).unwrap();
        let block = [0u8; 1024];
        loop {
            if let Err(e) = file.write_all(&block) {
                assert_eq!(e.raw_os_error(), Some(libc::ENOSPC), "{e}");
                return path;
            }
        }
    }
}

impl Drop for SmallFs {
    fn drop(&mut self) {
        let _ = nix::mount::umount2(&self.dir, nix::mount::MntFlags::MNT_DETACH);
    }
}

/// Wait (at most a minute) until `done` holds.
fn wait_until(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting until {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn violation_rows(db: &Path) -> i64 {
    let conn = rusqlite::Connection::open(db).unwrap();
    conn.query_row("SELECT COUNT(*) FROM violations", [], |r| r.get(0))
        .unwrap()
}

/// A workload, and a small file system for an enforcer's events and database.
fn with_small_fs() -> (Fixture, SmallFs) {
    let f = Fixture::new("enforce");
    let fs = SmallFs::mount(&f.tmp.join("small"));
    (f, fs)
}

/// A full file system under --events and --db must not end enforcement (it used to
/// exit 2, detaching its programs, and later forbidden execs ran): every forbidden
/// exec is still killed, and what could not be written is counted and said.
#[test]
fn a_full_disk_does_not_end_enforcement() {
    if !privileged("a_full_disk_does_not_end_enforcement") {
        return;
    }
    let (f, fs) = with_small_fs();
    // One line per violation: 20 lines that cannot be written.
    let mut enforcer = Enforcer::start(
        &fs.dir,
        &f.profiles,
        Mech::Kill,
        &["--coalesce-window", "0s"],
    );
    fs.fill();
    for i in 0..20 {
        let ran = outcome(&mut f.cg.command(&f.forbidden));
        assert_eq!(ran, Outcome::Killed, "forbidden exec {i} on a full disk");
    }
    let line = enforcer.wait_for_line("could not be written");
    assert!(line.contains("enforcement continues"), "{line}");
    assert_eq!(enforcer.exited(), None, "the enforcer exited");
    let (status, stderr) = enforcer.stop_with_status();
    assert_eq!(status.code(), Some(1), "not all was reported: {stderr}");
    assert!(
        stderr.contains("20 violation events and 20 database rows could not be written"),
        "{stderr}"
    );
}

/// What could not be written is kept and written once there is room again; `status`
/// counts it meanwhile.
#[test]
fn unwritten_violations_are_counted_in_status_and_retried() {
    if !privileged("unwritten_violations_are_counted_in_status_and_retried") {
        return;
    }
    let (f, fs) = with_small_fs();
    let pin = PinDir::new("fp-test-full");
    let pin_dir = pin.0.as_str();
    let enforcer = Enforcer::start(
        &fs.dir,
        &f.profiles,
        Mech::Kill,
        &["--pin", "--pin-dir", pin_dir, "--coalesce-window", "0s"],
    );
    let filler = fs.fill();
    for _ in 0..5 {
        assert_eq!(outcome(&mut f.cg.command(&f.forbidden)), Outcome::Killed);
    }
    let reporting = || status(pin_dir).1["status"]["state"]["reporting"].clone();
    wait_until("status counts 5 unwritten events", || {
        reporting()["events_unwritten"] == json!(5)
    });
    assert_eq!(reporting()["rows_unwritten"], json!(5), "{:#}", reporting());
    std::fs::remove_file(filler).unwrap();
    wait_until("the kept events are written", || {
        read_events(&enforcer.events).len() == 5
    });
    wait_until("status counts nothing unwritten", || {
        reporting()["events_unwritten"] == json!(0) && reporting()["rows_unwritten"] == json!(0)
    });
    let db = enforcer.db.clone();
    assert_eq!(enforcer.stop().len(), 5);
    assert_eq!(violation_rows(&db), 5);
}

/// A unique pin directory; what is pinned there is stopped when the test ends,
/// passed or failed.
struct PinDir(String);

impl PinDir {
    fn new(prefix: &str) -> PinDir {
        PinDir(format!("/sys/fs/bpf/{}", unique(prefix)))
    }
}

impl Drop for PinDir {
    fn drop(&mut self) {
        let out = fingerprint(&["stop".as_ref(), "--pin-dir".as_ref(), self.0.as_ref()]);
        if !out.status.success() {
            eprintln!("fingerprint stop --pin-dir {} failed", self.0);
        }
    }
}

/// logrotate's way: `mv` (or `rm`) the events file, then SIGHUP; new events go to a
/// new file at the same path.
#[test]
fn events_file_is_reopened_on_sighup() {
    if !privileged("events_file_is_reopened_on_sighup") {
        return;
    }
    let f = Fixture::new("enforce");
    let enforcer = f.start(Mech::Kill, &[]);
    let events = enforcer.events.clone();
    let rotated = events.with_extension("1");
    let block_and_wait = |what: &str| {
        assert_eq!(outcome(&mut f.cg.command(&f.forbidden)), Outcome::Killed);
        wait_until(what, || read_events(&events).len() == 1);
    };
    block_and_wait("the first event is written");
    std::fs::rename(&events, &rotated).unwrap();
    enforcer.signal(Signal::SIGHUP);
    enforcer.wait_for_line("fingerprint: reloaded");
    block_and_wait("an event is written to a new file after mv + SIGHUP");
    std::fs::remove_file(&events).unwrap();
    enforcer.signal(Signal::SIGHUP);
    enforcer.wait_for_line("fingerprint: reloaded");
    block_and_wait("an event is written to a new file after rm + SIGHUP");
    assert_eq!(
        enforcer.stop().len(),
        1,
        "the last file holds the last event"
    );
    assert_eq!(
        read_events(&rotated).len(),
        1,
        "the rotated file keeps its event"
    );
}

/// Two enforcers started together with `args`: (the first to exit, the other).
fn started_together(f: &Fixture, args: &[&str]) -> (Enforcer, Enforcer) {
    let mut both = [
        Enforcer::spawn(&f.tmp, &f.profiles, Mech::Kill, args),
        Enforcer::spawn(&f.tmp, &f.profiles, Mech::Kill, args),
    ];
    let mut exited = None;
    wait_until("one of the two exits", || {
        exited = both.iter_mut().position(|e| e.exited().is_some());
        exited.is_some()
    });
    let [first, second] = both;
    match exited {
        Some(0) => (first, second),
        _ => (second, first),
    }
}

/// Two unpinned enforcers started together on one lock: exactly one runs, the other
/// refuses and names the one that runs.
#[test]
fn a_second_enforcer_refuses_to_run_beside_the_first() {
    if !privileged("a_second_enforcer_refuses_to_run_beside_the_first") {
        return;
    }
    let f = Fixture::new("enforce");
    let lock = f.tmp.join("enforce.lock");
    let args = ["--lock-file", lock.to_str().unwrap()];
    let (mut loser, winner) = started_together(&f, &args);
    let (code, stderr) = loser.wait();
    assert_eq!(code.code(), Some(2), "{stderr}");
    let expected = format!("pid {}", winner.pid());
    assert!(
        stderr.contains(&expected) && stderr.contains(lock.to_str().unwrap()),
        "the refusal names the enforcer running and the lock: {stderr}"
    );
    winner.wait_for_line("fingerprint: enforcing");
    assert_eq!(outcome(&mut f.cg.command(&f.forbidden)), Outcome::Killed);
    assert_eq!(winner.stop().len(), 1);
}

/// Two `enforce --pin` on one pin directory started together: the second takes over
/// from the first, which hands over and exits; never both at once.
#[test]
fn two_pinned_enforcers_started_together_end_with_one() {
    if !privileged("two_pinned_enforcers_started_together_end_with_one") {
        return;
    }
    let f = Fixture::new("enforce");
    let pin = PinDir::new("fp-test-two");
    let pin_dir = pin.0.as_str();
    let args = ["--pin", "--pin-dir", pin_dir];
    let (mut old, new) = started_together(&f, &args);
    let (code, stderr) = old.wait();
    assert!(
        code.success(),
        "the first hands over cleanly: {code} {stderr}"
    );
    new.wait_for_line("fingerprint: enforcing");
    assert_eq!(
        status(pin_dir).1["status"]["state"]["pid"],
        json!(new.pid()),
        "the one running owns the pins"
    );
    assert_eq!(outcome(&mut f.cg.command(&f.forbidden)), Outcome::Killed);
    let old_events = read_events(&old.events);
    let new_events = new.stop();
    assert_eq!((old_events.len(), new_events.len()), (0, 1));
}

/// Execs whose events are large (long paths): a few hundred fill the ring buffer.
fn long_path_dir(tmp: &Path) -> PathBuf {
    let mut dir = tmp.to_owned();
    while dir.as_os_str().len() < 3700 {
        dir.push("d".repeat(200));
    }
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Violation events dropped (ring buffer full, here because the reader is stopped)
/// are said on stderr while enforcement runs, not only in its exit summary.
#[test]
fn dropped_violations_are_reported_while_running() {
    if !privileged("dropped_violations_are_reported_while_running") {
        return;
    }
    let f = Fixture::new("enforce");
    let pin = PinDir::new("fp-test-drops");
    let pin_dir = pin.0.as_str();
    let enforcer = f.start(Mech::Kill, &["--pin", "--pin-dir", pin_dir]);
    let dir = long_path_dir(&f.tmp);
    let dropped = || status(pin_dir).1["status"]["dropped"].as_u64().unwrap_or(0);
    enforcer.signal(Signal::SIGSTOP);
    // Distinct executables, so that no two violations are the same one repeated.
    let mut execs = 0;
    while dropped() == 0 {
        // Copied before any is run: a file still open for writing in a child another
        // test thread forked meanwhile cannot be exec'd (ETXTBSY); retried if so.
        let batch: Vec<PathBuf> = (execs..execs + 100)
            .map(|i| install_binary(f.forbidden.to_str().unwrap(), &dir.join(format!("x{i}"))))
            .collect();
        for exe in &batch {
            let mut ran = outcome(&mut f.cg.command(exe));
            for _ in 0..100 {
                match &ran {
                    Outcome::Other(e) if e.contains("Text file busy") => {
                        std::thread::sleep(Duration::from_millis(10));
                        ran = outcome(&mut f.cg.command(exe));
                    }
                    _ => break,
                }
            }
            assert_eq!(ran, Outcome::Killed, "{}", exe.display());
        }
        execs += batch.len();
        assert!(execs < 20_000, "no event dropped after {execs} execs");
    }
    enforcer.signal(Signal::SIGCONT);
    let line = enforcer.wait_for_line("DROPPED");
    assert!(line.contains("ring buffer full"), "{line}");
    let (code, stderr) = enforcer.stop_with_status();
    assert_eq!(code.code(), Some(1), "{stderr}");
}

/// `enforce --detach` over a pinned enforcement whose enforcer died: the events it
/// left unread are read and reported before this one detaches, as it says.
#[test]
fn a_detaching_takeover_reads_the_unread_events() {
    if !privileged("a_detaching_takeover_reads_the_unread_events") {
        return;
    }
    let f = Fixture::new("enforce");
    let pin = PinDir::new("fp-test-detach");
    let pin_dir = pin.0.as_str();
    f.start(Mech::Kill, &["--pin", "--pin-dir", pin_dir])
        .kill9();
    assert_eq!(outcome(&mut f.cg.command(&f.forbidden)), Outcome::Killed);
    let events = f.tmp.join("detached.jsonl");
    let arg = OsStr::new;
    let out = fingerprint(&[
        arg("enforce"),
        arg("--detach"),
        arg("--pin-dir"),
        arg(pin_dir),
        arg("--mechanism"),
        arg("kill"),
        arg("--profile"),
        f.profiles.as_os_str(),
        arg("--events"),
        events.as_os_str(),
        arg("--no-db"),
    ]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(
        stderr.contains("its unread events are read here"),
        "{stderr}"
    );
    let read = read_events(&events);
    assert_eq!(read.len(), 1, "{stderr}");
    assert_eq!(read[0]["executable"], json!(f.forbidden.to_str().unwrap()));
    assert_eq!(read[0]["profile"], json!(f.cg.path));
}
