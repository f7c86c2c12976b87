//! Pod owners from the Kubernetes API: the pod's controller (the `ownerReferences`
//! entry with `controller: true`), followed from a ReplicaSet to its Deployment and
//! from a Job to its CronJob. This is the fact that [`crate::workload::kubernetes::PodNameRules`]
//! can only guess, and it tells a DaemonSet's pod from a Job's.
//!
//! Where the API is: in a pod, `KUBERNETES_SERVICE_HOST`/`KUBERNETES_SERVICE_PORT`
//! and the service account's token and CA bundle (`--kube-api auto`, the default);
//! anywhere, an explicit https URL with a token file and a CA file. What it reads:
//! `get` on pods, replicasets and jobs (deploy/kubernetes/rbac.yaml), nothing else.
//!
//! A node asks once per pod and once per ReplicaSet or Job: a pod uid never changes
//! owner, so answers are kept for the life of the process. Requests time out after a
//! few seconds. Any failure names that container from its pod name instead (its
//! `owner_source` says "pod-name"), is reported once on stderr, and the API is left
//! alone for [`RETRY_AFTER`], so an outage costs one timeout, not one per container.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

use serde::Deserialize;
use ureq::tls::{PemItem, RootCerts, TlsConfig};

use crate::workload::kubernetes::{Owner, OwnerResolver, OwnerSource, PodContainer};

/// Where kubelet mounts a pod's service account token and the cluster's CA bundle.
pub const DEFAULT_TOKEN_FILE: &str = "/var/run/secrets/kubernetes.io/serviceaccount/token";
pub const DEFAULT_CA_FILE: &str = "/var/run/secrets/kubernetes.io/serviceaccount/ca.crt";
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
/// A held first exec (enforce) waits for the answer: keep it short.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(3);
/// After a failure, pod names are used without asking for this long.
pub const RETRY_AFTER: Duration = Duration::from_secs(30);
/// On a static pod's mirror in the API: the uid that the static pod's containers carry.
const MIRROR_ANNOTATION: &str = "kubernetes.io/config.mirror";

/// Where pod owners come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ApiChoice {
    /// The cluster's API when running in a pod, else pod names.
    Auto,
    /// Pod names only.
    Off,
    /// This API server (an https URL).
    Url(String),
}

impl std::str::FromStr for ApiChoice {
    type Err = String;

    fn from_str(text: &str) -> Result<ApiChoice, String> {
        match text {
            "auto" => Ok(ApiChoice::Auto),
            "off" => Ok(ApiChoice::Off),
            url if url.starts_with("https://") && url.len() > "https://".len() => {
                Ok(ApiChoice::Url(url.trim_end_matches('/').to_string()))
            }
            _ => Err(format!(
                "{text:?}: use auto, off, or the API server's https:// URL (the token is \
                 never sent in clear text)"
            )),
        }
    }
}

/// The API to ask, and the credentials to ask it with.
#[derive(Debug, Clone)]
pub struct ApiSettings {
    pub api: ApiChoice,
    pub token_file: PathBuf,
    pub ca_file: PathBuf,
}

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error(
        "reading the Kubernetes API token {path}: {error} (mount the service account \
         token, or pass --kube-token-file; --kube-api off names owners from pod names)"
    )]
    Token {
        path: PathBuf,
        error: std::io::Error,
    },
    #[error("the Kubernetes API token {path} is empty: pass the service account's token")]
    EmptyToken { path: PathBuf },
    #[error(
        "reading the Kubernetes API CA bundle {path}: {detail} (pass --kube-ca-file with \
         the PEM certificates that signed the API server's, e.g. the service account's ca.crt)"
    )]
    Ca { path: PathBuf, detail: String },
    #[error("GET {url}: {error}")]
    Transport {
        url: String,
        error: Box<ureq::Error>,
    },
    #[error("GET {url}: HTTP {status}{}", status_hint(*.status))]
    Status { url: String, status: u16 },
    #[error("GET {url}: not a Kubernetes object: {error}")]
    Json {
        url: String,
        error: serde_json::Error,
    },
}

