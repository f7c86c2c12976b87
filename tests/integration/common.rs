//! Shared helpers: privilege gate, unique cgroups and temp dirs, a learner running in
//! the background, processes started inside a cgroup, and database queries.

use std::ffi::OsStr;
use std::io::{BufRead, BufReader};
use std::os::fd::AsRawFd;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use fingerprint::workload::cgroup::CgroupV2;

pub const BIN: &str = env!("CARGO_BIN_EXE_fingerprint");

/// True if this test can use root and BPF. Skips (false) on a developer machine
/// without them; under CI=true a missing requirement is a failure.
pub fn privileged(test: &str) -> bool {
    if nix::unistd::geteuid().is_root() {
        return true;
    }
    if std::env::var("CI").as_deref() == Ok("true") {
        panic!("{test} needs root and BPF, and CI=true: refusing to skip");
    }
    eprintln!("SKIP {test}: needs root and BPF (run as root, or set CI=true to make this fail)");
    false
}

/// A unique name for this process and call.
pub fn unique(prefix: &str) -> String {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    format!(
        "{prefix}-{}-{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::SeqCst)
    )
}

/// A cgroup v2 directory made for one test; removed on drop.
pub struct TestCgroup {
    pub dir: PathBuf,
    /// Path relative to the v2 root, as learning records it.
    pub path: String,
}

impl TestCgroup {
    pub fn new() -> TestCgroup {
        TestCgroup::at(&format!("/{}", unique("fingerprint-test")))
    }

    /// A cgroup at this path under the v2 root.
    pub fn at(path: &str) -> TestCgroup {
        let v2 = CgroupV2::discover().expect("cgroup v2 mount");
        let (dir, _id) = v2.create(path).expect("creating a test cgroup");
        TestCgroup {
            dir,
            path: path.to_string(),
        }
    }

    /// A cgroup nested in this one, created now.
    pub fn child(&self, name: &str) -> TestCgroup {
        TestCgroup::at(&format!("{}/{name}", self.path))
    }

    /// A command that moves itself into this cgroup before it execs.
    pub fn command(&self, program: impl AsRef<OsStr>) -> Command {
        let procs = std::fs::OpenOptions::new()
            .write(true)
            .open(self.dir.join("cgroup.procs"))
            .expect("opening cgroup.procs");
        let mut cmd = Command::new(program);
        // SAFETY: only write(2) on an fd opened before fork: async-signal-safe.
        unsafe {
            cmd.pre_exec(move || {
                let fd = procs.as_raw_fd();
                if libc::write(fd, b"0".as_ptr().cast(), 1) != 1 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        cmd
    }

    /// Run `program args` in this cgroup and assert it succeeds.
    pub fn run_ok(&self, program: impl AsRef<OsStr>, args: &[&str]) {
        let status = self
            .command(program.as_ref())
            .args(args)
            .status()
            .expect("spawning a workload");
        assert!(
            status.success(),
            "{:?} {args:?} failed: {status}",
            program.as_ref()
        );
    }
}

impl Drop for TestCgroup {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir(&self.dir);
    }
}

/// `fingerprint learn` running in the background until `stop`.
pub struct Learner {
    child: Child,
    stderr: mpsc::Receiver<String>,
}

impl Learner {
    /// Start learning the given cgroups into `db`; returns once the program is attached.
    pub fn start(db: &Path, cgroups: &[&TestCgroup]) -> Learner {
        Learner::start_with(db, cgroups, &[])
    }

    /// As `start`, with more `fingerprint learn` arguments.
    pub fn start_with(db: &Path, cgroups: &[&TestCgroup], extra: &[&OsStr]) -> Learner {
        let mut cmd = Command::new(BIN);
        // Not --quiet: the start-up line says when the program is attached.
        cmd.args(["learn", "--db"]).arg(db).args(extra);
        for cg in cgroups {
            cmd.arg("--cgroup").arg(&cg.dir);
        }
        let mut child = cmd
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawning fingerprint learn");
        let (tx, rx) = mpsc::channel();
        let stderr = child.stderr.take().expect("stderr is piped");
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                let _ = tx.send(line);
            }
        });
        let learner = Learner { child, stderr: rx };
        learner.wait_for_line("fingerprint: learning at");
        learner
    }

    /// Wait for a line of stderr containing `needle`, and return it.
    pub fn wait_for_line(&self, needle: &str) -> String {
        wait_for_line(&self.stderr, needle, "learner")
    }

    /// Stop with SIGINT (as Ctrl-C) and return its exit status and remaining stderr.
    pub fn stop(mut self) -> (ExitStatus, String) {
        self.signal(nix::sys::signal::Signal::SIGINT);
        let status = self.child.wait().expect("waiting for learner");
        let rest: Vec<String> = self.stderr.try_iter().collect();
        (status, rest.join("\n"))
    }

    /// Stop and assert a clean exit.
    pub fn stop_ok(self) {
        let (status, stderr) = self.stop();
        assert!(status.success(), "learn exited {status}: {stderr}");
    }

    pub fn signal(&self, signal: nix::sys::signal::Signal) {
        let pid = nix::unistd::Pid::from_raw(self.child.id() as i32);
        nix::sys::signal::kill(pid, signal).expect("signalling learner");
    }

    pub fn wait(mut self) -> ExitStatus {
        self.child.wait().expect("waiting for learner")
    }
}

