//! Which pods a peer policy applies to: the workload's namespace, container name and
//! pod labels.
//!
//! A profile names its Kubernetes workload (`namespace/OwnerKind/owner/container`) but
//! not the labels of its pods, and Tetragon, KubeArmor and Falco select pods by labels.
//! The owner's label selector (`spec.selector` of a Deployment, StatefulSet, DaemonSet,
//! ReplicaSet or Job; a CronJob's job template's; a bare pod's own labels) is the fact,
//! and only the Kubernetes API has it. Without an answer the policy gets a placeholder
//! label that no pod carries, so it selects nothing (never the wrong pods) until a
//! person writes the labels in; the reason is kept and said.

use std::collections::BTreeMap;

use serde_json::Value;

use super::Labels;
use crate::workload::kubeapi::is_object_name;

/// The label a placeholder selector requires; no pod carries it.
pub const PLACEHOLDER_LABEL: &str = "fingerprint.placeholder/replace-with-workload-labels";
pub const PLACEHOLDER_VALUE: &str = "unknown";

/// One `matchExpressions` requirement of a Kubernetes label selector.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LabelRequirement {
    pub key: String,
    /// `In`, `NotIn`, `Exists` or `DoesNotExist`.
    pub operator: String,
    pub values: Vec<String>,
}

/// Where a selector's labels came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LabelSource {
    /// The owner's label selector, read from the Kubernetes API.
    KubernetesApi,
    /// Unknown; the string says why. The selector requires [`PLACEHOLDER_LABEL`].
    Placeholder(String),
}

/// The pods of one workload, and the container within them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WorkloadSelector {
    pub namespace: String,
    pub owner_kind: String,
    pub owner_name: String,
    pub container: String,
    pub match_labels: BTreeMap<String, String>,
    pub match_expressions: Vec<LabelRequirement>,
    pub source: LabelSource,
}

impl WorkloadSelector {
    /// A selector that matches no pod, with the reason the labels are unknown.
    pub fn placeholder(
        namespace: &str,
        owner_kind: &str,
        owner_name: &str,
        container: &str,
        reason: String,
    ) -> WorkloadSelector {
        WorkloadSelector {
            namespace: namespace.to_owned(),
            owner_kind: owner_kind.to_owned(),
            owner_name: owner_name.to_owned(),
            container: container.to_owned(),
            match_labels: BTreeMap::from([(
                PLACEHOLDER_LABEL.to_owned(),
                PLACEHOLDER_VALUE.to_owned(),
            )]),
            match_expressions: Vec::new(),
            source: LabelSource::Placeholder(reason),
        }
    }

    /// One line for the policy's annotation and for stderr.
    pub fn describe(&self) -> String {
        match &self.source {
            LabelSource::KubernetesApi => format!(
                "pod labels of {} {}/{} from the Kubernetes API",
                self.owner_kind, self.namespace, self.owner_name
            ),
            LabelSource::Placeholder(reason) => format!(
                "PLACEHOLDER: {reason}; the policy selects no pod until the label \
                 {PLACEHOLDER_LABEL} is replaced with the pod labels of {} {}/{}",
                self.owner_kind, self.namespace, self.owner_name
            ),
        }
    }
}

/// The API paths to ask, in order, for an owner's label selector.
fn owner_paths(namespace: &str, kind: &str, name: &str) -> Vec<String> {
    let apps = |plural: &str| format!("/apis/apps/v1/namespaces/{namespace}/{plural}/{name}");
    let batch = |plural: &str| format!("/apis/batch/v1/namespaces/{namespace}/{plural}/{name}");
    match kind {
        "Deployment" => vec![apps("deployments")],
        "StatefulSet" => vec![apps("statefulsets")],
        "DaemonSet" => vec![apps("daemonsets")],
        "ReplicaSet" => vec![apps("replicasets")],
        "Job" => vec![batch("jobs")],
        "CronJob" => vec![batch("cronjobs")],
        // Pod names cannot tell these two apart; the API can.
        "DaemonSetOrJob" => vec![apps("daemonsets"), batch("jobs")],
        "Pod" => vec![format!("/api/v1/namespaces/{namespace}/pods/{name}")],
        _ => Vec::new(),
    }
}

