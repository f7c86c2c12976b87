//! Enforcement scenarios, written once and run with both mechanisms: the kill
//! fallback on this host (tp_btf works here) and the BPF LSM inside a qemu VM
//! (`make vmtest` runs the `#[ignore]`d LSM tests there with --ignored).

use std::ffi::CString;
use std::io::{BufRead, BufReader};
use std::os::fd::AsRawFd;
use std::os::unix::fs::symlink;
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::common::*;

pub const TRUE: &str = "/usr/bin/true";
const DASH: &str = "/usr/bin/dash";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mech {
    Lsm,
    Kill,
}

impl Mech {
    pub fn arg(self) -> &'static str {
        match self {
            Mech::Lsm => "lsm",
            Mech::Kill => "kill",
        }
    }

    pub fn blocked_action(self) -> &'static str {
        match self {
            Mech::Lsm => "denied",
            Mech::Kill => "killed",
        }
    }

    /// Links a pinned enforcement holds: exec, mkdir, rmdir, and with the LSM the
    /// cgroup move guard's two and the held-task guard's two.
    pub fn links(self) -> usize {
        match self {
            Mech::Lsm => 7,
            Mech::Kill => 3,
        }
    }
}

/// What happened to an exec.
#[derive(Debug, PartialEq, Eq)]
pub enum Outcome {
    Ran(i32),
    /// execve failed with EPERM: the LSM refused it.
    Denied,
    /// The new image died of SIGKILL: the kill fallback.
    Killed,
    Other(String),
}

pub fn outcome(cmd: &mut Command) -> Outcome {
    match cmd.stdout(Stdio::null()).stderr(Stdio::null()).status() {
        Err(e) if e.raw_os_error() == Some(libc::EPERM) => Outcome::Denied,
        Err(e) => Outcome::Other(e.to_string()),
        Ok(status) if status.signal() == Some(libc::SIGKILL) => Outcome::Killed,
        Ok(status) => match status.code() {
            Some(code) => Outcome::Ran(code),
            None => Outcome::Other(format!("{status}")),
        },
    }
}

pub fn blocked(mech: Mech) -> Outcome {
    match mech {
        Mech::Lsm => Outcome::Denied,
        Mech::Kill => Outcome::Killed,
    }
}

/// Write a profile for cgroup `cg_path` allowing exactly these paths.
pub fn write_profile(dir: &Path, cg_path: &str, mode: &str, exes: &[&Path], patterns: &[&str]) {
    std::fs::create_dir_all(dir).unwrap();
    let executables: Vec<Value> = exes
        .iter()
        .map(|p| crate::common::path_value(&bytes(p)))
        .collect();
    let profile = json!({
        "schema": 1,
        "workload": {"name": cg_path, "match": {"kind": "cgroup", "path": cg_path}},
        "mode": mode,
        "executables": executables,
        "patterns": patterns,
    });
    let file = dir.join(format!(
        "{}.json",
        cg_path.trim_start_matches('/').replace('/', "%2F")
    ));
    std::fs::write(file, format!("{profile:#}\n")).unwrap();
}

/// `fingerprint enforce` running in the background.
pub struct Enforcer {
    child: Child,
    stderr: mpsc::Receiver<String>,
    pub events: PathBuf,
    pub db: PathBuf,
}

impl Enforcer {
    pub fn start(tmp: &Path, profiles: &Path, mech: Mech, extra: &[&str]) -> Enforcer {
        let enforcer = Enforcer::spawn(tmp, profiles, mech, extra);
        enforcer.wait_for_line("fingerprint: enforcing");
        enforcer
    }

