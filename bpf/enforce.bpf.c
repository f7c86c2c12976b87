// SPDX-License-Identifier: (GPL-2.0 OR Apache-2.0)
/*
 * Enforcement: ONE program on the exec path for every workload. User space loads
 * either the LSM program (deny with EPERM) or, where the kernel refuses BPF LSM, the
 * kill fallback on sched_process_exec; plus the cgroup programs that bind new cgroups
 * to profiles before any process can enter them.
 */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>
#include <bpf/bpf_core_read.h>
#include "exec_event.h"
#include "policy.h"
#include "scratch.h"

char LICENSE[] SEC("license") = "Dual BSD/GPL";

#define EPERM 1
#define SIGKILL 9
#define SIGSTOP 19
#define SIGCONT 18

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 4 * 1024 * 1024);
} fp_violations SEC(".maps");

/*
 * Handover between two enforcements. During a takeover of pinned enforcement the old
 * and the new exec programs are both attached for a moment; both deciding would report
 * (and count) each exec twice. This word, carried over like the ring buffer, names the
 * one that acts: a program acts only while it holds this program's generation, and the
 * new enforcer writes its own once its program is attached. So at every instant one
 * of the two acts: no gap, no double.
 */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u64);
} fp_handover SEC(".maps");

/* Set by user space before load: one more than the generation it takes over. */
const volatile __u64 fp_generation = 1;

static __always_inline int fp_is_active(void)
{
	__u32 zero = 0;
	__u64 *active = bpf_map_lookup_elem(&fp_handover, &zero);

	return active && *active == fp_generation;
}

/* Memory private to one run of a program here (scratch.h): the decision's, then
 * the event's. */
struct fp_enforce_slot {
	__u64 busy;
	struct fp_check_mem check;
	struct fp_fold_key fold;
	struct fp_event_buf event;
};

FP_SCRATCH_MAP(fp_enforce_slots, struct fp_enforce_slot);

/* The path test_profile_allows decides on, written by user space before each run. */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct fp_path);
} fp_test_path SEC(".maps");

struct fp_test_args {
	__u32 profile_id;
	__u32 allowed; /* out */
	struct fp_digest digest; /* out */
	/* In: the file's content, when has_content; out: the decision, 0 or enum
	 * fp_reason (FP_REASON_CONTENT_UNKNOWN: the path is pinned, content needed). */
	struct fp_sha256 content;
	__u32 has_content;
	__u32 reason;
};

/*
 * Repeated violations, by kind (struct fp_fold_key): when the last event of that kind
 * was sent, and how many were folded since. LRU: a full map forgets the kind used
 * least recently; what it had folded and user space had not taken yet is lost, and
 * user space tells how many from FP_ENFORCE_FOLDED (docs/architecture.md).
 */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 16384);
	__type(key, struct fp_fold_key);
	__type(value, struct fp_fold);
} fp_folds SEC(".maps");

/*
 * Held tasks (LSM): a task the exec hook stopped (SIGSTOP) for user space to decide,
 * by tgid (what its pid is once the exec has taken over the thread group), with its
 * thread group leader's start time (a recycled pid is another task). While it waits,
 * a task governed by a profile may neither continue it (SIGCONT) nor trace it: a
 * sibling racing the decision would otherwise run the new image before it is decided.
 * An entry goes when an unprofiled task (the enforcer) continues or kills the task;
 * LRU: one left by a task that died otherwise is forgotten in time.
 */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 16384);
	__type(key, __u32);
	__type(value, __u64);
} fp_held SEC(".maps");

/* Set by user space before load: how long after an event later violations of the
 * same kind are only counted. 0: every violation is sent. */
const volatile __u64 fp_fold_window_ns = 0;

