//! Convergence: whether learning a workload is done. For each workload, over every
//! session and merged node: when learning first saw it, when it last ran an
//! executable it had not run before, how many execs and distinct executables. A
//! workload that found nothing new for long enough is *stable*; `export
//! --stable-for` writes only those, and `show` prints the figures.

use std::time::Duration;

use serde::Serialize;

use crate::storage::LearnedWorkload;

/// A workload's learning history, aggregated from its learned executables.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Convergence {
    /// When learning first saw the workload run (or already running) anything.
    pub first_seen_ms: i64,
    /// When it last ran an executable it had not run before: the latest first sighting
    /// of any of its executables.
    pub last_new_ms: i64,
    /// Execs recorded (processes seen already running are not execs).
    pub execs: u64,
    /// Distinct executables (path and flags).
    pub executables: usize,
    /// Executables seen only in processes already running, never exec'd.
    pub running_only: usize,
}

impl Convergence {
    /// The figures for `workload`; `None` when it has no executable at all.
    pub fn of(workload: &LearnedWorkload) -> Option<Convergence> {
        let exes = &workload.executables;
        Some(Convergence {
            first_seen_ms: exes.iter().map(|e| e.first_seen_ms).min()?,
            last_new_ms: exes.iter().map(|e| e.first_seen_ms).max()?,
            execs: exes.iter().map(|e| e.count).sum(),
            executables: exes.len(),
            running_only: exes.iter().filter(|e| e.count == 0).count(),
        })
    }

    /// How long nothing new was found, at `now_ms` (zero if the clock is behind).
    pub fn quiet_for(&self, now_ms: i64) -> Duration {
        Duration::from_millis(now_ms.saturating_sub(self.last_new_ms).max(0) as u64)
    }

    /// Whether nothing new was found for at least `window` before `now_ms`.
    pub fn is_stable(&self, now_ms: i64, window: Duration) -> bool {
        self.quiet_for(now_ms) >= window
    }
}

/// Learned workloads split into those stable for `window` at `now_ms` and those still
/// learning (with how long each has been quiet), both in the order given.
pub fn split_stable(
    learned: &[LearnedWorkload],
    now_ms: i64,
    window: Duration,
) -> (Vec<LearnedWorkload>, Vec<(String, Duration)>) {
    let mut stable = Vec::new();
    let mut learning = Vec::new();
    for workload in learned {
        match Convergence::of(workload) {
            Some(c) if !c.is_stable(now_ms, window) => {
                learning.push((workload.name.clone(), c.quiet_for(now_ms)))
            }
            _ => stable.push(workload.clone()),
        }
    }
    (stable, learning)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::LearnedExecutable;
    use crate::workload::WorkloadId;

    fn exe(path: &str, count: u64, first: i64, last: i64) -> LearnedExecutable {
        LearnedExecutable {
            path: path.as_bytes().to_vec(),
            path_flags: 0,
            count,
            first_seen_ms: first,
            last_seen_ms: last,
            sha256: Vec::new(),
            running: u64::from(count == 0),
        }
    }

    fn workload(name: &str, exes: Vec<LearnedExecutable>) -> LearnedWorkload {
        LearnedWorkload {
            id: WorkloadId::Cgroup { path: name.into() },
            name: name.into(),
            executables: exes,
        }
    }

    #[test]
    fn figures_come_from_first_sightings_not_last_runs() {
        let w = workload(
            "/web",
            vec![
                exe("/bin/a", 5, 1_000, 90_000),
                exe("/bin/b", 2, 40_000, 41_000),
                exe("/bin/c", 0, 2_000, 2_000),
            ],
        );
        let c = Convergence::of(&w).unwrap();
        assert_eq!(
            c,
            Convergence {
                first_seen_ms: 1_000,
                last_new_ms: 40_000,
                execs: 7,
                executables: 3,
                running_only: 1,
            }
        );
        assert!(c.is_stable(100_000, Duration::from_secs(60)));
        assert!(!c.is_stable(99_999, Duration::from_secs(60)));
    }

    #[test]
    fn split_keeps_order_and_names_the_learning() {
        let learned = vec![
            workload("/old", vec![exe("/bin/a", 1, 0, 0)]),
            workload(
                "/new",
                vec![exe("/bin/a", 1, 0, 0), exe("/bin/b", 1, 9_000, 9_000)],
            ),
        ];
        let (stable, learning) = split_stable(&learned, 10_000, Duration::from_secs(5));
        assert_eq!(stable.len(), 1);
        assert_eq!(stable[0].name, "/old");
        assert_eq!(learning, vec![("/new".to_string(), Duration::from_secs(1))]);
    }
}
