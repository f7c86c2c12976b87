//! The Kubernetes facts of a workload, each as a field of its own (for violation
//! events: a SIEM filters on namespace or pod, not on the folded `workload` name).
//! Only what naming knows is stated; what it does not know is left out, never guessed.

use serde::Serialize;

use super::kubernetes::PodContainer;
use super::runtime::ContainerMetadata;
use super::WorkloadId;

/// Where the Kubernetes node's name comes from (the downward API's `spec.nodeName`
/// in the DaemonSets): the host name of a pod is the pod's, not the node's.
pub const NODE_NAME_ENV: &str = "FINGERPRINT_NODE_NAME";

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct KubernetesFacts {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pod: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pod_uid: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub container: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub container_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub owner: Option<Owner>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub node: Option<String>,
}

/// The pod's controller, as naming found it (`source`: "kubernetes-api" or "pod-name").
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Owner {
    pub kind: String,
    pub name: String,
    pub source: String,
}

impl KubernetesFacts {
    /// The facts of `workload` (whose cgroup is `cgroup_path`), the pod's name and
    /// container id from the runtime's metadata; `node` as configured.
    pub fn of(
        workload: &WorkloadId,
        cgroup_path: &str,
        metadata: &ContainerMetadata,
        node: Option<&str>,
    ) -> KubernetesFacts {
        let mut facts = KubernetesFacts {
            node: node.map(str::to_owned),
            ..KubernetesFacts::default()
        };
        match workload {
            WorkloadId::KubernetesWorkload {
                namespace,
                owner_kind,
                owner_name,
                container,
                owner_source,
            } => {
                facts.namespace = Some(namespace.clone());
                facts.container = Some(container.clone());
                facts.owner = Some(Owner {
                    kind: owner_kind.clone(),
                    name: owner_name.clone(),
                    source: owner_source.clone(),
                });
                if let Some(info) = metadata.lookup(cgroup_path) {
                    facts.container_id = Some(info.id.clone());
                    if let Some(pod) = PodContainer::from_annotations(&info.annotations) {
                        facts.pod = Some(pod.pod_name);
                        facts.pod_uid = pod.pod_uid;
                    }
                }
            }
            // Known from the cgroup path alone: no names, only ids.
            WorkloadId::KubernetesContainer {
                pod_uid,
                container_id,
                ..
            } => {
                facts.pod_uid = Some(pod_uid.clone());
                facts.container_id = Some(container_id.clone());
            }
            _ => {}
        }
        facts
    }

    pub fn is_empty(&self) -> bool {
        *self == KubernetesFacts::default()
    }
}

/// The node's name from `NODE_NAME_ENV`, if set and not empty.
pub fn node_name() -> Option<String> {
    std::env::var(NODE_NAME_ENV).ok().filter(|n| !n.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_workload_outside_kubernetes_has_only_the_node() {
        let unit = WorkloadId::SystemdUnit {
            unit: "nginx.service".into(),
        };
        let none = ContainerMetadata::default();
        let facts = KubernetesFacts::of(&unit, "/system.slice/nginx.service", &none, None);
        assert!(facts.is_empty());
        let facts = KubernetesFacts::of(&unit, "/system.slice/nginx.service", &none, Some("n1"));
        assert_eq!(facts.node.as_deref(), Some("n1"));
    }

    #[test]
    fn a_named_workload_states_namespace_container_and_owner() {
        let workload = WorkloadId::KubernetesWorkload {
            namespace: "shop".into(),
            owner_kind: "Deployment".into(),
            owner_name: "web".into(),
            container: "nginx".into(),
            owner_source: "pod-name".into(),
        };
        let none = ContainerMetadata::default();
        let facts = KubernetesFacts::of(&workload, "/kubepods/x", &none, None);
        assert_eq!(facts.namespace.as_deref(), Some("shop"));
        assert_eq!(facts.container.as_deref(), Some("nginx"));
        assert_eq!(
            facts.owner.as_ref().map(|o| o.kind.as_str()),
            Some("Deployment")
        );
        assert_eq!(facts.pod, None, "no metadata: the pod's name is not known");
        let json = serde_json::to_value(&facts).unwrap();
        assert!(
            json.get("pod").is_none(),
            "unknown facts are left out: {json}"
        );
    }
}
