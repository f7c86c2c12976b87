//! Real containers: a private containerd (its own root, state and socket in a temp
//! dir) runs runc containers from a busybox root filesystem built here, in a
//! kubelet-style cgroup layout and with the CRI labels kubelet sets. Nothing is
//! pulled. Learning must record container-view paths under the Kubernetes workload
//! name; enforcement (kill mode on the host) must cover replicas started after it
//! began from their very first exec. With `--kube-api` at the test's API server
//! (`kubeapi.rs`), both name the owner from the API, and fall back to pod names.

use std::ffi::{OsStr, OsString};
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::common::*;
use crate::enforce::{Enforcer, Mech};
use crate::kubeapi::{self, FakeApi};

pub const BUSYBOX: &str = "/bin/busybox";
/// A host program no container profile allows.
pub const TRUE: &str = "/usr/bin/true";
pub const DASH: &str = "/usr/bin/dash";
/// The forbidden program: a copy of busybox (named for its applet) at a path no
/// profile allows; the canonical path of every applet symlink is /bin/busybox.
pub const FORBIDDEN: &str = "/opt/tools/touch";
const APPLETS: [&str; 7] = ["sh", "echo", "sleep", "cat", "touch", "true", "ls"];

/// Whether containerd, ctr and runc are installed (`make deps`); under CI=true their
/// absence fails the test.
fn container_tools(test: &str) -> bool {
    tools_installed(test, &["containerd", "ctr", "runc"])
}

/// Whether this test can run as root and `tools` are installed (`make deps`); under
/// CI=true either missing fails the test.
pub fn tools_installed(test: &str, tools: &[&str]) -> bool {
    if !privileged(test) {
        return false;
    }
    let missing: Vec<&str> = tools
        .iter()
        .copied()
        .filter(|tool| {
            !Command::new("sh")
                .args(["-c", &format!("command -v {tool}")])
                .stdout(Stdio::null())
                .status()
                .is_ok_and(|s| s.success())
        })
        .collect();
    if missing.is_empty() {
        return true;
    }
    if std::env::var("CI").as_deref() == Ok("true") {
        panic!("{test}: {missing:?} not installed and CI=true; run `make deps`");
    }
    eprintln!("SKIP {test}: {missing:?} not installed (make deps)");
    false
}

/// A containerd of our own; stopped, with every task it still runs, on drop.
pub struct Containerd {
    child: Child,
    _dir: tempfile::TempDir,
    pub dir: PathBuf,
    pub socket: PathBuf,
    pub state: PathBuf,
}

impl Containerd {
    pub fn start() -> Containerd {
        let dir = tempfile::Builder::new()
            .prefix("fp-ctrd")
            .tempdir()
            .expect("temp dir");
        let path = dir.path().canonicalize().unwrap();
        let socket = path.join("c.sock");
        let state = path.join("state");
        let config = path.join("config.toml");
        // The CRI plugin would want a pause image and a CNI setup: not needed for
        // `ctr run --rootfs`, so it is disabled.
        std::fs::write(
            &config,
            format!(
                "version = 2\nroot = {:?}\nstate = {:?}\n\
                 disabled_plugins = [\"io.containerd.grpc.v1.cri\"]\n\
                 [grpc]\n  address = {:?}\n[ttrpc]\n  address = {:?}\n",
                path.join("root"),
                state,
                socket,
                path.join("c.sock.ttrpc"),
            ),
        )
        .unwrap();
        let log = std::fs::File::create(path.join("containerd.log")).unwrap();
        let child = Command::new("containerd")
            .arg("--config")
            .arg(&config)
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("spawning containerd");
        let containerd = Containerd {
            child,
            _dir: dir,
            dir: path,
            socket,
            state,
        };
        wait_for_daemon(&containerd.dir.join("containerd.log"), || {
            containerd.ctr(&["version"]).status.success()
        });
        containerd
    }

    fn ctr_command(&self) -> Command {
        let mut cmd = Command::new("ctr");
        cmd.arg("--address").arg(&self.socket);
        cmd
    }

    pub fn ctr(&self, args: &[&str]) -> Output {
        self.ctr_command().args(args).output().expect("running ctr")
    }

    /// `ctr task exec` a process into the running container `id`, as `kubectl exec`
    /// does through CRI: the shim runs `runc exec`.
    pub fn exec(&self, id: &str, exec_id: &str, args: &[&str]) -> Output {
        self.ctr(&[&["task", "exec", "--exec-id", exec_id, id], args].concat())
    }

