//! Names the workload a cgroup belongs to, from its cgroup v2 path alone.
//!
//! The kernel tells us which cgroup a process is in; people think in systemd
//! units, containers and Kubernetes pods. This module maps the one to the other
//! with pure string rules (no I/O), so that every process of a workload, even in
//! a nested cgroup, gets the same stable name. That name is the workload's
//! identity in the database and the name of its profile.

use serde::{Deserialize, Serialize};

use super::cgroup_path;

/// How a workload was recognised, with the facts that identify it.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum WorkloadId {
    /// A systemd unit: `system.slice/nginx.service` -> unit "nginx.service".
    /// A unit of a user manager is qualified by that manager, so that it cannot
    /// be mistaken for a system unit or another user's unit:
    /// `user@1000.service/app.slice/app-foo.scope` -> unit "user@1000.service/app-foo.scope".
    SystemdUnit { unit: String },
    /// A container of a plain container runtime (docker, containerd, cri-o, podman/libpod) outside Kubernetes.
    Container { runtime: String, id: String },
    /// A container of a standalone engine (Docker, Podman, CRI-O without Kubernetes
    /// labels), named from the engine's metadata (see `crate::workload::runtime`) by
    /// the rule chosen at learn and enforce: `by` is "name" (the container's name:
    /// `docker/web`) or "image" (its image's repository, so that replicas share one
    /// profile: `docker/image/nginx`). A recreated container keeps its name.
    EngineContainer {
        engine: String,
        by: String,
        name: String,
    },
    /// A container of a Kubernetes pod, known only from the kubepods cgroup path.
    KubernetesContainer {
        qos: String,
        pod_uid: String,
        runtime: Option<String>,
        container_id: String,
    },
    /// A container of a Kubernetes workload, named from the container runtime's
    /// metadata (see `crate::workload::runtime`): every replica of a Deployment, on every node,
    /// gets the same name. `owner_source` says how the owner was found
    /// (`crate::workload::kubernetes::OwnerSource`); it is informational, not part of the name.
    KubernetesWorkload {
        namespace: String,
        owner_kind: String,
        owner_name: String,
        container: String,
        owner_source: String,
    },
    /// Anything else: the cgroup path itself (normalised: leading '/', no trailing '/').
    Cgroup { path: String },
}

impl WorkloadId {
    /// The workload's stable name, used as its identity in the database and as its profile name.
    pub fn name(&self) -> String {
        match self {
            Self::SystemdUnit { unit } => unit.clone(),
            Self::Container { runtime, id } => format!("{runtime}/{id}"),
            Self::EngineContainer { engine, by, name } if by == "name" => {
                format!("{engine}/{name}")
            }
            Self::EngineContainer { engine, by, name } => format!("{engine}/{by}/{name}"),
            // The runtime is left out: a pod's containers keep their name if
            // the node changes runtime, and container ids are unique anyway.
            Self::KubernetesContainer {
                qos,
                pod_uid,
                container_id,
                ..
            } => format!("kubernetes/{qos}/pod{pod_uid}/{container_id}"),
            Self::KubernetesWorkload {
                namespace,
                owner_kind,
                owner_name,
                container,
                ..
            } => format!("{namespace}/{owner_kind}/{owner_name}/{container}"),
            Self::Cgroup { path } => path.clone(),
        }
    }

    /// One word for the kind: "systemd_unit", "container", "engine_container",
    /// "kubernetes_container", "kubernetes_workload", "cgroup".
    pub fn kind(&self) -> &'static str {
        // Must match the serde tag, which is derived from the variant names.
        match self {
            Self::SystemdUnit { .. } => "systemd_unit",
            Self::Container { .. } => "container",
            Self::EngineContainer { .. } => "engine_container",
            Self::KubernetesContainer { .. } => "kubernetes_container",
            Self::KubernetesWorkload { .. } => "kubernetes_workload",
            Self::Cgroup { .. } => "cgroup",
        }
    }
}

