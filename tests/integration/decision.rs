//! The enforcement decision, run in the kernel through BPF_PROG_TEST_RUN: the same
//! digest, binary search and glob code the LSM program runs, testable on a host whose
//! kernel refuses LSM programs. Each case is checked against the Rust side too.

use fingerprint::bpf::enforce::{EnforceProbe, MechanismChoice, ProfileDescriptor};
use fingerprint::digest::{digest, DigestKey};
use fingerprint::enforce::plan::{MapSizes, Mode};

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
    let probe =
        EnforceProbe::load(MechanismChoice::Kill, sizes, None).expect("loading enforce.bpf.o");
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
