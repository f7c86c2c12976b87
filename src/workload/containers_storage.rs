//! Podman's and CRI-O's containers: both keep them in containers/storage. Each
//! container has a directory `<root>/<driver>-containers/<id>/` (`overlay-containers`
//! on most nodes) whose `userdata/config.json` is the OCI spec the container runs
//! with, written before its cgroup exists: `annotations` carry the CRI facts (CRI-O
//! writes kubelet's `io.kubernetes.*` there; `podman run --annotation` does too) and
//! `linux.cgroupsPath` names the cgroup. The container's name and image are in the
//! store's index beside it, `containers.json` (`volatile-containers.json` for
//! containers that do not outlive a reboot, such as `podman run --rm`): `names` and the
//! `image-name` of its `metadata`. Podman's spec is under the graph root
//! (`/var/lib/containers/storage`), CRI-O's under the run root
//! (`/run/containers/storage`), the index under the graph root, so both are read.
//! Cgroups: `libpod-<id>` (Podman) and `crio-<id>` (CRI-O), with `.scope` under systemd.

use std::path::{Path, PathBuf};

use serde::Deserialize;

use super::runtime::{ContainerInfo, Engine, OciSpec};

/// An entry of a containers/storage index.
#[derive(Deserialize)]
struct Listed {
    id: String,
    #[serde(default)]
    names: Vec<String>,
    /// JSON in a string, written by the engine; Podman and CRI-O put `image-name` there.
    #[serde(default)]
    metadata: String,
}

#[derive(Deserialize)]
struct ListedMetadata {
    #[serde(rename = "image-name", default)]
    image_name: String,
}

const INDEXES: [&str; 2] = ["containers.json", "volatile-containers.json"];

/// Container `id` of `engine` in any of the stores `roots`, if its spec says that
/// `cgroup` (path components from the v2 root) is its cgroup and a store lists it.
pub(super) fn find_container(
    roots: &[PathBuf],
    engine: Engine,
    id: &str,
    cgroup: &[&str],
) -> Option<ContainerInfo> {
    let layouts: Vec<PathBuf> = roots.iter().flat_map(|root| layouts(root)).collect();
    let spec = layouts
        .iter()
        .find_map(|dir| OciSpec::read_for(&dir.join(id).join("userdata/config.json"), cgroup))?;
    let listed = layouts.iter().find_map(|dir| listed(dir, id))?;
    let image = serde_json::from_str::<ListedMetadata>(&listed.metadata)
        .ok()
        .map(|m| m.image_name)
        .filter(|image| !image.is_empty());
    Some(ContainerInfo {
        engine,
        id: id.to_string(),
        name: listed.names.into_iter().next(),
        image,
        annotations: spec.annotations,
    })
}

/// The `<driver>-containers` directories of the store at `root`.
fn layouts(root: &Path) -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir(root) else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().ends_with("-containers"))
        .map(|e| e.path())
        .collect()
}

