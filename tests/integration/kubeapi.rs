//! The Kubernetes API owner resolver against a real HTTPS server started here: a
//! CA and a server certificate for 127.0.0.1 made at test time, a bearer token
//! that is required (401 without it), Pod, ReplicaSet and Job objects shaped like
//! the real API's, and every request counted. No cluster needed; the same server
//! stands in for the API in the containerd test (`containers.rs`).

use std::collections::HashMap;
use std::ffi::OsString;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use fingerprint::workload::kubeapi::ApiOwners;
use fingerprint::workload::kubernetes::{self, OwnerSource, PodContainer, PodNameRules};
use serde_json::{json, Value};

const TOKEN: &str = "fingerprint-test-token";

#[derive(Default)]
struct Shared {
    /// JSON by request path.
    objects: Mutex<HashMap<String, Value>>,
    /// Paths requested, in order, authorized or not.
    requests: Mutex<Vec<String>>,
    /// Answer every authorized request with this status instead (e.g. 403).
    status: Mutex<Option<u16>>,
}

/// An HTTPS server that answers GETs like the Kubernetes API; stopped on drop.
pub struct FakeApi {
    pub url: String,
    pub token_file: PathBuf,
    pub ca_file: PathBuf,
    shared: Arc<Shared>,
    addr: SocketAddr,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
    dir: tempfile::TempDir,
}

impl FakeApi {
    pub fn start() -> FakeApi {
        let dir = tempfile::tempdir().unwrap();
        // A cluster CA signs the server's certificate, as in a real cluster.
        let ca_key = rcgen::KeyPair::generate().unwrap();
        let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        let ca_cert = ca_params.self_signed(&ca_key).unwrap();
        let issuer = rcgen::Issuer::new(ca_params, ca_key);
        let server_key = rcgen::KeyPair::generate().unwrap();
        let server_cert = rcgen::CertificateParams::new(vec!["127.0.0.1".to_string()])
            .unwrap()
            .signed_by(&server_key, &issuer)
            .unwrap();
        let ca_file = dir.path().join("ca.crt");
        std::fs::write(&ca_file, ca_cert.pem()).unwrap();
        let token_file = dir.path().join("token");
        std::fs::write(&token_file, format!("{TOKEN}\n")).unwrap();

        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(
                vec![server_cert.der().clone()],
                rustls::pki_types::PrivateKeyDer::Pkcs8(server_key.serialize_der().into()),
            )
            .unwrap();
        let config = Arc::new(config);
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let shared = Arc::new(Shared::default());
        let stop = Arc::new(AtomicBool::new(false));
        let thread = {
            let shared = Arc::clone(&shared);
            let stop = Arc::clone(&stop);
            std::thread::spawn(move || {
                for conn in listener.incoming() {
                    if stop.load(Ordering::SeqCst) {
                        break;
                    }
                    if let Ok(conn) = conn {
                        serve(conn, Arc::clone(&config), &shared);
                    }
                }
            })
        };
        FakeApi {
            url: format!("https://{addr}"),
            token_file,
            ca_file,
            shared,
            addr,
            stop,
            thread: Some(thread),
            dir,
        }
    }

    /// Serve `object` at its API path (from its kind, namespace and name).
    pub fn add(&self, object: Value) {
        let meta = &object["metadata"];
        let (ns, name) = (meta["namespace"].as_str(), meta["name"].as_str());
        let (ns, name) = (ns.unwrap(), name.unwrap());
        let path = match object["kind"].as_str().unwrap() {
            "Pod" => format!("/api/v1/namespaces/{ns}/pods/{name}"),
            "ReplicaSet" => format!("/apis/apps/v1/namespaces/{ns}/replicasets/{name}"),
            "Job" => format!("/apis/batch/v1/namespaces/{ns}/jobs/{name}"),
            "Deployment" => format!("/apis/apps/v1/namespaces/{ns}/deployments/{name}"),
            kind => panic!("no path for {kind}"),
        };
        self.shared.objects.lock().unwrap().insert(path, object);
    }

    /// Paths requested so far, in order.
    pub fn requests(&self) -> Vec<String> {
        self.shared.requests.lock().unwrap().clone()
    }

