//! Finds the cgroup v2 hierarchy and translates between cgroup ids and paths.
//!
//! BPF programs know a cgroup only by the id that `bpf_get_current_cgroup_id()`
//! returns, which is the inode number of the cgroup's directory in the v2
//! hierarchy. Naming a workload needs the cgroup's path, and telling BPF about
//! a cgroup needs its id; this module converts both ways. The v2 hierarchy is
//! mounted in different places (`/sys/fs/cgroup` on most nodes,
//! `/sys/fs/cgroup/unified` on hybrid hosts), so it is found from mountinfo,
//! never assumed. Creating, entering and removing cgroups is here too, for
//! tests and the demo.

use std::ffi::OsString;
use std::fs::{self, File, OpenOptions};
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStringExt;
use std::os::unix::fs::{DirEntryExt, MetadataExt, OpenOptionsExt};
use std::path::{Component, Path, PathBuf};

use nix::sys::statfs::{fstatfs, CGROUP2_SUPER_MAGIC};

use super::cgroup_path;

const MOUNTINFO: &str = "/proc/self/mountinfo";

/// The kernfs file handle type: its 8 bytes are the node id, which for a
/// cgroup directory is the cgroup id.
const FILEID_KERNFS: i32 = 0xfe;

/// What went wrong with cgroups, and what to do about it.
#[derive(Debug, thiserror::Error)]
pub enum CgroupError {
    #[error("cannot read {path}: {source}; is /proc mounted?")]
    ReadMountinfo {
        path: &'static str,
        source: io::Error,
    },
    #[error("no cgroup v2 (cgroup2) file system is mounted (looked in {MOUNTINFO}); mount one with `mount -t cgroup2 none /sys/fs/cgroup`")]
    NoCgroup2Mount,
    #[error(
        "cannot open the cgroup v2 mount point {path}: {source}; check that it is still mounted"
    )]
    OpenMount { path: PathBuf, source: io::Error },
    #[error("{path} is listed as a cgroup2 mount but holds another file system (mounted over it?); unmount what covers it or mount cgroup2 elsewhere")]
    NotCgroup2 { path: PathBuf },
    #[error("{path} is not inside the cgroup v2 hierarchy mounted at {mount}; give a path under {mount} or one relative to its root, such as /system.slice")]
    OutsideHierarchy { path: PathBuf, mount: PathBuf },
    #[error(
        "{path} is a file, not a cgroup; cgroups are the directories of the cgroup v2 hierarchy"
    )]
    NotACgroup { path: PathBuf },
    #[error(
        "cannot find cgroup {path}: {source}; check the path, the cgroup may have been removed"
    )]
    Stat { path: PathBuf, source: io::Error },
    #[error("cannot look up cgroup id {id}: {source}; check that /proc is mounted and the cgroup v2 hierarchy is readable")]
    Lookup { id: u64, source: io::Error },
    #[error("cgroup id {id} resolved to {path}, outside the cgroup v2 mount {mount}; this mount shows only part of the hierarchy, run on the host with the whole hierarchy mounted")]
    ResolvedOutside {
        id: u64,
        path: PathBuf,
        mount: PathBuf,
    },
    #[error("{relative:?} is not a cgroup name that can be created; give plain names relative to the cgroup v2 root, such as \"fingerprint-demo\"")]
    InvalidName { relative: String },
    #[error("cannot create cgroup {path}: {source}; {hint}")]
    Create {
        path: PathBuf,
        source: io::Error,
        hint: &'static str,
    },
    #[error("cannot move process {pid} into cgroup {path}: {source}; {hint}")]
    Enter {
        pid: u32,
        path: PathBuf,
        source: io::Error,
        hint: &'static str,
    },
    #[error("cannot remove cgroup {path}: {source}; {hint}")]
    Remove {
        path: PathBuf,
        source: io::Error,
        hint: &'static str,
    },
}

/// The cgroup v2 hierarchy as mounted on this host.
#[derive(Debug)]
pub struct CgroupV2 {
    mount: PathBuf,
    /// The mount's root directory, kept open as the anchor that
    /// open_by_handle_at(2) resolves handles against.
    root: OwnedFd,
    /// The mount's device, to tell cgroups from files elsewhere on the host.
    dev: u64,
}