/// One row of the `executables` view for a cgroup's workload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExeRow {
    pub path: Vec<u8>,
    pub flags: u32,
    pub count: u64,
}

/// Executables recorded for the workload of cgroup `path`, sorted by path.
pub fn executables(db: &Path, cgroup_path: &str) -> Vec<ExeRow> {
    let conn = rusqlite::Connection::open(db).expect("opening db");
    let mut stmt = conn
        .prepare(
            "SELECT path, path_flags, count FROM executables WHERE workload_id IN \
             (SELECT workload_id FROM cgroups WHERE path = ?1) ORDER BY path",
        )
        .expect("query");
    stmt.query_map([cgroup_path], |r| {
        Ok(ExeRow {
            path: r.get(0)?,
            flags: r.get(1)?,
            count: r.get::<_, i64>(2)? as u64,
        })
    })
    .expect("rows")
    .map(|r| r.expect("row"))
    .collect()
}

/// Parents recorded for one executable of a cgroup's workload.
pub fn parents(db: &Path, cgroup_path: &str, exe: &[u8]) -> Vec<Vec<u8>> {
    let conn = rusqlite::Connection::open(db).expect("opening db");
    let mut stmt = conn
        .prepare(
            "SELECT DISTINCT parent FROM observation_parents WHERE path = ?2 AND workload_id IN \
             (SELECT workload_id FROM cgroups WHERE path = ?1) ORDER BY parent",
        )
        .expect("query");
    stmt.query_map(rusqlite::params![cgroup_path, exe], |r| r.get(0))
        .expect("rows")
        .map(|r| r.expect("row"))
        .collect()
}

/// (events_seen, events_dropped) summed over the database's sessions.
pub fn session_counters(db: &Path) -> (u64, u64) {
    let conn = rusqlite::Connection::open(db).expect("opening db");
    conn.query_row(
        "SELECT COALESCE(SUM(events_seen), 0), COALESCE(SUM(events_dropped), 0) FROM sessions",
        [],
        |r| Ok((r.get::<_, i64>(0)? as u64, r.get::<_, i64>(1)? as u64)),
    )
    .expect("session counters")
}

/// A canonical temporary directory (learning records canonical paths).
pub fn temp_dir() -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::Builder::new()
        .prefix("fp-test")
        .tempdir()
        .expect("tempdir");
    let canonical = dir.path().canonicalize().expect("canonical tempdir");
    (dir, canonical)
}

/// How long a started process may take to say something expected. Generous: loading
/// and verifying the BPF programs under emulation (qemu TCG) on a loaded machine can
/// take minutes; a process that will never say it still fails the test.
const LINE_TIMEOUT: Duration = Duration::from_secs(300);

/// The first line from `lines` (a process's stderr) containing `needle`; panics,
/// naming `who` and quoting what it said, if none comes within LINE_TIMEOUT.
pub fn wait_for_line(lines: &mpsc::Receiver<String>, needle: &str, who: &str) -> String {
    let deadline = Instant::now() + LINE_TIMEOUT;
    let mut seen = Vec::new();
    while Instant::now() < deadline {
        match lines.recv_timeout(Duration::from_millis(200)) {
            Ok(line) if line.contains(needle) => return line,
            Ok(line) => seen.push(line),
            Err(mpsc::RecvTimeoutError::Timeout) => {}
            Err(mpsc::RecvTimeoutError::Disconnected) => break,
        }
    }
    panic!(
        "{who} never printed {needle:?}; stderr so far:\n{}",
        seen.join("\n")
    );
}