/* Keep the shared types in BTF for the skeleton. */
struct fp_exec_event _fp_exec_event = {};
struct fp_config _fp_config = {};
struct fp_profile _fp_profile = {};
struct fp_pattern _fp_pattern = {};
struct fp_pattern_key _fp_pattern_key = {};
struct fp_rule_key _fp_rule_key = {};
struct fp_digest _fp_digest = {};
struct fp_sha256 _fp_sha256 = {};
struct fp_content_key _fp_content_key = {};
struct fp_test_args _fp_test_args = {};
struct fp_path _fp_path = {};
enum fp_mode _fp_mode = 0;
enum fp_action _fp_action = 0;
enum fp_reason _fp_reason = 0;
enum fp_profile_flags _fp_profile_flags = 0;
enum fp_rule_kind _fp_rule_kind = 0;
enum fp_enforce_counter _fp_enforce_counter = 0;
struct fp_fold _fp_fold = {};
struct fp_take_args _fp_take_args = {};

/*
 * Whether this violation, of the kind in `key`, is only counted: within the window
 * of the last event of its kind. Otherwise it opens a new window and is sent; *fold
 * is then its entry (NULL if none could be made), so that a send that fails can
 * reopen the window for the next one. Every count is an atomic add, and the window
 * is opened by one compare-and-exchange: runs preempted half way (scratch.h) on
 * this CPU or running on others neither lose a count nor both send.
 */
static __always_inline int fp_fold(struct fp_fold_key *key, struct fp_fold **fold)
{
	struct fp_fold fresh = {};
	struct fp_fold *f;
	__u64 now, start;

	*fold = NULL;
	if (!fp_fold_window_ns)
		return 0;
	now = bpf_ktime_get_ns();
	f = bpf_map_lookup_elem(&fp_folds, key);
	if (!f) {
		fresh.window_start_ns = now;
		/* Lost a race to create it: another run sends its own event; so do we. */
		bpf_map_update_elem(&fp_folds, key, &fresh, BPF_NOEXIST);
		*fold = bpf_map_lookup_elem(&fp_folds, key);
		return 0;
	}
	start = *(volatile __u64 *)&f->window_start_ns;
	if ((start && now - start < fp_fold_window_ns) ||
	    __sync_val_compare_and_swap(&f->window_start_ns, start, now) != start) {
		__sync_fetch_and_add(&f->pending, 1);
		fp_enforce_count(FP_ENFORCE_FOLDED);
		return 1;
	}
	*fold = f;
	return 0;
}

/* Report the exec of `bprm`, unless a violation of its kind was sent within the
 * window (then it is only counted, fp_fold): built in the run's own slot, then
 * copied into the ring buffer while the slot is still held. A held exec is never
 * folded: user space decides on each one. */
static __always_inline void fp_report(struct linux_binprm *bprm, __u16 hook,
				      struct fp_verdict *v, __u16 action,
				      struct fp_enforce_slot *slot)
{
	struct fp_event_buf *ev = &slot->event;
	struct fp_fold_key *key = &slot->fold;
	struct fp_fold *fold = NULL;
	__u32 size;

	if (action != FP_ACTION_HELD) {
		key->cgroup_id = bpf_get_current_cgroup_id();
		fp_read_file_id(&key->exe_id, BPF_CORE_READ(bprm, file));
		key->profile_id = v->profile_id;
		key->action = action;
		key->reason = v->reason;
		if (fp_fold(key, &fold))
			return;
	}
	size = fp_build_exec_event(bprm, hook, ev, &slot->check.path);
	ev->hdr.profile_id = v->profile_id;
	ev->hdr.action = action;
	ev->hdr.reason = v->reason;
	if (size > sizeof(*ev) || bpf_ringbuf_output(&fp_violations, ev, size, 0)) {
		fp_enforce_count(FP_ENFORCE_DROPPED);
		/* Nothing of this kind reached user space: the next one is sent. */
		if (fold)
			fold->window_start_ns = 0;
	}
}

