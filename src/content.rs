//! What an exec ran, by content: the SHA-256 of the executed file's bytes.
//!
//! The kernel reports which *version* of a file was executed ([`FileVersion`]: device,
//! inode, generation, change time, size). User space opens that file afterwards, while
//! the process still lives (`/proc/PID/exe`), else by its path inside the root of a
//! process still alive in the same cgroup, of its parent, or of the learner, and
//! accepts the digest only if the opened file is that same version before and after
//! hashing: a digest is never taken from a file that replaced the executed one under
//! its name. When no such file can be opened the content stays unknown, and the caller
//! counts it.
//!
//! Each version is hashed once ([`ContentHasher`] caches by version), on a worker
//! thread, so an exec storm costs the event loop a map lookup per exec.

use std::collections::HashMap;
use std::fmt;
use std::fs::File;
use std::io::Read;
use std::os::fd::AsRawFd;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;
use std::str::FromStr;
use std::sync::mpsc::{self, Receiver, SyncSender};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use sha2::{Digest as _, Sha256 as Sha256Hasher};

use crate::bpf::abi::fp_file_id;

/// A SHA-256 digest of a file's bytes; ordered and written as lower-case hex.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Sha256(pub [u8; 32]);

impl Sha256 {
    /// The digest of `bytes`.
    pub fn of(bytes: &[u8]) -> Sha256 {
        Sha256(Sha256Hasher::digest(bytes).into())
    }

    pub fn from_slice(bytes: &[u8]) -> Option<Sha256> {
        bytes.try_into().ok().map(Sha256)
    }
}

impl fmt::Display for Sha256 {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.iter().try_for_each(|b| write!(f, "{b:02x}"))
    }
}

impl fmt::Debug for Sha256 {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "sha256:{self}")
    }
}

impl FromStr for Sha256 {
    type Err = String;

    /// Exactly 64 hex digits; upper case is accepted, output is always lower case.
    fn from_str(text: &str) -> Result<Sha256, String> {
        let problem = || {
            format!(
                "`{text}` is not a SHA-256 digest; fix: write the 64 hex digits that \
                 `sha256sum FILE` prints"
            )
        };
        if text.len() != 64 || !text.is_ascii() {
            return Err(problem());
        }
        let mut out = [0u8; 32];
        for (byte, pair) in out.iter_mut().zip(text.as_bytes().chunks(2)) {
            let pair = std::str::from_utf8(pair).map_err(|_| problem())?;
            *byte = u8::from_str_radix(pair, 16).map_err(|_| problem())?;
        }
        Ok(Sha256(out))
    }
}

impl serde::Serialize for Sha256 {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> serde::Deserialize<'de> for Sha256 {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Sha256, D::Error> {
        let text = <std::borrow::Cow<'de, str>>::deserialize(deserializer)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

/// One version of a file, as the kernel saw it at exec.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct FileVersion {
    /// st_dev encoding (as stat(2) reports it), converted from the kernel's.
    pub dev: u64,
    pub ino: u64,
    pub generation: u32,
    pub ctime_sec: i64,
    pub ctime_nsec: u32,
    pub size: i64,
}

impl FileVersion {
    /// The version in an event; `None` when the hook had no file (inode 0).
    pub fn from_event(id: &fp_file_id) -> Option<FileVersion> {
        // The kernel's dev_t is major << 20 | minor (MINORBITS = 20).
        let (major, minor) = (id.dev >> 20, id.dev & 0xf_ffff);
        (id.ino != 0).then(|| FileVersion {
            dev: libc::makedev(major, minor),
            ino: id.ino,
            generation: id.generation,
            ctime_sec: id.ctime_sec,
            ctime_nsec: id.ctime_nsec,
            size: id.size,
        })
    }

    /// The version `stat` reports (without the generation, which it does not show).
    pub fn of_metadata(m: &std::fs::Metadata) -> FileVersion {
        FileVersion {
            dev: m.dev(),
            ino: m.ino(),
            generation: 0,
            ctime_sec: m.ctime(),
            ctime_nsec: m.ctime_nsec() as u32,
            size: m.size() as i64,
        }
    }

    /// The version as the kernel keys it (`struct fp_file_id`), the inverse of
    /// [`Self::from_event`].
    pub fn to_kernel(&self) -> fp_file_id {
        let (major, minor) = (libc::major(self.dev), libc::minor(self.dev));
        fp_file_id {
            ino: self.ino,
            size: self.size,
            ctime_sec: self.ctime_sec,
            ctime_nsec: self.ctime_nsec,
            dev: (major << 20) | (minor & 0xf_ffff),
            generation: self.generation,
            pad: 0,
        }
    }

