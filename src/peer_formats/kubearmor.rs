//! A KubeArmorPolicy (security.kubearmor.com/v1) for one workload.
//!
//! `process.matchPaths` lists the allowed executables with `action: Allow`; as soon as
//! a container has an Allow policy KubeArmor treats its policies as an allowlist, and
//! what happens to other execs is the namespace's default file posture (annotation
//! `kubearmor-file-posture`: block or audit), not something a policy can say, so the
//! profile's mode is always reported as lost. The container is chosen with KubeArmor's
//! `kubearmor.io/container.name: "[name]"` selector label.

use std::collections::BTreeMap;

use serde::Serialize;

use super::{yaml_bytes, Loss, Policy};

/// The longest `matchPaths[].path` the CRD accepts (`maxLength`).
const MAX_PATH_CHARS: usize = 200;
/// KubeArmor's selector label for containers of a pod.
const CONTAINER_LABEL: &str = "kubearmor.io/container.name";

/// Why KubeArmor cannot list `path`, if it cannot.
pub(super) fn refuses(path: &str) -> Option<String> {
    let chars = path.chars().count();
    (chars > MAX_PATH_CHARS).then(|| {
        format!(
            "{chars} characters long, more than the {MAX_PATH_CHARS} KubeArmor's CRD allows in matchPaths"
        )
    })
}

#[derive(Serialize)]
struct Spec {
    selector: Selector,
    process: Process,
    action: &'static str,
    message: String,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Selector {
    match_labels: BTreeMap<String, String>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Process {
    match_paths: Vec<MatchPath>,
}

#[derive(Serialize)]
struct MatchPath {
    path: String,
}

pub(super) fn render(
    policy: &Policy<'_>,
    losses: &mut Vec<Loss>,
) -> Result<Vec<u8>, serde_yaml_ng::Error> {
    let selector = policy.selector;
    let mut match_labels = selector.match_labels.clone();
    match_labels.insert(
        CONTAINER_LABEL.to_owned(),
        format!("[{}]", selector.container),
    );
    if !selector.match_expressions.is_empty() {
        losses.push(Loss::Selector(format!(
            "the workload's label selector has {} matchExpressions, which KubeArmor does not \
             take; the policy selects by matchLabels alone, so it may apply to more pods",
            selector.match_expressions.len()
        )));
    }
    losses.push(Loss::Mode(format!(
        "{}: KubeArmor applies the namespace's default file posture (annotation \
         kubearmor-file-posture: block or audit) to execs outside an Allow list",
        policy.mode
    )));
    let document = policy.kubernetes_object(
        "security.kubearmor.com/v1",
        "KubeArmorPolicy",
        Spec {
            selector: Selector { match_labels },
            process: Process {
                match_paths: policy
                    .paths
                    .iter()
                    .map(|path| MatchPath { path: path.clone() })
                    .collect(),
            },
            action: "Allow",
            message: policy.message(),
        },
    );
    yaml_bytes(policy, &document)
}
