//! TEMPORARY stand-in until the cgroup module lands.
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
#[derive(Debug, thiserror::Error)]
pub enum CgroupError {
    #[error("cgroup: {0}")]
    Io(String),
}
pub struct CgroupV2 {
    mount: PathBuf,
}
impl CgroupV2 {
    pub fn discover() -> Result<Self, CgroupError> {
        Ok(CgroupV2 {
            mount: "/sys/fs/cgroup/unified".into(),
        })
    }
    pub fn mount_point(&self) -> &Path {
        &self.mount
    }
    pub fn id_of(&self, path: &Path) -> Result<u64, CgroupError> {
        std::fs::metadata(path)
            .map(|m| m.ino())
            .map_err(|e| CgroupError::Io(e.to_string()))
    }
    pub fn path_of(&self, id: u64) -> Result<Option<String>, CgroupError> {
        Ok(walk(&self.mount, id).map(|p| {
            let s = p
                .strip_prefix(&self.mount)
                .unwrap()
                .to_string_lossy()
                .into_owned();
            format!("/{s}")
        }))
    }
    pub fn create(&self, relative: &str) -> Result<(PathBuf, u64), CgroupError> {
        let p = self.mount.join(relative.trim_start_matches('/'));
        std::fs::create_dir_all(&p).map_err(|e| CgroupError::Io(e.to_string()))?;
        let id = self.id_of(&p)?;
        Ok((p, id))
    }
    pub fn enter(dir: &Path, pid: u32) -> Result<(), CgroupError> {
        std::fs::write(dir.join("cgroup.procs"), pid.to_string())
            .map_err(|e| CgroupError::Io(e.to_string()))
    }
    pub fn remove(dir: &Path) -> Result<(), CgroupError> {
        std::fs::remove_dir(dir).map_err(|e| CgroupError::Io(e.to_string()))
    }
}
fn walk(dir: &Path, id: u64) -> Option<PathBuf> {
    if std::fs::metadata(dir).ok()?.ino() == id {
        return Some(dir.to_path_buf());
    }
    for e in std::fs::read_dir(dir).ok()?.flatten() {
        if e.file_type().ok()?.is_dir() {
            if let Some(p) = walk(&e.path(), id) {
                return Some(p);
            }
        }
    }
    None
}
