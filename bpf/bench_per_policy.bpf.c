// SPDX-License-Identifier: (GPL-2.0 OR Apache-2.0)
/*
 * BENCHMARK ONLY (`make bench-scale`): the per-policy design fingerprint replaces, so
 * the two can be measured side by side. User space loads one copy of this object per
 * workload and attaches each copy's program to the exec hook, as one TracingPolicy
 * per workload does: every exec runs every copy.
 *
 * Each copy asks "is this my cgroup" (a constant set before load: the cheapest check
 * possible, which flatters this design), and only the matching copy resolves the path
 * and looks it up in its own allowlist. To be fair the path routine and the digest
 * are fingerprint's own (fp_resolve_path, keyed SipHash); the real design uses
 * bpf_d_path. Memory is mimicked honestly: each copy has its own preallocated
 * 32768-entry allowlist map and its own per-CPU path buffer, as each policy there has
 * its own preallocated maps and per-CPU heaps.
 */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>
#include <bpf/bpf_core_read.h>
#include "siphash.h"

char LICENSE[] SEC("license") = "Dual BSD/GPL";

#define EPERM 1
#define SIGKILL 9
/* The per-policy map size of the design being compared (preallocated). */
#define PP_ALLOW_ENTRIES 32768

/* The cgroup this copy's policy is for; set by user space before load. */
const volatile __u64 pp_policy_cgroup = 0;

/* The digest key (an array, not rodata: global functions need writable memory). */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct fp_config);
} pp_config SEC(".maps");

/* This policy's allowed executables: digest -> 1. Preallocated, as there. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, PP_ALLOW_ENTRIES);
	__type(key, struct fp_digest);
	__type(value, __u8);
} pp_allow SEC(".maps");

/* This policy's own per-CPU path buffer. */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct fp_path);
} pp_path_scratch SEC(".maps");

/* 1 if this copy's policy denies the exec, else 0. The cgroup test comes first, so
 * a copy for another workload costs as little as it can. */
static __always_inline int pp_denies(struct linux_binprm *bprm)
{
	struct fp_digest digest = {};
	struct task_struct *task;
	struct fp_config *cfg;
	struct fs_struct *fs;
	struct fp_path *p;
	struct file *file;
	__u32 zero = 0;

	if (bpf_get_current_cgroup_id() != pp_policy_cgroup)
		return 0; /* not my workload: every other copy pays this much */
	task = (struct task_struct *)bpf_get_current_task();
	fs = BPF_CORE_READ(task, fs);
	file = BPF_CORE_READ(bprm, file);
	cfg = bpf_map_lookup_elem(&pp_config, &zero);
	p = bpf_map_lookup_elem(&pp_path_scratch, &zero);
	if (!cfg || !p)
		return 1;
	fp_resolve_path(p, (__u64)&file->f_path, (__u64)&fs->root);
	if (p->flags || p->start >= FP_PATH_MAX)
		return 1;
	if (!fp_digest_bytes(p, p->start, FP_PATH_MAX - p->start, cfg, &digest))
		return 1;
	return bpf_map_lookup_elem(&pp_allow, &digest) ? 0 : 1;
}

SEC("lsm/bprm_check_security")
int BPF_PROG(per_policy_bprm_check_security, struct linux_binprm *bprm, int ret)
{
	if (ret)
		return FP_LSM_PREVIOUS(ret);
	return pp_denies(bprm) ? -EPERM : 0;
}

SEC("tp_btf/sched_process_exec")
int BPF_PROG(per_policy_sched_process_exec, struct task_struct *task, pid_t old_pid,
	     struct linux_binprm *bprm)
{
	if (pp_denies(bprm))
		bpf_send_signal(SIGKILL);
	return 0;
}