    /// How long ago the version's change time was (zero if it is in the future).
    pub fn age(&self) -> Duration {
        let ctime = Duration::new(self.ctime_sec.max(0) as u64, self.ctime_nsec);
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default()
            .saturating_sub(ctime)
    }

    /// Whether an open file is this version: same device, inode, change time and size.
    /// (stat(2) does not report the generation.) Any write, truncation, chmod or
    /// rename onto the name changes one of them, within the change time's granularity.
    fn is(&self, file: &File) -> bool {
        file.metadata().is_ok_and(|m| {
            m.dev() == self.dev
                && m.ino() == self.ino
                && m.ctime() == self.ctime_sec
                && m.ctime_nsec() == i64::from(self.ctime_nsec)
                && m.size() == self.size as u64
        })
    }
}

/// Open what process `pid` (child of `ppid`) executed if it is still `version`:
/// through the process itself while it lives, else by `path` inside the root of a live
/// process of the same cgroup (`cgroup_dir` is its directory; its processes most
/// likely see the same files), of the parent, and last of this process. Any root will
/// do: a file is accepted only as the executed version (device and inode name the
/// file whatever the mount namespace), so a root where `path` names another file
/// yields nothing, never a wrong digest. Without the last two, a tool that exited
/// alone in its cgroup before the event was read would be learned without content.
pub fn open_executed(
    pid: u32,
    ppid: u32,
    path: &[u8],
    cgroup_dir: &Path,
    version: &FileVersion,
) -> Option<File> {
    if let Some(file) = open_image_of(pid, version) {
        return Some(file);
    }
    let own = pid.to_string();
    let procs = std::fs::read_to_string(cgroup_dir.join("cgroup.procs")).unwrap_or_default();
    let neighbours = procs.lines().filter(|line| *line != own);
    let parent = ppid.to_string();
    let found = neighbours
        .chain([parent.as_str(), "self"])
        .find_map(|root_of| open_in_root_of(root_of, path, version));
    found
}

/// The image process `pid` runs, if it is `version`. The mm's own file: always the
/// executed regular file, never a FIFO or a device.
pub fn open_image_of(pid: u32, version: &FileVersion) -> Option<File> {
    File::open(format!("/proc/{pid}/exe"))
        .ok()
        .filter(|file| version.is(file))
}

/// `path` inside the root (and mount namespace) of process `pid` (or `self`), if it is
/// `version`.
pub fn open_in_root_of(pid: &str, path: &[u8], version: &FileVersion) -> Option<File> {
    let relative = Path::new(std::ffi::OsStr::from_bytes(path.strip_prefix(b"/")?));
    open_if_version(
        &Path::new("/proc").join(pid).join("root").join(relative),
        version,
    )
}

/// `path` as process `pid` would open it now, with `flags` (O_CLOEXEC added): resolved
/// inside its root, symlinks included (an absolute one is taken against that root,
/// never this process's), no magic links.
pub fn open_as_task(pid: u32, path: &[u8], flags: i32) -> Option<File> {
    let root = File::open(format!("/proc/{pid}/root")).ok()?;
    let name = std::ffi::CString::new(path).ok()?;
    // SAFETY: open_how is plain integers; all zero is a valid value.
    let mut how: libc::open_how = unsafe { std::mem::zeroed() };
    how.flags = (flags | libc::O_CLOEXEC) as u64;
    how.resolve = libc::RESOLVE_IN_ROOT | libc::RESOLVE_NO_MAGICLINKS;
    // SAFETY: the name is NUL-terminated, `how` is a valid open_how of the size
    // passed, and the returned descriptor, if any, is owned by the File alone.
    let fd = unsafe {
        libc::syscall(
            libc::SYS_openat2,
            root.as_raw_fd(),
            name.as_ptr(),
            &how as *const libc::open_how,
            std::mem::size_of::<libc::open_how>(),
        )
    };
    // SAFETY: a non-negative return is a new descriptor nobody else owns.
    (fd >= 0).then(|| unsafe { <File as std::os::fd::FromRawFd>::from_raw_fd(fd as i32) })
}

