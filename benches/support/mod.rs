//! What the benchmarks share: the root check and error exit, the do-nothing static
//! program they exec, and the kernel's BPF run-time accounting switched on for the
//! duration of a measurement.

use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, Stdio};

use anyhow::{bail, Context, Result};

const STATS_SYSCTL: &str = "/proc/sys/kernel/bpf_stats_enabled";

/// Run a benchmark that needs root; `why` says what it does with it.
pub fn bench_main(name: &str, why: &str, run: fn() -> Result<()>) -> ExitCode {
    if !nix::unistd::geteuid().is_root() {
        eprintln!("{name}: needs root: {why}; run `sudo make {name}`");
        return ExitCode::from(2);
    }
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("{name}: {err:#}");
            ExitCode::FAILURE
        }
    }
}

/// Compile a static do-nothing program into `dir`: it costs the kernel an exec and
/// nothing else (no dynamic loader, no libraries), and it is a private file that
/// nothing else on the host execs. Returns its path and size in KiB.
pub fn static_exec_target(dir: &Path) -> Result<(PathBuf, u64)> {
    let path = dir.join("exec-target");
    let source = dir.join("exec-target.c");
    std::fs::write(&source, "int main(void) { return 0; }\n")
        .context("writing the exec target's source")?;
    let out = Command::new("cc")
        .args(["-O2", "-static", "-o"])
        .arg(&path)
        .arg(&source)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .output()
        .context("running cc")?;
    if !out.status.success() {
        bail!(
            "cc -O2 -static failed: {}",
            String::from_utf8_lossy(&out.stderr)
                .lines()
                .next()
                .unwrap_or("")
        );
    }
    let size = std::fs::metadata(&path).map_or(0, |m| m.len());
    Ok((path, size / 1024))
}

/// Sets `kernel.bpf_stats_enabled=1` and puts the old value back when dropped.
pub struct BpfStatsSysctl {
    previous: String,
    bench: &'static str,
}

impl BpfStatsSysctl {
    pub fn enable(bench: &'static str) -> Result<BpfStatsSysctl> {
        let previous = std::fs::read_to_string(STATS_SYSCTL)
            .with_context(|| format!("reading {STATS_SYSCTL}"))?;
        std::fs::write(STATS_SYSCTL, "1")
            .with_context(|| format!("writing 1 to {STATS_SYSCTL}"))?;
        Ok(BpfStatsSysctl {
            previous: previous.trim().to_string(),
            bench,
        })
    }
}

impl Drop for BpfStatsSysctl {
    fn drop(&mut self) {
        if let Err(err) = std::fs::write(STATS_SYSCTL, &self.previous) {
            eprintln!(
                "{}: warning: could not restore {STATS_SYSCTL} to {}: {err}",
                self.bench, self.previous
            );
        }
    }
}