    /// Start, without waiting for it to enforce. Unpinned, it takes a lock of its
    /// own (tests run many enforcers at once); pinned, its pin directory is its lock.
    /// Events go to a file of its own, unless `extra` names one with --events.
    pub fn spawn(tmp: &Path, profiles: &Path, mech: Mech, extra: &[&str]) -> Enforcer {
        let events = match extra.iter().position(|a| *a == "--events") {
            Some(flag) => PathBuf::from(extra[flag + 1]),
            None => tmp.join(format!("{}.jsonl", unique("events"))),
        };
        let db = tmp.join(format!("{}.db", unique("enforce")));
        let pinned = extra
            .iter()
            .any(|a| ["--pin", "--detach", "--lock-file"].contains(a));
        let lock = tmp.join(format!("{}.lock", unique("enforce")));
        let mut child = Command::new(BIN)
            .args(["enforce", "--mechanism", mech.arg(), "--profile"])
            .arg(profiles)
            .args(match extra.contains(&"--events") {
                true => vec![],
                false => vec!["--events".as_ref(), events.as_os_str()],
            })
            .arg("--db")
            .arg(&db)
            .args(extra)
            .args(match pinned {
                true => vec![],
                false => vec!["--lock-file".as_ref(), lock.as_os_str()],
            })
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawning fingerprint enforce");
        let (tx, rx) = mpsc::channel();
        let stderr = child.stderr.take().unwrap();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                let _ = tx.send(line);
            }
        });
        Enforcer {
            child,
            stderr: rx,
            events,
            db,
        }
    }

    pub fn wait_for_line(&self, needle: &str) -> String {
        crate::common::wait_for_line(&self.stderr, needle, "enforcer")
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn signal(&self, signal: nix::sys::signal::Signal) {
        let pid = nix::unistd::Pid::from_raw(self.child.id() as i32);
        nix::sys::signal::kill(pid, signal).unwrap();
    }

    /// Kill with SIGKILL, as a crash would, and reap it.
    pub fn kill9(mut self) {
        self.signal(nix::sys::signal::Signal::SIGKILL);
        let status = self.child.wait().unwrap();
        assert_eq!(status.signal(), Some(libc::SIGKILL));
    }

    /// Stop (SIGINT), assert a clean exit, return the violation events.
    pub fn stop(self) -> Vec<Value> {
        let events = self.events.clone();
        let (status, rest) = self.stop_with_status();
        assert!(status.success(), "enforce exited {status}: {rest}");
        read_events(&events)
    }

    /// Stop (SIGINT); its exit status and the rest of its stderr.
    pub fn stop_with_status(mut self) -> (ExitStatus, String) {
        self.signal(nix::sys::signal::Signal::SIGINT);
        self.wait()
    }

    /// Wait for it to exit; its exit status and the rest of its stderr.
    pub fn wait(&mut self) -> (ExitStatus, String) {
        let status = self.child.wait().unwrap();
        let rest: Vec<String> = self.stderr.iter().collect();
        (status, rest.join("\n"))
    }

    /// Its exit status if it has exited.
    pub fn exited(&mut self) -> Option<ExitStatus> {
        self.child.try_wait().unwrap()
    }
}

/// A test that panics must not leave its enforcer running (and blocking execs).
impl Drop for Enforcer {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

pub fn read_events(path: &Path) -> Vec<Value> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(|l| serde_json::from_str(l).expect("each event is one JSON line"))
        .collect()
}

/// A workload: a cgroup with a profile, and two binaries: one allowed, one not.
pub struct Fixture {
    _keep: tempfile::TempDir,
    pub tmp: PathBuf,
    pub cg: TestCgroup,
    pub profiles: PathBuf,
    pub allowed: PathBuf,
    pub forbidden: PathBuf,
}

impl Fixture {
    pub fn new(mode: &str) -> Fixture {
        let (keep, tmp) = temp_dir();
        let allowed = install_binary(TRUE, &tmp.join("bin/fp-allowed"));
        let forbidden = install_binary(TRUE, &tmp.join("bin/fp-forbidden"));
        let cg = TestCgroup::new();
        let profiles = tmp.join("profiles");
        write_profile(&profiles, &cg.path, mode, &[&allowed], &[]);
        Fixture {
            _keep: keep,
            tmp,
            cg,
            profiles,
            allowed,
            forbidden,
        }
    }

    pub fn start(&self, mech: Mech, extra: &[&str]) -> Enforcer {
        Enforcer::start(&self.tmp, &self.profiles, mech, extra)
    }

    /// Rewrite the profile to allow the forbidden binary too (for a reload).
    pub fn allow_forbidden_too(&self) {
        let both: [&Path; 2] = [&self.allowed, &self.forbidden];
        write_profile(&self.profiles, &self.cg.path, "enforce", &both, &[]);
    }
}

fn executables_of(events: &[Value]) -> Vec<String> {
    events
        .iter()
        .map(|e| e["executable"].as_str().unwrap_or("<non-utf8>").to_string())
        .collect()
}

// ---- Scenarios -------------------------------------------------------------------

pub fn new_executable_is_blocked_and_reported(mech: Mech) {
    let f = Fixture::new("enforce");
    let enforcer = f.start(mech, &[]);
    let db = enforcer.db.clone();
    assert_eq!(outcome(&mut f.cg.command(&f.allowed)), Outcome::Ran(0));
    assert_eq!(outcome(&mut f.cg.command(&f.forbidden)), blocked(mech));
    let events = enforcer.stop();
    let conn = rusqlite::Connection::open(&db).unwrap();
    let row: (String, Vec<u8>, String) = conn
        .query_row(
            "SELECT workload, executable, action FROM violations",
            [],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
        )
        .expect("exactly one violation row");
    assert_eq!(
        row,
        (
            f.cg.path.clone(),
            bytes(&f.forbidden),
            mech.blocked_action().to_string()
        )
    );
    assert_eq!(events.len(), 1, "{events:#?}");
    let e = &events[0];
    assert_eq!(e["executable"], json!(f.forbidden.to_str().unwrap()));
    assert_eq!(e["action"], json!(mech.blocked_action()));
    assert_eq!(e["reason"], json!("not_in_profile"));
    assert_eq!(e["workload"], json!(f.cg.path));
    assert_eq!(e["profile"], json!(f.cg.path));
    assert_eq!(e["schema_version"], json!(1));
    assert_eq!(
        e.get("kubernetes"),
        None,
        "a plain cgroup has no Kubernetes facts"
    );
    let test_binary = std::env::current_exe().unwrap().canonicalize().unwrap();
    assert_eq!(e["parent"], json!(test_binary.to_str().unwrap()));
}

