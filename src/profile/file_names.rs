//! File names for profiles: one reversible, filesystem-safe name per workload name.
//!
//! Every byte outside `[A-Za-z0-9._@-]` (and a leading `.`, which would hide the file)
//! becomes `%XX` with upper-case hex, then `.json` is appended. `%` itself is escaped,
//! so the mapping is injective and [`workload_name_of`] undoes it. A name whose escaped
//! form would pass the 255-byte `NAME_MAX` gets a truncated stem plus `~` and a 64-bit
//! FNV-1a hash of the full name instead; `~` is always escaped in the reversible form,
//! so the two forms never collide. The name inside the file stays authoritative: the
//! file name only has to be unique and stable.

/// Longest file name Linux filesystems accept.
const NAME_MAX: usize = 255;
const SUFFIX: &str = ".json";
/// Room for `~` and 16 hex digits of the hash.
const HASH_PART: usize = 17;

/// The file name (not path) that a workload's profile is written to.
pub fn file_name_for(workload: &str) -> String {
    file_name_with_suffix(workload, SUFFIX)
}

/// The file name for a workload with another suffix (`.tetragon.yaml` for the policies
/// of `export --format`), escaped and shortened the same way.
pub fn file_name_with_suffix(workload: &str, suffix: &str) -> String {
    let escaped = escape(workload);
    if escaped.len() + suffix.len() <= NAME_MAX {
        return escaped + suffix;
    }
    let stem = truncate_at_escape_boundary(&escaped, NAME_MAX - suffix.len() - HASH_PART);
    format!("{stem}~{:016x}{suffix}", fnv1a64(workload.as_bytes()))
}

/// The workload name encoded in a file name made by [`file_name_for`], or `None` when
/// the name is hashed (too long) or was not made by it.
pub fn workload_name_of(file_name: &str) -> Option<String> {
    let stem = file_name.strip_suffix(SUFFIX)?;
    let bytes = unescape(stem)?;
    let name = String::from_utf8(bytes).ok()?;
    (file_name_for(&name) == file_name).then_some(name)
}

fn is_kept(byte: u8, position: usize) -> bool {
    match byte {
        b'.' => position > 0,
        b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'_' | b'@' | b'-' => true,
        _ => false,
    }
}

fn escape(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    for (position, &byte) in name.as_bytes().iter().enumerate() {
        if is_kept(byte, position) {
            out.push(char::from(byte));
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    if out.is_empty() {
        // An empty workload name is rejected elsewhere; still never produce a hidden
        // `.json`, so this file cannot be mistaken for a temporary or dot file.
        out.push('%');
    }
    out
}

fn unescape(stem: &str) -> Option<Vec<u8>> {
    let bytes = stem.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let digits = std::str::from_utf8(bytes.get(i + 1..i + 3)?).ok()?;
            out.push(u8::from_str_radix(digits, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    Some(out)
}

/// Cut at most `max` bytes without splitting a `%XX` escape.
fn truncate_at_escape_boundary(escaped: &str, max: usize) -> &str {
    let bytes = escaped.as_bytes();
    let mut end = max.min(bytes.len());
    // An escape starts at most two bytes before the cut; step back over it if split.
    for back in 1..=2 {
        if end >= back && bytes[end - back] == b'%' {
            end -= back;
            break;
        }
    }
    &escaped[..end]
}

/// FNV-1a, 64 bit: tiny, stable across releases and platforms (unlike `DefaultHasher`),
/// which matters because the hash ends up in file names kept in git.
fn fnv1a64(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |hash, &byte| {
        (hash ^ u64::from(byte)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn typical_names() {
        assert_eq!(file_name_for("nginx.service"), "nginx.service.json");
        assert_eq!(file_name_for("docker/0123abcd"), "docker%2F0123abcd.json");
        assert_eq!(
            file_name_for("kubernetes/burstable/pod1234-56/abcd"),
            "kubernetes%2Fburstable%2Fpod1234-56%2Fabcd.json"
        );
        assert_eq!(
            file_name_for("/system.slice/foo"),
            "%2Fsystem.slice%2Ffoo.json"
        );
        assert_eq!(file_name_for(".hidden"), "%2Ehidden.json");
        assert_eq!(file_name_for("a%2F"), "a%252F.json");
        assert_eq!(
            file_name_for("getty@tty1.service"),
            "getty@tty1.service.json"
        );
        assert_eq!(file_name_for("café"), "caf%C3%A9.json");
    }

    #[test]
    fn long_names_are_hashed_and_fit() {
        let name = "/".repeat(300);
        let file = file_name_for(&name);
        assert!(file.len() <= NAME_MAX, "{}", file.len());
        assert!(file.ends_with(".json") && file.contains('~'));
        assert!(
            !file[..file.len() - 22].ends_with('%'),
            "escape not split: {file}"
        );
        assert_ne!(file, file_name_for(&"/".repeat(301)));
        assert_eq!(workload_name_of(&file), None);
    }

    proptest! {
        #[test]
        // 20 characters of up to 4 bytes, 3 escaped bytes each, stay under NAME_MAX.
        fn escaping_is_reversible_and_safe(name in "\\PC{1,20}") {
            let file = file_name_for(&name);
            prop_assert!(!file.starts_with('.'));
            prop_assert!(file.bytes().all(|b| b.is_ascii_alphanumeric() || b"._@-%~".contains(&b)));
            prop_assert_eq!(workload_name_of(&file), Some(name));
        }

        #[test]
        fn truncation_keeps_escapes_whole(name in "[a/]{90,200}") {
            let file = file_name_for(&name);
            prop_assert!(file.len() <= NAME_MAX);
            let stem = file.split('~').next().unwrap_or_default();
            prop_assert!(unescape(stem).is_some(), "{}", file);
        }
    }
}
