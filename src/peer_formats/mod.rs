//! Profiles as policies of other tools: `export --format tetragon|kubearmor|falco`.
//!
//! Many users already run Tetragon, KubeArmor or Falco; a learned profile they can hand
//! to those tools is the fastest way in. Each Kubernetes workload's profile becomes one
//! document for that tool (a TracingPolicyNamespaced, a KubeArmorPolicy, a Falco rules
//! file) that allows, or alerts on everything but, the profile's executables in the
//! workload's pods ([`selector`]).
//!
//! The formats say less than a profile: no `*` patterns, no content digests, no path
//! that is not UTF-8 (YAML holds text), no workload outside Kubernetes (they select
//! pods), and each has limits of its own. What a policy cannot say is never dropped
//! silently: every [`Loss`] is listed per workload, with what it does to the policy
//! (not allowed there, or allowed by path only). Leaving an entry out makes a policy
//! stricter, never looser; only a lost digest widens an entry (to any content).

mod falco;
mod kubearmor;
pub mod selector;
mod tetragon;

use std::collections::BTreeMap;
use std::fmt;

use serde::Serialize;
use sha2::{Digest as _, Sha256};

use crate::profile::{escape_bytes, file_name_with_suffix, ExecPath, Mode, Pattern, Profile};
use crate::profile::{ProfileSet, WorkloadMatch};
use crate::workload::kubeapi::{is_object_name, ApiError, ApiReader};
use crate::workload::WorkloadId;
use selector::WorkloadSelector;

/// The tools whose policies `export --format` writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum PeerFormat {
    /// A Tetragon TracingPolicyNamespaced (cilium.io/v1alpha1).
    Tetragon,
    /// A KubeArmorPolicy (security.kubearmor.com/v1).
    KubeArmor,
    /// A Falco rules file: a list and a rule.
    Falco,
}

impl PeerFormat {
    pub fn name(self) -> &'static str {
        match self {
            PeerFormat::Tetragon => "tetragon",
            PeerFormat::KubeArmor => "kubearmor",
            PeerFormat::Falco => "falco",
        }
    }

    fn tool(self) -> &'static str {
        match self {
            PeerFormat::Tetragon => "Tetragon",
            PeerFormat::KubeArmor => "KubeArmor",
            PeerFormat::Falco => "Falco",
        }
    }

    /// The end of each file name: `<escaped workload name>.tetragon.yaml`.
    pub fn file_suffix(self) -> String {
        format!(".{}.yaml", self.name())
    }

    /// Why this format cannot hold `path` (valid UTF-8) exactly, if it cannot.
    fn refuses(self, path: &str) -> Option<String> {
        match self {
            PeerFormat::Tetragon => None,
            PeerFormat::KubeArmor => kubearmor::refuses(path),
            PeerFormat::Falco => falco::refuses(path),
        }
    }
}

/// Something a policy cannot say that its profile says, and what that does.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Loss {
    /// A `*` pattern: the formats match exact paths. Not allowed by the policy.
    Pattern(Pattern),
    /// Content digests: the formats check paths only. Allowed by path, any content.
    Digests(ExecPath),
    /// A path that is not UTF-8: YAML holds text only. Not allowed by the policy.
    NotUtf8(ExecPath),
    /// A path the format has no way to write (the reason). Not allowed by the policy.
    Refused(ExecPath, String),
    /// The pods are not selected as the profile's workload (why, and the effect).
    Selector(String),
    /// The profile's mode is not what the policy does (what it does instead).
    Mode(String),
}

impl fmt::Display for Loss {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // "Not allowed": refused by Tetragon and KubeArmor, alerted on by Falco.
        match self {
            Loss::Pattern(pattern) => write!(
                f,
                "pattern {pattern}: only exact paths can be listed; left out, so what only \
                 it allowed is not allowed"
            ),
            Loss::Digests(path) => write!(
                f,
                "sha256 of {path}: contents cannot be checked; allowed by path only (any content)"
            ),
            Loss::NotUtf8(path) => write!(
                f,
                "path {path}: not UTF-8, and the policy is text; left out (not allowed)"
            ),
            Loss::Refused(path, why) => write!(f, "path {path}: {why}; left out (not allowed)"),
            Loss::Selector(what) => write!(f, "selector: {what}"),
            Loss::Mode(what) => write!(f, "mode: {what}"),
        }
    }
}

/// A profile that has no policy in the format, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Skipped {
    pub workload: String,
    pub reason: String,
}

/// The policies of one format for a set of profiles.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerExport {
    pub format: PeerFormat,
    /// File name -> bytes, ready for [`crate::profile::write_file_set`].
    pub files: BTreeMap<String, Vec<u8>>,
    /// Per workload (with a policy), what its policy loses.
    pub losses: BTreeMap<String, Vec<Loss>>,
    pub skipped: Vec<Skipped>,
}