    /// `ctr run --rm` a container to completion.
    pub fn run(&self, spec: &ContainerSpec, args: &[&str]) -> Output {
        self.spawn(spec, args).wait_with_output().expect("ctr run")
    }

    /// `ctr run --rm` in the background.
    pub fn spawn(&self, spec: &ContainerSpec, args: &[&str]) -> Child {
        let mut cmd = self.ctr_command();
        cmd.args(["run", "--rm", "--cgroup", &spec.cgroup]);
        for (key, value) in &spec.labels {
            cmd.arg("--label").arg(format!("{key}={value}"));
        }
        cmd.arg("--rootfs")
            .arg(&spec.rootfs)
            .arg(&spec.id)
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawning ctr run")
    }
}

impl Drop for Containerd {
    fn drop(&mut self) {
        // Shims outlive containerd by design: remove whatever still runs first.
        let tasks = self.ctr(&["tasks", "ls", "-q"]);
        for id in String::from_utf8_lossy(&tasks.stdout).split_whitespace() {
            let _ = self.ctr(&["tasks", "kill", "-s", "SIGKILL", id]);
            let _ = self.ctr(&["tasks", "rm", "-f", id]);
        }
        let containers = self.ctr(&["containers", "ls", "-q"]);
        for id in String::from_utf8_lossy(&containers.stdout).split_whitespace() {
            let _ = self.ctr(&["containers", "rm", id]);
        }
        let pid = nix::unistd::Pid::from_raw(self.child.id() as i32);
        let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
        let _ = self.child.wait();
    }
}

