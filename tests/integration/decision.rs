//! The enforcement decision, run in the kernel through BPF_PROG_TEST_RUN: the same
//! digest, binary search and glob code the LSM program runs, testable on a host whose
//! kernel refuses LSM programs. Each case is checked against the Rust side too.

use std::cell::Cell;
use std::ops::RangeInclusive;
use std::time::Duration;

use fingerprint::bpf::abi::PATH_MAX;
use fingerprint::bpf::enforce::{EnforceProbe, MechanismChoice, ProfileDescriptor};
use fingerprint::digest::{digest, DigestKey};
use fingerprint::enforce::plan::{MapSizes, Mode, PATTERN_MAX};
use fingerprint::profile::{escape_bytes, Pattern};
use proptest::collection::vec;
use proptest::prelude::*;
use proptest::sample::{select, Index};
use proptest::test_runner::{Config, TestRunner};

use crate::common::privileged;

const KEY: DigestKey = DigestKey([0x0123_4567_89ab_cdef, 0xfedc_ba98_7654_3210]);

fn probe() -> EnforceProbe {
    fingerprint::bpf::preflight("decision tests").expect("BPF preflight");
    let sizes = MapSizes {
        profiles: 16,
        allow: 4096,
        patterns: 64,
        rules: 16,
        bindings: 16,
    };
    let probe = EnforceProbe::load(MechanismChoice::Kill, sizes, Duration::ZERO, None)
        .expect("loading enforce.bpf.o");
    probe.write_config(&KEY, None).expect("config");
    probe
}

/// Load profile `id` with these exact paths and patterns.
fn load_profile(probe: &EnforceProbe, id: u32, offset: u32, paths: &[&[u8]], patterns: &[&[u8]]) {
    let mut digests: Vec<_> = paths.iter().map(|p| digest(&KEY, p)).collect();
    digests.sort_unstable();
    digests.dedup();
    probe.write_digests(&[(offset, &digests)]).expect("digests");
    for (i, pattern) in patterns.iter().enumerate() {
        probe
            .write_pattern(id, 100 + i as u32, pattern)
            .expect("pattern");
    }
    let desc = ProfileDescriptor {
        allow_offset: offset,
        allow_count: digests.len() as u32,
        pattern_base: 100,
        pattern_count: patterns.len() as u32,
        mode: Mode::Enforce.into(),
        keep_cgroup: false,
    };
    probe.write_profiles(&[(id, desc)]).expect("profile");
}

#[test]
fn kernel_and_user_space_digests_agree() {
    if !privileged("digests_agree") {
        return;
    }
    let probe = probe();
    let long: Vec<u8> = (0..4000).map(|i| b'a' + (i % 26) as u8).collect();
    let mut cases: Vec<Vec<u8>> = (1..=17).map(|n| vec![b'/'; n]).collect();
    cases.extend([
        b"/usr/bin/true".to_vec(),
        b"/tmp/dir with space/new\nline\xff".to_vec(),
        [b"/".as_slice(), &long].concat(),
    ]);
    for path in cases {
        let (_, kernel) = probe.test_path(1, &path).expect("test run");
        assert_eq!(
            kernel,
            digest(&KEY, &path),
            "digest of {} bytes",
            path.len()
        );
    }
}

#[test]
fn allowlist_lookup_is_exact() {
    if !privileged("allowlist_exact") {
        return;
    }
    let probe = probe();
    let allowed: Vec<Vec<u8>> = (0..300)
        .map(|i| format!("/usr/bin/tool-{i}").into_bytes())
        .collect();
    let refs: Vec<&[u8]> = allowed.iter().map(Vec::as_slice).collect();
    load_profile(&probe, 7, 10, &refs, &[]);
    // Another profile right after it in the array: its entries must not leak into 7.
    load_profile(&probe, 8, 10 + 300, &[b"/usr/bin/other"], &[]);
    for path in &allowed {
        assert!(
            probe.test_path(7, path).unwrap().0,
            "{}",
            String::from_utf8_lossy(path)
        );
    }
    for near_miss in [
        b"/usr/bin/tool-".as_slice(),
        b"/usr/bin/tool-3000",
        b"/usr/bin/tool-1 ",
        b"/usr/bin/Tool-1",
        b"/usr/bin/tool-1/",
        b"/usr/bin/other",
    ] {
        assert!(
            !probe.test_path(7, near_miss).unwrap().0,
            "{:?} must not match",
            String::from_utf8_lossy(near_miss)
        );
    }
    assert!(probe.test_path(8, b"/usr/bin/other").unwrap().0);
    assert!(
        !probe.test_path(9, b"/usr/bin/other").unwrap().0,
        "no such profile: not allowed"
    );
}

