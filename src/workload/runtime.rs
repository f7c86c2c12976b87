//! Container metadata lookup: which container a cgroup belongs to, and what its engine
//! knows of it (name, image, labels), read from the engines' own files on this node.
//!
//! One module per on-disk layout reads it: [`super::containerd`] (containerd's runc
//! shim bundles), [`super::docker`] (dockerd's `config.v2.json`) and
//! [`super::containers_storage`] (Podman's and CRI-O's `userdata/config.json`). This
//! module picks the engines a cgroup can belong to from its directory name, asks
//! them, and names the container: its Kubernetes workload when it carries the CRI
//! labels, else by the engine's name for it (or its image, see [`ContainerNames`]).
//! No socket, no client and no network: read-only mounts of the engines' directories
//! are enough, and a lookup costs a few `stat`s and a small JSON read per new container.
//!
//! A lookup that fails never stops learning or enforcement: the caller falls back to
//! the name the cgroup path alone gives (`workload::identify`) and counts the miss.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::Deserialize;

use super::{containerd, containers_storage, docker};
use crate::workload::kubeapi::{ApiError, ApiOwners, ApiSettings, ApiStats};
use crate::workload::kubernetes::{self, OwnerResolver, PodContainer, PodNameRules};
use crate::workload::{self, WorkloadId};

/// Where containerd keeps its state unless told otherwise.
pub const DEFAULT_CONTAINERD_STATE: &str = "/run/containerd";
/// Environment variable that overrides the state directory (flags win over it).
pub const CONTAINERD_STATE_ENV: &str = "FINGERPRINT_CONTAINERD_STATE";
/// dockerd's data root (`--data-root`) unless told otherwise.
pub const DEFAULT_DOCKER_ROOT: &str = "/var/lib/docker";
pub const DOCKER_ROOT_ENV: &str = "FINGERPRINT_DOCKER_ROOT";
/// containers/storage's graph root (Podman's and CRI-O's `root`) and run root
/// (`runroot`, where CRI-O keeps its bundles), unless told otherwise.
pub const DEFAULT_CONTAINERS_STORAGE: [&str; 2] =
    ["/var/lib/containers/storage", "/run/containers/storage"];
pub const CONTAINERS_STORAGE_ENV: &str = "FINGERPRINT_CONTAINERS_STORAGE";

/// The engines that may own a cgroup directory `<prefix><id>[.scope]`, first prefix
/// that matches, asked in order. Docker before containerd: a dockerd that uses the
/// node's containerd leaves its bundles there too (namespace "moby"), and Docker's
/// own name for the container is the one wanted. CRI-O's and Podman's monitors
/// (`crio-conmon-<id>`, `libpod-conmon-<id>`) leave `conmon-<id>`: no container.
const LEAVES: [(&str, &[Engine]); 6] = [
    ("cri-containerd-", &[Engine::Containerd]),
    ("nerdctl-", &[Engine::Containerd]),
    ("docker-", &[Engine::Docker, Engine::Containerd]),
    ("libpod-", &[Engine::Podman]),
    ("crio-", &[Engine::Crio]),
    ("", &[Engine::Docker, Engine::Containerd]),
];

/// A container engine whose metadata names containers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Engine {
    Containerd,
    Docker,
    Podman,
    Crio,
}

impl Engine {
    /// The first part of its containers' names (`docker/web`).
    pub fn name(self) -> &'static str {
        match self {
            Engine::Containerd => "containerd",
            Engine::Docker => "docker",
            Engine::Podman => "podman",
            Engine::Crio => "crio",
        }
    }
}

/// How a standalone engine's container (not a Kubernetes one) is named.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum ContainerNames {
    /// By the container's name: `docker/web`. A container recreated under the same
    /// name keeps its profile.
    #[default]
    Name,
    /// By its image's repository (no tag, no digest): `docker/image/nginx`. Every
    /// container of that image shares one profile, whatever its name. A container
    /// started from an image id has no repository and is named by its name.
    Image,
}

/// The facts about one container that naming needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContainerInfo {
    pub engine: Engine,
    pub id: String,
    /// The engine's own name for it, and the image it was started from (Docker and
    /// containers/storage keep them; containerd has neither).
    pub name: Option<String>,
    pub image: Option<String>,
    /// OCI annotations or the engine's labels: the CRI facts of a Kubernetes container.
    pub annotations: HashMap<String, String>,
}

/// The part of an OCI runtime spec (`config.json`) that naming reads.
#[derive(Deserialize)]
pub(super) struct OciSpec {
    #[serde(default)]
    pub annotations: HashMap<String, String>,
    #[serde(default)]
    linux: Option<LinuxSpec>,
}

#[derive(Deserialize)]
struct LinuxSpec {
    #[serde(rename = "cgroupsPath", default)]
    cgroups_path: Option<String>,
}