pub fn other_workloads_are_unaffected(mech: Mech) {
    let f = Fixture::new("enforce");
    let other = TestCgroup::new();
    let enforcer = f.start(mech, &[]);
    assert_eq!(outcome(&mut other.command(&f.forbidden)), Outcome::Ran(0));
    assert!(enforcer.stop().is_empty());
}

pub fn audit_mode_reports_and_allows(mech: Mech) {
    let f = Fixture::new("audit");
    let enforcer = f.start(mech, &[]);
    assert_eq!(outcome(&mut f.cg.command(&f.forbidden)), Outcome::Ran(0));
    let events = enforcer.stop();
    assert_eq!(events.len(), 1);
    assert_eq!(events[0]["action"], json!("audited"));
}

pub fn mode_flag_overrides_profiles(mech: Mech) {
    let f = Fixture::new("enforce");
    let enforcer = f.start(mech, &["--mode", "audit"]);
    assert_eq!(outcome(&mut f.cg.command(&f.forbidden)), Outcome::Ran(0));
    assert_eq!(enforcer.stop()[0]["action"], json!("audited"));
}

pub fn reload_takes_effect(mech: Mech) {
    let f = Fixture::new("enforce");
    let enforcer = f.start(mech, &[]);
    assert_eq!(outcome(&mut f.cg.command(&f.forbidden)), blocked(mech));
    f.allow_forbidden_too();
    enforcer.signal(nix::sys::signal::Signal::SIGHUP);
    enforcer.wait_for_line("fingerprint: reloaded");
    assert_eq!(outcome(&mut f.cg.command(&f.forbidden)), Outcome::Ran(0));
    assert_eq!(outcome(&mut f.cg.command(&f.allowed)), Outcome::Ran(0));
    write_profile(&f.profiles, &f.cg.path, "enforce", &[&f.forbidden], &[]);
    enforcer.signal(nix::sys::signal::Signal::SIGHUP);
    enforcer.wait_for_line("fingerprint: reloaded");
    assert_eq!(outcome(&mut f.cg.command(&f.allowed)), blocked(mech));
    assert_eq!(enforcer.stop().len(), 2);
}

pub fn a_bad_reload_keeps_the_previous_profiles(mech: Mech) {
    let f = Fixture::new("enforce");
    let enforcer = f.start(mech, &[]);
    let file = std::fs::read_dir(&f.profiles)
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    std::fs::write(&file, "{ not json").unwrap();
    enforcer.signal(nix::sys::signal::Signal::SIGHUP);
    let line = enforcer.wait_for_line("reload failed");
    assert!(line.contains("still enforcing"), "{line}");
    assert_eq!(outcome(&mut f.cg.command(&f.forbidden)), blocked(mech));
    assert_eq!(outcome(&mut f.cg.command(&f.allowed)), Outcome::Ran(0));
    enforcer.stop();
}

/// A cgroup created after enforcement started (a new container of a profiled
/// workload) and a nested cgroup created under a bound one: covered from the first exec.
pub fn late_and_nested_cgroups_are_covered(mech: Mech) {
    let (_keep, tmp) = temp_dir();
    let allowed = install_binary(TRUE, &tmp.join("bin/fp-allowed"));
    let forbidden = install_binary(TRUE, &tmp.join("bin/fp-forbidden"));
    let late_path = format!("/{}", unique("fingerprint-late"));
    let profiles = tmp.join("profiles");
    write_profile(&profiles, &late_path, "enforce", &[&allowed], &[]);
    let enforcer = Enforcer::start(&tmp, &profiles, mech, &[]);
    let late = TestCgroup::at(&late_path);
    assert_eq!(
        outcome(&mut late.command(&forbidden)),
        blocked(mech),
        "first exec in a new cgroup"
    );
    assert_eq!(outcome(&mut late.command(&allowed)), Outcome::Ran(0));
    let nested = late.child("nested");
    assert_eq!(
        outcome(&mut nested.command(&forbidden)),
        blocked(mech),
        "nested cgroup"
    );
    let events = enforcer.stop();
    assert_eq!(events.len(), 2);
    assert_eq!(events[1]["cgroup"], json!(nested.path));
    assert_eq!(events[1]["profile"], json!(late_path));
}

