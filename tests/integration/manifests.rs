//! The Kubernetes manifests in deploy/kubernetes: they parse, run the image the
//! Containerfile builds, pass only flags the CLI accepts, mount exactly what the
//! agent reads, and ask for no more privilege than documented (in the API too: only
//! `get` on what the owner lookup reads). No cluster needed.

use std::path::{Path, PathBuf};
use std::process::Command;

use serde::Deserialize;
use serde_yaml_ng::Value;

use crate::common::BIN;

const IMAGE: &str = "ghcr.io/fingerprint/fingerprint:0.1.0";

fn deploy_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/kubernetes")
}

fn load(file: &str) -> Value {
    let text = std::fs::read_to_string(deploy_dir().join(file)).unwrap();
    serde_yaml_ng::from_str(&text).unwrap_or_else(|e| panic!("{file}: {e}"))
}

/// Every document of a multi-document file.
fn load_all(file: &str) -> Vec<Value> {
    let text = std::fs::read_to_string(deploy_dir().join(file)).unwrap();
    serde_yaml_ng::Deserializer::from_str(&text)
        .map(|doc| Value::deserialize(doc).unwrap_or_else(|e| panic!("{file}: {e}")))
        .collect()
}

fn pod_spec(doc: &Value) -> &Value {
    assert_eq!(doc["kind"], "DaemonSet");
    assert_eq!(doc["metadata"]["namespace"], "fingerprint-system");
    let selector = &doc["spec"]["selector"]["matchLabels"];
    assert_eq!(&doc["spec"]["template"]["metadata"]["labels"], selector);
    &doc["spec"]["template"]["spec"]
}

fn strings(value: &Value) -> Vec<String> {
    value
        .as_sequence()
        .map(|seq| {
            seq.iter()
                .map(|v| v.as_str().expect("a string").to_string())
                .collect()
        })
        .unwrap_or_default()
}

/// The agent container: its args, capabilities and mounts (mount path -> host path).
struct Agent {
    args: Vec<String>,
    caps: Vec<String>,
    mounts: Vec<(String, String, bool)>,
}

fn agent(spec: &Value, name: &str) -> Agent {
    let containers = spec["containers"].as_sequence().unwrap();
    let container = containers
        .iter()
        .find(|c| c["name"] == name)
        .unwrap_or_else(|| panic!("container {name}"));
    assert_eq!(container["image"], IMAGE);
    let security = &container["securityContext"];
    assert_eq!(security["allowPrivilegeEscalation"], false);
    assert_eq!(security["privileged"], false);
    assert_eq!(strings(&security["capabilities"]["drop"]), vec!["ALL"]);
    let volumes = spec["volumes"].as_sequence().unwrap();
    let mounts = container["volumeMounts"]
        .as_sequence()
        .unwrap()
        .iter()
        .map(|m| {
            let volume = volumes
                .iter()
                .find(|v| v["name"] == m["name"])
                .unwrap_or_else(|| panic!("volume {:?}", m["name"]));
            let source = volume["hostPath"]["path"]
                .as_str()
                .map(str::to_string)
                .or_else(|| {
                    volume["configMap"]["name"]
                        .as_str()
                        .map(|n| format!("configmap:{n}"))
                })
                .expect("hostPath or configMap");
            (
                m["mountPath"].as_str().unwrap().to_string(),
                source,
                m["readOnly"].as_bool().unwrap_or(false),
            )
        })
        .collect();
    Agent {
        args: strings(&container["args"]),
        caps: strings(&security["capabilities"]["add"]),
        mounts,
    }
}

/// Every `--flag` in `args` is accepted by `fingerprint <subcommand>`: checked
/// against its real `--help`, so a renamed flag breaks this test, not a cluster.
fn flags_exist(args: &[String]) {
    let subcommand = &args[0];
    let help = Command::new(BIN)
        .args([subcommand.as_str(), "--help"])
        .output()
        .unwrap();
    assert!(help.status.success());
    let help = String::from_utf8_lossy(&help.stdout);
    for flag in args.iter().filter(|a| a.starts_with("--")) {
        assert!(
            help.contains(&format!("{flag} ")) || help.contains(&format!("{flag}\n")),
            "`fingerprint {subcommand}` has no {flag}"
        );
    }
}

fn value_of<'a>(args: &'a [String], flag: &str) -> Vec<&'a str> {
    args.windows(2)
        .filter(|w| w[0] == flag)
        .map(|w| w[1].as_str())
        .collect()
}

fn mount<'a>(agent: &'a Agent, path: &str) -> &'a (String, String, bool) {
    agent
        .mounts
        .iter()
        .find(|(p, _, _)| p == path)
        .unwrap_or_else(|| panic!("no mount at {path}: {:?}", agent.mounts))
}