/* A profile of a workload, as opposed to a marker (scope, pending, deny-all). */
static __always_inline int fp_is_real_profile(__u32 id)
{
	return id != FP_PROFILE_SCOPE && id != FP_PROFILE_PENDING && id != FP_PROFILE_DENY_ALL;
}

/*
 * Kill mode only: whether an allowed interpreted exec (a `#!` script, or a binfmt_misc
 * target) must be held for user space. At sched_process_exec the kernel has already
 * let go of the script's file: only its interpreter is left to check here, and the
 * name the caller typed. So while a user-space enforcer is there to decide
 * (check_content), such an exec is held, and user space checks the script as the LSM
 * hook would have: its path (made absolute against the cwd, as learning records it),
 * and its content where the profile pins it. Without this an edited or unlisted
 * script runs under an allowed interpreter. The cost: one hold per script exec in
 * kill mode (docs/benchmarks.md).
 */
static __always_inline int fp_script_needs_user_space(struct linux_binprm *bprm, __u32 id,
						      struct fp_verdict *v)
{
	__u32 zero = 0;
	struct fp_config *cfg;

	if (v->mode || !fp_is_real_profile(id) ||
	    (void *)BPF_CORE_READ(bprm, interp) == (void *)BPF_CORE_READ(bprm, filename))
		return 0;
	cfg = bpf_map_lookup_elem(&fp_config_map, &zero);
	if (!cfg || !cfg->check_content)
		return 0;
	fp_enforce_count(FP_ENFORCE_HELD);
	v->reason = FP_REASON_CONTENT_UNKNOWN;
	return 1;
}

/* The start time that names task `t`'s thread group: its leader's (kept by an exec
 * from another thread, which takes the leader's place). */
static __always_inline __u64 fp_group_start(struct task_struct *t)
{
	return BPF_CORE_READ(t, group_leader, start_time);
}

/* Record the current task as held (see fp_held). */
static __always_inline void fp_hold_guarded(void)
{
	struct task_struct *task = (struct task_struct *)bpf_get_current_task();
	__u32 tgid = bpf_get_current_pid_tgid() >> 32;
	__u64 start = fp_group_start(task);

	bpf_map_update_elem(&fp_held, &tgid, &start, BPF_ANY);
}

/*
 * The exec hook of both mechanisms: decide, then hold, block or audit, and report.
 * `hook` names the mechanism: the LSM refuses a forbidden exec (returns -EPERM); the
 * fallback on sched_process_exec runs after the exec and kills the new image before
 * its first instruction.
 */
static __always_inline int fp_enforce_exec(struct linux_binprm *bprm, __u16 hook)
{
	struct fp_enforce_slot *slot;
	struct fp_verdict v;
	__u16 action = 0;
	int deny = 0;
	__u32 id;

	if (!fp_is_active() || !fp_bound_profile(&id))
		return 0;
	slot = fp_scratch_claim(&fp_enforce_slots);
	fp_check_exec(BPF_CORE_READ(bprm, file), id, slot ? &slot->check : NULL, &v);
	if (hook == FP_HOOK_SCHED_PROCESS_EXEC && fp_script_needs_user_space(bprm, id, &v))
		v.mode = FP_MODE_HOLD;
	if (v.mode == FP_MODE_HOLD) {
		/*
		 * No profile is known yet, so there is nothing to decide against: let the
		 * exec proceed and stop the new image before its first instruction; user
		 * space names the cgroup and kills the task if its profile forbids this
		 * file. (For this one exec, the LSM gives kill-mode semantics.)
		 */
		bpf_send_signal(SIGSTOP);
		if (hook == FP_HOOK_BPRM_CHECK_SECURITY)
			fp_hold_guarded();
		action = FP_ACTION_HELD;
	} else if (v.mode == FP_MODE_ENFORCE && hook == FP_HOOK_BPRM_CHECK_SECURITY) {
		deny = 1;
		action = FP_ACTION_DENIED;
	} else if (v.mode == FP_MODE_ENFORCE) {
		bpf_send_signal(SIGKILL);
		action = FP_ACTION_KILLED;
	} else if (v.mode == FP_MODE_AUDIT) {
		action = FP_ACTION_AUDITED;
	}
	if (slot) {
		if (action)
			fp_report(bprm, hook, &v, action, slot);
		fp_scratch_release(slot);
	} else if (action) {
		fp_enforce_count(FP_ENFORCE_DROPPED);
	}
	return deny ? -EPERM : 0;
}