pub fn default_deny_fails_closed_within_its_scope(mech: Mech) {
    let f = Fixture::new("enforce");
    let scope = TestCgroup::new();
    let unprofiled = scope.child("unprofiled");
    let enforcer = f.start(mech, &["--default", "deny", "--default-scope", &scope.path]);
    assert_eq!(outcome(&mut unprofiled.command(&f.allowed)), blocked(mech));
    let created_later = scope.child("later");
    assert_eq!(
        outcome(&mut created_later.command(&f.allowed)),
        blocked(mech)
    );
    assert_eq!(
        outcome(&mut f.cg.command(&f.allowed)),
        Outcome::Ran(0),
        "profiled: its profile"
    );
    let events = enforcer.stop();
    assert_eq!(events.len(), 2);
    assert!(
        events.iter().all(|e| e["reason"] == json!("no_profile")),
        "{events:#?}"
    );
}

pub fn patterns_allow_on_purpose(mech: Mech) {
    let (_keep, tmp) = temp_dir();
    let versioned = install_binary(TRUE, &tmp.join("opt/app-1.2.3/bin/server"));
    let outside = install_binary(TRUE, &tmp.join("opt/app-1.2.3/extra/bin/server"));
    let cg = TestCgroup::new();
    let profiles = tmp.join("profiles");
    let pattern = format!("{}/opt/app-*/bin/server", tmp.display());
    write_profile(&profiles, &cg.path, "enforce", &[], &[&pattern]);
    let enforcer = Enforcer::start(&tmp, &profiles, mech, &[]);
    assert_eq!(outcome(&mut cg.command(&versioned)), Outcome::Ran(0));
    assert_eq!(outcome(&mut cg.command(&outside)), blocked(mech));
    assert_eq!(enforcer.stop().len(), 1);
}

/// Every way of naming or smuggling a forbidden file is still that file (or an
/// unnameable one) and is blocked.
pub fn bypass_attempts_are_blocked(mech: Mech) {
    let f = Fixture::new("enforce");
    let t = &f.tmp;
    symlink(&f.forbidden, t.join("symlink-to-forbidden")).unwrap();
    std::fs::hard_link(&f.forbidden, t.join("bin/hardlink-to-forbidden")).unwrap();
    let copy_of_allowed =
        install_binary(f.allowed.to_str().unwrap(), &t.join("bin/copy-of-allowed"));
    std::fs::create_dir_all(t.join("sub")).unwrap();
    // Most cases run the one forbidden file: one event each, not repeats of one.
    let enforcer = f.start(mech, &["--coalesce-window", "0s"]);
    let cases: Vec<(&str, Command)> = vec![
        ("symlink", f.cg.command(t.join("symlink-to-forbidden"))),
        (
            "hard link",
            f.cg.command(t.join("bin/hardlink-to-forbidden")),
        ),
        ("relative path", {
            let mut c = f.cg.command("../bin/fp-forbidden");
            c.current_dir(t.join("sub"));
            c
        }),
        ("copy of an allowed binary", f.cg.command(&copy_of_allowed)),
        (
            "execveat AT_EMPTY_PATH",
            exec_via(&f.cg, &f.forbidden, Via::Execveat),
        ),
        (
            "/proc/self/fd/N",
            exec_via(&f.cg, &f.forbidden, Via::ProcFd),
        ),
        (
            "memfd_create + fexecve",
            exec_via(&f.cg, &f.allowed, Via::Memfd),
        ),
        ("dynamic loader", {
            let mut c = f.cg.command(dynamic_loader());
            c.arg(&f.forbidden);
            c
        }),
    ];
    for (name, mut cmd) in cases {
        assert_eq!(outcome(&mut cmd), blocked(mech), "bypass: {name}");
    }
    let events = enforcer.stop();
    let exes = executables_of(&events);
    assert_eq!(events.len(), 8, "{exes:#?}");
    assert!(
        events
            .iter()
            .any(|e| e["reason"] == json!("unnameable_path")),
        "memfd: {exes:#?}"
    );
}

