//! Enforcement pinned under bpffs: it survives the CLI exiting or crashing, `status`
//! reads it back, `stop` removes it. What was loaded (profile names, mechanism,
//! source) is recorded in /run (`state_file`), since bpffs holds only BPF objects.
//!
//! A new `enforce --pin` on a pinned directory takes over with no gap: it loads and
//! attaches its own programs first (both run for a moment), then renames its pins
//! over the old ones, each rename dropping one old object. It carries over the ring
//! buffer, so events the old programs wrote and nobody read yet (a held exec whose
//! enforcer died included) are read by the new enforcer, and the counters. And it
//! carries the handover word, which lets only one of the two programs act at a time
//! (`fp_handover` in bpf/enforce.bpf.c), so no exec is reported or counted twice;
//! and the repeated violations counted and not taken yet (`fp_folds`), which the new
//! enforcer takes and reports; and the tasks held for a decision (`fp_held`), which stay
//! guarded until the new enforcer decides them.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use libbpf_rs::MapHandle;
use serde::{Deserialize, Serialize};

use super::abi::PENDING_PROFILE;
use super::readback::{self, EnforceCounters};
use super::BpfError;

pub const DEFAULT_PIN_DIR: &str = "/sys/fs/bpf/fingerprint";
/// What `enforce --pin` loaded, for `status` and the next takeover: one file per
/// pin directory (`state_file`), in this directory.
pub const STATE_DIR: &str = "/run/fingerprint";
/// bpffs's statfs magic.
const BPF_FS_MAGIC: i64 = 0xcafe4a11;

/// Names of the pinned objects inside the pin directory.
pub const LINKS: &[&str] = &[
    "link_exec",
    "link_cgroup_mkdir",
    "link_cgroup_rmdir",
    // The cgroup move guard (LSM only): lsm/file_open and lsm/task_alloc.
    "link_guard_open",
    "link_guard_clone",
    // Held tasks (LSM only): lsm/task_kill and lsm/ptrace_access_check.
    "link_guard_signal",
    "link_guard_ptrace",
];
pub const MAPS: &[&str] = &[
    "fp_config_map",
    "fp_bindings",
    "fp_profiles",
    "fp_allow",
    "fp_patterns",
    "fp_rules",
    "fp_enforce_counters",
    "fp_violations",
    "fp_handover",
    "fp_folds",
    "fp_held",
];
/// Maps a takeover keeps instead of creating (see the module docs).
pub const CARRIED_MAPS: &[&str] = &[
    "fp_enforce_counters",
    "fp_violations",
    "fp_handover",
    "fp_folds",
    "fp_held",
];
/// Carried maps an older version did not pin: a takeover of it creates them.
pub const OPTIONAL_CARRIED_MAPS: &[&str] = &["fp_handover", "fp_folds", "fp_held"];

/// Recorded beside the pins.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct PinnedState {
    pub pin_dir: PathBuf,
    pub profiles: PathBuf,
    pub mechanism: String,
    pub hook: String,
    pub started_at: String,
    pub pid: u32,
    pub profile_names: Vec<String>,
    /// Profile id of every name ever loaded: a takeover keeps them, since events in
    /// the carried ring buffer name profiles by id.
    #[serde(default)]
    pub profile_ids: BTreeMap<String, u32>,
    /// How the enforcer running there is doing at writing violations, kept up to date
    /// while it runs.
    #[serde(default)]
    pub reporting: Reporting,
}

/// Violations the enforcer could not write (a full disk): kept for a retry, or given
/// up. The kernel's own count of events it could not even queue is `Status::dropped`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct Reporting {
    /// Lines of the events file (or stdout).
    pub events_unwritten: u64,
    /// Rows of the database.
    pub rows_unwritten: u64,
    /// Why writing fails now, if it does.
    pub error: Option<String>,
}

/// What is loaded right now.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Status {
    pub state: Option<PinnedState>,
    pub links: Vec<String>,
    pub profiles_loaded: usize,
    pub cgroups_bound: usize,
    pub checks: u64,
    pub violations: u64,
    pub dropped: u64,
    /// Violations only counted in the kernel, reported as repeats of an event.
    pub folded: u64,
    pub bound_at_mkdir: u64,
    pub cgroup_moves: u64,
}

fn io_error(what: String, e: impl std::fmt::Display) -> BpfError {
    BpfError::Map {
        map: "pinned enforcement",
        reason: format!("{what}: {e}"),
    }
}

/// Make sure bpffs is mounted where `dir` lives (it is not at boot on some hosts).
pub fn ensure_bpffs(dir: &Path) -> Result<(), BpfError> {
    let root = Path::new("/sys/fs/bpf");
    if !dir.starts_with(root) {
        return Ok(()); // the caller chose another bpffs mount
    }
    let mounted = nix::sys::statfs::statfs(root)
        .map(|s| s.filesystem_type().0 == BPF_FS_MAGIC)
        .unwrap_or(false);
    if !mounted {
        nix::mount::mount(
            Some("bpf"),
            root,
            Some("bpf"),
            nix::mount::MsFlags::empty(),
            None::<&str>,
        )
        .map_err(|e| io_error(format!("mounting bpffs on {}", root.display()), e))?;
    }
    Ok(())
}

/// Whether an enforcement is pinned in `dir`.
pub fn is_pinned(dir: &Path) -> bool {
    LINKS.iter().any(|name| dir.join(name).exists())
}

