//! Binding the cgroups that already exist when enforcement starts (or reloads) to
//! their profiles. Cgroups created later are bound by the kernel itself, inside mkdir,
//! by the same rules: a profile named for the cgroup's workload, else the parent's.
//! Containers cannot be named in the kernel: cgroups below a container scope are held
//! pending until user space names them (`super::hold`).

use std::collections::HashMap;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

use anyhow::{Context, Result};

use crate::bpf::abi::{RuleKind, DENY_ALL_PROFILE, PENDING_PROFILE, SCOPE_PROFILE};
use crate::bpf::enforce::EnforceProbe;
use crate::digest::{digest, DigestKey};
use crate::workload::cgroup_path;
use crate::workload::runtime::ContainerMetadata;

/// Which profile each existing cgroup gets.
pub struct BindingPolicy<'a> {
    /// Profile id by workload name.
    pub profiles: &'a HashMap<String, u32>,
    /// Under --default deny: unprofiled cgroups at or below this path (relative to the
    /// v2 root, e.g. "/" or "/kubepods") get the deny-all profile.
    pub default_deny_scope: Option<&'a str>,
    /// Cgroups where containers start: unprofiled cgroups at or below them are bound
    /// to the scope marker, so that cgroups created below them later are held pending.
    pub container_scopes: &'a [String],
}

impl BindingPolicy<'_> {
    /// The profile for cgroup `path`, whose workload is `name` and whose parent has
    /// `parent` (None: unbound). The rule the kernel applies inside mkdir
    /// (`bind_cgroup_mkdir` in bpf/enforce.bpf.c), first match:
    /// 1. a profile written for this very cgroup path (a `cgroup` workload);
    /// 2. the parent's profile, if that is a workload's profile and the parent is not
    ///    the root: a cgroup nested in an enforced workload stays in it, whatever its
    ///    name (the root's profile governs the root alone);
    /// 3. the profile of the cgroup's own workload;
    /// 4. deny-all within `--default-scope` under `--default deny`, the scope marker
    ///    within a container scope;
    /// 5. none: a workload without a profile is left alone.
    pub fn profile_for(&self, name: &str, path: &str, parent: Option<u32>) -> Option<u32> {
        let own = self.profiles.get(name).copied();
        // A `cgroup` workload is named by its path: its profile is this cgroup's own.
        if name == path && own.is_some() {
            return own;
        }
        if let Some(parent) = parent.filter(|p| is_workload_profile(*p) && !is_root_child(path)) {
            return Some(parent);
        }
        if own.is_some() {
            return own;
        }
        if self
            .default_deny_scope
            .is_some_and(|scope| in_scope(path, scope))
        {
            return Some(DENY_ALL_PROFILE);
        }
        self.container_scopes
            .iter()
            .any(|scope| in_scope(path, scope))
            .then_some(SCOPE_PROFILE)
    }
}

/// A workload's profile, as opposed to a marker (scope, pending, deny-all).
pub fn is_workload_profile(id: u32) -> bool {
    ![SCOPE_PROFILE, PENDING_PROFILE, DENY_ALL_PROFILE].contains(&id)
}

/// Whether cgroup `path` (a text form, from the v2 root) is a child of the root.
fn is_root_child(path: &str) -> bool {
    cgroup_path::parent(path).as_deref() == Some("/")
}

/// Whether cgroup `path` is `scope` or below it.
pub fn in_scope(path: &str, scope: &str) -> bool {
    let scope = scope.trim_end_matches('/');
    scope.is_empty() || path == scope || path.starts_with(&format!("{scope}/"))
}

/// Container scopes made after enforcement began (dockerd makes `/docker`, Podman
/// `/libpod_parent`, systemd `/machine.slice` at their first container) are bound to
/// the scope marker by the kernel inside their mkdir, by a path rule, so that the
/// containers below them are held from the first. A profile written for that very
/// path keeps it (rule 1 of `BindingPolicy::profile_for`).
pub fn watch_scopes(probe: &EnforceProbe, key: &DigestKey, policy: &BindingPolicy) -> Result<()> {
    let rules: Vec<_> = policy
        .container_scopes
        .iter()
        .filter(|scope| !policy.profiles.contains_key(scope.as_str()))
        .map(|scope| {
            let path = cgroup_path::to_bytes(scope);
            (RuleKind::Path, digest(key, &path), SCOPE_PROFILE)
        })
        .collect();
    probe
        .write_rules(&rules)
        .context("writing the container scopes' binding rules")
}

