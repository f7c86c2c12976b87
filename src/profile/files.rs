//! Reading and writing profile directories.
//!
//! Loading takes one profile file, or every non-hidden `*.json` file directly in a
//! directory (not recursive; anything else is ignored, so a README can live beside the
//! profiles). Writing a set is all or nothing: every file is written to a hidden
//! temporary file in the same directory and flushed to disk before any is renamed over
//! its old version (a rename is atomic on POSIX filesystems), and a failed rename puts
//! the old files back. Files whose bytes would not change are left alone so their
//! modification times (and tools watching them) stay quiet, and files that are not
//! part of this export are never deleted: a person may have written them, so they are
//! only reported.

use std::collections::{BTreeMap, BTreeSet};
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use super::error::{Origin, ProfileError};
use super::{Profile, ProfileSet};

const PROFILE_SUFFIX: &str = ".json";

/// What [`ProfileSet::write_dir`] did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct WriteReport {
    /// Files created or replaced.
    pub written: Vec<PathBuf>,
    /// Files that already held exactly these bytes and were not touched.
    pub unchanged: Vec<PathBuf>,
    /// Profile files already in the directory that are not part of this set; left in
    /// place (delete them by hand if the workload is gone).
    pub not_exported: Vec<PathBuf>,
}

fn io_error<'a>(
    file: &'a Path,
    action: &'static str,
) -> impl FnOnce(io::Error) -> ProfileError + 'a {
    move |cause| ProfileError::Io {
        file: file.to_path_buf(),
        action,
        cause,
    }
}

impl ProfileSet {
    /// Load a single profile file, or every profile file in a directory.
    ///
    /// Fails on the first bad file (checked in file-name order, so the same input
    /// always reports the same error) and when two files define the same workload.
    pub fn load(path: &Path) -> Result<ProfileSet, ProfileError> {
        let metadata = fs::metadata(path).map_err(io_error(path, "read"))?;
        let files = if metadata.is_dir() {
            files_ending_in(path, PROFILE_SUFFIX)?
        } else {
            vec![path.to_path_buf()]
        };
        let profiles = read_profiles(&files)?;
        let mut set = ProfileSet::new();
        for (file, profile) in files.into_iter().zip(profiles) {
            add_loaded(&mut set, profile, file)?;
        }
        Ok(set)
    }

    /// Write one file per profile into `dir` (created if missing); see the module doc.
    ///
    /// All or nothing: everything is rendered and checked first, then every new or
    /// changed file is written and synced under a temporary name, and only then are
    /// they renamed into place. A failure before that (a full disk) removes the
    /// temporary files and leaves every profile as it was; a new directory is built
    /// under a temporary name beside it and appears whole.
    pub fn write_dir(&self, dir: &Path) -> Result<WriteReport, ProfileError> {
        write_file_set(dir, &self.render_all()?, PROFILE_SUFFIX)
    }

    /// File name and bytes of every profile, after checking that no two profiles land
    /// in the same file (only possible through a hash collision of very long names).
    fn render_all(&self) -> Result<BTreeMap<String, Vec<u8>>, ProfileError> {
        let mut rendered = BTreeMap::new();
        let mut owners: BTreeMap<String, &str> = BTreeMap::new();
        for profile in self {
            if profile.name.is_empty() {
                return Err(ProfileError::EmptyName);
            }
            let file_name = profile.file_name();
            if let Some(first) = owners.insert(file_name.clone(), &profile.name) {
                return Err(ProfileError::FileNameClash {
                    first: first.to_owned(),
                    second: profile.name.clone(),
                    file: file_name,
                });
            }
            rendered.insert(file_name, profile.to_json_bytes()?);
        }
        Ok(rendered)
    }
}

/// Write `rendered` (file name -> bytes) into `dir` (created if missing), all or
/// nothing, as [`ProfileSet::write_dir`] does for profiles; also used for the policies
/// of other tools (`export --format`). Files in `dir` ending in `suffix` that are not
/// in `rendered` are reported as not exported, never deleted.
pub fn write_file_set(
    dir: &Path,
    rendered: &BTreeMap<String, Vec<u8>>,
    suffix: &str,
) -> Result<WriteReport, ProfileError> {
    if !dir.exists() {
        return write_new_dir(dir, rendered);
    }
    let mut report = WriteReport {
        not_exported: other_files(dir, rendered, suffix)?,
        ..WriteReport::default()
    };
    let mut changes = Vec::new();
    for (file_name, bytes) in rendered {
        let path = dir.join(file_name);
        if fs::read(&path).is_ok_and(|existing| existing == *bytes) {
            report.unchanged.push(path);
        } else {
            changes.push((path, bytes.as_slice()));
        }
    }
    replace_files(dir, &changes)?;
    report.written = changes.into_iter().map(|(path, _)| path).collect();
    Ok(report)
}

