//! An enforcement session: once the program enforces (see `run::start`), read its
//! violations, report them, decide on held execs, reload profiles, and drain at the
//! end. Reporting never ends enforcement: what cannot be written (a full disk) is
//! kept, retried and counted, and said on stderr, in `status` and in the summary; so
//! are violation events the kernel dropped.

use std::collections::{BTreeSet, HashMap};
use std::sync::mpsc::{self, Receiver};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use libbpf_rs::RingBuffer;

use super::hold;
use super::plan::{PolicyInput, ProfileIds};
use super::report::ViolationSink;
use super::run::{EnforceOptions, EnforceSummary, Enforcer};
use super::source::{content_notices, load_inputs};
use crate::bpf::enforce::EnforceProbe;
use crate::bpf::pinned::{self, PinnedState, Reporting};
use crate::event::{Action, ExecEvent};
use crate::metrics::{enforce::EnforceMetrics, Health};

/// How often pending rows and kept lines are written, and trouble is looked for.
const FLUSH_EVERY: Duration = Duration::from_secs(1);
/// At most one line on stderr per kind of trouble in this time.
const SAY_AT_MOST_EVERY: Duration = Duration::from_secs(5);

pub struct Session<'p> {
    opts: &'p EnforceOptions,
    probe: &'p EnforceProbe,
    ring: RingBuffer<'p>,
    /// Ring buffer records, handed over by the ring's callback (which cannot borrow
    /// the session) and handled after each read.
    records: Receiver<Vec<u8>>,
    enforcer: Enforcer,
    sink: ViolationSink,
    /// Profile names by id (see `profile_names`).
    profile_names: HashMap<u32, String>,
    /// What `status` reads, when pinned: kept up to date with the profiles loaded and
    /// what could not be written.
    state: Option<PinnedState>,
    /// Held execs read, not decided yet.
    held: Vec<ExecEvent>,
    held_decided: u64,
    held_killed: u64,
    reloads: usize,
    started: Instant,
    last_flush: Instant,
    write_trouble: Throttle,
    /// Whether writing failed when last looked at.
    writes_failing: bool,
    drop_trouble: Throttle,
    /// The kernel's count of dropped events when last said. Drops counted before
    /// this session (carried over by a takeover) were said by nobody: said too.
    dropped_said: u64,
    /// What /healthz answers from: each read of the ring buffer is stamped there.
    health: Arc<Health>,
    metrics: Option<Arc<EnforceMetrics>>,
}

