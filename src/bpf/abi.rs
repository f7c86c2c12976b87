//! The one place Rust meets the BPF ABI (`bpf/fingerprint.h`). Layouts and enums come
//! from the skeletons' BTF, generated at build time, never hand-copied: a field or a
//! value changed in C changes here. The `#define` limits and markers BTF cannot carry
//! are mirrored below, and a test reads them back from the headers.
//!
//! Plain data only, no libbpf call: pure code (event decoding, profile checks,
//! planning) uses it without touching the kernel. Imports nothing from the crate but
//! the generated skeleton types.

pub use super::enforce_skel::types::{
    fp_action, fp_config, fp_digest, fp_enforce_counter, fp_fold, fp_fold_key, fp_mode, fp_path,
    fp_pattern, fp_pattern_key, fp_profile, fp_profile_flags, fp_reason, fp_rule_key, fp_rule_kind,
    fp_take_args, fp_test_args,
};
pub use super::learn_skel::types::{
    fp_counter, fp_event_flags, fp_exec_event, fp_file_id, fp_hook, fp_path_flags,
};

// SAFETY (all): repr(C) structs of integers and integer arrays: any bytes are valid.
unsafe impl plain::Plain for fp_exec_event {}
unsafe impl plain::Plain for fp_config {}
unsafe impl plain::Plain for fp_digest {}
unsafe impl plain::Plain for fp_path {}
unsafe impl plain::Plain for fp_pattern {}
unsafe impl plain::Plain for fp_pattern_key {}
unsafe impl plain::Plain for fp_profile {}
unsafe impl plain::Plain for fp_rule_key {}
unsafe impl plain::Plain for fp_test_args {}
unsafe impl plain::Plain for fp_fold {}
unsafe impl plain::Plain for fp_fold_key {}
unsafe impl plain::Plain for fp_take_args {}

/// `FP_PATH_MAX`: the longest path resolved, final NUL included; a path of this many
/// bytes or more is flagged truncated.
pub const PATH_MAX: usize = 4096;
/// `FP_MAX_PATTERNS`: the most patterns one profile may carry.
pub const MAX_PATTERNS: usize = 16;
/// `FP_PATTERN_MAX`: the size of a pattern's buffer; a pattern has fewer bytes.
pub const PATTERN_MAX: usize = 256;
/// `FP_PROFILE_DENY_ALL`: the profile of unprofiled cgroups under --default deny.
pub const DENY_ALL_PROFILE: u32 = 0xffff_ffff;
/// `FP_PROFILE_PENDING`: a new cgroup below a container scope, not named yet; its
/// execs are held (stopped) until user space decides.
pub const PENDING_PROFILE: u32 = 0xffff_fffe;
/// `FP_PROFILE_SCOPE`: a cgroup where containers start; its own execs are left
/// alone, cgroups created below it are pending.
pub const SCOPE_PROFILE: u32 = 0xffff_fffd;

/// How the kernel binds a new cgroup to a profile at mkdir (`enum fp_rule_kind`).
/// A Rust enum whose discriminants are the generated values (`kind as u32`), so rules
/// can be hashed and matched.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u32)]
pub enum RuleKind {
    /// The cgroup's full path under the v2 root.
    Path = fp_rule_kind::FP_RULE_PATH.0,
    /// The cgroup directory's own name (a systemd unit).
    Leaf = fp_rule_kind::FP_RULE_LEAF.0,
}

/// How many entries each resizable enforcement map is created with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MapSizes {
    pub profiles: u32,
    pub allow: u32,
    pub patterns: u32,
    pub rules: u32,
    pub bindings: u32,
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::path::Path;

    use super::*;

    /// Every `#define FP_NAME <integer>` in bpf/*.h, by name.
    fn header_defines() -> BTreeMap<String, u64> {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("bpf");
        let mut defines = BTreeMap::new();
        for entry in std::fs::read_dir(&dir).expect("reading bpf/") {
            let path = entry.expect("listing bpf/").path();
            if path.extension().is_none_or(|e| e != "h") || path.ends_with("vmlinux.h") {
                continue;
            }
            let text = std::fs::read_to_string(&path).expect("reading a header");
            for line in text.lines() {
                let mut words = line.split_whitespace();
                let (Some("#define"), Some(name), Some(value), None) =
                    (words.next(), words.next(), words.next(), words.next())
                else {
                    continue;
                };
                let parsed = match value.strip_prefix("0x") {
                    Some(hex) => u64::from_str_radix(hex, 16),
                    None => value.parse(),
                };
                if let Ok(value) = parsed {
                    let previous = defines.insert(name.to_owned(), value);
                    assert!(
                        previous.is_none_or(|p| p == value),
                        "{name} is defined twice with different values ({})",
                        path.display()
                    );
                }
            }
        }
        defines
    }

    #[test]
    fn mirrored_defines_match_the_headers() {
        let defines = header_defines();
        let mirrored: [(&str, u64); 6] = [
            ("FP_PATH_MAX", PATH_MAX as u64),
            ("FP_MAX_PATTERNS", MAX_PATTERNS as u64),
            ("FP_PATTERN_MAX", PATTERN_MAX as u64),
            ("FP_PROFILE_DENY_ALL", DENY_ALL_PROFILE.into()),
            ("FP_PROFILE_PENDING", PENDING_PROFILE.into()),
            ("FP_PROFILE_SCOPE", SCOPE_PROFILE.into()),
        ];
        for (name, value) in mirrored {
            assert_eq!(defines.get(name), Some(&value), "{name} in bpf/*.h");
        }
    }

    #[test]
    fn mirrored_limits_match_the_layouts_in_btf() {
        let pattern = fp_pattern::default();
        assert_eq!(pattern.bytes.len(), PATTERN_MAX, "fp_pattern.bytes");
        // fp_path's buffer is FP_PATH_MAX plus FP_NAME_SLACK; the path ends at PATH_MAX.
        let slack = header_defines()["FP_NAME_SLACK"] as usize;
        assert_eq!(
            std::mem::size_of_val(&fp_path::default().data),
            PATH_MAX + slack,
            "fp_path.data"
        );
        let events = header_defines()["FP_EVENT_PATHS"] as usize;
        assert_eq!(
            fp_exec_event::default().len.len(),
            events,
            "fp_exec_event.len"
        );
    }
}