    /// Answer every authorized request with `status` from now on (e.g. 403).
    pub fn fail_with(&self, status: u16) {
        *self.shared.status.lock().unwrap() = Some(status);
    }

    /// `fingerprint learn`/`enforce` arguments that point at this server.
    pub fn args(&self) -> Vec<OsString> {
        vec![
            "--kube-api".into(),
            self.url.clone().into(),
            "--kube-token-file".into(),
            self.token_file.clone().into(),
            "--kube-ca-file".into(),
            self.ca_file.clone().into(),
        ]
    }

    fn resolver(&self) -> ApiOwners {
        ApiOwners::connect(&self.url, &self.token_file, &self.ca_file).unwrap()
    }

    /// Stop answering (connections are refused from now on); the files stay.
    fn shut_down(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        // Wake the accept loop so that it sees the flag and drops the listener.
        let _ = TcpStream::connect(self.addr);
        if let Some(thread) = self.thread.take() {
            thread.join().unwrap();
        }
    }
}

impl Drop for FakeApi {
    fn drop(&mut self) {
        self.shut_down();
    }
}

/// One request per connection (`Connection: close`), as a client must handle.
fn serve(conn: TcpStream, config: Arc<rustls::ServerConfig>, shared: &Shared) {
    conn.set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let tls = rustls::ServerConnection::new(config).unwrap();
    let mut stream = rustls::StreamOwned::new(tls, conn);
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        match stream.read(&mut byte) {
            Ok(1) => head.push(byte[0]),
            _ => return, // the client went away (or our own wake-up connection)
        }
    }
    let head = String::from_utf8_lossy(&head);
    let mut lines = head.split("\r\n");
    let path = lines
        .next()
        .and_then(|line| line.split(' ').nth(1))
        .unwrap_or_default()
        .to_string();
    let authorized = lines.any(|line| {
        line.split_once(':').is_some_and(|(name, value)| {
            name.eq_ignore_ascii_case("authorization") && value.trim() == format!("Bearer {TOKEN}")
        })
    });
    shared.requests.lock().unwrap().push(path.clone());
    let forced = *shared.status.lock().unwrap();
    let (status, body) = match (authorized, forced) {
        (false, _) => (401, status_object(401, "Unauthorized")),
        (true, Some(code)) => (code, status_object(code, "Forbidden")),
        (true, None) => match shared.objects.lock().unwrap().get(&path) {
            Some(object) => (200, object.clone()),
            None => (404, status_object(404, "NotFound")),
        },
    };
    let body = body.to_string();
    let response = format!(
        "HTTP/1.1 {status} {}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\
         Connection: close\r\n\r\n{body}",
        status_object_reason(status),
        body.len()
    );
    let _ = stream.write_all(response.as_bytes());
    stream.conn.send_close_notify();
    let _ = stream.flush();
}

fn status_object(code: u16, reason: &str) -> Value {
    json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
           "message": reason, "reason": reason, "code": code})
}

fn status_object_reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        _ => "Error",
    }
}

/// An object as the API returns it: `controller` is its managing owner reference
/// (apiVersion, kind, name), listed after an owner that is not its controller.
fn object(
    api_version: &str,
    kind: &str,
    name: &str,
    uid: &str,
    controller: Option<(&str, &str, &str)>,
) -> Value {
    let mut owners = vec![json!({"apiVersion": "v1", "kind": "ConfigMap",
        "name": format!("{name}-config"), "uid": "00000000-0000-4000-8000-00000000c0f1"})];
    if let Some((version, kind, name)) = controller {
        owners.push(json!({"apiVersion": version, "kind": kind, "name": name,
            "uid": format!("{name}-uid"), "controller": true, "blockOwnerDeletion": true}));
    }
    json!({
        "apiVersion": api_version,
        "kind": kind,
        "metadata": {
            "name": name,
            "namespace": "default",
            "uid": uid,
            "resourceVersion": "4242",
            "creationTimestamp": "2026-11-28T12:00:00Z",
            "labels": {"app": name},
            "ownerReferences": owners,
        },
        "spec": {},
        "status": {},
    })
}

/// A Pod in namespace "default".
pub fn pod(name: &str, uid: &str, controller: Option<(&str, &str, &str)>) -> Value {
    object("v1", "Pod", name, uid, controller)
}

