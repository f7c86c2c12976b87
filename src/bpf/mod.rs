//! The one layer that talks to libbpf: skeletons, loading, attaching, maps. Everything
//! above it is plain Rust. libbpf's own log is captured so that a refused program is
//! reported with the kernel's reason, once, instead of pages on stderr; `--debug`
//! (`set_debug`) prints all of it, verifier logs included, like `bpftool -d`.

pub mod abi;
pub mod enforce;
pub mod learn;
pub mod pinned;
pub mod readback;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;

mod learn_skel {
    include!(concat!(env!("OUT_DIR"), "/learn.skel.rs"));
}

mod enforce_skel {
    include!(concat!(env!("OUT_DIR"), "/enforce.skel.rs"));
}

#[derive(Debug, thiserror::Error)]
pub enum BpfError {
    #[error(
        "{0} needs root (or CAP_BPF and CAP_PERFMON, plus CAP_SYS_ADMIN for the LSM); \
         run it with sudo"
    )]
    NotPrivileged(&'static str),
    #[error(
        "this kernel has no BTF (/sys/kernel/btf/vmlinux is missing); fingerprint needs a \
         kernel built with CONFIG_DEBUG_INFO_BTF=y (5.15 or newer)"
    )]
    NoBtf,
    #[error("kernel {found} is too old: fingerprint needs 5.15 or newer with BTF")]
    KernelTooOld { found: String },
    #[error("the kernel refused BPF program {program}: {reason}{}", log_suffix(.log))]
    Refused {
        program: String,
        reason: String,
        log: String,
    },
    #[error("BPF map {map}: {reason}")]
    Map { map: &'static str, reason: String },
}

fn log_suffix(log: &str) -> String {
    if log.is_empty() {
        String::new()
    } else {
        format!("\nlibbpf said:\n{log}")
    }
}

/// Lines libbpf printed since the last `take_libbpf_log`.
static LIBBPF_LOG: Mutex<String> = Mutex::new(String::new());

/// Whether `--debug` asked for libbpf's whole log and the verifier's.
static DEBUG: AtomicBool = AtomicBool::new(false);

/// The verifier log asked for under `--debug`: BPF_LOG_LEVEL1 | BPF_LOG_STATS, the
/// verifier's whole trace for a refused program and its statistics (instructions
/// processed, time, stack depth) for an accepted one. Not BPF_LOG_LEVEL2, as
/// `bpftool -d` asks: every state of every instruction is ~170 MB for enforce.bpf.c.
const DEBUG_VERIFIER_LOG_LEVEL: u32 = 1 | 4;

/// Print on stderr, as it comes, everything libbpf says (debug level included) and
/// the kernel verifier's log of every program loaded, accepted or not. Set before
/// `preflight`.
pub fn set_debug(on: bool) {
    DEBUG.store(on, Ordering::Relaxed);
}

fn capture_libbpf_log() {
    let debug = DEBUG.load(Ordering::Relaxed);
    let level = if debug {
        libbpf_rs::PrintLevel::Debug
    } else {
        libbpf_rs::PrintLevel::Info
    };
    libbpf_rs::set_print(Some((level, |level, message: String| {
        if DEBUG.load(Ordering::Relaxed) {
            eprint!("{message}");
        }
        // Errors quote the tail of this; debug lines (verifier logs of programs that
        // loaded) would only grow it.
        if level != libbpf_rs::PrintLevel::Debug {
            if let Ok(mut log) = LIBBPF_LOG.lock() {
                log.push_str(&message);
            }
        }
    })));
}

/// Under `--debug`, ask the kernel for every program's verifier log: libbpf prints
/// it at debug level once the program loads (a refused one's is printed anyway).
fn request_verifier_logs(object: &mut libbpf_rs::OpenObject) {
    if DEBUG.load(Ordering::Relaxed) {
        for mut program in object.progs_mut() {
            program.set_log_level(DEBUG_VERIFIER_LOG_LEVEL);
        }
    }
}

/// The captured libbpf log, last `lines` lines (the verifier's verdict is at the end).
fn take_libbpf_log(lines: usize) -> String {
    let mut log = LIBBPF_LOG
        .lock()
        .map(|mut l| std::mem::take(&mut *l))
        .unwrap_or_default();
    let all: Vec<&str> = log.lines().collect();
    let tail = all[all.len().saturating_sub(lines)..].join("\n");
    log.clear();
    tail
}