/// `path` as process `pid` would open it now ([`open_as_task`]), with the version it
/// has: for a file the kernel no longer holds (a `#!` script at sched_process_exec),
/// whose version nothing recorded. Only a regular file is opened for reading (a FIFO
/// put there cannot block the enforcer).
pub fn open_in_task_root(pid: u32, path: &[u8]) -> Option<(File, FileVersion)> {
    let handle = open_as_task(pid, path, libc::O_PATH)?;
    let metadata = handle.metadata().ok().filter(|m| m.is_file())?;
    let version = FileVersion::of_metadata(&metadata);
    let file = File::open(format!("/proc/self/fd/{}", handle.as_raw_fd())).ok()?;
    version.is(&file).then_some((file, version))
}

/// Open a path the workload controls only once it is known to be `version`: first
/// with O_PATH, which opens nothing (a FIFO put there cannot block the learner, a
/// device cannot be triggered), then, checked, again for reading.
fn open_if_version(path: &Path, version: &FileVersion) -> Option<File> {
    let handle = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_PATH | libc::O_NOFOLLOW)
        .open(path)
        .ok()
        .filter(|handle| version.is(handle))?;
    let file = File::open(format!("/proc/self/fd/{}", handle.as_raw_fd())).ok()?;
    version.is(&file).then_some(file)
}

/// Why a digest was not accepted.
#[derive(Debug)]
pub enum HashError {
    Read,
    /// The file changed (or was another version) while it was read.
    Changed,
}

/// Hash an open file, accepting the digest only if it is `version` before and after.
pub fn hash_version(mut file: File, version: &FileVersion) -> Result<(Sha256, u64), HashError> {
    if !version.is(&file) {
        return Err(HashError::Changed);
    }
    let mut hasher = Sha256Hasher::new();
    let mut buf = vec![0u8; 1 << 16];
    let mut total = 0u64;
    loop {
        let n = file.read(&mut buf).map_err(|_| HashError::Read)?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
        total += n as u64;
    }
    if !version.is(&file) || total != version.size as u64 {
        return Err(HashError::Changed);
    }
    Ok((Sha256(hasher.finalize().into()), total))
}

/// Files waiting for the worker; a bound keeps open descriptors few (the event loop
/// waits when it is reached, and the ring buffer absorbs the pause).
const QUEUE_DEPTH: usize = 64;

/// What hashing has cost so far.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct HashStats {
    /// File versions hashed (each once).
    pub versions: u64,
    pub bytes: u64,
    /// Worker time spent reading and hashing.
    pub busy: Duration,
}

type Job = (FileVersion, File);
type Done = (FileVersion, Option<(Sha256, u64, Duration)>);

/// Digests per file version, computed once each on a worker thread. `W` is what the
/// caller needs back with a digest (for learning: which executable of which workload).
pub struct ContentHasher<W> {
    known: HashMap<FileVersion, Sha256>,
    waiting: HashMap<FileVersion, Vec<W>>,
    jobs: Option<SyncSender<Job>>,
    done: Receiver<Done>,
    worker: Option<JoinHandle<()>>,
    stats: HashStats,
}

/// A digest resolved for a waiter: `None` when the content is unknown.
pub type Resolved<W> = (W, Option<Sha256>);

impl<W> ContentHasher<W> {
    pub fn new() -> ContentHasher<W> {
        let (jobs, queue) = mpsc::sync_channel::<Job>(QUEUE_DEPTH);
        let (report, done) = mpsc::channel::<Done>();
        let worker = std::thread::Builder::new()
            .name("fp-hash".into())
            .spawn(move || {
                for (version, file) in queue {
                    let started = Instant::now();
                    let result = hash_version(file, &version).ok();
                    let outcome = result.map(|(digest, bytes)| (digest, bytes, started.elapsed()));
                    if report.send((version, outcome)).is_err() {
                        return;
                    }
                }
            })
            .ok();
        ContentHasher {
            known: HashMap::new(),
            waiting: HashMap::new(),
            jobs: worker.is_some().then_some(jobs),
            done,
            worker,
            stats: HashStats::default(),
        }
    }