SEC("lsm/bprm_check_security")
int BPF_PROG(enforce_bprm_check_security, struct linux_binprm *bprm, int ret)
{
	if (ret)
		return FP_LSM_PREVIOUS(ret);
	return fp_enforce_exec(bprm, FP_HOOK_BPRM_CHECK_SECURITY);
}

/* Fallback where the kernel refuses BPF LSM programs: the exec has happened. */
SEC("tp_btf/sched_process_exec")
int BPF_PROG(enforce_sched_process_exec, struct task_struct *task, pid_t old_pid,
	     struct linux_binprm *bprm)
{
	fp_enforce_exec(bprm, FP_HOOK_SCHED_PROCESS_EXEC);
	return 0;
}

/*
 * The cgroup move guard (LSM only; docs/architecture.md, "Moving out of a workload").
 * A task leaves its workload by writing its pid into another cgroup's cgroup.procs
 * (or cgroup.threads), or by cloning a child into another cgroup (clone3 with
 * CLONE_INTO_CGROUP, which takes an O_PATH descriptor: no file is opened for writing).
 * No hook sees the migration itself; these two see both ways in. A profile that keeps
 * its tasks (FP_PROFILE_KEEP_CGROUP) may write only the files of cgroups bound to
 * itself, and may not clone into any cgroup. The file_open program also keeps the
 * content cache honest (content.h): a file opened for writing loses its cached digest.
 */
#define CGROUP2_SUPER_MAGIC 0x63677270
#define CLONE_INTO_CGROUP 0x200000000ULL

/* The profile governing the current task, in *id, if it keeps its tasks. */
static __always_inline struct fp_profile *fp_keeping_profile(__u32 *id)
{
	struct fp_profile *prof;

	if (!fp_is_active() || !fp_bound_profile(id) || !fp_is_real_profile(*id))
		return NULL;
	prof = bpf_map_lookup_elem(&fp_profiles, id);
	return prof && (prof->flags & FP_PROFILE_KEEP_CGROUP) ? prof : NULL;
}

/* A move out of profile `id`'s cgroups: report it, and refuse it in enforce mode. */
static __always_inline int fp_guard_move(__u32 id, struct fp_profile *prof, struct file *target,
					 __u16 hook)
{
	struct fp_enforce_slot *slot;
	struct fp_config *cfg;
	__u32 zero = 0, size;
	__u32 mode = prof->mode;
	__u16 action;

	cfg = bpf_map_lookup_elem(&fp_config_map, &zero);
	if (cfg && cfg->mode_override)
		mode = cfg->mode_override;
	action = mode == FP_MODE_ENFORCE ? FP_ACTION_DENIED : FP_ACTION_AUDITED;
	fp_enforce_count(FP_ENFORCE_MOVES);
	fp_enforce_count(FP_ENFORCE_VIOLATIONS);
	slot = fp_scratch_claim(&fp_enforce_slots);
	if (slot) {
		struct fp_event_buf *ev = &slot->event;

		size = fp_build_task_event(target, hook, ev, &slot->check.path);
		ev->hdr.profile_id = id;
		ev->hdr.action = action;
		ev->hdr.reason = FP_REASON_CGROUP_MOVE;
		if (size > sizeof(*ev) || bpf_ringbuf_output(&fp_violations, ev, size, 0))
			fp_enforce_count(FP_ENFORCE_DROPPED);
		fp_scratch_release(slot);
	} else {
		fp_enforce_count(FP_ENFORCE_DROPPED);
	}
	return action == FP_ACTION_DENIED ? -EPERM : 0;
}

