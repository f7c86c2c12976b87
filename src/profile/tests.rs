//! Tests of export, the file format, directory I/O and merge: golden files for the
//! exact output, properties for round-trips and merge laws, and one test per kind of
//! bad input checking the message and that nothing was written.

use std::fs;
use std::path::Path;

use proptest::prelude::*;

use super::testing::*;
use super::*;

fn tempdir() -> tempfile::TempDir {
    tempfile::tempdir().expect("temp dir")
}

#[test]
fn export_matches_golden_files() {
    let (set, _) = ProfileSet::from_learned(&sample_learned(), Mode::Audit);
    let dir = tempdir();
    set.write_dir(dir.path()).expect("write");
    assert_golden_dir("export", dir.path());
}

#[test]
fn export_with_stats_matches_golden_file() {
    let options = ExportOptions {
        mode: Mode::Enforce,
        with_stats: true,
        ..ExportOptions::default()
    };
    let (set, _) = ProfileSet::from_learned_with(&sample_learned(), options);
    let profile = set.get("nginx.service").expect("exported");
    assert_golden(
        "export-stats/nginx.service.json",
        &profile.to_json_bytes().expect("render"),
    );
}

#[test]
fn export_reports_every_skipped_path() {
    let (set, report) = ProfileSet::from_learned(&sample_learned(), Mode::Audit);
    assert_eq!(report.skipped_executables.len(), 4);
    assert_golden("export-report.txt", report.to_string().as_bytes());
    let nginx = set.get("nginx.service").expect("exported");
    assert!(!nginx.allows(b"/memfd:payload (deleted)"));
    assert!(
        nginx.allows(b"/opt/caf\xe9/run"),
        "non-UTF-8 paths are kept"
    );
}

#[test]
fn export_skips_a_second_workload_with_the_same_name() {
    let mut learned = sample_learned();
    let mut twin = sample_learned().remove(1);
    twin.id = crate::workload::WorkloadId::Container {
        runtime: "podman".into(),
        id: "0123abcd".into(),
    };
    learned.push(twin);
    let (set, report) = ProfileSet::from_learned(&learned, Mode::Audit);
    assert_eq!(set.len(), 4);
    assert_eq!(report.skipped_workloads.len(), 1);
    assert!(report.to_string().contains("already used"), "{report}");
}

#[test]
fn re_export_is_byte_identical_and_rewrites_nothing() {
    let (set, _) = ProfileSet::from_learned(&sample_learned(), Mode::Audit);
    let dir = tempdir();
    let first = set.write_dir(dir.path()).expect("first write");
    assert_eq!((first.written.len(), first.unchanged.len()), (4, 0));
    let before = snapshot(dir.path());
    let second = set.write_dir(dir.path()).expect("second write");
    assert_eq!((second.written.len(), second.unchanged.len()), (0, 4));
    assert_eq!(snapshot(dir.path()), before);
}

#[test]
fn write_dir_keeps_and_reports_other_profile_files() {
    let dir = tempdir();
    fs::write(dir.path().join("README.md"), "not a profile").expect("write");
    fs::write(dir.path().join("old.service.json"), "{}").expect("write");
    let set = set_of([profile("new.service", Mode::Audit, &["/bin/true"], &[])]);
    let report = set.write_dir(&dir.path().join(".")).expect("write");
    assert_eq!(
        report.not_exported,
        vec![dir.path().join("./old.service.json")]
    );
    assert_eq!(
        file_names(dir.path()).into_iter().collect::<Vec<_>>(),
        ["README.md", "new.service.json", "old.service.json"]
    );
}

#[test]
fn write_dir_creates_missing_directories() {
    let dir = tempdir();
    let out = dir.path().join("a/b/profiles");
    let set = set_of([profile("x.service", Mode::Audit, &["/bin/true"], &[])]);
    set.write_dir(&out).expect("write");
    assert_eq!(ProfileSet::load(&out).expect("load"), set);
}

#[test]
fn load_reads_a_single_file_with_any_name() {
    let dir = tempdir();
    let file = dir.path().join("hand-written.txt");
    let profile = profile(
        "x.service",
        Mode::Enforce,
        &["/bin/true"],
        &["/opt/*/bin/x"],
    );
    fs::write(&file, profile.to_json_bytes().expect("render")).expect("write");
    let set = ProfileSet::load(&file).expect("load");
    assert_eq!(set, set_of([profile]));
    assert_eq!(set.file_of("x.service"), Some(file.as_path()));
}

