//! A Tetragon TracingPolicyNamespaced (cilium.io/v1alpha1) for one workload.
//!
//! The hook is the kprobe on `security_bprm_creds_for_exec`, whose first argument, a
//! `linux_binprm`, is the file being executed: `matchArgs` with `NotEqual` and the
//! allowed paths matches an exec of anything else (Tetragon ANDs the values of
//! `NotEqual`). `matchBinaries` would not do: it names the binary of the process that
//! calls exec, which at this hook is still the old image. In `enforce` mode the action
//! is `Override` with -EPERM (the exec fails, as with fingerprint's LSM); in `audit`
//! mode it is `Post` (an event, nothing refused). Pods are chosen by `podSelector` and
//! the container by `containerSelector` on its name.

use std::collections::BTreeMap;

use serde::Serialize;

use super::{yaml_bytes, Policy};
use crate::profile::Mode;

/// -EPERM, what fingerprint's own LSM returns for a refused exec.
const EPERM: i32 = -1;

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Spec {
    pod_selector: LabelSelector,
    container_selector: LabelSelector,
    kprobes: Vec<Kprobe>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct LabelSelector {
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    match_labels: BTreeMap<String, String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    match_expressions: Vec<Requirement>,
}

#[derive(Serialize)]
struct Requirement {
    key: String,
    operator: String,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    values: Vec<String>,
}

#[derive(Serialize)]
struct Kprobe {
    call: &'static str,
    syscall: bool,
    message: String,
    args: Vec<Arg>,
    selectors: Vec<Selector>,
}

#[derive(Serialize)]
struct Arg {
    index: u32,
    #[serde(rename = "type")]
    kind: &'static str,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Selector {
    #[serde(skip_serializing_if = "Vec::is_empty")]
    match_args: Vec<MatchArg>,
    match_actions: Vec<Action>,
}

#[derive(Serialize)]
struct MatchArg {
    index: u32,
    operator: &'static str,
    values: Vec<String>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Action {
    action: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    arg_error: Option<i32>,
}

pub(super) fn render(policy: &Policy<'_>) -> Result<Vec<u8>, serde_yaml_ng::Error> {
    let selector = policy.selector;
    let pod_selector = LabelSelector {
        match_labels: selector.match_labels.clone(),
        match_expressions: selector
            .match_expressions
            .iter()
            .map(|r| Requirement {
                key: r.key.clone(),
                operator: r.operator.clone(),
                values: r.values.clone(),
            })
            .collect(),
    };
    let container_selector = LabelSelector {
        match_labels: BTreeMap::new(),
        match_expressions: vec![Requirement {
            key: "name".to_owned(),
            operator: "In".to_owned(),
            values: vec![selector.container.clone()],
        }],
    };
    // An empty allowlist refuses every exec: no matchArgs at all, since NotEqual with
    // no values is not a list of nothing to Tetragon.
    let match_args = match policy.paths.is_empty() {
        true => Vec::new(),
        false => vec![MatchArg {
            index: 0,
            operator: "NotEqual",
            values: policy.paths.to_vec(),
        }],
    };
    let match_actions = match policy.mode {
        Mode::Enforce => vec![Action {
            action: "Override",
            arg_error: Some(EPERM),
        }],
        Mode::Audit => vec![Action {
            action: "Post",
            arg_error: None,
        }],
    };
    let document = policy.kubernetes_object(
        "cilium.io/v1alpha1",
        "TracingPolicyNamespaced",
        Spec {
            pod_selector,
            container_selector,
            kprobes: vec![Kprobe {
                call: "security_bprm_creds_for_exec",
                syscall: false,
                message: policy.message(),
                args: vec![Arg {
                    index: 0,
                    kind: "linux_binprm",
                }],
                selectors: vec![Selector {
                    match_args,
                    match_actions,
                }],
            }],
        },
    );
    yaml_bytes(policy, &document)
}
