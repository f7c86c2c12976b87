//! Test support shared by the profile and diff tests: fixtures, golden files and
//! proptest strategies.
//!
//! Golden files live in tests/golden/ and are compared byte for byte; run the tests
//! with `FP_UPDATE_GOLDEN=1` to rewrite them after an intended change, then review the
//! result with `git diff` like any other change.

use std::collections::BTreeSet;
use std::fs;
use std::path::{Path, PathBuf};

use proptest::collection::{btree_map, btree_set, vec};
use proptest::prelude::*;

use super::{
    CgroupMoves, ExecPath, ExecStats, Mode, Pattern, Profile, ProfileSet, Stats, WorkloadMatch,
};
use crate::content::Sha256;
use crate::storage::{LearnedExecutable, LearnedWorkload};
use crate::workload::WorkloadId;

pub fn golden_path(relative: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/golden")
        .join(relative)
}

fn updating_golden() -> bool {
    std::env::var_os("FP_UPDATE_GOLDEN").is_some_and(|value| value == "1")
}

/// Compare `actual` with a golden file, or rewrite it under `FP_UPDATE_GOLDEN=1`.
pub fn assert_golden(relative: &str, actual: &[u8]) {
    let path = golden_path(relative);
    if updating_golden() {
        fs::create_dir_all(path.parent().expect("golden files are in a directory"))
            .expect("create golden dir");
        fs::write(&path, actual).expect("write golden file");
        return;
    }
    let expected = fs::read(&path).unwrap_or_else(|e| {
        panic!(
            "{}: {e}; run `FP_UPDATE_GOLDEN=1 cargo test` to create it",
            path.display()
        )
    });
    assert!(
        expected == actual,
        "{} differs from the output (FP_UPDATE_GOLDEN=1 cargo test rewrites it)\n--- golden\n{}\n--- actual\n{}",
        path.display(),
        String::from_utf8_lossy(&expected),
        String::from_utf8_lossy(actual)
    );
}

/// Compare a whole directory of output with a golden directory (same file names, same
/// bytes); under `FP_UPDATE_GOLDEN=1` the golden directory is replaced.
pub fn assert_golden_dir(relative: &str, actual_dir: &Path) {
    let golden = golden_path(relative);
    if updating_golden() {
        let _ = fs::remove_dir_all(&golden);
    }
    let actual = file_names(actual_dir);
    for name in &actual {
        let bytes = fs::read(actual_dir.join(name)).expect("read output");
        assert_golden(&format!("{relative}/{name}"), &bytes);
    }
    assert_eq!(file_names(&golden), actual, "files in {}", golden.display());
}

pub fn file_names(dir: &Path) -> BTreeSet<String> {
    fs::read_dir(dir)
        .expect("list dir")
        .map(|entry| {
            entry
                .expect("entry")
                .file_name()
                .into_string()
                .expect("utf-8 file name")
        })
        .collect()
}

/// Every file in `dir` with its bytes, to check that a failed command left it as it was.
pub fn snapshot(dir: &Path) -> Vec<(String, Vec<u8>)> {
    file_names(dir)
        .into_iter()
        .map(|name| {
            let bytes = fs::read(dir.join(&name)).unwrap_or_default();
            (name, bytes)
        })
        .collect()
}

/// A clean learned executable (no flags), seen once.
pub fn learned_executable(path: &[u8]) -> LearnedExecutable {
    learned(path, 0, 1)
}

fn learned(path: &[u8], flags: u32, count: u64) -> LearnedExecutable {
    LearnedExecutable {
        path: path.to_vec(),
        path_flags: flags,
        count,
        first_seen_ms: 1_700_000_000_000 + i64::try_from(count).expect("small count"),
        last_seen_ms: 1_700_000_900_000,
        sha256: Vec::new(),
        running: 0,
    }
}