#[test]
fn load_ignores_other_and_hidden_files_and_subdirectories() {
    let dir = tempdir();
    set_of([profile("x.service", Mode::Audit, &["/bin/true"], &[])])
        .write_dir(dir.path())
        .expect("write");
    fs::write(dir.path().join("notes.txt"), "hello").expect("write");
    fs::write(dir.path().join(".x.service.json.swp"), "junk").expect("write");
    fs::write(dir.path().join(".hidden.json"), "junk").expect("write");
    fs::create_dir(dir.path().join("nested.json")).expect("mkdir");
    assert_eq!(ProfileSet::load(dir.path()).expect("load").len(), 1);
}

#[test]
fn hand_written_profile_with_all_features_parses() {
    let text = r#"{
      "workload": {"match": {"kind": "cgroup_pattern", "pattern": "/kubepods.slice/*/cri-containerd-*.scope"}, "name": "web"},
      "schema": 1,
      "mode": "enforce",
      "executables": ["/usr/bin/env", {"hex": "2F746D70FF"}, "/usr/bin/env"],
      "patterns": ["/opt/app-*/bin/server"]
    }"#;
    let profile = Profile::from_json_bytes(text.as_bytes(), Path::new("web.json")).expect("parse");
    assert_eq!(profile.executables.len(), 2, "duplicates collapse");
    assert!(profile.allows(b"/tmp\xff"));
    assert!(profile.allows(b"/opt/app-2.1/bin/server"));
    assert_golden(
        "hand-written-canonical.json",
        &profile.to_json_bytes().expect("render"),
    );
}

#[test]
fn cgroup_moves_defaults_by_kind_and_is_written_only_when_set() {
    let unit = Profile::from_json_bytes(VALID.as_bytes(), Path::new("x.json")).expect("parse");
    assert_eq!(unit.cgroup_moves, None);
    assert_eq!(
        unit.cgroup_moves(),
        CgroupMoves::Allow,
        "a unit's manager moves tasks"
    );
    let container = WorkloadMatch::Exact(WorkloadId::Container {
        runtime: "containerd".into(),
        id: "c0ffee".into(),
    });
    let mut profile = Profile::new("c", container, Mode::Enforce);
    assert_eq!(
        profile.cgroup_moves(),
        CgroupMoves::Deny,
        "containers keep their tasks"
    );
    assert!(!String::from_utf8(profile.to_json_bytes().unwrap())
        .unwrap()
        .contains("cgroup_moves"));
    profile.cgroup_moves = Some(CgroupMoves::Allow);
    let text = String::from_utf8(profile.to_json_bytes().unwrap()).unwrap();
    assert!(text.contains("\"cgroup_moves\": \"allow\""), "{text}");
    let back = Profile::from_json_bytes(text.as_bytes(), Path::new("c.json")).unwrap();
    assert_eq!(back.cgroup_moves(), CgroupMoves::Allow);
}

#[test]
fn unknown_cgroup_moves_value_names_the_field() {
    let text = VALID.replace(
        "\"mode\": \"audit\",",
        "\"mode\": \"audit\", \"cgroup_moves\": \"never\",",
    );
    let (error, file) = load_error(text.as_bytes());
    assert!(error.starts_with(&file), "{error}");
    assert!(
        error.contains("cgroup_moves") || error.contains("never"),
        "{error}"
    );
    assert!(error.contains("allow") && error.contains("deny"), "{error}");
}

// ---- bad input: one case per problem; each names the file and the position ----

const VALID: &str = r#"{
  "schema": 1,
  "workload": {"name": "x.service", "match": {"kind": "systemd_unit", "unit": "x.service"}},
  "mode": "audit",
  "executables": ["/usr/bin/env"]
}
"#;

/// Put `content` into `bad.json` next to a valid profile, run what `fingerprint export`
/// or `merge` would run (load, then write), and return the error after checking that
/// the output directory was left exactly as it was.
fn load_error(content: &[u8]) -> (String, String) {
    let input = tempdir();
    fs::write(input.path().join("a-valid.json"), VALID).expect("write");
    let bad = input.path().join("bad.json");
    fs::write(&bad, content).expect("write");
    expect_failure_without_writes(input.path(), &bad)
}

