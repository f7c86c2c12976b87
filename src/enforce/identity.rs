//! Executable identity at enforcement: the content of a held exec's file version.

use std::time::Duration;

/// A file version whose change time is younger than this when it is hashed is decided
/// but not cached: the change time comes from a coarse clock (one tick, 1 to 10 ms),
/// so a second write of the same size within that tick would keep the cache key.
pub const YOUNG_CTIME: Duration = Duration::from_millis(100);