impl fmt::Display for PeerExport {
    /// What was lost or left out, one line each, for stderr; nothing when nothing was.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let format = self.format.name();
        for (workload, losses) in self.losses.iter().filter(|(_, l)| !l.is_empty()) {
            let workload = escape_bytes(workload.as_bytes());
            writeln!(
                f,
                "note: the {format} policy of {workload} cannot say {} thing(s) of its profile:",
                losses.len()
            )?;
            for loss in losses {
                writeln!(f, "  {loss}")?;
            }
        }
        for skipped in &self.skipped {
            let workload = escape_bytes(skipped.workload.as_bytes());
            writeln!(
                f,
                "note: {workload} has no {format} policy: {}",
                skipped.reason
            )?;
        }
        Ok(())
    }
}

/// Where the selectors' labels come from: an API, or why there is none.
#[derive(Debug)]
pub enum Labels<'a> {
    Api(&'a ApiReader),
    Unavailable(String),
}

impl<'a> Labels<'a> {
    /// From what [`ApiReader::open`] gave; the reason says how to get an API.
    pub fn from_opened(opened: &'a Result<Option<ApiReader>, ApiError>) -> Labels<'a> {
        match opened {
            Ok(Some(api)) => Labels::Api(api),
            Ok(None) => Labels::Unavailable(
                "no Kubernetes API to ask (--kube-api is off, or auto outside a pod; pass \
                 --kube-api https://HOST:PORT with --kube-token-file and --kube-ca-file)"
                    .to_owned(),
            ),
            Err(e) => Labels::Unavailable(format!("the Kubernetes API cannot be used: {e}")),
        }
    }
}

/// The policies of `format` for every profile of `set` that the format can select.
/// Each owner is asked for once, and after the API fails once it is not asked again
/// (one timeout, not one per workload).
pub fn export(
    set: &ProfileSet,
    format: PeerFormat,
    mut labels: Labels<'_>,
) -> Result<PeerExport, serde_yaml_ng::Error> {
    let mut export = PeerExport {
        format,
        files: BTreeMap::new(),
        losses: BTreeMap::new(),
        skipped: Vec::new(),
    };
    let mut owners: BTreeMap<(String, String, String), WorkloadSelector> = BTreeMap::new();
    for profile in set {
        let workload = match kubernetes_workload(profile, format) {
            Ok(workload) => workload,
            Err(reason) => {
                export.skipped.push(Skipped {
                    workload: profile.name.clone(),
                    reason,
                });
                continue;
            }
        };
        let Allowlist { paths, mut losses } = Allowlist::of(profile, format);
        if paths.is_empty() && format == PeerFormat::KubeArmor {
            export.skipped.push(Skipped {
                workload: profile.name.clone(),
                reason: "it allows no executable KubeArmor can list, and an Allow policy \
                         must list something"
                    .to_owned(),
            });
            continue;
        }
        let (namespace, kind, owner, container) = workload;
        // The containers of one owner share its pods: one request for all of them.
        let key = (namespace.to_owned(), kind.to_owned(), owner.to_owned());
        let selector = match owners.get(&key) {
            Some(known) => WorkloadSelector {
                container: container.to_owned(),
                ..known.clone()
            },
            None => {
                let fresh = selector::resolve(&mut labels, namespace, kind, owner, container);
                owners.insert(key, fresh.clone());
                fresh
            }
        };
        if let selector::LabelSource::Placeholder(_) = selector.source {
            losses.push(Loss::Selector(selector.describe()));
        }
        let policy = Policy {
            workload: &profile.name,
            mode: profile.mode,
            selector: &selector,
            paths: &paths,
        };
        let bytes = match format {
            PeerFormat::Tetragon => tetragon::render(&policy)?,
            PeerFormat::KubeArmor => kubearmor::render(&policy, &mut losses)?,
            PeerFormat::Falco => falco::render(&policy, &mut losses)?,
        };
        let file = file_name_with_suffix(&profile.name, &format.file_suffix());
        export.files.insert(file, bytes);
        export.losses.insert(profile.name.clone(), losses);
    }
    Ok(export)
}

/// `(namespace, owner kind, owner name, container)` of a profile's Kubernetes
/// workload, or why the format cannot select its processes.
fn kubernetes_workload(
    profile: &Profile,
    format: PeerFormat,
) -> Result<(&str, &str, &str, &str), String> {
    let tool = format.tool();
    let outside = |what: &str| {
        format!(
            "{what}; the {tool} policy selects pods by namespace, labels and container \
             name, which name none of its processes"
        )
    };
    let id = match &profile.matcher {
        WorkloadMatch::Exact(id) => id,
        WorkloadMatch::CgroupPattern(_) => return Err(outside("it matches cgroups by pattern")),
    };
    match id {
        WorkloadId::KubernetesWorkload {
            namespace,
            owner_kind,
            owner_name,
            container,
            ..
        } => {
            for (what, name) in [("namespace", namespace), ("container", container)] {
                if !is_object_name(name) {
                    return Err(format!("its {what} `{name}` is not a Kubernetes name"));
                }
            }
            Ok((namespace, owner_kind, owner_name, container))
        }
        WorkloadId::KubernetesContainer { .. } => Err(format!(
            "a pod's container known only by its cgroup path (no namespace, owner or \
             container name): learn with the container runtime's metadata \
             (--containerd-state) so that it is named as a Kubernetes workload; {tool} \
             selects pods by namespace and labels"
        )),
        WorkloadId::SystemdUnit { .. } => Err(outside("a systemd unit outside Kubernetes")),
        WorkloadId::Container { .. } | WorkloadId::EngineContainer { .. } => {
            Err(outside("a container outside Kubernetes"))
        }
        WorkloadId::Cgroup { .. } => Err(outside("a cgroup outside Kubernetes")),
    }
}

/// What one policy says: the workload, its pods and the paths it allows.
struct Policy<'a> {
    workload: &'a str,
    mode: Mode,
    selector: &'a WorkloadSelector,
    /// Sorted, UTF-8, each one the format can write.
    paths: &'a [String],
}