fn expect_failure_without_writes(input: &Path, bad: &Path) -> (String, String) {
    let output = tempdir();
    fs::write(output.path().join("keep.json"), "existing").expect("write");
    let before = snapshot(output.path());
    let error = ProfileSet::load(input)
        .and_then(|set| set.write_dir(output.path()))
        .expect_err("bad input must fail")
        .to_string();
    assert_eq!(
        snapshot(output.path()),
        before,
        "output changed after: {error}"
    );
    (error, bad.display().to_string())
}

fn assert_names(error: &str, file: &str, position: &str, problem: &str) {
    assert!(
        error.starts_with(&format!("{file}:{position}")),
        "position: {error}"
    );
    assert!(error.contains(problem), "problem `{problem}`: {error}");
    assert!(error.contains("fix: "), "fix: {error}");
}

#[test]
fn malformed_json_names_line_and_column() {
    let (error, file) = load_error(b"{\n  \"schema\": 1,\n  \"mode\" \"audit\"\n}\n");
    assert_names(&error, &file, "3:10: ", "top level: expected `:`");
}

#[test]
fn truncated_file_is_reported() {
    let (error, file) = load_error(&VALID.as_bytes()[..40]);
    assert_names(&error, &file, "3:", "EOF while parsing");
}

#[test]
fn unknown_schema_version_says_which_are_supported() {
    let text = VALID
        .replace("\"schema\": 1", "\"schema\": 7")
        .replace("\"mode\"", "\"future\": 1, \"mode\"");
    let (error, file) = load_error(text.as_bytes());
    assert_names(
        &error,
        &file,
        "2:13: ",
        "schema: unsupported schema version 7; this build of fingerprint reads schema 1",
    );
}

#[test]
fn unknown_fields_are_rejected_with_their_path() {
    let text = VALID.replace(
        "\"unit\": \"x.service\"",
        "\"unit\": \"x.service\", \"unti\": 1",
    );
    let (error, file) = load_error(text.as_bytes());
    assert_names(&error, &file, "3:", "workload.match: unknown field `unti`");
    let text = VALID.replace("\"mode\"", "\"executable\": [], \"mode\"");
    let (error, _) = load_error(text.as_bytes());
    assert!(
        error.contains("executable: unknown field `executable`"),
        "{error}"
    );
}

#[test]
fn relative_path_names_the_entry() {
    let text = VALID.replace(
        "[\"/usr/bin/env\"]",
        "[\"/usr/bin/env\", \"/bin/sh\", \"bin/ls\"]",
    );
    let (error, file) = load_error(text.as_bytes());
    assert_names(
        &error,
        &file,
        "5:",
        "executables[2]: path `bin/ls` is relative",
    );
}

#[test]
fn invalid_pattern_names_the_entry() {
    let text = VALID.replace(
        "\"executables\"",
        "\"patterns\": [\"/opt/*/ok\", \"/opt/**\"], \"executables\"",
    );
    let (error, file) = load_error(text.as_bytes());
    assert_names(
        &error,
        &file,
        "5:",
        "patterns[1]: pattern `/opt/**` has more than one `*`",
    );
}

#[test]
fn invalid_hex_path_names_the_entry() {
    let text = VALID.replace("[\"/usr/bin/env\"]", "[{\"hex\": \"2f7\"}]");
    let (error, file) = load_error(text.as_bytes());
    assert_names(
        &error,
        &file,
        "5:",
        "executables[0]: hex path has an odd number of digits",
    );
}

#[test]
fn duplicate_workload_names_both_files() {
    let (error, file) = load_error(VALID.as_bytes());
    let first = Path::new(&file).with_file_name("a-valid.json");
    assert!(
        error.starts_with(&format!(
            "{file}: workload `x.service` is already defined in {}",
            first.display()
        )),
        "{error}"
    );
    assert!(error.contains("fix: "), "{error}");
}

#[test]
fn unreadable_file_is_named() {
    let input = tempdir();
    let bad = input.path().join("broken.json");
    // A dangling link fails to read even for root, unlike a chmod 000 file.
    std::os::unix::fs::symlink(input.path().join("missing"), &bad).expect("symlink");
    let (error, file) = expect_failure_without_writes(input.path(), &bad);
    assert!(
        error.starts_with(&format!("{file}: cannot read: ")),
        "{error}"
    );
    assert!(error.contains("fix: "), "{error}");
}