impl CgroupV2 {
    /// Find the cgroup2 mount from /proc/self/mountinfo (first cgroup2 entry; handle octal escapes like \040 in mount points).
    pub fn discover() -> Result<Self, CgroupError> {
        let text = fs::read_to_string(MOUNTINFO).map_err(|source| CgroupError::ReadMountinfo {
            path: MOUNTINFO,
            source,
        })?;
        let mount = Self::mount_point_from_mountinfo(&text).ok_or(CgroupError::NoCgroup2Mount)?;
        Self::open(mount)
    }

    /// Same, from given mountinfo text (for unit tests).
    pub fn mount_point_from_mountinfo(text: &str) -> Option<PathBuf> {
        text.lines().find_map(cgroup2_mount_point)
    }

    /// Where the v2 hierarchy is mounted, such as /sys/fs/cgroup.
    pub fn mount_point(&self) -> &Path {
        &self.mount
    }

    /// The id of the cgroup at `path` (absolute host path under the mount, or relative to the v2 root like "/system.slice"): the inode number of its directory. Error if it is not inside the v2 mount.
    pub fn id_of(&self, path: &Path) -> Result<u64, CgroupError> {
        let full = self.resolve(path)?;
        let meta = fs::metadata(&full).map_err(|source| CgroupError::Stat {
            path: full.clone(),
            source,
        })?;
        if meta.dev() != self.dev {
            return Err(self.outside(path));
        }
        if !meta.is_dir() {
            return Err(CgroupError::NotACgroup { path: full });
        }
        Ok(meta.ino())
    }

    /// The path relative to the v2 root ("/", "/system.slice/foo.service") of the cgroup with this id, or None if no such cgroup exists (any more).
    ///
    /// Opening the cgroup by its kernfs file handle is O(1) but needs
    /// CAP_DAC_READ_SEARCH; without it (or on kernels without kernfs handles)
    /// the hierarchy is walked instead.
    pub fn path_of(&self, id: u64) -> Result<Option<String>, CgroupError> {
        match self.open_by_id(id) {
            Ok(Some(fd)) => self.path_of_fd(id, fd),
            Ok(None) => Ok(None),
            Err(err) if handles_unavailable(&err) => self.find_by_walk(id),
            Err(source) => Err(CgroupError::Lookup { id, source }),
        }
    }

    /// Create a child cgroup directory (for tests and the demo) and return its id.
    pub fn create(&self, relative: &str) -> Result<(PathBuf, u64), CgroupError> {
        let path = self.child_path(relative)?;
        fs::create_dir(&path).map_err(|source| CgroupError::Create {
            path: path.clone(),
            hint: create_hint(&source),
            source,
        })?;
        let id = self.id_of(&path)?;
        Ok((path, id))
    }

    /// Move process `pid` into the cgroup at absolute path `dir` (write to cgroup.procs).
    pub fn enter(dir: &Path, pid: u32) -> Result<(), CgroupError> {
        // The kernel moves the whole process (all its threads) for one pid.
        fs::write(dir.join("cgroup.procs"), pid.to_string()).map_err(|source| CgroupError::Enter {
            pid,
            path: dir.to_path_buf(),
            hint: enter_hint(&source),
            source,
        })
    }

    /// Remove a cgroup directory created by `create` (rmdir; it must be empty of processes).
    pub fn remove(dir: &Path) -> Result<(), CgroupError> {
        fs::remove_dir(dir).map_err(|source| CgroupError::Remove {
            path: dir.to_path_buf(),
            hint: remove_hint(&source),
            source,
        })
    }

