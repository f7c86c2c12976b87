//! Real Docker and Podman containers: a private dockerd (its own data root, exec root,
//! pid file and socket in a temp dir; `--iptables=false --bridge=none`) and Podman
//! with its own store, both putting containers below a cgroup of the test's
//! (cgroupfs driver), run containers with `--network none` from an image imported
//! from a local busybox tree. Nothing is pulled. Containers must be learned and
//! enforced (kill mode on the host) under the names their engine's metadata gives,
//! keep their profile when recreated under the same name, and be covered from their
//! first exec when started after enforcement began. The CRI-O reader is exercised by
//! Podman containers carrying kubelet's annotations (same store layout).
//!
//! The systemd driver's layouts (`docker-<id>.scope`, `libpod-<id>.scope`,
//! `crio-<id>.scope`) need a running systemd, which these machines lack: the last test
//! simulates those containers (metadata as the engines write it, cgroups as systemd
//! names them; CRI-O's cgroupfs `crio-<id>` too) and runs with both mechanisms, in
//! qemu with the BPF LSM too.

use std::ffi::OsString;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::common::*;
use crate::containers::{
    ok, rootfs, tools_installed, wait_for_daemon, workloads_of, CgroupTree, BUSYBOX, FORBIDDEN,
    TRUE,
};
use crate::enforce::{Enforcer, Mech};

/// Busybox applets a learned container runs, by their canonical path /bin/busybox.
const REPLAY: &str = "echo hello; cat /proc/self/cgroup > /dev/null; ls / > /dev/null; true";