/// Wait until a daemon we started answers (`up`), at most 60 s; else fail with its log.
pub fn wait_for_daemon(log: &Path, up: impl Fn() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while !up() {
        assert!(
            Instant::now() < deadline,
            "{} did not come up: {}",
            log.display(),
            std::fs::read_to_string(log).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// A container to run: its id, cgroup (relative to the cgroup root), labels, root.
pub struct ContainerSpec {
    pub id: String,
    pub cgroup: String,
    pub labels: Vec<(String, String)>,
    pub rootfs: PathBuf,
}

/// A pod of a Deployment `owner`: kubelet's labels and cgroupfs-driver layout below
/// `kubepods`.
fn replica(
    kubepods: &str,
    owner: &str,
    index: usize,
    container: &str,
    tmp: &Path,
) -> ContainerSpec {
    // Ids as kubelet's runtime makes them: 64 hex digits; pod uids are UUIDs. runc
    // keeps its own state under /run/containerd/runc whatever containerd's state
    // directory is, so ids must be unique across tests and runs, not per containerd.
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    let id = format!(
        "{:08x}{:016x}{:040x}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::SeqCst),
        nanos
    );
    let uid = format!("{:08x}-0000-4000-8000-{:012x}", std::process::id(), index);
    // Pod names as a ReplicaSet makes them: <deployment>-<pod-template-hash>-<5 safe>.
    const SAFE: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
    let suffix: String = (0..5)
        .map(|i| SAFE[(index / SAFE.len().pow(i)) % SAFE.len()] as char)
        .collect();
    let pod = format!("{owner}-6b474476c4-{suffix}");
    let labels = [
        ("io.kubernetes.pod.namespace", "default".to_string()),
        ("io.kubernetes.pod.name", pod),
        ("io.kubernetes.pod.uid", uid.clone()),
        ("io.kubernetes.container.name", container.to_string()),
    ];
    ContainerSpec {
        cgroup: format!("{kubepods}/besteffort/pod{uid}/{id}"),
        labels: labels
            .into_iter()
            .map(|(k, v)| (k.to_string(), v))
            .collect(),
        rootfs: rootfs(&tmp.join(format!("rootfs-{index}"))),
        id,
    }
}

/// A root filesystem: /bin/busybox with applet symlinks, and the forbidden copy.
pub fn rootfs(dir: &Path) -> PathBuf {
    for sub in ["bin", "proc", "dev", "sys", "tmp", "opt/tools"] {
        std::fs::create_dir_all(dir.join(sub)).unwrap();
    }
    install_binary(BUSYBOX, &dir.join("bin/busybox"));
    for applet in APPLETS {
        std::os::unix::fs::symlink("busybox", dir.join("bin").join(applet)).unwrap();
    }
    install_binary(BUSYBOX, &dir.join(FORBIDDEN.trim_start_matches('/')));
    dir.to_path_buf()
}

/// A cgroup tree for one test; runc leaves the pod and QoS levels behind, and on a
/// hybrid host it also creates the tree in each v1 hierarchy: all removed on drop.
pub struct CgroupTree {
    pub root: TestCgroup,
}

impl CgroupTree {
    pub fn new() -> CgroupTree {
        CgroupTree {
            root: TestCgroup::at(&format!("/{}", unique("fingerprint-ctr"))),
        }
    }
}

impl Drop for CgroupTree {
    fn drop(&mut self) {
        let mut roots = vec![self.root.dir.clone()];
        if let Ok(v1) = std::fs::read_dir("/sys/fs/cgroup") {
            for hierarchy in v1.flatten() {
                roots.push(
                    hierarchy
                        .path()
                        .join(self.root.path.trim_start_matches('/')),
                );
            }
        }
        for root in roots {
            remove_bottom_up(&root);
        }
    }
}

fn remove_bottom_up(dir: &Path) {
    if let Ok(children) = std::fs::read_dir(dir) {
        for child in children.flatten() {
            if child.file_type().is_ok_and(|t| t.is_dir()) {
                remove_bottom_up(&child.path());
            }
        }
    }
    let _ = std::fs::remove_dir(dir);
}

fn learner_args(containerd: &Containerd) -> Vec<&OsStr> {
    vec![
        OsStr::new("--containerd-state"),
        containerd.state.as_os_str(),
    ]
}

/// Workload names recorded in the database for this cgroup path.
pub fn workloads_of(db: &Path, cgroup: &str) -> Vec<String> {
    let conn = rusqlite::Connection::open(db).unwrap();
    let mut stmt = conn
        .prepare(
            "SELECT DISTINCT w.name FROM workloads w JOIN cgroups c ON c.workload_id = w.id \
             WHERE c.path = ?1",
        )
        .unwrap();
    stmt.query_map([cgroup], |r| r.get(0))
        .unwrap()
        .map(|r| r.unwrap())
        .collect()
}

pub fn ok(output: &Output, what: &str) {
    assert!(
        output.status.success(),
        "{what}: {}\nstdout: {}\nstderr: {}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

const WORKLOAD: &str = "default/Deployment/web/server";
/// What a replica of the Deployment does: all busybox applets.
const REPLAY: [&str; 3] = [
    "/bin/sh",
    "-c",
    "echo hello; cat /proc/self/cgroup; ls / ; true",
];

/// Learn one replica of `web` and export its profile in enforce mode.
fn learn_web(containerd: &Containerd, tree: &CgroupTree, tmp: &Path) -> (PathBuf, ContainerSpec) {
    let db = tmp.join("learn.db");
    let kubepods = format!("{}/kubepods", tree.root.path);
    // The scope enforcement watches must exist before any pod, as kubelet's does.
    std::fs::create_dir_all(tree.root.dir.join("kubepods")).unwrap();
    let learner = Learner::start_with(&db, &[&tree.root], &learner_args(containerd));
    let spec = replica(&kubepods, "web", 0, "server", tmp);
    let output = containerd.run(&spec, &REPLAY);
    // Stopped before any assertion, so a failure leaves no learner running.
    learner.stop_ok();
    ok(&output, "learning replica");
    export_profiles(&db, &tmp.join("profiles"), &["--mode", "enforce"]);
    (db, spec)
}

/// Enforce the profiles in `tmp`/profiles (kill mode on the host), naming containers
/// from the containerd state directory `state` and holding new ones below `kubepods`.
fn enforce_containers(state: &Path, tmp: &Path, kubepods: &str) -> Enforcer {
    Enforcer::start(
        tmp,
        &tmp.join("profiles"),
        Mech::Kill,
        &[
            "--containerd-state",
            state.to_str().unwrap(),
            "--container-scope",
            kubepods,
        ],
    )
}

#[test]
fn container_is_learned_with_container_paths_and_kubernetes_identity() {
    if !container_tools("container_is_learned_with_container_paths_and_kubernetes_identity") {
        return;
    }
    let (_keep, tmp) = temp_dir();
    let containerd = Containerd::start();
    let tree = CgroupTree::new();
    let (db, spec) = learn_web(&containerd, &tree, &tmp);
    assert_eq!(workloads_of(&db, &spec.cgroup), vec![WORKLOAD.to_string()]);
    let paths: Vec<String> = executables(&db, &spec.cgroup)
        .iter()
        .map(|row| String::from_utf8_lossy(&row.path).into_owned())
        .collect();
    // The container's own view: /bin/busybox, never the host's rootfs directory.
    assert!(paths.contains(&BUSYBOX.to_string()), "{paths:?}");
    let host_root = tmp.to_string_lossy().into_owned();
    assert!(
        paths.iter().all(|p| !p.starts_with(&host_root)),
        "host paths leaked into the container's profile: {paths:?}"
    );
    // One profile named for the Deployment, matching by Kubernetes workload.
    let profile: Value = std::fs::read_dir(tmp.join("profiles"))
        .unwrap()
        .flatten()
        .map(|e| serde_json::from_slice(&std::fs::read(e.path()).unwrap()).unwrap())
        .find(|p: &Value| p["workload"]["name"] == WORKLOAD)
        .expect("a profile for the Deployment");
    assert_eq!(profile["workload"]["match"]["kind"], "kubernetes_workload");
    assert_eq!(profile["workload"]["match"]["owner_source"], "pod-name");
}

#[test]
fn replicas_started_after_enforcement_are_covered_from_their_first_exec() {
    if !container_tools("replicas_started_after_enforcement_are_covered_from_their_first_exec") {
        return;
    }
    let (_keep, tmp) = temp_dir();
    let containerd = Containerd::start();
    let tree = CgroupTree::new();
    let (_db, learned) = learn_web(&containerd, &tree, &tmp);
    let kubepods = format!("{}/kubepods", tree.root.path);
    let enforcer = enforce_containers(&containerd.state, &tmp, &kubepods);

    // A second replica replays what the first did: nothing is denied.
    let replay = replica(&kubepods, "web", 1, "server", &tmp);
    ok(&containerd.run(&replay, &REPLAY), "replayed replica");

    // Ten replicas at once whose FIRST exec is forbidden: every one is killed before
    // it could touch its marker.
    let late: Vec<ContainerSpec> = (0..10)
        .map(|i| replica(&kubepods, "web", 10 + i, "server", &tmp))
        .collect();
    let children: Vec<Child> = late
        .iter()
        .map(|spec| containerd.spawn(spec, &[FORBIDDEN, "/tmp/marker"]))
        .collect();
    for (spec, child) in late.iter().zip(children) {
        let output = child.wait_with_output().unwrap();
        assert!(
            !output.status.success(),
            "replica {} ran its forbidden entrypoint",
            spec.id
        );
        assert!(
            !spec.rootfs.join("tmp/marker").exists(),
            "replica {}: the forbidden first exec ran",
            spec.id
        );
    }

    // First exec allowed (held, then continued); a later forbidden one is killed by
    // the kernel, as the cgroup is bound by then.
    let later = replica(&kubepods, "web", 30, "server", &tmp);
    let output = containerd.run(
        &later,
        &[
            "/bin/sh",
            "-c",
            &format!("{FORBIDDEN} /tmp/marker; echo after"),
        ],
    );
    ok(&output, "replica with a later forbidden exec");
    assert!(String::from_utf8_lossy(&output.stdout).contains("after"));
    assert!(!later.rootfs.join("tmp/marker").exists());

    // A container of another workload in the same scope is left alone.
    let other = replica(&kubepods, "other", 40, "sidecar", &tmp);
    ok(
        &containerd.run(&other, &[FORBIDDEN, "/tmp/marker"]),
        "unprofiled container",
    );
    assert!(other.rootfs.join("tmp/marker").exists());

    let events = enforcer.stop();
    let killed: Vec<&Value> = events.iter().filter(|e| e["action"] == "killed").collect();
    assert_eq!(killed.len(), 11, "{events:#?}");
    for event in &killed {
        assert_eq!(event["workload"], WORKLOAD);
        assert_eq!(event["executable"], FORBIDDEN, "{events:#?}");
        assert_eq!(event["reason"], "not_in_profile");
    }
    assert!(
        events.iter().all(|e| e["action"] != "audited"),
        "no other violations: {events:#?}"
    );
    drop(learned);
}

/// The value of one of a container's labels.
fn label<'a>(spec: &'a ContainerSpec, key: &str) -> &'a str {
    let (_, value) = spec.labels.iter().find(|(k, _)| k == key).unwrap();
    value
}

#[test]
fn owners_from_the_kubernetes_api_name_learned_and_enforced_workloads() {
    if !container_tools("owners_from_the_kubernetes_api_name_learned_and_enforced_workloads") {
        return;
    }
    let (_keep, tmp) = temp_dir();
    let containerd = Containerd::start();
    let tree = CgroupTree::new();
    let kubepods = format!("{}/kubepods", tree.root.path);
    let replicas = [0, 1].map(|i| replica(&kubepods, "web", 50 + i, "server", &tmp));
    // The Deployment's name is not in the pod names: only the API can tell it.
    let api = FakeApi::start();
    let rs = "web-6b474476c4";
    api.add(kubeapi::replicaset(
        rs,
        Some(("apps/v1", "Deployment", "storefront")),
    ));
    let add_pod = |spec: &ContainerSpec| {
        api.add(kubeapi::pod(
            label(spec, "io.kubernetes.pod.name"),
            label(spec, "io.kubernetes.pod.uid"),
            Some(("apps/v1", "ReplicaSet", rs)),
        ))
    };
    replicas.iter().for_each(add_pod);
    let api_args = api.args();
    let mut args = learner_args(&containerd);
    args.extend(api_args.iter().map(OsString::as_os_str));
    let learn = |db: &Path, specs: &[ContainerSpec]| -> String {
        let learner = Learner::start_with(db, &[&tree.root], &args);
        let outputs: Vec<Output> = specs
            .iter()
            .map(|spec| containerd.run(spec, &REPLAY))
            .collect();
        let (status, stderr) = learner.stop();
        assert!(status.success(), "learn exited {status}: {stderr}");
        for output in &outputs {
            ok(output, "replica");
        }
        stderr
    };
    let db = tmp.join("learn.db");
    let stderr = learn(&db, &replicas);
    let conn = rusqlite::Connection::open(&db).unwrap();
    for spec in &replicas {
        let names = workloads_of(&db, &spec.cgroup);
        assert_eq!(names, ["default/Deployment/storefront/server"]);
        let identity: String = conn
            .query_row(
                "SELECT identity FROM workloads WHERE name = ?1",
                [&names[0]],
                |r| r.get(0),
            )
            .unwrap();
        let identity: Value = serde_json::from_str(&identity).unwrap();
        assert_eq!(identity["owner_source"], "kubernetes-api", "{identity}");
    }
    // Each pod once, the ReplicaSet once, however many execs and containers.
    let pod_path = |spec: &ContainerSpec| {
        format!(
            "/api/v1/namespaces/default/pods/{}",
            label(spec, "io.kubernetes.pod.name")
        )
    };
    assert_eq!(
        api.requests(),
        [
            pod_path(&replicas[0]),
            format!("/apis/apps/v1/namespaces/default/replicasets/{rs}"),
            pod_path(&replicas[1]),
        ]
    );
    assert!(!stderr.contains("Kubernetes API failed"), "{stderr}");

    // Enforcement names containers the same way: a replica that starts after it
    // began, with a forbidden first exec, is killed under the Deployment's profile
    // (from its pod name it would be default/Deployment/web/server: unprofiled).
    let profiles = tmp.join("profiles");
    export_profiles(&db, &profiles, &["--mode", "enforce"]);
    let late = replica(&kubepods, "web", 54, "server", &tmp);
    add_pod(&late);
    let state = containerd.state.to_str().unwrap();
    let mut enforce_args = vec!["--containerd-state", state, "--container-scope", &kubepods];
    enforce_args.extend(api_args.iter().map(|a| a.to_str().unwrap()));
    let enforcer = Enforcer::start(&tmp, &profiles, Mech::Kill, &enforce_args);
    let output = containerd.run(&late, &[FORBIDDEN, "/tmp/marker"]);
    let events = enforcer.stop();
    assert!(!output.status.success(), "the forbidden entrypoint ran");
    assert!(!late.rootfs.join("tmp/marker").exists());
    let killed: Vec<&Value> = events.iter().filter(|e| e["action"] == "killed").collect();
    assert_eq!(killed.len(), 1, "{events:#?}");
    assert_eq!(
        killed[0]["workload"],
        "default/Deployment/storefront/server"
    );

    // The API now forbids: two more replicas are named from their pod names, and the
    // failure is said once, not once per container.
    api.fail_with(403);
    let later = [2, 3].map(|i| replica(&kubepods, "web", 50 + i, "server", &tmp));
    let db = tmp.join("learn-forbidden.db");
    let stderr = learn(&db, &later);
    for spec in &later {
        assert_eq!(workloads_of(&db, &spec.cgroup), [WORKLOAD]);
    }
    let warnings: Vec<&str> = stderr
        .lines()
        .filter(|l| l.contains("Kubernetes API failed"))
        .collect();
    assert_eq!(warnings.len(), 1, "{stderr}");
    assert!(warnings[0].contains("HTTP 403"), "{stderr}");
    assert!(warnings[0].contains("rbac.yaml"), "{stderr}");
}

/// `kubectl exec` into a container already bound to its profile. What runc 1.1 does
/// (seen by learning every cgroup during `ctr task exec`): the shim, in its own
/// cgroup, execs `runc exec`; that execs `runc init` (/proc/self/exe), which re-execs
/// itself from a sealed memfd (`memfd:runc_cloned:/proc/self/exe`, CVE-2019-5736);
/// all three are in the shim's cgroup. Only once `runc init` has joined the
/// container's namespaces does the `runc exec` parent write its pid into the
/// container's cgroup, and the one exec that follows there is the command itself.
/// So the command is checked against the profile like any exec of the container,
/// and runc's own steps are neither held nor reported. A runc that created the exec
/// process inside the cgroup (clone3 CLONE_INTO_CGROUP) would make its own execs
/// appear here: this test would then fail on the extra events.
#[test]
fn exec_into_an_enforced_container_is_checked_against_its_profile() {
    if !container_tools("exec_into_an_enforced_container_is_checked_against_its_profile") {
        return;
    }
    let (_keep, tmp) = temp_dir();
    let containerd = Containerd::start();
    let tree = CgroupTree::new();
    let _learned = learn_web(&containerd, &tree, &tmp);
    let kubepods = format!("{}/kubepods", tree.root.path);
    let enforcer = enforce_containers(&containerd.state, &tmp, &kubepods);
    // A long-running replica; its marker says its first exec was held, named and
    // continued, so its cgroup is bound to the profile before any `exec`.
    let spec = replica(&kubepods, "web", 1, "server", &tmp);
    let mut running = containerd.spawn(
        &spec,
        &["/bin/sh", "-c", "touch /tmp/ready; exec sleep 600"],
    );
    let deadline = Instant::now() + Duration::from_secs(30);
    while !spec.rootfs.join("tmp/ready").exists() {
        assert!(
            Instant::now() < deadline && running.try_wait().unwrap().is_none(),
            "the replica never started"
        );
        std::thread::sleep(Duration::from_millis(50));
    }

    // (a) A command the profile allows runs, and nothing is reported.
    let allowed = containerd.exec(&spec.id, "allowed", &["/bin/echo", "exec ok"]);
    ok(&allowed, "exec of an allowed command");
    assert_eq!(String::from_utf8_lossy(&allowed.stdout).trim(), "exec ok");
    // (b) One the profile does not allow is killed before it runs.
    let forbidden = containerd.exec(&spec.id, "forbidden", &[FORBIDDEN, "/tmp/marker"]);
    assert!(
        !forbidden.status.success(),
        "the forbidden exec succeeded: {forbidden:?}"
    );
    assert!(!spec.rootfs.join("tmp/marker").exists());

    ok(
        &containerd.ctr(&["tasks", "kill", "-s", "SIGKILL", &spec.id]),
        "stopping the replica",
    );
    running.wait().unwrap();
    let events = enforcer.stop();
    // Exactly one violation, the forbidden command, under the container's own view.
    assert_eq!(events.len(), 1, "{events:#?}");
    let event = &events[0];
    assert_eq!(event["action"], "killed", "{event:#}");
    assert_eq!(event["executable"], FORBIDDEN, "{event:#}");
    assert_eq!(event["workload"], WORKLOAD, "{event:#}");
    assert_eq!(event["cgroup"], spec.cgroup.as_str(), "{event:#}");
    assert_eq!(event["reason"], "not_in_profile", "{event:#}");
    // The Kubernetes facts, each a field of its own (docs/events.md).
    let k8s = &event["kubernetes"];
    assert_eq!(k8s["namespace"], "default", "{event:#}");
    assert_eq!(
        k8s["pod"],
        label(&spec, "io.kubernetes.pod.name"),
        "{event:#}"
    );
    assert_eq!(
        k8s["pod_uid"],
        label(&spec, "io.kubernetes.pod.uid"),
        "{event:#}"
    );
    assert_eq!(k8s["container"], "server", "{event:#}");
    assert_eq!(k8s["container_id"], spec.id.as_str(), "{event:#}");
    assert_eq!(
        k8s["owner"],
        serde_json::json!({"kind": "Deployment", "name": "web", "source": "pod-name"}),
        "{event:#}"
    );
}

/// A container as containerd and runc leave it before its entrypoint runs, in a
/// tree where enforcement (with `extra` flags) began first: the bundle's spec, the
/// web profile, and the cgroup (pending: created after enforcement began).
struct ContainerBeingSetUp {
    _keep: tempfile::TempDir,
    tree: CgroupTree,
    tmp: PathBuf,
    kubepods: String,
    state: PathBuf,
    cgroup: Option<TestCgroup>,
}

impl ContainerBeingSetUp {
    fn new() -> ContainerBeingSetUp {
        let (keep, tmp) = temp_dir();
        let tree = CgroupTree::new();
        let kubepods = format!("{}/kubepods", tree.root.path);
        std::fs::create_dir_all(tree.root.dir.join("kubepods")).unwrap();
        let profiles = tmp.join("profiles");
        std::fs::create_dir_all(&profiles).unwrap();
        let profile = serde_json::json!({
            "schema": 1,
            "workload": {"name": WORKLOAD, "match": {"kind": "kubernetes_workload",
                "namespace": "default", "owner_kind": "Deployment", "owner_name": "web",
                "container": "server"}},
            "mode": "enforce",
            "executables": [BUSYBOX, Self::script(&tmp)],
        });
        std::fs::write(profiles.join("web.json"), profile.to_string()).unwrap();
        // An entrypoint the profile allows, run by an interpreter it does not.
        let script = Self::script(&tmp);
        std::fs::create_dir_all(script.parent().unwrap()).unwrap();
        let body = format!("#!{DASH}\n: > {}\n", tmp.join("ran").display());
        write_executable(&script, body.as_bytes());
        let state = tmp.join("state");
        ContainerBeingSetUp {
            _keep: keep,
            tree,
            tmp,
            kubepods,
            state,
            cgroup: None,
        }
    }

    fn script(tmp: &Path) -> PathBuf {
        tmp.join("bin/entrypoint.sh")
    }

    fn enforce(&self, mech: Mech, extra: &[&str]) -> Enforcer {
        let mut args = vec![
            "--containerd-state",
            self.state.to_str().unwrap(),
            "--container-scope",
            &self.kubepods,
        ];
        args.extend(extra);
        Enforcer::start(&self.tmp, &self.tmp.join("profiles"), mech, &args)
    }

    /// Create the container's bundle and cgroup (after enforcement began).
    fn create_container(&mut self) {
        let spec = replica(&self.kubepods, "web", 2, "server", &self.tmp);
        let bundle = self
            .state
            .join("io.containerd.runtime.v2.task/default")
            .join(&spec.id);
        std::fs::create_dir_all(&bundle).unwrap();
        let annotations: serde_json::Map<String, Value> = spec
            .labels
            .iter()
            .map(|(k, v)| (k.clone(), Value::from(v.as_str())))
            .collect();
        let config = serde_json::json!({
            "annotations": annotations,
            "linux": {"cgroupsPath": spec.cgroup},
        });
        std::fs::write(bundle.join("config.json"), config.to_string()).unwrap();
        let below_tree = spec.cgroup.strip_prefix(&self.tree.root.path).unwrap();
        let pod = Path::new(below_tree.trim_start_matches('/'))
            .parent()
            .unwrap();
        std::fs::create_dir_all(self.tree.root.dir.join(pod)).unwrap();
        self.cgroup = Some(TestCgroup::at(&spec.cgroup));
    }

    /// The runtime's set-up exec (same mount namespace as its parent) runs; the
    /// entrypoint's (`unshare --mount`: a namespace of its own, as runc init's) is
    /// held, named, and killed, as its executable is not in the profile: one event.
    fn set_up_then_start(&self, enforcer: Enforcer) {
        let cgroup = self.cgroup.as_ref().expect("create_container first");
        let status = |cmd: &mut Command| cmd.stdout(Stdio::null()).status().unwrap();
        let setup = status(&mut cgroup.command(TRUE));
        assert!(setup.success(), "the runtime's exec was stopped: {setup}");
        let entrypoint = status(cgroup.command("unshare").args(["--mount", TRUE]));
        assert_eq!(entrypoint.signal(), Some(libc::SIGKILL), "{entrypoint}");
        let events = enforcer.stop();
        assert_eq!(events.len(), 1, "{events:#?}");
        assert_eq!(events[0]["workload"], WORKLOAD, "{events:#?}");
        assert_eq!(events[0]["action"], "killed", "{events:#?}");
        assert_eq!(events[0]["executable"], TRUE, "{events:#?}");
    }
}

/// A reload while a container is being set up: its cgroup exists below the scope and
/// the runtime's metadata names it, but its entrypoint has not run. The reload must
/// leave the cgroup pending, not bind it, or runc's own set-up exec there (`runc
/// init` re-executing itself from a memfd, which with runc 1.1 can come after runc
/// put it in the cgroup) would be judged as the container's and killed. Simulated
/// without runc, so that the order is certain.
pub fn a_reload_leaves_containers_being_set_up_pending(mech: Mech) {
    let mut setup = ContainerBeingSetUp::new();
    let enforcer = setup.enforce(mech, &[]);
    setup.create_container();
    enforcer.signal(nix::sys::signal::Signal::SIGHUP);
    enforcer.wait_for_line("fingerprint: reloaded");
    setup.set_up_then_start(enforcer);
}

/// The same across a takeover of pinned enforcement (an enforcer pod restarted while
/// runc set a container up): the new enforcer keeps the old one's pending cgroups
/// pending instead of naming them at its start.
pub fn a_takeover_leaves_containers_being_set_up_pending(mech: Mech) {
    let mut setup = ContainerBeingSetUp::new();
    let pin_dir = format!("/sys/fs/bpf/{}", unique("fp-test-ctr-takeover"));
    let pin = ["--pin", "--pin-dir", pin_dir.as_str()];
    setup.enforce(mech, &pin).kill9();
    // Both programs run on each exec below; one acts: one event.
    let old_program = hold_pinned_exec_program(&pin_dir);
    setup.create_container();
    let enforcer = setup.enforce(mech, &pin);
    setup.set_up_then_start(enforcer);
    drop(old_program);
    let out = fingerprint(&["stop".as_ref(), "--pin-dir".as_ref(), pin_dir.as_ref()]);
    assert!(out.status.success());
}

/// A new container whose first exec is a script its profile allows, run by an
/// interpreter it does not. With the LSM both levels of that one exec are held (two
/// events); the task is released only once both are decided, so the interpreter
/// never runs: killed, one violation, for the interpreter.
pub fn a_held_script_is_decided_with_its_interpreter(mech: Mech) {
    let mut setup = ContainerBeingSetUp::new();
    let enforcer = setup.enforce(mech, &[]);
    setup.create_container();
    let cgroup = setup.cgroup.as_ref().unwrap();
    let script = ContainerBeingSetUp::script(&setup.tmp);
    let status = cgroup
        .command("unshare")
        .arg("--mount")
        .arg(&script)
        .status()
        .unwrap();
    assert_eq!(status.signal(), Some(libc::SIGKILL), "{status}");
    assert!(!setup.tmp.join("ran").exists(), "the interpreter ran");
    let events = enforcer.stop();
    assert_eq!(events.len(), 1, "{events:#?}");
    assert_eq!(events[0]["workload"], WORKLOAD, "{events:#?}");
    assert_eq!(events[0]["action"], "killed", "{events:#?}");
    assert_eq!(events[0]["executable"], DASH, "{events:#?}");
}

/// Whether process `pid` is stopped (state T in /proc/PID/stat).
fn is_stopped(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|stat| {
            let state = stat.rsplit_once(')')?.1.trim_start().chars().next()?;
            Some(state == 'T')
        })
        .unwrap_or(false)
}

/// Two identical held execs (one file, one pending cgroup, both held before the
/// enforcer could decide either) are never coalesced: each is its own event, decided
/// and released. Folded, the second would send nothing and stay stopped for good.
pub fn identical_held_execs_are_not_coalesced(mech: Mech) {
    let mut setup = ContainerBeingSetUp::new();
    let enforcer = setup.enforce(mech, &["--coalesce-window", "1h"]);
    setup.create_container();
    let cgroup = setup.cgroup.as_ref().unwrap();
    enforcer.signal(nix::sys::signal::Signal::SIGSTOP);
    let mut children: Vec<Child> = (0..2)
        .map(|_| cgroup.command(TRUE).stdout(Stdio::null()).spawn().unwrap())
        .collect();
    let deadline = Instant::now() + Duration::from_secs(60);
    while !children.iter().all(|c| is_stopped(c.id())) {
        assert!(Instant::now() < deadline, "the execs were not held");
        std::thread::sleep(Duration::from_millis(20));
    }
    enforcer.signal(nix::sys::signal::Signal::SIGCONT);
    for child in &mut children {
        let status = loop {
            if let Some(status) = child.try_wait().unwrap() {
                break status;
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                panic!("a held exec was never released (pid {})", child.id());
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        // Same mount namespace as its parent: the runtime's set-up exec, let run.
        assert!(status.success(), "{status}");
    }
    assert!(enforcer.stop().is_empty());
}

// Held first execs with both mechanisms: these need no container runtime (the
// container is simulated), so they also run in the qemu VM with the BPF LSM.
with_both_mechanisms!(
    a_reload_leaves_containers_being_set_up_pending,
    a_takeover_leaves_containers_being_set_up_pending,
    a_held_script_is_decided_with_its_interpreter,
    identical_held_execs_are_not_coalesced,
);