    /// Open `mount` and check that it really is a cgroup2 file system.
    fn open(mount: PathBuf) -> Result<Self, CgroupError> {
        let open_error = |source| CgroupError::OpenMount {
            path: mount.clone(),
            source,
        };
        // A readable directory fd, not O_PATH: open_by_handle_at(2) rejects
        // O_PATH descriptors as its mount fd (EBADF).
        let dir = OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_DIRECTORY)
            .open(&mount)
            .map_err(open_error)?;
        let fs_type = fstatfs(&dir).map_err(|errno| open_error(errno.into()))?;
        if fs_type.filesystem_type() != CGROUP2_SUPER_MAGIC {
            return Err(CgroupError::NotCgroup2 { path: mount });
        }
        let dev = dir.metadata().map_err(open_error)?.dev();
        Ok(Self {
            mount,
            root: dir.into(),
            dev,
        })
    }

    /// The host path that `path` names: itself if under the mount, else
    /// taken as relative to the v2 root.
    fn resolve(&self, path: &Path) -> Result<PathBuf, CgroupError> {
        if path.components().any(|c| c == Component::ParentDir) {
            return Err(self.outside(path));
        }
        if path.starts_with(&self.mount) {
            return Ok(path.to_path_buf());
        }
        let inside = self.mount.join(path.strip_prefix("/").unwrap_or(path));
        // An absolute path that exists elsewhere (a v1 hierarchy, say) was
        // meant as a host path, not as a cgroup.
        if path.is_absolute() && !inside.exists() && path.exists() {
            return Err(self.outside(path));
        }
        Ok(inside)
    }

    fn outside(&self, path: &Path) -> CgroupError {
        CgroupError::OutsideHierarchy {
            path: path.to_path_buf(),
            mount: self.mount.clone(),
        }
    }

    /// The path for a new cgroup named `relative`, which must stay below the root.
    fn child_path(&self, relative: &str) -> Result<PathBuf, CgroupError> {
        let rel = Path::new(relative.trim_start_matches('/'));
        let plain = rel.components().all(|c| matches!(c, Component::Normal(_)));
        if rel.as_os_str().is_empty() || !plain {
            return Err(CgroupError::InvalidName {
                relative: relative.to_string(),
            });
        }
        Ok(self.mount.join(rel))
    }

    /// Open the kernfs node with this id; None if there is none.
    fn open_by_id(&self, id: u64) -> io::Result<Option<OwnedFd>> {
        let mut handle = KernfsHandle {
            handle_bytes: 8,
            handle_type: FILEID_KERNFS,
            id: id.to_ne_bytes(),
        };
        // SAFETY: `handle` is a `struct file_handle` header followed by the
        // 8 bytes it announces in `handle_bytes`, and lives across the call.
        // `self.root` is an open fd for as long as `self` lives.
        let fd = unsafe {
            libc::open_by_handle_at(
                self.root.as_raw_fd(),
                (&mut handle as *mut KernfsHandle).cast(),
                libc::O_PATH | libc::O_CLOEXEC,
            )
        };
        if fd < 0 {
            let err = io::Error::last_os_error();
            // ESTALE: no node has this id (never had, or it was removed).
            return match err.raw_os_error() {
                Some(libc::ESTALE | libc::ENOENT) => Ok(None),
                _ => Err(err),
            };
        }
        // SAFETY: the call succeeded, so `fd` is a new descriptor owned by no one else.
        Ok(Some(unsafe { OwnedFd::from_raw_fd(fd) }))
    }

    /// The relative path of the node open at `fd`, if it is a live cgroup.
    fn path_of_fd(&self, id: u64, fd: OwnedFd) -> Result<Option<String>, CgroupError> {
        let lookup = |source| CgroupError::Lookup { id, source };
        let node = File::from(fd);
        // Files in cgroups (cgroup.procs, ...) have kernfs ids too; only directories are cgroups.
        if !node.metadata().map_err(lookup)?.is_dir() {
            return Ok(None);
        }
        let full = fs::read_link(format!("/proc/self/fd/{}", node.as_raw_fd())).map_err(lookup)?;
        // If it was removed meanwhile, the link names a dead path; check it still leads here.
        if !fs::metadata(&full).is_ok_and(|meta| meta.ino() == id && meta.dev() == self.dev) {
            return Ok(None);
        }
        match self.relative(&full) {
            Some(path) => Ok(Some(path)),
            None => Err(CgroupError::ResolvedOutside {
                id,
                path: full,
                mount: self.mount.clone(),
            }),
        }
    }

    /// Find the cgroup with this id by walking the hierarchy: O(number of cgroups), needs no privilege.
    fn find_by_walk(&self, id: u64) -> Result<Option<String>, CgroupError> {
        let lookup = |source| CgroupError::Lookup { id, source };
        if fs::metadata(&self.mount).map_err(lookup)?.ino() == id {
            return Ok(Some("/".to_string()));
        }
        let mut pending = vec![self.mount.clone()];
        while let Some(dir) = pending.pop() {
            let entries = match fs::read_dir(&dir) {
                Ok(entries) => entries,
                // Removed while we walk: it just drops out.
                Err(err) if err.kind() == io::ErrorKind::NotFound => continue,
                Err(source) => return Err(lookup(source)),
            };
            for entry in entries.flatten() {
                if !entry.file_type().is_ok_and(|t| t.is_dir()) {
                    continue;
                }
                // Kernfs reports the inode number in each directory entry, so no stat is needed.
                if entry.ino() == id {
                    return Ok(self.relative(&entry.path()));
                }
                pending.push(entry.path());
            }
        }
        Ok(None)
    }

    /// `full` relative to the v2 root, with a leading '/', in its text form.
    fn relative(&self, full: &Path) -> Option<String> {
        let rest = full.strip_prefix(&self.mount).ok()?;
        Some(cgroup_path::child("/", rest.as_os_str()))
    }
}

