//! Cgroup id -> (cgroup path, workload), looked up once per cgroup and cached. Shared
//! by learning and enforcement so both name a workload the same way: from the
//! container runtime's metadata when the cgroup is a container's, else from its path.

use std::collections::HashMap;

use crate::workload::cgroup::CgroupV2;
use crate::workload::runtime::{ContainerMetadata, Naming};
use crate::workload::WorkloadId;

pub struct CgroupNames {
    cgroups: CgroupV2,
    metadata: ContainerMetadata,
    cache: HashMap<u64, (String, WorkloadId)>,
    unnamed: usize,
    fallbacks: usize,
}

impl CgroupNames {
    /// Container metadata from the engines' default directories (or the environment's).
    pub fn new(cgroups: CgroupV2) -> CgroupNames {
        CgroupNames::with_metadata(cgroups, ContainerMetadata::default())
    }

    pub fn with_metadata(cgroups: CgroupV2, metadata: ContainerMetadata) -> CgroupNames {
        CgroupNames {
            cgroups,
            metadata,
            cache: HashMap::new(),
            unnamed: 0,
            fallbacks: 0,
        }
    }

    /// The cgroup's path and workload. A cgroup gone before it could be looked up
    /// keeps an honest name, `cgroup-id:N`, and is counted. A container whose
    /// runtime metadata is not (yet) readable gets its path-based name, is counted,
    /// and is looked up again next time rather than cached.
    pub fn name(&mut self, id: u64) -> (String, WorkloadId) {
        if let Some(named) = self.cache.get(&id) {
            return named.clone();
        }
        match self.cgroups.path_of(id) {
            Ok(Some(path)) => {
                let (workload, naming) = self.metadata.identify(&path);
                let named = (path, workload);
                if naming == Naming::PathFallback {
                    self.fallbacks += 1;
                } else {
                    self.cache.insert(id, named.clone());
                }
                named
            }
            _ => {
                self.unnamed += 1;
                let path = format!("cgroup-id:{id}");
                let named = (path.clone(), WorkloadId::Cgroup { path });
                self.cache.insert(id, named.clone());
                named
            }
        }
    }

    /// Cgroups that were gone before they could be named.
    pub fn unnamed(&self) -> usize {
        self.unnamed
    }

    /// Lookups of container cgroups that found no runtime metadata.
    pub fn metadata_fallbacks(&self) -> usize {
        self.fallbacks
    }

    pub fn metadata(&self) -> &ContainerMetadata {
        &self.metadata
    }

    pub fn cgroups(&self) -> &CgroupV2 {
        &self.cgroups
    }
}