/// The state file of the enforcement pinned at `pin_dir`: its path, escaped into one
/// file name (`%` then `/` percent-encoded, so no two directories share a file).
pub fn state_file(pin_dir: &Path) -> PathBuf {
    let escaped = pin_dir
        .to_string_lossy()
        .replace('%', "%25")
        .replace('/', "%2F");
    Path::new(STATE_DIR).join(format!("{escaped}.json"))
}

pub fn write_state(state: &PinnedState) -> Result<(), BpfError> {
    let path = state_file(&state.pin_dir);
    let dir = Path::new(STATE_DIR);
    std::fs::create_dir_all(dir).map_err(|e| io_error(format!("creating {}", dir.display()), e))?;
    let text =
        serde_json::to_string_pretty(state).map_err(|e| io_error("encoding state".into(), e))?;
    let tmp = path.with_extension("json.tmp");
    std::fs::write(&tmp, text + "\n")
        .and_then(|()| std::fs::rename(&tmp, &path))
        .map_err(|e| io_error(format!("writing {}", path.display()), e))
}

pub fn read_state(pin_dir: &Path) -> Option<PinnedState> {
    let text = std::fs::read_to_string(state_file(pin_dir)).ok()?;
    serde_json::from_str(&text).ok()
}

/// Read what is pinned in `dir`; None if nothing is.
pub fn status(dir: &Path) -> Result<Option<Status>, BpfError> {
    if !is_pinned(dir) {
        return Ok(None);
    }
    let open = |name: &str| {
        MapHandle::from_pinned_path(dir.join(name))
            .map_err(|e| io_error(format!("opening {}", dir.join(name).display()), e))
    };
    let counts = EnforceCounters::read(&open("fp_enforce_counters")?)?;
    Ok(Some(Status {
        state: read_state(dir),
        links: LINKS
            .iter()
            .filter(|name| dir.join(name).exists())
            .map(|name| name.to_string())
            .collect(),
        profiles_loaded: readback::count(&open("fp_profiles")?),
        cgroups_bound: readback::count(&open("fp_bindings")?),
        checks: counts.checks,
        violations: counts.violations,
        dropped: counts.dropped,
        folded: counts.folded,
        bound_at_mkdir: counts.bound_at_mkdir,
        cgroup_moves: counts.cgroup_moves,
    }))
}

/// Cgroups the pinned enforcement in `dir` holds pending (new containers not named
/// yet): a takeover keeps them pending, so a container being set up meanwhile is
/// named at its first exec, not judged by its runtime's set-up execs.
pub fn pending_cgroups(dir: &Path) -> Result<Vec<u64>, BpfError> {
    let path = dir.join("fp_bindings");
    let map = MapHandle::from_pinned_path(&path)
        .map_err(|e| io_error(format!("opening {}", path.display()), e))?;
    Ok(readback::bindings(&map)?
        .into_iter()
        .filter(|(_, profile)| *profile == PENDING_PROFILE)
        .map(|(cgroup, _)| cgroup)
        .collect())
}

/// Pin an object as `dir/name` through `pin`, replacing in one rename whatever was
/// pinned there: the name is never absent, and the replaced object is released.
pub fn pin_replacing(
    dir: &Path,
    name: &str,
    pin: impl FnOnce(&Path) -> libbpf_rs::Result<()>,
) -> Result<(), BpfError> {
    let staged = staged_path(dir, name);
    remove_if_present(&staged)?;
    pin(&staged).map_err(|e| io_error(format!("pinning {}", staged.display()), e))?;
    let target = dir.join(name);
    std::fs::rename(&staged, &target).map_err(|e| {
        io_error(
            format!("renaming {} to {}", staged.display(), target.display()),
            e,
        )
    })
}

/// Where `pin_replacing` pins before the rename (bpffs refuses names with a dot).
fn staged_path(dir: &Path, name: &str) -> PathBuf {
    dir.join(format!("staged_{name}"))
}

/// Remove pin `name` under `dir`, if there is one.
pub fn remove_pin(dir: &Path, name: &str) -> Result<(), BpfError> {
    remove_if_present(&dir.join(name))
}

fn remove_if_present(path: &Path) -> Result<(), BpfError> {
    match std::fs::remove_file(path) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
            Err(io_error(format!("removing {}", path.display()), e))
        }
        _ => Ok(()),
    }
}

/// Remove a pinned enforcement: unpinning the links detaches the programs.
/// Returns whether anything was pinned.
pub fn unpin(dir: &Path) -> Result<bool, BpfError> {
    if !dir.exists() {
        return Ok(false);
    }
    let was_pinned = is_pinned(dir);
    for name in LINKS.iter().chain(MAPS) {
        remove_if_present(&dir.join(name))?;
        // Left by a takeover that failed half-way.
        remove_if_present(&staged_path(dir, name))?;
    }
    std::fs::remove_dir(dir).map_err(|e| io_error(format!("removing {}", dir.display()), e))?;
    let _ = std::fs::remove_file(state_file(dir));
    Ok(was_pinned)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_pin_dir_has_its_own_state_file() {
        let file = |dir: &str| state_file(Path::new(dir));
        assert_eq!(
            file(DEFAULT_PIN_DIR),
            Path::new("/run/fingerprint/%2Fsys%2Ffs%2Fbpf%2Ffingerprint.json")
        );
        assert_ne!(file("/sys/fs/bpf/a-b"), file("/sys/fs/bpf/a/b"));
        assert_ne!(file("/sys/fs/bpf/a%2Fb"), file("/sys/fs/bpf/a/b"));
    }
}
