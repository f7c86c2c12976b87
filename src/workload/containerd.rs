//! containerd's containers: its runc shim keeps each running container's OCI bundle at
//! `<state>/io.containerd.runtime.v2.task/<namespace>/<id>/config.json`, written
//! before runc creates the container's cgroup and kept until the task is deleted.
//! Its `annotations` carry the CRI facts (kubelet's containers: the
//! `io.kubernetes.cri.*` annotations; `ctr run --label` copies labels there too) and
//! `linux.cgroupsPath` names the cgroup. containerd keeps no name but the id.

use std::path::Path;

use super::runtime::{ContainerInfo, Engine, OciSpec};

/// The runc v2 shim's task directory under the state directory.
const TASK_DIR: &str = "io.containerd.runtime.v2.task";

/// The task `id` in any namespace under `state`, if its spec says that `cgroup`
/// (path components from the v2 root) is its cgroup.
pub(super) fn find_task(state: &Path, id: &str, cgroup: &[&str]) -> Option<ContainerInfo> {
    let namespaces = std::fs::read_dir(state.join(TASK_DIR)).ok()?;
    namespaces.flatten().find_map(|ns| {
        let spec = OciSpec::read_for(&ns.path().join(id).join("config.json"), cgroup)?;
        Some(ContainerInfo {
            engine: Engine::Containerd,
            id: id.to_string(),
            name: None,
            image: None,
            annotations: spec.annotations,
        })
    })
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;
    use std::path::PathBuf;

    use super::*;
    use crate::workload::kubernetes;
    use crate::workload::runtime::{ContainerMetadata, EngineSettings, Naming};
    use crate::workload::{self, WorkloadId};

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

    /// Metadata from containerd state `state` alone (no other engine's directory).
    fn metadata(state: PathBuf) -> ContainerMetadata {
        let none = state.join("no-engine-here");
        ContainerMetadata::new(&EngineSettings {
            containerd_state: vec![state],
            docker_roots: vec![none.clone()],
            storage_roots: vec![none],
            ..EngineSettings::default()
        })
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
        let meta = metadata(state.path().to_path_buf());
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
        let meta = metadata(state.path().to_path_buf());
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
        let meta = metadata(state.path().to_path_buf());
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
        let missing = metadata(state.path().join("absent"));
        assert_eq!(missing.identify("/default/web-1").1, Naming::Path);
    }
}
