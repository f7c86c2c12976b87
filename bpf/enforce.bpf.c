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

char LICENSE[] SEC("license") = "Dual BSD/GPL";

#define EPERM 1
#define SIGKILL 9
#define SIGSTOP 19

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

/* Input of the test-run program: a resolved path to check. */
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
};

/* Keep the shared types in BTF for the skeleton. */
struct fp_exec_event _fp_exec_event = {};
struct fp_config _fp_config = {};
struct fp_profile _fp_profile = {};
struct fp_pattern _fp_pattern = {};
struct fp_pattern_key _fp_pattern_key = {};
struct fp_rule_key _fp_rule_key = {};
struct fp_digest _fp_digest = {};
struct fp_test_args _fp_test_args = {};
struct fp_path _fp_path = {};
enum fp_mode _fp_mode = 0;
enum fp_action _fp_action = 0;
enum fp_reason _fp_reason = 0;
enum fp_rule_kind _fp_rule_kind = 0;
enum fp_enforce_counter _fp_enforce_counter = 0;

static __always_inline void fp_report(struct linux_binprm *bprm, __u16 hook,
				      struct fp_verdict *v, __u16 action)
{
	struct fp_event_buf *ev;
	__u32 size = 0;

	ev = fp_build_exec_event(bprm, hook, &size);
	if (!ev) {
		fp_enforce_count(FP_ENFORCE_DROPPED);
		return;
	}
	ev->hdr.profile_id = v->profile_id;
	ev->hdr.action = action;
	ev->hdr.reason = v->reason;
	if (size > sizeof(*ev) || bpf_ringbuf_output(&fp_violations, ev, size, 0))
		fp_enforce_count(FP_ENFORCE_DROPPED);
}

SEC("lsm/bprm_check_security")
int BPF_PROG(enforce_bprm_check_security, struct linux_binprm *bprm, int ret)
{
	struct fp_verdict v;

	if (ret)
		return FP_LSM_PREVIOUS(ret);
	if (!fp_is_active())
		return 0;
	fp_check_exec(BPF_CORE_READ(bprm, file), &v);
	if (!v.mode)
		return 0;
	if (v.mode == FP_MODE_HOLD) {
		/*
		 * No profile is known yet, so there is nothing to deny against: let the
		 * exec proceed and stop the new image before its first instruction; user
		 * space names the cgroup and kills it if its profile forbids this file.
		 * (For this one exec, the LSM gives kill-mode semantics.)
		 */
		bpf_send_signal(SIGSTOP);
		fp_report(bprm, FP_HOOK_BPRM_CHECK_SECURITY, &v, FP_ACTION_HELD);
		return 0;
	}
	if (v.mode == FP_MODE_ENFORCE) {
		fp_report(bprm, FP_HOOK_BPRM_CHECK_SECURITY, &v, FP_ACTION_DENIED);
		return -EPERM;
	}
	fp_report(bprm, FP_HOOK_BPRM_CHECK_SECURITY, &v, FP_ACTION_AUDITED);
	return 0;
}

/* Fallback: the exec has happened; the new image is killed before it runs. */
SEC("tp_btf/sched_process_exec")
int BPF_PROG(enforce_sched_process_exec, struct task_struct *task, pid_t old_pid,
	     struct linux_binprm *bprm)
{
	struct fp_verdict v;

	if (!fp_is_active())
		return 0;
	fp_check_exec(BPF_CORE_READ(bprm, file), &v);
	if (!v.mode)
		return 0;
	if (v.mode == FP_MODE_HOLD) {
		/* Stopped before it runs; user space continues or kills it. */
		bpf_send_signal(SIGSTOP);
		fp_report(bprm, FP_HOOK_SCHED_PROCESS_EXEC, &v, FP_ACTION_HELD);
		return 0;
	}
	if (v.mode == FP_MODE_ENFORCE) {
		bpf_send_signal(SIGKILL);
		fp_report(bprm, FP_HOOK_SCHED_PROCESS_EXEC, &v, FP_ACTION_KILLED);
	} else {
		fp_report(bprm, FP_HOOK_SCHED_PROCESS_EXEC, &v, FP_ACTION_AUDITED);
	}
	return 0;
}

/* The cgroup id of a cgroup: its kernfs node id. */
static __always_inline __u64 fp_cgroup_id(struct cgroup *cgrp)
{
	return BPF_CORE_READ(cgrp, kn, id);
}

static __always_inline __u32 *fp_rule_lookup(__u32 kind, const char *name)
{
	struct fp_rule_key key = { .kind = kind };
	struct fp_config *cfg;
	struct fp_path *p;
	__u32 zero = 0;
	long n;

	cfg = bpf_map_lookup_elem(&fp_config_map, &zero);
	p = bpf_map_lookup_elem(&fp_path_scratch, &zero);
	if (!cfg || !p)
		return NULL;
	n = bpf_probe_read_kernel_str(p->data, FP_PATH_MAX, name);
	if (n <= 1)
		return NULL;
	if (!fp_digest_bytes(p, 0, n - 1, cfg, &key.digest))
		return NULL;
	return bpf_map_lookup_elem(&fp_rules, &key);
}

/* A profile of a workload, as opposed to a marker (scope, pending, deny-all). */
static __always_inline int fp_is_real_profile(__u32 id)
{
	return id != FP_PROFILE_SCOPE && id != FP_PROFILE_PENDING && id != FP_PROFILE_DENY_ALL;
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

	profile = fp_rule_lookup(FP_RULE_PATH, path);
	if (!profile && inherited && fp_is_real_profile(*inherited))
		profile = inherited; /* nested in an enforced workload: stays there */
	if (!profile)
		profile = fp_rule_lookup(FP_RULE_LEAF, BPF_CORE_READ(cgrp, kn, name));
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
 * Test-only: the decision on a path user space put in fp_test_path, run with
 * BPF_PROG_TEST_RUN. Lets the host, where LSM programs cannot load, test the very
 * code the LSM runs.
 */
SEC("syscall")
int test_profile_allows(struct fp_test_args *args)
{
	struct fp_scratch *scratch;
	struct fp_profile *prof;
	struct fp_config *cfg;
	struct fp_path *p;
	__u32 zero = 0, id;

	cfg = bpf_map_lookup_elem(&fp_config_map, &zero);
	p = bpf_map_lookup_elem(&fp_test_path, &zero);
	scratch = bpf_map_lookup_elem(&fp_policy_scratch, &zero);
	if (!cfg || !p || !scratch || p->start >= FP_PATH_MAX)
		return -1;
	id = args->profile_id;
	fp_digest_bytes(p, p->start, FP_PATH_MAX - p->start, cfg, &scratch->digest);
	args->digest.hi = scratch->digest.hi;
	args->digest.lo = scratch->digest.lo;
	prof = bpf_map_lookup_elem(&fp_profiles, &id);
	args->allowed = prof ? fp_profile_allows(id, prof, p, cfg) : 0;
	return 0;
}