fn status_hint(status: u16) -> &'static str {
    match status {
        401 => {
            " (the token was refused: is --kube-token-file the service account's current token?)"
        }
        403 => {
            " (forbidden: the service account needs get on pods, replicasets and jobs; \
             apply deploy/kubernetes/rbac.yaml)"
        }
        _ => "",
    }
}

/// The part of a Pod, ReplicaSet or Job that names its owner.
#[derive(Debug, Deserialize)]
struct Object {
    metadata: Metadata,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Metadata {
    #[serde(default)]
    uid: String,
    #[serde(default)]
    annotations: HashMap<String, String>,
    #[serde(default)]
    owner_references: Vec<OwnerReference>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct OwnerReference {
    #[serde(default)]
    api_version: String,
    kind: String,
    name: String,
    #[serde(default)]
    controller: Option<bool>,
}

impl Metadata {
    /// The managing controller: the one owner reference marked `controller: true`.
    fn controller(&self) -> Option<&OwnerReference> {
        self.owner_references
            .iter()
            .find(|r| r.controller == Some(true))
    }
}

/// The controllers whose own controller names the workload.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Intermediate {
    /// apps/v1 ReplicaSet, usually a Deployment's.
    ReplicaSet,
    /// batch/v1 Job, sometimes a CronJob's.
    Job,
}

impl Intermediate {
    fn of(reference: &OwnerReference) -> Option<Intermediate> {
        let group = reference.api_version.split('/').next().unwrap_or_default();
        match (group, reference.kind.as_str()) {
            ("apps", "ReplicaSet") => Some(Intermediate::ReplicaSet),
            ("batch", "Job") => Some(Intermediate::Job),
            _ => None,
        }
    }

    fn kind(self) -> &'static str {
        match self {
            Intermediate::ReplicaSet => "ReplicaSet",
            Intermediate::Job => "Job",
        }
    }

    fn path(self, namespace: &str, name: &str) -> String {
        match self {
            Intermediate::ReplicaSet => {
                format!("/apis/apps/v1/namespaces/{namespace}/replicasets/{name}")
            }
            Intermediate::Job => format!("/apis/batch/v1/namespaces/{namespace}/jobs/{name}"),
        }
    }
}

/// What a pod object says about the owner of a container's pod.
#[derive(Debug, PartialEq, Eq)]
enum PodOwner {
    Owner(Owner),
    /// Owned by a ReplicaSet or Job: the owner is that one's controller, if any.
    Follow(Intermediate, String),
    /// The API's pod of that name is another pod (the container's was replaced).
    OtherPod,
}

fn api_owner(kind: &str, name: &str) -> Owner {
    Owner {
        kind: kind.to_string(),
        name: name.to_string(),
        source: OwnerSource::KubernetesApi,
    }
}

fn pod_owner(pod: &PodContainer, object: &Object) -> PodOwner {
    let meta = &object.metadata;
    // A static pod's containers carry its config hash as uid; the API holds its
    // mirror, whose own uid differs and whose annotation has that hash.
    let same =
        |uid: &String| *uid == meta.uid || meta.annotations.get(MIRROR_ANNOTATION) == Some(uid);
    if pod.pod_uid.as_ref().is_some_and(|uid| !same(uid)) {
        return PodOwner::OtherPod;
    }
    match meta.controller() {
        Some(r) if r.kind != "Node" => match Intermediate::of(r) {
            Some(via) => PodOwner::Follow(via, r.name.clone()),
            None => PodOwner::Owner(api_owner(&r.kind, &r.name)),
        },
        // No controller, or a mirror pod (owned by its Node): the pod is its own
        // workload, as with pod names.
        _ => PodOwner::Owner(api_owner("Pod", &pod.pod_name)),
    }
}

/// The owner of a pod controlled by `via` `name`: its controller, or itself.
fn followed_owner(via: Intermediate, name: &str, object: &Object) -> Owner {
    match object.metadata.controller() {
        Some(r) => api_owner(&r.kind, &r.name),
        None => api_owner(via.kind(), name),
    }
}

