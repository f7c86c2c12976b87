//! The live display of `fingerprint learn`: events per second, workloads, distinct
//! executables and drops, on stderr when it is a terminal.

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

    /// Called about once a second, with the totals so far.
    pub fn update(&self, counters: LearnCounters, workloads: usize, executables: usize) {
        let Some(bar) = &self.bar else { return };
        let rate = counters
            .events
            .saturating_sub(self.last_events.replace(counters.events));
        bar.set_message(format!(
            "{} execs ({rate}/s) · {} workloads · {} executables · {} dropped",
            counters.events, workloads, executables, counters.dropped
        ));
    }

    pub fn finish(&self) {
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
    }
}
