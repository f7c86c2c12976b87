//! A Falco rules file for one workload: a list of the allowed executables and a rule
//! that fires on any other exec in the workload's containers.
//!
//! The condition is `spawned_process and container and <the workload's pods> and not
//! proc.exepath in (<list>)`; `spawned_process` and `container` are macros of Falco's
//! default rules, which must be loaded first. Falco only alerts, so an `enforce`
//! profile is reported as lost. Falco pastes a list's items into the condition as text,
//! so every item and value is written in Falco's condition syntax here: bare when it
//! holds only safe characters, else double-quoted with `\` escapes.

use serde::Serialize;

use super::selector::LabelRequirement;
use super::{yaml_bytes, Loss, Policy};
use crate::profile::Mode;

/// Why Falco cannot hold `path`, if it cannot.
pub(super) fn refuses(path: &str) -> Option<String> {
    // Falco's lexer ends a quoted string at a quote not preceded by `\`, so the escaped
    // backslash that would end this string would escape its closing quote instead.
    path.ends_with('\\')
        .then(|| "ends in a backslash, which Falco's condition syntax cannot quote".to_owned())
}

/// `text` as a value of Falco's condition syntax.
fn quoted(text: &str) -> String {
    let bare = !text.is_empty()
        && text
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "/._-+@:".contains(c));
    if bare {
        return text.to_owned();
    }
    let mut out = String::from("\"");
    for c in text.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            '\r' => out.push_str("\\r"),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

#[derive(Serialize)]
#[serde(untagged)]
enum Entry {
    List { list: String, items: Vec<String> },
    Rule(Rule),
}

#[derive(Serialize)]
struct Rule {
    rule: String,
    desc: String,
    condition: String,
    output: String,
    priority: &'static str,
    tags: Vec<&'static str>,
}

/// The condition on the workload's pods and container.
fn pod_condition(policy: &Policy<'_>) -> String {
    let selector = policy.selector;
    let mut parts = vec![
        format!("k8s.ns.name = {}", quoted(&selector.namespace)),
        format!("container.name = {}", quoted(&selector.container)),
    ];
    for (key, value) in &selector.match_labels {
        parts.push(format!("k8s.pod.label[{key}] = {}", quoted(value)));
    }
    parts.extend(selector.match_expressions.iter().map(requirement));
    parts.join(" and ")
}

fn requirement(r: &LabelRequirement) -> String {
    let field = format!("k8s.pod.label[{}]", r.key);
    let values = r
        .values
        .iter()
        .map(|v| quoted(v))
        .collect::<Vec<_>>()
        .join(", ");
    match r.operator.as_str() {
        "In" => format!("{field} in ({values})"),
        "NotIn" => format!("not {field} in ({values})"),
        "Exists" => format!("{field} exists"),
        // DoesNotExist, and anything newer: never match rather than widen.
        _ => format!("not {field} exists"),
    }
}

pub(super) fn render(
    policy: &Policy<'_>,
    losses: &mut Vec<Loss>,
) -> Result<Vec<u8>, serde_yaml_ng::Error> {
    if policy.mode == Mode::Enforce {
        losses.push(Loss::Mode(
            "enforce: Falco only alerts; nothing is refused".to_owned(),
        ));
    }
    let list = format!("{}_execs", policy.object_name().replace(['-', '.'], "_"));
    let mut condition = format!(
        "spawned_process and container and {}",
        pod_condition(policy)
    );
    let mut entries = Vec::new();
    // A list of nothing would paste as `in ( )`: with no allowed path, every exec fires.
    if !policy.paths.is_empty() {
        condition.push_str(&format!(" and not proc.exepath in ({list})"));
        entries.push(Entry::List {
            list,
            items: policy.paths.iter().map(|p| quoted(p)).collect(),
        });
    }
    entries.push(Entry::Rule(Rule {
        rule: format!(
            "fingerprint: exec outside the profile of {}",
            policy.workload
        ),
        desc: format!(
            "An executable not in the fingerprint profile of {} ran in one of its \
             containers (profile mode {}).",
            policy.workload, policy.mode
        ),
        condition,
        output: format!(
            "{} (exe=%proc.exepath cmdline=%proc.cmdline pod=%k8s.pod.name \
             ns=%k8s.ns.name container=%container.name)",
            policy.message()
        ),
        priority: "WARNING",
        tags: vec!["fingerprint", "process"],
    }));
    yaml_bytes(policy, &entries)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_are_bare_only_when_safe() {
        assert_eq!(quoted("/usr/bin/env"), "/usr/bin/env");
        assert_eq!(quoted("/opt/my app"), "\"/opt/my app\"");
        assert_eq!(quoted("/a,b(c)"), "\"/a,b(c)\"");
        assert_eq!(quoted("/a\"b\\c"), "\"/a\\\"b\\\\c\"");
        assert_eq!(quoted("/tmp/x\ny"), "\"/tmp/x\\ny\"");
        assert_eq!(quoted(""), "\"\"");
    }

    #[test]
    fn a_trailing_backslash_is_refused() {
        assert!(refuses("/opt/odd\\").is_some());
        assert!(refuses("/opt/o\\dd").is_none());
    }
}
