//! Kubernetes workload identity: which Deployment, StatefulSet, DaemonSet, Job or
//! CronJob a pod belongs to, so that every replica on every node shares one profile.
//!
//! A pod's owner is authoritative only in the Kubernetes API (its `ownerReferences`).
//! A node agent that learns offline, or whose API access is down, still has the
//! pod's name, and the controllers name their pods in a fixed way; [`PodNameRules`]
//! reads the owner from that. Which source named the owner is kept with the workload
//! (`owner_source`), so a reviewer can tell a guess from a fact.
//!
//! Resolvers are tried in order by [`resolve_owner`]: the API-backed one
//! ([`crate::workload::kubeapi::ApiOwners`]: the pod's controller from its `ownerReferences`,
//! ReplicaSet -> Deployment, Job -> CronJob) when there is an API to ask, then
//! [`PodNameRules`], which always answers and so names the pod whenever the API
//! cannot (not configured, unreachable, forbidden, or another pod by that name).

use std::collections::HashMap;

use crate::workload::WorkloadId;

/// CRI labels that kubelet sets on every container (`ctr run --label` puts them in
/// the OCI spec's annotations too).
pub const LABEL_NAMESPACE: &str = "io.kubernetes.pod.namespace";
pub const LABEL_POD_NAME: &str = "io.kubernetes.pod.name";
pub const LABEL_POD_UID: &str = "io.kubernetes.pod.uid";
pub const LABEL_CONTAINER: &str = "io.kubernetes.container.name";

/// The annotations containerd's CRI plugin writes into each container's OCI spec:
/// the same facts, under the names a real node's `config.json` carries.
const CRI_NAMESPACE: &str = "io.kubernetes.cri.sandbox-namespace";
const CRI_POD_NAME: &str = "io.kubernetes.cri.sandbox-name";
const CRI_POD_UID: &str = "io.kubernetes.cri.sandbox-uid";
const CRI_CONTAINER: &str = "io.kubernetes.cri.container-name";
const CRI_CONTAINER_TYPE: &str = "io.kubernetes.cri.container-type";

/// The pod a container belongs to, as its runtime metadata states it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PodContainer {
    pub namespace: String,
    pub pod_name: String,
    pub pod_uid: Option<String>,
    pub container: String,
}

impl PodContainer {
    /// From a container's labels or OCI annotations; None when it is no Kubernetes
    /// container (or the facts are incomplete).
    pub fn from_annotations(annotations: &HashMap<String, String>) -> Option<PodContainer> {
        let get = |label: &str, cri: &str| {
            annotations
                .get(label)
                .or_else(|| annotations.get(cri))
                .filter(|v| !v.is_empty())
                .cloned()
        };
        let namespace = get(LABEL_NAMESPACE, CRI_NAMESPACE)?;
        let pod_name = get(LABEL_POD_NAME, CRI_POD_NAME)?;
        // The sandbox (pause) container has no container name; kubelet calls it "POD".
        let container = get(LABEL_CONTAINER, CRI_CONTAINER).or_else(|| {
            (annotations.get(CRI_CONTAINER_TYPE).map(String::as_str) == Some("sandbox"))
                .then(|| "POD".to_string())
        })?;
        Some(PodContainer {
            namespace,
            pod_name,
            pod_uid: get(LABEL_POD_UID, CRI_POD_UID),
            container,
        })
    }
}

/// How an owner was found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OwnerSource {
    /// From the pod's name and the controllers' naming conventions.
    PodName,
    /// From the Kubernetes API (ownerReferences); see `crate::workload::kubeapi`.
    KubernetesApi,
}