impl<'p> Session<'p> {
    pub fn new(
        opts: &'p EnforceOptions,
        probe: &'p EnforceProbe,
        enforcer: Enforcer,
        sink: ViolationSink,
        state: Option<PinnedState>,
    ) -> Result<Session<'p>> {
        let (sender, records) = mpsc::channel();
        let ring = probe.violations(move |data| match sender.send(data.to_vec()) {
            Ok(()) => 0,
            Err(_) => -1,
        })?;
        let profile_names = profile_names(&enforcer.ids);
        Ok(Session {
            opts,
            probe,
            ring,
            records,
            enforcer,
            sink,
            profile_names,
            state,
            held: Vec::new(),
            held_decided: 0,
            held_killed: 0,
            reloads: 0,
            started: Instant::now(),
            last_flush: Instant::now(),
            write_trouble: Throttle::new(SAY_AT_MOST_EVERY),
            writes_failing: false,
            drop_trouble: Throttle::new(SAY_AT_MOST_EVERY),
            dropped_said: 0,
            health: Arc::new(Health::default()),
            metrics: None,
        })
    }

    /// Stamp ring buffer reads into `health`; count reloads into `metrics`.
    pub fn with_metrics(
        mut self,
        health: Arc<Health>,
        metrics: Option<Arc<EnforceMetrics>>,
    ) -> Session<'p> {
        self.health = health;
        self.metrics = metrics;
        self
    }

    /// Wait a moment for violations, report them, decide on held execs.
    pub fn poll(&mut self) -> Result<()> {
        // EINTR from a signal is expected here; the caller re-checks the flags.
        let _ = self.ring.poll(Duration::from_millis(100));
        self.health.ring_read();
        self.handle_records();
        self.resolve_held()?;
        if self.last_flush.elapsed() >= FLUSH_EVERY {
            self.take_repeats();
            self.sink.flush();
            self.say_unwritten();
            self.say_dropped();
            self.update_state();
            self.last_flush = Instant::now();
        }
        Ok(())
    }

    /// Report each record read; keep held execs for `resolve_held`.
    fn handle_records(&mut self) {
        let names = &self.profile_names;
        for data in self.records.try_iter() {
            let held = self.sink.on_event(&data, |id| names.get(&id).cloned());
            self.held.extend(held);
        }
    }

    /// Report the violations the kernel only counted since the last take, after the
    /// events read so far (so each count is named after the last event of its kind).
    /// A take that fails is said, and its counts are taken at the next one.
    fn take_repeats(&mut self) {
        match self.probe.take_repeats() {
            Ok(taken) => {
                let names = &self.profile_names;
                for (key, count) in taken {
                    self.sink
                        .report_repeats(&key, count, |id| names.get(&id).cloned());
                }
                self.sink.forget_old_kinds();
            }
            Err(e) => eprintln!("fingerprint: {e}; repeated violations are counted later"),
        }
    }

    /// Decide on every held exec whose task has stopped.
    fn resolve_held(&mut self) -> Result<()> {
        let pids: BTreeSet<u32> = self.held.iter().map(|e| e.pid).collect();
        if pids.is_empty() {
            return Ok(());
        }
        // An exec may be held at several levels (with the LSM: a script, then its
        // interpreter). Once each task has stopped, its exec has written all its
        // events: read them, and decide on a task only with all of them, so that
        // no level runs before every level is decided.
        for pid in &pids {
            hold::wait_until_stopped(*pid, Duration::from_secs(1));
        }
        self.ring.consume().context("reading held execs")?;
        self.handle_records();
        let (ready, later): (Vec<ExecEvent>, Vec<ExecEvent>) = std::mem::take(&mut self.held)
            .into_iter()
            .partition(|e| pids.contains(&e.pid));
        // Tasks first held during that read: next round, once they have stopped.
        self.held = later;
        let holds = self.enforcer.holds(self.probe, self.opts.mode);
        let names = &self.profile_names;
        for (pid, task) in hold::by_task(ready) {
            let mut outcomes = Vec::new();
            for event in &task {
                let path = self.sink.cgroup_path(event.cgroup_id);
                let outcome = holds
                    .decide(event, path.as_deref())
                    .context("deciding on a held exec")?;
                let script = holds
                    .decide_script(event)
                    .context("deciding on a held script")?;
                self.held_decided += 1;
                let decided = std::iter::once((event, outcome))
                    .chain(script.as_ref().map(|(script, outcome)| (script, *outcome)));
                for (exec, outcome) in decided {
                    if let Some(verdict) = outcome.verdict() {
                        if verdict.action == Action::Killed {
                            self.held_killed += 1;
                        }
                        self.sink
                            .report(exec, verdict, |id| names.get(&id).cloned());
                    }
                    outcomes.push(outcome);
                }
            }
            hold::release(pid, &outcomes);
        }
        Ok(())
    }

    /// SIGHUP: open the --events file again (logrotate moved or removed it), and
    /// load the profiles again. Neither failing stops enforcement: a bad profile
    /// leaves the loaded set in place.
    pub fn reload(&mut self) {
        // Repeats counted under the profiles loaded until now are said as such.
        self.handle_records();
        self.take_repeats();
        if let Err(e) = self.sink.reopen_events() {
            eprintln!("fingerprint: {e:#}; events still go to the file opened before");
        }
        let reloaded = reload_profiles(&mut self.enforcer, self.probe, &self.opts.profiles);
        if let Some(metrics) = &self.metrics {
            metrics.reload(reloaded.is_ok());
            self.enforcer.report_loaded(metrics);
        }
        match reloaded {
            Ok(inputs) => {
                self.profile_names = profile_names(&self.enforcer.ids);
                if let Some(state) = &mut self.state {
                    state.profile_names = inputs.iter().map(|i| i.name.clone()).collect();
                    state.profile_ids = self.enforcer.ids.assigned();
                    write_state(state);
                }
                self.reloads += 1;
            }
            Err(e) => eprintln!(
                "fingerprint: reload failed, still enforcing the previous profiles: {e:#}"
            ),
        }
    }

    /// Read what is left, decide on every held exec, and write everything out.
    pub fn drain(mut self) -> Result<EnforceSummary> {
        // Stopping: the probe answers 503 from here on.
        self.health.set_attached(false);
        self.ring.consume().context("draining violation events")?;
        self.handle_records();
        // No task may stay stopped because we stopped: decide on every held exec (a
        // round leaves tasks first held during it to the next).
        for _ in 0..10 {
            if self.held.is_empty() {
                break;
            }
            self.resolve_held()?;
        }
        self.take_repeats();
        self.sink.flush();
        self.update_state();
        Ok(EnforceSummary {
            mechanism: self.probe.mechanism(),
            profiles: self.enforcer.state.profiles(),
            counters: self.probe.counters()?,
            reported: self.sink.reported,
            repeats: self.sink.repeats,
            unwritten: self.sink.unwritten(),
            write_error: self.sink.write_error(),
            reloads: self.reloads,
            held: self.held_decided,
            held_killed: self.held_killed,
            elapsed: self.started.elapsed(),
        })
    }

    /// Say (at most every few seconds) that violations could not be written, and
    /// once that they are written again.
    fn say_unwritten(&mut self) {
        let unwritten = self.sink.unwritten();
        match self.sink.write_error() {
            Some(error) if self.write_trouble.ready() => eprintln!(
                "fingerprint: {} violation events and {} database rows could not be written \
                 so far ({error}); they are kept and retried every second, and enforcement \
                 continues",
                unwritten.events, unwritten.rows
            ),
            None if self.writes_failing => eprintln!(
                "fingerprint: violations are written again ({} events and {} rows were \
                 given up)",
                unwritten.events, unwritten.rows
            ),
            _ => {}
        }
        self.writes_failing = self.sink.write_error().is_some();
    }

    /// Say (at most every few seconds) that the kernel dropped violation events.
    fn say_dropped(&mut self) {
        // A counter that cannot be read now is read at the next flush.
        let Ok(counters) = self.probe.counters() else {
            return;
        };
        if counters.dropped > self.dropped_said && self.drop_trouble.ready() {
            eprintln!(
                "fingerprint: {} violation events DROPPED (ring buffer full) since the last \
                 report, {} in all: the decisions were enforced, but these violations are \
                 not reported",
                counters.dropped - self.dropped_said,
                counters.dropped
            );
            self.dropped_said = counters.dropped;
        }
    }

    /// Keep `status` up to date with what could not be written.
    fn update_state(&mut self) {
        let Some(state) = &mut self.state else {
            return;
        };
        let unwritten = self.sink.unwritten();
        let reporting = Reporting {
            events_unwritten: unwritten.events,
            rows_unwritten: unwritten.rows,
            error: self.sink.write_error(),
        };
        if reporting != state.reporting {
            state.reporting = reporting;
            write_state(state);
        }
    }
}

