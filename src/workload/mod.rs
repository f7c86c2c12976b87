//! The naming wing: which workload a cgroup belongs to, and the name its profile has.
//!
//! Data flows one way: [`cgroup`] finds the v2 hierarchy and turns ids into paths
//! (exact for every byte: [`cgroup_path`]);
//! [`identity`] names a workload from a cgroup path alone (pure rules); [`runtime`]
//! reads a container's metadata from its engine's files ([`containerd`], [`docker`],
//! [`containers_storage`] for Podman and CRI-O), and [`kubernetes`] (with
//! [`kubeapi`] when an API is reachable) turns a pod into its owning controller;
//! [`resolver`] puts these together, once per cgroup, for learning and enforcement.
//! "Naming" in this crate means exactly this: giving a cgroup its workload's name.

pub mod cgroup;
pub mod cgroup_path;
pub mod containerd;
pub mod containers_storage;
pub mod docker;
pub mod facts;
pub mod identity;
pub mod kubeapi;
pub mod kubernetes;
pub mod resolver;
pub mod runtime;

pub use identity::{identify, WorkloadId};