/// Name the workload a cgroup belongs to. `path` is relative to the cgroup v2 root, with or without a leading '/'. Nested cgroups belong to their container's/unit's workload.
///
/// A Kubernetes container is looked for first, anywhere in the path: on a
/// node that itself runs in a container (kind, k3d) the pod's container is
/// the workload that matters. Otherwise the outermost container or unit
/// wins, so that whatever a container or unit starts below itself (an
/// `init.scope`, a systemd inside a container) stays part of it.
pub fn identify(path: &str) -> WorkloadId {
    // A path that is not UTF-8 (see `cgroup_path`): units and containers are named by
    // ASCII-only rules, so the lossy text finds them exactly; anything else is named
    // by the exact text form, so that it stays apart from its look-alikes.
    if let Some(raw) = cgroup_path::not_utf8_bytes(path) {
        return match identify_utf8(&String::from_utf8_lossy(&raw)) {
            WorkloadId::Cgroup { .. } => WorkloadId::Cgroup {
                path: path.to_string(),
            },
            named => named,
        };
    }
    identify_utf8(path)
}

fn identify_utf8(path: &str) -> WorkloadId {
    let parts: Vec<&str> = path.split('/').filter(|p| !p.is_empty()).collect();
    kubernetes_container(&parts)
        .or_else(|| outermost_container_or_unit(&parts))
        .unwrap_or_else(|| WorkloadId::Cgroup {
            path: format!("/{}", parts.join("/")),
        })
}

/// Kubernetes QoS classes that get a cgroup level of their own; guaranteed
/// pods sit directly under kubepods.
const QOS_LEVELS: [&str; 2] = ["burstable", "besteffort"];
const GUARANTEED: &str = "guaranteed";

/// Container cgroup prefixes that kubelet's runtimes use, and the runtime each names.
const KUBERNETES_RUNTIMES: [(&str, &str); 3] = [
    ("cri-containerd-", "containerd"),
    ("crio-", "crio"),
    ("docker-", "docker"),
];

/// `<prefix><id>.scope` names of plain container runtimes. A monitor
/// (conmon) gets a runtime of its own so it is not confused with its container.
const SCOPE_RUNTIMES: [(&str, &str); 7] = [
    ("docker-", "docker"),
    ("cri-containerd-", "containerd"),
    ("nerdctl-", "containerd"),
    ("crio-conmon-", "crio-conmon"),
    ("crio-", "crio"),
    ("libpod-conmon-", "podman-conmon"),
    ("libpod-", "podman"),
];

/// Systemd unit types whose cgroups can hold processes; slices only group.
const PROCESS_UNIT_SUFFIXES: [&str; 5] = [".service", ".scope", ".socket", ".mount", ".swap"];

/// The first place in `parts` where a kubepods hierarchy leads to a container.
fn kubernetes_container(parts: &[&str]) -> Option<WorkloadId> {
    (0..parts.len()).find_map(|i| {
        let rest = &parts[i + 1..];
        if parts[i] == "kubepods" {
            kubepods_cgroupfs(rest)
        } else {
            kubepods_systemd(parts[i], rest)
        }
    })
}

/// `kubepods/[burstable|besteffort/]pod<uid>/<cid>`, as kubelet's cgroupfs driver lays it out.
fn kubepods_cgroupfs(rest: &[&str]) -> Option<WorkloadId> {
    let (qos, rest) = match rest.first() {
        Some(level) if QOS_LEVELS.contains(level) => (*level, &rest[1..]),
        _ => (GUARANTEED, rest),
    };
    let uid = rest
        .first()?
        .strip_prefix("pod")
        .filter(|uid| is_pod_uid(uid, '-'))?;
    let leaf = rest.get(1)?;
    let (runtime, id) = if is_container_id(leaf) {
        (None, *leaf)
    } else {
        // CRI-O names its cgroupfs leaves `crio-<cid>`.
        let (runtime, id) = prefixed_id(leaf, &KUBERNETES_RUNTIMES)?;
        (Some(runtime), id)
    };
    Some(kubernetes(qos, uid.to_string(), runtime, id))
}

