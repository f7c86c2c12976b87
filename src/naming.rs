//! Cgroup id -> (cgroup path, workload), looked up once per cgroup and cached. Shared
//! by learning and enforcement so both name a workload the same way.

use std::collections::HashMap;

use crate::cgroup::CgroupV2;
use crate::workload::{self, WorkloadId};

pub struct CgroupNames {
    cgroups: CgroupV2,
    cache: HashMap<u64, (String, WorkloadId)>,
    unnamed: usize,
}

impl CgroupNames {
    pub fn new(cgroups: CgroupV2) -> CgroupNames {
        CgroupNames {
            cgroups,
            cache: HashMap::new(),
            unnamed: 0,
        }
    }

    /// The cgroup's path and workload. A cgroup gone before it could be looked up
    /// keeps an honest name, `cgroup-id:N`, and is counted.
    pub fn name(&mut self, id: u64) -> (String, WorkloadId) {
        if let Some(named) = self.cache.get(&id) {
            return named.clone();
        }
        let named = match self.cgroups.path_of(id) {
            Ok(Some(path)) => {
                let workload = workload::identify(&path);
                (path, workload)
            }
            _ => {
                self.unnamed += 1;
                let path = format!("cgroup-id:{id}");
                (path.clone(), WorkloadId::Cgroup { path })
            }
        };
        self.cache.insert(id, named.clone());
        named
    }

    /// Cgroups that were gone before they could be named.
    pub fn unnamed(&self) -> usize {
        self.unnamed
    }

    pub fn cgroups(&self) -> &CgroupV2 {
        &self.cgroups
    }
}
