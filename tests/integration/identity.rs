//! Executable identity (issue #12): an allowed path must never run another file. Each
//! scenario is an attack a root process inside an enforced workload can make against
//! a path-only allowlist: the profile pins the allowed path to its content (schema 2,
//! `sha256`), the attacker brings its own file (a copy of static busybox, run as
//! `false`: exit 1 if it ran) under that path, and the exec must be stopped with a
//! `content_mismatch` event. Written once for both mechanisms, like `enforce`.

use std::ffi::{CString, OsStr};
use std::os::unix::fs::MetadataExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde_json::{json, Value};

use crate::common::*;
use crate::enforce::{blocked, outcome, Enforcer, Mech, Outcome, TRUE};
use fingerprint::content::Sha256;
use fingerprint::enforce::YOUNG_CTIME;

pub const BUSYBOX: &str = "/bin/busybox";
const FALSE: &str = "/usr/bin/false";

/// A workload whose profile allows one binary, pinned to its content, and an
/// attacker's binary ready to take its place.
struct Pinned {
    _keep: tempfile::TempDir,
    tmp: PathBuf,
    cg: TestCgroup,
    profiles: PathBuf,
    /// tmp/bin/fp-allowed: a copy of `true`, pinned to its digest.
    allowed: PathBuf,
    /// tmp/evil/fp-allowed: static busybox, under the allowed file's name.
    evil: PathBuf,
}

impl Pinned {
    fn new() -> Pinned {
        let (keep, tmp) = temp_dir();
        let allowed = install_binary(TRUE, &tmp.join("bin/fp-allowed"));
        let evil = install_binary(BUSYBOX, &tmp.join("evil/fp-allowed"));
        let cg = TestCgroup::new();
        let profiles = tmp.join("profiles");
        let pinned = Pinned {
            _keep: keep,
            tmp,
            cg,
            profiles,
            allowed,
            evil,
        };
        pinned.write_profile(&[(&pinned.allowed, &[sha256_of(&pinned.allowed)])]);
        pinned
    }

    /// Write the workload's profile: these paths, each with these digests.
    fn write_profile(&self, entries: &[(&Path, &[Sha256])]) {
        write_pinned_profile(&self.profiles, &self.cg.path, entries);
    }

    fn start(&self, mech: Mech) -> Enforcer {
        Enforcer::start(&self.tmp, &self.profiles, mech, &[])
    }

    /// The allowed path, exec'd in the workload as `false` (busybox's applet name).
    fn exec_allowed(&self) -> Command {
        let mut cmd = self.cg.command(&self.allowed);
        cmd.arg0("false");
        cmd
    }
}

pub fn sha256_of(path: &Path) -> Sha256 {
    Sha256::of(&std::fs::read(path).unwrap())
}

/// A schema-2 profile for cgroup `cg_path` in enforce mode.
pub fn write_pinned_profile(dir: &Path, cg_path: &str, entries: &[(&Path, &[Sha256])]) {
    std::fs::create_dir_all(dir).unwrap();
    let executables: Vec<Value> = entries
        .iter()
        .map(|(path, digests)| match digests {
            [] => path_value(&bytes(path)),
            _ => json!({
                "path": path_value(&bytes(path)),
                "sha256": digests.iter().map(|d| d.to_string()).collect::<Vec<_>>(),
            }),
        })
        .collect();
    let profile = json!({
        "schema": 2,
        "workload": {"name": cg_path, "match": {"kind": "cgroup", "path": cg_path}},
        "mode": "enforce",
        "executables": executables,
        "patterns": [],
    });
    let file = dir.join(format!(
        "{}.json",
        cg_path.trim_start_matches('/').replace('/', "%2F")
    ));
    std::fs::write(file, format!("{profile:#}\n")).unwrap();
}

/// Wait until `path`'s change time is older than what enforcement caches: a file
/// version younger than that is decided but never cached (docs/architecture.md).
fn wait_until_cacheable(path: &Path) {
    let meta = std::fs::metadata(path).unwrap();
    let ctime = Duration::new(meta.ctime() as u64, meta.ctime_nsec() as u32);
    loop {
        let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap();
        if now > ctime + YOUNG_CTIME {
            return;
        }
        std::thread::sleep(ctime + YOUNG_CTIME - now);
    }
}

