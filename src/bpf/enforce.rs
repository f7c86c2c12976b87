//! Loading the enforcement programs and writing their maps. Which mechanism runs is
//! decided here by trying: the LSM program where the kernel accepts it, else (only
//! if allowed) the kill fallback on sched_process_exec.

use std::mem::size_of;
use std::os::fd::{AsFd, AsRawFd};
use std::path::Path;
use std::ptr::NonNull;
use std::sync::atomic::{fence, Ordering};
use std::time::Duration;

use libbpf_rs::skel::{OpenSkel, Skel, SkelBuilder};
use libbpf_rs::{Link, MapCore, MapFlags, MapHandle, RingBuffer, RingBufferBuilder};

use super::abi::{
    fp_config, fp_digest, fp_file_id, fp_fold, fp_fold_key, fp_mode, fp_path, fp_pattern,
    fp_pattern_key, fp_profile, fp_profile_flags, fp_rule_key, fp_sha256, fp_take_args,
    fp_test_args, MapSizes, RuleKind, PATH_MAX, PATTERN_MAX,
};
use super::enforce_skel::{EnforceSkel, EnforceSkelBuilder, OpenEnforceSkel};
use super::pinned::{CARRIED_MAPS, OPTIONAL_CARRIED_MAPS};
use super::readback::{self, EnforceCounters, MapHandles};
use super::{load_reason, object_storage, refused, BpfError};
use crate::content::Sha256;
use crate::digest::{Digest, DigestKey};

/// How enforcement acts on a violation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum MechanismChoice {
    /// The LSM if the kernel allows it; else the kill fallback, with a loud warning.
    Auto,
    /// `lsm/bprm_check_security`: the exec is refused with EPERM. Fail if unavailable.
    Lsm,
    /// `tp_btf/sched_process_exec` + SIGKILL: the exec happens, the new image is
    /// killed before it runs a single instruction of its own.
    Kill,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mechanism {
    Lsm,
    Kill,
}

impl Mechanism {
    pub fn name(self) -> &'static str {
        match self {
            Mechanism::Lsm => "lsm",
            Mechanism::Kill => "kill",
        }
    }

    pub fn hook(self) -> &'static str {
        match self {
            Mechanism::Lsm => "lsm/bprm_check_security",
            Mechanism::Kill => "tp_btf/sched_process_exec",
        }
    }
}

/// What a profile descriptor says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProfileDescriptor {
    pub allow_offset: u32,
    pub allow_count: u32,
    pub pattern_base: u32,
    pub pattern_count: u32,
    pub mode: fp_mode,
    pub keep_cgroup: bool,
    /// Paths pinned to content, then (path, content) pairs, after the path-only
    /// digests of the same region (see `struct fp_profile`).
    pub pinned_count: u32,
    pub pair_count: u32,
}

pub struct EnforceProbe {
    skel: EnforceSkel<'static>,
    /// The cgroup tracking links, [mkdir, rmdir].
    links: Vec<Link>,
    exec_link: Option<Link>,
    /// The cgroup move guard, [file_open, task_alloc]: LSM only, attached with the
    /// exec program.
    guard_links: Vec<Link>,
    allow: AllowView,
    mechanism: Mechanism,
    lsm_refusal: Option<String>,
    /// Maps reused from a pinned enforcement (pinned already).
    carried: Vec<&'static str>,
    /// What this enforcement writes to `fp_handover` once its exec program is
    /// attached: from then on its program acts and the one it took over does not.
    generation: u64,
}