/// Below this many files a thread costs more than it saves.
const FILES_PER_THREAD: usize = 256;

/// Read and parse `files`, in parallel when there are many (a CI diff of ten thousand
/// workloads is dominated by parsing). The result is in the order of `files`, and the
/// error, if any, is the one of the first bad file in that order, as if read one by one.
fn read_profiles(files: &[PathBuf]) -> Result<Vec<Profile>, ProfileError> {
    let threads = std::thread::available_parallelism()
        .map_or(1, usize::from)
        .min(files.len() / FILES_PER_THREAD)
        .max(1);
    if threads == 1 {
        return files.iter().map(|file| read_profile(file)).collect();
    }
    let chunk = files.len().div_ceil(threads);
    std::thread::scope(|scope| {
        let workers: Vec<_> = files
            .chunks(chunk)
            .map(|part| {
                scope.spawn(move || {
                    part.iter()
                        .map(|file| read_profile(file))
                        .collect::<Result<Vec<_>, _>>()
                })
            })
            .collect();
        let mut profiles = Vec::with_capacity(files.len());
        for worker in workers {
            // A panic in a worker is a bug; re-raise it rather than invent an error.
            let part = worker
                .join()
                .unwrap_or_else(|panic| std::panic::resume_unwind(panic))?;
            profiles.extend(part);
        }
        Ok(profiles)
    })
}

/// The largest profile file read. A real profile of a thousand executables is about
/// 100 KiB; the limit keeps a link to /dev/zero or a runaway file from filling memory.
const MAX_PROFILE_BYTES: u64 = 4 << 20;

fn read_profile(file: &Path) -> Result<Profile, ProfileError> {
    let bytes = read_regular_file(file)?;
    Profile::from_json_bytes(&bytes, file)
}

/// The bytes of `file` if it is a regular file (a symlink to one is fine) of at most
/// [`MAX_PROFILE_BYTES`]. Opened non-blocking, so a FIFO is refused instead of waiting
/// forever for a writer; its type is checked on the opened file, not on the name.
fn read_regular_file(file: &Path) -> Result<Vec<u8>, ProfileError> {
    use std::os::unix::fs::{FileTypeExt, OpenOptionsExt};
    let opened = OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(file)
        .map_err(io_error(file, "read"))?;
    let kind = opened
        .metadata()
        .map_err(io_error(file, "read"))?
        .file_type();
    if !kind.is_file() {
        let what = match () {
            _ if kind.is_fifo() => "a FIFO",
            _ if kind.is_char_device() => "a character device",
            _ if kind.is_block_device() => "a block device",
            _ if kind.is_socket() => "a socket",
            _ if kind.is_dir() => "a directory",
            _ => "not a file",
        };
        return Err(ProfileError::NotRegularFile {
            file: file.to_owned(),
            what,
        });
    }
    let mut bytes = Vec::new();
    opened
        .take(MAX_PROFILE_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(io_error(file, "read"))?;
    if bytes.len() as u64 > MAX_PROFILE_BYTES {
        return Err(ProfileError::TooLarge {
            file: file.to_owned(),
            limit_mib: MAX_PROFILE_BYTES >> 20,
        });
    }
    Ok(bytes)
}

fn add_loaded(set: &mut ProfileSet, profile: Profile, file: PathBuf) -> Result<(), ProfileError> {
    if let Some(first) = set.files.get(&profile.name) {
        return Err(ProfileError::DuplicateWorkload {
            name: profile.name,
            first: Origin::File(first.clone()),
            second: Origin::File(file),
        });
    }
    set.files.insert(profile.name.clone(), file);
    set.profiles.insert(profile.name.clone(), profile);
    Ok(())
}

/// The files directly in `dir` ending in `suffix` (profiles: `.json`), sorted by name.
/// Hidden files are skipped like a shell's `*.json` would, which also skips our own
/// temporary files and editor locks.
fn files_ending_in(dir: &Path, suffix: &str) -> Result<Vec<PathBuf>, ProfileError> {
    let mut names = Vec::new();
    for entry in fs::read_dir(dir).map_err(io_error(dir, "list the directory"))? {
        let entry = entry.map_err(io_error(dir, "list the directory"))?;
        let name = entry.file_name();
        if ends_in(name.as_encoded_bytes(), suffix) && !is_directory(&entry) {
            names.push(name);
        }
    }
    // By bytes: `Path`'s own ordering parses components and costs more than the rest
    // of the listing for ten thousand files.
    names.sort_unstable_by(|a, b| a.as_encoded_bytes().cmp(b.as_encoded_bytes()));
    Ok(names.into_iter().map(|name| dir.join(name)).collect())
}

/// The type comes with the directory listing on common filesystems, which saves a
/// `stat` per file; only links (and filesystems that do not say) need one.
fn is_directory(entry: &fs::DirEntry) -> bool {
    match entry.file_type() {
        Ok(kind) if !kind.is_symlink() => kind.is_dir(),
        _ => entry.path().is_dir(),
    }
}

fn ends_in(name: &[u8], suffix: &str) -> bool {
    let suffix = suffix.as_bytes();
    name.len() > suffix.len() && name.ends_with(suffix) && !name.starts_with(b".")
}

fn other_files(
    dir: &Path,
    rendered: &BTreeMap<String, Vec<u8>>,
    suffix: &str,
) -> Result<Vec<PathBuf>, ProfileError> {
    let ours: BTreeSet<PathBuf> = rendered.keys().map(|name| dir.join(name)).collect();
    Ok(files_ending_in(dir, suffix)?
        .into_iter()
        .filter(|path| !ours.contains(path))
        .collect())
}

/// Distinguishes temporary files of concurrent writers within one process; the pid
/// distinguishes processes.
static TEMP_COUNTER: AtomicU64 = AtomicU64::new(0);

/// A hidden name in `dir` that is not `.json`: never loaded as a profile, never too
/// long a name.
fn temp_name(dir: &Path, kind: &str) -> PathBuf {
    dir.join(format!(
        ".fingerprint-{}-{}.{kind}",
        std::process::id(),
        TEMP_COUNTER.fetch_add(1, Ordering::Relaxed)
    ))
}

/// A whole new directory: built under a temporary name beside `dir`, then renamed.
fn write_new_dir(
    dir: &Path,
    rendered: &BTreeMap<String, Vec<u8>>,
) -> Result<WriteReport, ProfileError> {
    let parent = match dir.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => parent,
        _ => Path::new("."),
    };
    fs::create_dir_all(parent).map_err(io_error(parent, "create the directory"))?;
    let temp = temp_name(parent, "tmp");
    let built = fs::create_dir(&temp)
        .and_then(|()| {
            for (file_name, bytes) in rendered {
                write_synced(&temp.join(file_name), bytes)?;
            }
            File::open(&temp)?.sync_all()?;
            fs::rename(&temp, dir)
        })
        .map_err(io_error(dir, "write"));
    if built.is_err() {
        // Best effort: the write already failed, and that is the error to report.
        let _ = fs::remove_dir_all(&temp);
    }
    built?;
    sync_directory(parent);
    Ok(WriteReport {
        written: rendered.keys().map(|name| dir.join(name)).collect(),
        ..WriteReport::default()
    })
}

