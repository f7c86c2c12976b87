//! Checked path kinds: exact executable paths ([`ExecPath`]) and patterns ([`Pattern`]).
//!
//! Both are absolute, canonical byte paths: they start with `/`, have no empty, `.` or
//! `..` components and no NUL byte, and fit in `PATH_MAX`. Enforcement compares the
//! kernel's canonical path byte for byte, so anything else could never match and would
//! only give a false sense of coverage; we reject it when a profile is read, not when a
//! workload is denied. A pattern may also hold `*`, which matches any bytes (zero or
//! more) within one path component and never a `/`; at most one `*` per component keeps
//! matching a prefix-and-suffix test that a BPF program can do without backtracking.
//! There is no escape: a path with a literal `*` is listed as an exact executable.

use std::fmt;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::path_bytes::{escape_bytes, PathBytes};
// The longest path the kernel resolves, final NUL included.
use crate::bpf::abi::PATH_MAX;

/// Why some bytes are not a valid executable path or pattern; Display says how to fix it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PathProblem {
    Empty,
    Relative,
    EmptyComponent,
    DotComponent,
    Nul,
    TooLong(usize),
    TwoStarsInComponent,
    NoStar,
}

impl PathProblem {
    /// What is wrong, completing "path `...` ".
    pub fn problem(&self) -> String {
        match self {
            PathProblem::Empty => "is empty".to_owned(),
            PathProblem::Relative => "is relative".to_owned(),
            PathProblem::EmptyComponent => {
                "has an empty component (`//` or a trailing `/`)".to_owned()
            }
            PathProblem::DotComponent => "has a `.` or `..` component".to_owned(),
            PathProblem::Nul => "contains a NUL byte".to_owned(),
            PathProblem::TooLong(len) => {
                format!("is {len} bytes long, more than PATH_MAX ({PATH_MAX}) allows")
            }
            PathProblem::TwoStarsInComponent => "has more than one `*` in a component".to_owned(),
            PathProblem::NoStar => "has no `*`".to_owned(),
        }
    }

    /// How a person editing a profile fixes it.
    pub fn fix(&self) -> &'static str {
        match self {
            PathProblem::Empty | PathProblem::Relative => {
                "write the canonical absolute path, starting with / (e.g. /usr/bin/env)"
            }
            PathProblem::EmptyComponent => "write the canonical path, without `//` or a trailing `/`",
            PathProblem::DotComponent => "write the canonical path, with `.` and `..` resolved",
            PathProblem::Nul => "remove it; no real path contains one",
            PathProblem::TooLong(_) => "shorten it, or cover it with a pattern",
            PathProblem::TwoStarsInComponent => {
                "use at most one `*` per component (a `*` matches any bytes within one component; `**` is not supported)"
            }
            PathProblem::NoStar => "list exact paths under `executables`; patterns are for paths with a `*`",
        }
    }
}

impl fmt::Display for PathProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}; fix: {}", self.problem(), self.fix())
    }
}

/// Components of an absolute path, after the leading `/`.
fn components(bytes: &[u8]) -> impl Iterator<Item = &[u8]> {
    bytes.split(|&b| b == b'/').skip(1)
}

/// The checks shared by executables and patterns (see the module doc for why).
fn check_canonical_absolute(bytes: &[u8]) -> Result<(), PathProblem> {
    if bytes.is_empty() {
        return Err(PathProblem::Empty);
    }
    if bytes[0] != b'/' {
        return Err(PathProblem::Relative);
    }
    if bytes.len() >= PATH_MAX {
        return Err(PathProblem::TooLong(bytes.len()));
    }
    if bytes.contains(&0) {
        return Err(PathProblem::Nul);
    }
    for component in components(bytes) {
        match component {
            b"" => return Err(PathProblem::EmptyComponent),
            b"." | b".." => return Err(PathProblem::DotComponent),
            _ => {}
        }
    }
    Ok(())
}

fn check_pattern(bytes: &[u8]) -> Result<(), PathProblem> {
    check_canonical_absolute(bytes)?;
    let mut stars = 0;
    for component in components(bytes) {
        let in_component = component.iter().filter(|&&b| b == b'*').count();
        if in_component > 1 {
            return Err(PathProblem::TwoStarsInComponent);
        }
        stars += in_component;
    }
    if stars == 0 {
        return Err(PathProblem::NoStar);
    }
    Ok(())
}

/// Deserialize the bytes of a checked path kind, turning a failed check into a message
/// that names the value, so the error is useful even without the surrounding file.
fn deserialize_checked<'de, D: Deserializer<'de>>(
    deserializer: D,
    what: &str,
    check: fn(&[u8]) -> Result<(), PathProblem>,
) -> Result<PathBytes, D::Error> {
    let bytes = PathBytes::deserialize(deserializer)?;
    check(bytes.as_bytes()).map_err(|problem| {
        serde::de::Error::custom(format_args!(
            "{what} `{}` {problem}",
            escape_bytes(bytes.as_bytes())
        ))
    })?;
    Ok(bytes)
}