#[test]
fn patterns_match_within_one_component() {
    if !privileged("patterns") {
        return;
    }
    let probe = probe();
    load_profile(
        &probe,
        3,
        0,
        &[b"/bin/exact"],
        &[b"/opt/app-*/bin/server", b"/usr/lib/*/helper-*", b"/srv/*"],
    );
    let cases: &[(&[u8], bool)] = &[
        (b"/bin/exact", true),
        (b"/opt/app-1.2.3/bin/server", true),
        (b"/opt/app-/bin/server", true),
        (b"/opt/app-1/extra/bin/server", false),
        (b"/opt/app-1/bin/server2", false),
        (b"/opt/other/bin/server", false),
        (b"/usr/lib/x86_64/helper-a", true),
        (b"/usr/lib/x86_64/helper-", true),
        (b"/usr/lib/a/b/helper-x", false),
        (b"/srv/anything", true),
        (b"/srv/a/b", false),
        (b"/srv", false),
    ];
    for (path, expected) in cases {
        assert_eq!(
            probe.test_path(3, path).unwrap().0,
            *expected,
            "{}",
            String::from_utf8_lossy(path)
        );
    }
}

/// Bytes paths and patterns are made of: few, so that generated paths share prefixes
/// and suffixes with the patterns (near misses), with a non-UTF-8 byte; `*` is a
/// literal byte in a path.
const LITERALS: &[u8] = b"ab.-\xff";
const PATH_BYTES: &[u8] = b"ab.-*\xff";

/// A pattern component: literal bytes and at most one `*`, anywhere (`*` alone too).
fn pattern_component(
    len: RangeInclusive<usize>,
) -> impl Strategy<Value = (Vec<u8>, Option<Index>)> {
    (
        vec(select(LITERALS), len),
        proptest::option::of(any::<Index>()),
    )
}

/// A valid pattern (as a profile may hold it) of `components`, one of them with a
/// star at least, each with `len` literal bytes: long patterns (up to PATTERN_MAX - 1
/// bytes) come from long components.
fn pattern(
    components: RangeInclusive<usize>,
    len: RangeInclusive<usize>,
) -> impl Strategy<Value = Pattern> {
    let parts = (vec(pattern_component(len), components), any::<Index>());
    parts.prop_filter_map("a valid pattern that fits", |(parts, starred)| {
        let starred = starred.index(parts.len());
        let mut bytes = Vec::new();
        for (i, (mut literal, star)) in parts.into_iter().enumerate() {
            let star = star.map(|at| at.index(literal.len() + 1));
            match star.or((i == starred).then_some(literal.len())) {
                Some(at) => literal.insert(at, b'*'),
                None if literal.is_empty() => literal.push(b'a'),
                None => {}
            }
            bytes.push(b'/');
            bytes.extend(literal);
        }
        Pattern::new(bytes)
            .ok()
            .filter(|p| p.as_bytes().len() < PATTERN_MAX)
    })
}

/// Paths to try against `pattern`: instances of it (each `*` replaced by up to `fill`
/// bytes of one component), the same with one byte inserted, removed or replaced (a
/// `/` among them, so components split and join), paths of random components, and
/// `/`. Every path is shorter than PATH_MAX and not empty (the kernel refuses an
/// empty path before any matching, and so does its test program).
fn paths_for(pattern: Pattern, fill: usize) -> impl Strategy<Value = (Pattern, Vec<Vec<u8>>)> {
    let filler = vec(select(PATH_BYTES), 0..=fill);
    let instance = vec(filler, 5).prop_map({
        let pattern = pattern.clone();
        move |fillers| {
            let mut fillers = fillers.into_iter();
            let mut path = Vec::new();
            for &byte in pattern.as_bytes() {
                match byte {
                    b'*' => path.extend(fillers.next().unwrap_or_default()),
                    byte => path.push(byte),
                }
            }
            path
        }
    });
    let mutation = (any::<Index>(), 0..3u8, select(b"/a*\xff".as_slice()));
    let mutated = (instance.clone(), mutation).prop_map(|(mut path, (at, kind, byte))| {
        match kind {
            0 => path.insert(at.index(path.len() + 1), byte),
            1 => {
                path.remove(at.index(path.len()));
            }
            _ => {
                let at = at.index(path.len());
                path[at] = byte;
            }
        }
        path
    });
    let random = vec(vec(select(PATH_BYTES), 1..=6), 1..=5).prop_map(|parts| {
        parts
            .iter()
            .flat_map(|c| [b"/".as_slice(), c].concat())
            .collect()
    });
    (vec(instance, 3), vec(mutated, 4), random).prop_map(move |(instances, mutated, random)| {
        let mut paths: Vec<Vec<u8>> = instances.into_iter().chain(mutated).collect();
        paths.extend([random, b"/".to_vec(), longest_instance(&pattern)]);
        paths.retain(|p| !p.is_empty() && p.len() < PATH_MAX);
        (pattern.clone(), paths)
    })
}