SEC("lsm/file_open")
int BPF_PROG(guard_cgroup_file_open, struct file *file, int ret)
{
	struct file *target = NULL;
	struct fp_profile *prof;
	struct fp_config *cfg;
	__u32 zero = 0;
	__u32 *bound;
	__u64 cgroup;
	__u32 id;

	if (ret)
		return FP_LSM_PREVIOUS(ret);
	/* Cheapest tests first: this runs on every open on the node. */
	if (!(BPF_CORE_READ(file, f_mode) & FP_FMODE_WRITE))
		return 0;
	cfg = bpf_map_lookup_elem(&fp_config_map, &zero);
	if (cfg && cfg->check_content)
		fp_forget_version_if_written(file);
	if (BPF_CORE_READ(file, f_inode, i_sb, s_magic) != CGROUP2_SUPER_MAGIC)
		return 0;
	prof = fp_keeping_profile(&id);
	if (!prof)
		return 0;
	/* A cgroup's files live in its directory, whose inode number is the cgroup id. */
	cgroup = BPF_CORE_READ(file, f_path.dentry, d_parent, d_inode, i_ino);
	bound = bpf_map_lookup_elem(&fp_bindings, &cgroup);
	if (bound && *bound == id)
		return 0;
	/* The path routine takes addresses as plain numbers, as from BPF_CORE_READ: a
	 * copy through probe_read turns the hook's typed pointer into one. */
	bpf_probe_read_kernel(&target, sizeof(target), &file);
	return fp_guard_move(id, prof, target, FP_HOOK_FILE_OPEN);
}

SEC("lsm/task_alloc")
int BPF_PROG(guard_cgroup_clone, struct task_struct *task, unsigned long clone_flags, int ret)
{
	struct fp_profile *prof;
	__u32 id;

	if (ret)
		return FP_LSM_PREVIOUS(ret);
	if (!(clone_flags & CLONE_INTO_CGROUP))
		return 0;
	/* The destination is not known at this hook: any cgroup is refused. */
	prof = fp_keeping_profile(&id);
	if (!prof)
		return 0;
	return fp_guard_move(id, prof, NULL, FP_HOOK_TASK_ALLOC);
}

/*
 * Whether the current task may not act on `target` because `target` is held (fp_held)
 * and the current task is governed by a profile (not the enforcer, which continues or
 * kills it). The enforcer's own continue or kill ends the hold.
 */
static __always_inline int fp_held_from_workload(struct task_struct *target, int ends_hold)
{
	__u32 tgid = BPF_CORE_READ(target, tgid);
	struct fp_config *cfg;
	__u32 zero = 0, id;
	__u64 *start;

	start = bpf_map_lookup_elem(&fp_held, &tgid);
	if (!start || *start != fp_group_start(target))
		return 0;
	cfg = bpf_map_lookup_elem(&fp_config_map, &zero);
	if (fp_is_active() && fp_bound_profile(&id) &&
	    (!cfg || cfg->enforcer_tgid != bpf_get_current_pid_tgid() >> 32))
		return 1;
	if (ends_hold)
		bpf_map_delete_elem(&fp_held, &tgid);
	return 0;
}

/* -EPERM if `refuse`, else 0, by a branch: clang would compute `refuse ? -1 : 0` as a
 * negation, whose result the verifier cannot bound to an LSM return's [-4095, 0]. The
 * empty asm in one arm cannot be hoisted, so the branch stays. */
static __always_inline int fp_refuse_if(int refuse)
{
	if (refuse) {
		asm volatile("");
		return -EPERM;
	}
	return 0;
}