#[test]
fn missing_input_is_named() {
    let error = ProfileSet::load(Path::new("/nonexistent/profiles"))
        .expect_err("missing")
        .to_string();
    assert!(
        error.starts_with("/nonexistent/profiles: cannot read: "),
        "{error}"
    );
}

#[test]
fn unwritable_sets_fail_before_writing() {
    let output = tempdir();
    let before = snapshot(output.path());
    let mut set = set_of([profile("a.service", Mode::Audit, &["/bin/a"], &[])]);
    set.insert(Profile::new("", systemd("x"), Mode::Audit));
    let error = set.write_dir(output.path()).expect_err("empty name");
    assert!(matches!(error, ProfileError::EmptyName), "{error}");
    assert_eq!(snapshot(output.path()), before);
}

// ---- merge ----

#[test]
fn merge_unions_and_prefers_enforce() {
    let a = set_of([profile(
        "x.service",
        Mode::Enforce,
        &["/bin/a"],
        &["/opt/*/a"],
    )]);
    let b = set_of([
        profile("x.service", Mode::Audit, &["/bin/b"], &[]),
        profile("y.service", Mode::Audit, &["/bin/y"], &[]),
    ]);
    let merged = ProfileSet::merge(&[a, b]).expect("merge");
    let expected = set_of([
        profile(
            "x.service",
            Mode::Enforce,
            &["/bin/a", "/bin/b"],
            &["/opt/*/a"],
        ),
        profile("y.service", Mode::Audit, &["/bin/y"], &[]),
    ]);
    assert_eq!(merged, expected);
}

#[test]
fn merge_conflict_names_both_files() {
    let dir = tempdir();
    let (a_dir, b_dir) = (dir.path().join("a"), dir.path().join("b"));
    set_of([profile("x.service", Mode::Audit, &["/bin/a"], &[])])
        .write_dir(&a_dir)
        .expect("write");
    let mut other = profile("x.service", Mode::Audit, &["/bin/b"], &[]);
    other.matcher = systemd("other.service");
    set_of([other]).write_dir(&b_dir).expect("write");
    let sets = [
        ProfileSet::load(&a_dir).expect("load"),
        ProfileSet::load(&b_dir).expect("load"),
    ];
    let error = ProfileSet::merge(&sets).expect_err("conflict").to_string();
    let (a_file, b_file) = (a_dir.join("x.service.json"), b_dir.join("x.service.json"));
    assert_eq!(
        error,
        format!(
            "workload `x.service` is matched as systemd_unit unit=x.service in {} but as systemd_unit unit=other.service in {}; fix: make the `workload.match` of both profiles agree, or give them different names",
            a_file.display(),
            b_file.display()
        )
    );
}

#[test]
fn merge_conflict_in_memory_names_input_sets() {
    let mut other = profile("x.service", Mode::Audit, &[], &[]);
    other.matcher = systemd("other.service");
    let sets = [
        set_of([]),
        set_of([profile("x.service", Mode::Audit, &[], &[])]),
        set_of([other]),
    ];
    let error = ProfileSet::merge(&sets).expect_err("conflict").to_string();
    assert!(
        error.contains("in input set #2 but as systemd_unit unit=other.service in input set #3"),
        "{error}"
    );
}