/// Every event is a content mismatch of the allowed path, with `action`.
fn assert_content_mismatches(events: &[Value], allowed: &Path, actions: &[&str]) {
    let seen: Vec<(String, String, String)> = events
        .iter()
        .map(|e| {
            (
                e["executable"].as_str().unwrap_or_default().to_string(),
                e["action"].as_str().unwrap_or_default().to_string(),
                e["reason"].as_str().unwrap_or_default().to_string(),
            )
        })
        .collect();
    let expected: Vec<(String, String, String)> = actions
        .iter()
        .map(|a| {
            (
                allowed.to_str().unwrap().to_string(),
                a.to_string(),
                "content_mismatch".to_string(),
            )
        })
        .collect();
    assert_eq!(seen, expected);
}

/// Raw mount(2) on strings prepared before fork; usable in `pre_exec`.
struct MountCall {
    source: CString,
    target: CString,
    fstype: Option<CString>,
    flags: libc::c_ulong,
    data: Option<CString>,
}

impl MountCall {
    fn new(source: &Path, target: &Path, flags: libc::c_ulong) -> MountCall {
        let c = |p: &Path| CString::new(bytes(p)).unwrap();
        MountCall {
            source: c(source),
            target: c(target),
            fstype: None,
            flags,
            data: None,
        }
    }

    /// # Safety
    /// Only a system call, on memory allocated before fork.
    unsafe fn call(&self) -> std::io::Result<()> {
        let opt = |s: &Option<CString>| s.as_ref().map_or(std::ptr::null(), |s| s.as_ptr());
        let rc = libc::mount(
            self.source.as_ptr(),
            self.target.as_ptr(),
            opt(&self.fstype),
            self.flags,
            opt(&self.data).cast(),
        );
        match rc {
            0 => Ok(()),
            _ => Err(std::io::Error::last_os_error()),
        }
    }
}

/// Before the exec: a private mount namespace, then these mounts in it.
fn in_new_mount_namespace(cmd: &mut Command, mounts: Vec<MountCall>) {
    let root = MountCall::new(
        Path::new("none"),
        Path::new("/"),
        libc::MS_REC | libc::MS_PRIVATE,
    );
    // SAFETY: unshare(2) and mount(2) only, on memory allocated before fork.
    unsafe {
        cmd.pre_exec(move || {
            if libc::unshare(libc::CLONE_NEWNS) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            root.call()?;
            mounts.iter().try_for_each(|m| m.call())
        });
    }
}

// ---- Scenarios -------------------------------------------------------------------

/// The pinned file itself runs, first held and hashed, then from the cache; nothing
/// is reported.
pub fn pinned_content_runs(mech: Mech) {
    let p = Pinned::new();
    let enforcer = p.start(mech);
    assert_eq!(outcome(&mut p.cg.command(&p.allowed)), Outcome::Ran(0));
    wait_until_cacheable(&p.allowed);
    for _ in 0..2 {
        assert_eq!(outcome(&mut p.cg.command(&p.allowed)), Outcome::Ran(0));
    }
    assert_eq!(enforcer.stop(), Vec::<Value>::new());
}

/// `chroot DIR /allowed/path`, where DIR/allowed/path is the attacker's file.
pub fn chroot_into_a_tree_with_the_allowed_name(mech: Mech) {
    let p = Pinned::new();
    let root = p.tmp.join("jail");
    let inside = root.join(p.allowed.strip_prefix("/").unwrap());
    install_binary(BUSYBOX, &inside);
    let enforcer = p.start(mech);
    let mut cmd = p.exec_allowed();
    let jail = CString::new(bytes(&root)).unwrap();
    // SAFETY: chroot(2) only, on memory allocated before fork.
    unsafe {
        cmd.pre_exec(move || match libc::chroot(jail.as_ptr()) {
            0 => Ok(()),
            _ => Err(std::io::Error::last_os_error()),
        });
    }
    assert_eq!(outcome(&mut cmd), Outcome::Killed);
    assert_content_mismatches(&enforcer.stop(), &p.allowed, &["killed"]);
}

/// `unshare -m` and the attacker's file bind-mounted over the allowed one.
pub fn bind_mount_over_the_allowed_file(mech: Mech) {
    let p = Pinned::new();
    let enforcer = p.start(mech);
    let mut cmd = p.exec_allowed();
    in_new_mount_namespace(
        &mut cmd,
        vec![MountCall::new(&p.evil, &p.allowed, libc::MS_BIND)],
    );
    assert_eq!(outcome(&mut cmd), Outcome::Killed);
    assert_content_mismatches(&enforcer.stop(), &p.allowed, &["killed"]);
}