/// Files written beside their targets and not yet in place; removed unless committed.
struct Staged {
    /// (temporary file, target, hard link keeping the target's old bytes if it had any)
    files: Vec<(PathBuf, PathBuf, Option<PathBuf>)>,
    /// How many of `files` were renamed into place.
    placed: usize,
}

impl Drop for Staged {
    /// Undo: put the old files back, remove the new ones and every temporary name.
    fn drop(&mut self) {
        for (index, (temp, target, old)) in self.files.iter().enumerate() {
            if index < self.placed {
                let _ = match old {
                    Some(old) => fs::rename(old, target),
                    None => fs::remove_file(target),
                };
            }
            let _ = fs::remove_file(temp);
            if let Some(old) = old {
                let _ = fs::remove_file(old);
            }
        }
    }
}

/// Replace `changes` in the existing `dir` all together (see [`ProfileSet::write_dir`]).
fn replace_files(dir: &Path, changes: &[(PathBuf, &[u8])]) -> Result<(), ProfileError> {
    let mut staged = Staged {
        files: Vec::with_capacity(changes.len()),
        placed: 0,
    };
    for (target, bytes) in changes {
        // A second name for the old bytes (no data is copied), to put them back if a
        // later rename fails.
        let old = match target.exists() {
            true => {
                let old = temp_name(dir, "old");
                fs::hard_link(target, &old).map_err(io_error(target, "keep the old file"))?;
                Some(old)
            }
            false => None,
        };
        let temp = temp_name(dir, "tmp");
        staged.files.push((temp.clone(), target.clone(), old));
        write_synced(&temp, bytes).map_err(io_error(target, "write"))?;
    }
    for (temp, target, _) in &staged.files {
        fs::rename(temp, target).map_err(io_error(target, "write"))?;
        staged.placed += 1;
    }
    sync_directory(dir);
    for (_, _, old) in std::mem::take(&mut staged.files) {
        if let Some(old) = old {
            let _ = fs::remove_file(old);
        }
    }
    Ok(())
}

/// Write and flush to disk, so the rename can never expose a file whose data is not
/// yet stored (after a crash, the old or the new profile, never an empty one).
fn write_synced(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let mut file = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .open(path)?;
    file.write_all(bytes)?;
    file.sync_all()
}

/// Persist the renames. Best effort: some filesystems refuse to sync a directory, and
/// the files themselves are complete either way.
fn sync_directory(dir: &Path) {
    if let Ok(handle) = File::open(dir) {
        let _ = handle.sync_all();
    }
}