/// The agent serves /metrics and /healthz on the port it declares, the probes ask
/// /healthz there, and the pod's scrape annotations name the same port.
fn serves_metrics_and_health(doc: &Value, agent: &Agent) {
    let addr = value_of(&agent.args, "--metrics-addr");
    assert_eq!(addr.len(), 1, "one --metrics-addr: {:?}", agent.args);
    let (host, port) = addr[0].rsplit_once(':').unwrap();
    assert_eq!(host, "0.0.0.0", "reachable from the pod network");
    let port: u64 = port.parse().unwrap();

    let container = &pod_spec(doc)["containers"][0];
    let ports = container["ports"].as_sequence().expect("ports");
    let metrics = ports
        .iter()
        .find(|p| p["name"] == "metrics")
        .expect("a port named metrics");
    assert_eq!(metrics["containerPort"].as_u64(), Some(port));
    for probe in ["startupProbe", "livenessProbe", "readinessProbe"] {
        let get = &container[probe]["httpGet"];
        assert_eq!(get["path"], "/healthz", "{probe}");
        assert_eq!(get["port"], "metrics", "{probe}");
    }
    // Liveness tolerates a few slow answers: the probe itself fails only after 10 s
    // without a read of the ring buffer (metrics::health).
    let liveness = &container["livenessProbe"];
    assert!(liveness["failureThreshold"].as_u64().unwrap_or(3) >= 3);

    let annotations = &doc["spec"]["template"]["metadata"]["annotations"];
    assert_eq!(annotations["prometheus.io/scrape"], "true");
    assert_eq!(annotations["prometheus.io/port"], port.to_string().as_str());
    assert_eq!(annotations["prometheus.io/path"], "/metrics");
}

#[test]
fn learn_daemonset_matches_the_cli() {
    let doc = load("learn-daemonset.yaml");
    let spec = pod_spec(&doc);
    assert_eq!(spec["hostPID"], false, "learning signals nobody");
    let learn = agent(spec, "learn");
    assert_eq!(learn.args[0], "learn");
    flags_exist(&learn.args);
    let db = value_of(&learn.args, "--db");
    assert_eq!(db, vec!["/var/lib/fingerprint/learn.db"]);
    assert_eq!(
        mount(&learn, "/var/lib/fingerprint"),
        &(
            "/var/lib/fingerprint".into(),
            "/var/lib/fingerprint".into(),
            false
        )
    );
    for (path, read_only) in [
        ("/sys/fs/cgroup", true),
        ("/sys/kernel/btf", true),
        ("/run/containerd/io.containerd.runtime.v2.task", true),
    ] {
        let (_, host, ro) = mount(&learn, path);
        assert_eq!((host.as_str(), *ro), (path, read_only), "{path}");
    }
    assert_eq!(learn.mounts.len(), 4, "nothing else from the host");
    let state = value_of(&learn.args, "--containerd-state");
    assert!(
        learn.mounts.iter().any(|(p, _, _)| p.starts_with(state[0])),
        "the state dir named in the args is mounted"
    );
    let mut caps = learn.caps.clone();
    caps.sort();
    assert_eq!(caps, ["BPF", "DAC_READ_SEARCH", "PERFMON", "SYS_RESOURCE"]);
    serves_metrics_and_health(&doc, &learn);
}

#[test]
fn enforce_daemonset_matches_the_cli() {
    let doc = load("enforce-daemonset.yaml");
    let spec = pod_spec(&doc);
    assert_eq!(
        spec["hostPID"], true,
        "held execs are signalled by host pid"
    );
    let enforce = agent(spec, "enforce");
    assert_eq!(enforce.args[0], "enforce");
    flags_exist(&enforce.args);
    assert_eq!(value_of(&enforce.args, "--mechanism"), vec!["lsm"]);
    let profiles = value_of(&enforce.args, "--profile");
    assert_eq!(
        mount(&enforce, profiles[0]),
        &(
            profiles[0].to_string(),
            "configmap:fingerprint-profiles".to_string(),
            true
        )
    );
    let scopes = value_of(&enforce.args, "--container-scope");
    assert_eq!(scopes, vec!["/kubepods.slice", "/kubepods"]);
    for path in ["/sys/fs/cgroup", "/sys/kernel/btf"] {
        assert!(mount(&enforce, path).2, "{path} read-only");
    }
    // Pinned, so a restarted pod takes over with no gap: the pins and the state file
    // beside them live on the host.
    let pin_dir = value_of(&enforce.args, "--pin-dir");
    assert!(enforce.args.iter().any(|a| a == "--pin"));
    assert_eq!(pin_dir, vec![fingerprint::bpf::pinned::DEFAULT_PIN_DIR]);
    let state_dir = Path::new(fingerprint::bpf::pinned::STATE_DIR);
    for path in [Path::new("/sys/fs/bpf"), state_dir] {
        let path = path.to_str().unwrap();
        let (_, host, read_only) = mount(&enforce, path);
        assert_eq!(
            (host.as_str(), *read_only),
            (path, false),
            "{path} writable"
        );
    }
    assert_eq!(enforce.mounts.len(), 7, "{:?}", enforce.mounts);
    let mut caps = enforce.caps.clone();
    caps.sort();
    assert_eq!(
        caps,
        [
            "BPF",
            "DAC_READ_SEARCH",
            "KILL",
            "PERFMON",
            "SYS_ADMIN",
            "SYS_PTRACE",
            "SYS_RESOURCE"
        ]
    );
    // The reload wrapper runs the binary with the args above and signals only it.
    let containers = spec["containers"].as_sequence().unwrap();
    let command = strings(&containers[0]["command"]);
    assert_eq!(command[..2], ["/bin/sh", "-c"]);
    assert!(command[2].contains("/usr/local/bin/fingerprint \"$@\""));
    assert!(command[2].contains("kill -HUP $pid"));
    assert!(
        !command[2].contains("pkill"),
        "never signal by name on the host"
    );
    serves_metrics_and_health(&doc, &enforce);
    // Violation events name the node from the downward API.
    let env = containers[0]["env"].as_sequence().expect("env");
    let node = env
        .iter()
        .find(|e| e["name"] == fingerprint::workload::facts::NODE_NAME_ENV)
        .expect("the node name variable");
    assert_eq!(node["valueFrom"]["fieldRef"]["fieldPath"], "spec.nodeName");
}