/// Defines a validated newtype over [`PathBytes`]: one definition for both kinds keeps
/// their constructors, accessors and serde behaviour from drifting apart.
macro_rules! checked_path {
    ($(#[$doc:meta])* $name:ident, $what:literal, $check:path) => {
        $(#[$doc])*
        #[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
        pub struct $name(PathBytes);

        impl $name {
            /// Check the bytes and wrap them; the error says what is wrong and how to fix it.
            pub fn new(bytes: impl Into<Vec<u8>>) -> Result<$name, PathProblem> {
                let bytes = bytes.into();
                $check(&bytes)?;
                Ok($name(PathBytes::new(bytes)))
            }

            pub fn as_bytes(&self) -> &[u8] {
                self.0.as_bytes()
            }

            pub fn path_bytes(&self) -> &PathBytes {
                &self.0
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                fmt::Debug::fmt(&self.0, f)
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                fmt::Display::fmt(&self.0, f)
            }
        }

        impl Serialize for $name {
            fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
                self.0.serialize(serializer)
            }
        }

        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<$name, D::Error> {
                deserialize_checked(deserializer, $what, $check).map($name)
            }
        }
    };
}

checked_path!(
    /// An exact, canonical, absolute executable path, as the kernel reports it.
    ExecPath,
    "path",
    check_canonical_absolute
);

checked_path!(
    /// An absolute path in which `*` matches any bytes within one component.
    Pattern,
    "pattern",
    check_pattern
);

impl Pattern {
    /// Whether `path` is matched: same number of components, each matching its own.
    pub fn matches(&self, path: &[u8]) -> bool {
        if path.first() != Some(&b'/') {
            return false;
        }
        let mut wanted = components(self.as_bytes());
        let mut actual = components(path);
        loop {
            match (wanted.next(), actual.next()) {
                (None, None) => return true,
                (Some(pattern), Some(component)) if component_matches(pattern, component) => {}
                _ => return false,
            }
        }
    }
}

/// A component with one `*` matches when the text before and after the star fit
/// around the component without overlapping; without a star it must be equal.
fn component_matches(pattern: &[u8], component: &[u8]) -> bool {
    match pattern.iter().position(|&b| b == b'*') {
        None => pattern == component,
        Some(star) => {
            let (prefix, suffix) = (&pattern[..star], &pattern[star + 1..]);
            component.len() >= prefix.len() + suffix.len()
                && component.starts_with(prefix)
                && component.ends_with(suffix)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exec_paths_must_be_canonical_absolute() {
        assert!(ExecPath::new("/usr/bin/env").is_ok());
        assert!(ExecPath::new(b"/tmp/\xff".to_vec()).is_ok());
        assert!(
            ExecPath::new("/opt/a*b").is_ok(),
            "a literal * is fine in an exact path"
        );
        let cases: [(&[u8], PathProblem); 8] = [
            (b"", PathProblem::Empty),
            (b"usr/bin/env", PathProblem::Relative),
            (b"/", PathProblem::EmptyComponent),
            (b"/usr//bin", PathProblem::EmptyComponent),
            (b"/usr/bin/", PathProblem::EmptyComponent),
            (b"/usr/../bin", PathProblem::DotComponent),
            (b"/usr/./bin", PathProblem::DotComponent),
            (b"/usr/\0bin", PathProblem::Nul),
        ];
        for (bytes, problem) in cases {
            assert_eq!(
                ExecPath::new(bytes),
                Err(problem),
                "{:?}",
                escape_bytes(bytes)
            );
        }
        let long = format!("/{}", "a".repeat(PATH_MAX));
        assert_eq!(ExecPath::new(long), Err(PathProblem::TooLong(PATH_MAX + 1)));
    }

    #[test]
    fn patterns_allow_one_star_per_component() {
        assert!(Pattern::new("/opt/app-*/bin/*").is_ok());
        assert!(Pattern::new("/*").is_ok());
        assert_eq!(
            Pattern::new("/opt/**"),
            Err(PathProblem::TwoStarsInComponent)
        );
        assert_eq!(
            Pattern::new("/opt/*-*"),
            Err(PathProblem::TwoStarsInComponent)
        );
        assert_eq!(Pattern::new("/opt/app"), Err(PathProblem::NoStar));
        assert_eq!(Pattern::new("opt/*"), Err(PathProblem::Relative));
        assert_eq!(Pattern::new("/opt/*/"), Err(PathProblem::EmptyComponent));
        assert_eq!(Pattern::new("/opt/*/../x"), Err(PathProblem::DotComponent));
    }

    #[test]
    fn star_matches_within_one_component_only() {
        let pattern = Pattern::new("/opt/app-*/bin/server").expect("valid");
        assert!(pattern.matches(b"/opt/app-1.2.3/bin/server"));
        assert!(pattern.matches(b"/opt/app-/bin/server"));
        assert!(pattern.matches(b"/opt/app-\xff/bin/server"));
        assert!(!pattern.matches(b"/opt/app-1/2/bin/server"));
        assert!(!pattern.matches(b"/opt/app-1/bin/server2"));
        assert!(!pattern.matches(b"/opt/app-1/bin"));
        assert!(!pattern.matches(b"opt/app-1/bin/server"));
        let overlapping = Pattern::new("/x/ab*ba").expect("valid");
        assert!(
            !overlapping.matches(b"/x/aba"),
            "prefix and suffix must not overlap"
        );
        assert!(overlapping.matches(b"/x/abba"));
    }

    #[test]
    fn deserializing_checks_and_names_the_value() {
        let err = serde_json::from_str::<ExecPath>("\"bin/sh\"").expect_err("relative");
        assert!(
            err.to_string()
                .starts_with("path `bin/sh` is relative; fix:"),
            "{err}"
        );
        let err = serde_json::from_str::<Pattern>("\"/a/**\"").expect_err("two stars");
        assert!(
            err.to_string()
                .starts_with("pattern `/a/**` has more than one"),
            "{err}"
        );
    }
}