/// Whether `name` can be an object name or namespace (a DNS subdomain): anything
/// else came from a label nobody checked and is never put into a request path.
pub fn is_object_name(name: &str) -> bool {
    (1..=253).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'.')
        && !name.starts_with(['-', '.'])
}

/// The API server's URL inside a pod, from the service environment kubelet sets.
fn in_cluster_url(host: Option<&str>, port: Option<&str>) -> Option<String> {
    let host = host.filter(|h| !h.is_empty())?;
    let port = port.filter(|p| !p.is_empty())?;
    Some(match host.contains(':') {
        true => format!("https://[{host}]:{port}"),
        false => format!("https://{host}:{port}"),
    })
}

/// The API server `choice` names: None for `off`, and for `auto` outside a pod.
fn api_url(choice: &ApiChoice) -> Option<String> {
    let env = |name| std::env::var(name).ok();
    match choice {
        ApiChoice::Off => None,
        ApiChoice::Url(url) => Some(url.clone()),
        ApiChoice::Auto => in_cluster_url(
            env("KUBERNETES_SERVICE_HOST").as_deref(),
            env("KUBERNETES_SERVICE_PORT").as_deref(),
        ),
    }
}

/// Reads whole objects from the API, for callers that need more than pod owners
/// (`export --format` reads the workloads' label selectors).
#[derive(Debug)]
pub struct ApiReader {
    client: Client,
}

impl ApiReader {
    /// The API `settings` name, with its credentials read now; None when there is
    /// none to ask (`off`, or `auto` outside a pod).
    pub fn open(settings: &ApiSettings) -> Result<Option<ApiReader>, ApiError> {
        let Some(url) = api_url(&settings.api) else {
            return Ok(None);
        };
        let client = Client::new(&url, &settings.token_file, &settings.ca_file)?;
        Ok(Some(ApiReader { client }))
    }

    /// The API server's URL.
    pub fn url(&self) -> &str {
        &self.client.base
    }

    /// The object at `path` (e.g. `/apis/apps/v1/namespaces/default/deployments/web`)
    /// as JSON; None if the API has none (404).
    pub fn get_json(&self, path: &str) -> Result<Option<serde_json::Value>, ApiError> {
        self.client.get(path)
    }
}

/// An HTTPS client of one API server.
struct Client {
    base: String,
    token_file: PathBuf,
    agent: ureq::Agent,
}

/// The URL only: the agent holds TLS state, and the token is a secret.
impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
            .field("url", &self.base)
            .finish_non_exhaustive()
    }
}

impl Client {
    fn new(base: &str, token_file: &Path, ca_file: &Path) -> Result<Client, ApiError> {
        read_token(token_file)?;
        let ca_error = |detail: String| ApiError::Ca {
            path: ca_file.to_path_buf(),
            detail,
        };
        let pem = std::fs::read(ca_file).map_err(|e| ca_error(e.to_string()))?;
        let certs = ureq::tls::parse_pem(&pem)
            .filter_map(|item| match item {
                Ok(PemItem::Certificate(cert)) => Some(Ok(cert)),
                Ok(_) => None,
                Err(e) => Some(Err(ca_error(e.to_string()))),
            })
            .collect::<Result<Vec<_>, _>>()?;
        if certs.is_empty() {
            return Err(ca_error("no PEM certificate in it".into()));
        }
        let tls = TlsConfig::builder()
            .root_certs(RootCerts::new_with_certs(&certs))
            .build();
        let agent = ureq::Agent::config_builder()
            .tls_config(tls)
            .timeout_connect(Some(CONNECT_TIMEOUT))
            .timeout_global(Some(REQUEST_TIMEOUT))
            .http_status_as_error(false)
            // The API is asked where it is: a node agent must not depend on a proxy.
            .proxy(None)
            .max_redirects(0)
            .user_agent(concat!("fingerprint/", env!("CARGO_PKG_VERSION")))
            .build()
            .new_agent();
        Ok(Client {
            base: base.to_string(),
            token_file: token_file.to_path_buf(),
            agent,
        })
    }

