//! `fingerprint export --format tetragon|kubearmor|falco` as a user runs it: on the
//! golden profile set and on a learning database, with and without a Kubernetes API.
//! Every document written must validate against the schema its tool publishes
//! (vendored in tests/schemas/, see the README there), as its API server or loader
//! would check it.

use std::collections::BTreeMap;
use std::ffi::{OsStr, OsString};
use std::path::{Path, PathBuf};

use fingerprint::workload::kubeapi::is_object_name;
use fingerprint::workload::WorkloadId;
use serde_json::{json, Value};

use crate::common::*;
use crate::kubeapi::FakeApi;

const FORMATS: [&str; 3] = ["tetragon", "kubearmor", "falco"];

fn repo(relative: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(relative)
}

fn yaml_file(path: &Path) -> Value {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_yaml_ng::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// The validator of a format's documents, from the vendored schema.
fn validator(format: &str) -> jsonschema::Validator {
    let schema = match format {
        "falco" => {
            let text = std::fs::read_to_string(repo("tests/schemas/falco/rule_schema.json"))
                .expect("the vendored Falco schema");
            serde_json::from_str(&text).expect("Falco's schema is JSON")
        }
        crd => {
            let (file, version) = match crd {
                "tetragon" => (
                    "tetragon/cilium.io_tracingpoliciesnamespaced.yaml",
                    "v1alpha1",
                ),
                _ => ("kubearmor/KubeArmorPolicy.yaml", "v1"),
            };
            let crd = yaml_file(&repo("tests/schemas").join(file));
            let versions = crd["spec"]["versions"].as_array().expect("CRD versions");
            let served = versions
                .iter()
                .find(|v| v["name"] == version)
                .unwrap_or_else(|| panic!("{file} has no version {version}"));
            served["schema"]["openAPIV3Schema"].clone()
        }
    };
    jsonschema::validator_for(&schema).unwrap_or_else(|e| panic!("{format} schema: {e}"))
}

/// Every file in `dir`, parsed, after checking it validates; by file name.
fn validated_documents(format: &str, dir: &Path) -> BTreeMap<String, Value> {
    let validator = validator(format);
    let mut documents = BTreeMap::new();
    for entry in std::fs::read_dir(dir).expect("the output directory") {
        let path = entry.unwrap().path();
        let document = yaml_file(&path);
        let errors: Vec<String> = validator
            .iter_errors(&document)
            .map(|e| format!("{} at {}", e, e.instance_path()))
            .collect();
        assert!(errors.is_empty(), "{}: {errors:#?}", path.display());
        if format != "falco" {
            let name = document["metadata"]["name"].as_str().unwrap();
            assert!(is_object_name(name), "{}: name {name}", path.display());
        }
        let file = path.file_name().unwrap().to_string_lossy().into_owned();
        documents.insert(file, document);
    }
    documents
}

/// `export --format FORMAT --from-profiles <the golden profiles> --out OUT`.
fn from_golden_profiles(format: &str, out: &Path) -> Vec<OsString> {
    let profiles = repo("tests/golden/peer-formats/profiles");
    vec![
        "--format".into(),
        format.into(),
        "--from-profiles".into(),
        profiles.into(),
        "--out".into(),
        out.into(),
    ]
}

fn export(args: &[OsString]) -> (String, String) {
    let mut full = vec![OsStr::new("export")];
    full.extend(args.iter().map(OsString::as_os_str));
    let output = fingerprint(&full);
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    assert!(output.status.success(), "export {args:?}: {stderr}");
    (String::from_utf8_lossy(&output.stdout).into_owned(), stderr)
}

#[test]
fn exported_policies_are_the_golden_files_and_validate_against_the_tools_schemas() {
    let (_keep, tmp) = temp_dir();
    for format in FORMATS {
        let out = tmp.join(format);
        let mut args = from_golden_profiles(format, &out);
        args.extend(["--kube-api".into(), "off".into()]);
        let (_, stderr) = export(&args);
        let golden = repo("tests/golden/peer-formats").join(format);
        let documents = validated_documents(format, &out);
        let golden_files: Vec<String> = std::fs::read_dir(&golden)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        assert_eq!(
            documents.len(),
            golden_files.len(),
            "{format}: {documents:#?}"
        );
        for file in golden_files {
            assert_eq!(
                std::fs::read(out.join(&file)).ok(),
                std::fs::read(golden.join(&file)).ok(),
                "{format}: {file} differs from the golden file"
            );
        }
        // What is lost is said on stderr, per workload, as the golden report has it.
        let report = std::fs::read_to_string(
            repo("tests/golden/peer-formats").join(format!("{format}.stderr.txt")),
        )
        .unwrap();
        assert!(stderr.contains(&report), "{format} stderr:\n{stderr}");
        assert!(stderr.contains("sha256 of /app/server"), "{stderr}");
        assert!(
            stderr.contains("path /opt/caf\\xe9/run: not UTF-8"),
            "{stderr}"
        );
        assert!(stderr.contains("pattern /opt/app-*/bin/server"), "{stderr}");
        assert!(stderr.contains("nginx.service has no"), "{stderr}");
    }
}

#[test]
fn the_schemas_refuse_what_their_tools_refuse() {
    // The validation above must be able to fail: a path KubeArmor's CRD caps, an
    // action Tetragon does not know, and a Falco priority that does not exist.
    let kubearmor = json!({"apiVersion": "security.kubearmor.com/v1", "kind": "KubeArmorPolicy",
        "metadata": {"name": "x"}, "spec": {"selector": {"matchLabels": {"app": "x"}},
        "process": {"matchPaths": [{"path": format!("/{}", "a".repeat(200))}]},
        "action": "Allow"}});
    assert!(!validator("kubearmor").is_valid(&kubearmor));
    let tetragon = json!({"apiVersion": "cilium.io/v1alpha1", "kind": "TracingPolicyNamespaced",
        "metadata": {"name": "x"}, "spec": {"kprobes": [{"call": "security_bprm_creds_for_exec",
        "selectors": [{"matchActions": [{"action": "Deny"}]}]}]}});
    assert!(!validator("tetragon").is_valid(&tetragon));
    let falco = json!([{"rule": "r", "condition": "c", "priority": "LOUD"}]);
    assert!(!validator("falco").is_valid(&falco));
}

/// A Deployment as the API returns it, selecting its pods by two labels and an
/// expression.
fn deployment(namespace: &str, name: &str) -> Value {
    json!({
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name, "namespace": namespace, "uid": "d-1"},
        "spec": {
            "selector": {
                "matchLabels": {"app": name, "tier": "front"},
                "matchExpressions": [{"key": "track", "operator": "In", "values": ["stable"]}]
            },
            "template": {"metadata": {"labels": {"app": name, "tier": "front", "track": "stable"}}}
        }
    })
}