impl OciSpec {
    /// The spec at `path`, if it is readable and says that `cgroup` (path components
    /// from the v2 root) is its container's cgroup.
    pub(super) fn read_for(path: &Path, cgroup: &[&str]) -> Option<OciSpec> {
        let spec: OciSpec = serde_json::from_slice(&std::fs::read(path).ok()?).ok()?;
        let cgroups_path = spec.linux.as_ref()?.cgroups_path.as_deref()?;
        cgroup_matches(cgroups_path, cgroup).then_some(spec)
    }
}

/// Where each engine keeps its metadata; empty lists mean the defaults.
#[derive(Debug, Clone, Default)]
pub struct EngineSettings {
    pub containerd_state: Vec<PathBuf>,
    pub docker_roots: Vec<PathBuf>,
    pub storage_roots: Vec<PathBuf>,
    pub names: ContainerNames,
}

/// Looks containers up in the engines' directories, and the owners of Kubernetes
/// pods in the API when one is given (else from pod names).
#[derive(Debug, Clone)]
pub struct ContainerMetadata {
    containerd: Vec<PathBuf>,
    docker: Vec<PathBuf>,
    storage: Vec<PathBuf>,
    names: ContainerNames,
    /// Shared by every copy, so that learning or enforcement asks once per pod.
    api: Option<Arc<ApiOwners>>,
}