/// `struct file_handle` with room for a kernfs handle.
#[repr(C)]
struct KernfsHandle {
    handle_bytes: u32,
    handle_type: i32,
    id: [u8; 8],
}

/// Errors that mean file handles cannot be used here (no privilege, no
/// kernel support, blocked by seccomp), so walking is the way.
fn handles_unavailable(err: &io::Error) -> bool {
    matches!(
        err.raw_os_error(),
        Some(libc::EPERM | libc::EOPNOTSUPP | libc::EINVAL | libc::ENOSYS)
    )
}

/// The mount point of a mountinfo line, if it is a cgroup2 mount.
/// Fields: id parent major:minor root mount-point options [optional...] - type source super-options.
fn cgroup2_mount_point(line: &str) -> Option<PathBuf> {
    let fields: Vec<&str> = line.split_ascii_whitespace().collect();
    // Optional fields start at the seventh and end at the lone "-".
    let separator = 6 + fields.get(6..)?.iter().position(|f| *f == "-")?;
    (fields.get(separator + 1) == Some(&"cgroup2")).then(|| unescape_octal(fields[4]))
}

/// Undo mountinfo's `\ooo` escapes (space, tab, newline, backslash).
fn unescape_octal(field: &str) -> PathBuf {
    let bytes = field.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match octal_escape(&bytes[i..]) {
            Some(byte) => {
                out.push(byte);
                i += 4;
            }
            None => {
                out.push(bytes[i]);
                i += 1;
            }
        }
    }
    PathBuf::from(OsString::from_vec(out))
}

/// The byte that `\ooo` at the start of `s` stands for.
fn octal_escape(s: &[u8]) -> Option<u8> {
    let digits = s.strip_prefix(b"\\")?.get(..3)?;
    digits
        .iter()
        .try_fold(0u16, |value, &d| {
            (b'0'..=b'7')
                .contains(&d)
                .then(|| value * 8 + u16::from(d - b'0'))
        })
        .and_then(|value| u8::try_from(value).ok())
}

fn create_hint(err: &io::Error) -> &'static str {
    match err.kind() {
        io::ErrorKind::AlreadyExists => {
            "it already exists (left by an earlier run?); remove it with rmdir"
        }
        io::ErrorKind::NotFound => "its parent cgroup does not exist; create that first",
        io::ErrorKind::PermissionDenied => "creating cgroups needs root (or a delegated subtree)",
        _ => "check that the cgroup v2 hierarchy is mounted read-write",
    }
}

fn enter_hint(err: &io::Error) -> &'static str {
    match err.raw_os_error() {
        Some(libc::ESRCH) => "no such process (has it exited?)",
        Some(libc::ENOENT) => "no such cgroup; create it first",
        Some(libc::EBUSY) => "cgroup v2 admits processes only to leaves: the cgroup has child cgroups with controllers enabled",
        Some(libc::EACCES | libc::EPERM) => "moving processes between cgroups needs root",
        _ => "check that the path is a cgroup v2 directory",
    }
}

