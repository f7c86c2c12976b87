//! Workload boundaries: which profile governs a cgroup. A profile governs its own
//! workload and the cgroups nested in it, whatever they are called; the root cgroup's
//! profile governs the root alone; a workload without a profile is left alone.
//! Written once, run in kill mode on this host and with the BPF LSM in qemu.

use std::ffi::OsStr;
use std::os::fd::AsRawFd;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::Command;

use serde_json::{json, Value};

use crate::common::*;
use crate::enforce::{blocked, outcome, write_profile, Enforcer, Mech, Outcome, TRUE};
use fingerprint::workload::cgroup::CgroupV2;
use fingerprint::workload::cgroup_path;

/// Write a profile for systemd unit `unit` (matched by its unit name).
fn write_unit_profile(dir: &Path, unit: &str, exes: &[&Path]) {
    std::fs::create_dir_all(dir).unwrap();
    let executables: Vec<Value> = exes.iter().map(|p| path_value(&bytes(p))).collect();
    let profile = json!({
        "schema": 1,
        "workload": {"name": unit, "match": {"kind": "systemd_unit", "unit": unit}},
        "mode": "enforce",
        "executables": executables,
        "patterns": [],
    });
    std::fs::write(dir.join(format!("{unit}.json")), format!("{profile:#}\n")).unwrap();
}

