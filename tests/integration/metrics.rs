//! `--metrics-addr`: /metrics scraped while learning and while enforcing (kill mode on
//! this host, the BPF LSM in qemu), its counters checked against what the test did;
//! /healthz answering 503 once the ring buffer is no longer read.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::os::fd::AsRawFd;
use std::os::unix::fs::OpenOptionsExt;
use std::time::{Duration, Instant};

use nix::sys::signal::Signal;

use crate::common::*;
use crate::enforce::{blocked, outcome, Fixture, Mech, Outcome};

/// The address from the start-up line `... metrics at http://ADDR/metrics, ...`.
fn address_in(line: &str) -> String {
    let rest = line
        .split("http://")
        .nth(1)
        .unwrap_or_else(|| panic!("no address in {line:?}"));
    rest.split('/').next().unwrap().to_string()
}

/// One HTTP GET: (status code, body).
fn get(addr: &str, path: &str) -> (u16, String) {
    let mut stream = TcpStream::connect(addr).expect("connecting to --metrics-addr");
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    write!(stream, "GET {path} HTTP/1.1\r\nHost: {addr}\r\n\r\n").unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    let status = response
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no status in {response:?}"));
    let body = response.split_once("\r\n\r\n").map_or("", |(_, b)| b);
    (status, body.to_string())
}

/// The value of one series (`name` or `name{labels}`, exactly as written).
fn sample(metrics: &str, series: &str) -> Option<f64> {
    metrics.lines().find_map(|line| {
        let (name, value) = line.rsplit_once(' ')?;
        (name == series).then(|| value.parse().ok())?
    })
}