#[test]
fn a_learned_database_exports_with_pod_labels_from_the_kubernetes_api() {
    let (_keep, tmp) = temp_dir();
    let db = tmp.join("learn.db");
    let web = WorkloadId::KubernetesWorkload {
        namespace: "shop".into(),
        owner_kind: "Deployment".into(),
        owner_name: "web".into(),
        container: "server".into(),
        owner_source: "kubernetes-api".into(),
    };
    // A second container of the same pods: the Deployment is asked for once.
    let sidecar = WorkloadId::KubernetesWorkload {
        namespace: "shop".into(),
        owner_kind: "Deployment".into(),
        owner_name: "web".into(),
        container: "proxy".into(),
        owner_source: "kubernetes-api".into(),
    };
    let unit = WorkloadId::SystemdUnit {
        unit: "nginx.service".into(),
    };
    crate::storage::learned_db_of(
        &db,
        &[
            (web, &["/app/server", "/usr/bin/curl"]),
            (sidecar, &["/usr/local/bin/envoy"]),
            (unit, &["/usr/sbin/nginx"]),
        ],
    );
    let api = FakeApi::start();
    api.add(deployment("shop", "web"));
    for format in FORMATS {
        let out = tmp.join(format);
        let mut args: Vec<OsString> = vec![
            "--format".into(),
            format.into(),
            "--db".into(),
            db.clone().into(),
            "--mode".into(),
            "enforce".into(),
            "--out".into(),
            out.clone().into(),
        ];
        args.extend(api.args());
        let (stdout, stderr) = export(&args);
        assert!(stdout.contains("2 files written"), "{stdout}");
        assert!(!stderr.contains("PLACEHOLDER"), "{stderr}");
        assert!(stderr.contains("nginx.service has no"), "{stderr}");
        let documents = validated_documents(format, &out);
        let document = &documents[&format!("shop%2FDeployment%2Fweb%2Fserver.{format}.yaml")];
        let text = serde_json::to_string(document).unwrap();
        match format {
            "tetragon" => {
                let spec = &document["spec"];
                assert_eq!(
                    spec["podSelector"]["matchLabels"],
                    json!({"app": "web", "tier": "front"})
                );
                assert_eq!(spec["podSelector"]["matchExpressions"][0]["key"], "track");
                let selector = &spec["kprobes"][0]["selectors"][0];
                assert_eq!(
                    selector["matchArgs"][0]["values"],
                    json!(["/app/server", "/usr/bin/curl"])
                );
                assert_eq!(selector["matchActions"][0]["action"], "Override");
            }
            "kubearmor" => {
                let labels = &document["spec"]["selector"]["matchLabels"];
                assert_eq!(labels["app"], "web");
                assert_eq!(labels["kubearmor.io/container.name"], "[server]");
                // KubeArmor takes no expressions: said, since the policy selects wider.
                assert!(stderr.contains("1 matchExpressions"), "{stderr}");
            }
            _ => {
                let condition = document[1]["condition"].as_str().unwrap();
                assert!(
                    condition.contains("k8s.pod.label[app] = web"),
                    "{condition}"
                );
                assert!(
                    condition.contains("k8s.pod.label[track] in (stable)"),
                    "{condition}"
                );
                assert!(stderr.contains("enforce: Falco only alerts"), "{stderr}");
            }
        }
        assert!(text.contains("shop/Deployment/web/server"), "{text}");
        // The same export again changes nothing on disk.
        let (again, _) = export(&args);
        assert!(again.contains("0 files written, 2 unchanged"), "{again}");
        let proxy = &documents[&format!("shop%2FDeployment%2Fweb%2Fproxy.{format}.yaml")];
        let proxy = serde_json::to_string(proxy).unwrap();
        assert!(!proxy.contains("replace-with-workload-labels"), "{proxy}");
    }
    // Once per export (one per format), whatever the number of containers.
    let deployment = "/apis/apps/v1/namespaces/shop/deployments/web";
    let asked = api.requests();
    let times = asked.iter().filter(|path| *path == deployment).count();
    assert_eq!(times, 2 * FORMATS.len(), "{asked:?}");
}