fn remove_hint(err: &io::Error) -> &'static str {
    match err.raw_os_error() {
        Some(libc::EBUSY) => "it still holds processes or child cgroups; move or end them first",
        Some(libc::ENOENT) => "no such cgroup",
        Some(libc::EACCES | libc::EPERM) => "removing cgroups needs root",
        _ => "only an empty cgroup directory can be removed",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::process::{Child, Command, Stdio};
    use std::thread::sleep;
    use std::time::Duration;

    const HYBRID: &str = "\
24 30 0:22 / /sys rw,nosuid,nodev,noexec,relatime shared:7 - sysfs sysfs rw
31 23 0:28 / /sys/fs/cgroup rw,relatime shared:9 - tmpfs tmpfs rw,mode=755
32 31 0:29 / /sys/fs/cgroup/cpu rw,relatime shared:10 - cgroup cgroup rw,cpu
40 31 0:37 / /sys/fs/cgroup/systemd rw,relatime shared:18 - cgroup cgroup rw,name=systemd
41 31 0:38 / /sys/fs/cgroup/unified rw,relatime shared:19 - cgroup2 cgroup2 rw,nsdelegate
";

    const PURE_V2: &str = "\
22 1 8:1 / / rw,relatime - ext4 /dev/sda1 rw
29 22 0:26 / /sys/fs/cgroup rw,nosuid,nodev,noexec,relatime shared:4 - cgroup2 cgroup2 rw,nsdelegate,memory_recursiveprot
";

    #[test]
    fn finds_cgroup2_in_a_hybrid_layout() {
        assert_eq!(
            CgroupV2::mount_point_from_mountinfo(HYBRID),
            Some(PathBuf::from("/sys/fs/cgroup/unified"))
        );
    }

    #[test]
    fn finds_cgroup2_on_a_pure_v2_host() {
        assert_eq!(
            CgroupV2::mount_point_from_mountinfo(PURE_V2),
            Some(PathBuf::from("/sys/fs/cgroup"))
        );
    }

    #[test]
    fn finds_nothing_without_cgroup2() {
        let v1_only: String = HYBRID.lines().take(4).map(|l| format!("{l}\n")).collect();
        assert_eq!(CgroupV2::mount_point_from_mountinfo(&v1_only), None);
        assert_eq!(CgroupV2::mount_point_from_mountinfo(""), None);
        // "cgroup2" as a source or mount point is not a cgroup2 file system.
        let look_alike = "50 22 0:40 / /mnt/cgroup2 rw - tmpfs cgroup2 rw\n";
        assert_eq!(CgroupV2::mount_point_from_mountinfo(look_alike), None);
        assert_eq!(CgroupV2::mount_point_from_mountinfo("garbage line\n"), None);
    }

    #[test]
    fn takes_the_first_cgroup2_mount() {
        let text = format!("{PURE_V2}60 22 0:26 / /mnt/other rw - cgroup2 cgroup2 rw\n");
        assert_eq!(
            CgroupV2::mount_point_from_mountinfo(&text),
            Some(PathBuf::from("/sys/fs/cgroup"))
        );
    }

    #[test]
    fn unescapes_mount_points() {
        let text = r"70 22 0:50 / /mnt/my\040cgroups\011x\134y rw,relatime shared:30 master:2 - cgroup2 none rw";
        assert_eq!(
            CgroupV2::mount_point_from_mountinfo(text),
            Some(PathBuf::from("/mnt/my cgroups\tx\\y"))
        );
        assert_eq!(unescape_octal(r"/a\04"), PathBuf::from(r"/a\04"));
        assert_eq!(unescape_octal(r"/a\999"), PathBuf::from(r"/a\999"));
    }

    #[test]
    fn errors_say_what_to_do() {
        let message = CgroupError::NoCgroup2Mount.to_string();
        assert!(message.contains("/proc/self/mountinfo"), "{message}");
        assert!(
            message.contains("mount -t cgroup2 none /sys/fs/cgroup"),
            "{message}"
        );
    }

    #[test]
    fn refuses_a_mount_that_is_not_cgroup2() {
        let dir = tempfile::tempdir().unwrap();
        let err = CgroupV2::open(dir.path().to_path_buf()).unwrap_err();
        assert!(matches!(err, CgroupError::NotCgroup2 { .. }), "{err}");
    }

    #[test]
    fn discovers_this_hosts_mount() {
        let cgroups = CgroupV2::discover().unwrap();
        let root_ino = fs::metadata(cgroups.mount_point()).unwrap().ino();
        assert_eq!(cgroups.id_of(Path::new("/")).unwrap(), root_ino);
        assert_eq!(cgroups.id_of(Path::new("")).unwrap(), root_ino);
        assert_eq!(cgroups.id_of(cgroups.mount_point()).unwrap(), root_ino);
        assert_eq!(cgroups.path_of(root_ino).unwrap().as_deref(), Some("/"));
        assert_eq!(
            cgroups.find_by_walk(root_ino).unwrap().as_deref(),
            Some("/")
        );
        // Without CAP_DAC_READ_SEARCH handles fail in a way that path_of walks around.
        if let Err(err) = cgroups.open_by_id(root_ino) {
            assert!(handles_unavailable(&err), "{err}");
        }
    }

    #[test]
    fn ids_of_no_cgroup_have_no_path() {
        let cgroups = CgroupV2::discover().unwrap();
        assert_eq!(cgroups.path_of(u64::MAX).unwrap(), None);
        assert_eq!(cgroups.path_of(0).unwrap(), None);
        // A file's inode is no cgroup id.
        let procs = cgroups.mount_point().join("cgroup.procs");
        let file_ino = fs::metadata(procs).unwrap().ino();
        assert_eq!(cgroups.path_of(file_ino).unwrap(), None);
        assert_eq!(cgroups.find_by_walk(file_ino).unwrap(), None);
    }

    #[test]
    fn id_of_refuses_what_is_no_cgroup() {
        let cgroups = CgroupV2::discover().unwrap();
        let elsewhere = tempfile::tempdir().unwrap();
        for path in [elsewhere.path(), Path::new("/../etc"), Path::new("/proc")] {
            let err = cgroups.id_of(path).unwrap_err();
            assert!(
                matches!(err, CgroupError::OutsideHierarchy { .. }),
                "{path:?}: {err}"
            );
        }
        let err = cgroups.id_of(Path::new("/cgroup.procs")).unwrap_err();
        assert!(matches!(err, CgroupError::NotACgroup { .. }), "{err}");
        let err = cgroups.id_of(Path::new("no-such-cgroup-here")).unwrap_err();
        assert!(matches!(err, CgroupError::Stat { .. }), "{err}");
    }

    #[test]
    fn create_refuses_names_that_leave_the_root() {
        let cgroups = CgroupV2::discover().unwrap();
        for name in ["", "/", "..", "../x", "a/../b", "/./"] {
            let err = cgroups.create(name).unwrap_err();
            assert!(
                matches!(err, CgroupError::InvalidName { .. }),
                "{name:?}: {err}"
            );
        }
    }

    /// True if running as root; otherwise skip (or fail on CI, where these must run).
    fn root_or_skip(test: &str) -> bool {
        // SAFETY: geteuid has no preconditions and cannot fail.
        if unsafe { libc::geteuid() } == 0 {
            return true;
        }
        assert_ne!(
            std::env::var("CI").as_deref(),
            Ok("true"),
            "{test} needs root, and CI must run it"
        );
        eprintln!("skipping {test}: needs root");
        false
    }

    /// A cgroup made for one test, with a process in it maybe; both go away on drop,
    /// so a failing test leaves nothing behind.
    struct Scratch {
        dir: PathBuf,
        id: u64,
        child: Option<Child>,
    }

    impl Scratch {
        fn new(cgroups: &CgroupV2, tag: &str) -> Self {
            let name = format!("fingerprint-test-{}-{tag}", std::process::id());
            let (dir, id) = cgroups.create(&name).unwrap();
            Self {
                dir,
                id,
                child: None,
            }
        }

        fn name(&self) -> String {
            format!("/{}", self.dir.file_name().unwrap().to_string_lossy())
        }

        fn end_child(&mut self) {
            if let Some(mut child) = self.child.take() {
                let _ = child.kill();
                let _ = child.wait();
            }
        }
    }

    impl Drop for Scratch {
        fn drop(&mut self) {
            self.end_child();
            let _ = remove_soon(&self.dir);
        }
    }

    /// rmdir, allowing a moment for a just-reaped process to leave the cgroup.
    fn remove_soon(dir: &Path) -> Result<(), CgroupError> {
        let mut tries = 0;
        loop {
            match CgroupV2::remove(dir) {
                Err(CgroupError::Remove { source, .. })
                    if source.raw_os_error() == Some(libc::EBUSY) && tries < 50 =>
                {
                    tries += 1;
                    sleep(Duration::from_millis(20));
                }
                result => return result,
            }
        }
    }

    #[test]
    fn created_cgroups_translate_both_ways() {
        if !root_or_skip("created_cgroups_translate_both_ways") {
            return;
        }
        let cgroups = CgroupV2::discover().unwrap();
        let scratch = Scratch::new(&cgroups, "ids");
        let name = scratch.name();
        assert_eq!(scratch.id, fs::metadata(&scratch.dir).unwrap().ino());
        assert_eq!(cgroups.id_of(&scratch.dir).unwrap(), scratch.id);
        assert_eq!(cgroups.id_of(Path::new(&name)).unwrap(), scratch.id);
        assert_eq!(cgroups.path_of(scratch.id).unwrap(), Some(name.clone()));
        assert_eq!(cgroups.find_by_walk(scratch.id).unwrap(), Some(name));
        // The handle path must be what answered, not the walk.
        assert!(cgroups.open_by_id(scratch.id).unwrap().is_some());
    }

    #[test]
    fn nested_cgroups_translate_both_ways() {
        if !root_or_skip("nested_cgroups_translate_both_ways") {
            return;
        }
        let cgroups = CgroupV2::discover().unwrap();
        let outer = Scratch::new(&cgroups, "outer");
        let inner_name = format!("{}/inner", outer.name());
        let (inner_dir, inner_id) = cgroups.create(&inner_name).unwrap();
        let found = cgroups.path_of(inner_id);
        let walked = cgroups.find_by_walk(inner_id);
        CgroupV2::remove(&inner_dir).unwrap();
        assert_eq!(found.unwrap(), Some(inner_name.clone()));
        assert_eq!(walked.unwrap(), Some(inner_name));
    }

    #[test]
    fn removed_cgroups_have_no_path() {
        if !root_or_skip("removed_cgroups_have_no_path") {
            return;
        }
        let cgroups = CgroupV2::discover().unwrap();
        let name = format!("fingerprint-test-{}-gone", std::process::id());
        let (dir, id) = cgroups.create(&name).unwrap();
        CgroupV2::remove(&dir).unwrap();
        assert_eq!(cgroups.path_of(id).unwrap(), None);
        assert_eq!(cgroups.find_by_walk(id).unwrap(), None);
        let err = CgroupV2::remove(&dir).unwrap_err();
        assert!(err.to_string().contains("no such cgroup"), "{err}");
    }

    #[test]
    fn create_refuses_an_existing_cgroup() {
        if !root_or_skip("create_refuses_an_existing_cgroup") {
            return;
        }
        let cgroups = CgroupV2::discover().unwrap();
        let scratch = Scratch::new(&cgroups, "twice");
        let err = cgroups.create(&scratch.name()).unwrap_err();
        assert!(err.to_string().contains("already exists"), "{err}");
    }

    #[test]
    fn enter_moves_a_process() {
        if !root_or_skip("enter_moves_a_process") {
            return;
        }
        let cgroups = CgroupV2::discover().unwrap();
        let mut scratch = Scratch::new(&cgroups, "enter");
        let child = Command::new("sleep")
            .arg("60")
            .stdin(Stdio::null())
            .spawn()
            .unwrap();
        let pid = child.id();
        scratch.child = Some(child);

        CgroupV2::enter(&scratch.dir, pid).unwrap();
        let membership = fs::read_to_string(format!("/proc/{pid}/cgroup")).unwrap();
        let v2_line = membership.lines().find(|l| l.starts_with("0::"));
        assert_eq!(v2_line, Some(format!("0::{}", scratch.name()).as_str()));

        // A cgroup with a process in it cannot be removed.
        let err = CgroupV2::remove(&scratch.dir).unwrap_err();
        assert!(err.to_string().contains("still holds processes"), "{err}");

        scratch.end_child();
        remove_soon(&scratch.dir).unwrap();
        assert!(!scratch.dir.exists());
    }

    #[test]
    fn enter_explains_a_missing_process() {
        if !root_or_skip("enter_explains_a_missing_process") {
            return;
        }
        let cgroups = CgroupV2::discover().unwrap();
        let scratch = Scratch::new(&cgroups, "nopid");
        // Pids never reach i32::MAX (pid_max is at most 2^22).
        let err = CgroupV2::enter(&scratch.dir, i32::MAX as u32).unwrap_err();
        assert!(err.to_string().contains("no such process"), "{err}");
    }
}