/// What a learn run on a small node could produce: every kind of workload, a non-UTF-8
/// path, and each kind of path that cannot be allowlisted.
pub fn sample_learned() -> Vec<LearnedWorkload> {
    vec![
        LearnedWorkload {
            id: WorkloadId::SystemdUnit {
                unit: "nginx.service".into(),
            },
            name: "nginx.service".into(),
            executables: vec![
                learned(b"/usr/sbin/nginx", 0, 12),
                learned(b"/usr/bin/logrotate", 0, 2),
                learned(b"/memfd:payload (deleted)", 2 | 4, 1),
                learned(b"/usr/lib/very/long/pa", 1, 1),
                learned(b"/opt/caf\xe9/run", 0, 3),
            ],
        },
        LearnedWorkload {
            id: WorkloadId::Container {
                runtime: "docker".into(),
                id: "0123abcd".into(),
            },
            name: "docker/0123abcd".into(),
            executables: vec![
                learned(b"/bin/sh", 0, 5),
                learned(b"/usr/bin/../bin/env", 0, 1),
            ],
        },
        LearnedWorkload {
            id: WorkloadId::KubernetesContainer {
                qos: "burstable".into(),
                pod_uid: "4f1c2a3e-0000-4000-8000-000000000001".into(),
                runtime: Some("containerd".into()),
                container_id: "c0ffee".into(),
            },
            name: "kubernetes/burstable/pod4f1c2a3e-0000-4000-8000-000000000001/c0ffee".into(),
            executables: vec![
                learned(b"/app/server", 0, 40),
                learned(b"/usr/bin/curl", 0, 7),
            ],
        },
        LearnedWorkload {
            id: WorkloadId::Cgroup {
                path: "/system.slice/backup.scope".into(),
            },
            name: "/system.slice/backup.scope".into(),
            executables: vec![
                learned(b"/usr/bin/tar", 0, 1),
                learned(b"/usr/bin/gzip", 8, 1),
            ],
        },
    ]
}

pub fn exec(path: &[u8]) -> ExecPath {
    ExecPath::new(path.to_vec()).expect("valid test path")
}

pub fn pattern(text: &str) -> Pattern {
    Pattern::new(text).expect("valid test pattern")
}

pub fn systemd(unit: &str) -> WorkloadMatch {
    WorkloadMatch::Exact(WorkloadId::SystemdUnit { unit: unit.into() })
}

/// A profile by hand, as a person would write it.
pub fn profile(name: &str, mode: Mode, executables: &[&str], patterns: &[&str]) -> Profile {
    let mut profile = Profile::new(name, systemd(name), mode);
    profile.executables = executables
        .iter()
        .map(|path| exec(path.as_bytes()))
        .collect();
    profile.patterns = patterns.iter().map(|text| pattern(text)).collect();
    profile
}

pub fn set_of(profiles: impl IntoIterator<Item = Profile>) -> ProfileSet {
    let mut set = ProfileSet::new();
    for profile in profiles {
        set.insert(profile);
    }
    set
}

// ---- proptest strategies ----

/// Path components: mostly readable names, sometimes arbitrary bytes (non-UTF-8, `*`).
fn component(allow_star: bool) -> impl Strategy<Value = Vec<u8>> {
    let raw = vec(1u8..=255, 1..6).prop_map(move |bytes| {
        bytes
            .into_iter()
            .filter(|&b| b != b'/' && (allow_star || b != b'*'))
            .collect::<Vec<u8>>()
    });
    prop_oneof![3 => "[a-z0-9._-]{1,8}".prop_map(String::into_bytes), 1 => raw]
        .prop_filter("a real component", |c| {
            !c.is_empty() && c != b"." && c != b".."
        })
}

fn join(components: Vec<Vec<u8>>) -> Vec<u8> {
    components
        .into_iter()
        .flat_map(|c| [vec![b'/'], c].concat())
        .collect()
}

pub fn exec_path() -> impl Strategy<Value = ExecPath> {
    vec(component(true), 1..5).prop_map(|components| exec(&join(components)))
}

pub fn pattern_strategy() -> impl Strategy<Value = Pattern> {
    let star_component =
        (component(false), any::<prop::sample::Index>()).prop_map(|(mut c, at)| {
            c.insert(at.index(c.len() + 1), b'*');
            c
        });
    (
        vec(component(false), 0..3),
        star_component,
        vec(component(false), 0..2),
    )
        .prop_map(|(before, star, after)| {
            let all: Vec<Vec<u8>> = before.into_iter().chain([star]).chain(after).collect();
            Pattern::new(join(all)).expect("generated pattern is valid")
        })
}

fn text() -> impl Strategy<Value = String> {
    "[a-z0-9-]{1,10}"
}

pub fn workload_match() -> impl Strategy<Value = WorkloadMatch> {
    prop_oneof![
        text().prop_map(|unit| WorkloadId::SystemdUnit { unit }),
        (text(), text()).prop_map(|(runtime, id)| WorkloadId::Container { runtime, id }),
        (text(), prop_oneof![Just("name"), Just("image")], text()).prop_map(
            |(engine, by, name)| WorkloadId::EngineContainer {
                engine,
                by: by.to_string(),
                name
            }
        ),
        (text(), text(), proptest::option::of(text()), text()).prop_map(
            |(qos, pod_uid, runtime, container_id)| {
                WorkloadId::KubernetesContainer {
                    qos,
                    pod_uid,
                    runtime,
                    container_id,
                }
            }
        ),
        (text(), text(), text(), text(), proptest::option::of(text())).prop_map(
            |(namespace, owner_kind, owner_name, container, source)| {
                WorkloadId::KubernetesWorkload {
                    namespace,
                    owner_kind,
                    owner_name,
                    container,
                    owner_source: source.unwrap_or_default(),
                }
            }
        ),
        text().prop_map(|path| WorkloadId::Cgroup {
            path: format!("/{path}")
        }),
    ]
    .prop_map(WorkloadMatch::Exact)
    .boxed()
    .prop_union(
        pattern_strategy()
            .prop_map(WorkloadMatch::CgroupPattern)
            .boxed(),
    )
}