#[test]
fn merge_combines_stats_idempotently() {
    let stats = |count, first, last| ExecStats {
        count,
        first_seen_ms: first,
        last_seen_ms: last,
    };
    let with_stats = |seen: ExecStats| {
        let mut p = profile("x.service", Mode::Audit, &["/bin/a"], &[]);
        p.stats = Some(Stats {
            executables: [(exec(b"/bin/a"), seen)].into(),
        });
        set_of([p])
    };
    let (a, b) = (with_stats(stats(3, 10, 20)), with_stats(stats(5, 15, 18)));
    let merged = ProfileSet::merge(&[a.clone(), b]).expect("merge");
    let got = merged
        .get("x.service")
        .and_then(|p| p.stats.as_ref())
        .expect("stats");
    assert_eq!(got.executables[&exec(b"/bin/a")], stats(5, 10, 20));
    assert_eq!(
        ProfileSet::merge(&[a.clone(), a.clone()]).expect("merge"),
        a
    );
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    /// Anything we can hold in memory is written and read back exactly: non-UTF-8
    /// paths, patterns, odd workload names, every kind of match, stats.
    #[test]
    fn write_then_load_round_trips(set in any_profile_set()) {
        let dir = tempdir();
        set.write_dir(dir.path()).expect("write");
        prop_assert_eq!(ProfileSet::load(dir.path()).expect("load"), set);
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    /// Export of anything learned writes and reads back exactly, and every learned
    /// executable ends up either in its profile or in the report: none is lost silently.
    #[test]
    fn export_round_trips_and_accounts_for_every_path(raw in raw_learned(), with_stats: bool) {
        let learned = to_learned(&raw);
        let options = ExportOptions {
            mode: Mode::Audit,
            with_stats,
            ..ExportOptions::default()
        };
        let (set, report) = ProfileSet::from_learned_with(&learned, options);
        let dir = tempdir();
        set.write_dir(dir.path()).expect("write");
        prop_assert_eq!(&ProfileSet::load(dir.path()).expect("load"), &set);
        for workload in &learned {
            let profile = set.get(&workload.name).expect("every workload is exported");
            for executable in &workload.executables {
                let exported = profile.executables.iter().any(|p| p.as_bytes() == executable.path.as_slice());
                let skipped = report.skipped_executables.iter().any(|s| {
                    s.workload == workload.name && s.path.as_bytes() == executable.path.as_slice()
                });
                // Both can hold when one path was learned twice, once flagged.
                prop_assert!(exported || skipped, "{:?} neither exported nor reported", executable.path);
            }
        }
    }
}

proptest! {
    #[test]
    fn render_then_parse_round_trips(set in any_profile_set()) {
        for profile in &set {
            let bytes = profile.to_json_bytes().expect("render");
            prop_assert!(bytes.ends_with(b"}\n"), "ends with a newline");
            let back = Profile::from_json_bytes(&bytes, Path::new("p.json")).expect("parse");
            prop_assert_eq!(&back, profile);
            prop_assert_eq!(back.to_json_bytes().expect("render"), bytes);
        }
    }

    #[test]
    fn merge_is_commutative(a in mergeable_profile_set(), b in mergeable_profile_set()) {
        let ab = ProfileSet::merge(&[a.clone(), b.clone()]).expect("merge");
        prop_assert_eq!(ab, ProfileSet::merge(&[b, a]).expect("merge"));
    }

    #[test]
    fn merge_is_associative(a in mergeable_profile_set(), b in mergeable_profile_set(), c in mergeable_profile_set()) {
        let ab = ProfileSet::merge(&[a.clone(), b.clone()]).expect("merge");
        let bc = ProfileSet::merge(&[b.clone(), c.clone()]).expect("merge");
        let left = ProfileSet::merge(&[ab, c.clone()]).expect("merge");
        prop_assert_eq!(&left, &ProfileSet::merge(&[a.clone(), bc]).expect("merge"));
        prop_assert_eq!(&left, &ProfileSet::merge(&[a, b, c]).expect("merge"));
    }

    #[test]
    fn merge_is_idempotent(a in mergeable_profile_set()) {
        prop_assert_eq!(&ProfileSet::merge(&[a.clone(), a.clone()]).expect("merge"), &a);
        prop_assert_eq!(&ProfileSet::merge(std::slice::from_ref(&a)).expect("merge"), &a);
    }

    #[test]
    fn patterns_match_what_they_describe(pattern in pattern_strategy(), filler in "[a-z]{0,4}") {
        // Replacing the star by any bytes without `/` gives a matching path.
        let path: Vec<u8> = pattern.as_bytes().iter().flat_map(|&b| if b == b'*' { filler.clone().into_bytes() } else { vec![b] }).collect();
        prop_assert!(pattern.matches(&path));
        let longer = [path.as_slice(), b"/x"].concat();
        prop_assert!(!pattern.matches(&longer));
    }
}

/// The example in docs/profile-format.md is a real, canonical profile: it parses, and
/// export would write exactly those bytes.
#[test]
fn documented_example_is_canonical() {
    let doc =
        fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/profile-format.md"))
            .expect("read docs");
    let start = doc.find("```json\n").expect("a json block") + "```json\n".len();
    let example = &doc[start..start + doc[start..].find("```").expect("block end")];
    let profile = Profile::from_json_bytes(example.as_bytes(), Path::new("docs/profile-format.md"))
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(profile.allows(b"/opt/caf\xe9/run") && profile.allows(b"/opt/app-7/bin/server"));
    assert_eq!(
        String::from_utf8(profile.to_json_bytes().expect("render")).expect("utf-8"),
        example
    );
}

#[test]
fn kubernetes_workload_match_parses_and_round_trips() {
    let json = br#"{
      "schema": 1,
      "workload": {
        "name": "default/Deployment/web/server",
        "match": {
          "kind": "kubernetes_workload",
          "namespace": "default",
          "owner_kind": "Deployment",
          "owner_name": "web",
          "container": "server",
          "owner_source": "pod-name"
        }
      },
      "mode": "enforce",
      "executables": ["/bin/busybox"]
    }"#;
    let file = std::path::Path::new("web.json");
    let profile = Profile::from_json_bytes(json, file).unwrap();
    let WorkloadMatch::Exact(id) = &profile.matcher else {
        panic!("an exact match: {:?}", profile.matcher);
    };
    assert_eq!(id.name(), profile.name);
    assert_eq!(id.kind(), "kubernetes_workload");
    let again = Profile::from_json_bytes(&profile.to_json_bytes().unwrap(), file).unwrap();
    assert_eq!(again, profile);
    // owner_source is optional (hand-written profiles); unknown fields are refused.
    let text = std::str::from_utf8(json).unwrap();
    let without = text.replace(",\n          \"owner_source\": \"pod-name\"", "");
    assert!(Profile::from_json_bytes(without.as_bytes(), file).is_ok());
    let unknown = text.replace("\"owner_source\"", "\"owner_uid\"");
    assert!(Profile::from_json_bytes(unknown.as_bytes(), file).is_err());
}