SEC("lsm/task_kill")
int BPF_PROG(guard_held_signal, struct task_struct *p, struct kernel_siginfo *info, int sig,
	     const struct cred *cred, int ret)
{
	if (ret)
		return FP_LSM_PREVIOUS(ret);
	if (sig != SIGCONT && sig != SIGKILL)
		return 0;
	/* Killing a held task is never refused; continuing it from a workload is. */
	return fp_refuse_if(fp_held_from_workload(p, 1) && sig == SIGCONT);
}

SEC("lsm/ptrace_access_check")
int BPF_PROG(guard_held_ptrace, struct task_struct *child, unsigned int mode, int ret)
{
	if (ret)
		return FP_LSM_PREVIOUS(ret);
	return fp_refuse_if(fp_held_from_workload(child, 0));
}

/* The cgroup id of a cgroup: its kernfs node id. */
static __always_inline __u64 fp_cgroup_id(struct cgroup *cgrp)
{
	return BPF_CORE_READ(cgrp, kn, id);
}

/* The profile a rule of `kind` binds cgroup `name` to; `p` holds the name's bytes. */
static __always_inline __u32 *fp_rule_lookup(__u32 kind, const char *name, struct fp_path *p)
{
	struct fp_rule_key key = { .kind = kind };
	struct fp_config *cfg;
	__u32 zero = 0;
	long n;

	cfg = bpf_map_lookup_elem(&fp_config_map, &zero);
	if (!cfg)
		return NULL;
	n = bpf_probe_read_kernel_str(p->data, FP_PATH_MAX, name);
	if (n <= 1)
		return NULL;
	if (!fp_digest_bytes(p, 0, n - 1, cfg, &key.digest))
		return NULL;
	return bpf_map_lookup_elem(&fp_rules, &key);
}

/*
 * Which profile governs a new cgroup (docs/architecture.md, "Which profile governs a
 * cgroup"; user space applies the same rule in src/enforce/binding.rs), first match:
 * 1. a profile written for this very cgroup path (a `cgroup` workload);
 * 2. the parent's profile, if the parent is bound to a workload's profile (other than
 *    the root's): a process of an enforced workload that may create cgroups cannot
 *    leave its profile by naming one after another workload's unit;
 * 3. a profile whose rule names its leaf (a new instance of a systemd unit);
 * 4. below a container scope or a cgroup not named yet: pending (held until user
 *    space names it); below a deny-all cgroup (--default deny): deny-all;
 * 5. nothing: a workload without a profile is left alone.
 * The root cgroup's profile governs the root cgroup only. This runs inside mkdir,
 * before any process can be moved into the cgroup: its first exec is already covered.
 */
SEC("tp_btf/cgroup_mkdir")
int BPF_PROG(bind_cgroup_mkdir, struct cgroup *cgrp, const char *path)
{
	struct fp_enforce_slot *slot;
	struct cgroup *parent;
	__u64 id, parent_id;
	__u32 pending = FP_PROFILE_PENDING;
	__u32 *profile, *inherited;

	if (BPF_CORE_READ(cgrp, root, hierarchy_id) != 0)
		return 0; /* a cgroup v1 hierarchy: ids there are not what exec sees */
	id = fp_cgroup_id(cgrp);
	parent = BPF_CORE_READ(cgrp, self.parent, cgroup);
	parent_id = parent ? fp_cgroup_id(parent) : 0;
	inherited = bpf_map_lookup_elem(&fp_bindings, &parent_id);
	/* The root's own profile is not inherited (markers below it are). */
	if (inherited && fp_is_real_profile(*inherited) &&
	    (!parent || !BPF_CORE_READ(parent, self.parent)))
		inherited = NULL;

	slot = fp_scratch_claim(&fp_enforce_slots);
	if (slot) {
		profile = fp_rule_lookup(FP_RULE_PATH, path, &slot->check.path);
		if (!profile && inherited && fp_is_real_profile(*inherited))
			profile = inherited; /* nested in an enforced workload: stays there */
		if (!profile)
			profile = fp_rule_lookup(FP_RULE_LEAF, BPF_CORE_READ(cgrp, kn, name),
						 &slot->check.path);
		fp_scratch_release(slot);
	} else {
		/* No memory to read the name into, so the rules cannot be applied: leave
		 * the cgroup to user space, which names and binds it at its first exec. */
		profile = &pending;
	}
	if (!profile && inherited)
		/* Below a container scope or a cgroup not named yet: held until user
		 * space names it. Below a deny-all cgroup: deny-all. */
		profile = *inherited == FP_PROFILE_DENY_ALL ? inherited : &pending;
	/* Both enforcements of a takeover bind (each in its own maps); one counts. */
	if (profile && !bpf_map_update_elem(&fp_bindings, &id, profile, BPF_ANY) &&
	    fp_is_active())
		fp_enforce_count(FP_ENFORCE_BOUND);
	return 0;
}

