//! The text form of a cgroup path, exact for every byte.
//!
//! The kernel names cgroups with bytes; fingerprint names workloads, profiles, events
//! and database rows with text. A path (from the v2 root, with a leading '/') that is
//! UTF-8 is its own text form. Any other path is written [`NOT_UTF8`] followed by its
//! bytes in hex: a real path never starts with "//" (paths are normalised), so no
//! UTF-8 path can take that form, two cgroups whose names differ in any byte never
//! share a text form (they stay two workloads), and the form turns back into the exact
//! bytes the kernel sees (for the binding rules' digests and for opening the cgroup).

use std::borrow::Cow;
use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

/// How the text form of a path that is not UTF-8 starts.
pub const NOT_UTF8: &str = "//hex/";

/// The text form of the cgroup path `raw`.
pub fn to_text(raw: &[u8]) -> String {
    match std::str::from_utf8(raw) {
        Ok(text) => text.to_string(),
        Err(_) => {
            let hex: String = raw.iter().map(|b| format!("{b:02x}")).collect();
            format!("{NOT_UTF8}{hex}")
        }
    }
}

/// The bytes of a path that is not UTF-8, if `text` is the text form of one (and
/// only then: hex of a UTF-8 path is not a form [`to_text`] writes).
pub fn not_utf8_bytes(text: &str) -> Option<Vec<u8>> {
    let hex = text.strip_prefix(NOT_UTF8)?;
    if hex.len() % 2 != 0 {
        return None;
    }
    let raw: Option<Vec<u8>> = (0..hex.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(hex.get(i..i + 2)?, 16).ok())
        .collect();
    raw.filter(|raw| std::str::from_utf8(raw).is_err())
}

/// The bytes the kernel knows the path `text` by.
pub fn to_bytes(text: &str) -> Cow<'_, [u8]> {
    match not_utf8_bytes(text) {
        Some(raw) => Cow::Owned(raw),
        None => Cow::Borrowed(text.as_bytes()),
    }
}

/// The text form of `name`'s path below the cgroup whose text form is `parent`.
pub fn child(parent: &str, name: &OsStr) -> String {
    let mut raw = to_bytes(parent).into_owned();
    if raw != b"/" {
        raw.push(b'/');
    }
    raw.extend_from_slice(name.as_bytes());
    to_text(&raw)
}

/// The directory of the cgroup whose text form is `text`, under the v2 `mount`.
pub fn directory(mount: &Path, text: &str) -> PathBuf {
    let raw = to_bytes(text);
    let relative = raw.strip_prefix(b"/").unwrap_or(&raw);
    mount.join(OsStr::from_bytes(relative))
}

/// The text form of the parent of the cgroup whose text form is `text`; None for
/// the root.
pub fn parent(text: &str) -> Option<String> {
    let raw = to_bytes(text);
    let cut = raw.iter().rposition(|b| *b == b'/')?;
    match cut {
        0 if raw.len() > 1 => Some("/".to_string()),
        0 => None,
        _ => Some(to_text(&raw[..cut])),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn utf8_paths_are_their_own_text_form() {
        for path in ["/", "/system.slice/a\\x2db.service", "/é/x"] {
            assert_eq!(to_text(path.as_bytes()), path);
            assert_eq!(to_bytes(path), path.as_bytes());
        }
    }

    /// Regression: names differing only in an invalid byte became one workload.
    #[test]
    fn paths_that_differ_in_one_invalid_byte_keep_different_text_forms() {
        let a = to_text(b"/app-\xff");
        let b = to_text(b"/app-\xfe");
        assert_ne!(a, b);
        assert_eq!(a, "//hex/2f6170702dff");
        assert_eq!(to_bytes(&a), &b"/app-\xff"[..]);
        assert_eq!(to_bytes(&b), &b"/app-\xfe"[..]);
    }

    #[test]
    fn children_parents_and_directories_round_trip_the_bytes() {
        let top = child("/", OsStr::from_bytes(b"a\xff"));
        assert_eq!(to_bytes(&top), &b"/a\xff"[..]);
        let nested = child(&top, OsStr::new("n"));
        assert_eq!(to_bytes(&nested), &b"/a\xff/n"[..]);
        assert_eq!(parent(&nested).as_deref(), Some(top.as_str()));
        assert_eq!(parent(&top).as_deref(), Some("/"));
        assert_eq!(parent("/"), None);
        assert_eq!(child("/x", OsStr::new("y")), "/x/y");
        assert_eq!(
            directory(Path::new("/sys/fs/cgroup"), &nested),
            Path::new(OsStr::from_bytes(b"/sys/fs/cgroup/a\xff/n"))
        );
    }

    #[test]
    fn only_well_formed_hex_is_decoded() {
        assert_eq!(to_bytes("//hex/2"), "//hex/2".as_bytes());
        assert_eq!(to_bytes("//hex/zz"), "//hex/zz".as_bytes());
        assert_eq!(
            to_bytes("//hex/2f61"),
            "//hex/2f61".as_bytes(),
            "UTF-8 in hex"
        );
    }
}
