//! Container metadata lookup: which container a cgroup belongs to, and the labels it
//! was started with, read from the container runtime's state on this node.
//!
//! containerd's runc shim keeps each running container's OCI bundle at
//! `<state>/io.containerd.runtime.v2.task/<namespace>/<id>/config.json`, written
//! before runc creates the container's cgroup and kept until the task is deleted.
//! Its `annotations` carry the CRI facts (kubelet's containers: the
//! `io.kubernetes.cri.*` annotations; `ctr run --label` copies labels there too) and
//! `linux.cgroupsPath` names the cgroup. Reading it needs no socket, no client and no
//! network: a read-only mount of the state directory is enough, and a lookup costs a
//! few `stat`s and one small JSON read per new container.
//!
//! A lookup that fails never stops learning or enforcement: the caller falls back to
//! the name the cgroup path alone gives (`workload::identify`) and counts the miss.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::Deserialize;

use crate::workload::kubeapi::{ApiError, ApiOwners, ApiSettings, ApiStats};
use crate::workload::kubernetes::{self, OwnerResolver, PodContainer, PodNameRules};
use crate::workload::{self, WorkloadId};

/// Where containerd keeps its state unless told otherwise.
pub const DEFAULT_CONTAINERD_STATE: &str = "/run/containerd";
/// Environment variable that overrides the state directory (flags win over it).
pub const CONTAINERD_STATE_ENV: &str = "FINGERPRINT_CONTAINERD_STATE";
/// The runc v2 shim's task directory under the state directory.
const TASK_DIR: &str = "io.containerd.runtime.v2.task";

/// Cgroup leaf prefixes (and the `.scope` suffix) around a container id.
const LEAF_PREFIXES: [&str; 4] = ["cri-containerd-", "crio-", "docker-", "nerdctl-"];

/// The facts about one container that naming needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContainerInfo {
    /// containerd namespace ("k8s.io" for kubelet's containers, "default" for ctr).
    pub namespace: String,
    pub id: String,
    pub annotations: HashMap<String, String>,
}

#[derive(Deserialize)]
struct Spec {
    #[serde(default)]
    annotations: HashMap<String, String>,
    #[serde(default)]
    linux: Option<LinuxSpec>,
}

#[derive(Deserialize)]
struct LinuxSpec {
    #[serde(rename = "cgroupsPath", default)]
    cgroups_path: Option<String>,
}

/// Looks containers up in containerd's state directories, and the owners of
/// Kubernetes pods in the API when one is given (else from pod names).
#[derive(Debug, Clone)]
pub struct ContainerMetadata {
    state_dirs: Vec<PathBuf>,
    /// Shared by every copy, so that learning or enforcement asks once per pod.
    api: Option<Arc<ApiOwners>>,
}

impl Default for ContainerMetadata {
    /// `$FINGERPRINT_CONTAINERD_STATE`, else `/run/containerd`.
    fn default() -> Self {
        let dir = std::env::var_os(CONTAINERD_STATE_ENV)
            .filter(|d| !d.is_empty())
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from(DEFAULT_CONTAINERD_STATE));
        ContainerMetadata::new(vec![dir])
    }
}

/// How a cgroup got its name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Naming {
    /// Named from the container runtime's metadata.
    Runtime,
    /// Looked like a container, but no metadata was found: named from the path.
    PathFallback,
    /// Not a container: named from the path.
    Path,
}

impl ContainerMetadata {
    pub fn new(state_dirs: Vec<PathBuf>) -> ContainerMetadata {
        ContainerMetadata {
            state_dirs,
            api: None,
        }
    }

    /// Pod owners from this API first (see `crate::workload::kubeapi`).
    pub fn with_api(self, api: Option<ApiOwners>) -> ContainerMetadata {
        ContainerMetadata {
            api: api.map(Arc::new),
            ..self
        }
    }

    /// `dirs` if any were given (flags), else the default; pod owners from the API
    /// that `kube` selects, if any.
    pub fn from_flags(dirs: &[PathBuf], kube: &ApiSettings) -> Result<ContainerMetadata, ApiError> {
        let metadata = if dirs.is_empty() {
            ContainerMetadata::default()
        } else {
            ContainerMetadata::new(dirs.to_vec())
        };
        Ok(metadata.with_api(ApiOwners::open(kube)?))
    }

    /// How often the Kubernetes API could not be used; None: not asked.
    pub fn api_stats(&self) -> Option<ApiStats> {
        self.api.as_ref().map(|api| api.stats())
    }