/// Container `id` as the index in `dir` lists it.
fn listed(dir: &Path, id: &str) -> Option<Listed> {
    INDEXES.iter().find_map(|index| {
        let bytes = std::fs::read(dir.join(index)).ok()?;
        let entries: Vec<Listed> = serde_json::from_slice(&bytes).ok()?;
        entries.into_iter().find(|e| e.id == id)
    })
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;
    use crate::workload::kubernetes;
    use crate::workload::runtime::{ContainerMetadata, ContainerNames, EngineSettings, Naming};

    const CID: &str = "376227b79fb57b08ba49345aa59fe01500c13f008d9846a74e445417a7a9de10";
    const UID: &str = "0f3b6c2e-9a1d-4c5e-8f7a-2b3c4d5e6f70";

    /// A container as Podman 4.3 stores it: the spec under `spec_root`, the index
    /// entry (`index`) under `index_root`.
    struct Stored<'a> {
        cgroups_path: String,
        annotations: &'a [(&'a str, &'a str)],
        name: &'a str,
        image: &'a str,
        index: &'a str,
    }

    fn store(spec_root: &Path, index_root: &Path, c: &Stored) {
        let userdata = spec_root
            .join("overlay-containers")
            .join(CID)
            .join("userdata");
        std::fs::create_dir_all(&userdata).unwrap();
        let annotations: HashMap<&str, &str> = c.annotations.iter().copied().collect();
        let spec = serde_json::json!({
            "ociVersion": "1.0.2-dev",
            "annotations": annotations,
            "linux": {"cgroupsPath": c.cgroups_path},
        });
        std::fs::write(userdata.join("config.json"), spec.to_string()).unwrap();
        let metadata = serde_json::json!({"image-name": c.image, "name": c.name});
        let index = serde_json::json!([
            {"id": "0".repeat(64), "names": ["other"], "metadata": "{}"},
            {"id": CID, "names": [c.name], "image": "4d902a0a8ab2",
             "metadata": metadata.to_string()},
        ]);
        let dir = index_root.join("overlay-containers");
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join(c.index), index.to_string()).unwrap();
    }

    fn metadata(roots: Vec<PathBuf>, names: ContainerNames) -> ContainerMetadata {
        let none = roots[0].join("no-engine-here");
        ContainerMetadata::new(&EngineSettings {
            containerd_state: vec![none.clone()],
            docker_roots: vec![none],
            storage_roots: roots,
            names,
        })
    }

    #[test]
    fn podman_containers_are_named_in_both_cgroup_layouts() {
        for (cgroups_path, path, index) in [
            (
                format!("/libpod_parent/libpod-{CID}"),
                format!("/libpod_parent/libpod-{CID}"),
                "containers.json",
            ),
            (
                format!("machine.slice:libpod:{CID}"),
                format!("/machine.slice/libpod-{CID}.scope/container"),
                "volatile-containers.json",
            ),
        ] {
            let root = tempfile::tempdir().unwrap();
            let stored = Stored {
                cgroups_path,
                annotations: &[("io.container.manager", "libpod")],
                name: "web",
                image: "localhost/shop/web:2.1",
                index,
            };
            store(root.path(), root.path(), &stored);
            let roots = vec![root.path().to_path_buf()];
            let by_name = metadata(roots.clone(), ContainerNames::Name);
            let (id, naming) = by_name.identify(&path);
            assert_eq!(
                (id.name().as_str(), naming),
                ("podman/web", Naming::Runtime)
            );
            let by_image = metadata(roots, ContainerNames::Image);
            assert_eq!(
                by_image.identify(&path).0.name(),
                "podman/image/localhost/shop/web"
            );
            // The conmon beside it, and a cgroup elsewhere with the same leaf, are not it.
            let conmon = format!("/machine.slice/libpod-conmon-{CID}.scope");
            assert_ne!(by_name.identify(&conmon).1, Naming::Runtime);
            let elsewhere = format!("/elsewhere/libpod-{CID}");
            assert_ne!(by_name.identify(&elsewhere).1, Naming::Runtime);
        }
    }

    #[test]
    fn crio_containers_with_kubernetes_annotations_are_kubernetes_workloads() {
        let (graph, run) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        let uid_ = UID.replace('-', "_");
        let slice = format!("kubepods-besteffort-pod{uid_}.slice");
        let stored = Stored {
            cgroups_path: format!("{slice}:crio:{CID}"),
            annotations: &[
                (kubernetes::LABEL_NAMESPACE, "shop"),
                (kubernetes::LABEL_POD_NAME, "db-0"),
                (kubernetes::LABEL_POD_UID, UID),
                (kubernetes::LABEL_CONTAINER, "postgres"),
            ],
            name: "k8s_postgres_db-0_shop_0f3b6c2e_0",
            image: "docker.io/library/postgres:16",
            index: "containers.json",
        };
        // CRI-O: the spec in the run root, the index in the graph root.
        store(run.path(), graph.path(), &stored);
        let meta = metadata(
            vec![graph.path().to_path_buf(), run.path().to_path_buf()],
            ContainerNames::Image,
        );
        let path = format!("/kubepods.slice/kubepods-besteffort.slice/{slice}/crio-{CID}.scope");
        let (id, naming) = meta.identify(&path);
        assert_eq!(naming, Naming::Runtime);
        assert_eq!(id.name(), "shop/StatefulSet/db/postgres");
        // Without the index the container cannot be named: the path names it.
        std::fs::remove_file(graph.path().join("overlay-containers/containers.json")).unwrap();
        assert_eq!(meta.identify(&path).1, Naming::PathFallback);
    }
}