/// The label selector in an owner object: `(matchLabels, matchExpressions)`.
///
/// A Job's own `spec.selector` holds its controller-uid, which a new Job of the same
/// CronJob does not share; its pod template's labels are what its pods carry by name
/// of the Job, so a Job and a CronJob are selected by their templates' labels. A bare
/// pod is selected by its own labels.
pub fn labels_of_owner(
    kind: &str,
    object: &Value,
) -> Option<(BTreeMap<String, String>, Vec<LabelRequirement>)> {
    let selector = match kind {
        "Pod" => return Some((string_map(&object["metadata"]["labels"]), Vec::new())),
        "Job" => return Some((template_labels(&object["spec"]["template"]), Vec::new())),
        "CronJob" => {
            let template = &object["spec"]["jobTemplate"]["spec"]["template"];
            return Some((template_labels(template), Vec::new()));
        }
        _ => &object["spec"]["selector"],
    };
    let labels = string_map(&selector["matchLabels"]);
    let expressions: Vec<LabelRequirement> = selector["matchExpressions"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|requirement| {
            Some(LabelRequirement {
                key: requirement["key"].as_str()?.to_owned(),
                operator: requirement["operator"].as_str()?.to_owned(),
                values: requirement["values"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(|v| v.as_str().map(str::to_owned))
                    .collect(),
            })
        })
        .collect();
    (!labels.is_empty() || !expressions.is_empty()).then_some((labels, expressions))
}

fn template_labels(template: &Value) -> BTreeMap<String, String> {
    let mut labels = string_map(&template["metadata"]["labels"]);
    // Set by the Job controller per Job: a selector holding them would miss the next Job.
    labels.retain(|key, _| !is_per_job_label(key));
    labels
}

fn is_per_job_label(key: &str) -> bool {
    matches!(
        key,
        "controller-uid"
            | "batch.kubernetes.io/controller-uid"
            | "job-name"
            | "batch.kubernetes.io/job-name"
    )
}

fn string_map(value: &Value) -> BTreeMap<String, String> {
    value
        .as_object()
        .into_iter()
        .flatten()
        .filter_map(|(k, v)| Some((k.clone(), v.as_str()?.to_owned())))
        .collect()
}

/// The selector of a workload: from the API when it answers, else a placeholder. An
/// API that fails is replaced in `labels` by the reason, so it is not asked again.
pub fn resolve(
    labels: &mut Labels<'_>,
    namespace: &str,
    owner_kind: &str,
    owner_name: &str,
    container: &str,
) -> WorkloadSelector {
    let placeholder = |reason: String| {
        WorkloadSelector::placeholder(namespace, owner_kind, owner_name, container, reason)
    };
    let api = match labels {
        Labels::Api(api) => *api,
        Labels::Unavailable(why) => return placeholder(why.clone()),
    };
    if !is_object_name(namespace) || !is_object_name(owner_name) {
        return placeholder(format!(
            "`{namespace}/{owner_name}` is not a Kubernetes object name, so it was not asked for"
        ));
    }
    let paths = owner_paths(namespace, owner_kind, owner_name);
    if paths.is_empty() {
        return placeholder(format!(
            "owner kind {owner_kind} has no label selector this version knows how to read"
        ));
    }
    for path in &paths {
        let object = match api.get_json(path) {
            Ok(Some(object)) => object,
            Ok(None) => continue,
            Err(e) => {
                let why = format!(
                    "the Kubernetes API failed ({e}; export needs get on pods, deployments, \
                     statefulsets, daemonsets, replicasets, jobs and cronjobs)"
                );
                *labels = Labels::Unavailable(format!("{why}; not asked again in this export"));
                return placeholder(why);
            }
        };
        let kind = object["kind"].as_str().unwrap_or(owner_kind);
        return match labels_of_owner(kind, &object) {
            Some((match_labels, match_expressions)) => WorkloadSelector {
                namespace: namespace.to_owned(),
                owner_kind: owner_kind.to_owned(),
                owner_name: owner_name.to_owned(),
                container: container.to_owned(),
                match_labels,
                match_expressions,
                source: LabelSource::KubernetesApi,
            },
            None => placeholder(format!("{path} has no label selector")),
        };
    }
    placeholder(format!(
        "the Kubernetes API at {} has no {owner_kind} {namespace}/{owner_name}",
        api.url()
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn controllers_are_selected_by_their_label_selector() {
        let deployment = json!({"kind": "Deployment", "spec": {"selector": {
            "matchLabels": {"app": "web"},
            "matchExpressions": [{"key": "tier", "operator": "In", "values": ["front"]}]
        }}});
        let (labels, expressions) = labels_of_owner("Deployment", &deployment).unwrap();
        assert_eq!(labels, BTreeMap::from([("app".into(), "web".into())]));
        assert_eq!(
            expressions,
            vec![LabelRequirement {
                key: "tier".into(),
                operator: "In".into(),
                values: vec!["front".into()]
            }]
        );
        // An empty selector selects every pod: never taken as a selector.
        assert_eq!(
            labels_of_owner("DaemonSet", &json!({"spec": {"selector": {}}})),
            None
        );
    }

    #[test]
    fn jobs_are_selected_by_template_labels_without_their_per_job_labels() {
        let cronjob = json!({"kind": "CronJob", "spec": {"jobTemplate": {"spec": {"template":
            {"metadata": {"labels": {"app": "backup", "job-name": "backup-1",
             "batch.kubernetes.io/controller-uid": "x"}}}}}}});
        let (labels, _) = labels_of_owner("CronJob", &cronjob).unwrap();
        assert_eq!(labels, BTreeMap::from([("app".into(), "backup".into())]));
        let pod = json!({"kind": "Pod", "metadata": {"labels": {"run": "debug"}}});
        assert_eq!(labels_of_owner("Pod", &pod).unwrap().0["run"], "debug");
    }

    #[test]
    fn without_an_api_the_selector_is_a_placeholder_that_says_why() {
        let mut no_api = Labels::Unavailable("no API (--kube-api off)".into());
        let selector = resolve(&mut no_api, "default", "Deployment", "web", "server");
        assert_eq!(selector.match_labels[PLACEHOLDER_LABEL], PLACEHOLDER_VALUE);
        let said = selector.describe();
        assert!(
            said.starts_with("PLACEHOLDER: no API (--kube-api off)"),
            "{said}"
        );
        assert!(said.contains("Deployment default/web"), "{said}");
    }

    #[test]
    fn daemonset_or_job_asks_for_both() {
        assert_eq!(owner_paths("ns", "DaemonSetOrJob", "agent").len(), 2);
        assert!(owner_paths("ns", "Rollout", "r").is_empty());
    }
}
