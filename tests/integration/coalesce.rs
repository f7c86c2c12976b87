//! Repeated violations coalesced in the kernel (issue #13): a flood of one violation
//! costs one event and a count, exactly; different violations are never folded
//! together. Run with both mechanisms (the LSM in qemu).

use std::collections::BTreeMap;
use std::path::Path;

use serde_json::Value;

use crate::common::*;
use crate::enforce::{blocked, outcome, status, write_profile, Enforcer, Fixture, Mech, TRUE};

/// Event lines (`repeats` 0: one exec each) and the sum of `repeats`, by (cgroup,
/// executable): what the lines say happened, per kind of violation.
fn tally(events: &[Value]) -> BTreeMap<(String, String), (u64, u64)> {
    let mut kinds: BTreeMap<(String, String), (u64, u64)> = BTreeMap::new();
    for e in events {
        let key = (
            e["cgroup"].as_str().unwrap_or_default().to_string(),
            e["executable"].as_str().unwrap_or("<none>").to_string(),
        );
        let entry = kinds.entry(key).or_default();
        match e["repeats"].as_u64().expect("every line has repeats") {
            0 => entry.0 += 1,
            n => entry.1 += n,
        }
    }
    kinds
}

/// Run `exe` in `cg` `n` times; each must be blocked.
fn flood(cg: &TestCgroup, exe: &Path, n: usize, mech: Mech) {
    for i in 0..n {
        assert_eq!(outcome(&mut cg.command(exe)), blocked(mech), "exec {i}");
    }
}

/// A flood of one forbidden exec: one event and repeat counts, which add up to the
/// flood exactly (none dropped, none lost at exit), as the kernel counted them.
pub fn a_flood_of_one_violation_costs_one_event(mech: Mech) {
    const N: usize = 300;
    let f = Fixture::new("enforce");
    // A window longer than the test: one event, whatever the machine's speed.
    let enforcer = f.start(mech, &["--coalesce-window", "1h"]);
    flood(&f.cg, &f.forbidden, N, mech);
    let (events_file, db) = (enforcer.events.clone(), enforcer.db.clone());
    let (code, stderr) = enforcer.stop_with_status();
    assert!(code.success(), "{stderr}");
    let events = crate::enforce::read_events(&events_file);
    let kinds = tally(&events);
    let kind = (f.cg.path.clone(), f.forbidden.to_str().unwrap().to_string());
    assert_eq!(kinds.get(&kind), Some(&(1, N as u64 - 1)), "{events:#?}");
    assert_eq!(kinds.len(), 1, "{events:#?}");
    for repeat in events.iter().filter(|e| e["repeats"] != 0) {
        assert_eq!(repeat["action"], mech_action(mech), "{repeat:#}");
        assert_eq!(repeat["profile"], f.cg.path.as_str(), "{repeat:#}");
        assert!(repeat["pid"].is_null(), "{repeat:#}");
    }
    let conn = rusqlite::Connection::open(&db).unwrap();
    let rows: (i64, i64) = conn
        .query_row(
            "SELECT COUNT(*), SUM(CASE repeats WHEN 0 THEN 1 ELSE repeats END) FROM violations",
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .unwrap();
    assert_eq!(rows.1, N as i64, "rows of the database: {rows:?}");
    assert_eq!(rows.0 as usize, events.len(), "one row per line");
    let summary = format!(
        "{N} violations (1 reported one by one, {} as repeats, 0 dropped)",
        N - 1
    );
    assert!(stderr.contains(&summary), "{stderr}");
}

fn mech_action(mech: Mech) -> &'static str {
    match mech {
        Mech::Lsm => "denied",
        Mech::Kill => "killed",
    }
}

/// Two executables in one cgroup, and one executable in two cgroups: three kinds,
/// each with its own event and its own count; `status` counts what was folded.
pub fn different_violations_are_not_folded_together(mech: Mech) {
    const N: usize = 20;
    let f = Fixture::new("enforce");
    let other_exe = install_binary(TRUE, &f.tmp.join("bin/fp-forbidden-too"));
    let other_cg = TestCgroup::new();
    write_profile(&f.profiles, &other_cg.path, "enforce", &[&f.allowed], &[]);
    let pin_dir = format!("/sys/fs/bpf/{}", unique("fp-test-coalesce"));
    let enforcer = f.start(
        mech,
        &["--coalesce-window", "1h", "--pin", "--pin-dir", &pin_dir],
    );
    flood(&f.cg, &f.forbidden, N, mech);
    flood(&f.cg, &other_exe, N, mech);
    flood(&other_cg, &f.forbidden, N, mech);
    let folded = status(&pin_dir).1["status"]["folded"].as_u64();
    let events = stop_pinned(enforcer, &pin_dir);
    let kinds = tally(&events);
    let exe = |p: &Path| p.to_str().unwrap().to_string();
    let expected: BTreeMap<(String, String), (u64, u64)> = [
        ((f.cg.path.clone(), exe(&f.forbidden)), (1, N as u64 - 1)),
        ((f.cg.path.clone(), exe(&other_exe)), (1, N as u64 - 1)),
        (
            (other_cg.path.clone(), exe(&f.forbidden)),
            (1, N as u64 - 1),
        ),
    ]
    .into();
    assert_eq!(kinds, expected, "{events:#?}");
    assert_eq!(folded, Some(3 * (N as u64 - 1)));
}

/// Stop a pinned enforcer and remove its pins; its events.
fn stop_pinned(enforcer: Enforcer, pin_dir: &str) -> Vec<Value> {
    let events = enforcer.stop();
    let out = fingerprint(&["stop".as_ref(), "--pin-dir".as_ref(), pin_dir.as_ref()]);
    assert!(out.status.success(), "{out:?}");
    events
}

/// `--coalesce-window 0s`: every violation is its own event, as before.
pub fn a_zero_window_sends_every_violation(mech: Mech) {
    let f = Fixture::new("enforce");
    let enforcer = f.start(mech, &["--coalesce-window", "0s"]);
    flood(&f.cg, &f.forbidden, 5, mech);
    let events = enforcer.stop();
    assert_eq!(events.len(), 5, "{events:#?}");
    assert!(events.iter().all(|e| e["repeats"] == 0), "{events:#?}");
}

with_both_mechanisms!(
    a_flood_of_one_violation_costs_one_event,
    different_violations_are_not_folded_together,
    a_zero_window_sends_every_violation,
);