/// Scrape until every series has its expected value (the loop that reads events
/// runs on its own schedule); panics with the last scrape if they never do.
fn scrape_until(addr: &str, expected: &[(&str, f64)]) -> String {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let (status, metrics) = get(addr, "/metrics");
        assert_eq!(status, 200, "{metrics}");
        if expected
            .iter()
            .all(|(series, value)| sample(&metrics, series) == Some(*value))
        {
            return metrics;
        }
        if Instant::now() > deadline {
            panic!("expected {expected:?}; last scrape:\n{metrics}");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn learning_counts_what_ran() {
    if !privileged("learning_counts_what_ran") {
        return;
    }
    let (_keep, tmp) = temp_dir();
    let cg = TestCgroup::new();
    let learner = Learner::start_with(
        &tmp.join("learn.db"),
        &[&cg],
        &["--metrics-addr".as_ref(), "127.0.0.1:0".as_ref()],
    );
    let addr = address_in(&learner.wait_for_line("fingerprint: metrics at"));
    assert_eq!(get(&addr, "/healthz"), (200, "ok\n".into()));
    const RUNS: u32 = 5;
    for _ in 0..RUNS {
        cg.run_ok("/usr/bin/true", &[]);
    }
    let metrics = scrape_until(
        &addr,
        &[
            ("fingerprint_learn_exec_events_total", f64::from(RUNS)),
            (
                "fingerprint_learn_executables_recorded_total",
                f64::from(RUNS),
            ),
            ("fingerprint_learn_events_dropped_total", 0.0),
        ],
    );
    let ring = sample(
        &metrics,
        "fingerprint_bpf_map_memory_bytes{map=\"fp_events\"}",
    );
    assert!(ring.is_some_and(|bytes| bytes > 0.0), "{metrics}");
    learner.stop_ok();
}

pub fn enforcement_counts_violations_by_workload_reason_and_action(mech: Mech) {
    let f = Fixture::new("enforce");
    // One line per violation (no repeat counts), so that lines and counters agree.
    let enforcer = f.start(
        mech,
        &["--metrics-addr", "127.0.0.1:0", "--coalesce-window", "0s"],
    );
    let addr = address_in(&enforcer.wait_for_line("fingerprint: metrics at"));
    assert_eq!(get(&addr, "/healthz").0, 200);
    const FORBIDDEN: u32 = 3;
    const ALLOWED: u32 = 2;
    for _ in 0..FORBIDDEN {
        assert_eq!(outcome(&mut f.cg.command(&f.forbidden)), blocked(mech));
    }
    for _ in 0..ALLOWED {
        assert_eq!(outcome(&mut f.cg.command(&f.allowed)), Outcome::Ran(0));
    }
    let blocked_series = format!(
        "fingerprint_enforce_violations_total{{workload=\"{}\",reason=\"not_in_profile\",action=\"{}\"}}",
        f.cg.path,
        mech.blocked_action()
    );
    scrape_until(
        &addr,
        &[
            (blocked_series.as_str(), f64::from(FORBIDDEN)),
            (
                "fingerprint_enforce_execs_checked_total",
                f64::from(FORBIDDEN + ALLOWED),
            ),
            (
                "fingerprint_enforce_execs_violating_total",
                f64::from(FORBIDDEN),
            ),
            ("fingerprint_enforce_events_dropped_total", 0.0),
            ("fingerprint_enforce_profiles_loaded", 1.0),
            ("fingerprint_enforce_allowlist_entries", 1.0),
            ("fingerprint_enforce_cgroups_bound", 1.0),
            ("fingerprint_enforce_cgroups_pending", 0.0),
        ],
    );

    // A reload that adds an entry, then one that fails: both counted.
    f.allow_forbidden_too();
    enforcer.signal(Signal::SIGHUP);
    enforcer.wait_for_line("fingerprint: reloaded");
    let profile = std::fs::read_dir(&f.profiles)
        .unwrap()
        .next()
        .unwrap()
        .unwrap();
    std::fs::write(profile.path(), "{ not json").unwrap();
    enforcer.signal(Signal::SIGHUP);
    enforcer.wait_for_line("reload failed");
    scrape_until(
        &addr,
        &[
            ("fingerprint_enforce_reloads_total{result=\"ok\"}", 1.0),
            ("fingerprint_enforce_reloads_total{result=\"failed\"}", 1.0),
            ("fingerprint_enforce_allowlist_entries", 2.0),
        ],
    );
    assert_eq!(enforcer.stop().len(), FORBIDDEN as usize);
}

// `kill::`: on this host; `lsm::`: in qemu (`make vmtest`), where the action is `denied`.
with_both_mechanisms!(enforcement_counts_violations_by_workload_reason_and_action);

/// The probe must fail when the ring buffer is no longer read: here the enforcer's
/// loop blocks writing events to a stdout pipe nobody reads (a stuck log shipper),
/// and recovers once the pipe is read.
#[test]
fn health_fails_while_events_are_not_read() {
    if !privileged("health_fails_while_events_are_not_read") {
        return;
    }
    let f = Fixture::new("enforce");
    // Events go to a FIFO this test reads only when it chooses to: the smallest
    // pipe (one page) is full after a few violation lines.
    let fifo = f.tmp.join("events.fifo");
    nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::from_bits_truncate(0o600)).unwrap();
    let reader = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(&fifo)
        .expect("opening the events FIFO");
    nix::fcntl::fcntl(reader.as_raw_fd(), nix::fcntl::FcntlArg::F_SETPIPE_SZ(4096))
        .expect("shrinking the events pipe");
    let fifo_arg = fifo.to_str().unwrap();
    let enforcer = f.start(
        Mech::Kill,
        // One line per violation: a flood of them is what fills the FIFO.
        &[
            "--events",
            fifo_arg,
            "--metrics-addr",
            "127.0.0.1:0",
            "--coalesce-window",
            "0s",
        ],
    );
    let addr = address_in(&enforcer.wait_for_line("fingerprint: metrics at"));
    assert_eq!(get(&addr, "/healthz").0, 200);

    // 50 lines of several hundred bytes each cannot fit in 4096 bytes.
    const FORBIDDEN: usize = 50;
    for _ in 0..FORBIDDEN {
        assert_eq!(
            outcome(&mut f.cg.command(&f.forbidden)),
            blocked(Mech::Kill)
        );
    }
    let (_, why) = wait_for_health(&addr, 503);
    assert!(why.contains("ring buffer was last read"), "{why}");

    // Read the FIFO (blocking, to its end when the enforcer exits): unblocked, the
    // loop reads the ring buffer again and the probe recovers.
    nix::fcntl::fcntl(
        reader.as_raw_fd(),
        nix::fcntl::FcntlArg::F_SETFL(nix::fcntl::OFlag::empty()),
    )
    .unwrap();
    let drained = std::thread::spawn(move || {
        let mut lines = String::new();
        let _ = (&reader).read_to_string(&mut lines);
        lines
    });
    wait_for_health(&addr, 200);
    let (status, stderr) = enforcer.stop_with_status();
    assert!(status.success(), "enforce exited {status}: {stderr}");
    let lines = drained.join().unwrap();
    assert_eq!(
        lines.lines().count(),
        FORBIDDEN,
        "each violation reported once"
    );
}

/// Probe /healthz until it answers `status` (within a minute: the bound is 10 s).
fn wait_for_health(addr: &str, status: u16) -> (u16, String) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let answer = get(addr, "/healthz");
        if answer.0 == status {
            return answer;
        }
        assert!(
            Instant::now() < deadline,
            "/healthz still answers {answer:?}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}
