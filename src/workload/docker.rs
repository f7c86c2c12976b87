//! Docker's containers: dockerd keeps each container's configuration at
//! `<data-root>/containers/<id>/config.v2.json` (`/var/lib/docker` by default), written
//! (atomically) when the container is created, before it is started, and kept until
//! it is removed. `Name` is the container's name (with a leading '/'), `Config.Image`
//! the image as it was asked for, `Config.Labels` its labels (cri-dockerd's
//! Kubernetes containers carry the CRI labels there). dockerd's cgroup for a container
//! is `<parent>/<id>` with the cgroupfs driver (`/docker/<id>` by default) and
//! `docker-<id>.scope` with the systemd driver; the id is the full 64-digit one.

use std::collections::HashMap;
use std::path::Path;

use serde::Deserialize;

use super::runtime::{ContainerInfo, Engine};

#[derive(Deserialize)]
struct ConfigV2 {
    #[serde(rename = "ID")]
    id: String,
    #[serde(rename = "Name")]
    name: String,
    #[serde(rename = "Config", default)]
    config: Option<Config>,
}

#[derive(Deserialize)]
struct Config {
    #[serde(rename = "Image", default)]
    image: String,
    #[serde(rename = "Labels", default)]
    labels: Option<HashMap<String, String>>,
}

/// Container `id` of the dockerd whose data root is `root`, if `cgroup` (path
/// components from the v2 root) ends in a cgroup dockerd makes for it.
pub(super) fn find_container(root: &Path, id: &str, cgroup: &[&str]) -> Option<ContainerInfo> {
    let leaf = *cgroup.last()?;
    if leaf != id && leaf != format!("docker-{id}.scope") {
        return None;
    }
    let path = root.join("containers").join(id).join("config.v2.json");
    let config: ConfigV2 = serde_json::from_slice(&std::fs::read(path).ok()?).ok()?;
    let name = config.name.trim_start_matches('/');
    if config.id != id || name.is_empty() {
        return None;
    }
    let (image, labels) = config
        .config
        .map(|c| (c.image, c.labels.unwrap_or_default()))
        .unwrap_or_default();
    Some(ContainerInfo {
        engine: Engine::Docker,
        id: id.to_string(),
        name: Some(name.to_string()),
        image: (!image.is_empty()).then_some(image),
        annotations: labels,
    })
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use super::*;
    use crate::workload::runtime::{ContainerMetadata, ContainerNames, EngineSettings, Naming};
    use crate::workload::{self, kubernetes};

    const CID: &str = "d7944d647ed33347a2594e6467bcbc5d09d5a05cab7992183c597ca909339afb";

    /// A container as dockerd 20.10 writes it (the fields naming reads, and some it
    /// does not).
    fn container(root: &Path, id: &str, name: &str, image: &str, labels: &[(&str, &str)]) {
        let dir = root.join("containers").join(id);
        std::fs::create_dir_all(&dir).unwrap();
        let labels: HashMap<&str, &str> = labels.iter().copied().collect();
        let config = serde_json::json!({
            "State": {"Running": true, "Pid": 3053},
            "ID": id,
            "Name": format!("/{name}"),
            "Path": "sleep",
            "Config": {"Hostname": &id[..12], "Cmd": ["sleep", "600"], "Image": image,
                       "Labels": labels},
            "Image": "sha256:4e1cec50297d65a00866806600b16e6710a5c314754d0b8edca75b587f69d9fb",
        });
        std::fs::write(dir.join("config.v2.json"), config.to_string()).unwrap();
    }

    fn metadata(root: PathBuf, names: ContainerNames) -> ContainerMetadata {
        let none = root.join("no-engine-here");
        ContainerMetadata::new(&EngineSettings {
            containerd_state: vec![none.clone()],
            docker_roots: vec![root],
            storage_roots: vec![none],
            names,
        })
    }

    #[test]
    fn containers_are_named_by_name_or_image_in_both_cgroup_layouts() {
        let root = tempfile::tempdir().unwrap();
        container(root.path(), CID, "web", "registry:5000/shop/web:2.1", &[]);
        let by_name = metadata(root.path().to_path_buf(), ContainerNames::Name);
        let by_image = metadata(root.path().to_path_buf(), ContainerNames::Image);
        for path in [
            format!("/docker/{CID}"),
            format!("/custom-parent/{CID}"),
            format!("/system.slice/docker-{CID}.scope"),
            format!("/system.slice/docker-{CID}.scope/init.scope"),
        ] {
            let (id, naming) = by_name.identify(&path);
            assert_eq!(
                (id.name().as_str(), naming),
                ("docker/web", Naming::Runtime)
            );
            assert_eq!(
                by_image.identify(&path).0.name(),
                "docker/image/registry:5000/shop/web",
                "{path}"
            );
        }
    }

    #[test]
    fn only_dockers_own_cgroup_names_and_ids_are_its_containers() {
        let root = tempfile::tempdir().unwrap();
        container(root.path(), CID, "web", "nginx", &[]);
        let meta = metadata(root.path().to_path_buf(), ContainerNames::Name);
        // Another engine's scope, a short id, a missing container: not Docker's.
        for path in [
            format!("/machine.slice/libpod-{CID}.scope"),
            format!("/docker/{}", &CID[..12]),
        ] {
            assert_eq!(meta.identify(&path).1, Naming::PathFallback, "{path}");
            assert_eq!(meta.identify(&path).0, workload::identify(&path));
        }
        let gone = format!("/docker/{}", CID.replace('d', "e"));
        assert_eq!(meta.identify(&gone).1, Naming::PathFallback);
    }

    #[test]
    fn cri_dockerd_containers_are_kubernetes_workloads() {
        let root = tempfile::tempdir().unwrap();
        let labels = [
            (kubernetes::LABEL_NAMESPACE, "shop"),
            (kubernetes::LABEL_POD_NAME, "web-6b474476c4-zq2x9"),
            (kubernetes::LABEL_CONTAINER, "server"),
        ];
        container(root.path(), CID, "k8s_server_web", "nginx", &labels);
        let meta = metadata(root.path().to_path_buf(), ContainerNames::Name);
        let (id, _) = meta.identify(&format!("/kubepods/besteffort/pod1234abcd/{CID}"));
        assert_eq!(id.name(), "shop/Deployment/web/server");
    }
}