    /// The object at `path`; None if there is none (404).
    fn get<T: serde::de::DeserializeOwned>(&self, path: &str) -> Result<Option<T>, ApiError> {
        let url = format!("{}{path}", self.base);
        // Read at every request: projected service account tokens are rotated.
        let token = read_token(&self.token_file)?;
        let transport = |e: ureq::Error| ApiError::Transport {
            url: url.clone(),
            error: Box::new(e),
        };
        let mut response = self
            .agent
            .get(&url)
            .header("Authorization", format!("Bearer {token}"))
            .header("Accept", "application/json")
            .call()
            .map_err(transport)?;
        match response.status().as_u16() {
            200 => {}
            404 => return Ok(None),
            status => return Err(ApiError::Status { url, status }),
        }
        let body = response.body_mut().read_to_vec().map_err(transport)?;
        serde_json::from_slice(&body)
            .map(Some)
            .map_err(|error| ApiError::Json { url, error })
    }
}

fn read_token(path: &Path) -> Result<String, ApiError> {
    let token = std::fs::read_to_string(path).map_err(|error| ApiError::Token {
        path: path.to_path_buf(),
        error,
    })?;
    let token = token.trim();
    if token.is_empty() {
        return Err(ApiError::EmptyToken {
            path: path.to_path_buf(),
        });
    }
    Ok(token.to_string())
}

/// How often the API could not be used.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct ApiStats {
    /// Lookups that failed (the container was named from its pod name).
    pub failures: u64,
    /// Lookups not tried because the API failed less than RETRY_AFTER ago.
    pub skipped: u64,
}

type PodKey = (String, String, Option<String>);

#[derive(Default)]
struct Cache {
    /// By (namespace, pod name, pod uid); None: the API has no such pod.
    pods: HashMap<PodKey, Option<Owner>>,
    /// By (kind, namespace, name) of a ReplicaSet or Job.
    controllers: HashMap<(Intermediate, String, String), Owner>,
    failed_at: Option<Instant>,
    warned: bool,
    stats: ApiStats,
}

/// The owner resolver backed by the Kubernetes API; put it before `PodNameRules`.
pub struct ApiOwners {
    client: Client,
    cache: Mutex<Cache>,
}

impl std::fmt::Debug for ApiOwners {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ApiOwners")
            .field("client", &self.client)
            .finish_non_exhaustive()
    }
}

impl ApiOwners {
    /// The API at `url` (https), asked with the bearer token in `token_file` and
    /// trusting the certificates in `ca_file`. Both files are read now, so a wrong
    /// path is an error at start rather than a fallback later.
    pub fn connect(url: &str, token_file: &Path, ca_file: &Path) -> Result<ApiOwners, ApiError> {
        Ok(ApiOwners {
            client: Client::new(url, token_file, ca_file)?,
            cache: Mutex::default(),
        })
    }

    /// The resolver `settings` ask for, announced on stderr; None: pod names only
    /// (`off`, or `auto` outside a pod). An explicit URL whose token or CA cannot be
    /// read is an error; in `auto` mode it is said, and pod names are used.
    pub fn open(settings: &ApiSettings) -> Result<Option<ApiOwners>, ApiError> {
        let Some(url) = api_url(&settings.api) else {
            return Ok(None);
        };
        let api = match ApiOwners::connect(&url, &settings.token_file, &settings.ca_file) {
            Ok(api) => api,
            Err(e) if settings.api == ApiChoice::Auto => {
                eprintln!(
                    "fingerprint: running in a pod, but its Kubernetes API cannot be used, so \
                     pod owners come from pod names: {e}"
                );
                return Ok(None);
            }
            Err(e) => return Err(e),
        };
        eprintln!(
            "fingerprint: pod owners from the Kubernetes API at {url} (from pod names if it fails)"
        );
        Ok(Some(api))
    }