/// A ReplicaSet in namespace "default".
pub fn replicaset(name: &str, controller: Option<(&str, &str, &str)>) -> Value {
    object(
        "apps/v1",
        "ReplicaSet",
        name,
        &format!("{name}-uid"),
        controller,
    )
}

fn job(name: &str, controller: Option<(&str, &str, &str)>) -> Value {
    object("batch/v1", "Job", name, &format!("{name}-uid"), controller)
}

fn container(pod: &str, uid: Option<&str>, container: &str) -> PodContainer {
    PodContainer {
        namespace: "default".into(),
        pod_name: pod.into(),
        pod_uid: uid.map(String::from),
        container: container.into(),
    }
}

/// The workload name and owner source, API first, then pod names.
fn named(api: &ApiOwners, pod: &PodContainer) -> (String, OwnerSource) {
    let owner = kubernetes::resolve_owner(pod, &[api, &PodNameRules]);
    (kubernetes::workload(pod, &owner).name(), owner.source)
}

/// Assert that `pod` is named `workload`, by the API or from its pod name.
#[track_caller]
fn assert_named(api: &ApiOwners, pod: &PodContainer, workload: &str, source: OwnerSource) {
    assert_eq!(named(api, pod), (workload.to_string(), source), "{pod:?}");
}

const RS: &str = "/apis/apps/v1/namespaces/default/replicasets/";

fn pod_path(name: &str) -> String {
    format!("/api/v1/namespaces/default/pods/{name}")
}

#[test]
fn owners_come_from_the_api_and_each_object_is_asked_for_once() {
    let api = FakeApi::start();
    // Owner names differ from what the pod names suggest: only the API knows them.
    let deployment = Some(("apps/v1", "Deployment", "storefront"));
    api.add(replicaset("web-6b474476c4", deployment));
    let rs = Some(("apps/v1", "ReplicaSet", "web-6b474476c4"));
    api.add(pod("web-6b474476c4-zq2x9", "u-w1", rs));
    api.add(pod("web-6b474476c4-x7k2p", "u-w2", rs));
    api.add(pod(
        "db-0",
        "u-db",
        Some(("apps/v1", "StatefulSet", "postgres")),
    ));
    let daemonset = Some(("apps/v1", "DaemonSet", "node-exporter"));
    api.add(pod("node-exporter-x7k2p", "u-ne", daemonset));
    let cronjob = Some(("batch/v1", "CronJob", "nightly-backup"));
    api.add(job("backup-28391234", cronjob));
    let backup_job = Some(("batch/v1", "Job", "backup-28391234"));
    api.add(pod("backup-28391234-4xzbq", "u-bk", backup_job));
    api.add(job("migrate", None));
    api.add(pod(
        "migrate-d4vkq",
        "u-mg",
        Some(("batch/v1", "Job", "migrate")),
    ));
    api.add(pod("scratch-1", "u-sc", None));
    let owners = api.resolver();

    for (pod_name, uid, workload) in [
        (
            "web-6b474476c4-zq2x9",
            "u-w1",
            "default/Deployment/storefront/server",
        ),
        ("db-0", "u-db", "default/StatefulSet/postgres/server"),
        (
            "node-exporter-x7k2p",
            "u-ne",
            "default/DaemonSet/node-exporter/server",
        ),
        (
            "backup-28391234-4xzbq",
            "u-bk",
            "default/CronJob/nightly-backup/server",
        ),
        ("migrate-d4vkq", "u-mg", "default/Job/migrate/server"),
        // Pod names would call this a StatefulSet's pod; it has no owner.
        ("scratch-1", "u-sc", "default/Pod/scratch-1/server"),
    ] {
        let pod = container(pod_name, Some(uid), "server");
        assert_named(&owners, &pod, workload, OwnerSource::KubernetesApi);
    }
    let asked = api.requests();
    assert_eq!(asked.len(), 9, "6 pods, 1 ReplicaSet, 2 Jobs: {asked:#?}");

    // Another container of a known pod, and a second replica of the same
    // ReplicaSet: one new request, for the new pod only.
    let sidecar = container("web-6b474476c4-zq2x9", Some("u-w1"), "proxy");
    let storefront = |c| format!("default/Deployment/storefront/{c}");
    assert_named(
        &owners,
        &sidecar,
        &storefront("proxy"),
        OwnerSource::KubernetesApi,
    );
    let replica = container("web-6b474476c4-x7k2p", Some("u-w2"), "server");
    assert_named(
        &owners,
        &replica,
        &storefront("server"),
        OwnerSource::KubernetesApi,
    );
    let asked = api.requests();
    assert_eq!(asked[9..], [pod_path("web-6b474476c4-x7k2p")]);
    assert_eq!(
        asked.iter().filter(|p| p.starts_with(RS)).count(),
        1,
        "the ReplicaSet is asked for once: {asked:#?}"
    );
    assert_eq!(owners.stats().failures, 0);
}

