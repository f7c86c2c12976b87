// SPDX-License-Identifier: (GPL-2.0 OR Apache-2.0)
/*
 * BENCHMARK ONLY (`make bench-scale`, benches/scale/kernel_hash.rs): what hashing the
 * executable in the kernel would cost at exec (issue #12). fingerprint hashes a file
 * version's first exec in user space while the task is held; the alternative is a
 * sleepable LSM program asking IMA for the file's digest. This program does only that,
 * for the benchmark's cgroup (a constant set before load), and records what the helpers
 * returned and how long they took; it never denies.
 *
 * bpf_ima_file_hash hashes the open file now (IMA's algorithm, CONFIG_IMA_DEFAULT_HASH
 * or ima_hash=) unless an IMA policy rule already measured it; bpf_ima_inode_hash only
 * returns such a cached measurement (-EOPNOTSUPP without one). Both need a sleepable
 * program: `lsm.s`.
 */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>

char LICENSE[] SEC("license") = "Dual BSD/GPL";

/* The benchmark's cgroup; set by user space before load. */
const volatile __u64 kh_cgroup = 0;

/* Room for IMA's largest digest (SHA-512). */
#define KH_DIGEST_MAX 64

/* The last exec's result; user space reads it after each exec (one at a time). */
struct kh_result {
	__u64 count;          /* execs seen in the cgroup */
	__u64 file_hash_ns;   /* time in bpf_ima_file_hash, last exec */
	__u64 inode_hash_ns;  /* time in bpf_ima_inode_hash, last exec */
	__s64 file_hash_ret;  /* IMA's hash algorithm (enum hash_algo), or -errno */
	__s64 inode_hash_ret; /* the same, from the cached measurement */
	__u8 file_digest[KH_DIGEST_MAX];
};

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct kh_result);
} kh_results SEC(".maps");

SEC("lsm.s/bprm_check_security")
int BPF_PROG(kh_bprm_check_security, struct linux_binprm *bprm)
{
	__u8 cached[KH_DIGEST_MAX];
	struct kh_result *r;
	__u32 zero = 0;
	__u64 started;

	if (bpf_get_current_cgroup_id() != kh_cgroup)
		return 0;
	r = bpf_map_lookup_elem(&kh_results, &zero);
	if (!r)
		return 0;
	started = bpf_ktime_get_ns();
	r->inode_hash_ret = bpf_ima_inode_hash(bprm->file->f_inode, cached, sizeof(cached));
	r->inode_hash_ns = bpf_ktime_get_ns() - started;
	started = bpf_ktime_get_ns();
	r->file_hash_ret = bpf_ima_file_hash(bprm->file, r->file_digest, sizeof(r->file_digest));
	r->file_hash_ns = bpf_ktime_get_ns() - started;
	r->count++;
	return 0;
}