/// `kubepods.slice/[kubepods-<qos>.slice/]kubepods[-<qos>]-pod<uid>.slice/<runtime>-<cid>.scope`,
/// as kubelet's systemd driver lays it out. Slice names repeat their parents'
/// names, so a cgroup root of `/kubelet` gives `kubelet-kubepods.slice/...`.
fn kubepods_systemd(root: &str, rest: &[&str]) -> Option<WorkloadId> {
    let base = root
        .strip_suffix(".slice")
        .filter(|base| *base == "kubepods" || base.ends_with("-kubepods"))?;
    let (qos, pod_prefix, rest) = match rest.first().and_then(|slice| systemd_qos(base, slice)) {
        Some(qos) => (qos, format!("{base}-{qos}-pod"), &rest[1..]),
        None => (GUARANTEED, format!("{base}-pod"), rest),
    };
    let uid = rest
        .first()?
        .strip_suffix(".slice")?
        .strip_prefix(pod_prefix.as_str())
        .filter(|uid| is_pod_uid(uid, '_'))?;
    let (runtime, id) = prefixed_id(rest.get(1)?.strip_suffix(".scope")?, &KUBERNETES_RUNTIMES)?;
    // In slice names '-' means nesting, so kubelet wrote the uid with '_'.
    Some(kubernetes(qos, uid.replace('_', "-"), Some(runtime), id))
}

/// The QoS class that `slice` is the systemd slice of, under `base`.
fn systemd_qos(base: &str, slice: &str) -> Option<&'static str> {
    QOS_LEVELS
        .into_iter()
        .find(|qos| slice == format!("{base}-{qos}.slice"))
}

fn kubernetes(qos: &str, pod_uid: String, runtime: Option<&str>, id: &str) -> WorkloadId {
    WorkloadId::KubernetesContainer {
        qos: qos.to_string(),
        pod_uid,
        runtime: runtime.map(str::to_string),
        container_id: id.to_string(),
    }
}

/// The first container or unit from the root down. User managers are looked
/// through, as they only host the user's own units.
fn outermost_container_or_unit(parts: &[&str]) -> Option<WorkloadId> {
    let mut manager: Option<&str> = None;
    for (i, part) in parts.iter().enumerate() {
        let parent = i.checked_sub(1).map(|p| parts[p]);
        if let Some(container) = container(parent, part) {
            return Some(container);
        }
        if manager.is_none() && is_user_manager(part) {
            manager = Some(part);
        } else if is_unit(part) {
            return Some(systemd_unit(manager, part));
        }
    }
    manager.map(|manager| systemd_unit(None, manager))
}

fn systemd_unit(manager: Option<&str>, unit: &str) -> WorkloadId {
    let unit = match manager {
        Some(manager) => format!("{manager}/{unit}"),
        None => unit.to_string(),
    };
    WorkloadId::SystemdUnit { unit }
}

/// A container's own cgroup: a runtime's scope, or a cgroupfs layout that
/// names the runtime in the parent directory.
fn container(parent: Option<&str>, part: &str) -> Option<WorkloadId> {
    let (runtime, id) = part
        .strip_suffix(".scope")
        .and_then(|stem| prefixed_id(stem, &SCOPE_RUNTIMES))
        .or_else(|| cgroupfs_container(parent?, part))?;
    Some(WorkloadId::Container {
        runtime: runtime.to_string(),
        id: id.to_string(),
    })
}

/// Docker's `/docker/<id>` and podman's `libpod_parent/libpod-<id>`.
fn cgroupfs_container<'a>(parent: &str, part: &'a str) -> Option<(&'static str, &'a str)> {
    match parent {
        "docker" => is_container_id(part).then_some(("docker", part)),
        "libpod_parent" => prefixed_id(part, &[("libpod-", "podman")]),
        _ => None,
    }
}

