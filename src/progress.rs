//! The live display of `fingerprint learn`: events per second, workloads, distinct
//! executables and drops, and which workloads are still finding executables new to
//! the database, on stderr when it is a terminal.

use std::time::Duration;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

use crate::bpf::readback::LearnCounters;

pub struct Progress {
    bar: Option<ProgressBar>,
    last_events: std::cell::Cell<u64>,
}

impl Progress {
    pub fn new(quiet: bool) -> Progress {
        let bar = (!quiet).then(|| {
            let bar = ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr());
            bar.set_style(
                ProgressStyle::with_template("{spinner} learning {elapsed_precise}  {msg}")
                    .unwrap_or_else(|_| ProgressStyle::default_spinner()),
            );
            bar.enable_steady_tick(Duration::from_millis(200));
            bar
        });
        Progress {
            bar,
            last_events: std::cell::Cell::new(0),
        }
    }

    /// Called about once a second, with the totals so far and the workloads that ran
    /// a new executable within the last minute (sorted).
    pub fn update(
        &self,
        counters: LearnCounters,
        workloads: usize,
        executables: usize,
        still_learning: &[String],
    ) {
        let Some(bar) = &self.bar else { return };
        let rate = counters
            .events
            .saturating_sub(self.last_events.replace(counters.events));
        bar.set_message(format!(
            "{} execs ({rate}/s) · {} workloads · {} executables · {} dropped · {}",
            counters.events,
            workloads,
            executables,
            counters.dropped,
            still_learning_text(still_learning)
        ));
    }

    pub fn finish(&self) {
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
    }
}

/// At most this many workload names are shown; the rest are counted.
const NAMES_SHOWN: usize = 3;

/// "new executables in the last minute: a, b (+2 more)", or that none found any.
fn still_learning_text(names: &[String]) -> String {
    if names.is_empty() {
        return "no workload found a new executable in the last minute".into();
    }
    let shown: Vec<String> = names
        .iter()
        .take(NAMES_SHOWN)
        .map(|n| crate::profile::escape_bytes(n.as_bytes()))
        .collect();
    let more = names.len().saturating_sub(NAMES_SHOWN);
    let rest = if more > 0 {
        format!(" (+{more} more)")
    } else {
        String::new()
    };
    format!("still finding new executables: {}{rest}", shown.join(", "))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn still_learning_names_a_few_and_counts_the_rest() {
        assert!(still_learning_text(&[]).starts_with("no workload"));
        let names: Vec<String> = ["a", "b", "c", "d", "e"].map(String::from).to_vec();
        assert_eq!(
            still_learning_text(&names),
            "still finding new executables: a, b, c (+2 more)"
        );
    }
}