impl Default for ContainerMetadata {
    /// Every engine's directories from the environment, else their defaults.
    fn default() -> Self {
        ContainerMetadata::new(&EngineSettings::default())
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

/// `given` if not empty, else the directories in `env` (`:`-separated), else `default`.
fn dirs_or(given: &[PathBuf], env: &str, default: &[&str]) -> Vec<PathBuf> {
    if !given.is_empty() {
        return given.to_vec();
    }
    match std::env::var_os(env).filter(|d| !d.is_empty()) {
        Some(dirs) => std::env::split_paths(&dirs).collect(),
        None => default.iter().map(PathBuf::from).collect(),
    }
}

impl ContainerMetadata {
    /// The engines' directories as given, else from the environment, else defaults.
    pub fn new(settings: &EngineSettings) -> ContainerMetadata {
        ContainerMetadata {
            containerd: dirs_or(
                &settings.containerd_state,
                CONTAINERD_STATE_ENV,
                &[DEFAULT_CONTAINERD_STATE],
            ),
            docker: dirs_or(
                &settings.docker_roots,
                DOCKER_ROOT_ENV,
                &[DEFAULT_DOCKER_ROOT],
            ),
            storage: dirs_or(
                &settings.storage_roots,
                CONTAINERS_STORAGE_ENV,
                &DEFAULT_CONTAINERS_STORAGE,
            ),
            names: settings.names,
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

    /// The engines' directories from `settings`; pod owners from the API that `kube`
    /// selects, if any.
    pub fn from_flags(
        settings: &EngineSettings,
        kube: &ApiSettings,
    ) -> Result<ContainerMetadata, ApiError> {
        Ok(ContainerMetadata::new(settings).with_api(ApiOwners::open(kube)?))
    }

    /// How often the Kubernetes API could not be used; None: not asked.
    pub fn api_stats(&self) -> Option<ApiStats> {
        self.api.as_ref().map(|api| api.stats())
    }

    /// Every directory containers are named from, for messages.
    pub fn sources(&self) -> Vec<&Path> {
        [&self.containerd, &self.docker, &self.storage]
            .into_iter()
            .flatten()
            .map(PathBuf::as_path)
            .collect()
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
            Some(api) => workload_of(info, &[api.as_ref(), &PodNameRules], self.names),
            None => workload_of(info, &[&PodNameRules], self.names),
        }
    }

    /// The container whose cgroup is `path` or an ancestor of it. Components are
    /// tried from the leaf up, so a nested cgroup finds its container.
    pub fn lookup(&self, path: &str) -> Option<ContainerInfo> {
        let parts: Vec<&str> = path.split('/').filter(|p| !p.is_empty()).collect();
        (0..parts.len()).rev().find_map(|i| {
            let (engines, id) = engines_of(parts[i])?;
            engines
                .iter()
                .find_map(|engine| self.read(*engine, id, &parts[..=i]))
        })
    }

    /// What `engine` knows of container `id`, whose cgroup is `cgroup`.
    fn read(&self, engine: Engine, id: &str, cgroup: &[&str]) -> Option<ContainerInfo> {
        match engine {
            Engine::Containerd => self
                .containerd
                .iter()
                .find_map(|dir| containerd::find_task(dir, id, cgroup)),
            Engine::Docker => self
                .docker
                .iter()
                .find_map(|dir| docker::find_container(dir, id, cgroup)),
            Engine::Podman | Engine::Crio => {
                containers_storage::find_container(&self.storage, engine, id, cgroup)
            }
        }
    }
}

/// The engines a cgroup directory name may belong to, and the container id it
/// stands for: without the engine's prefix and `.scope` suffix.
fn engines_of(leaf: &str) -> Option<(&'static [Engine], &str)> {
    let stem = leaf.strip_suffix(".scope").unwrap_or(leaf);
    let (engines, id) = LEAVES
        .iter()
        .find_map(|(prefix, engines)| Some((*engines, stem.strip_prefix(prefix)?)))?;
    // A container id is one directory name: nothing that could walk elsewhere.
    (!id.is_empty() && id != "." && id != ".." && !id.contains('/')).then_some((engines, id))
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
/// CRI labels, else the container by its engine's name for it (or its image, as
/// `names` says), else by its id.
pub fn workload_of(
    info: &ContainerInfo,
    resolvers: &[&dyn OwnerResolver],
    names: ContainerNames,
) -> WorkloadId {
    if let Some(pod) = PodContainer::from_annotations(&info.annotations) {
        return kubernetes::workload(&pod, &kubernetes::resolve_owner(&pod, resolvers));
    }
    let engine = info.engine.name().to_string();
    let repository = info.image.as_deref().and_then(repository);
    match (&info.name, repository) {
        (_, Some(repository)) if names == ContainerNames::Image => WorkloadId::EngineContainer {
            engine,
            by: "image".into(),
            name: repository.to_string(),
        },
        (Some(name), _) => WorkloadId::EngineContainer {
            engine,
            by: "name".into(),
            name: name.clone(),
        },
        (None, _) => WorkloadId::Container {
            runtime: engine,
            id: info.id.clone(),
        },
    }
}

/// An image reference's repository: without its digest and tag
/// (`registry:5000/team/app:v2@sha256:...` -> `registry:5000/team/app`). None for an
/// image id (`sha256:...`, or hex as `docker run <id>` records it).
fn repository(image: &str) -> Option<&str> {
    let image = image.split_once('@').map_or(image, |(name, _)| name);
    let is_id = image.starts_with("sha256:")
        || ((12..=64).contains(&image.len()) && image.bytes().all(|b| b.is_ascii_hexdigit()));
    if is_id {
        return None;
    }
    // A ':' after the last '/' starts the tag; one before it is a registry's port.
    let name = match image.rsplit_once(':') {
        Some((name, tag)) if !tag.contains('/') => name,
        _ => image,
    };
    (!name.is_empty()).then_some(name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cgroup_names_select_engines_and_never_leave_their_directories() {
        let cid = "3f2a0c9e5b7d";
        assert_eq!(engines_of(".."), None);
        assert_eq!(engines_of("cri-containerd-.scope"), None);
        assert_eq!(
            engines_of(&format!("crio-{cid}.scope")),
            Some((&[Engine::Crio][..], cid))
        );
        assert_eq!(
            engines_of(&format!("libpod-{cid}")),
            Some((&[Engine::Podman][..], cid))
        );
        assert_eq!(
            engines_of(&format!("docker-{cid}.scope")),
            Some((&[Engine::Docker, Engine::Containerd][..], cid))
        );
        assert_eq!(
            engines_of(cid),
            Some((&[Engine::Docker, Engine::Containerd][..], cid))
        );
        // A monitor's scope names no container id.
        let conmon = format!("libpod-conmon-{cid}.scope");
        assert_eq!(engines_of(&conmon).unwrap().1, format!("conmon-{cid}"));
    }

    #[test]
    fn repositories_drop_tags_and_digests_but_not_ports() {
        for (image, repo) in [
            ("nginx", Some("nginx")),
            ("nginx:1.25", Some("nginx")),
            ("localhost/fp:1", Some("localhost/fp")),
            ("registry:5000/team/app:v2", Some("registry:5000/team/app")),
            ("registry:5000/team/app", Some("registry:5000/team/app")),
            ("app@sha256:0123", Some("app")),
            ("app:v1@sha256:0123", Some("app")),
            ("sha256:4e1cec50297d65a0", None),
            ("4e1cec50297d", None),
            (":v1", None),
        ] {
            assert_eq!(repository(image), repo, "{image}");
        }
    }

    fn info(name: Option<&str>, image: Option<&str>) -> ContainerInfo {
        ContainerInfo {
            engine: Engine::Docker,
            id: "3f2a0c9e5b7d".into(),
            name: name.map(str::to_string),
            image: image.map(str::to_string),
            annotations: HashMap::new(),
        }
    }

    #[test]
    fn engine_containers_are_named_by_the_chosen_rule() {
        let name = |info: &ContainerInfo, names| workload_of(info, &[&PodNameRules], names).name();
        let web = info(Some("web"), Some("nginx:1.25"));
        assert_eq!(name(&web, ContainerNames::Name), "docker/web");
        assert_eq!(name(&web, ContainerNames::Image), "docker/image/nginx");
        // No repository (started from an image id): by name, whatever the rule.
        let by_id = info(Some("web"), Some("4e1cec50297d"));
        assert_eq!(name(&by_id, ContainerNames::Image), "docker/web");
        assert_eq!(
            name(&info(None, None), ContainerNames::Image),
            "docker/3f2a0c9e5b7d"
        );
    }
}