/// A script whose interpreter is not allowed is blocked (in kill mode the interpreter
/// is what runs, so it is the interpreter that is caught).
pub fn script_with_forbidden_interpreter_is_blocked(mech: Mech) {
    let f = Fixture::new("enforce");
    let interpreter = install_binary(DASH, &f.tmp.join("bin/fp-sh"));
    let script = f.tmp.join("bin/fp-script");
    write_executable(
        &script,
        format!("#!{}\nexit 0\n", interpreter.display()).as_bytes(),
    );
    write_profile(
        &f.profiles,
        &f.cg.path,
        "enforce",
        &[&f.allowed, &script],
        &[],
    );
    let enforcer = f.start(mech, &[]);
    assert_eq!(outcome(&mut f.cg.command(&script)), blocked(mech));
    let events = enforcer.stop();
    assert_eq!(
        executables_of(&events),
        vec![interpreter.to_str().unwrap().to_string()]
    );
}

/// Every level of an exec is checked, so a script not in the profile is blocked even
/// when its interpreter is allowed (kill mode: held, and decided on the script's
/// path by user space, since the hook sees only the interpreter).
pub fn script_not_in_profile_is_blocked_even_with_allowed_interpreter(mech: Mech) {
    let f = Fixture::new("enforce");
    let interpreter = install_binary(DASH, &f.tmp.join("bin/fp-sh"));
    let script = f.tmp.join("bin/fp-script");
    write_executable(
        &script,
        format!("#!{}\nexit 0\n", interpreter.display()).as_bytes(),
    );
    write_profile(&f.profiles, &f.cg.path, "enforce", &[&interpreter], &[]);
    let enforcer = f.start(mech, &[]);
    assert_eq!(outcome(&mut f.cg.command(&script)), blocked(mech));
    assert_eq!(
        executables_of(&enforcer.stop()),
        vec![script.to_str().unwrap().to_string()]
    );
}

/// The whole loop: learn a workload, export its profile, enforce it, replay the same
/// workload: zero violations; then something new is blocked. What learning records
/// is what enforcement checks, byte for byte (same path routine, same hook in the VM),
/// content included: a script, a symlink, a hard link, and the applets of a multi-call
/// binary (busybox: each applet a symlink to one file).
pub fn learned_profile_replays_without_violations(mech: Mech) {
    let (_keep, tmp) = temp_dir();
    let tool = install_binary(TRUE, &tmp.join("app/bin/tool"));
    let hard_link = tmp.join("app/bin/tool-hard");
    std::fs::hard_link(&tool, &hard_link).unwrap();
    install_binary(crate::identity::BUSYBOX, &tmp.join("app/bin/busybox"));
    let applets = ["true", "echo"].map(|applet| tmp.join("app/applets").join(applet));
    std::fs::create_dir_all(tmp.join("app/applets")).unwrap();
    for applet in &applets {
        symlink("../bin/busybox", applet).unwrap();
    }
    let interpreter = install_binary(DASH, &tmp.join("app/bin/sh"));
    let script = tmp.join("app/run.sh");
    let body = format!(
        "#!{}\n{} && exit 0\n",
        interpreter.display(),
        tool.display()
    );
    write_executable(&script, body.as_bytes());
    symlink(&tool, tmp.join("app/tool-link")).unwrap();
    let forbidden = install_binary(TRUE, &tmp.join("app/bin/new-tool"));
    let cg = TestCgroup::new();
    let replay = |cg: &TestCgroup| {
        assert_eq!(outcome(&mut cg.command(&tool)), Outcome::Ran(0));
        assert_eq!(
            outcome(&mut cg.command(tmp.join("app/tool-link"))),
            Outcome::Ran(0)
        );
        assert_eq!(outcome(&mut cg.command(&script)), Outcome::Ran(0));
        assert_eq!(outcome(&mut cg.command(&hard_link)), Outcome::Ran(0));
        for applet in &applets {
            assert_eq!(
                outcome(&mut cg.command(applet)),
                Outcome::Ran(0),
                "{applet:?}"
            );
        }
    };

    let db = tmp.join("learn.db");
    let learner = crate::common::Learner::start(&db, &[&cg]);
    replay(&cg);
    learner.stop_ok();
    let profiles = tmp.join("profiles");
    export_profiles(&db, &profiles, &["--mode", "enforce"]);
    // Pinned, so the replay goes through the content check.
    let busybox = tmp.join("app/bin/busybox");
    for (exe, content) in [(&tool, &tool), (&hard_link, &tool), (&busybox, &busybox)] {
        let digest = crate::identity::sha256_of(content).to_string();
        assert_eq!(exported_digests(&profiles, exe), [digest], "{exe:?}");
    }

    let enforcer = Enforcer::start(&tmp, &profiles, mech, &[]);
    replay(&cg);
    assert_eq!(outcome(&mut cg.command(&forbidden)), blocked(mech));
    let events = enforcer.stop();
    assert_eq!(
        executables_of(&events),
        vec![forbidden.to_str().unwrap().to_string()]
    );
}

