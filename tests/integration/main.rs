//! The one integration test binary. Tests that need root and BPF run for real: when
//! they cannot, they skip with a message on a developer machine and FAIL under CI=true.

#[macro_use]
mod common;
mod boundaries;
mod cli;
mod coalesce;
mod containers;
mod converge;
mod decision;
mod enforce;
mod engines;
mod identity;
mod install;
mod kubeapi;
mod learn;
mod manifests;
mod metrics;
mod peer_formats;
mod preempt;
mod reliability;
mod storage;
