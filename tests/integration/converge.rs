//! Learning that knows when it is done: processes already running when `learn`
//! starts are learned (and may restart under enforcement), convergence figures per
//! workload, `export --stable-for`, and `check`, which replays what was recorded
//! through enforcement's own decision.

use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::process::{Child, Output};
use std::time::{Duration, Instant};

use fingerprint::storage::{Batch, Database, Observation, SessionInfo};
use fingerprint::workload::WorkloadId;
use serde_json::{json, Value};

use crate::common::*;
use crate::enforce::{blocked, outcome, write_profile, Enforcer, Mech, Outcome, TRUE};

const DASH: &str = "/usr/bin/dash";
const SLEEP: &str = "/usr/bin/sleep";

fn run(args: &[&dyn AsRef<OsStr>]) -> Output {
    let args: Vec<&OsStr> = args.iter().map(|a| a.as_ref()).collect();
    fingerprint(&args)
}

fn json_of(out: &Output) -> Value {
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "not JSON ({e}): {}\nstderr: {}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    })
}

/// Wait until `cg` holds `count` processes (a script and the child it started).
fn wait_for_processes(cg: &TestCgroup, count: usize) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let procs = std::fs::read_to_string(cg.dir.join("cgroup.procs")).unwrap();
        if procs.lines().count() >= count {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{count} processes never ran in {}",
            cg.path
        );
        std::thread::yield_now();
    }
}

/// Kill what this test started in `cg` (cgroup.kill: every process in it, all ours).
fn kill_all(cg: &TestCgroup, mut started: Child) {
    std::fs::write(cg.dir.join("cgroup.kill"), "1").expect("cgroup.kill");
    started.wait().expect("reaping the service");
    let deadline = Instant::now() + Duration::from_secs(30);
    while !std::fs::read_to_string(cg.dir.join("cgroup.procs"))
        .unwrap()
        .trim()
        .is_empty()
    {
        assert!(Instant::now() < deadline, "processes left in {}", cg.path);
        std::thread::yield_now();
    }
}

/// A service started before `learn` (a script, its interpreter, the binary it runs)
/// used to have no entry: it was killed the next time it restarted under enforcement.
#[test]
fn a_process_started_before_learn_is_learned_and_may_restart_under_enforcement() {
    if !privileged("a_process_started_before_learn_is_learned") {
        return;
    }
    let (_keep, tmp) = temp_dir();
    let interpreter = install_binary(DASH, &tmp.join("app/bin/sh"));
    let sleeper = install_binary(SLEEP, &tmp.join("app/bin/sleeper"));
    let forbidden = install_binary(TRUE, &tmp.join("app/bin/new-tool"));
    let service = tmp.join("app/service.sh");
    let body = format!(
        "#!{}\n{} \"${{1:-300}}\"\nexit 0\n",
        interpreter.display(),
        sleeper.display()
    );
    write_executable(&service, body.as_bytes());
    let cg = TestCgroup::new();
    let started = cg.command(&service).spawn().expect("starting the service");
    wait_for_processes(&cg, 2);

    let db = tmp.join("learn.db");
    Learner::start(&db, &[&cg]).stop_ok();
    let rows = executables(&db, &cg.path);
    let learned: Vec<(PathBuf, u64)> = rows
        .iter()
        .map(|r| {
            (
                PathBuf::from(String::from_utf8(r.path.clone()).unwrap()),
                r.count,
            )
        })
        .collect();
    let mut expected = vec![
        (interpreter.clone(), 0),
        (sleeper.clone(), 0),
        (service.clone(), 0),
    ];
    expected.sort_by(|a, b| a.0.cmp(&b.0));
    assert_eq!(
        learned, expected,
        "seen running, never exec'd: no exec count"
    );
    assert!(rows.iter().all(|r| r.flags == 0), "{rows:?}");
    let show = json_of(&run(&[&"show", &"--db", &db, &"-o", &"json"]));
    let workload = &show["workloads"][0];
    assert!(
        workload["executables"]
            .as_array()
            .unwrap()
            .iter()
            .all(|e| e["running"] == json!(1)),
        "{workload:#}"
    );
    assert_eq!(workload["convergence"]["running_only"], json!(3));
    kill_all(&cg, started);

    let profiles = tmp.join("profiles");
    export_profiles(&db, &profiles, &["--mode", "enforce"]);
    let check = run(&[&"check", &"--profile", &profiles, &"--db", &db]);
    assert_eq!(
        check.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&check.stdout)
    );

    let enforcer = Enforcer::start(&tmp, &profiles, Mech::Kill, &[]);
    let restart = cg.command(&service).arg("0").status().expect("restarting");
    assert_eq!(
        restart.code(),
        Some(0),
        "the restarted service ran: {restart}"
    );
    assert_eq!(outcome(&mut cg.command(&forbidden)), blocked(Mech::Kill));
    let events = enforcer.stop();
    let refused: Vec<&str> = events
        .iter()
        .filter_map(|e| e["executable"].as_str())
        .collect();
    assert_eq!(refused, [forbidden.to_str().unwrap()]);
}

