//! `fingerprint enforce`: load every profile into ONE program's maps, bind cgroups to
//! profiles, and report violations until stopped; SIGHUP reloads the profiles in place.

pub mod binding;
pub mod event_log;
pub mod hold;
pub mod lock;
pub mod maps;
pub mod plan;
pub mod repeats;
pub mod report;
pub mod run;
mod session;
pub mod source;