#[test]
fn a_forbidden_api_falls_back_to_pod_names_and_is_not_asked_again_at_once() {
    let api = FakeApi::start();
    let rs = Some(("apps/v1", "ReplicaSet", "web-6b474476c4"));
    api.add(pod("web-6b474476c4-zq2x9", "u-w1", rs));
    api.fail_with(403);
    let owners = api.resolver();
    let first = container("web-6b474476c4-zq2x9", Some("u-w1"), "server");
    assert_named(
        &owners,
        &first,
        "default/Deployment/web/server",
        OwnerSource::PodName,
    );
    // The next pod does not wait for a failing API: named from its name at once.
    let second = container("db-0", Some("u-db"), "postgres");
    assert_named(
        &owners,
        &second,
        "default/StatefulSet/db/postgres",
        OwnerSource::PodName,
    );
    assert_eq!(api.requests(), [pod_path("web-6b474476c4-zq2x9")]);
    let stats = owners.stats();
    assert_eq!((stats.failures, stats.skipped), (1, 1), "{stats:?}");
}

#[test]
fn an_api_that_is_down_or_refuses_the_token_falls_back_to_pod_names() {
    let mut api = FakeApi::start();
    api.add(pod(
        "db-0",
        "u-db",
        Some(("apps/v1", "StatefulSet", "postgres")),
    ));
    let pod = container("db-0", Some("u-db"), "postgres");
    let by_pod_name = "default/StatefulSet/db/postgres";

    // A token the server does not know: 401.
    let wrong = api.dir.path().join("wrong-token");
    std::fs::write(&wrong, "not-the-token").unwrap();
    let refused = ApiOwners::connect(&api.url, &wrong, &api.ca_file).unwrap();
    assert_named(&refused, &pod, by_pod_name, OwnerSource::PodName);
    assert_eq!(refused.stats().failures, 1);
    assert_eq!(api.requests().len(), 1, "the server saw the request");

    let owners = api.resolver();
    api.shut_down();
    assert_named(&owners, &pod, by_pod_name, OwnerSource::PodName);
    assert_eq!(owners.stats().failures, 1);
}

#[test]
fn a_replaced_pod_is_named_from_its_name_and_asked_for_once() {
    let api = FakeApi::start();
    // The API's db-0 is a newer pod than the container's (a StatefulSet recreated it).
    api.add(pod(
        "db-0",
        "u-new",
        Some(("apps/v1", "StatefulSet", "postgres")),
    ));
    let owners = api.resolver();
    let old = container("db-0", Some("u-old"), "postgres");
    assert_named(
        &owners,
        &old,
        "default/StatefulSet/db/postgres",
        OwnerSource::PodName,
    );
    let old_sidecar = container("db-0", Some("u-old"), "exporter");
    assert_named(
        &owners,
        &old_sidecar,
        "default/StatefulSet/db/exporter",
        OwnerSource::PodName,
    );
    assert_eq!(api.requests().len(), 1, "the answer for u-old is kept");
    // The current pod's containers, and containers whose uid is unknown, use the API.
    for uid in [Some("u-new"), None] {
        let current = container("db-0", uid, "postgres");
        let workload = "default/StatefulSet/postgres/postgres";
        assert_named(&owners, &current, workload, OwnerSource::KubernetesApi);
    }
    // A pod the API does not have (404) is not an API failure.
    let gone = container("gone-0", Some("u-gone"), "c");
    assert_named(
        &owners,
        &gone,
        "default/StatefulSet/gone/c",
        OwnerSource::PodName,
    );
    assert_eq!(owners.stats().failures, 0);
}