#[test]
fn an_api_that_refuses_gives_a_placeholder_that_says_so() {
    let (_keep, tmp) = temp_dir();
    let api = FakeApi::start();
    api.fail_with(403);
    let out = tmp.join("out");
    let mut args = from_golden_profiles("tetragon", &out);
    args.extend(api.args());
    let (_, stderr) = export(&args);
    assert!(
        stderr.contains("PLACEHOLDER: the Kubernetes API failed"),
        "{stderr}"
    );
    assert!(stderr.contains("HTTP 403"), "{stderr}");
    // Asked once: the second workload is not another wait for a failing API.
    assert_eq!(api.requests().len(), 1, "{:?}", api.requests());
    assert!(
        stderr.contains("not asked again in this export"),
        "{stderr}"
    );
    let documents = validated_documents("tetragon", &out);
    for document in documents.values() {
        let labels = &document["spec"]["podSelector"]["matchLabels"];
        assert_eq!(
            labels["fingerprint.placeholder/replace-with-workload-labels"],
            "unknown"
        );
    }
}

#[test]
fn flags_that_mean_nothing_for_the_format_are_refused() {
    let (_keep, tmp) = temp_dir();
    let out = tmp.join("out");
    for (args, said) in [
        (vec!["--from-profiles", "profiles"], "add --format"),
        (
            vec!["--format", "falco", "--replace"],
            "apply to profiles only",
        ),
    ] {
        let mut full = vec![OsStr::new("export"), OsStr::new("--out"), out.as_os_str()];
        full.extend(args.iter().map(OsStr::new));
        let output = fingerprint(&full);
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(2), "{args:?}: {stderr}");
        assert!(stderr.contains(said), "{args:?}: {stderr}");
        assert!(!out.exists(), "{args:?} wrote {}", out.display());
    }
}