/// An executable updated between learning and enforcement (a new image of the same
/// workload): its new content is drift, blocked with `content_mismatch`, until what a
/// node learned of the new version is merged with the old learning; then the workload
/// replays with no violation.
pub fn an_updated_executable_replays_once_its_new_content_is_merged(mech: Mech) {
    let (_keep, tmp) = temp_dir();
    let tool = install_binary(TRUE, &tmp.join("app/bin/tool"));
    let v1 = crate::identity::sha256_of(&tool);
    let cg = TestCgroup::new();
    let learn = |db: &Path| {
        let learner = crate::common::Learner::start(db, &[&cg]);
        assert_eq!(outcome(&mut cg.command(&tool)), Outcome::Ran(0));
        learner.stop_ok();
    };
    let old_db = tmp.join("old.db");
    learn(&old_db);
    let old_profiles = tmp.join("old-profiles");
    export_profiles(&old_db, &old_profiles, &["--mode", "enforce"]);
    // Learned with its content: a path-only entry would allow any bytes at that path.
    assert_eq!(exported_digests(&old_profiles, &tool), vec![v1.to_string()]);

    // The new version: other bytes (trailing data an ELF loader ignores), renamed
    // onto the name as a package manager or an image update would.
    let mut bytes = std::fs::read(&tool).unwrap();
    bytes.extend_from_slice(b"version 2");
    let staged = write_executable(&tmp.join("app/bin/.tool.new"), &bytes);
    std::fs::rename(&staged, &tool).unwrap();
    let v2 = crate::identity::sha256_of(&tool);

    // The first exec of a version the kernel has not seen is held, hashed and killed
    // (with the LSM too); a later one is refused from the cache (or held again while
    // the version is younger than the cache's age rule): blocked either way.
    let enforcer = Enforcer::start(&tmp, &old_profiles, mech, &["--coalesce-window", "0s"]);
    assert_eq!(outcome(&mut cg.command(&tool)), Outcome::Killed, "drift");
    let again = outcome(&mut cg.command(&tool));
    assert!(
        matches!(again, Outcome::Killed | Outcome::Denied),
        "{again:?}"
    );
    let events = enforcer.stop();
    assert_eq!(events.len(), 2, "{events:#?}");
    assert!(
        events.iter().all(|e| e["reason"] == "content_mismatch"),
        "{events:#?}"
    );

    let new_db = tmp.join("new.db");
    learn(&new_db);
    let merged = tmp.join("merged.db");
    let out = fingerprint(&[
        "merge".as_ref(),
        "--into".as_ref(),
        merged.as_os_str(),
        old_db.as_os_str(),
        new_db.as_os_str(),
    ]);
    assert!(
        out.status.success(),
        "merge: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let profiles = tmp.join("profiles");
    export_profiles(&merged, &profiles, &["--mode", "enforce"]);
    let mut both = vec![v1.to_string(), v2.to_string()];
    both.sort();
    assert_eq!(
        exported_digests(&profiles, &tool),
        both,
        "merge keeps the union"
    );
    let enforcer = Enforcer::start(&tmp, &profiles, mech, &[]);
    assert_eq!(outcome(&mut cg.command(&tool)), Outcome::Ran(0));
    assert_eq!(outcome(&mut cg.command(&tool)), Outcome::Ran(0), "cached");
    let events = enforcer.stop();
    assert!(events.is_empty(), "{events:#?}");
}

/// The digests the profiles in `dir` list for `exe`, sorted (empty: path only).
fn exported_digests(dir: &Path, exe: &Path) -> Vec<String> {
    let path = path_value(&bytes(exe));
    let mut digests: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|entry| std::fs::read(entry.unwrap().path()).unwrap())
        .map(|text| serde_json::from_slice::<Value>(&text).unwrap())
        .flat_map(|profile| {
            profile["executables"]
                .as_array()
                .cloned()
                .unwrap_or_default()
        })
        .filter(|entry| entry["path"] == path)
        .flat_map(|entry| entry["sha256"].as_array().cloned().unwrap_or_default())
        .map(|digest| digest.as_str().unwrap().to_owned())
        .collect();
    digests.sort();
    digests
}

/// `fingerprint enforce --detach` of `profiles` pinned at `pin_dir`.
pub fn enforce_detached(pin_dir: &str, mech: Mech, profiles: &Path) -> std::process::Output {
    fingerprint(&[
        "enforce".as_ref(),
        "--detach".as_ref(),
        "--pin-dir".as_ref(),
        pin_dir.as_ref(),
        "--mechanism".as_ref(),
        mech.arg().as_ref(),
        "--profile".as_ref(),
        profiles.as_os_str(),
    ])
}