#[test]
fn export_leaves_out_the_root_cgroup_and_login_sessions_unless_asked() {
    let host = |id: WorkloadId| crate::storage::LearnedWorkload {
        name: id.name(),
        id,
        executables: vec![learned_executable(b"/usr/bin/bash")],
    };
    let learned = vec![
        host(WorkloadId::Cgroup { path: "/".into() }),
        host(WorkloadId::SystemdUnit {
            unit: "session-12.scope".into(),
        }),
        host(WorkloadId::SystemdUnit {
            unit: "nginx.service".into(),
        }),
    ];
    let (set, report) = ProfileSet::from_learned_with(&learned, ExportOptions::default());
    assert_eq!(
        set.profiles().keys().collect::<Vec<_>>(),
        vec!["nginx.service"]
    );
    let skipped: Vec<&str> = report
        .skipped_workloads
        .iter()
        .map(|s| s.name.as_str())
        .collect();
    assert_eq!(skipped, vec!["/", "session-12.scope"]);
    assert!(report.to_string().contains("--include-host"), "{report}");
    let everything = ExportOptions {
        include_host: true,
        ..ExportOptions::default()
    };
    let (set, report) = ProfileSet::from_learned_with(&learned, everything);
    assert_eq!(set.len(), 3);
    assert!(report.is_empty());
}

#[test]
fn export_names_what_it_wrote_without_content_and_nothing_pinned() {
    let mut executables: Vec<_> = (0..8)
        .map(|i| learned_executable(format!("/usr/bin/tool{i}").as_bytes()))
        .collect();
    executables[0].sha256 = vec![crate::content::Sha256::of(b"tool0")];
    let learned = vec![crate::storage::LearnedWorkload {
        name: "nginx.service".into(),
        id: WorkloadId::SystemdUnit {
            unit: "nginx.service".into(),
        },
        executables,
    }];
    let (_, report) = ProfileSet::from_learned(&learned, Mode::Audit);
    assert!(report.is_empty() && report.to_string().is_empty());
    let text = report.without_content_notes().to_string();
    assert_eq!(report.without_content.len(), 7, "{text}");
    assert!(!text.contains("tool0"), "pinned: {text}");
    assert!(
        text.contains("7 executable(s) exported by path only")
            && text.contains("/usr/bin/tool1, /usr/bin/tool2")
            && text.contains("/usr/bin/tool5 and 2 more"),
        "{text}"
    );
}