/// Attach each (hook name, program), naming the hook that refused.
fn attach_each<const N: usize>(
    progs: [(&str, &libbpf_rs::ProgramMut<'static>); N],
) -> Result<Vec<Link>, BpfError> {
    progs
        .into_iter()
        .map(|(name, prog)| {
            prog.attach()
                .map_err(|e| refused(name, format!("attach failed: {e}")))
        })
        .collect()
}

fn map_error(map: &'static str) -> impl Fn(libbpf_rs::Error) -> BpfError {
    move |e| BpfError::Map {
        map,
        reason: e.to_string(),
    }
}

/// One `BPF_MAP_UPDATE_BATCH` of `count` packed keys and values: one system call
/// however many entries (loading 10,000 profiles is otherwise 30,000 calls).
fn update_batch(
    map: &libbpf_rs::MapMut<'static>,
    keys: &[u8],
    values: &[u8],
    count: usize,
) -> Result<(), libbpf_rs::Error> {
    if count == 0 {
        return Ok(());
    }
    map.update_batch(keys, values, count as u32, MapFlags::ANY, MapFlags::ANY)
}

fn bytes_of<T: plain::Plain>(value: &T) -> &[u8] {
    // SAFETY: T is Plain: a repr(C) struct of integers, readable as bytes.
    unsafe { plain::as_bytes(value) }
}

impl EnforceProbe {
    /// Load (not yet attach) with maps of the given sizes. `carry_from`: a pinned
    /// enforcement to take over, whose `CARRIED_MAPS` this one uses.
    /// `fold_window`: how long after a violation event later violations of the same
    /// kind are only counted (zero: every violation is sent; see `take_repeats`).
    pub fn load(
        choice: MechanismChoice,
        sizes: MapSizes,
        fold_window: Duration,
        carry_from: Option<&Path>,
    ) -> Result<EnforceProbe, BpfError> {
        let carried = Carried::open(carry_from)?;
        let load = |mechanism| load(mechanism, sizes, fold_window, &carried);
        let (skel, mechanism, lsm_refusal) = match choice {
            MechanismChoice::Lsm => (load(Mechanism::Lsm)?, Mechanism::Lsm, None),
            MechanismChoice::Kill => (load(Mechanism::Kill)?, Mechanism::Kill, None),
            MechanismChoice::Auto => match load(Mechanism::Lsm) {
                Ok(skel) => (skel, Mechanism::Lsm, None),
                Err(refusal) => (
                    load(Mechanism::Kill)?,
                    Mechanism::Kill,
                    Some(refusal.to_string()),
                ),
            },
        };
        let allow = AllowView::map(&skel.maps.fp_allow, sizes.allow.max(1))?;
        Ok(EnforceProbe {
            skel,
            links: Vec::new(),
            exec_link: None,
            guard_links: Vec::new(),
            allow,
            mechanism,
            lsm_refusal,
            carried: carried.maps.iter().map(|(name, _)| *name).collect(),
            generation: carried.next_generation(),
        })
    }

    pub fn mechanism(&self) -> Mechanism {
        self.mechanism
    }

    /// Why the LSM was not used, when `auto` fell back to kill mode.
    pub fn lsm_refusal(&self) -> Option<&str> {
        self.lsm_refusal.as_deref()
    }

    /// Attach the cgroup programs: from now on new cgroups are bound in the kernel.
    pub fn attach_cgroup_tracking(&mut self) -> Result<(), BpfError> {
        self.links = attach_each([
            ("tp_btf/cgroup_mkdir", &self.skel.progs.bind_cgroup_mkdir),
            ("tp_btf/cgroup_rmdir", &self.skel.progs.unbind_cgroup_rmdir),
        ])?;
        Ok(())
    }

    /// Attach the exec program and make it the one that acts: from now on profiles
    /// are enforced by this enforcement (and no longer by one it takes over).
    pub fn attach_exec_hook(&mut self) -> Result<(), BpfError> {
        let prog = match self.mechanism {
            Mechanism::Lsm => &self.skel.progs.enforce_bprm_check_security,
            Mechanism::Kill => &self.skel.progs.enforce_sched_process_exec,
        };
        let link = prog
            .attach()
            .map_err(|e| refused(self.mechanism.hook(), format!("attach failed: {e}")))?;
        self.exec_link = Some(link);
        if self.mechanism == Mechanism::Lsm {
            self.guard_links = attach_each([
                ("lsm/file_open", &self.skel.progs.guard_cgroup_file_open),
                ("lsm/task_alloc", &self.skel.progs.guard_cgroup_clone),
                ("lsm/task_kill", &self.skel.progs.guard_held_signal),
                (
                    "lsm/ptrace_access_check",
                    &self.skel.progs.guard_held_ptrace,
                ),
            ])?;
        }
        self.skel
            .maps
            .fp_handover
            .update(
                &0u32.to_ne_bytes(),
                &self.generation.to_ne_bytes(),
                MapFlags::ANY,
            )
            .map_err(map_error("fp_handover"))
    }

    /// Take the exec program off its hook (profiles stay in the maps): execs are no
    /// longer checked until `attach_exec_hook` again.
    pub fn detach_exec_hook(&mut self) {
        self.exec_link = None;
        self.guard_links.clear();
    }

    /// `check_content`: whether paths pinned to content are checked by content (a
    /// process of ours decides the execs held for hashing) or by path only.
    pub fn write_config(
        &self,
        key: &DigestKey,
        mode_override: Option<fp_mode>,
        check_content: bool,
    ) -> Result<(), BpfError> {
        let config = fp_config {
            hash_key: key.0,
            mode_override: mode_override.map_or(0, |mode| mode.0),
            check_content: check_content.into(),
            // Held tasks: this process may continue them even from a profiled cgroup.
            enforcer_tgid: std::process::id(),
            ..Default::default()
        };
        self.skel
            .maps
            .fp_config_map
            .update(&0u32.to_ne_bytes(), bytes_of(&config), MapFlags::ANY)
            .map_err(map_error("fp_config_map"))
    }

    /// Write runs of digests, each at allow[offset..], straight into the mapped
    /// array; the caller's next map update (a system call) publishes them.
    pub fn write_digests(&self, runs: &[(u32, &[Digest])]) -> Result<(), BpfError> {
        for (offset, digests) in runs {
            self.allow.write(*offset, digests)?;
        }
        fence(Ordering::SeqCst);
        Ok(())
    }

    /// Write profile descriptors, (id, descriptor), in one batched update.
    pub fn write_profiles(&self, profiles: &[(u32, ProfileDescriptor)]) -> Result<(), BpfError> {
        let keys: Vec<u8> = profiles
            .iter()
            .flat_map(|(id, _)| id.to_ne_bytes())
            .collect();
        let values: Vec<u8> = profiles
            .iter()
            .flat_map(|(_, desc)| {
                let raw = fp_profile {
                    allow_offset: desc.allow_offset,
                    allow_count: desc.allow_count,
                    pattern_base: desc.pattern_base,
                    pattern_count: desc.pattern_count,
                    mode: desc.mode.0,
                    flags: if desc.keep_cgroup {
                        fp_profile_flags::FP_PROFILE_KEEP_CGROUP.0
                    } else {
                        0
                    },
                    pinned_count: desc.pinned_count,
                    pair_count: desc.pair_count,
                };
                bytes_of(&raw).to_vec()
            })
            .collect();
        update_batch(&self.skel.maps.fp_profiles, &keys, &values, profiles.len())
            .map_err(map_error("fp_profiles"))
    }

    pub fn delete_profile(&self, id: u32) -> Result<(), BpfError> {
        self.skel
            .maps
            .fp_profiles
            .delete(&id.to_ne_bytes())
            .map_err(map_error("fp_profiles"))
    }

    pub fn write_pattern(&self, id: u32, index: u32, pattern: &[u8]) -> Result<(), BpfError> {
        let key = fp_pattern_key {
            profile_id: id,
            index,
        };
        let mut value = fp_pattern {
            len: pattern.len().min(PATTERN_MAX - 1) as u32,
            bytes: [0; PATTERN_MAX],
        };
        for (dst, src) in value.bytes.iter_mut().zip(pattern) {
            *dst = *src as i8;
        }
        self.skel
            .maps
            .fp_patterns
            .update(bytes_of(&key), bytes_of(&value), MapFlags::ANY)
            .map_err(map_error("fp_patterns"))
    }

    pub fn delete_pattern(&self, id: u32, index: u32) -> Result<(), BpfError> {
        let key = fp_pattern_key {
            profile_id: id,
            index,
        };
        self.skel
            .maps
            .fp_patterns
            .delete(bytes_of(&key))
            .map_err(map_error("fp_patterns"))
    }

    fn rule_key(kind: RuleKind, digest: Digest) -> fp_rule_key {
        fp_rule_key {
            kind: kind as u32, // the generated `enum fp_rule_kind` value
            pad: 0,
            digest: fp_digest {
                hi: digest.hi,
                lo: digest.lo,
            },
        }
    }

    /// Write rules, (kind, digest of the name, profile id), in one batched update.
    pub fn write_rules(&self, rules: &[(RuleKind, Digest, u32)]) -> Result<(), BpfError> {
        let keys: Vec<u8> = rules
            .iter()
            .flat_map(|(kind, digest, _)| bytes_of(&Self::rule_key(*kind, *digest)).to_vec())
            .collect();
        let values: Vec<u8> = rules
            .iter()
            .flat_map(|(_, _, id)| id.to_ne_bytes())
            .collect();
        update_batch(&self.skel.maps.fp_rules, &keys, &values, rules.len())
            .map_err(map_error("fp_rules"))
    }

    pub fn delete_rule(&self, kind: RuleKind, digest: Digest) -> Result<(), BpfError> {
        let key = Self::rule_key(kind, digest);
        self.skel
            .maps
            .fp_rules
            .delete(bytes_of(&key))
            .map_err(map_error("fp_rules"))
    }

    pub fn bind(&self, cgroup_id: u64, profile_id: u32) -> Result<(), BpfError> {
        self.skel
            .maps
            .fp_bindings
            .update(
                &cgroup_id.to_ne_bytes(),
                &profile_id.to_ne_bytes(),
                MapFlags::ANY,
            )
            .map_err(map_error("fp_bindings"))
    }

    pub fn unbind(&self, cgroup_id: u64) -> Result<(), BpfError> {
        match self.skel.maps.fp_bindings.delete(&cgroup_id.to_ne_bytes()) {
            Err(e) if e.kind() == libbpf_rs::ErrorKind::NotFound => Ok(()),
            other => other.map_err(map_error("fp_bindings")),
        }
    }

    /// The profile (or marker) cgroup `cgroup_id` is bound to, if any.
    pub fn binding(&self, cgroup_id: u64) -> Result<Option<u32>, BpfError> {
        let value = self
            .skel
            .maps
            .fp_bindings
            .lookup(&cgroup_id.to_ne_bytes(), MapFlags::ANY)
            .map_err(map_error("fp_bindings"))?;
        Ok(value.and_then(|v| v.as_slice().try_into().ok().map(u32::from_ne_bytes)))
    }

    /// Every (cgroup id, profile id) binding, including those the kernel made.
    pub fn bindings(&self) -> Result<Vec<(u64, u32)>, BpfError> {
        readback::bindings(&self.skel.maps.fp_bindings)
    }

    pub fn counters(&self) -> Result<EnforceCounters, BpfError> {
        EnforceCounters::read(&self.skel.maps.fp_enforce_counters)
    }

    /// Handles on every map, for a reader on another thread (the metrics endpoint).
    pub fn map_handles(&self) -> Result<MapHandles, BpfError> {
        MapHandles::of(self.skel.object())
    }

    /// Pin links and maps under `dir` (see `pinned`): enforcement then outlives
    /// this process. Each pin replaces the object of a previous enforcement in one
    /// rename (a takeover: this one is attached already). Links are pinned last,
    /// so a half-pinned directory never looks like a working enforcement.
    pub fn pin(&mut self, dir: &Path) -> Result<(), BpfError> {
        use super::pinned::{ensure_bpffs, pin_replacing, remove_pin, LINKS, MAPS};
        ensure_bpffs(dir)?;
        std::fs::create_dir_all(dir).map_err(|e| BpfError::Map {
            map: "pinned enforcement",
            reason: format!("creating {}: {e}", dir.display()),
        })?;
        let maps = &mut self.skel.maps;
        let handles: [&mut libbpf_rs::MapMut<'static>; 11] = [
            &mut maps.fp_config_map,
            &mut maps.fp_bindings,
            &mut maps.fp_profiles,
            &mut maps.fp_allow,
            &mut maps.fp_patterns,
            &mut maps.fp_rules,
            &mut maps.fp_enforce_counters,
            &mut maps.fp_violations,
            &mut maps.fp_handover,
            &mut maps.fp_folds,
            &mut maps.fp_held,
        ];
        for (map, name) in handles.into_iter().zip(MAPS) {
            if !self.carried.contains(name) {
                pin_replacing(dir, name, |path| map.pin(path))?;
            }
        }
        let tracking = self.links.iter_mut().zip([LINKS[1], LINKS[2]]);
        let exec = self.exec_link.as_mut().map(|link| (link, LINKS[0]));
        let guard = self
            .guard_links
            .iter_mut()
            .zip(&LINKS[3..])
            .map(|(l, n)| (l, *n));
        for (link, name) in tracking.chain(exec).chain(guard) {
            pin_replacing(dir, name, |path| link.pin(path))?;
        }
        // A kill-mode enforcement taking over an LSM one has no guard to pin: the
        // old guard, inactive since the handover, goes with its pins.
        if self.guard_links.is_empty() {
            for name in &LINKS[3..] {
                remove_pin(dir, name)?;
            }
        }
        Ok(())
    }

    /// A ring buffer reader that hands each violation event to `on_event`.
    pub fn violations<F>(&self, on_event: F) -> Result<RingBuffer<'_>, BpfError>
    where
        F: FnMut(&[u8]) -> i32 + 'static,
    {
        let mut builder = RingBufferBuilder::new();
        builder
            .add(&self.skel.maps.fp_violations, on_event)
            .map_err(map_error("fp_violations"))?;
        builder.build().map_err(map_error("fp_violations"))
    }

    /// Take the violations folded since the last take (see `fp_fold` in
    /// bpf/enforce.bpf.c), by kind: each count is taken with an atomic exchange in
    /// the kernel (the `take_repeats` program), so a violation folded meanwhile is
    /// taken now or at the next take, never twice and never lost.
    pub fn take_repeats(&self) -> Result<Vec<(fp_fold_key, u64)>, BpfError> {
        let folds = &self.skel.maps.fp_folds;
        let mut taken = Vec::new();
        for key in folds.keys() {
            let Some(value) = folds
                .lookup(&key, MapFlags::ANY)
                .map_err(map_error("fp_folds"))?
            else {
                continue; // forgotten while we iterated
            };
            let mut fold = fp_fold::default();
            let mut args = fp_take_args::default();
            if plain::copy_from_bytes(&mut fold, &value).is_err()
                || plain::copy_from_bytes(&mut args.key, &key).is_err()
                || fold.pending == 0
            {
                continue;
            }
            let ret = run_syscall(&self.skel.progs.take_repeats, "take_repeats", &mut args)?;
            if ret != 0 {
                return Err(BpfError::Map {
                    map: "fp_folds",
                    reason: "no scratch memory free to take a count; taken next time".into(),
                });
            }
            if args.taken > 0 {
                taken.push((args.key, args.taken));
            }
        }
        Ok(taken)
    }

    /// Run the very decision the exec hook runs on `path` for profile `id`, through
    /// BPF_PROG_TEST_RUN. Returns (allowed, the kernel's digest of the path); a path
    /// pinned to content is not allowed without its content (see `test_decision`).
    pub fn test_path(&self, id: u32, path: &[u8]) -> Result<(bool, Digest), BpfError> {
        let (reason, digest) = self.test_decision(id, path, None)?;
        Ok((reason == 0, digest))
    }

    /// The decision on `path` for profile `id`, with the file's content if known:
    /// 0 (allowed) or the `enum fp_reason` of the violation, and the path's digest.
    pub fn test_decision(
        &self,
        id: u32,
        path: &[u8],
        content: Option<&Sha256>,
    ) -> Result<(u32, Digest), BpfError> {
        if path.len() >= PATH_MAX {
            return Err(BpfError::Map {
                map: "fp_test_path",
                reason: format!("test path of {} bytes is too long", path.len()),
            });
        }
        // SAFETY: fp_path is integers and integer arrays: all zeroes is a valid value.
        let mut input: Box<fp_path> = Box::new(unsafe { std::mem::zeroed() });
        let start = PATH_MAX - path.len();
        input.start = start as u32;
        for (dst, src) in input.data[start..PATH_MAX].iter_mut().zip(path) {
            *dst = *src as i8;
        }
        self.skel
            .maps
            .fp_test_path
            .update(&0u32.to_ne_bytes(), bytes_of(&*input), MapFlags::ANY)
            .map_err(map_error("fp_test_path"))?;
        let mut args = fp_test_args {
            profile_id: id,
            content: fp_sha256 {
                bytes: content.map_or([0; 32], |c| c.0),
            },
            has_content: content.is_some().into(),
            ..Default::default()
        };
        let prog = &self.skel.progs.test_profile_allows;
        let ret = run_syscall(prog, "test_profile_allows", &mut args)?;
        if ret != 0 {
            return Err(BpfError::Map {
                map: "fp_test_path",
                reason: format!("test program returned {ret}"),
            });
        }
        Ok((
            args.reason,
            Digest {
                hi: args.digest.hi,
                lo: args.digest.lo,
            },
        ))
    }

    /// Tell the kernel the content of one file version (`fp_versions`): its next
    /// execs are decided in the kernel, without a hold.
    pub fn record_version(&self, version: &fp_file_id, content: &Sha256) -> Result<(), BpfError> {
        self.skel
            .maps
            .fp_versions
            .update(bytes_of(version), &content.0, MapFlags::ANY)
            .map_err(map_error("fp_versions"))
    }

    /// The content the kernel knows for a file version, if any.
    pub fn known_version(&self, version: &fp_file_id) -> Result<Option<Sha256>, BpfError> {
        let value = self
            .skel
            .maps
            .fp_versions
            .lookup(bytes_of(version), MapFlags::ANY)
            .map_err(map_error("fp_versions"))?;
        Ok(value.and_then(|v| Sha256::from_slice(&v)))
    }
}

/// Run the `syscall` program `prog` once through BPF_PROG_TEST_RUN on `args`, which
/// the kernel reads and writes back; the program's return value.
fn run_syscall<T: plain::Plain>(
    prog: &libbpf_rs::ProgramMut<'static>,
    name: &'static str,
    args: &mut T,
) -> Result<i32, BpfError> {
    // SAFETY: T is Plain; the kernel writes at most its size back.
    let ctx = unsafe { plain::as_mut_bytes(args) };
    let run = libbpf_rs::ProgramInput {
        context_in: Some(ctx),
        ..Default::default()
    };
    let out = prog
        .test_run(run)
        .map_err(|e| refused(name, format!("test run failed: {e}")))?;
    Ok(out.return_value as i32)
}

/// `fp_allow` (a `BPF_F_MMAPABLE` array) mapped into this process, unmapped on drop.
struct AllowView {
    base: NonNull<fp_digest>,
    entries: usize,
    bytes: usize,
}

impl AllowView {
    fn map(map: &libbpf_rs::MapMut<'static>, entries: u32) -> Result<AllowView, BpfError> {
        // SAFETY: sysconf only reads a constant of the system.
        let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) }.max(1) as usize;
        let entries = entries as usize;
        let bytes = (entries * size_of::<fp_digest>()).next_multiple_of(page);
        // SAFETY: a shared mapping of the whole array at offset 0, as the kernel allows
        // for BPF_F_MMAPABLE arrays; nothing else in this process uses that range.
        let base = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                bytes,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED,
                map.as_fd().as_raw_fd(),
                0,
            )
        };
        let mapped = (base != libc::MAP_FAILED)
            .then(|| NonNull::new(base.cast::<fp_digest>()))
            .flatten();
        match mapped {
            Some(base) => Ok(AllowView {
                base,
                entries,
                bytes,
            }),
            None => Err(BpfError::Map {
                map: "fp_allow",
                reason: format!("mmap failed: {}", std::io::Error::last_os_error()),
            }),
        }
    }

    fn write(&self, offset: u32, digests: &[Digest]) -> Result<(), BpfError> {
        let start = offset as usize;
        if start + digests.len() > self.entries {
            return Err(BpfError::Map {
                map: "fp_allow",
                reason: format!(
                    "{} digests at {start} do not fit in {} entries",
                    digests.len(),
                    self.entries
                ),
            });
        }
        for (i, d) in digests.iter().enumerate() {
            // SAFETY: start + i < entries: inside the mapping. The region is one no
            // descriptor points at yet (MapState writes beside what the kernel reads),
            // and volatile keeps the stores from being elided or merged away.
            unsafe {
                self.base
                    .as_ptr()
                    .add(start + i)
                    .write_volatile(fp_digest { hi: d.hi, lo: d.lo });
            }
        }
        Ok(())
    }
}