    pub fn stats(&self) -> ApiStats {
        self.lock().stats
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Cache> {
        self.cache.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The owner from the API; None when the API has no such pod (gone, replaced).
    fn lookup(&self, cache: &mut Cache, pod: &PodContainer) -> Result<Option<Owner>, ApiError> {
        if !is_object_name(&pod.namespace) || !is_object_name(&pod.pod_name) {
            return Ok(None);
        }
        let path = format!("/api/v1/namespaces/{}/pods/{}", pod.namespace, pod.pod_name);
        let Some(object) = self.client.get::<Object>(&path)? else {
            return Ok(None);
        };
        let (via, name) = match pod_owner(pod, &object) {
            PodOwner::Owner(owner) => return Ok(Some(owner)),
            PodOwner::OtherPod => return Ok(None),
            PodOwner::Follow(via, name) => (via, name),
        };
        let key = (via, pod.namespace.clone(), name);
        if let Some(owner) = cache.controllers.get(&key) {
            return Ok(Some(owner.clone()));
        }
        if !is_object_name(&key.2) {
            return Ok(None);
        }
        let Some(object) = self.client.get::<Object>(&via.path(&key.1, &key.2))? else {
            return Ok(None);
        };
        let owner = followed_owner(via, &key.2, &object);
        cache.controllers.insert(key, owner.clone());
        Ok(Some(owner))
    }
}

impl OwnerResolver for ApiOwners {
    fn owner(&self, pod: &PodContainer) -> Option<Owner> {
        let mut cache = self.lock();
        let key = (
            pod.namespace.clone(),
            pod.pod_name.clone(),
            pod.pod_uid.clone(),
        );
        if let Some(known) = cache.pods.get(&key) {
            return known.clone();
        }
        if cache.failed_at.is_some_and(|t| t.elapsed() < RETRY_AFTER) {
            cache.stats.skipped += 1;
            return None;
        }
        match self.lookup(&mut cache, pod) {
            Ok(owner) => {
                cache.failed_at = None;
                cache.pods.insert(key, owner.clone());
                owner
            }
            Err(e) => {
                cache.stats.failures += 1;
                cache.failed_at = Some(Instant::now());
                if !std::mem::replace(&mut cache.warned, true) {
                    eprintln!(
                        "fingerprint: the Kubernetes API failed; pod owners come from pod \
                         names (owner_source \"pod-name\") until it answers (asked again \
                         every {}s; said once): {e}",
                        RETRY_AFTER.as_secs()
                    );
                }
                None
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn object(json: serde_json::Value) -> Object {
        serde_json::from_value(json).unwrap()
    }

    fn owned_by(api_version: &str, kind: &str, name: &str) -> Object {
        object(serde_json::json!({
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {
                "name": "p",
                "uid": "u-1",
                "ownerReferences": [
                    {"apiVersion": "v1", "kind": "ConfigMap", "name": "not-the-controller", "uid": "x"},
                    {"apiVersion": api_version, "kind": kind, "name": name, "uid": "c",
                     "controller": true, "blockOwnerDeletion": true}
                ]
            }
        }))
    }

    fn pod(uid: Option<&str>) -> PodContainer {
        PodContainer {
            namespace: "default".into(),
            pod_name: "web-0".into(),
            pod_uid: uid.map(String::from),
            container: "server".into(),
        }
    }

    #[test]
    fn the_controller_reference_names_the_owner() {
        let p = pod(Some("u-1"));
        assert_eq!(
            pod_owner(&p, &owned_by("apps/v1", "StatefulSet", "db")),
            PodOwner::Owner(api_owner("StatefulSet", "db"))
        );
        assert_eq!(
            pod_owner(&p, &owned_by("apps/v1", "ReplicaSet", "web-6b474476c4")),
            PodOwner::Follow(Intermediate::ReplicaSet, "web-6b474476c4".into())
        );
        assert_eq!(
            pod_owner(&p, &owned_by("batch/v1", "Job", "backup-28391234")),
            PodOwner::Follow(Intermediate::Job, "backup-28391234".into())
        );
        // A custom resource of the same kind is no ReplicaSet to follow.
        assert_eq!(
            pod_owner(&p, &owned_by("example.com/v1", "ReplicaSet", "r")),
            PodOwner::Owner(api_owner("ReplicaSet", "r"))
        );
        // Mirror pods are owned by their Node; no controller: the pod itself.
        assert_eq!(
            pod_owner(&p, &owned_by("v1", "Node", "node-a")),
            PodOwner::Owner(api_owner("Pod", "web-0"))
        );
        let bare = object(serde_json::json!({"metadata": {"uid": "u-1"}}));
        assert_eq!(
            pod_owner(&p, &bare),
            PodOwner::Owner(api_owner("Pod", "web-0"))
        );
    }

    #[test]
    fn a_pod_of_another_uid_is_not_this_containers() {
        let api = owned_by("apps/v1", "StatefulSet", "db");
        assert_eq!(pod_owner(&pod(Some("u-2")), &api), PodOwner::OtherPod);
        // Unknown on the container's side: the name is all there is to go by.
        assert!(matches!(pod_owner(&pod(None), &api), PodOwner::Owner(_)));
        let mirror = object(serde_json::json!({"metadata": {
            "uid": "mirror-uid",
            "annotations": {"kubernetes.io/config.mirror": "static-hash"}
        }}));
        assert!(matches!(
            pod_owner(&pod(Some("static-hash")), &mirror),
            PodOwner::Owner(_)
        ));
    }

    #[test]
    fn replicasets_and_jobs_lead_to_their_controller_or_are_the_owner() {
        let rs = owned_by("apps/v1", "Deployment", "web");
        assert_eq!(
            followed_owner(Intermediate::ReplicaSet, "web-6b474476c4", &rs),
            api_owner("Deployment", "web")
        );
        let lone = object(serde_json::json!({"metadata": {"uid": "j"}}));
        assert_eq!(
            followed_owner(Intermediate::Job, "migrate", &lone),
            api_owner("Job", "migrate")
        );
        assert_eq!(
            Intermediate::Job.path("batch-ns", "migrate"),
            "/apis/batch/v1/namespaces/batch-ns/jobs/migrate"
        );
    }

    #[test]
    fn only_object_names_go_into_request_paths() {
        assert!(is_object_name("web-6b474476c4-zq2x9"));
        assert!(is_object_name("kube-system"));
        for bad in ["", "..", "a/b", "a?b", "Web", "-a", "a b", &"a".repeat(254)] {
            assert!(!is_object_name(bad), "{bad:?}");
        }
    }

    #[test]
    fn in_cluster_url_comes_from_the_service_environment() {
        assert_eq!(
            in_cluster_url(Some("10.96.0.1"), Some("443")).as_deref(),
            Some("https://10.96.0.1:443")
        );
        assert_eq!(
            in_cluster_url(Some("fd00::1"), Some("6443")).as_deref(),
            Some("https://[fd00::1]:6443")
        );
        assert_eq!(in_cluster_url(None, Some("443")), None);
        assert_eq!(in_cluster_url(Some("10.96.0.1"), Some("")), None);
    }

    #[test]
    fn api_choice_parses_and_refuses_clear_text() {
        assert_eq!("auto".parse(), Ok(ApiChoice::Auto));
        assert_eq!("off".parse(), Ok(ApiChoice::Off));
        assert_eq!(
            "https://10.0.0.1:6443/".parse(),
            Ok(ApiChoice::Url("https://10.0.0.1:6443".into()))
        );
        assert!("http://10.0.0.1:8080".parse::<ApiChoice>().is_err());
        assert!("https://".parse::<ApiChoice>().is_err());
    }

    #[test]
    fn unreadable_credentials_name_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let token = dir.path().join("token");
        let err = ApiOwners::connect("https://127.0.0.1:1", &token, &token).unwrap_err();
        assert!(err.to_string().contains(&*token.to_string_lossy()), "{err}");
        std::fs::write(&token, "abc\n").unwrap();
        let ca = dir.path().join("ca.crt");
        std::fs::write(&ca, "not a certificate").unwrap();
        let err = ApiOwners::connect("https://127.0.0.1:1", &token, &ca).unwrap_err();
        assert!(matches!(err, ApiError::Ca { .. }), "{err}");
        assert!(err.to_string().contains("--kube-ca-file"), "{err}");
    }
}