/// `fingerprint status` as JSON, and its exit status.
pub fn status(pin_dir: &str) -> (Option<i32>, Value) {
    let out = fingerprint(&[
        "status".as_ref(),
        "--pin-dir".as_ref(),
        pin_dir.as_ref(),
        "-o".as_ref(),
        "json".as_ref(),
    ]);
    let json = serde_json::from_slice(&out.stdout).expect("status -o json prints JSON");
    (out.status.code(), json)
}

/// Pinned, enforcement outlives the CLI: kill -9 it, and execs are still blocked;
/// `status` shows it, `stop` removes it and execs run again. `--detach` pins and exits.
pub fn pinned_enforcement_survives_the_cli(mech: Mech) {
    let f = Fixture::new("enforce");
    let pin_dir = format!("/sys/fs/bpf/{}", unique("fp-test-pin"));
    let enforcer = f.start(mech, &["--pin", "--pin-dir", &pin_dir]);
    enforcer.kill9();
    assert_eq!(
        outcome(&mut f.cg.command(&f.forbidden)),
        blocked(mech),
        "after kill -9"
    );
    assert_eq!(outcome(&mut f.cg.command(&f.allowed)), Outcome::Ran(0));
    let (code, json) = status(&pin_dir);
    assert_eq!(code, Some(0));
    assert_eq!(json["status"]["profiles_loaded"], json!(1));
    assert_eq!(json["status"]["cgroups_bound"], json!(1));
    assert_eq!(json["status"]["violations"], json!(1));
    stop_and_wait_for_release(&pin_dir, &f);

    let out = enforce_detached(&pin_dir, mech, &f.profiles);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        outcome(&mut f.cg.command(&f.forbidden)),
        blocked(mech),
        "detached"
    );
    stop_and_wait_for_release(&pin_dir, &f);
}

/// A second `enforce --pin` on a pinned enforcement (a DaemonSet pod restarted)
/// takes over with no gap: a forbidden exec looping across the takeover is blocked
/// every time; the new profiles are live and the old program is gone; a violation
/// written while no enforcer ran is reported by the new one, under its profile.
pub fn pinned_enforcement_is_taken_over_without_a_gap(mech: Mech) {
    let f = Fixture::new("enforce");
    let pin_dir = format!("/sys/fs/bpf/{}", unique("fp-test-takeover"));
    let pin = ["--pin", "--pin-dir", pin_dir.as_str()];
    f.start(mech, &pin).kill9();
    // Attached beside the new program for the whole test: both run on every exec.
    let old_program = hold_pinned_exec_program(&pin_dir);
    // Written to the pinned ring buffer with no enforcer running.
    assert_eq!(outcome(&mut f.cg.command(&f.forbidden)), blocked(mech));
    let second = install_binary(TRUE, &f.tmp.join("bin/fp-second"));
    write_profile(
        &f.profiles,
        &f.cg.path,
        "enforce",
        &[&f.allowed, &second],
        &[],
    );

    let (looped, enforcer) = std::thread::scope(|scope| {
        // The loop runs until `tx` is dropped: at the end, or if an assert panics.
        let (tx, stop) = mpsc::channel::<()>();
        let f = &f;
        let looping = scope.spawn(move || {
            let mut outcomes = Vec::new();
            while let Err(mpsc::TryRecvError::Empty) = stop.try_recv() {
                outcomes.push(outcome(&mut f.cg.command(&f.forbidden)));
            }
            outcomes
        });
        let enforcer = f.start(mech, &pin);
        assert_eq!(
            status(&pin_dir).1["status"]["state"]["pid"],
            json!(enforcer.pid()),
            "the new enforcer owns the pins"
        );
        drop(tx);
        (looping.join().unwrap(), enforcer)
    });
    assert!(!looped.is_empty());
    let ran: Vec<&Outcome> = looped.iter().filter(|o| **o != blocked(mech)).collect();
    assert!(
        ran.is_empty(),
        "{} of {} forbidden execs across the takeover were not blocked: {ran:?}",
        ran.len(),
        looped.len()
    );
    // The old program, still attached, would block `second`: it no longer acts.
    assert_eq!(outcome(&mut f.cg.command(&second)), Outcome::Ran(0));
    let (code, json) = status(&pin_dir);
    assert_eq!(code, Some(0));
    let links = mech.links();
    assert_eq!(
        json["status"]["links"].as_array().map(Vec::len),
        Some(links)
    );
    let pinned = std::fs::read_dir(&pin_dir).unwrap().count();
    assert_eq!(
        pinned,
        links + fingerprint::bpf::pinned::MAPS.len(),
        "{links} links and the pinned maps, nothing staged left over"
    );
    // Both programs ran on every exec, exactly one acted: each blocked exec is
    // counted and reported once, the one from before the takeover too (as an event,
    // or in the repeat counts carried over with `fp_folds`).
    let blocked_execs = looped.len() as u64 + 1;
    assert_eq!(
        json["status"]["violations"],
        json!(blocked_execs),
        "{json:#}"
    );
    let events = enforcer.stop();
    let forbidden = f.forbidden.to_str().unwrap();
    let sent = events.iter().filter(|e| e["repeats"] == 0).count() as u64;
    let repeats: u64 = events.iter().filter_map(|e| e["repeats"].as_u64()).sum();
    assert_eq!(
        sent + repeats,
        blocked_execs,
        "{sent} events and {repeats} repeats for {} looped execs",
        looped.len()
    );
    for event in &events {
        assert_eq!(event["executable"], json!(forbidden), "{event:#}");
        assert_eq!(event["profile"], json!(f.cg.path), "{event:#}");
    }
    drop(old_program);
    stop_and_wait_for_release(&pin_dir, &f);
}