/// Kubelet's annotations for a container `server` of a pod of Deployment `web`.
fn pod_annotations(pod_suffix: &str) -> Vec<(String, String)> {
    [
        ("io.kubernetes.pod.namespace", "default".to_string()),
        (
            "io.kubernetes.pod.name",
            format!("web-6b474476c4-{pod_suffix}"),
        ),
        (
            "io.kubernetes.pod.uid",
            format!(
                "{:08x}-0000-4000-8000-0000000{pod_suffix}",
                std::process::id()
            ),
        ),
        ("io.kubernetes.container.name", "server".to_string()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect()
}

const POD_WORKLOAD: &str = "default/Deployment/web/server";

/// A container engine of the test's own, its CLI bound to it.
struct Engine {
    program: &'static str,
    /// Global CLI flags that select the test's daemon or store.
    global: Vec<OsString>,
    /// Flags of `run`, before the image.
    run_flags: Vec<String>,
    /// What `fingerprint learn` and `enforce` need to read this engine's metadata.
    fingerprint_args: Vec<String>,
    /// The container's cgroup below the tree: `<prefix><id>`.
    cgroup_prefix: &'static str,
    cgroup_parent: String,
    image: String,
    daemon: Option<std::process::Child>,
    dir: PathBuf,
    _keep: tempfile::TempDir,
}

impl Engine {
    /// A dockerd of our own whose containers go below `tree`.
    fn dockerd(tree: &CgroupTree) -> Engine {
        let (keep, dir) = temp_dir();
        let socket = dir.join("docker.sock");
        let root = dir.join("root");
        let log = std::fs::File::create(dir.join("dockerd.log")).unwrap();
        let daemon = Command::new("dockerd")
            .args(["--iptables=false", "--bridge=none", "--log-level=warn"])
            .arg("--data-root")
            .arg(&root)
            .arg("--exec-root")
            .arg(dir.join("exec"))
            .arg("--pidfile")
            .arg(dir.join("dockerd.pid"))
            .arg("--host")
            .arg(format!("unix://{}", socket.display()))
            .arg("--cgroup-parent")
            .arg(&tree.root.path)
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("spawning dockerd");
        let engine = Engine {
            program: "docker",
            global: vec![
                "--host".into(),
                format!("unix://{}", socket.display()).into(),
            ],
            run_flags: Vec::new(),
            fingerprint_args: vec!["--docker-root".into(), root.display().to_string()],
            cgroup_prefix: "",
            cgroup_parent: tree.root.path.clone(),
            image: format!("{}:1", unique("fp-docker")),
            daemon: Some(daemon),
            dir,
            _keep: keep,
        };
        wait_for_daemon(&engine.dir.join("dockerd.log"), || {
            engine.cli(&["version"]).status.success()
        });
        engine.import();
        engine
    }

    /// Podman with a store of our own whose containers go below `tree`.
    fn podman(tree: &CgroupTree) -> Engine {
        let (keep, dir) = temp_dir();
        let (root, runroot) = (dir.join("root"), dir.join("run"));
        let global: Vec<OsString> = vec![
            "--root".into(),
            root.clone().into(),
            "--runroot".into(),
            runroot.clone().into(),
            "--tmpdir".into(),
            dir.join("tmp").into(),
            "--cgroup-manager".into(),
            "cgroupfs".into(),
            "--events-backend".into(),
            "file".into(),
        ];
        let engine = Engine {
            program: "podman",
            global,
            run_flags: vec!["--cgroup-parent".into(), tree.root.path.clone()],
            fingerprint_args: vec![
                "--containers-storage".into(),
                root.display().to_string(),
                "--containers-storage".into(),
                runroot.display().to_string(),
            ],
            cgroup_prefix: "libpod-",
            cgroup_parent: tree.root.path.clone(),
            image: format!("localhost/{}:1", unique("fp-podman")),
            daemon: None,
            dir,
            _keep: keep,
        };
        engine.import();
        engine
    }

    fn command(&self) -> Command {
        let mut cmd = Command::new(self.program);
        cmd.args(&self.global);
        cmd
    }

    fn cli(&self, args: &[&str]) -> Output {
        self.command()
            .args(args)
            .output()
            .expect("running the engine's CLI")
    }

    /// The image: a busybox tree (with the forbidden program) imported from a tarball.
    fn import(&self) {
        let tree = rootfs(&self.dir.join("rootfs"));
        let mut tar = Command::new("tar")
            .arg("-C")
            .arg(&tree)
            .args(["-c", "."])
            .stdout(Stdio::piped())
            .spawn()
            .expect("spawning tar");
        let output = self
            .command()
            .args(["import", "-", &self.image])
            .stdin(tar.stdout.take().unwrap())
            .output()
            .expect("importing the image");
        assert!(tar.wait().unwrap().success());
        ok(&output, "importing the image");
    }

    /// `run` arguments for container `name` with these annotations (Podman) and command.
    fn run_command(&self, detach: bool, name: &str, annotations: &[(String, String)]) -> Command {
        let mut cmd = self.command();
        cmd.args(["run", "--name", name, "--network", "none"])
            // runc cannot raise the limits above this machine's hard limits.
            .args([
                "--ulimit",
                "nofile=1024:1024",
                "--ulimit",
                "nproc=1024:1024",
            ])
            .args(&self.run_flags);
        if detach {
            cmd.arg("--detach");
        }
        for (key, value) in annotations {
            cmd.arg("--annotation").arg(format!("{key}={value}"));
        }
        cmd.arg(&self.image);
        cmd
    }

    /// Run container `name` to completion with `argv` as its first exec.
    fn run(&self, name: &str, annotations: &[(String, String)], argv: &[&str]) -> Output {
        self.run_command(false, name, annotations)
            .args(argv)
            .output()
            .expect("running a container")
    }

    /// Start container `name` running `script` in its shell, and return once the
    /// script is done; the container then sleeps (its cgroup stays) until removed.
    fn start(&self, name: &str, annotations: &[(String, String)], script: &str) -> Started {
        // `:` is the shell's own: the marker costs no exec.
        let body = format!("{script}; : > /tmp/done; exec sleep 600");
        let output = self
            .run_command(true, name, annotations)
            .args(["/bin/sh", "-c", &body])
            .output()
            .expect("starting a container");
        ok(&output, &format!("starting container {name}"));
        let inspect = |format: &str| {
            let out = self.cli(&["inspect", "--format", format, name]);
            ok(&out, "inspecting a container");
            String::from_utf8_lossy(&out.stdout).trim().to_string()
        };
        let (id, pid) = (inspect("{{.Id}}"), inspect("{{.State.Pid}}"));
        let done = PathBuf::from(format!("/proc/{pid}/root/tmp/done"));
        let deadline = Instant::now() + Duration::from_secs(30);
        while !done.exists() {
            assert!(
                Instant::now() < deadline,
                "container {name} never finished its script: {:?}",
                self.cli(&["logs", name])
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        Started {
            cgroup: format!("{}/{}{id}", self.cgroup_parent, self.cgroup_prefix),
            pid,
        }
    }

    /// Remove container `name`, killing it if it runs.
    fn remove(&self, name: &str) {
        ok(&self.force_remove(name), "removing a container");
    }

    fn force_remove(&self, name: &str) -> Output {
        let mut args = vec!["rm", "--force"];
        if self.program == "podman" {
            // Not SIGTERM first: the containers' sleep ignores it, podman waits 10 s.
            args.extend(["--time", "0"]);
        }
        args.push(name);
        self.cli(&args)
    }

    fn fingerprint_args(&self) -> Vec<&str> {
        self.fingerprint_args.iter().map(String::as_str).collect()
    }

    fn learn(&self, db: &Path, tree: &CgroupTree, extra: &[&str]) -> Learner {
        let args: Vec<&std::ffi::OsStr> = self
            .fingerprint_args()
            .into_iter()
            .chain(extra.iter().copied())
            .map(std::ffi::OsStr::new)
            .collect();
        Learner::start_with(db, &[&tree.root], &args)
    }

    /// Enforce the profiles in `tmp`/profiles, holding new containers below the tree.
    fn enforce(&self, tmp: &Path) -> Enforcer {
        let mut args = self.fingerprint_args();
        args.extend(["--container-scope", &self.cgroup_parent]);
        Enforcer::start(tmp, &tmp.join("profiles"), Mech::Kill, &args)
    }
}

impl Drop for Engine {
    fn drop(&mut self) {
        let all = self.cli(&["ps", "--all", "--quiet"]);
        for id in String::from_utf8_lossy(&all.stdout).split_whitespace() {
            let _ = self.force_remove(id);
        }
        if let Some(mut daemon) = self.daemon.take() {
            let pid = nix::unistd::Pid::from_raw(daemon.id() as i32);
            let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
            let _ = daemon.wait();
        }
    }
}

/// A container started by [`Engine::start`].
struct Started {
    cgroup: String,
    pid: String,
}

impl Started {
    /// Whether the container's forbidden program left its marker.
    fn marker(&self) -> bool {
        Path::new(&format!("/proc/{}/root/tmp/marker", self.pid)).exists()
    }
}

/// Killed events, as (workload, executable).
fn killed(events: &[Value]) -> Vec<(String, String)> {
    events
        .iter()
        .filter(|e| e["action"] == "killed")
        .map(|e| {
            let text = |v: &Value| v.as_str().unwrap_or_default().to_string();
            (text(&e["workload"]), text(&e["executable"]))
        })
        .collect()
}

/// The exported profile named `name`.
fn profile(dir: &Path, name: &str) -> Value {
    std::fs::read_dir(dir)
        .unwrap()
        .flatten()
        .map(|e| serde_json::from_slice::<Value>(&std::fs::read(e.path()).unwrap()).unwrap())
        .find(|p| p["workload"]["name"] == name)
        .unwrap_or_else(|| panic!("no profile named {name} in {}", dir.display()))
}

/// What both engines must do: `engine`'s container `web` is learned under `web_name`,
/// enforced, and keeps its profile when recreated; a forbidden first exec of a new
/// `web` is killed; another container in the scope is left alone. With
/// `pod_replicas`, Kubernetes-annotated replicas are learned and enforced too.
fn learn_export_enforce(
    engine: &Engine,
    tree: &CgroupTree,
    tmp: &Path,
    web_name: &str,
    pods: bool,
) {
    let db = tmp.join("learn.db");
    let learner = engine.learn(&db, tree, &[]);
    let web = engine.start("web", &[], REPLAY);
    let replica = pods.then(|| engine.start("replica-a", &pod_annotations("bcdfg"), REPLAY));
    // Stopped while the containers still run, so every cgroup can be named.
    learner.stop_ok();
    assert_eq!(workloads_of(&db, &web.cgroup), [web_name]);
    if let Some(replica) = &replica {
        assert_eq!(workloads_of(&db, &replica.cgroup), [POD_WORKLOAD]);
        engine.remove("replica-a");
    }
    engine.remove("web");
    let paths: Vec<String> = executables(&db, &web.cgroup)
        .iter()
        .map(|row| String::from_utf8_lossy(&row.path).into_owned())
        .collect();
    assert!(paths.contains(&BUSYBOX.to_string()), "{paths:?}");

    export_profiles(&db, &tmp.join("profiles"), &["--mode", "enforce"]);
    let exported = profile(&tmp.join("profiles"), web_name);
    assert_eq!(exported["workload"]["match"]["kind"], "engine_container");
    assert_eq!(exported["workload"]["match"]["by"], "name");

    let enforcer = engine.enforce(tmp);
    // Recreated under the same name (a new id, a new cgroup): same profile. What it
    // learned replays; a forbidden program later on is killed.
    let again = engine.start("web", &[], &format!("{REPLAY}; {FORBIDDEN} /tmp/marker"));
    assert!(
        !again.marker(),
        "the recreated web ran its forbidden program"
    );
    engine.remove("web");
    // A new `web` whose very first exec is forbidden: held, named, killed.
    let first = engine.run("web", &[], &[FORBIDDEN, "/tmp/marker"]);
    assert_eq!(first.status.code(), Some(137), "{first:?}");
    engine.remove("web");
    // Another container in the scope has no profile: left alone.
    let other = engine.start("other", &[], &format!("{FORBIDDEN} /tmp/marker"));
    assert!(other.marker(), "an unprofiled container was stopped");
    let mut expected = vec![(web_name.to_string(), FORBIDDEN.to_string()); 2];
    if pods {
        // Another replica of the Deployment: replays, then a forbidden first exec.
        engine.start("replica-b", &pod_annotations("hjklm"), REPLAY);
        let c = engine.run(
            "replica-c",
            &pod_annotations("npqrs"),
            &[FORBIDDEN, "/tmp/m"],
        );
        assert_eq!(c.status.code(), Some(137), "{c:?}");
        expected.push((POD_WORKLOAD.to_string(), FORBIDDEN.to_string()));
    }
    let events = enforcer.stop();
    assert_eq!(killed(&events), expected, "{events:#?}");
    assert_eq!(
        events.len(),
        expected.len(),
        "no other violations: {events:#?}"
    );
}

/// Run `body` with an engine of the test's own, if `tools` are there (under CI=true
/// they must be), and say how long it took.
fn with_engine(
    test: &str,
    tools: &[&str],
    start: fn(&CgroupTree) -> Engine,
    body: impl FnOnce(&Engine, &CgroupTree, &Path),
) {
    if !tools_installed(test, tools) {
        return;
    }
    let began = Instant::now();
    let (_keep, tmp) = temp_dir();
    let tree = CgroupTree::new();
    let engine = start(&tree);
    body(&engine, &tree, &tmp);
    drop(engine);
    eprintln!("{test}: {:?}", began.elapsed());
}

#[test]
fn docker_containers_are_named_learned_and_enforced_by_name_and_image() {
    let test = "docker_containers_are_named_learned_and_enforced_by_name_and_image";
    let tools = ["dockerd", "docker", "runc", "tar"];
    with_engine(test, &tools, Engine::dockerd, by_name_and_image);
}

fn by_name_and_image(engine: &Engine, tree: &CgroupTree, tmp: &Path) {
    learn_export_enforce(engine, tree, tmp, "docker/web", false);

    // By image: two containers of one image, whatever their names, are one workload.
    let db = tmp.join("by-image.db");
    let learner = engine.learn(&db, tree, &["--container-names", "image"]);
    let a = engine.start("api-1", &[], REPLAY);
    let b = engine.start("api-2", &[], "true");
    learner.stop_ok();
    let repository = engine.image.trim_end_matches(":1");
    for started in [&a, &b] {
        assert_eq!(
            workloads_of(&db, &started.cgroup),
            [format!("docker/image/{repository}")]
        );
    }
}

#[test]
fn podman_and_crio_annotated_containers_are_named_learned_and_enforced() {
    let test = "podman_and_crio_annotated_containers_are_named_learned_and_enforced";
    let tools = ["podman", "conmon", "runc", "tar"];
    with_engine(test, &tools, Engine::podman, |engine, tree, tmp| {
        learn_export_enforce(engine, tree, tmp, "podman/web", true)
    });
}

/// The engines' metadata for containers under the systemd driver, written as
/// dockerd, Podman and CRI-O write it (the fields naming reads), and a CRI-O one
/// under cgroupfs, all below the slice `slice` (at `slice_path`): (workload, cgroup
/// directory) of each.
fn simulated_containers(tmp: &Path, slice: &str, slice_path: &str) -> Vec<(String, String)> {
    let id = |n: u8| format!("{:08x}{}", std::process::id(), format!("{n:x}").repeat(56));
    let docker = tmp.join("docker/containers").join(id(1));
    std::fs::create_dir_all(&docker).unwrap();
    let config = serde_json::json!({"ID": id(1), "Name": "/web",
        "Config": {"Image": "shop/web:2", "Labels": {}}});
    std::fs::write(docker.join("config.v2.json"), config.to_string()).unwrap();
    let storage = tmp.join("storage/overlay-containers");
    let mut index = Vec::new();
    let pod = |suffix: &str| {
        serde_json::json!({
            "io.kubernetes.pod.namespace": "default",
            "io.kubernetes.pod.name": format!("web-6b474476c4-{suffix}"),
            "io.kubernetes.container.name": "server",
        })
    };
    for (n, cgroups_path, name, annotations) in [
        (
            2,
            format!("{slice}:libpod:{}", id(2)),
            "web",
            serde_json::json!({"io.container.manager": "libpod"}),
        ),
        (
            3,
            format!("{slice}:crio:{}", id(3)),
            "k8s_server_web-6b474476c4-bcdfg_default_0",
            pod("bcdfg"),
        ),
        (
            4,
            format!("{slice_path}/crio-{}", id(4)),
            "k8s_server_web-6b474476c4-hjklm_default_0",
            pod("hjklm"),
        ),
    ] {
        let userdata = storage.join(id(n)).join("userdata");
        std::fs::create_dir_all(&userdata).unwrap();
        let spec = serde_json::json!({"annotations": annotations,
            "linux": {"cgroupsPath": cgroups_path}});
        std::fs::write(userdata.join("config.json"), spec.to_string()).unwrap();
        let metadata = serde_json::json!({"image-name": "localhost/web:1", "name": name});
        index.push(serde_json::json!({"id": id(n), "names": [name],
            "metadata": metadata.to_string()}));
    }
    std::fs::write(
        storage.join("containers.json"),
        serde_json::Value::from(index).to_string(),
    )
    .unwrap();
    vec![
        ("docker/web".into(), format!("docker-{}.scope", id(1))),
        ("podman/web".into(), format!("libpod-{}.scope", id(2))),
        (POD_WORKLOAD.into(), format!("crio-{}.scope", id(3))),
        (POD_WORKLOAD.into(), format!("crio-{}", id(4))),
    ]
}

/// Held first execs under the systemd driver's layouts (and CRI-O's cgroupfs one;
/// the real engines above run with cgroupfs): a container of each engine, created after enforcement began in a slice given as container scope, is named
/// from its engine's metadata at its first exec and killed there (its profile does
/// not allow the program); the runtime's own set-up exec (same mount namespace as
/// its parent) is let through. The slice itself is made after enforcement began too,
/// as an engine makes its root at its first container (`/docker`, `/machine.slice`).
pub fn held_first_execs_in_engine_layouts_are_named_from_their_metadata(mech: Mech) {
    let (_keep, tmp) = temp_dir();
    let tree = CgroupTree::new();
    let slice_name = format!("{}.slice", unique("fp-engines"));
    let slice_path = format!("{}/{slice_name}", tree.root.path);
    let containers = simulated_containers(&tmp, &slice_name, &slice_path);
    let profiles = tmp.join("profiles");
    std::fs::create_dir_all(&profiles).unwrap();
    let names: std::collections::BTreeSet<&String> = containers.iter().map(|(n, _)| n).collect();
    for (i, name) in names.into_iter().enumerate() {
        let matcher = match name.split_once('/') {
            Some((engine @ ("docker" | "podman"), n)) => serde_json::json!({
                "kind": "engine_container", "engine": engine, "by": "name", "name": n}),
            _ => serde_json::json!({"kind": "kubernetes_workload", "namespace": "default",
                "owner_kind": "Deployment", "owner_name": "web", "container": "server"}),
        };
        let profile = serde_json::json!({"schema": 1, "mode": "enforce",
            "workload": {"name": name, "match": matcher}, "executables": [BUSYBOX]});
        std::fs::write(profiles.join(format!("{i}.json")), profile.to_string()).unwrap();
    }
    let enforcer = Enforcer::start(
        &tmp,
        &profiles,
        mech,
        &[
            "--docker-root",
            tmp.join("docker").to_str().unwrap(),
            "--containers-storage",
            tmp.join("storage").to_str().unwrap(),
            "--container-scope",
            &slice_path,
        ],
    );
    let slice = TestCgroup::at(&slice_path);
    let scopes: Vec<TestCgroup> = containers
        .iter()
        .map(|(_, leaf)| slice.child(leaf))
        .collect();
    for scope in &scopes {
        let setup = scope.command(TRUE).stdout(Stdio::null()).status().unwrap();
        assert!(setup.success(), "the runtime's exec was stopped: {setup}");
        // Held, whatever the mechanism: decided after the exec, killed if forbidden.
        let entrypoint = scope
            .command("unshare")
            .args(["--mount", TRUE])
            .status()
            .unwrap();
        assert_eq!(entrypoint.signal(), Some(libc::SIGKILL), "{}", scope.path);
    }
    let events = enforcer.stop();
    let named: Vec<(String, String)> = events
        .iter()
        .map(|e| {
            let text = |v: &Value| v.as_str().unwrap_or_default().to_string();
            (text(&e["workload"]), text(&e["cgroup"]))
        })
        .collect();
    let expected: Vec<(String, String)> = containers
        .iter()
        .zip(&scopes)
        .map(|((name, _), scope)| (name.clone(), scope.path.clone()))
        .collect();
    assert_eq!(named, expected, "{events:#?}");
    drop(scopes);
}

with_both_mechanisms!(held_first_execs_in_engine_layouts_are_named_from_their_metadata);
