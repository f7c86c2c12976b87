//! What `/healthz` answers: healthy only while the program is attached and its ring
//! buffer is being read. The loop that reads the ring stamps each read here; a loop
//! stuck (a blocked write, a hung lookup) stops stamping, and the probe fails once
//! the last read is older than `STALE_AFTER`.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// How old the last ring buffer read may be. A healthy loop reads every 100 ms;
/// deciding on held execs or a slow database flush can take a few seconds, and a
/// failed liveness probe restarts the pod, so the bound is generous.
pub const STALE_AFTER: Duration = Duration::from_secs(10);

#[derive(Debug)]
pub struct Health {
    started: Instant,
    attached: AtomicBool,
    /// When the ring buffer was last read, in ms since `started`.
    last_read_ms: AtomicU64,
}

impl Default for Health {
    fn default() -> Self {
        Health {
            started: Instant::now(),
            attached: AtomicBool::new(false),
            last_read_ms: AtomicU64::new(0),
        }
    }
}

impl Health {
    /// The program is attached (true) or is being detached (false).
    pub fn set_attached(&self, attached: bool) {
        self.attached.store(attached, Ordering::SeqCst);
    }

    /// The ring buffer was just read.
    pub fn ring_read(&self) {
        let now = self.started.elapsed().as_millis() as u64;
        self.last_read_ms.store(now, Ordering::SeqCst);
    }

    /// Ok when healthy, else why not (the probe's answer body).
    pub fn check(&self) -> Result<(), String> {
        self.check_at(self.started.elapsed())
    }

    fn check_at(&self, now: Duration) -> Result<(), String> {
        if !self.attached.load(Ordering::SeqCst) {
            return Err("the BPF program is not attached".into());
        }
        let last = Duration::from_millis(self.last_read_ms.load(Ordering::SeqCst));
        let age = now.saturating_sub(last);
        if age > STALE_AFTER {
            return Err(format!(
                "the ring buffer was last read {:.1}s ago (more than {}s): the reading \
                 loop is stuck",
                age.as_secs_f64(),
                STALE_AFTER.as_secs()
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn healthy_only_while_attached_and_read_recently() {
        let health = Health::default();
        assert!(health.check().is_err(), "not attached yet");
        health.set_attached(true);
        health.ring_read();
        assert_eq!(health.check(), Ok(()));
        let later = health.started.elapsed() + STALE_AFTER + Duration::from_secs(1);
        assert!(health.check_at(later).unwrap_err().contains("stuck"));
        health.set_attached(false);
        assert!(health.check().unwrap_err().contains("not attached"));
    }
}