impl OwnerSource {
    pub fn name(self) -> &'static str {
        match self {
            OwnerSource::PodName => "pod-name",
            OwnerSource::KubernetesApi => "kubernetes-api",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Owner {
    /// "Deployment", "StatefulSet", "DaemonSet", "Job", "CronJob" or "Pod"; from pod
    /// names also "DaemonSetOrJob", from the API any other controller's kind.
    pub kind: String,
    pub name: String,
    pub source: OwnerSource,
}

/// Something that can tell the owner of a pod.
pub trait OwnerResolver {
    fn owner(&self, pod: &PodContainer) -> Option<Owner>;
}

/// The owner from the pod name alone (see [`owner_from_pod_name`]).
pub struct PodNameRules;

impl OwnerResolver for PodNameRules {
    fn owner(&self, pod: &PodContainer) -> Option<Owner> {
        let (kind, name) = owner_from_pod_name(&pod.pod_name);
        Some(Owner {
            kind: kind.to_string(),
            name: name.to_string(),
            source: OwnerSource::PodName,
        })
    }
}

/// The first resolver that knows wins; [`PodNameRules`] always answers, so put it last.
pub fn resolve_owner(pod: &PodContainer, resolvers: &[&dyn OwnerResolver]) -> Owner {
    resolvers
        .iter()
        .find_map(|r| r.owner(pod))
        .unwrap_or_else(|| Owner {
            kind: "Pod".to_string(),
            name: pod.pod_name.clone(),
            source: OwnerSource::PodName,
        })
}

/// The workload of a Kubernetes container.
pub fn workload(pod: &PodContainer, owner: &Owner) -> WorkloadId {
    WorkloadId::KubernetesWorkload {
        namespace: pod.namespace.clone(),
        owner_kind: owner.kind.clone(),
        owner_name: owner.name.clone(),
        container: pod.container.clone(),
        owner_source: owner.source.name().to_string(),
    }
}

/// Characters of the random suffixes and of pod-template-hash
/// (`k8s.io/apimachinery/pkg/util/rand`: no vowels, no 0, 1 or 3).
const SAFE_ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";

fn is_safe(s: &str, len: std::ops::RangeInclusive<usize>) -> bool {
    len.contains(&s.len()) && s.bytes().all(|b| SAFE_ALPHABET.contains(&b))
}

/// Owner kind and name from a pod name, by the controllers' naming:
/// - CronJob: `<cronjob>-<scheduled time in minutes>-<5 random>` (the Job is
///   `<cronjob>-<minutes>`);
/// - Deployment: `<deployment>-<pod-template-hash>-<5 random>`; the hash is 6 to 10
///   safe characters (a ReplicaSet without a Deployment looks the same);
/// - StatefulSet: `<statefulset>-<ordinal>`;
/// - `<name>-<5 random>`: a DaemonSet's or a Job's pod; the name cannot tell them
///   apart, so the kind says so ("DaemonSetOrJob") rather than guess;
/// - anything else is a bare pod, its own owner (static pods carry the node name:
///   each node's copy is a workload of its own).
pub fn owner_from_pod_name(pod: &str) -> (&'static str, &str) {
    let parts: Vec<&str> = pod.rsplitn(3, '-').collect();
    // parts: [last, middle, rest] read from the end.
    if let [last, middle, rest] = parts[..] {
        if is_safe(last, 5..=5) && !rest.is_empty() {
            if middle.len() >= 7 && middle.bytes().all(|b| b.is_ascii_digit()) {
                return ("CronJob", rest);
            }
            if is_safe(middle, 6..=10) {
                return ("Deployment", rest);
            }
        }
    }
    if let Some((stem, last)) = pod.rsplit_once('-') {
        if !stem.is_empty() {
            if !last.is_empty() && last.bytes().all(|b| b.is_ascii_digit()) {
                return ("StatefulSet", stem);
            }
            if is_safe(last, 5..=5) {
                return ("DaemonSetOrJob", stem);
            }
        }
    }
    ("Pod", pod)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn controllers_are_read_from_pod_names() {
        for (pod, kind, owner) in [
            (
                "my-deployment-5d4f8b7c9-x7k2p",
                "Deployment",
                "my-deployment",
            ),
            ("web-6b474476c4-zq2x9", "Deployment", "web"),
            ("coredns-5dd5756b68-8lxzk", "Deployment", "coredns"),
            ("db-0", "StatefulSet", "db"),
            ("kafka-broker-12", "StatefulSet", "kafka-broker"),
            ("node-exporter-x7k2p", "DaemonSetOrJob", "node-exporter"),
            ("backup-28391234-4xzbq", "CronJob", "backup"),
            ("nightly-report-28391234-4xzbq", "CronJob", "nightly-report"),
            ("standalone", "Pod", "standalone"),
            ("kube-apiserver-node-a", "Pod", "kube-apiserver-node-a"),
            ("-x7k2p", "Pod", "-x7k2p"),
        ] {
            assert_eq!(owner_from_pod_name(pod), (kind, owner), "{pod}");
        }
    }

    #[test]
    fn vowels_are_not_random_suffixes() {
        // Generated suffixes never contain vowels: a word is part of the name.
        assert_eq!(owner_from_pod_name("my-api-admin"), ("Pod", "my-api-admin"));
        assert_eq!(owner_from_pod_name("api-server"), ("Pod", "api-server"));
    }

    fn annotations(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn pod_container_from_cri_labels_or_annotations() {
        let from_labels = PodContainer::from_annotations(&annotations(&[
            (LABEL_NAMESPACE, "default"),
            (LABEL_POD_NAME, "web-6b474476c4-zq2x9"),
            (LABEL_POD_UID, "0f3b6c2e-9a1d-4c5e-8f7a-2b3c4d5e6f70"),
            (LABEL_CONTAINER, "server"),
        ]))
        .unwrap();
        let from_cri = PodContainer::from_annotations(&annotations(&[
            (CRI_NAMESPACE, "default"),
            (CRI_POD_NAME, "web-6b474476c4-zq2x9"),
            (CRI_POD_UID, "0f3b6c2e-9a1d-4c5e-8f7a-2b3c4d5e6f70"),
            (CRI_CONTAINER, "server"),
            (CRI_CONTAINER_TYPE, "container"),
        ]))
        .unwrap();
        assert_eq!(from_labels, from_cri);
        let owner = resolve_owner(&from_cri, &[&PodNameRules]);
        assert_eq!(
            workload(&from_cri, &owner).name(),
            "default/Deployment/web/server"
        );
        let sandbox = PodContainer::from_annotations(&annotations(&[
            (CRI_NAMESPACE, "kube-system"),
            (CRI_POD_NAME, "db-0"),
            (CRI_CONTAINER_TYPE, "sandbox"),
        ]))
        .unwrap();
        assert_eq!(sandbox.container, "POD");
        assert!(PodContainer::from_annotations(&annotations(&[(LABEL_NAMESPACE, "x")])).is_none());
    }

    struct Api;
    impl OwnerResolver for Api {
        fn owner(&self, pod: &PodContainer) -> Option<Owner> {
            (pod.pod_name == "db-0").then(|| Owner {
                kind: "StatefulSet".into(),
                name: "database".into(),
                source: OwnerSource::KubernetesApi,
            })
        }
    }

    #[test]
    fn earlier_resolvers_win_and_say_so() {
        let pod = PodContainer {
            namespace: "prod".into(),
            pod_name: "db-0".into(),
            pod_uid: None,
            container: "postgres".into(),
        };
        let owner = resolve_owner(&pod, &[&Api, &PodNameRules]);
        assert_eq!(owner.source, OwnerSource::KubernetesApi);
        assert_eq!(
            workload(&pod, &owner).name(),
            "prod/StatefulSet/database/postgres"
        );
        let owner = resolve_owner(&pod, &[&PodNameRules]);
        assert_eq!(
            (owner.kind.as_str(), owner.source),
            ("StatefulSet", OwnerSource::PodName)
        );
    }
}