impl Drop for AllowView {
    fn drop(&mut self) {
        // SAFETY: exactly the range `map` mapped; nothing refers to it any more.
        unsafe { libc::munmap(self.base.as_ptr().cast(), self.bytes) };
    }
}

/// The maps of a pinned enforcement that a takeover reuses (`CARRIED_MAPS`), and the
/// generation that acts there now.
struct Carried {
    maps: Vec<(&'static str, MapHandle)>,
    generation: u64,
}

impl Carried {
    fn open(dir: Option<&Path>) -> Result<Carried, BpfError> {
        let mut carried = Carried {
            maps: Vec::new(),
            generation: 0,
        };
        let Some(dir) = dir else {
            return Ok(carried);
        };
        for &name in CARRIED_MAPS {
            let path = dir.join(name);
            if OPTIONAL_CARRIED_MAPS.contains(&name) && !path.exists() {
                // Pinned by a version without it: its programs always act, or send
                // every violation.
                continue;
            }
            let map = MapHandle::from_pinned_path(&path).map_err(|e| BpfError::Map {
                map: "pinned enforcement",
                reason: format!("opening {}: {e}", path.display()),
            })?;
            carried.maps.push((name, map));
        }
        if let Some((_, handover)) = carried.maps.iter().find(|(n, _)| *n == "fp_handover") {
            let value = handover
                .lookup(&0u32.to_ne_bytes(), MapFlags::ANY)
                .map_err(map_error("fp_handover"))?;
            carried.generation = value
                .and_then(|v| v.as_slice().try_into().ok().map(u64::from_ne_bytes))
                .unwrap_or(0);
        }
        Ok(carried)
    }