/// One learning session on `host` in which each (workload, executable, time_ms)
/// ran once; the session starts at the earliest time.
fn session(db: &Path, host: &str, execs: &[(&str, &str, i64)]) {
    let mut database = Database::open(db).expect("creating a database");
    let started = execs.iter().map(|e| e.2).min().unwrap_or(0);
    let session = database
        .begin_session(&SessionInfo {
            host: host.into(),
            kernel: "6.1.0".into(),
            hook: "tp_btf/sched_process_exec".into(),
            started_at_ms: started,
        })
        .unwrap();
    let mut batch = Batch::default();
    for (workload, exe, time_ms) in execs {
        batch.add(Observation {
            workload: WorkloadId::Cgroup {
                path: workload.to_string(),
            },
            cgroup_id: 7,
            cgroup_path: workload.to_string(),
            path: exe.as_bytes().to_vec(),
            path_flags: 0,
            parent: b"/bin/sh".to_vec(),
            uid: 0,
            time_ms: *time_ms,
        });
    }
    let ended = execs.iter().map(|e| e.2).max().unwrap_or(0);
    database
        .record(session, &batch, execs.len() as u64, 0, Some(ended))
        .unwrap();
}

fn convergence_of<'a>(show: &'a Value, name: &str) -> &'a Value {
    &show["workloads"]
        .as_array()
        .unwrap()
        .iter()
        .find(|w| w["name"] == json!(name))
        .unwrap_or_else(|| panic!("{name} not shown: {show:#}"))["convergence"]
}

/// Two nodes learn /web at different times; the merged database says when /web was
/// first seen and when it last found an executable it had not run before (a rerun
/// of a known one is not new, on any node).
#[test]
fn show_prints_convergence_across_sessions_and_merged_nodes() {
    let (_keep, tmp) = temp_dir();
    let (a, b, fleet) = (tmp.join("a.db"), tmp.join("b.db"), tmp.join("fleet.db"));
    session(
        &a,
        "node-a",
        &[
            ("/web", "/bin/web", 10_000),
            ("/web", "/bin/helper", 50_000),
        ],
    );
    session(
        &a,
        "node-a",
        &[("/web", "/bin/web", 70_000), ("/web", "/bin/web", 71_000)],
    );
    session(
        &b,
        "node-b",
        &[
            ("/web", "/bin/helper", 20_000),
            ("/web", "/bin/probe", 40_000),
            ("/web", "/bin/web", 90_000),
            ("/batch", "/bin/job", 30_000),
        ],
    );
    let merged = run(&[&"merge", &"--into", &fleet, &a, &b]);
    assert!(
        merged.status.success(),
        "{}",
        String::from_utf8_lossy(&merged.stderr)
    );

    let show = json_of(&run(&[&"show", &"--db", &fleet, &"-o", &"json"]));
    assert_eq!(
        convergence_of(&show, "/web"),
        &json!({"first_seen_ms": 10_000, "last_new_ms": 40_000, "execs": 7,
                "executables": 3, "running_only": 0})
    );
    assert_eq!(
        convergence_of(&show, "/batch"),
        &json!({"first_seen_ms": 30_000, "last_new_ms": 30_000, "execs": 1,
                "executables": 1, "running_only": 0})
    );
    let text = String::from_utf8(run(&[&"show", &"--db", &fleet]).stdout).unwrap();
    assert!(
        text.contains("first seen 1970-01-01T00:00:10Z, last new executable 1970-01-01T00:00:40Z")
            && text.contains("7 execs, 3 executables"),
        "{text}"
    );
}