/// `fingerprint stop`, then the forbidden exec runs again: the kernel releases a
/// detached program asynchronously, so allow it a few seconds.
fn stop_and_wait_for_release(pin_dir: &str, f: &Fixture) {
    let out = fingerprint(&["stop".as_ref(), "--pin-dir".as_ref(), pin_dir.as_ref()]);
    assert!(out.status.success());
    assert_eq!(status(pin_dir).0, Some(1), "nothing pinned after stop");
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        match outcome(&mut f.cg.command(&f.forbidden)) {
            Outcome::Ran(0) => break,
            other if Instant::now() > deadline => panic!("still blocked after stop: {other:?}"),
            _ => std::thread::sleep(Duration::from_millis(50)),
        }
    }
}

pub enum Via {
    Execveat,
    ProcFd,
    Memfd,
}

/// A command whose child, instead of exec'ing the program, execs `target` another
/// way. Only raw syscalls run after fork, on data prepared before it.
fn exec_via(cg: &TestCgroup, target: &Path, via: Via) -> Command {
    let file = std::fs::File::open(target).unwrap();
    let argv0 = CString::new("fp-bypass").unwrap();
    let empty = CString::new("").unwrap();
    let proc_path = CString::new(format!("/proc/self/fd/{}", file.as_raw_fd())).unwrap();
    let memfd_name = CString::new("fp-memfd").unwrap();
    let size = file.metadata().unwrap().len() as usize;
    let mut cmd = cg.command("/nonexistent-never-executed");
    // SAFETY: raw syscalls only, on memory allocated before fork.
    unsafe {
        cmd.pre_exec(move || {
            let argv = [argv0.as_ptr(), std::ptr::null()];
            let envp = [std::ptr::null()];
            let fd = file.as_raw_fd();
            match via {
                Via::Execveat => {
                    libc::syscall(
                        libc::SYS_execveat,
                        fd,
                        empty.as_ptr(),
                        argv.as_ptr(),
                        envp.as_ptr(),
                        libc::AT_EMPTY_PATH,
                    );
                }
                Via::ProcFd => {
                    libc::execve(proc_path.as_ptr(), argv.as_ptr(), envp.as_ptr());
                }
                Via::Memfd => {
                    let mem = libc::memfd_create(memfd_name.as_ptr(), 0);
                    if mem < 0 {
                        return Err(std::io::Error::last_os_error());
                    }
                    let mut offset: libc::off_t = 0;
                    if libc::sendfile(mem, fd, &mut offset, size) != size as isize {
                        return Err(std::io::Error::last_os_error());
                    }
                    libc::fexecve(mem, argv.as_ptr(), envp.as_ptr());
                }
            }
            Err(std::io::Error::last_os_error())
        });
    }
    cmd
}

fn dynamic_loader() -> PathBuf {
    Path::new("/lib64/ld-linux-x86-64.so.2")
        .canonicalize()
        .unwrap()
}

// ---- Each scenario, with both mechanisms ----------------------------------------
// `kill::`: the kill fallback, on this host. `lsm::`: the BPF LSM, which this host
// refuses: ignored here, run inside qemu by `make vmtest` (`--include-ignored`).

with_both_mechanisms!(
    learned_profile_replays_without_violations,
    an_updated_executable_replays_once_its_new_content_is_merged,
    pinned_enforcement_survives_the_cli,
    pinned_enforcement_is_taken_over_without_a_gap,
    new_executable_is_blocked_and_reported,
    other_workloads_are_unaffected,
    audit_mode_reports_and_allows,
    mode_flag_overrides_profiles,
    reload_takes_effect,
    a_bad_reload_keeps_the_previous_profiles,
    late_and_nested_cgroups_are_covered,
    default_deny_fails_closed_within_its_scope,
    patterns_allow_on_purpose,
    bypass_attempts_are_blocked,
    script_with_forbidden_interpreter_is_blocked,
    script_not_in_profile_is_blocked_even_with_allowed_interpreter,
);