SEC("tp_btf/cgroup_rmdir")
int BPF_PROG(unbind_cgroup_rmdir, struct cgroup *cgrp, const char *path)
{
	__u64 id;

	if (BPF_CORE_READ(cgrp, root, hierarchy_id) != 0)
		return 0;
	id = fp_cgroup_id(cgrp);
	bpf_map_delete_elem(&fp_bindings, &id);
	return 0;
}

/*
 * The decision on a path user space put in fp_test_path (and the content it hashed,
 * if any), run with BPF_PROG_TEST_RUN: the very code the exec hook runs. User space
 * decides held execs with it, and the tests run it on hosts where LSM programs cannot
 * load.
 */
SEC("syscall")
int test_profile_allows(struct fp_test_args *args)
{
	struct fp_enforce_slot *slot;
	struct fp_sha256 given = {};
	struct fp_profile *prof;
	struct fp_config *cfg;
	struct fp_path *p;
	__u32 zero = 0, id;
	int ret = -1;

	cfg = bpf_map_lookup_elem(&fp_config_map, &zero);
	p = bpf_map_lookup_elem(&fp_test_path, &zero);
	if (!cfg || !p || p->start >= FP_PATH_MAX)
		return -1;
	slot = fp_scratch_claim(&fp_enforce_slots);
	if (!slot)
		return -1;
	id = args->profile_id;
	if (fp_digest_bytes(p, p->start, FP_PATH_MAX - p->start, cfg, &slot->check.match.digest)) {
		args->digest.hi = slot->check.match.digest.hi;
		args->digest.lo = slot->check.match.digest.lo;
		/* A pointer into the context cannot be handed on: copy the content. */
		if (args->has_content)
			bpf_probe_read_kernel(&given, sizeof(given), &args->content);
		prof = bpf_map_lookup_elem(&fp_profiles, &id);
		args->reason = prof ? fp_profile_decide(id, prof, p, cfg, &slot->check.match, NULL,
						       args->has_content ? &given : NULL)
				    : FP_REASON_NO_PROFILE;
		args->allowed = !args->reason;
		ret = 0;
	}
	fp_scratch_release(slot);
	return ret;
}

/*
 * Take (and reset) the count of violations folded of one kind, run by user space
 * with BPF_PROG_TEST_RUN: an atomic exchange, so a count added meanwhile by an exec
 * on another CPU is either taken now or left for the next take, never lost.
 */
SEC("syscall")
int take_repeats(struct fp_take_args *args)
{
	struct fp_enforce_slot *slot;
	struct fp_fold *f;

	slot = fp_scratch_claim(&fp_enforce_slots);
	if (!slot)
		return -1;
	__builtin_memcpy(&slot->fold, &args->key, sizeof(slot->fold));
	f = bpf_map_lookup_elem(&fp_folds, &slot->fold);
	args->taken = f ? __sync_lock_test_and_set(&f->pending, 0) : 0;
	fp_scratch_release(slot);
	return 0;
}