/// `unshare -m`, a mount of the attacker's directory, moved over the allowed one's.
pub fn move_mount_over_the_allowed_directory(mech: Mech) {
    let p = Pinned::new();
    let staging = p.tmp.join("staging");
    std::fs::create_dir_all(&staging).unwrap();
    let evil_dir = p.evil.parent().unwrap();
    let bin_dir = p.allowed.parent().unwrap();
    let enforcer = p.start(mech);
    let mut cmd = p.exec_allowed();
    in_new_mount_namespace(
        &mut cmd,
        vec![
            MountCall::new(evil_dir, &staging, libc::MS_BIND),
            MountCall::new(&staging, bin_dir, libc::MS_MOVE),
        ],
    );
    assert_eq!(outcome(&mut cmd), Outcome::Killed);
    assert_content_mismatches(&enforcer.stop(), &p.allowed, &["killed"]);
}

/// `unshare -Urm` as an unprivileged user: a new user namespace (root inside it, no
/// privilege outside) owns a new mount namespace, where the attacker's file is
/// bind-mounted over the allowed one. The path is the allowed one; the file is not.
pub fn bind_mount_in_an_unprivileged_user_namespace(mech: Mech) {
    let p = Pinned::new();
    // The unprivileged user must reach both files.
    for dir in [&p.tmp, &p.tmp.join("bin"), &p.tmp.join("evil")] {
        std::fs::set_permissions(dir, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    }
    let enforcer = p.start(mech);
    let mut cmd = p.exec_allowed();
    let proc_file = |name: &str| CString::new(format!("/proc/self/{name}")).unwrap();
    let writes = [
        (proc_file("setgroups"), CString::new("deny").unwrap()),
        (proc_file("uid_map"), CString::new("0 65534 1").unwrap()),
        (proc_file("gid_map"), CString::new("0 65534 1").unwrap()),
    ];
    let private = MountCall::new(
        Path::new("none"),
        Path::new("/"),
        libc::MS_REC | libc::MS_PRIVATE,
    );
    let bind = MountCall::new(&p.evil, &p.allowed, libc::MS_BIND);
    // SAFETY: setgroups, setgid, setuid, prctl, unshare, open, write, close and mount
    // only, on memory allocated before fork.
    unsafe {
        cmd.pre_exec(move || {
            let fail = || Err(std::io::Error::last_os_error());
            if libc::setgroups(0, std::ptr::null()) != 0
                || libc::setgid(65534) != 0
                || libc::setuid(65534) != 0
                // A changed uid leaves the task undumpable, its /proc/self files
                // root's: uid_map could not be written.
                || libc::prctl(libc::PR_SET_DUMPABLE, 1) != 0
                || libc::unshare(libc::CLONE_NEWUSER | libc::CLONE_NEWNS) != 0
            {
                return fail();
            }
            for (file, text) in &writes {
                let fd = libc::open(file.as_ptr(), libc::O_WRONLY);
                let len = text.as_bytes().len();
                let written = fd >= 0 && libc::write(fd, text.as_ptr().cast(), len) == len as isize;
                if fd >= 0 {
                    libc::close(fd);
                }
                if !written {
                    return fail();
                }
            }
            private.call()?;
            bind.call()
        });
    }
    assert_eq!(outcome(&mut cmd), Outcome::Killed);
    assert_content_mismatches(&enforcer.stop(), &p.allowed, &["killed"]);
}

/// The attacker's file renamed onto the allowed name. Its first exec is held and
/// hashed; the version is then old enough to be cached, so the kernel knows its digest
/// and the next exec is blocked at once (refused with the LSM), without a hold.
pub fn rename_onto_the_allowed_name(mech: Mech) {
    let p = Pinned::new();
    let enforcer = p.start(mech);
    std::fs::rename(&p.evil, &p.allowed).unwrap();
    wait_until_cacheable(&p.allowed);
    assert_eq!(
        outcome(&mut p.exec_allowed()),
        Outcome::Killed,
        "held, then cached"
    );
    assert_eq!(outcome(&mut p.exec_allowed()), blocked(mech), "a cache hit");
    let last = match mech {
        Mech::Lsm => "denied",
        Mech::Kill => "killed",
    };
    assert_content_mismatches(&enforcer.stop(), &p.allowed, &["killed", last]);
}

/// New bytes written into the allowed file itself: same inode, same name.
pub fn overwrite_the_allowed_file_in_place(mech: Mech) {
    let p = Pinned::new();
    let enforcer = p.start(mech);
    assert_eq!(outcome(&mut p.cg.command(&p.allowed)), Outcome::Ran(0));
    let ino = std::fs::metadata(&p.allowed).unwrap().ino();
    write_executable(&p.allowed, &std::fs::read(&p.evil).unwrap());
    assert_eq!(std::fs::metadata(&p.allowed).unwrap().ino(), ino);
    assert_eq!(outcome(&mut p.exec_allowed()), Outcome::Killed);
    assert_content_mismatches(&enforcer.stop(), &p.allowed, &["killed"]);
}

/// `unshare -m` and an overlay whose upper layer holds the attacker's file, mounted
/// over the allowed file's directory (a container's root is such an overlay). In the
/// VM, vm/run.sh loads the kernel package's overlay module at boot.
pub fn overlay_mount_over_the_allowed_directory(mech: Mech) {
    let p = Pinned::new();
    let bin_dir = p.allowed.parent().unwrap();
    let work = p.tmp.join("work");
    std::fs::create_dir_all(&work).unwrap();
    let options = format!(
        "lowerdir={},upperdir={},workdir={}",
        bin_dir.display(),
        p.evil.parent().unwrap().display(),
        work.display()
    );
    let enforcer = p.start(mech);
    let mut cmd = p.exec_allowed();
    let mut overlay = MountCall::new(Path::new("overlay"), bin_dir, 0);
    overlay.fstype = Some(CString::new("overlay").unwrap());
    overlay.data = Some(CString::new(options).unwrap());
    in_new_mount_namespace(&mut cmd, vec![overlay]);
    assert_eq!(outcome(&mut cmd), Outcome::Killed);
    assert_content_mismatches(&enforcer.stop(), &p.allowed, &["killed"]);
}

/// A new mount namespace whose root is pivoted to a tree holding the attacker's file
/// at the allowed path, as a container runtime does. pivot_root(2) needs the current
/// root to be a mount with a parent: in the VM, /init stacks a bind mount of the
/// initramfs on / for that (vm/run.sh), as switch_root does on a booted host.
pub fn pivot_root_into_a_tree_with_the_allowed_name(mech: Mech) {
    let p = Pinned::new();
    let root = p.tmp.join("newroot");
    install_binary(BUSYBOX, &root.join(p.allowed.strip_prefix("/").unwrap()));
    std::fs::create_dir_all(root.join("old")).unwrap();
    let enforcer = p.start(mech);
    let mut cmd = p.exec_allowed();
    in_new_mount_namespace(&mut cmd, vec![MountCall::new(&root, &root, libc::MS_BIND)]);
    let (new_root, put_old) = (
        CString::new(bytes(&root)).unwrap(),
        CString::new(bytes(&root.join("old"))).unwrap(),
    );
    let slash = CString::new("/").unwrap();
    // SAFETY: pivot_root(2) and chdir(2) only, on memory allocated before fork.
    unsafe {
        cmd.pre_exec(move || {
            let pivot = libc::syscall(libc::SYS_pivot_root, new_root.as_ptr(), put_old.as_ptr());
            if pivot != 0 || libc::chdir(slash.as_ptr()) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    assert_eq!(outcome(&mut cmd), Outcome::Killed);
    assert_content_mismatches(&enforcer.stop(), &p.allowed, &["killed"]);
}

/// An allowed `#!` script whose body was edited (same inode, same name) is stopped:
/// the LSM hook sees the script's own file; kill mode, which runs after the exec
/// where only the interpreter is left, holds every interpreted exec and user space
/// hashes the script in the task's root (docs/architecture.md).
pub fn edited_script_is_stopped(mech: Mech) {
    let p = Pinned::new();
    // Named `sh`: busybox runs the applet its name says.
    let interpreter = install_binary(BUSYBOX, &p.tmp.join("bin/sh"));
    let script = p.tmp.join("bin/fp-script");
    write_executable(
        &script,
        format!("#!{}\nexit 0\n", interpreter.display()).as_bytes(),
    );
    p.write_profile(&[
        (&script, &[sha256_of(&script)]),
        (&interpreter, &[sha256_of(&interpreter)]),
    ]);
    let enforcer = p.start(mech);
    assert_eq!(outcome(&mut p.cg.command(&script)), Outcome::Ran(0));
    write_executable(
        &script,
        format!("#!{}\nexit 3\n", interpreter.display()).as_bytes(),
    );
    assert_eq!(outcome(&mut p.cg.command(&script)), Outcome::Killed);
    assert_content_mismatches(&enforcer.stop(), &script, &["killed"]);
}

/// A script named through an absolute symlink inside a chroot: the jail's `/app` links
/// to a directory whose absolute path, outside the jail, holds the allowed script, and
/// inside the jail, the attacker's. The interpreter reads the jail's. Kill mode hashes
/// the script as the task resolves it (in its own root): resolved in the enforcer's
/// root, the link would lend the allowed file's digest to the attacker's script. With
/// the LSM, the script's own file is seen, outside the profile's path.
pub fn script_behind_an_absolute_symlink_in_a_chroot(mech: Mech) {
    let p = Pinned::new();
    let genuine_dir = p.tmp.join("genuine");
    let body = |code: u8| format!("#!/bin/sh\nexit {code}\n").into_bytes();
    let genuine = write_executable(&genuine_dir.join("run.sh"), &body(0));
    let jail = p.tmp.join("jail");
    let interpreter = install_binary(BUSYBOX, &jail.join("bin/sh"));
    write_executable(
        &jail
            .join(genuine_dir.strip_prefix("/").unwrap())
            .join("run.sh"),
        &body(3),
    );
    std::os::unix::fs::symlink(&genuine_dir, jail.join("app")).unwrap();
    p.write_profile(&[
        (Path::new("/app/run.sh"), &[sha256_of(&genuine)]),
        (Path::new("/bin/sh"), &[sha256_of(&interpreter)]),
    ]);
    let enforcer = p.start(mech);
    let mut cmd = p.cg.command(Path::new("/app/run.sh"));
    let root = CString::new(bytes(&jail)).unwrap();
    let slash = CString::new("/").unwrap();
    // SAFETY: chroot(2) and chdir(2) only, on memory allocated before fork.
    unsafe {
        cmd.pre_exec(move || {
            if libc::chroot(root.as_ptr()) != 0 || libc::chdir(slash.as_ptr()) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    assert_eq!(outcome(&mut cmd), blocked(mech));
    let events = enforcer.stop();
    assert_eq!(events.len(), 1, "{events:#?}");
}

with_both_mechanisms!(
    pinned_content_runs,
    chroot_into_a_tree_with_the_allowed_name,
    bind_mount_over_the_allowed_file,
    move_mount_over_the_allowed_directory,
    bind_mount_in_an_unprivileged_user_namespace,
    overlay_mount_over_the_allowed_directory,
    pivot_root_into_a_tree_with_the_allowed_name,
    rename_onto_the_allowed_name,
    overwrite_the_allowed_file_in_place,
    edited_script_is_stopped,
    script_behind_an_absolute_symlink_in_a_chroot,
);

/// Detached, nobody would decide held execs: pinned paths are checked by path only
/// (the attacker's file under the allowed name runs, another path is still blocked),
/// and enforce says so when it starts.
fn detached_enforcement_checks_pinned_paths_by_path_only(mech: Mech) {
    let p = Pinned::new();
    let pin_dir = format!("/sys/fs/bpf/{}", unique("fp-test-identity"));
    let out = crate::enforce::enforce_detached(&pin_dir, mech, &p.profiles);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(
        stderr.contains("content digests are NOT checked while detached"),
        "{stderr}"
    );
    std::fs::rename(&p.evil, &p.allowed).unwrap();
    let ran = outcome(&mut p.exec_allowed());
    let other = outcome(&mut p.cg.command(TRUE));
    let stop = fingerprint(&["stop".as_ref(), "--pin-dir".as_ref(), pin_dir.as_ref()]);
    assert!(stop.status.success());
    assert_eq!((ran, other), (Outcome::Ran(1), blocked(mech)));
}

mod kill_host_only {
    use super::*;

    #[test]
    fn detached_enforcement_checks_pinned_paths_by_path_only() {
        if privileged(
            "identity::kill_host_only::detached_enforcement_checks_pinned_paths_by_path_only",
        ) {
            super::detached_enforcement_checks_pinned_paths_by_path_only(Mech::Kill);
        }
    }
}

/// Host only (the VM has no mkfs): a filesystem whose change times are whole seconds
/// (ext4 with 128-byte inodes keeps no nanoseconds). A pinned file is exec'd (hashed
/// and cached) and then rewritten in place with other bytes of the same size, within
/// the same second: the file version (device, inode, change time, size) is unchanged.
/// Kill mode has no write hook to forget the cached digest, so only a cache that waits
/// out the coarse tick stops the rewrite. Attempts that cross a second are retried.
#[test]
fn a_rewrite_within_one_coarse_change_time_tick_is_not_taken_for_the_cached_version() {
    if !privileged("identity::a_rewrite_within_one_coarse_change_time_tick") {
        return;
    }
    let (_keep, tmp) = temp_dir();
    let coarse = CoarseFs::mount(&tmp);
    let cg = TestCgroup::new();
    // Same size: `true` and `false`, each padded to the larger one (an ELF loader
    // ignores trailing bytes).
    let (mut allowed, mut evil) = (std::fs::read(TRUE).unwrap(), std::fs::read(FALSE).unwrap());
    let size = allowed.len().max(evil.len());
    allowed.resize(size, 0);
    evil.resize(size, 0);
    for attempt in 0..5 {
        let tool = coarse.0.join(format!("tool-{attempt}"));
        write_pinned_profile(
            &tmp.join("profiles"),
            &cg.path,
            &[(&tool, &[Sha256::of(&allowed)])],
        );
        let enforcer = Enforcer::start(&tmp, &tmp.join("profiles"), Mech::Kill, &[]);
        wait_for_subsecond(Duration::from_millis(50));
        write_executable(&tool, &allowed);
        let written = std::fs::metadata(&tool).unwrap();
        assert_eq!(written.ctime_nsec(), 0, "a coarse filesystem");
        // Old enough for a cache that trusts a 100 ms age, still in the same second.
        std::thread::sleep(YOUNG_CTIME);
        assert_eq!(outcome(&mut cg.command(&tool)), Outcome::Ran(0));
        write_executable(&tool, &evil);
        let rewritten = std::fs::metadata(&tool).unwrap();
        assert_eq!(
            (rewritten.ino(), rewritten.size()),
            (written.ino(), written.size())
        );
        if rewritten.ctime() != written.ctime() {
            enforcer.stop();
            continue; // crossed a second: the version changed anyway; try again
        }
        assert_eq!(
            outcome(&mut cg.command(&tool)),
            Outcome::Killed,
            "attempt {attempt}"
        );
        assert_content_mismatches(&enforcer.stop(), &tool, &["killed"]);
        return;
    }
    panic!("five attempts crossed a second boundary");
}

/// Sleep until the wall clock's fraction of a second is at least `at` (and has room).
fn wait_for_subsecond(at: Duration) {
    let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap();
    let into = Duration::from_nanos(u64::from(now.subsec_nanos()));
    let wait = if into < at {
        at - into
    } else if into < at + Duration::from_millis(200) {
        Duration::ZERO
    } else {
        Duration::from_secs(1) - into + at
    };
    std::thread::sleep(wait);
}

/// A loop-mounted ext4 with 128-byte inodes (whole-second timestamps), removed on drop.
struct CoarseFs(PathBuf);

impl CoarseFs {
    fn mount(tmp: &Path) -> CoarseFs {
        let image = tmp.join("coarse.img");
        let dir = tmp.join("coarse");
        std::fs::create_dir_all(&dir).unwrap();
        let run = |program: &str, args: &[&OsStr]| {
            let out = Command::new(program).args(args).output().unwrap();
            assert!(
                out.status.success(),
                "{program}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        };
        std::fs::File::create(&image)
            .unwrap()
            .set_len(16 << 20)
            .unwrap();
        let os = |s: &'static str| OsStr::new(s);
        run(
            "mkfs.ext4",
            &[os("-q"), os("-F"), os("-I"), os("128"), image.as_os_str()],
        );
        run(
            "mount",
            &[os("-o"), os("loop"), image.as_os_str(), dir.as_os_str()],
        );
        CoarseFs(dir)
    }
}

impl Drop for CoarseFs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.0).status();
    }
}