    /// The digest of `version` for `waiter`: at once when known (or when the file
    /// cannot be opened: unknown), else later from [`Self::poll`] or [`Self::finish`].
    /// `open` is called only for a version neither known nor already queued.
    pub fn lookup(
        &mut self,
        version: FileVersion,
        waiter: W,
        open: impl FnOnce() -> Option<File>,
    ) -> Option<Resolved<W>> {
        if let Some(digest) = self.known.get(&version) {
            return Some((waiter, Some(*digest)));
        }
        if let Some(queued) = self.waiting.get_mut(&version) {
            queued.push(waiter);
            return None;
        }
        let (Some(file), Some(jobs)) = (open(), self.jobs.as_ref()) else {
            return Some((waiter, None));
        };
        if jobs.send((version, file)).is_err() {
            return Some((waiter, None));
        }
        self.waiting.insert(version, vec![waiter]);
        None
    }

    /// Digests finished since the last call, without waiting.
    pub fn poll(&mut self) -> Vec<Resolved<W>> {
        let finished: Vec<Done> = self.done.try_iter().collect();
        self.settle(finished)
    }

    /// Wait for every queued file, then return what [`Self::poll`] would have.
    pub fn finish(&mut self) -> Vec<Resolved<W>> {
        self.jobs = None;
        if let Some(worker) = self.worker.take() {
            let _ = worker.join();
        }
        let mut resolved = self.poll();
        // Only if the worker died: whatever still waits is unknown.
        for (_, waiters) in self.waiting.drain() {
            resolved.extend(waiters.into_iter().map(|w| (w, None)));
        }
        resolved
    }

    pub fn stats(&self) -> HashStats {
        self.stats
    }

    fn settle(&mut self, finished: Vec<Done>) -> Vec<Resolved<W>> {
        let mut resolved = Vec::new();
        for (version, outcome) in finished {
            let digest = outcome.map(|(digest, bytes, busy)| {
                self.stats.versions += 1;
                self.stats.bytes += bytes;
                self.stats.busy += busy;
                self.known.insert(version, digest);
                digest
            });
            let waiters = self.waiting.remove(&version).unwrap_or_default();
            resolved.extend(waiters.into_iter().map(|w| (w, digest)));
        }
        resolved
    }
}

impl<W> Default for ContentHasher<W> {
    fn default() -> Self {
        ContentHasher::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn version_of(path: &Path) -> FileVersion {
        FileVersion::of_metadata(&std::fs::metadata(path).unwrap())
    }

    #[test]
    fn hex_round_trips_and_rejects_bad_digests() {
        let digest = Sha256::of(b"abc");
        let text = digest.to_string();
        assert_eq!(
            text,
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        assert_eq!(text.to_uppercase().parse::<Sha256>(), Ok(digest));
        assert!("ba78".parse::<Sha256>().is_err());
        assert!(text.replace('b', "g").parse::<Sha256>().is_err());
    }

    #[test]
    fn kernel_device_numbers_become_stat_ones() {
        let id = fp_file_id {
            ino: 5,
            dev: (259 << 20) | 3,
            ..Default::default()
        };
        let version = FileVersion::from_event(&id).unwrap();
        assert_eq!(version.dev, libc::makedev(259, 3));
        let back = version.to_kernel();
        assert_eq!(
            (back.dev, back.ino),
            (id.dev, id.ino),
            "the kernel's key, back"
        );
        assert!(FileVersion::from_event(&fp_file_id::default()).is_none());
    }

    #[test]
    fn a_file_is_hashed_once_per_version_and_never_when_it_changed() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("exe");
        std::fs::write(&path, b"version one").unwrap();
        let one = version_of(&path);
        let mut hasher: ContentHasher<u32> = ContentHasher::new();
        let open = || File::open(&path).ok();
        assert!(hasher.lookup(one, 1, open).is_none(), "queued");
        assert!(hasher.lookup(one, 2, || panic!("opened twice")).is_none());
        let mut resolved = hasher.finish();
        resolved.sort();
        let expected = Some(Sha256::of(b"version one"));
        assert_eq!(resolved, vec![(1, expected), (2, expected)]);
        assert_eq!(hasher.stats().versions, 1);

        // Written in place after the exec: the file is no longer that version.
        let mut file = std::fs::OpenOptions::new()
            .append(true)
            .open(&path)
            .unwrap();
        file.write_all(b" and more").unwrap();
        let mut hasher: ContentHasher<u32> = ContentHasher::new();
        let stale = FileVersion {
            ctime_sec: one.ctime_sec - 1,
            ..version_of(&path)
        };
        assert!(hasher.lookup(stale, 3, open).is_none());
        assert_eq!(hasher.finish(), vec![(3, None)], "content unknown");
    }
}
