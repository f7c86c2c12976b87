//! fingerprint: learn which executables every workload on a node runs, keep them as
//! reviewable profiles, and lock each workload to its profile with one BPF LSM program.

pub mod bpf;
pub mod check;
pub mod content;
pub mod convergence;
pub mod diff;
pub mod digest;
pub mod enforce;
pub mod event;
pub mod learn;
pub mod metrics;
pub mod peer_formats;
pub mod profile;
pub mod progress;
pub mod readiness;
pub mod running;
pub mod show;
pub mod storage;
pub mod workload;