    /// The generation of the enforcement that takes over (1 for a fresh one).
    fn next_generation(&self) -> u64 {
        self.generation + 1
    }
}

fn load(
    mechanism: Mechanism,
    sizes: MapSizes,
    fold_window: Duration,
    carried: &Carried,
) -> Result<EnforceSkel<'static>, BpfError> {
    let refused = |reason: String| refused(mechanism.hook(), reason);
    let mut open: OpenEnforceSkel<'static> = EnforceSkelBuilder::default()
        .open(object_storage())
        .map_err(|e| refused(format!("open failed: {e}")))?;
    for (name, pinned) in &carried.maps {
        let map = match *name {
            "fp_enforce_counters" => &mut open.maps.fp_enforce_counters,
            "fp_violations" => &mut open.maps.fp_violations,
            "fp_handover" => &mut open.maps.fp_handover,
            "fp_folds" => &mut open.maps.fp_folds,
            "fp_held" => &mut open.maps.fp_held,
            other => return Err(refused(format!("no map {other} to carry over"))),
        };
        map.reuse_fd(pinned.as_fd()).map_err(map_error(name))?;
    }
    // A program left at another generation than the one written at attach would
    // never act: fail here rather than enforce nothing.
    let rodata = open
        .maps
        .rodata_data
        .as_deref_mut()
        .ok_or_else(|| refused("the enforcement object has no .rodata".into()))?;
    rodata.fp_generation = carried.next_generation();
    rodata.fp_fold_window_ns = fold_window.as_nanos().try_into().unwrap_or(u64::MAX);
    let lsm = mechanism == Mechanism::Lsm;
    // The cgroup move guard needs LSM hooks; kill mode has none to offer.
    for (prog, wanted) in [
        (&mut open.progs.enforce_bprm_check_security, lsm),
        (&mut open.progs.enforce_sched_process_exec, !lsm),
        (&mut open.progs.guard_cgroup_file_open, lsm),
        (&mut open.progs.guard_cgroup_clone, lsm),
        (&mut open.progs.guard_held_signal, lsm),
        (&mut open.progs.guard_held_ptrace, lsm),
    ] {
        prog.set_autoload(wanted);
    }
    let resize = [
        (&mut open.maps.fp_profiles, sizes.profiles, "fp_profiles"),
        (&mut open.maps.fp_allow, sizes.allow.max(1), "fp_allow"),
        (&mut open.maps.fp_patterns, sizes.patterns, "fp_patterns"),
        (&mut open.maps.fp_rules, sizes.rules, "fp_rules"),
        (&mut open.maps.fp_bindings, sizes.bindings, "fp_bindings"),
        (
            &mut open.maps.fp_versions,
            sizes.versions.max(1),
            "fp_versions",
        ),
    ];
    for (map, entries, name) in resize {
        map.set_max_entries(entries).map_err(map_error(name))?;
    }
    super::request_verifier_logs(open.open_object_mut());
    open.load()
        .map_err(|e| refused(load_reason(mechanism == Mechanism::Lsm, &e)))
}