#[test]
fn containerfile_builds_the_image_the_manifests_run() {
    let text = std::fs::read_to_string(deploy_dir().join("Containerfile")).unwrap();
    assert!(text.contains("cargo build --release --locked"));
    assert!(text
        .contains("COPY --from=build /src/target/release/fingerprint /usr/local/bin/fingerprint"));
    assert!(text.contains("ENTRYPOINT [\"/usr/local/bin/fingerprint\"]"));
    let ns = load("namespace.yaml");
    assert_eq!(ns["metadata"]["name"], "fingerprint-system");
}

#[test]
fn rbac_grants_get_on_what_the_owner_lookup_reads_and_nothing_more() {
    let docs = load_all("rbac.yaml");
    let of_kind = |kind: &str| -> &Value {
        let found: Vec<&Value> = docs.iter().filter(|d| d["kind"] == kind).collect();
        assert_eq!(found.len(), 1, "one {kind} in rbac.yaml");
        found[0]
    };
    assert_eq!(
        docs.len(),
        3,
        "a ServiceAccount, a ClusterRole and its binding"
    );
    let account = of_kind("ServiceAccount");
    assert_eq!(account["metadata"]["namespace"], "fingerprint-system");
    let account_name = account["metadata"]["name"].as_str().unwrap();

    let role = of_kind("ClusterRole");
    let mut granted = Vec::new();
    for rule in role["rules"].as_sequence().unwrap() {
        let keys: Vec<&str> = rule
            .as_mapping()
            .unwrap()
            .keys()
            .map(|k| k.as_str().unwrap())
            .collect();
        // No resourceNames, nonResourceURLs or aggregation: just these three.
        assert_eq!(keys, ["apiGroups", "resources", "verbs"], "{rule:?}");
        for group in strings(&rule["apiGroups"]) {
            for resource in strings(&rule["resources"]) {
                for verb in strings(&rule["verbs"]) {
                    granted.push(format!("{verb} {group}/{resource}"));
                }
            }
        }
    }
    granted.sort();
    assert_eq!(
        granted,
        ["get /pods", "get apps/replicasets", "get batch/jobs"]
    );

    let binding = of_kind("ClusterRoleBinding");
    assert_eq!(binding["roleRef"]["kind"], "ClusterRole");
    assert_eq!(binding["roleRef"]["name"], role["metadata"]["name"]);
    let subjects = binding["subjects"].as_sequence().unwrap();
    assert_eq!(subjects.len(), 1);
    assert_eq!(subjects[0]["kind"], "ServiceAccount");
    assert_eq!(subjects[0]["name"], account_name);
    assert_eq!(subjects[0]["namespace"], "fingerprint-system");

    // Both agents run as that account, with its token mounted for `--kube-api auto`.
    for file in ["learn-daemonset.yaml", "enforce-daemonset.yaml"] {
        let doc = load(file);
        let spec = pod_spec(&doc);
        assert_eq!(spec["serviceAccountName"], account_name, "{file}");
        assert_eq!(spec["automountServiceAccountToken"], true, "{file}");
        let args = strings(&spec["containers"][0]["args"]);
        assert!(
            value_of(&args, "--kube-api").iter().all(|v| *v == "auto"),
            "{file}: the in-cluster API is used"
        );
    }
}
