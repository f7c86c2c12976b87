//! Errors for reading, writing and merging profiles.
//!
//! Every message names the file (or the input set), where in it the problem is, what
//! is wrong and how to fix it, because the reader is usually a person looking at a CI
//! log who has to find and repair a hand-edited file without reading our source.

use std::fmt;
use std::io;
use std::path::PathBuf;

use thiserror::Error;

/// Where a profile came from, for messages that have to name it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Origin {
    File(PathBuf),
    /// Built in memory (exported from a database, merged); the index of the input set
    /// when it was passed to [`super::ProfileSet::merge`].
    Input(usize),
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Origin::File(path) => write!(f, "{}", path.display()),
            Origin::Input(index) => write!(f, "input set #{}", index + 1),
        }
    }
}

#[derive(Debug, Error)]
pub enum ProfileError {
    // The io::Error is shown in the message, not chained as a source: a chain would
    // print it twice.
    #[error("{}: cannot {action}: {cause}; fix: check that the path exists and is accessible", file.display())]
    Io {
        file: PathBuf,
        action: &'static str,
        cause: io::Error,
    },

    #[error(
        "{}: not a regular file ({what}); fix: a profile directory holds regular `*.json` files only: move it away, or rename it so it does not end in .json",
        file.display()
    )]
    NotRegularFile { file: PathBuf, what: &'static str },

    #[error(
        "{}: larger than {limit_mib} MiB, too large for a profile; fix: check that it is a profile written by `fingerprint export`",
        file.display()
    )]
    TooLarge { file: PathBuf, limit_mib: u64 },

    /// The file is not a valid profile: `message` states the problem and the fix.
    #[error("{}:{line}:{column}: {}: {message}", file.display(), field_label(field))]
    Invalid {
        file: PathBuf,
        line: usize,
        column: usize,
        /// JSON path of the offending value, e.g. `executables[3]`; `.` for the top level.
        field: String,
        message: String,
    },

    #[error(
        "{second}: workload `{name}` is already defined in {first}; fix: keep one profile per workload (combine them with `fingerprint merge`) or rename one"
    )]
    DuplicateWorkload {
        name: String,
        first: Origin,
        second: Origin,
    },

    #[error(
        "workload `{name}` is matched as {first_match} in {first} but as {second_match} in {second}; fix: make the `workload.match` of both profiles agree, or give them different names"
    )]
    MatchConflict {
        name: String,
        first: Origin,
        first_match: String,
        second: Origin,
        second_match: String,
    },

    #[error(
        "workloads `{first}` and `{second}` would both be written to {file}; fix: rename one of them"
    )]
    FileNameClash {
        first: String,
        second: String,
        file: String,
    },

    #[error("a profile has an empty workload name; fix: give every workload a name")]
    EmptyName,

    /// Serializing our own types cannot fail today; kept so a future type that can
    /// (a map with non-string keys) is reported instead of panicking.
    #[error("cannot render the profile of `{name}`: {source}; this is a bug in fingerprint, please report it")]
    Render {
        name: String,
        #[source]
        source: serde_json::Error,
    },
}

/// serde_path_to_error writes `.` for the document itself and `?` when it cannot tell.
fn field_label(field: &str) -> &str {
    match field {
        "." | "?" => "top level",
        field => field,
    }
}
