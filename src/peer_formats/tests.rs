//! What each format keeps of a profile and what it reports as lost. The documents
//! themselves are pinned by golden files and validated against the tools' schemas in
//! tests/integration/peer_formats.rs.

use super::*;
use crate::profile::testing::{assert_golden, assert_golden_dir, exec, pattern, set_of};

fn kubernetes(name: &str, mode: Mode, paths: &[&[u8]]) -> Profile {
    let (namespace, rest) = name.split_once('/').expect("ns/Kind/owner/container");
    let parts: Vec<&str> = rest.split('/').collect();
    let id = WorkloadId::KubernetesWorkload {
        namespace: namespace.into(),
        owner_kind: parts[0].into(),
        owner_name: parts[1].into(),
        container: parts[2].into(),
        owner_source: "pod-name".into(),
    };
    let mut profile = Profile::new(name, WorkloadMatch::Exact(id), mode);
    profile.executables = paths.iter().map(|p| exec(p)).collect();
    profile
}

fn no_api() -> Labels<'static> {
    Labels::Unavailable("no API in this test".into())
}

#[test]
fn every_loss_is_listed_with_its_effect() {
    let mut web = kubernetes(
        "shop/Deployment/web/server",
        Mode::Enforce,
        &[b"/app/server", b"/opt/caf\xe9/run", b"/usr/bin/curl"],
    );
    let digest = crate::content::Sha256::of(b"server v1");
    web.content.insert(exec(b"/app/server"), [digest].into());
    web.patterns.insert(pattern("/opt/app-*/bin/server"));
    let export = export(&set_of([web]), PeerFormat::Tetragon, no_api()).unwrap();
    let losses = &export.losses["shop/Deployment/web/server"];
    let said: Vec<String> = losses.iter().map(ToString::to_string).collect();
    assert_eq!(said.len(), 4, "{said:#?}");
    assert!(said[0].starts_with("sha256 of /app/server"), "{said:#?}");
    assert!(
        said[1].contains("/opt/caf\\xe9/run: not UTF-8"),
        "{said:#?}"
    );
    assert!(
        said[2].starts_with("pattern /opt/app-*/bin/server"),
        "{said:#?}"
    );
    assert!(
        said[3].starts_with("selector: PLACEHOLDER: no API in this test"),
        "{said:#?}"
    );
    let text = String::from_utf8(export.files.values().next().unwrap().clone()).unwrap();
    assert!(
        text.contains("- /usr/bin/curl") && !text.contains("caf"),
        "{text}"
    );
}

#[test]
fn workloads_outside_kubernetes_have_no_policy_and_say_why() {
    let unit = crate::profile::testing::profile("nginx.service", Mode::Enforce, &["/a"], &[]);
    let export = export(&set_of([unit]), PeerFormat::Falco, no_api()).unwrap();
    assert!(export.files.is_empty());
    assert_eq!(export.skipped.len(), 1);
    assert!(
        export
            .to_string()
            .contains("nginx.service has no falco policy: a systemd unit"),
        "{export}"
    );
}

#[test]
fn format_limits_are_losses_of_that_format_only() {
    let long = format!("/opt/{}", "x".repeat(200));
    let profile = kubernetes(
        "ns/Deployment/d/c",
        Mode::Audit,
        &[long.as_bytes(), b"/opt/odd\\"],
    );
    let set = set_of([profile]);
    let refused = |format| {
        let export = export(&set, format, no_api()).unwrap();
        export.losses["ns/Deployment/d/c"]
            .iter()
            .filter(|loss| matches!(loss, Loss::Refused(..)))
            .count()
    };
    assert_eq!(refused(PeerFormat::Tetragon), 0);
    // KubeArmor's CRD caps matchPaths at 200 characters; Falco cannot quote a final `\`.
    assert_eq!(refused(PeerFormat::KubeArmor), 1);
    assert_eq!(refused(PeerFormat::Falco), 1);
}

#[test]
fn an_empty_allowlist_refuses_everything_or_has_no_kubearmor_policy() {
    let set = set_of([kubernetes("ns/Deployment/d/c", Mode::Enforce, &[])]);
    let tetragon = export(&set, PeerFormat::Tetragon, no_api()).unwrap();
    let text = String::from_utf8(tetragon.files.values().next().unwrap().clone()).unwrap();
    assert!(
        !text.contains("matchArgs") && text.contains("Override"),
        "{text}"
    );
    let falco = export(&set, PeerFormat::Falco, no_api()).unwrap();
    let text = String::from_utf8(falco.files.values().next().unwrap().clone()).unwrap();
    assert!(
        !text.contains("proc.exepath in") && !text.contains("- list:"),
        "{text}"
    );
    let kubearmor = export(&set, PeerFormat::KubeArmor, no_api()).unwrap();
    assert!(kubearmor.files.is_empty() && kubearmor.skipped.len() == 1);
}

#[test]
fn object_names_are_kubernetes_names_unique_per_workload() {
    let names: Vec<String> = ["ns/Deployment/web/server-x", "ns/Deployment/web-server/x"]
        .iter()
        .map(|name| {
            let set = set_of([kubernetes(name, Mode::Audit, &[b"/a"])]);
            let export = export(&set, PeerFormat::KubeArmor, no_api()).unwrap();
            let text = String::from_utf8(export.files.values().next().unwrap().clone()).unwrap();
            let line = text.lines().find(|l| l.starts_with("  name: ")).unwrap();
            line.trim_start_matches("  name: ").to_owned()
        })
        .collect();
    assert_ne!(names[0], names[1]);
    for name in &names {
        assert!(is_object_name(name), "{name}");
        assert!(
            name.starts_with("fingerprint-deployment-web-server-x-"),
            "{name}"
        );
    }
}

/// The fixed profile set of the golden files: a Deployment's profile with a digest, a
/// pattern, a non-UTF-8 path, a path with a space and one too long for KubeArmor; a
/// CronJob's in audit mode; a systemd unit, which no format can select.
fn golden_profiles() -> ProfileSet {
    let dir = crate::profile::testing::golden_path("peer-formats/profiles");
    ProfileSet::load(&dir).expect("the golden profiles load")
}

#[test]
fn policies_and_their_losses_match_golden_files() {
    let opened = Ok(None);
    for format in [
        PeerFormat::Tetragon,
        PeerFormat::KubeArmor,
        PeerFormat::Falco,
    ] {
        let export = export(&golden_profiles(), format, Labels::from_opened(&opened)).unwrap();
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("out");
        crate::profile::write_file_set(&out, &export.files, &format.file_suffix()).unwrap();
        assert_golden_dir(&format!("peer-formats/{}", format.name()), &out);
        let losses = export.to_string();
        assert_golden(
            &format!("peer-formats/{}.stderr.txt", format.name()),
            losses.as_bytes(),
        );
    }
}
