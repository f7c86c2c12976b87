//! Kill mode's hold of a `#!` script's exec. At sched_process_exec the kernel holds
//! only the interpreter, so every interpreted exec in a profiled workload is held and
//! its script decided in user space (`identity::decide_script`). Timed here as
//! `enforce` pays it (fork, exec, stop, read the event, decide, continue, exit), beside
//! the path it replaced: the same interpreter running the same script named as an
//! argument (`sh script`: no hold, the interpreter still checked in the kernel), in
//! alternating pairs so that the difference cancels drift.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Instant;

use anyhow::{anyhow, bail, Context, Result};
use fingerprint::bpf::enforce::EnforceProbe;
use fingerprint::enforce::{hold, identity};
use serde_json::{json, Value};

use super::rounds::Summary;
use super::{BenchCgroup, HeldExecs};

/// The script: as short as a script gets, so that the hold is most of what differs.
pub fn write_script(dir: &Path, interpreter: &Path) -> Result<std::path::PathBuf> {
    use std::os::unix::fs::PermissionsExt;
    let script = dir.join("hold-script");
    let body = format!("#!{}\nexit 0\n", interpreter.display());
    std::fs::write(&script, body).context("writing the benchmark's script")?;
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755))?;
    Ok(script)
}

/// `rounds` pairs: the script run by its interpreter, and exec'd itself (held and
/// decided), in alternating order. The exec hook must be attached, and the measured
/// cgroup bound to a profile that allows both files by path.
pub fn measure(
    probe: &EnforceProbe,
    cgroup: &BenchCgroup,
    interpreter: &Path,
    script: &Path,
    rounds: usize,
) -> Result<Value> {
    let id = probe
        .binding(cgroup.id)?
        .ok_or_else(|| anyhow!("the measured cgroup is not bound"))?;
    let held = HeldExecs::new(probe)?;
    let held_exec = || -> Result<f64> {
        let started = Instant::now();
        let (mut child, event) = held.spawn(cgroup, Command::new(script))?;
        let exec = event
            .script_exec()
            .ok_or_else(|| anyhow!("the held exec is not interpreted"))?;
        let decision = identity::decide_script(probe, id, child.id(), &exec.exe.bytes)?;
        hold::release(child.id(), &[]);
        let status = child.wait()?;
        if decision.is_some() || !status.success() {
            bail!("the script was refused ({decision:?}, {status})");
        }
        Ok(started.elapsed().as_nanos() as f64)
    };
    let plain_exec = || -> Result<f64> {
        let started = Instant::now();
        let mut command = Command::new(interpreter);
        command.arg(script);
        let _inside = cgroup.enter()?;
        let status = command.stdout(Stdio::null()).status()?;
        if !status.success() {
            bail!(
                "`{} {}` failed: {status}",
                interpreter.display(),
                script.display()
            );
        }
        Ok(started.elapsed().as_nanos() as f64)
    };
    let (mut held, mut plain, mut deltas) = (Vec::new(), Vec::new(), Vec::new());
    for round in 0..rounds {
        let (h, p) = match round % 2 {
            0 => (held_exec()?, plain_exec()?),
            _ => {
                let p = plain_exec()?;
                (held_exec()?, p)
            }
        };
        held.push(h);
        plain.push(p);
        deltas.push(h - p);
    }
    let (held, plain, deltas) = (Summary::of(held), Summary::of(plain), Summary::of(deltas));
    eprintln!(
        "  script hold (kill mode): `./script` {:.0} us held and decided, `sh script` {:.0} \
         us, difference {:.0} us [{:.0}, {:.0}] (median of {rounds} pairs)",
        held.median / 1e3,
        plain.median / 1e3,
        deltas.median / 1e3,
        deltas.ci_lo / 1e3,
        deltas.ci_hi / 1e3,
    );
    Ok(json!({
        "rounds": rounds,
        "held_ns": held.median,
        "as_argument_ns": plain.median,
        "difference_ns": {"median": deltas.median, "ci_lo": deltas.ci_lo, "ci_hi": deltas.ci_hi},
    }))
}
