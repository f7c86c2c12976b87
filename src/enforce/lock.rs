//! One enforcer at a time per node (unpinned) and per pin directory: two would both
//! act on every exec and both report every violation. A `flock` says who runs:
//! - unpinned, on a lock file (--lock-file, by default `DEFAULT_LOCK_FILE`): a second
//!   enforcer refuses to start, naming the one that runs;
//! - pinned, on the pin directory itself (bpffs holds no regular files): a new
//!   `enforce --pin` takes over, as documented, so it asks the enforcer running there
//!   to hand over (SIGTERM: that one exits, its pinned programs go on enforcing) and
//!   takes over its pins once it has gone.
//!
//! The kernel drops a flock when its holder exits, however it exits.

use std::fs::File;
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use nix::fcntl::{Flock, FlockArg};

use crate::bpf::pinned;

pub const DEFAULT_LOCK_FILE: &str = "/run/fingerprint/enforce.lock";

/// How long a pinned enforcer asked to hand over may take to exit.
const HANDOVER_LIMIT: Duration = Duration::from_secs(60);

/// Held while this process enforces; released when dropped or at exit.
pub struct EnforceLock {
    _lock: Flock<File>,
}

/// Lock `path` (created if missing) or refuse: another enforcer holds it.
pub fn lock_file(path: &Path) -> Result<EnforceLock> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)
            .with_context(|| format!("creating {} for --lock-file", dir.display()))?;
    }
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(path)
        .with_context(|| format!("opening --lock-file {}", path.display()))?;
    match try_lock(file)? {
        Ok(lock) => Ok(EnforceLock { _lock: lock }),
        Err(file) => bail!(
            "another `fingerprint enforce` ({}) holds {}: one enforcer runs per node, \
             since two would both act on every exec; stop that one first, or give each \
             its own --lock-file",
            holder(&file),
            path.display()
        ),
    }
}

/// Lock the pin directory `dir` (created if missing). If an enforcer holds it, ask
/// it to hand over and wait until it has exited (`stop` ends the wait early).
pub fn lock_pin_dir(dir: &Path, stop: &AtomicBool) -> Result<EnforceLock> {
    pinned::ensure_bpffs(dir)?;
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let mut file = File::open(dir).with_context(|| format!("opening {}", dir.display()))?;
    let mut asked = None;
    let deadline = Instant::now() + HANDOVER_LIMIT;
    loop {
        file = match try_lock(file)? {
            Ok(lock) => {
                if let Some(pid) = asked {
                    eprintln!("fingerprint: pid {pid} handed over; taking over its pins");
                }
                return Ok(EnforceLock { _lock: lock });
            }
            Err(file) => file,
        };
        if asked.is_none() {
            let pid = holder_pid(&file);
            eprintln!(
                "fingerprint: the enforcement pinned at {} is run by {}: asking it to \
                 hand over (SIGTERM); its pinned programs enforce until this one takes over",
                dir.display(),
                holder(&file)
            );
            if let Some(pid) = pid {
                // ESRCH: it exited meanwhile, and the next try gets the lock.
                let _ = nix::sys::signal::kill(
                    nix::unistd::Pid::from_raw(pid as i32),
                    nix::sys::signal::Signal::SIGTERM,
                );
            }
            asked = Some(pid.map_or("it".to_string(), |p| p.to_string()));
        }
        if stop.load(Ordering::SeqCst) {
            bail!(
                "stopped while waiting for the enforcer at {} to hand over",
                dir.display()
            );
        }
        if Instant::now() > deadline {
            bail!(
                "{} still holds {} after {}s: it did not hand over; stop it, then start again",
                holder(&file),
                dir.display(),
                HANDOVER_LIMIT.as_secs()
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// An exclusive flock without waiting: the lock, or the file back if it is held.
fn try_lock(file: File) -> Result<std::result::Result<Flock<File>, File>> {
    match Flock::lock(file, FlockArg::LockExclusiveNonblock) {
        Ok(lock) => Ok(Ok(lock)),
        Err((file, nix::errno::Errno::EWOULDBLOCK)) => Ok(Err(file)),
        Err((_, e)) => Err(e).context("taking the enforcement lock"),
    }
}

/// "pid N" of the holder of `file`'s lock, for messages.
fn holder(file: &File) -> String {
    match holder_pid(file) {
        Some(pid) => format!("pid {pid}"),
        None => "an enforcer in another pid namespace".into(),
    }
}

/// The process holding a flock on `file`, from /proc/locks (None if it is not
/// visible from this pid namespace).
fn holder_pid(file: &File) -> Option<u32> {
    let meta = file.metadata().ok()?;
    let locks = std::fs::read_to_string("/proc/locks").ok()?;
    flock_holder(&locks, meta.dev(), meta.ino())
}

/// The holder of the flock on (dev, inode) in a /proc/locks text: lines like
/// `1: FLOCK  ADVISORY  WRITE 1234 00:27:21361 0 EOF`; waiters (`1: -> FLOCK ...`)
/// are skipped.
fn flock_holder(locks: &str, dev: u64, ino: u64) -> Option<u32> {
    let id = format!(
        "{:02x}:{:02x}:{ino}",
        nix::sys::stat::major(dev),
        nix::sys::stat::minor(dev)
    );
    locks.lines().find_map(|line| {
        let fields: Vec<&str> = line.split_whitespace().collect();
        match fields.as_slice() {
            [_, "FLOCK", _, _, pid, file, ..] if *file == id => pid.parse().ok().filter(|p| *p > 0),
            _ => None,
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_holder_is_found_by_device_and_inode() {
        let locks = "1: POSIX  ADVISORY  WRITE 77 00:27:21361 0 EOF\n\
                     2: FLOCK  ADVISORY  WRITE 1234 00:27:21361 0 EOF\n\
                     2: -> FLOCK  ADVISORY  WRITE 999 00:27:21361 0 EOF\n\
                     3: FLOCK  ADVISORY  WRITE 55 fe:00:21361 0 EOF\n";
        let dev = nix::sys::stat::makedev(0, 0x27);
        assert_eq!(flock_holder(locks, dev, 21361), Some(1234));
        assert_eq!(
            flock_holder(locks, nix::sys::stat::makedev(0xfe, 0), 21361),
            Some(55)
        );
        assert_eq!(flock_holder(locks, dev, 21362), None);
    }

    #[test]
    fn a_held_lock_file_is_refused_naming_its_holder() {
        let dir = std::env::temp_dir().join(format!("fp-lock-test-{}", std::process::id()));
        let path = dir.join("enforce.lock");
        let first = lock_file(&path).expect("the first lock");
        let refusal = lock_file(&path).err().expect("a second lock is refused");
        let text = format!("{refusal:#}");
        assert!(
            text.contains(&format!("pid {}", std::process::id()))
                && text.contains(&path.display().to_string()),
            "{text}"
        );
        drop(first);
        assert!(lock_file(&path).is_ok(), "free again once released");
        let _ = std::fs::remove_dir_all(dir);
    }
}