/// The program libbpf says failed to load (`prog 'name': failed to load`), if any.
fn failed_program(log: &str) -> Option<String> {
    log.lines()
        .filter(|line| line.contains("failed to load"))
        .find_map(|line| {
            let start = line.find("prog '")? + "prog '".len();
            let len = line[start..].find('\'')?;
            Some(line[start..start + len].to_owned())
        })
}

/// A load or attach refusal, naming the program from libbpf's log where it says.
fn refused(program: &str, reason: String) -> BpfError {
    let log = take_libbpf_log(20);
    BpfError::Refused {
        program: failed_program(&log).unwrap_or_else(|| program.to_owned()),
        reason,
        log,
    }
}

/// Storage for a skeleton's object, which the skeleton borrows for as long as its
/// programs run. A process loads at most two skeletons of a kind (one refused, one
/// kept), so leaking them is the simple, safe choice.
pub(crate) fn object_storage() -> &'static mut std::mem::MaybeUninit<libbpf_rs::OpenObject> {
    Box::leak(Box::new(std::mem::MaybeUninit::uninit()))
}

/// Explain a load failure; EPERM on an LSM program with an empty verifier log is the
/// kernel refusing trampolines outright (BPF LSM not enabled at boot, or lockdown).
fn load_reason(lsm: bool, err: &libbpf_rs::Error) -> String {
    let text = err.to_string();
    if lsm && text.contains("Operation not permitted") {
        return format!(
            "{text}: this kernel does not allow BPF LSM programs (trampoline programs are \
             refused before verification; the kernel needs CONFIG_BPF_LSM=y and `bpf` in \
             its lsm= boot parameter)"
        );
    }
    text
}

/// Check what every BPF feature of fingerprint needs, with a precise reason.
pub fn preflight(what: &'static str) -> Result<(), BpfError> {
    if !has_bpf_privileges() {
        return Err(BpfError::NotPrivileged(what));
    }
    if !std::path::Path::new("/sys/kernel/btf/vmlinux").exists() {
        return Err(BpfError::NoBtf);
    }
    let release = nix::sys::utsname::uname()
        .map(|u| u.release().to_string_lossy().into_owned())
        .unwrap_or_default();
    if !kernel_at_least(&release, (5, 15)) {
        return Err(BpfError::KernelTooOld { found: release });
    }
    capture_libbpf_log();
    Ok(())
}

/// Root, or CAP_BPF (39) with CAP_PERFMON (38), or CAP_SYS_ADMIN (21), effective.
fn has_bpf_privileges() -> bool {
    if nix::unistd::geteuid().is_root() {
        return true;
    }
    let Ok(status) = std::fs::read_to_string("/proc/self/status") else {
        return false;
    };
    let caps = status
        .lines()
        .find_map(|l| l.strip_prefix("CapEff:"))
        .and_then(|hex| u64::from_str_radix(hex.trim(), 16).ok())
        .unwrap_or(0);
    let has = |bit: u32| caps & (1 << bit) != 0;
    has(21) || (has(39) && has(38))
}

/// Whether a `uname -r` release string is at least `min` (major, minor).
pub fn kernel_at_least(release: &str, min: (u32, u32)) -> bool {
    let mut parts = release
        .split(|c: char| !c.is_ascii_digit())
        .filter(|s| !s.is_empty())
        .map(|s| s.parse::<u32>().unwrap_or(0));
    let major = parts.next().unwrap_or(0);
    let minor = parts.next().unwrap_or(0);
    (major, minor) >= min
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_failing_program_is_named_from_the_log() {
        let log = "libbpf: prog 'test_profile_allows': failed to load: -EACCES\n";
        assert_eq!(failed_program(log).as_deref(), Some("test_profile_allows"));
        let two_lines = "libbpf: prog 'a': BPF program load failed: -EPERM\n\
                         libbpf: prog 'a': failed to load: -EPERM\n";
        assert_eq!(failed_program(two_lines).as_deref(), Some("a"));
        assert_eq!(failed_program("nothing here"), None);
    }

    #[test]
    fn kernel_versions_compare_numerically() {
        assert!(kernel_at_least("6.18.44-fc-v669", (5, 15)));
        assert!(kernel_at_least("5.15.0-91-generic", (5, 15)));
        assert!(!kernel_at_least("5.4.0-150-generic", (5, 15)));
        assert!(kernel_at_least("6.1.0-27-cloud-amd64", (5, 15)));
        assert!(!kernel_at_least("garbage", (5, 15)));
    }
}