impl Policy<'_> {
    /// A Kubernetes object name for the policy: readable, and unique per workload by a
    /// hash of the full workload name (two workloads can sanitise to the same text).
    fn object_name(&self) -> String {
        let s = self.selector;
        let readable = format!(
            "fingerprint-{}-{}-{}",
            s.owner_kind, s.owner_name, s.container
        )
        .to_ascii_lowercase()
        .replace(
            |c: char| !c.is_ascii_alphanumeric() && c != '-' && c != '.',
            "-",
        );
        // Room for `-` and the hash within the 253 bytes of a name.
        let readable = readable
            .get(..240)
            .unwrap_or(&readable)
            .trim_end_matches(['-', '.']);
        format!("{readable}-{}", self.hash())
    }

    /// 8 hex digits of SHA-256 of the workload name.
    fn hash(&self) -> String {
        let digest = Sha256::digest(self.workload.as_bytes());
        digest[..4].iter().map(|b| format!("{b:02x}")).collect()
    }

    /// What the tool says when the policy matches an exec.
    fn message(&self) -> String {
        format!("exec outside the fingerprint profile of {}", self.workload)
    }

    /// The policy as a namespaced Kubernetes object in the workload's namespace, with
    /// annotations saying where it came from.
    fn kubernetes_object<S: Serialize>(
        &self,
        api_version: &'static str,
        kind: &'static str,
        spec: S,
    ) -> KubernetesObject<'_, S> {
        KubernetesObject {
            api_version,
            kind,
            metadata: ObjectMeta {
                name: self.object_name(),
                namespace: &self.selector.namespace,
                annotations: BTreeMap::from([
                    ("fingerprint.io/workload", self.workload.to_owned()),
                    ("fingerprint.io/mode", self.mode.as_str().to_owned()),
                    ("fingerprint.io/selector", self.selector.describe()),
                ]),
            },
            spec,
        }
    }
}

/// A namespaced Kubernetes object: Tetragon's and KubeArmor's policies.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct KubernetesObject<'a, S> {
    api_version: &'static str,
    kind: &'static str,
    metadata: ObjectMeta<'a>,
    spec: S,
}

#[derive(Serialize)]
struct ObjectMeta<'a> {
    name: String,
    namespace: &'a str,
    annotations: BTreeMap<&'static str, String>,
}

/// The paths of a profile that a format can list, and what it cannot.
struct Allowlist {
    paths: Vec<String>,
    losses: Vec<Loss>,
}

impl Allowlist {
    fn of(profile: &Profile, format: PeerFormat) -> Allowlist {
        let mut allowed = Allowlist {
            paths: Vec::new(),
            losses: Vec::new(),
        };
        for exec in &profile.executables {
            let Ok(text) = std::str::from_utf8(exec.as_bytes()) else {
                allowed.losses.push(Loss::NotUtf8(exec.clone()));
                continue;
            };
            if let Some(why) = format.refuses(text) {
                allowed.losses.push(Loss::Refused(exec.clone(), why));
                continue;
            }
            allowed.paths.push(text.to_owned());
            if profile.content.contains_key(exec) {
                allowed.losses.push(Loss::Digests(exec.clone()));
            }
        }
        let patterns = profile.patterns.iter().cloned().map(Loss::Pattern);
        allowed.losses.extend(patterns);
        allowed
    }
}

/// YAML bytes of a document, with a header comment naming the source.
fn yaml_bytes<T: Serialize>(
    policy: &Policy<'_>,
    document: &T,
) -> Result<Vec<u8>, serde_yaml_ng::Error> {
    let body = serde_yaml_ng::to_string(document)?;
    let workload = escape_bytes(policy.workload.as_bytes());
    Ok(format!(
        "# Written by `fingerprint export` from the profile of {workload}.\n\
         # See docs/export-formats.md for what this format cannot express.\n{body}"
    )
    .into_bytes())
}

#[cfg(test)]
mod tests;