/// Walk the cgroup v2 tree top-down and (re)bind every cgroup not held pending.
/// Returns how many are bound. Cgroups that now have no profile are unbound.
pub fn bind_existing(
    probe: &EnforceProbe,
    mount: &Path,
    policy: &BindingPolicy,
    metadata: &ContainerMetadata,
) -> Result<usize> {
    let mut bound = 0;
    let mut stack = vec![(mount.to_path_buf(), "/".to_string(), None::<u32>)];
    while let Some((dir, path, parent)) = stack.pop() {
        let Ok(meta) = std::fs::metadata(&dir) else {
            continue; // removed while we walked; rmdir unbinds it in the kernel
        };
        // A cgroup the kernel holds pending stays pending: it is named at its first
        // exec (`super::hold`). It may be a container runc is still setting up, whose
        // set-up exec (runc init re-executing itself) must not be judged as the
        // container's, as it would be once the cgroup is bound to the profile here.
        let profile = match probe.binding(meta.ino())? {
            Some(PENDING_PROFILE) => Some(PENDING_PROFILE),
            _ => policy.profile_for(&metadata.identify(&path).0.name(), &path, parent),
        };
        match profile {
            Some(id) => {
                probe
                    .bind(meta.ino(), id)
                    .with_context(|| format!("binding cgroup {path}"))?;
                bound += 1;
            }
            None => probe.unbind(meta.ino())?,
        }
        let Ok(children) = std::fs::read_dir(&dir) else {
            continue;
        };
        for child in children.flatten() {
            if child.file_type().is_ok_and(|t| t.is_dir()) {
                let child_path = cgroup_path::child(&path, &child.file_name());
                stack.push((child.path(), child_path, profile));
            }
        }
    }
    Ok(bound)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scope_is_a_path_prefix_on_component_boundaries() {
        assert!(in_scope("/a/b", "/a"));
        assert!(in_scope("/a", "/a"));
        assert!(!in_scope("/ab", "/a"));
        assert!(in_scope("/anything", "/"));
    }

    #[test]
    fn own_profile_beats_parent_beats_default() {
        let profiles = HashMap::from([("/web".to_string(), 4u32)]);
        let policy = BindingPolicy {
            profiles: &profiles,
            default_deny_scope: Some("/pods"),
            container_scopes: &[],
        };
        let for_path = |path: &str, parent| {
            let name = crate::workload::identify(path).name();
            policy.profile_for(&name, path, parent)
        };
        assert_eq!(for_path("/web", None), Some(4));
        assert_eq!(for_path("/web/child", Some(4)), Some(4));
        assert_eq!(for_path("/pods/x", None), Some(DENY_ALL_PROFILE));
        assert_eq!(for_path("/other", None), None);
    }

    /// Regression: a profile learned for `/` governed every unprofiled cgroup.
    #[test]
    fn the_root_profile_governs_the_root_alone() {
        let profiles = HashMap::from([("/".to_string(), 1u32)]);
        let scopes = ["/kubepods".to_string()];
        let policy = BindingPolicy {
            profiles: &profiles,
            default_deny_scope: None,
            container_scopes: &scopes,
        };
        assert_eq!(policy.profile_for("/", "/", None), Some(1));
        assert_eq!(policy.profile_for("/other", "/other", Some(1)), None);
        // Not swallowed by the root's profile: still a container scope.
        assert_eq!(
            policy.profile_for("/kubepods", "/kubepods", Some(1)),
            Some(SCOPE_PROFILE)
        );
        // Deeper cgroups follow their own parent, as before.
        assert_eq!(policy.profile_for("/other/x", "/other/x", None), None);
    }

    /// Regression: a child cgroup named after another workload's unit left its
    /// enforced parent's profile for that workload's.
    #[test]
    fn a_nested_cgroup_stays_in_its_enforced_workload_whatever_its_name() {
        let profiles = HashMap::from([
            ("web.service".to_string(), 2u32),
            ("other.service".to_string(), 3u32),
            ("/plain".to_string(), 4u32),
            ("/plain/own".to_string(), 5u32),
        ]);
        let policy = BindingPolicy {
            profiles: &profiles,
            default_deny_scope: Some("/"),
            container_scopes: &[],
        };
        let for_path = |path: &str, parent| {
            let name = crate::workload::identify(path).name();
            policy.profile_for(&name, path, parent)
        };
        let web = "/system.slice/web.service";
        assert_eq!(for_path(web, Some(DENY_ALL_PROFILE)), Some(2));
        assert_eq!(for_path(&format!("{web}/other.service"), Some(2)), Some(2));
        assert_eq!(
            for_path(&format!("{web}/sub/other.service"), Some(2)),
            Some(2)
        );
        assert_eq!(for_path("/plain/other.service", Some(4)), Some(4));
        // A profile written for that very cgroup path is its own.
        assert_eq!(for_path("/plain/own", Some(4)), Some(5));
        // Below deny-all (a slice under --default deny), a unit gets its profile.
        assert_eq!(
            for_path("/system.slice/other.service", Some(DENY_ALL_PROFILE)),
            Some(3)
        );
    }

    #[test]
    fn container_scopes_are_marked_and_named_containers_get_their_profile() {
        let profiles = HashMap::from([("default/Deployment/web/server".to_string(), 7u32)]);
        let scopes = ["/kubepods".to_string()];
        let policy = BindingPolicy {
            profiles: &profiles,
            default_deny_scope: None,
            container_scopes: &scopes,
        };
        assert_eq!(
            policy.profile_for(
                "default/Deployment/web/server",
                "/kubepods/p/c",
                Some(SCOPE_PROFILE)
            ),
            Some(7)
        );
        // Unprofiled: marked, so its future children are held, its own execs are free.
        assert_eq!(
            policy.profile_for("other", "/kubepods/p/d", Some(PENDING_PROFILE)),
            Some(SCOPE_PROFILE)
        );
        assert_eq!(
            policy.profile_for("/kubepods", "/kubepods", None),
            Some(SCOPE_PROFILE)
        );
        assert_eq!(policy.profile_for("/x", "/x", None), None);
        // Inside a profiled container, nested cgroups follow it.
        assert_eq!(policy.profile_for("n", "/kubepods/p/c/n", Some(7)), Some(7));
    }
}