#[test]
fn export_stable_for_writes_only_workloads_that_found_nothing_new_for_that_long() {
    let (_keep, tmp) = temp_dir();
    let db = tmp.join("learn.db");
    let now = fingerprint::learn::now_ms();
    let (hour, minute) = (3_600_000, 60_000);
    session(
        &db,
        "node",
        &[
            ("/quiet", "/bin/a", now - 5 * hour),
            ("/quiet", "/bin/b", now - 2 * hour),
            // Run again lately, but not new: still quiet.
            ("/quiet", "/bin/a", now - minute),
            ("/busy", "/bin/a", now - 5 * hour),
            ("/busy", "/bin/c", now - 10 * minute),
        ],
    );
    let out = tmp.join("profiles");
    let export = run(&[
        &"export",
        &"--db",
        &db,
        &"--out",
        &out,
        &"--stable-for",
        &"1h",
    ]);
    let stderr = String::from_utf8_lossy(&export.stderr);
    assert!(export.status.success(), "{stderr}");
    let files: Vec<String> = std::fs::read_dir(&out)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(files, ["%2Fquiet.json"], "stderr: {stderr}");
    assert!(
        stderr.contains("workload `/busy` not exported: still learning (a new executable 10m"),
        "{stderr}"
    );
    assert!(!stderr.contains("workload `/quiet`"), "{stderr}");

    // A longer window leaves both out; a shorter one takes both.
    let none = tmp.join("none");
    run(&[
        &"export",
        &"--db",
        &db,
        &"--out",
        &none,
        &"--stable-for",
        &"3h",
    ]);
    assert_eq!(std::fs::read_dir(&none).map(|d| d.count()).unwrap_or(0), 0);
    let both = tmp.join("both");
    run(&[
        &"export",
        &"--db",
        &db,
        &"--out",
        &both,
        &"--stable-for",
        &"5m",
    ]);
    assert_eq!(std::fs::read_dir(&both).unwrap().count(), 2);
}

/// `fingerprint check --profile DIR --db DB [-o json]`: exit status and refusals.
fn check(profiles: &Path, db: &Path) -> (Option<i32>, Vec<(String, String, Value)>) {
    let out = run(&[
        &"check",
        &"--profile",
        &profiles,
        &"--db",
        &db,
        &"-o",
        &"json",
    ]);
    let report = json_of(&out);
    let refusals = report["refusals"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["path"].as_str().unwrap().to_string(),
                r["reason"].as_str().unwrap().to_string(),
                r["counts"].clone(),
            )
        })
        .collect();
    (out.status.code(), refusals)
}

/// Learned: two tools and two plugins. The learned profile (and one with a pattern
/// for the plugins) refuses nothing; with a tool removed and the pattern narrowed,
/// exactly those two are refused, with the counts learned; a violation an audit-mode
/// enforcer wrote is replayed too.
#[test]
fn check_finds_exactly_what_an_edited_profile_would_refuse() {
    if !privileged("check_finds_exactly_what_an_edited_profile_would_refuse") {
        return;
    }
    let (_keep, tmp) = temp_dir();
    let tool_a = install_binary(TRUE, &tmp.join("bin/tool-a"));
    let tool_b = install_binary(TRUE, &tmp.join("bin/tool-b"));
    let plugin_1 = install_binary(TRUE, &tmp.join("plugins/p-1"));
    let plugin_2 = install_binary(TRUE, &tmp.join("plugins/p-2"));
    let cg = TestCgroup::new();
    let db = tmp.join("learn.db");
    let learner = Learner::start(&db, &[&cg]);
    for exe in [&tool_a, &tool_b, &tool_b, &plugin_1, &plugin_2] {
        assert_eq!(outcome(&mut cg.command(exe)), Outcome::Ran(0));
    }
    learner.stop_ok();

    let learned = tmp.join("learned");
    export_profiles(&db, &learned, &[]);
    assert_eq!(
        check(&learned, &db),
        (Some(0), vec![]),
        "the learned profile"
    );

    let plugins = format!("{}/p-*", tmp.join("plugins").display());
    let with_pattern = tmp.join("with-pattern");
    write_profile(
        &with_pattern,
        &cg.path,
        "audit",
        &[&tool_a, &tool_b],
        &[&plugins],
    );
    assert_eq!(
        check(&with_pattern, &db),
        (Some(0), vec![]),
        "a pattern for the plugins"
    );

    let narrowed = format!("{}/p-1*", tmp.join("plugins").display());
    let edited = tmp.join("edited");
    write_profile(&edited, &cg.path, "audit", &[&tool_a], &[&narrowed]);
    let expected = |counts: Value| {
        vec![
            (
                tool_b.to_str().unwrap().to_string(),
                "not_in_profile".to_string(),
                counts,
            ),
            (
                plugin_2.to_str().unwrap().to_string(),
                "not_in_profile".to_string(),
                json!({"learned": 1}),
            ),
        ]
    };
    assert_eq!(
        check(&edited, &db),
        (Some(1), expected(json!({"learned": 2})))
    );

    // Audit mode with the edited profile: tool-b runs and is written as a violation.
    let enforcer = Enforcer::start(&tmp, &edited, Mech::Kill, &[]);
    assert_eq!(outcome(&mut cg.command(&tool_b)), Outcome::Ran(0));
    let enforce_db = enforcer.db.clone();
    assert_eq!(enforcer.stop().len(), 1);
    let (code, refusals) = check(&edited, &enforce_db);
    assert_eq!(code, Some(1));
    assert_eq!(
        refusals,
        vec![(
            tool_b.to_str().unwrap().to_string(),
            "not_in_profile".to_string(),
            json!({"violation": 1})
        )]
    );
    assert_eq!(
        check(&learned, &enforce_db),
        (Some(0), vec![]),
        "fixed by the learned profile"
    );

    let since = run(&[
        &"check",
        &"--profile",
        &edited,
        &"--db",
        &db,
        &"--since",
        &"1h",
    ]);
    assert_eq!(
        since.status.code(),
        Some(1),
        "recent execs are in the window"
    );
    let missing = run(&[
        &"check",
        &"--profile",
        &edited,
        &"--db",
        &tmp.join("none.db"),
    ]);
    assert_eq!(
        missing.status.code(),
        Some(2),
        "a missing database is an error"
    );
}

