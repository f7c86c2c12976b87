//! TEMPORARY stand-in until the naming module lands.
use serde::{Deserialize, Serialize};
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum WorkloadId {
    SystemdUnit {
        unit: String,
    },
    Container {
        runtime: String,
        id: String,
    },
    KubernetesContainer {
        qos: String,
        pod_uid: String,
        runtime: Option<String>,
        container_id: String,
    },
    Cgroup {
        path: String,
    },
}
impl WorkloadId {
    pub fn name(&self) -> String {
        match self {
            WorkloadId::Cgroup { path } => path.clone(),
            _ => String::new(),
        }
    }
    pub fn kind(&self) -> &'static str {
        "cgroup"
    }
}
pub fn identify(path: &str) -> WorkloadId {
    WorkloadId::Cgroup {
        path: path.to_string(),
    }
}