/// Copy a system binary to `dest` (made executable) so each test execs its own file.
pub fn install_binary(source: &str, dest: &Path) -> PathBuf {
    let bytes = std::fs::read(source).unwrap_or_else(|e| panic!("reading {source}: {e}"));
    write_executable(dest, &bytes)
}

/// Writes `bytes` to `path` (into the same inode if it exists), mode 0755, from a child
/// process. A file this multi-threaded test process held open for writing would be
/// inherited by a child another test thread forks at that moment, and until that child
/// execs, the file cannot be exec'd (ETXTBSY): the write must never hold the fd here.
pub fn write_executable(path: &Path, bytes: &[u8]) -> PathBuf {
    use std::io::Write;
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).expect("mkdir");
    }
    let mut writer = Command::new("/bin/sh")
        .args(["-c", "cat > \"$1\" && chmod 755 \"$1\"", "sh"])
        .arg(path)
        .stdin(Stdio::piped())
        .spawn()
        .expect("spawning /bin/sh");
    let mut stdin = writer.stdin.take().expect("piped stdin");
    stdin.write_all(bytes).expect("writing to cat");
    drop(stdin);
    let status = writer.wait().expect("waiting for cat");
    assert!(status.success(), "writing {}: {status}", path.display());
    path.to_owned()
}

/// `fingerprint export --db DB --out DIR EXTRA...`, which must succeed.
pub fn export_profiles(db: &Path, out: &Path, extra: &[&str]) {
    let mut args: Vec<&OsStr> = vec![
        OsStr::new("export"),
        OsStr::new("--db"),
        db.as_os_str(),
        OsStr::new("--out"),
        out.as_os_str(),
    ];
    args.extend(extra.iter().map(OsStr::new));
    let output = fingerprint(&args);
    assert!(
        output.status.success(),
        "export: {}",
        String::from_utf8_lossy(&output.stderr)
    );
}

/// Run the fingerprint binary to completion.
pub fn fingerprint(args: &[&OsStr]) -> std::process::Output {
    Command::new(BIN)
        .args(args)
        .output()
        .expect("running fingerprint")
}

/// The exec program pinned in `pin_dir`, kept attached while the result lives. A
/// takeover replaces the pin, and the kernel releases the replaced link when it gets
/// to it; holding it makes that moment, when the old and the new program both run,
/// last as long as a test needs.
pub fn hold_pinned_exec_program(pin_dir: &str) -> libbpf_rs::Link {
    libbpf_rs::Link::open(format!("{pin_dir}/link_exec"))
        .unwrap_or_else(|e| panic!("opening {pin_dir}/link_exec: {e}"))
}

pub fn bytes(path: &Path) -> Vec<u8> {
    use std::os::unix::ffi::OsStrExt;
    path.as_os_str().as_bytes().to_vec()
}

/// A path as profiles and events write it: a string, or {"hex": ...} if not UTF-8.
pub fn path_value(bytes: &[u8]) -> serde_json::Value {
    match std::str::from_utf8(bytes) {
        Ok(s) => serde_json::Value::String(s.to_string()),
        Err(_) => serde_json::json!({
            "hex": bytes.iter().map(|b| format!("{b:02x}")).collect::<String>()
        }),
    }
}

/// Each scenario `fn name(mech: Mech)` (from the invoking module) as two tests:
/// `kill::name`, the kill fallback on this host (tp_btf works here), and `lsm::name`,
/// the BPF LSM, which this host refuses: ignored here, run inside qemu by
/// `make vmtest` (`--include-ignored`). `lsm only:` scenarios take no argument.
macro_rules! with_both_mechanisms {
    ($($name:ident),* $(,)? $(; lsm only: $($lsm_only:ident),* $(,)?)?) => {
        mod kill {
            use super::*;
            $(
                #[test]
                fn $name() {
                    if privileged(concat!("kill::", stringify!($name))) {
                        super::$name(Mech::Kill);
                    }
                }
            )*
        }

        mod lsm {
            use super::*;
            $(
                #[test]
                #[ignore = "needs a kernel that loads BPF LSM programs: `make vmtest` runs it in qemu"]
                fn $name() {
                    super::$name(Mech::Lsm);
                }
            )*
            $($(
                #[test]
                #[ignore = "needs a kernel that loads BPF LSM programs: `make vmtest` runs it in qemu"]
                fn $lsm_only() {
                    super::$lsm_only();
                }
            )*)?
        }
    };
}