/// The instance of `pattern` of PATH_MAX - 1 bytes: its first `*` takes all the fill.
fn longest_instance(pattern: &Pattern) -> Vec<u8> {
    let bytes = pattern.as_bytes();
    let star = bytes
        .iter()
        .position(|&b| b == b'*')
        .expect("a pattern has a star");
    let literal: Vec<u8> = bytes.iter().copied().filter(|&b| b != b'*').collect();
    let mut path = literal.clone();
    path.splice(
        star..star,
        std::iter::repeat_n(b'a', PATH_MAX - 1 - literal.len()),
    );
    path
}

/// `FP_GLOB_MAX_STEPS` from bpf/policy.h (read at build time: the qemu guest has no
/// source tree): the kernel's matcher gives up (does not match: fails closed) after
/// this many steps.
fn kernel_glob_budget() -> usize {
    include_str!(concat!(env!("CARGO_MANIFEST_DIR"), "/bpf/policy.h"))
        .lines()
        .find_map(|line| line.strip_prefix("#define FP_GLOB_MAX_STEPS "))
        .and_then(|value| value.trim().parse().ok())
        .expect("FP_GLOB_MAX_STEPS in bpf/policy.h")
}

/// An upper bound on the kernel matcher's steps: each step consumes a pattern byte or
/// a star, or moves the last star one byte further, which never crosses a `/`; after
/// such a move the rest of the pattern is matched again. So at most
/// (1 + stars * longest path component) * (pattern length + 1) + 2 * stars + 2.
fn kernel_glob_steps_bound(pattern: &[u8], path: &[u8]) -> usize {
    let stars = pattern.iter().filter(|&&b| b == b'*').count();
    let longest = path
        .split(|&b| b == b'/')
        .map(<[u8]>::len)
        .max()
        .unwrap_or(0);
    (1 + stars * longest) * (pattern.len() + 1) + 2 * stars + 2
}

/// The Rust matcher (profile review, diff) and the kernel's (what enforcement does)
/// agree on generated patterns and paths: `*` within one component, `/` boundaries,
/// non-UTF-8 bytes, empty and long inputs (paths near PATH_MAX, patterns near
/// PATTERN_MAX). Where the kernel may run out of steps it must fail closed: never
/// allow what the Rust side refuses.
#[test]
fn kernel_and_rust_globs_agree() {
    if !privileged("globs_agree") {
        return;
    }
    let probe = probe();
    let budget = kernel_glob_budget();
    // Short inputs, where near misses are likely; long ones, of long components.
    let cases = prop_oneof![
        3 => pattern(1..=5, 0..=8).prop_flat_map(|p| paths_for(p, 12)),
        1 => pattern(3..=5, 30..=62).prop_flat_map(|p| paths_for(p, 900)),
    ];
    let mut runner = TestRunner::new(Config {
        cases: 128,
        ..Config::default()
    });
    // Tallies (the runner takes an Fn): paths checked, and of those within the budget.
    let (checked, within_budget) = (Cell::new(0usize), Cell::new(0usize));
    let failed_closed = Cell::new(0usize);
    let longest = Cell::new((0usize, 0usize));
    runner
        .run(&cases, |(pattern, paths)| {
            load_profile(&probe, 11, 0, &[], &[pattern.as_bytes()]);
            for path in paths {
                let kernel = probe.test_path(11, &path).expect("test run").0;
                let rust = pattern.matches(&path);
                let bounded = kernel_glob_steps_bound(pattern.as_bytes(), &path) <= budget;
                let what = format!("pattern {pattern} on path {}", escape_bytes(&path));
                if bounded {
                    prop_assert_eq!(kernel, rust, "{}", what);
                    within_budget.set(within_budget.get() + 1);
                } else {
                    prop_assert!(!kernel || rust, "the kernel allows more: {}", what);
                    failed_closed.set(failed_closed.get() + usize::from(kernel != rust));
                }
                checked.set(checked.get() + 1);
                longest.set(longest.get().max((path.len(), pattern.as_bytes().len())));
            }
            Ok(())
        })
        .unwrap_or_else(|failure| panic!("{failure}"));
    let (checked, within_budget, longest) = (checked.get(), within_budget.get(), longest.get());
    eprintln!(
        "globs: {checked} paths checked, {within_budget} within the kernel's step budget, \
         {} refused by the kernel for want of steps; longest path {} bytes, pattern {} bytes",
        failed_closed.get(),
        longest.0,
        longest.1
    );
    assert!(
        within_budget * 2 > checked,
        "most cases must be checked for equality, not only for failing closed"
    );
}