    pub fn state_dirs(&self) -> &[PathBuf] {
        &self.state_dirs
    }

    /// The workload of cgroup `path` (relative to the v2 root): from the container
    /// runtime when the cgroup belongs to a container it knows, else from the path.
    pub fn identify(&self, path: &str) -> (WorkloadId, Naming) {
        let by_path = workload::identify(path);
        let container_like = matches!(
            by_path,
            WorkloadId::Container { .. } | WorkloadId::KubernetesContainer { .. }
        );
        match self.lookup(path) {
            Some(info) => (self.workload_of(&info), Naming::Runtime),
            None if container_like => (by_path, Naming::PathFallback),
            None => (by_path, Naming::Path),
        }
    }

    fn workload_of(&self, info: &ContainerInfo) -> WorkloadId {
        match &self.api {
            Some(api) => workload_of(info, &[api.as_ref(), &PodNameRules]),
            None => workload_of(info, &[&PodNameRules]),
        }
    }

    /// The container whose cgroup is `path` or an ancestor of it. Components are
    /// tried from the leaf up, so a nested cgroup finds its container.
    pub fn lookup(&self, path: &str) -> Option<ContainerInfo> {
        let parts: Vec<&str> = path.split('/').filter(|p| !p.is_empty()).collect();
        (0..parts.len()).rev().find_map(|i| {
            let id = container_id_of(parts[i])?;
            self.state_dirs
                .iter()
                .find_map(|dir| find_task(dir, id, &parts[..=i]))
        })
    }
}

/// The container id a cgroup directory name may stand for: the name itself, or
/// without a runtime's prefix and `.scope` suffix.
fn container_id_of(leaf: &str) -> Option<&str> {
    let stem = leaf.strip_suffix(".scope").unwrap_or(leaf);
    let id = LEAF_PREFIXES
        .iter()
        .find_map(|p| stem.strip_prefix(p))
        .unwrap_or(stem);
    // A container id is one directory name: nothing that could walk elsewhere.
    (!id.is_empty() && id != "." && id != ".." && !id.contains('/')).then_some(id)
}

/// The task `id` in any namespace under `state`, if its spec says that `cgroup`
/// (path components from the v2 root) is its cgroup.
fn find_task(state: &Path, id: &str, cgroup: &[&str]) -> Option<ContainerInfo> {
    let namespaces = std::fs::read_dir(state.join(TASK_DIR)).ok()?;
    namespaces.flatten().find_map(|ns| {
        let config = ns.path().join(id).join("config.json");
        let bytes = std::fs::read(&config).ok()?;
        let spec: Spec = serde_json::from_slice(&bytes).ok()?;
        let cgroups_path = spec.linux.and_then(|l| l.cgroups_path)?;
        cgroup_matches(&cgroups_path, cgroup).then(|| ContainerInfo {
            namespace: ns.file_name().to_string_lossy().into_owned(),
            id: id.to_string(),
            annotations: spec.annotations,
        })
    })
}

/// Whether an OCI `cgroupsPath` names the cgroup with these components. cgroupfs
/// paths are compared as a suffix, because a node that itself runs in a cgroup
/// (kind, k3d) sees the runtime's path below its own; the systemd driver's
/// `slice:prefix:name` becomes the leaf `prefix-name.scope`.
fn cgroup_matches(cgroups_path: &str, cgroup: &[&str]) -> bool {
    let Some(leaf) = cgroup.last() else {
        return false;
    };
    if !cgroups_path.starts_with('/') {
        let mut fields = cgroups_path.split(':');
        if let (Some(_slice), Some(prefix), Some(name), None) =
            (fields.next(), fields.next(), fields.next(), fields.next())
        {
            let scope = if prefix.is_empty() {
                format!("{name}.scope")
            } else {
                format!("{prefix}-{name}.scope")
            };
            return *leaf == scope;
        }
    }
    let wanted: Vec<&str> = cgroups_path.split('/').filter(|p| !p.is_empty()).collect();
    !wanted.is_empty() && cgroup.ends_with(&wanted)
}