pub fn mode() -> impl Strategy<Value = Mode> {
    prop_oneof![Just(Mode::Audit), Just(Mode::Enforce)]
}

fn stats() -> impl Strategy<Value = Option<Stats>> {
    let entry = (any::<u64>(), any::<i64>(), any::<i64>()).prop_map(
        |(count, first_seen_ms, last_seen_ms)| ExecStats {
            count,
            first_seen_ms,
            last_seen_ms,
        },
    );
    proptest::option::of(
        btree_map(exec_path(), entry, 0..3).prop_map(|executables| Stats { executables }),
    )
}

/// Any profile body for a given name and match.
fn profile_body(name: String, matcher: WorkloadMatch) -> impl Strategy<Value = Profile> {
    (
        mode(),
        btree_set(exec_path(), 0..6),
        btree_set(pattern_strategy(), 0..3),
        stats(),
        vec(proptest::option::of(0u8..3), 6),
        proptest::option::of(prop_oneof![
            Just(CgroupMoves::Allow),
            Just(CgroupMoves::Deny)
        ]),
    )
        .prop_map(
            move |(mode, executables, patterns, stats, pins, cgroup_moves)| {
                // Some executables pinned to one or two of a few digests, so merges and
                // diffs meet equal, overlapping and different contents.
                let content = executables
                    .iter()
                    .zip(pins)
                    .filter_map(|(path, pin)| {
                        let k = pin?;
                        let digests = (0..=k % 2).map(|i| Sha256::of(&[k + i])).collect();
                        Some((path.clone(), digests))
                    })
                    .collect();
                Profile {
                    name: name.clone(),
                    matcher: matcher.clone(),
                    mode,
                    executables,
                    content,
                    patterns,
                    cgroup_moves,
                    stats,
                }
            },
        )
}

/// Sets with arbitrary names (any Unicode, `/`, `%`, leading dots) and matches.
pub fn any_profile_set() -> impl Strategy<Value = ProfileSet> {
    let profile = ("\\PC{1,24}", workload_match())
        .prop_flat_map(|(name, matcher)| profile_body(name, matcher));
    vec(profile, 0..5).prop_map(set_of)
}

/// Sets over a small pool of names whose match depends only on the name, so that any
/// two of them can be merged; overlapping names make merges and diffs interesting.
pub fn mergeable_profile_set() -> impl Strategy<Value = ProfileSet> {
    const NAMES: [&str; 5] = [
        "a.service",
        "b.service",
        "docker/c",
        "/d.slice",
        "e%.service",
    ];
    let profile = prop::sample::select(&NAMES[..])
        .prop_flat_map(|name| profile_body(name.to_owned(), systemd(name)));
    vec(profile, 0..5).prop_map(set_of)
}

/// One learned workload as plain data (`LearnedExecutable` need not be `Debug`, which
/// proptest requires of generated values): name, then (path, flags, count) triples.
pub type RawLearned = Vec<(String, Vec<(Vec<u8>, u32, u64)>)>;

/// Raw learned data: valid and invalid paths (relative, `..`, NUL), any flags.
pub fn raw_learned() -> impl Strategy<Value = RawLearned> {
    let path = prop_oneof![
        4 => exec_path().prop_map(|path| path.as_bytes().to_vec()),
        1 => vec(any::<u8>(), 0..12),
        1 => Just(b"/usr/bin/../bin/env".to_vec()),
    ];
    let flags = prop_oneof![4 => Just(0u32), 1 => 0u32..16];
    vec(
        ("[a-z]{1,6}\\.service", vec((path, flags, 1u64..100), 0..8)),
        0..5,
    )
}

pub fn to_learned(raw: &RawLearned) -> Vec<LearnedWorkload> {
    raw.iter()
        .map(|(name, executables)| LearnedWorkload {
            id: WorkloadId::SystemdUnit { unit: name.clone() },
            name: name.clone(),
            executables: executables
                .iter()
                .map(|(path, flags, count)| learned(path, *flags, *count))
                .collect(),
        })
        .collect()
}
