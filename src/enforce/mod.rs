//! `fingerprint enforce`.
pub mod plan;
