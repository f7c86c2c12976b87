//! Reading and writing profile directories.
//!
//! Loading takes one profile file, or every non-hidden `*.json` file directly in a
//! directory (not recursive; anything else is ignored, so a README can live beside the
//! profiles). Writing never leaves a half-written profile: each file is written to a
//! hidden temporary file in the same directory, flushed to disk, then renamed over the
//! old one, which is atomic on POSIX filesystems. Files whose bytes would not change are
//! left alone so their modification times (and tools watching them) stay quiet, and
//! files that are not part of this export are never deleted: a person may have written
//! them, so they are only reported.

use std::collections::{BTreeMap, BTreeSet};
use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
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
            profile_files(path)?
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
    /// Everything is rendered and checked before the first byte is written, so a set
    /// that cannot be written as a whole leaves the directory untouched.
    pub fn write_dir(&self, dir: &Path) -> Result<WriteReport, ProfileError> {
        let rendered = self.render_all()?;
        fs::create_dir_all(dir).map_err(io_error(dir, "create the directory"))?;
        let mut report = WriteReport {
            not_exported: other_profile_files(dir, &rendered)?,
            ..WriteReport::default()
        };
        for (file_name, bytes) in &rendered {
            let path = dir.join(file_name);
            if fs::read(&path).is_ok_and(|existing| existing == *bytes) {
                report.unchanged.push(path);
            } else {
                write_atomically(&path, bytes)?;
                report.written.push(path);
            }
        }
        sync_directory(dir);
        Ok(report)
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

fn read_profile(file: &Path) -> Result<Profile, ProfileError> {
    let bytes = fs::read(file).map_err(io_error(file, "read"))?;
    Profile::from_json_bytes(&bytes, file)
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

/// The profile files directly in `dir`, sorted by name. Hidden files are skipped like
/// a shell's `*.json` would, which also skips our own temporary files and editor locks.
fn profile_files(dir: &Path) -> Result<Vec<PathBuf>, ProfileError> {
    let mut names = Vec::new();
    for entry in fs::read_dir(dir).map_err(io_error(dir, "list the directory"))? {
        let entry = entry.map_err(io_error(dir, "list the directory"))?;
        let name = entry.file_name();
        if is_profile_file_name(name.as_encoded_bytes()) && !is_directory(&entry) {
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

fn is_profile_file_name(name: &[u8]) -> bool {
    let suffix = PROFILE_SUFFIX.as_bytes();
    name.len() > suffix.len() && name.ends_with(suffix) && !name.starts_with(b".")
}

fn other_profile_files(
    dir: &Path,
    rendered: &BTreeMap<String, Vec<u8>>,
) -> Result<Vec<PathBuf>, ProfileError> {
    let ours: BTreeSet<PathBuf> = rendered.keys().map(|name| dir.join(name)).collect();
    Ok(profile_files(dir)?
        .into_iter()
        .filter(|path| !ours.contains(path))
        .collect())
}

/// Distinguishes temporary files of concurrent writers within one process; the pid
/// distinguishes processes.
static TEMP_COUNTER: AtomicU64 = AtomicU64::new(0);

fn write_atomically(path: &Path, bytes: &[u8]) -> Result<(), ProfileError> {
    let dir = path.parent().unwrap_or(Path::new("."));
    // Short, hidden and not `.json`: never loaded as a profile, never too long a name.
    let temp = dir.join(format!(
        ".fingerprint-{}-{}.tmp",
        std::process::id(),
        TEMP_COUNTER.fetch_add(1, Ordering::Relaxed)
    ));
    let result = write_synced(&temp, bytes).and_then(|()| fs::rename(&temp, path));
    if result.is_err() {
        // Best effort: the write already failed, and that is the error to report.
        let _ = fs::remove_file(&temp);
    }
    result.map_err(io_error(path, "write"))
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
