//! Opening a database without writing it. `show`, `diff`, `export` and `merge`'s
//! sources read files that may belong to another user, sit on a read-only mount, or
//! be written by a running learner at the same time.
//!
//! The connection is read-only (`SQLITE_OPEN_READ_ONLY`), so SQLite can neither switch
//! the journal mode nor migrate. Reading a database in WAL mode needs a `-shm` file
//! beside it; where that cannot be created (a read-only mount, a directory the user
//! may not write) and there is no `-wal` file, no process can be writing the database,
//! and it is opened `immutable` instead: no locks and no companion files.

use std::fs::File;
use std::io::Read;
use std::path::{Path, PathBuf};

use rusqlite::{Connection, ErrorCode, OpenFlags};

use super::{sqlite_error, StorageError, BUSY_TIMEOUT};

/// The first 16 bytes of every SQLite 3 database file.
const SQLITE_HEADER: &[u8; 16] = b"SQLite format 3\0";

/// Whether `path` is a SQLite database file, by its header. Any failure to read means
/// no: callers then read the path as something else and report that reader's error.
pub fn is_database_file(path: &Path) -> bool {
    let mut header = Vec::with_capacity(SQLITE_HEADER.len());
    File::open(path)
        .and_then(|file| {
            file.take(SQLITE_HEADER.len() as u64)
                .read_to_end(&mut header)
        })
        .is_ok_and(|_| header == SQLITE_HEADER)
}

/// A read-only connection to the existing database at `path`, and the URI it was
/// opened with (to ATTACH the same file the same way).
pub(super) fn connect(path: &Path) -> Result<(Connection, String), StorageError> {
    let metadata = std::fs::metadata(path).map_err(|cause| match cause.kind() {
        std::io::ErrorKind::NotFound => StorageError::Missing {
            path: path.to_owned(),
        },
        _ => StorageError::Io {
            path: path.to_owned(),
            action: "read it",
            cause,
        },
    })?;
    if metadata.is_file() && metadata.len() == 0 {
        return Err(StorageError::Empty {
            path: path.to_owned(),
        });
    }
    if !is_database_file(path) {
        return Err(StorageError::NotSqlite {
            path: path.to_owned(),
        });
    }
    let shared = uri(path, false);
    let refusal = match open(&shared) {
        Ok(conn) => return Ok((conn, shared)),
        Err(refusal) => refusal,
    };
    let cannot_share = matches!(
        refusal.sqlite_error_code(),
        Some(ErrorCode::CannotOpen | ErrorCode::ReadOnly)
    );
    if !cannot_share || companion(path, "-wal").exists() {
        return Err(sqlite_error(path, refusal));
    }
    let immutable = uri(path, true);
    let conn = open(&immutable).map_err(|e| sqlite_error(path, e))?;
    Ok((conn, immutable))
}

/// Open and read the header, which is when SQLite first needs the `-shm` file.
fn open(uri: &str) -> rusqlite::Result<Connection> {
    let flags = OpenFlags::SQLITE_OPEN_READ_ONLY
        | OpenFlags::SQLITE_OPEN_URI
        | OpenFlags::SQLITE_OPEN_NO_MUTEX;
    let conn = Connection::open_with_flags(uri, flags)?;
    conn.busy_timeout(BUSY_TIMEOUT)?;
    conn.query_row("PRAGMA user_version", [], |row| row.get::<_, u32>(0))?;
    Ok(conn)
}

fn companion(path: &Path, suffix: &str) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(suffix);
    PathBuf::from(name)
}

/// A `file:` URI for `path`, read-only; every byte that could end the path or start
/// the query (`?`, `#`, `%`, and all that is not plain ASCII) is percent-encoded.
pub(super) fn uri(path: &Path, immutable: bool) -> String {
    use std::os::unix::ffi::OsStrExt;
    let mut uri = String::from("file:");
    for &byte in path.as_os_str().as_bytes() {
        match byte {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'/' | b'.' | b'_' | b'-' | b'~' => {
                uri.push(char::from(byte))
            }
            _ => uri.push_str(&format!("%{byte:02X}")),
        }
    }
    uri.push_str(match immutable {
        true => "?mode=ro&immutable=1",
        false => "?mode=ro",
    });
    uri
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uris_escape_what_would_end_the_path() {
        assert_eq!(
            uri(Path::new("/a b/x?y#z%.db"), false),
            "file:/a%20b/x%3Fy%23z%25.db?mode=ro"
        );
        assert_eq!(
            uri(Path::new("rel.db"), true),
            "file:rel.db?mode=ro&immutable=1"
        );
    }
}