/// The runtime and id of `<prefix><id>`, for the first prefix of `table` followed by an id.
fn prefixed_id<'a>(
    name: &'a str,
    table: &[(&str, &'static str)],
) -> Option<(&'static str, &'a str)> {
    table.iter().find_map(|(prefix, runtime)| {
        let id = name.strip_prefix(prefix)?;
        is_container_id(id).then_some((*runtime, id))
    })
}

/// Container ids are lowercase hex: 64 digits in full, at least 12 when shortened.
fn is_container_id(s: &str) -> bool {
    (12..=64).contains(&s.len()) && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

/// A pod uid: a UUID with `separator` between its groups, or (static pods)
/// a hash with no separators.
fn is_pod_uid(s: &str, separator: char) -> bool {
    s.starts_with(|c: char| c.is_ascii_hexdigit())
        && s.chars()
            .all(|c| matches!(c, '0'..='9' | 'a'..='f') || c == separator)
}

/// `user@<uid>.service`: a user's own systemd instance.
fn is_user_manager(part: &str) -> bool {
    part.strip_prefix("user@")
        .and_then(|rest| rest.strip_suffix(".service"))
        .is_some_and(|uid| !uid.is_empty() && uid.bytes().all(|b| b.is_ascii_digit()))
}

/// A systemd unit that can hold processes, with a name systemd would accept.
fn is_unit(part: &str) -> bool {
    PROCESS_UNIT_SUFFIXES
        .iter()
        .find_map(|suffix| part.strip_suffix(suffix))
        .is_some_and(|stem| {
            !stem.is_empty()
                && part.len() <= 255
                && stem
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b":-_.\\@".contains(&b))
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    const ID: &str = "3f2a0c9e5b7d4e1f8a6b2c3d4e5f60718293a4b5c6d7e8f9a0b1c2d3e4f5a6b7";
    const ID2: &str = "9c0d7e1b2a3f4e5d6c7b8a9f0e1d2c3b4a5f6e7d8c9b0a1f2e3d4c5b6a7f8e9d";
    const UID: &str = "0f3b6c2e-9a1d-4c5e-8f7a-2b3c4d5e6f70";
    const UID_: &str = "0f3b6c2e_9a1d_4c5e_8f7a_2b3c4d5e6f70";

    fn unit(unit: &str) -> WorkloadId {
        WorkloadId::SystemdUnit {
            unit: unit.to_string(),
        }
    }

    fn container(runtime: &str, id: &str) -> WorkloadId {
        WorkloadId::Container {
            runtime: runtime.to_string(),
            id: id.to_string(),
        }
    }

    fn k8s(qos: &str, runtime: Option<&str>, cid: &str) -> WorkloadId {
        kubernetes(qos, UID.to_string(), runtime, cid)
    }

    fn cgroup(path: &str) -> WorkloadId {
        WorkloadId::Cgroup {
            path: path.to_string(),
        }
    }

    /// Check each (path, expected) pair, reporting the path that failed.
    fn check(cases: &[(String, WorkloadId)]) {
        for (path, expected) in cases {
            assert_eq!(&identify(path), expected, "path {path:?}");
        }
    }

    fn case(path: impl Into<String>, expected: WorkloadId) -> (String, WorkloadId) {
        (path.into(), expected)
    }

    #[test]
    fn system_services() {
        check(&[
            case("system.slice/nginx.service", unit("nginx.service")),
            case("/system.slice/cron.service", unit("cron.service")),
            case("/system.slice/cron.service/", unit("cron.service")),
            case("//system.slice//cron.service//", unit("cron.service")),
            case("/init.scope", unit("init.scope")),
            case("/system.slice/ssh.socket", unit("ssh.socket")),
            case(
                "/system.slice/run-user-1000.mount",
                unit("run-user-1000.mount"),
            ),
            case("/system.slice/dev-zram0.swap", unit("dev-zram0.swap")),
        ]);
    }

    #[test]
    fn odd_unit_names() {
        check(&[
            case(
                "/system.slice/system-getty.slice/getty@tty1.service",
                unit("getty@tty1.service"),
            ),
            case(
                r"/system.slice/system-systemd\x2dfsck.slice/systemd-fsck@dev-disk-by\x2duuid-1f2e.service",
                unit(r"systemd-fsck@dev-disk-by\x2duuid-1f2e.service"),
            ),
            case(
                r"/machine.slice/machine-qemu\x2d1\x2dvm.scope",
                unit(r"machine-qemu\x2d1\x2dvm.scope"),
            ),
            case(
                "/system.slice/user-runtime-dir@1000.service",
                unit("user-runtime-dir@1000.service"),
            ),
            case("/system.slice/a:b_c.d.service", unit("a:b_c.d.service")),
        ]);
    }

    #[test]
    fn nested_cgroups_belong_to_their_unit() {
        check(&[
            case("system.slice/foo.service/bar", unit("foo.service")),
            case("/system.slice/foo.service/init.scope", unit("foo.service")),
            case("/system.slice/foo.service/a/b/c/", unit("foo.service")),
            case(
                "/system.slice/containerd.service/sub.scope",
                unit("containerd.service"),
            ),
        ]);
    }

    #[test]
    fn slices_are_not_units() {
        check(&[
            case("/system.slice", cgroup("/system.slice")),
            case("system.slice/", cgroup("/system.slice")),
            case(
                "/user.slice/user-1000.slice",
                cgroup("/user.slice/user-1000.slice"),
            ),
            case("/machine.slice", cgroup("/machine.slice")),
            case("/system.slice/.service", cgroup("/system.slice/.service")),
            case(
                "/system.slice/odd name.service",
                cgroup("/system.slice/odd name.service"),
            ),
        ]);
    }

    #[test]
    fn sessions_are_scope_units() {
        check(&[
            case(
                "/user.slice/user-1000.slice/session-3.scope",
                unit("session-3.scope"),
            ),
            case(
                "user.slice/user-0.slice/session-c1.scope/",
                unit("session-c1.scope"),
            ),
        ]);
    }

    #[test]
    fn user_manager_units_are_qualified_by_their_manager() {
        let m = "/user.slice/user-1000.slice/user@1000.service";
        check(&[
            case(
                "user.slice/user-1000.slice/user@1000.service/app.slice/app-foo.scope",
                unit("user@1000.service/app-foo.scope"),
            ),
            case(
                format!("{m}/app.slice/app-foo.scope/child"),
                unit("user@1000.service/app-foo.scope"),
            ),
            case(
                format!("{m}/session.slice/pipewire.service"),
                unit("user@1000.service/pipewire.service"),
            ),
            case(
                format!("{m}/init.scope"),
                unit("user@1000.service/init.scope"),
            ),
            case(m, unit("user@1000.service")),
            case(format!("{m}/app.slice"), unit("user@1000.service")),
            case(
                "/user.slice/user-1001.slice/user@1001.service/app.slice/app-foo.scope",
                unit("user@1001.service/app-foo.scope"),
            ),
        ]);
    }

    #[test]
    fn docker_containers() {
        check(&[
            case(
                format!("system.slice/docker-{ID}.scope"),
                container("docker", ID),
            ),
            case(
                format!("/system.slice/docker-{ID}.scope/"),
                container("docker", ID),
            ),
            case(format!("/docker/{ID}"), container("docker", ID)),
            case(format!("docker/{ID}/"), container("docker", ID)),
            case(
                format!("/docker/{}", &ID[..12]),
                container("docker", &ID[..12]),
            ),
        ]);
    }

    #[test]
    fn nested_cgroups_belong_to_their_container() {
        check(&[
            case(
                format!("/system.slice/docker-{ID}.scope/init.scope"),
                container("docker", ID),
            ),
            case(
                format!("/system.slice/docker-{ID}.scope/system.slice/nginx.service"),
                container("docker", ID),
            ),
            case(format!("/docker/{ID}/init.scope"), container("docker", ID)),
            // Docker in docker: the outer container owns it all.
            case(
                format!("/docker/{ID}/docker/{ID2}"),
                container("docker", ID),
            ),
            case(
                format!("/machine.slice/libpod-{ID}.scope/container"),
                container("podman", ID),
            ),
        ]);
    }

    #[test]
    fn containerd_crio_and_nerdctl_containers() {
        check(&[
            case(
                format!("/system.slice/cri-containerd-{ID}.scope"),
                container("containerd", ID),
            ),
            case(
                format!("/system.slice/nerdctl-{ID}.scope"),
                container("containerd", ID),
            ),
            case(
                format!("/system.slice/crio-{ID}.scope"),
                container("crio", ID),
            ),
            case(
                format!("/system.slice/crio-conmon-{ID}.scope"),
                container("crio-conmon", ID),
            ),
        ]);
    }

    #[test]
    fn podman_containers() {
        check(&[
            case(format!("libpod-{ID}.scope"), container("podman", ID)),
            case(format!("/machine.slice/libpod-{ID}.scope"), container("podman", ID)),
            case(format!("/libpod_parent/libpod-{ID}"), container("podman", ID)),
            case(
                format!("/libpod_parent/libpod-{ID}/ctr"),
                container("podman", ID),
            ),
            case(
                format!("/machine.slice/libpod-conmon-{ID}.scope"),
                container("podman-conmon", ID),
            ),
            // Rootless podman puts its containers inside the user manager.
            case(
                format!("/user.slice/user-1000.slice/user@1000.service/user.slice/libpod-{ID}.scope/container"),
                container("podman", ID),
            ),
        ]);
    }

    #[test]
    fn kubernetes_cgroupfs_driver() {
        check(&[
            case(
                format!("/kubepods/pod{UID}/{ID}"),
                k8s("guaranteed", None, ID),
            ),
            case(
                format!("/kubepods/burstable/pod{UID}/{ID}"),
                k8s("burstable", None, ID),
            ),
            case(
                format!("kubepods/besteffort/pod{UID}/{ID}/"),
                k8s("besteffort", None, ID),
            ),
            case(
                format!("/kubelet/kubepods/burstable/pod{UID}/{ID}"),
                k8s("burstable", None, ID),
            ),
            case(
                format!("/kubepods.slice/kubepods/besteffort/pod{UID}/{ID}"),
                k8s("besteffort", None, ID),
            ),
            // CRI-O's cgroupfs leaves carry its prefix.
            case(
                format!("/kubepods/burstable/pod{UID}/crio-{ID}"),
                k8s("burstable", Some("crio"), ID),
            ),
            case(
                format!("/kubepods/pod{UID}/{ID}/nested/deeper"),
                k8s("guaranteed", None, ID),
            ),
        ]);
    }

    #[test]
    fn kubernetes_systemd_driver() {
        let base = "/kubepods.slice";
        let burstable =
            format!("{base}/kubepods-burstable.slice/kubepods-burstable-pod{UID_}.slice");
        let besteffort =
            format!("{base}/kubepods-besteffort.slice/kubepods-besteffort-pod{UID_}.slice");
        check(&[
            case(
                format!("{base}/kubepods-pod{UID_}.slice/cri-containerd-{ID}.scope"),
                k8s("guaranteed", Some("containerd"), ID),
            ),
            case(
                format!("{burstable}/crio-{ID}.scope"),
                k8s("burstable", Some("crio"), ID),
            ),
            case(
                format!("{besteffort}/docker-{ID}.scope"),
                k8s("besteffort", Some("docker"), ID),
            ),
            case(
                format!("{burstable}/cri-containerd-{ID}.scope/"),
                k8s("burstable", Some("containerd"), ID),
            ),
            case(
                format!("{burstable}/crio-{ID}.scope/container/init.scope"),
                k8s("burstable", Some("crio"), ID),
            ),
        ]);
    }

    #[test]
    fn kubernetes_inside_a_container_node() {
        // kind and k3d run the node in a container and kubelet under /kubelet.
        let node = format!("/system.slice/docker-{ID2}.scope");
        check(&[
            case(
                format!(
                    "{node}/kubelet.slice/kubelet-kubepods.slice/kubelet-kubepods-besteffort.slice/kubelet-kubepods-besteffort-pod{UID_}.slice/cri-containerd-{ID}.scope"
                ),
                k8s("besteffort", Some("containerd"), ID),
            ),
            case(
                format!("{node}/kubepods/burstable/pod{UID}/{ID}"),
                k8s("burstable", None, ID),
            ),
            // Not yet down to a container: the node container owns it.
            case(format!("{node}/kubepods/burstable/pod{UID}"), container("docker", ID2)),
        ]);
    }

    #[test]
    fn static_pod_uids_have_no_dashes() {
        let uid = "6d1e4f3c2b0a9e8d7c6b5a4f3e2d1c0b";
        assert_eq!(
            identify(&format!("/kubepods/burstable/pod{uid}/{ID}")),
            kubernetes("burstable", uid.to_string(), None, ID)
        );
        assert_eq!(
            identify(&format!(
                "/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod{uid}.slice/cri-containerd-{ID}.scope"
            )),
            kubernetes("burstable", uid.to_string(), Some("containerd"), ID)
        );
    }

    #[test]
    fn pod_level_cgroups_are_plain_cgroups() {
        let systemd =
            format!("/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod{UID_}.slice");
        check(&[
            case(
                format!("/kubepods/pod{UID}"),
                cgroup(&format!("/kubepods/pod{UID}")),
            ),
            case(
                format!("kubepods/besteffort/pod{UID}/"),
                cgroup(&format!("/kubepods/besteffort/pod{UID}")),
            ),
            case(systemd.clone(), cgroup(&systemd)),
            case("/kubepods", cgroup("/kubepods")),
            case("/kubepods/burstable", cgroup("/kubepods/burstable")),
            case("/kubepods.slice", cgroup("/kubepods.slice")),
            case(
                "/kubepods.slice/kubepods-besteffort.slice",
                cgroup("/kubepods.slice/kubepods-besteffort.slice"),
            ),
        ]);
    }

    #[test]
    fn conmon_in_a_pod_is_the_conmon_container() {
        // CRI-O can put conmon in the pod; its id is the container's, so it
        // must not take the container's name.
        let pod =
            format!("/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod{UID_}.slice");
        check(&[case(
            format!("{pod}/crio-conmon-{ID}.scope"),
            container("crio-conmon", ID),
        )]);
    }

    #[test]
    fn look_alikes_do_not_match() {
        let not_hex = format!("{}g", &ID[..63]);
        check(&[
            case("/docker/notahexid", cgroup("/docker/notahexid")),
            case(
                format!("/docker/{not_hex}"),
                cgroup(&format!("/docker/{not_hex}")),
            ),
            case("/docker/abc123", cgroup("/docker/abc123")),
            case(format!("/docker/{ID}0"), cgroup(&format!("/docker/{ID}0"))),
            case(
                format!("/docker/{}", ID.to_uppercase()),
                cgroup(&format!("/docker/{}", ID.to_uppercase())),
            ),
            case(
                "/kubepods/burstable/notapod",
                cgroup("/kubepods/burstable/notapod"),
            ),
            case(
                format!("/kubepods/burstable/notapod/{ID}"),
                cgroup(&format!("/kubepods/burstable/notapod/{ID}")),
            ),
            case(
                format!("/kubepods/burstable/pod{UID}/notacontainer"),
                cgroup(&format!("/kubepods/burstable/pod{UID}/notacontainer")),
            ),
            case(
                format!("/kubepods/gold/pod{UID}/{ID}"),
                cgroup(&format!("/kubepods/gold/pod{UID}/{ID}")),
            ),
            case(
                format!("/kubepods/burstable/podzz{UID}/{ID}"),
                cgroup(&format!("/kubepods/burstable/podzz{UID}/{ID}")),
            ),
            case(
                format!("/mydocker/{ID}"),
                cgroup(&format!("/mydocker/{ID}")),
            ),
            case(
                format!("/libpod_parent/{ID}"),
                cgroup(&format!("/libpod_parent/{ID}")),
            ),
            // A valid scope name that is no container: still a unit.
            case(
                "/system.slice/docker-notahexid.scope",
                unit("docker-notahexid.scope"),
            ),
            case("/system.slice/docker.service", unit("docker.service")),
            case("/user.slice/user@me.service", unit("user@me.service")),
        ]);
    }

    #[test]
    fn misplaced_kubernetes_slices_are_not_pods() {
        // A besteffort pod slice must sit inside the besteffort slice.
        let path = format!(
            "/kubepods.slice/kubepods-besteffort-pod{UID_}.slice/cri-containerd-{ID}.scope"
        );
        assert_eq!(identify(&path), container("containerd", ID));
        let path = format!("/kubepods.slice/kubepods-pod{UID_}.slice/runc-{ID}.scope");
        assert_eq!(identify(&path), unit(&format!("runc-{ID}.scope")));
    }

    #[test]
    fn root_and_plain_paths() {
        check(&[
            case("/", cgroup("/")),
            case("", cgroup("/")),
            case("//", cgroup("/")),
            case("fingerprint-test", cgroup("/fingerprint-test")),
            case("/a//b/", cgroup("/a/b")),
            case("/user.slice", cgroup("/user.slice")),
        ]);
    }

    #[test]
    fn names() {
        assert_eq!(
            identify("/system.slice/nginx.service").name(),
            "nginx.service"
        );
        assert_eq!(
            identify(&format!("/system.slice/docker-{ID}.scope")).name(),
            format!("docker/{ID}")
        );
        assert_eq!(
            identify(&format!("/kubepods/burstable/pod{UID}/{ID}")).name(),
            format!("kubernetes/burstable/pod{UID}/{ID}")
        );
        assert_eq!(
            identify(&format!(
                "/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod{UID_}.slice/crio-{ID}.scope"
            ))
            .name(),
            format!("kubernetes/burstable/pod{UID}/{ID}")
        );
        assert_eq!(identify("/a/b/").name(), "/a/b");
        assert_eq!(identify("/").name(), "/");
    }

    #[test]
    fn names_do_not_depend_on_leading_or_trailing_slashes() {
        for path in [
            "system.slice/nginx.service".to_string(),
            format!("docker/{ID}"),
            format!("kubepods/pod{UID}/{ID}"),
            "some/cgroup".to_string(),
        ] {
            let name = identify(&path).name();
            assert_eq!(identify(&format!("/{path}")).name(), name);
            assert_eq!(identify(&format!("/{path}/")).name(), name);
        }
    }

    fn one_of_each() -> Vec<WorkloadId> {
        vec![
            unit("nginx.service"),
            container("docker", ID),
            WorkloadId::EngineContainer {
                engine: "podman".into(),
                by: "image".into(),
                name: "localhost/web".into(),
            },
            k8s("burstable", Some("crio"), ID),
            k8s("guaranteed", None, ID),
            WorkloadId::KubernetesWorkload {
                namespace: "default".into(),
                owner_kind: "Deployment".into(),
                owner_name: "web".into(),
                container: "server".into(),
                owner_source: "pod-name".into(),
            },
            cgroup("/"),
        ]
    }

    /// Regression: two cgroups differing only in an invalid UTF-8 byte were one workload.
    #[test]
    fn paths_that_are_not_utf8_are_named_exactly() {
        let a = cgroup_path::to_text(b"/app-\xff");
        let b = cgroup_path::to_text(b"/app-\xfe");
        assert_eq!(identify(&a), cgroup(&a));
        assert_ne!(identify(&a).name(), identify(&b).name());
        let unit = cgroup_path::to_text(b"/odd-\xff.slice/web.service/x");
        assert_eq!(identify(&unit), self::unit("web.service"));
    }

    #[test]
    fn kind_matches_the_serde_tag() {
        for id in one_of_each() {
            let json = serde_json::to_value(&id).unwrap();
            assert_eq!(json["kind"], id.kind());
        }
    }

    #[test]
    fn serde_round_trip_keeps_names() {
        for id in one_of_each() {
            let json = serde_json::to_string(&id).unwrap();
            let back: WorkloadId = serde_json::from_str(&json).unwrap();
            assert_eq!(back, id);
            assert_eq!(back.name(), id.name());
        }
    }

    #[test]
    fn serde_shape_is_stable() {
        let json = serde_json::to_string(&unit("nginx.service")).unwrap();
        assert_eq!(json, r#"{"kind":"systemd_unit","unit":"nginx.service"}"#);
        let json = serde_json::to_string(&k8s("besteffort", None, ID)).unwrap();
        assert_eq!(
            json,
            format!(
                r#"{{"kind":"kubernetes_container","qos":"besteffort","pod_uid":"{UID}","runtime":null,"container_id":"{ID}"}}"#
            )
        );
        let back: WorkloadId =
            serde_json::from_str(r#"{"kind":"container","runtime":"podman","id":"abc"}"#).unwrap();
        assert_eq!(back.name(), "podman/abc");
    }

    #[test]
    fn distinct_workloads_get_distinct_names() {
        let paths = [
            "/system.slice/dbus.service".to_string(),
            "/user.slice/user-1000.slice/user@1000.service/session.slice/dbus.service".to_string(),
            "/user.slice/user-1001.slice/user@1001.service/session.slice/dbus.service".to_string(),
            format!("/system.slice/crio-{ID}.scope"),
            format!("/system.slice/crio-conmon-{ID}.scope"),
            format!("/docker/{ID}"),
            format!("/docker/{ID2}"),
            format!("/kubepods/pod{UID}/{ID}"),
            format!("/kubepods/pod{UID}/{ID2}"),
            format!("/kubepods/pod{UID}"),
        ];
        let mut names: Vec<String> = paths.iter().map(|p| identify(p).name()).collect();
        names.sort();
        names.dedup();
        assert_eq!(names.len(), paths.len(), "{names:?}");
    }
}