/// A command that moves itself into the root cgroup before it execs.
fn in_root_cgroup(program: &Path) -> Command {
    let v2 = CgroupV2::discover().expect("cgroup v2 mount");
    let procs = std::fs::OpenOptions::new()
        .write(true)
        .open(v2.mount_point().join("cgroup.procs"))
        .expect("opening the root cgroup.procs");
    let mut cmd = Command::new(program);
    // SAFETY: only write(2) on an fd opened before fork: async-signal-safe.
    unsafe {
        cmd.pre_exec(move || {
            if libc::write(procs.as_raw_fd(), b"0".as_ptr().cast(), 1) != 1 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    cmd
}

fn set_mode(profile: &Path, mode: &str) {
    let mut doc: Value = serde_json::from_slice(&std::fs::read(profile).unwrap()).unwrap();
    doc["mode"] = json!(mode);
    std::fs::write(profile, format!("{doc:#}\n")).unwrap();
}

/// Learn every cgroup (the root included), export, enforce: a cgroup that has no
/// profile, made before enforcement or after, runs anything with no event; the root's
/// profile governs execs in the root cgroup. (Regression: the root's tiny profile was
/// inherited by every unprofiled cgroup on the node.) The root profile is put in audit
/// mode: this test's own harness, and other tests running beside it, exec from the
/// root cgroup, and must not be killed.
pub fn a_root_profile_governs_the_root_cgroup_alone(mech: Mech) {
    let (_keep, tmp) = temp_dir();
    let allowed = install_binary(TRUE, &tmp.join("bin/fp-allowed"));
    let forbidden = install_binary(TRUE, &tmp.join("bin/fp-forbidden"));
    let cg = TestCgroup::new();
    let db = tmp.join("learn.db");
    let learner = Learner::start(&db, &[]);
    assert_eq!(outcome(&mut cg.command(&allowed)), Outcome::Ran(0));
    assert_eq!(outcome(&mut in_root_cgroup(&allowed)), Outcome::Ran(0));
    learner.stop_ok();

    let exported = tmp.join("exported");
    export_profiles(&db, &exported, &["--include-host", "--mode", "enforce"]);
    // Enforce only what this test owns: other cgroups learned here are other tests'.
    let profiles = tmp.join("profiles");
    std::fs::create_dir_all(&profiles).unwrap();
    for name in [
        "%2F.json".to_string(),
        format!("{}.json", cg_file_stem(&cg.path)),
    ] {
        std::fs::rename(exported.join(&name), profiles.join(&name))
            .unwrap_or_else(|e| panic!("exported profile {name}: {e}"));
    }
    set_mode(&profiles.join("%2F.json"), "audit");

    let unrelated_before = TestCgroup::new();
    let enforcer = Enforcer::start(&tmp, &profiles, mech, &[]);
    let unrelated_after = TestCgroup::new();
    let nested_after = unrelated_after.child("nested");
    for unrelated in [&unrelated_before, &unrelated_after, &nested_after] {
        assert_eq!(
            outcome(&mut unrelated.command(&forbidden)),
            Outcome::Ran(0),
            "{} has no profile",
            unrelated.path
        );
    }
    assert_eq!(outcome(&mut cg.command(&forbidden)), blocked(mech));
    assert_eq!(outcome(&mut in_root_cgroup(&forbidden)), Outcome::Ran(0));
    let events = enforcer.stop();
    let of = |path: &str| -> Vec<&Value> {
        events
            .iter()
            .filter(|e| e["cgroup"] == json!(path) && e["executable"] == json!(forbidden))
            .collect()
    };
    for unrelated in [&unrelated_before, &unrelated_after, &nested_after] {
        assert_eq!(of(&unrelated.path), Vec::<&Value>::new(), "{events:#?}");
    }
    assert_eq!(of(&cg.path).len(), 1, "{events:#?}");
    let root = of("/");
    assert_eq!(root.len(), 1, "{events:#?}");
    assert_eq!(root[0]["profile"], json!("/"));
    assert_eq!(root[0]["action"], json!("audited"));
}

/// The file stem export gives a `cgroup` workload's profile.
fn cg_file_stem(path: &str) -> String {
    path.replace('/', "%2F")
}

/// A process of an enforced workload that may create cgroups makes one named after
/// another workload's unit (directly below its own cgroup, deeper, and below a plain
/// `cgroup` workload): each stays under the enforced profile, before and after a
/// reload. (Regression: the kernel bound it by its leaf name to the other profile.)
pub fn a_nested_cgroup_cannot_take_another_workloads_profile(mech: Mech) {
    let (_keep, tmp) = temp_dir();
    let allowed = install_binary(TRUE, &tmp.join("bin/fp-allowed"));
    let forbidden = install_binary(TRUE, &tmp.join("bin/fp-forbidden"));
    let web_unit = format!("{}.service", unique("fp-web"));
    let other_unit = format!("{}.service", unique("fp-other"));
    let base = TestCgroup::new();
    let web = base.child(&web_unit);
    let plain = base.child("plain");
    let profiles = tmp.join("profiles");
    write_unit_profile(&profiles, &web_unit, &[&allowed]);
    write_unit_profile(&profiles, &other_unit, &[&allowed, &forbidden]);
    write_profile(&profiles, &plain.path, "enforce", &[&allowed], &[]);
    let enforcer = Enforcer::start(&tmp, &profiles, mech, &[]);

    let direct = web.child(&other_unit);
    let sub = web.child("sub");
    let deeper = sub.child(&other_unit);
    let below_plain = plain.child(&other_unit);
    let attempts = [
        (&direct, &web_unit),
        (&deeper, &web_unit),
        (&below_plain, &plain.path),
    ];
    let try_all = || {
        for (cg, _) in &attempts {
            assert_eq!(
                outcome(&mut cg.command(&forbidden)),
                blocked(mech),
                "{} must stay under its parent's profile",
                cg.path
            );
            assert_eq!(outcome(&mut cg.command(&allowed)), Outcome::Ran(0));
        }
    };
    try_all();
    enforcer.signal(nix::sys::signal::Signal::SIGHUP);
    enforcer.wait_for_line("fingerprint: reloaded");
    try_all();
    let events = enforcer.stop();
    assert_eq!(events.len(), 2 * attempts.len(), "{events:#?}");
    for (cg, profile) in attempts {
        let of_cg: Vec<&Value> = events
            .iter()
            .filter(|e| e["cgroup"] == json!(cg.path))
            .collect();
        assert_eq!(of_cg.len(), 2, "{events:#?}");
        assert!(
            of_cg.iter().all(|e| e["profile"] == json!(profile)),
            "{events:#?}"
        );
    }
}

/// A cgroup named with these raw bytes below the v2 root; removed on drop.
fn raw_cgroup(name: &[u8]) -> TestCgroup {
    let v2 = CgroupV2::discover().expect("cgroup v2 mount");
    let dir = v2.mount_point().join(OsStr::from_bytes(name));
    std::fs::create_dir(&dir).expect("creating a cgroup with a non-UTF-8 name");
    let mut path = b"/".to_vec();
    path.extend_from_slice(name);
    TestCgroup {
        dir,
        path: cgroup_path::to_text(&path),
    }
}

/// Two cgroups whose names differ only in one invalid UTF-8 byte are two workloads
/// from learning to enforcement: two profiles, each cgroup governed by its own.
/// (Regression: both were named with U+FFFD and merged into one workload.)
pub fn cgroups_differing_in_one_invalid_byte_stay_two_workloads(mech: Mech) {
    let (_keep, tmp) = temp_dir();
    let stem = unique("fp-bytes");
    let cg_a = raw_cgroup(&[stem.as_bytes(), b"-\xff"].concat());
    let cg_b = raw_cgroup(&[stem.as_bytes(), b"-\xfe"].concat());
    let exe_a = install_binary(TRUE, &tmp.join("bin/fp-a"));
    let exe_b = install_binary(TRUE, &tmp.join("bin/fp-b"));
    let db = tmp.join("learn.db");
    let learner = Learner::start(&db, &[&cg_a, &cg_b]);
    assert_eq!(outcome(&mut cg_a.command(&exe_a)), Outcome::Ran(0));
    assert_eq!(outcome(&mut cg_b.command(&exe_b)), Outcome::Ran(0));
    learner.stop_ok();
    let profiles = tmp.join("profiles");
    export_profiles(&db, &profiles, &["--mode", "enforce"]);
    let mut names: Vec<String> = std::fs::read_dir(&profiles)
        .unwrap()
        .map(|entry| {
            let doc: Value =
                serde_json::from_slice(&std::fs::read(entry.unwrap().path()).unwrap()).unwrap();
            doc["workload"]["name"].as_str().unwrap().to_string()
        })
        .collect();
    names.sort();
    let mut expected = vec![cg_a.path.clone(), cg_b.path.clone()];
    expected.sort();
    assert_eq!(names, expected);

    let enforcer = Enforcer::start(&tmp, &profiles, mech, &[]);
    assert_eq!(outcome(&mut cg_a.command(&exe_a)), Outcome::Ran(0));
    assert_eq!(outcome(&mut cg_a.command(&exe_b)), blocked(mech));
    assert_eq!(outcome(&mut cg_b.command(&exe_b)), Outcome::Ran(0));
    assert_eq!(outcome(&mut cg_b.command(&exe_a)), blocked(mech));
    let events = enforcer.stop();
    assert_eq!(events.len(), 2, "{events:#?}");
    for (cg, exe) in [(&cg_a, &exe_b), (&cg_b, &exe_a)] {
        assert!(
            events.iter().any(|e| e["cgroup"] == json!(cg.path)
                && e["profile"] == json!(cg.path)
                && e["executable"] == json!(exe)),
            "{events:#?}"
        );
    }
}

/// Open `procs` (a cgroup.procs file) for writing from inside the child, after
/// `from.command` moved it into `from`, and move the child there before it execs:
/// the open is the workload's own, as an attacker inside it would do it.
fn moved_then_exec(from: &TestCgroup, procs: &Path, program: &Path) -> Command {
    let procs = std::ffi::CString::new(bytes(procs)).unwrap();
    let mut cmd = from.command(program);
    // SAFETY: open(2), write(2) and close(2) only: async-signal-safe.
    unsafe {
        cmd.pre_exec(move || {
            let fd = libc::open(procs.as_ptr(), libc::O_WRONLY | libc::O_CLOEXEC);
            if fd < 0 {
                return Err(std::io::Error::last_os_error());
            }
            let written = libc::write(fd, b"0".as_ptr().cast(), 1);
            libc::close(fd);
            if written != 1 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    cmd
}

/// `struct clone_args` (linux/sched.h), up to `cgroup` (CLONE_ARGS_SIZE_VER2).
#[repr(C)]
#[derive(Default)]
struct CloneArgs {
    flags: u64,
    pidfd: u64,
    child_tid: u64,
    parent_tid: u64,
    exit_signal: u64,
    stack: u64,
    stack_size: u64,
    tls: u64,
    set_tid: u64,
    set_tid_size: u64,
    cgroup: u64,
}

const CLONE_INTO_CGROUP: u64 = 0x2_0000_0000;

/// From inside `from`, clone a child straight into cgroup directory `into` (clone3
/// with CLONE_INTO_CGROUP, through an O_PATH descriptor: nothing is opened for
/// writing), wait for it, then exec `program`. The spawn fails with the clone's error.
fn cloned_into_then_exec(from: &TestCgroup, into: &Path, program: &Path) -> Command {
    let into = std::ffi::CString::new(bytes(into)).unwrap();
    let mut cmd = from.command(program);
    // SAFETY: open(2), clone3(2), _exit(2), waitpid(2), close(2): async-signal-safe.
    unsafe {
        cmd.pre_exec(move || {
            let dir = libc::open(
                into.as_ptr(),
                libc::O_PATH | libc::O_DIRECTORY | libc::O_CLOEXEC,
            );
            if dir < 0 {
                return Err(std::io::Error::last_os_error());
            }
            let args = CloneArgs {
                flags: CLONE_INTO_CGROUP,
                exit_signal: libc::SIGCHLD as u64,
                cgroup: dir as u64,
                ..CloneArgs::default()
            };
            let pid = libc::syscall(
                libc::SYS_clone3,
                &args as *const CloneArgs,
                std::mem::size_of::<CloneArgs>(),
            );
            if pid == 0 {
                libc::_exit(0);
            }
            let error = std::io::Error::last_os_error();
            libc::close(dir);
            if pid < 0 {
                return Err(error);
            }
            libc::waitpid(pid as libc::pid_t, std::ptr::null_mut(), 0);
            Ok(())
        });
    }
    cmd
}

/// A workload whose profile keeps its tasks (`cgroup_moves: deny`; the default for
/// containers) cannot move a task out to a cgroup of no profile, by writing that
/// cgroup's cgroup.procs or by cloning into it, and each attempt is reported; moving
/// into its own nested cgroup stays possible (and governed). A workload whose profile
/// allows moves (the default for plain cgroups and units: managers move tasks) shows
/// the escape the guard closes: the same steps run a forbidden file. LSM only: kill
/// mode has no hook before the move.
pub fn a_workload_that_keeps_its_tasks_cannot_move_them_out() {
    let (_keep, tmp) = temp_dir();
    let allowed = install_binary(TRUE, &tmp.join("bin/fp-allowed"));
    let forbidden = install_binary(TRUE, &tmp.join("bin/fp-forbidden"));
    let base = TestCgroup::new();
    let (kept, loose, outside) = (
        base.child("kept"),
        base.child("loose"),
        base.child("outside"),
    );
    let nested = kept.child("nested");
    let profiles = tmp.join("profiles");
    write_profile(&profiles, &kept.path, "enforce", &[&allowed], &[]);
    write_profile(&profiles, &loose.path, "enforce", &[&allowed], &[]);
    let kept_file = profiles.join(format!("{}.json", cg_file_stem(&kept.path[1..])));
    let mut doc: Value = serde_json::from_slice(&std::fs::read(&kept_file).unwrap()).unwrap();
    doc["cgroup_moves"] = json!("deny");
    std::fs::write(&kept_file, format!("{doc:#}\n")).unwrap();
    let enforcer = Enforcer::start(&tmp, &profiles, Mech::Lsm, &[]);
    let outside_procs = outside.dir.join("cgroup.procs");

    // Where moves are allowed, a forbidden file runs once its task has left.
    let escape = outcome(&mut moved_then_exec(&loose, &outside_procs, &forbidden));
    assert_eq!(escape, Outcome::Ran(0), "the escape the guard exists for");
    let cloned = outcome(&mut cloned_into_then_exec(&loose, &outside.dir, &allowed));
    assert_eq!(cloned, Outcome::Ran(0), "clone3 into a cgroup works here");

    let moved = outcome(&mut moved_then_exec(&kept, &outside_procs, &forbidden));
    assert_eq!(
        moved,
        Outcome::Denied,
        "opening cgroup.procs outside is refused"
    );
    let cloned = outcome(&mut cloned_into_then_exec(&kept, &outside.dir, &allowed));
    assert_eq!(
        cloned,
        Outcome::Denied,
        "cloning into another cgroup is refused"
    );
    let nested_procs = nested.dir.join("cgroup.procs");
    let inside = outcome(&mut moved_then_exec(&kept, &nested_procs, &allowed));
    assert_eq!(inside, Outcome::Ran(0), "its own nested cgroup is its own");
    let inside = outcome(&mut moved_then_exec(&kept, &nested_procs, &forbidden));
    assert_eq!(inside, blocked(Mech::Lsm), "and stays under its profile");

    let events = enforcer.stop();
    let reasons: Vec<(&Value, &Value)> = events
        .iter()
        .map(|e| (&e["cgroup"], &e["reason"]))
        .collect();
    assert_eq!(
        reasons,
        [
            (&json!(kept.path), &json!("cgroup_move")),
            (&json!(kept.path), &json!("cgroup_move")),
            (&json!(nested.path), &json!("not_in_profile")),
        ],
        "{events:#?}"
    );
    assert_eq!(
        events[0]["target"],
        path_value(&bytes(&outside_procs)),
        "{events:#?}"
    );
    assert_eq!(events[1]["target"], Value::Null, "{events:#?}");
    assert!(
        events[..2].iter().all(|e| e["action"] == "denied"),
        "{events:#?}"
    );
}

/// LSM only: a task held for a decision (here the first exec of a file version under a
/// pinned path: the attacker's file renamed onto the allowed name) can be neither
/// continued (SIGCONT) nor traced by another task of its workload, which would run the
/// new image before it is decided. The enforcer is stopped meanwhile, so that the hold
/// lasts as long as the attack needs; resumed, it kills the task.
pub fn a_held_task_cannot_be_released_from_its_workload() {
    use crate::identity::{sha256_of, write_pinned_profile, BUSYBOX};
    let (_keep, tmp) = temp_dir();
    let allowed = install_binary(TRUE, &tmp.join("bin/tool"));
    let cg = TestCgroup::new();
    let profiles = tmp.join("profiles");
    write_pinned_profile(&profiles, &cg.path, &[(&allowed, &[sha256_of(&allowed)])]);
    // Busybox's `touch` under the allowed name: if it runs, it leaves a mark.
    std::fs::rename(install_binary(BUSYBOX, &tmp.join("evil")), &allowed).unwrap();
    let mark = tmp.join("ran");
    let enforcer = Enforcer::start(&tmp, &profiles, Mech::Lsm, &[]);
    enforcer.signal(nix::sys::signal::Signal::SIGSTOP);
    let mut victim = cg.command(&allowed);
    victim.arg0("touch").arg(&mark);
    let mut victim = victim.spawn().unwrap();
    fingerprint::enforce::hold::wait_until_stopped(victim.id(), std::time::Duration::from_secs(10));

    let refused = attack_from(&cg, victim.id());
    assert_eq!(
        refused,
        (true, true),
        "(SIGCONT, ptrace) refused with EPERM"
    );
    assert!(!mark.exists(), "the held image ran");
    enforcer.signal(nix::sys::signal::Signal::SIGCONT);
    let status = victim.wait().unwrap();
    assert_eq!(
        std::os::unix::process::ExitStatusExt::signal(&status),
        Some(libc::SIGKILL)
    );
    assert!(!mark.exists(), "the held image ran");
    let events = enforcer.stop();
    assert_eq!(events.len(), 1, "{events:#?}");
    assert_eq!(events[0]["reason"], "content_mismatch", "{events:#?}");
}

/// From a process in `cg` (forked, moved in, no exec): SIGCONT and ptrace `pid`;
/// whether each was refused with EPERM.
fn attack_from(cg: &TestCgroup, pid: u32) -> (bool, bool) {
    let procs = std::fs::OpenOptions::new()
        .write(true)
        .open(cg.dir.join("cgroup.procs"))
        .unwrap();
    // SAFETY: the child makes system calls only (write, kill, ptrace, _exit), on memory
    // allocated before fork: async-signal-safe in a multi-threaded parent.
    match unsafe { libc::fork() } {
        0 => unsafe {
            let eperm = |rc: libc::c_long| rc == -1 && *libc::__errno_location() == libc::EPERM;
            if libc::write(procs.as_raw_fd(), b"0".as_ptr().cast(), 1) != 1 {
                libc::_exit(100);
            }
            let cont = eperm(libc::kill(pid as i32, libc::SIGCONT).into());
            let trace = eperm(libc::ptrace(libc::PTRACE_SEIZE, pid as i32, 0, 0));
            libc::_exit(i32::from(cont) | i32::from(trace) << 1);
        },
        child => {
            let mut status = 0;
            // SAFETY: waiting for our own child.
            assert_eq!(unsafe { libc::waitpid(child, &mut status, 0) }, child);
            let code = libc::WEXITSTATUS(status);
            assert!(code < 4, "the attacker could not enter the cgroup ({code})");
            (code & 1 != 0, code & 2 != 0)
        }
    }
}

with_both_mechanisms!(
    a_root_profile_governs_the_root_cgroup_alone,
    a_nested_cgroup_cannot_take_another_workloads_profile,
    cgroups_differing_in_one_invalid_byte_stay_two_workloads;
    lsm only: a_workload_that_keeps_its_tasks_cannot_move_them_out,
    a_held_task_cannot_be_released_from_its_workload,
);
