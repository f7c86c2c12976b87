//! Which profiles in audit mode are ready to enforce: per profile, how many
//! violations enforcement reported for it (the `violations` table `enforce --db`
//! writes) and when the first and last were. A profile with none for long enough,
//! and that `fingerprint check` passes, can be promoted to enforce.

use std::path::Path;

use anyhow::{Context, Result};
use serde::Serialize;

use crate::profile::{Mode, ProfileSet};
use crate::storage::Database;

/// The `action` enforcement records for a violation it let run (audit mode).
const AUDITED: &str = "audited";

/// One audit-mode profile and its audited violations.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AuditReadiness {
    pub profile: String,
    pub violations: u64,
    pub first_ms: Option<i64>,
    pub last_ms: Option<i64>,
}

/// Every profile in audit mode under `profiles`, sorted by name, with the violations
/// `db` holds for it.
pub fn audit_profiles(profiles: &Path, db: &Path) -> Result<Vec<AuditReadiness>> {
    let set = ProfileSet::load(profiles)
        .with_context(|| format!("loading profiles from {}", profiles.display()))?;
    let counts = Database::open_read_only(db)?.violations_by_profile(AUDITED)?;
    let mut list: Vec<AuditReadiness> = set
        .iter()
        .filter(|p| p.mode == Mode::Audit)
        .map(|p| {
            let found = counts.iter().find(|(name, ..)| *name == p.name);
            AuditReadiness {
                profile: p.name.clone(),
                violations: found.map_or(0, |(_, n, ..)| *n),
                first_ms: found.map(|(_, _, first, _)| *first),
                last_ms: found.map(|(.., last)| *last),
            }
        })
        .collect();
    list.sort_by(|a, b| a.profile.cmp(&b.profile));
    Ok(list)
}

impl AuditReadiness {
    /// "web: 3 violations, first ..., last ..." or "web: no violations".
    pub fn render_text(&self) -> String {
        let time = |ms: i64| {
            humantime::format_rfc3339_seconds(
                std::time::UNIX_EPOCH + std::time::Duration::from_millis(ms.max(0) as u64),
            )
        };
        let name = crate::profile::escape_bytes(self.profile.as_bytes());
        match (self.first_ms, self.last_ms) {
            (Some(first), Some(last)) => format!(
                "{name}: {} violations since {}, last {}",
                self.violations,
                time(first),
                time(last)
            ),
            _ => format!("{name}: no violations recorded"),
        }
    }
}