/// Violations the `violations` table of `db` stands for, a row with repeats N for N
/// (0 while it does not exist yet).
fn violations_in(db: &Path) -> i64 {
    let sql = "SELECT COALESCE(SUM(CASE repeats WHEN 0 THEN 1 ELSE repeats END), 0) \
               FROM violations";
    rusqlite::Connection::open_with_flags(db, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
        .and_then(|c| c.query_row(sql, [], |r| r.get(0)))
        .unwrap_or(0)
}

/// `status --db` lists each audit-mode profile of the pinned enforcement with how many
/// violations it had and since when; a profile in enforce mode is not listed.
#[test]
fn status_lists_audit_mode_profiles_with_their_violations() {
    if !privileged("status_lists_audit_mode_profiles_with_their_violations") {
        return;
    }
    let (_keep, tmp) = temp_dir();
    let allowed = install_binary(TRUE, &tmp.join("bin/allowed"));
    let forbidden = install_binary(TRUE, &tmp.join("bin/forbidden"));
    let (audited, quiet, enforced) = (TestCgroup::new(), TestCgroup::new(), TestCgroup::new());
    let profiles = tmp.join("profiles");
    write_profile(&profiles, &audited.path, "audit", &[&allowed], &[]);
    write_profile(&profiles, &quiet.path, "audit", &[&allowed], &[]);
    write_profile(&profiles, &enforced.path, "enforce", &[&allowed], &[]);
    let pin_dir = format!("/sys/fs/bpf/{}", unique("fp-test-readiness"));
    let enforcer = Enforcer::start(
        &tmp,
        &profiles,
        Mech::Kill,
        &["--pin", "--pin-dir", &pin_dir],
    );
    for _ in 0..2 {
        assert_eq!(outcome(&mut audited.command(&forbidden)), Outcome::Ran(0));
    }
    assert_eq!(outcome(&mut quiet.command(&allowed)), Outcome::Ran(0));
    let deadline = Instant::now() + Duration::from_secs(30);
    while violations_in(&enforcer.db) < 2 {
        assert!(
            Instant::now() < deadline,
            "the violations were never written"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let status = |format: &str| {
        run(&[
            &"status",
            &"--pin-dir",
            &pin_dir,
            &"--db",
            &enforcer.db,
            &"-o",
            &format,
        ])
    };
    let audit = json_of(&status("json"))["audit"].clone();
    let mut expected = vec![
        (audited.path.clone(), json!(2)),
        (quiet.path.clone(), json!(0)),
    ];
    expected.sort_by(|a, b| a.0.cmp(&b.0));
    let listed: Vec<(String, Value)> = audit
        .as_array()
        .unwrap_or_else(|| panic!("no audit list: {audit:#}"))
        .iter()
        .map(|p| {
            (
                p["profile"].as_str().unwrap().to_string(),
                p["violations"].clone(),
            )
        })
        .collect();
    assert_eq!(listed, expected);
    let text = String::from_utf8(status("text").stdout).unwrap();
    assert!(
        text.contains(&format!("{}: 2 violations since ", audited.path)),
        "{text}"
    );
    assert!(
        text.contains(&format!("{}: no violations recorded", quiet.path)),
        "{text}"
    );
    enforcer.stop();
    let stop = run(&[&"stop", &"--pin-dir", &pin_dir]);
    assert!(
        stop.status.success(),
        "{}",
        String::from_utf8_lossy(&stop.stderr)
    );
}