/// Record the pinned state; a failure is said, not fatal (status then lags).
fn write_state(state: &PinnedState) {
    if let Err(e) = pinned::write_state(state) {
        eprintln!("fingerprint: {e}; `fingerprint status` may show an older state");
    }
}

fn reload_profiles(
    enforcer: &mut Enforcer,
    probe: &EnforceProbe,
    profiles: &std::path::Path,
) -> Result<Vec<PolicyInput>> {
    let (inputs, content) = load_inputs(profiles)?;
    let (report, bound) = enforcer.apply(probe, &inputs)?;
    eprintln!(
        "fingerprint: reloaded {}: {} added, {} changed, {} removed, {} unchanged; {} cgroups bound",
        profiles.display(),
        report.added.len(),
        report.changed.len(),
        report.removed.len(),
        report.unchanged,
        bound
    );
    // A session is the attached process: content is checked.
    for notice in content_notices(&content, true) {
        eprintln!("fingerprint: {notice}");
    }
    Ok(inputs)
}

/// Profile names by every id ever assigned: an event read late (after a reload, or
/// carried over by a takeover) may name a profile no longer loaded.
fn profile_names(ids: &ProfileIds) -> HashMap<u32, String> {
    ids.assigned().into_iter().map(|(n, id)| (id, n)).collect()
}

/// At most one message per period.
struct Throttle {
    period: Duration,
    last: Option<Instant>,
}

impl Throttle {
    fn new(period: Duration) -> Throttle {
        Throttle { period, last: None }
    }

    /// Whether a message may be said now (and if so, the period starts again).
    fn ready(&mut self) -> bool {
        if self.last.is_some_and(|t| t.elapsed() < self.period) {
            return false;
        }
        self.last = Some(Instant::now());
        true
    }
}