/// The workload a container belongs to: its Kubernetes workload when it carries the
/// CRI labels, else the container itself.
pub fn workload_of(info: &ContainerInfo, resolvers: &[&dyn OwnerResolver]) -> WorkloadId {
    match PodContainer::from_annotations(&info.annotations) {
        Some(pod) => kubernetes::workload(&pod, &kubernetes::resolve_owner(&pod, resolvers)),
        None => WorkloadId::Container {
            runtime: "containerd".to_string(),
            id: info.id.clone(),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const CID: &str = "3f2a0c9e5b7d4e1f8a6b2c3d4e5f60718293a4b5c6d7e8f9a0b1c2d3e4f5a6b7";
    const UID: &str = "0f3b6c2e-9a1d-4c5e-8f7a-2b3c4d5e6f70";

    fn task(state: &Path, ns: &str, id: &str, cgroups_path: &str, labels: &[(&str, &str)]) {
        let dir = state.join(TASK_DIR).join(ns).join(id);
        std::fs::create_dir_all(&dir).unwrap();
        let annotations: HashMap<&str, &str> = labels.iter().copied().collect();
        let spec = serde_json::json!({
            "ociVersion": "1.0.2",
            "annotations": annotations,
            "linux": { "cgroupsPath": cgroups_path },
        });
        std::fs::write(dir.join("config.json"), spec.to_string()).unwrap();
    }

    fn labels(pod: &'static str) -> Vec<(&'static str, &'static str)> {
        vec![
            (kubernetes::LABEL_NAMESPACE, "default"),
            (kubernetes::LABEL_POD_NAME, pod),
            (kubernetes::LABEL_POD_UID, UID),
            (kubernetes::LABEL_CONTAINER, "server"),
        ]
    }

    #[test]
    fn cgroupfs_driver_containers_are_named_from_their_labels() {
        let state = tempfile::tempdir().unwrap();
        let cgroup = format!("/kubepods/besteffort/pod{UID}/{CID}");
        task(
            state.path(),
            "k8s.io",
            CID,
            &cgroup,
            &labels("web-6b474476c4-zq2x9"),
        );
        let meta = ContainerMetadata::new(vec![state.path().to_path_buf()]);
        let (id, naming) = meta.identify(&cgroup);
        assert_eq!(naming, Naming::Runtime);
        assert_eq!(id.name(), "default/Deployment/web/server");
        // Nested cgroups, and a node running in a cgroup of its own, find it too.
        assert_eq!(meta.identify(&format!("{cgroup}/sub")).0, id);
        assert_eq!(meta.identify(&format!("/node{cgroup}")).0, id);
    }

    #[test]
    fn systemd_driver_containers_are_found_by_their_scope() {
        let state = tempfile::tempdir().unwrap();
        let uid_ = UID.replace('-', "_");
        let slice = format!("kubepods-besteffort-pod{uid_}.slice");
        task(
            state.path(),
            "k8s.io",
            CID,
            &format!("{slice}:cri-containerd:{CID}"),
            &labels("db-0"),
        );
        let meta = ContainerMetadata::new(vec![state.path().to_path_buf()]);
        let path =
            format!("/kubepods.slice/kubepods-besteffort.slice/{slice}/cri-containerd-{CID}.scope");
        let (id, naming) = meta.identify(&path);
        assert_eq!(naming, Naming::Runtime);
        assert_eq!(id.name(), "default/StatefulSet/db/server");
    }

    #[test]
    fn plain_containers_keep_their_id_and_misses_fall_back_to_the_path() {
        let state = tempfile::tempdir().unwrap();
        task(state.path(), "default", "web-1", "/default/web-1", &[]);
        let meta = ContainerMetadata::new(vec![state.path().to_path_buf()]);
        assert_eq!(
            meta.identify("/default/web-1"),
            (
                WorkloadId::Container {
                    runtime: "containerd".into(),
                    id: "web-1".into()
                },
                Naming::Runtime
            )
        );
        // A different cgroup that happens to end in a known id is not that container.
        assert_eq!(meta.identify("/other/web-1").1, Naming::Path);
        let gone = format!("/kubepods/pod{UID}/{CID}");
        let (id, naming) = meta.identify(&gone);
        assert_eq!(naming, Naming::PathFallback);
        assert_eq!(id, workload::identify(&gone));
        let missing = ContainerMetadata::new(vec![state.path().join("absent")]);
        assert_eq!(missing.identify("/default/web-1").1, Naming::Path);
    }

    #[test]
    fn cgroup_ids_never_leave_the_task_directory() {
        assert_eq!(container_id_of(".."), None);
        assert_eq!(container_id_of("cri-containerd-.scope"), None);
        assert_eq!(container_id_of(&format!("crio-{CID}.scope")), Some(CID));
    }
}
