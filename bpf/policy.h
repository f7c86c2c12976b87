/* SPDX-License-Identifier: (GPL-2.0 OR Apache-2.0) */
/*
 * The enforcement decision, shared by the LSM program, the kill fallback and the
 * program user space runs on held execs (test_profile_allows): cgroup -> profile (one
 * hash lookup), then the canonical path's keyed digest in the profile's sorted
 * allowlist (binary search), then the profile's own patterns. A path pinned to content
 * is allowed only with a listed content: the version's digest (content.h) with the
 * path, as one more keyed digest in the profile's sorted pairs. Nothing here depends on
 * how many workloads are loaded. The memory a decision works in is handed in by the
 * caller, private to its run (scratch.h).
 */
#ifndef FINGERPRINT_POLICY_H
#define FINGERPRINT_POLICY_H

#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_core_read.h>
#include "fingerprint.h"
#include "path.h"
#include "siphash.h"
#include "content.h"

/* Most glob steps per pattern; a pattern that needs more does not match (fails closed). */
#define FP_GLOB_MAX_STEPS 8192
/* Halvings of the allowlist search: enough for 2^32 entries. */
#define FP_SEARCH_MAX_STEPS 32

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct fp_config);
} fp_config_map SEC(".maps");

/* cgroup id -> profile id. Sized by user space; entries only for bound cgroups. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__uint(max_entries, 65536);
	__type(key, __u64);
	__type(value, __u32);
} fp_bindings SEC(".maps");

/* profile id -> where its digests are. Replaced atomically on reload. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct fp_profile);
} fp_profiles SEC(".maps");

/* Every profile's sorted digests, back to back. Sized by user space, which maps it
 * and writes digests with plain stores: 250,000 of them would otherwise be as many
 * element copies through the bpf() system call. */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(map_flags, BPF_F_MMAPABLE);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct fp_digest);
} fp_allow SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__uint(max_entries, 1);
	__type(key, struct fp_pattern_key);
	__type(value, struct fp_pattern);
} fp_patterns SEC(".maps");

/* Binds a cgroup to a profile when it is created: by full path or by leaf name. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__uint(max_entries, 1);
	__type(key, struct fp_rule_key);
	__type(value, __u32);
} fp_rules SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, FP_ENFORCE_COUNTER_MAX);
	__type(key, __u32);
	__type(value, __u64);
} fp_enforce_counters SEC(".maps");

/* Glob matcher state; kept in memory so the verifier checks one step function. */
struct fp_glob {
	__u32 start; /* the path is data[start, start + len) */
	__u32 len;
	__u32 p;     /* position in the pattern */
	__u32 s;     /* position in the path */
	__u32 star;  /* position of the last '*' in the pattern, or FP_GLOB_NO_STAR */
	__u32 match; /* path position the last '*' has consumed up to */
};

#define FP_GLOB_NO_STAR 0xffffffff

/* The matchers' state: the path's digest, the glob matcher, and the content check's
 * version, (path, content) key and its digest. */
struct fp_match {
	struct fp_digest digest;
	struct fp_glob glob;
	struct fp_file_id version;
	struct fp_content_key content;
	struct fp_digest pair;
};

/* Everything one exec decision writes: the path and the matchers' state. */
struct fp_check_mem {
	struct fp_path path;
	struct fp_match match;
};

static __always_inline void fp_enforce_count(__u32 counter)
{
	__u64 *value = bpf_map_lookup_elem(&fp_enforce_counters, &counter);

	/* Atomic: a task preempted between a load and a store would lose a count. */
	if (value)
		__sync_fetch_and_add(value, 1);
}

/* Whether `d` is among the sorted digests fp_allow[offset, offset + count). */
__noinline int fp_sorted_contains(__u32 offset, __u32 count, const struct fp_digest *d)
{
	__u32 lo = 0, hi = count, mid, index, i;
	struct fp_digest *e;

	if (!d)
		return 0;
	for (i = 0; i < FP_SEARCH_MAX_STEPS; i++) {
		if (lo >= hi)
			break;
		mid = lo + (hi - lo) / 2;
		index = offset + mid;
		e = bpf_map_lookup_elem(&fp_allow, &index);
		if (!e)
			return 0;
		if (e->hi == d->hi && e->lo == d->lo)
			return 1;
		if (e->hi < d->hi || (e->hi == d->hi && e->lo < d->lo))
			lo = mid + 1;
		else
			hi = mid;
	}
	return 0;
}

enum fp_glob_step { FP_GLOB_MORE = 0, FP_GLOB_MATCH = 1, FP_GLOB_FAIL = 2 };

/* One step of glob matching with backtracking to the last star; a star never
 * consumes '/'. */
__noinline int fp_glob_step(struct fp_glob *g, const struct fp_pattern *pat,
			    const struct fp_path *path)
{
	__u32 plen;
	char c, pc;

	if (!g || !pat || !path)
		return FP_GLOB_FAIL;
	plen = pat->len;
	if (plen > FP_PATTERN_MAX)
		return FP_GLOB_FAIL;
	pc = g->p < plen ? pat->bytes[g->p & (FP_PATTERN_MAX - 1)] : 0;
	if (g->s >= g->len) {
		if (g->p < plen && pc == '*') {
			g->p++;
			return FP_GLOB_MORE;
		}
		return g->p == plen ? FP_GLOB_MATCH : FP_GLOB_FAIL;
	}
	c = path->data[(g->start + g->s) & (FP_PATH_MAX - 1)];
	if (g->p < plen && pc == '*') {
		g->star = g->p++;
		g->match = g->s;
		return FP_GLOB_MORE;
	}
	if (g->p < plen && pc == c) {
		g->p++;
		g->s++;
		return FP_GLOB_MORE;
	}
	if (g->star != FP_GLOB_NO_STAR) {
		if (path->data[(g->start + g->match) & (FP_PATH_MAX - 1)] == '/')
			return FP_GLOB_FAIL;
		g->match++;
		g->s = g->match;
		g->p = g->star + 1;
		return FP_GLOB_MORE;
	}
	return FP_GLOB_FAIL;
}

__noinline int fp_glob_match(struct fp_glob *g, const struct fp_pattern *pat,
			     const struct fp_path *path)
{
	int i, step;

	if (!g || !pat || !path)
		return 0;
	g->start = path->start;
	g->len = FP_PATH_MAX - path->start;
	g->p = 0;
	g->s = 0;
	g->star = FP_GLOB_NO_STAR;
	g->match = 0;
	for (i = 0; i < FP_GLOB_MAX_STEPS; i++) {
		step = fp_glob_step(g, pat, path);
		if (step != FP_GLOB_MORE)
			return step == FP_GLOB_MATCH;
	}
	return 0;
}

/* What a profile says of a path: nothing, any content, or only pinned contents. */
enum fp_path_match { FP_PATH_NOT_LISTED = 0, FP_PATH_ANY_CONTENT = 1, FP_PATH_PINNED = 2 };

/* How profile `id` lists the resolved path `p`; `m` is the matchers' memory, and holds
 * the path's digest afterwards. An exact entry decides before the patterns: a path
 * pinned to content stays pinned where a pattern would also match it. */
static __always_inline int fp_profile_lists(__u32 id, const struct fp_profile *prof,
					    const struct fp_path *p,
					    const struct fp_config *cfg, struct fp_match *m)
{
	struct fp_pattern_key key = { .profile_id = id };
	struct fp_pattern *pattern;
	__u32 i;

	if (p->start >= FP_PATH_MAX)
		return FP_PATH_NOT_LISTED;
	if (!fp_digest_bytes(p, p->start, FP_PATH_MAX - p->start, cfg, &m->digest))
		return FP_PATH_NOT_LISTED;
	if (fp_sorted_contains(prof->allow_offset, prof->allow_count, &m->digest))
		return FP_PATH_ANY_CONTENT;
	if (prof->pinned_count &&
	    fp_sorted_contains(prof->allow_offset + prof->allow_count, prof->pinned_count,
			       &m->digest))
		return FP_PATH_PINNED;
	for (i = 0; i < FP_MAX_PATTERNS; i++) {
		if (i >= prof->pattern_count)
			break;
		key.index = prof->pattern_base + i;
		pattern = bpf_map_lookup_elem(&fp_patterns, &key);
		if (pattern && fp_glob_match(&m->glob, pattern, p))
			return FP_PATH_ANY_CONTENT;
	}
	return FP_PATH_NOT_LISTED;
}

/*
 * The decision on path `p` under profile `id`: 0 (allowed) or the enum fp_reason of a
 * violation; FP_REASON_CONTENT_UNKNOWN when the path is pinned and the content is not
 * known. `content` is the content when the caller knows it (user space, after
 * hashing); else it is looked up by the version of `file` (NULL: none). Shared by the
 * exec hooks and test_profile_allows, so user space decides held execs with this code.
 */
static __always_inline __u16 fp_profile_decide(__u32 id, const struct fp_profile *prof,
					       const struct fp_path *p,
					       const struct fp_config *cfg, struct fp_match *m,
					       struct file *file,
					       const struct fp_sha256 *content)
{
	__u32 pairs;

	switch (fp_profile_lists(id, prof, p, cfg, m)) {
	case FP_PATH_ANY_CONTENT:
		return 0;
	case FP_PATH_PINNED:
		break;
	default:
		return FP_REASON_NOT_ALLOWED;
	}
	if (!cfg->check_content)
		return 0;
	if (!content && file)
		content = fp_known_content(file, &m->version);
	if (!content)
		return FP_REASON_CONTENT_UNKNOWN;
	m->content.path = m->digest;
	__builtin_memcpy(&m->content.content, content, sizeof(m->content.content));
	if (!fp_digest_content(&m->content, cfg, &m->pair))
		return FP_REASON_CONTENT_MISMATCH;
	pairs = prof->allow_offset + prof->allow_count + prof->pinned_count;
	if (fp_sorted_contains(pairs, prof->pair_count, &m->pair))
		return 0;
	return FP_REASON_CONTENT_MISMATCH;
}

/* The verdict on one file executed by the current task. */
struct fp_verdict {
	__u32 profile_id;
	__u16 reason; /* enum fp_reason when mode != 0 */
	/* 0: allowed (or not profiled), else enum fp_mode. 64 bits wide: the LSM hook's
	 * return is checked on the whole register, and clang may return this register
	 * where the C code says `return 0` once it knows the low half is zero. */
	__u64 mode;
};

/* The profile bound to the current task's cgroup, in *id. 0: none, the exec is left
 * alone (not a profiled workload, or a container scope's own cgroup). */
static __always_inline int fp_bound_profile(__u32 *id)
{
	__u64 cgroup = bpf_get_current_cgroup_id();
	__u32 *bound = bpf_map_lookup_elem(&fp_bindings, &cgroup);

	if (!bound || *bound == FP_PROFILE_SCOPE)
		return 0;
	*id = *bound;
	return 1;
}

/*
 * The verdict on `file`, executed by the current task, whose cgroup is bound to
 * profile `id` (fp_bound_profile). `mem` is memory private to this run; NULL when
 * none was free (scratch.h), and then nothing can be proven and the exec fails
 * closed: the profile's mode applies as to a violation, and a pending cgroup's exec
 * is blocked instead of held, since no event could tell user space about it.
 * Fills *verdict; passed by pointer so that each field is a separate, zero-extended
 * load (a by-value struct is packed into registers, and the LSM return check sees the
 * packed upper half).
 */
static __always_inline void fp_check_exec(struct file *file, __u32 id,
					  struct fp_check_mem *mem, struct fp_verdict *verdict)
{
	struct task_struct *task;
	struct fs_struct *fs;
	struct fp_profile *prof;
	struct fp_config *cfg;
	struct fp_path *p;
	__u32 zero = 0;

	verdict->profile_id = id;
	verdict->mode = 0;
	verdict->reason = 0;
	cfg = bpf_map_lookup_elem(&fp_config_map, &zero);
	if (!cfg)
		return;
	if (id == FP_PROFILE_PENDING) {
		/* Not named yet: neither allowed nor denied here; no mode override. */
		verdict->reason = FP_REASON_UNCLASSIFIED;
		if (mem) {
			fp_enforce_count(FP_ENFORCE_HELD);
			verdict->mode = FP_MODE_HOLD;
			return;
		}
		verdict->mode = FP_MODE_ENFORCE;
		fp_enforce_count(FP_ENFORCE_VIOLATIONS);
		return;
	}
	fp_enforce_count(FP_ENFORCE_CHECKS);
	prof = bpf_map_lookup_elem(&fp_profiles, &id);
	if (!prof || id == FP_PROFILE_DENY_ALL) {
		/* Deny-all, or bound to a profile that is not loaded: fail closed. */
		verdict->mode = FP_MODE_ENFORCE;
		verdict->reason = FP_REASON_NO_PROFILE;
	} else if (!mem) {
		verdict->mode = prof->mode;
	} else {
		/* Only profiled execs pay for the task's root. */
		p = &mem->path;
		task = (struct task_struct *)bpf_get_current_task();
		fs = BPF_CORE_READ(task, fs);
		fp_resolve_path(p, (__u64)&file->f_path, (__u64)&fs->root);
		if (p->flags & (FP_PATH_TRUNCATED | FP_PATH_DELETED | FP_PATH_UNREACHABLE |
				FP_PATH_ABSENT))
			verdict->reason = FP_REASON_UNNAMEABLE;
		else
			verdict->reason = fp_profile_decide(id, prof, p, cfg, &mem->match, file,
							    NULL);
		if (!verdict->reason)
			return;
		if (verdict->reason == FP_REASON_CONTENT_UNKNOWN) {
			/* First exec of this version: held, hashed and decided by user
			 * space (enforce/identity.rs), which then caches its digest. */
			fp_enforce_count(FP_ENFORCE_HELD);
			verdict->mode = FP_MODE_HOLD;
			return;
		}
		verdict->mode = prof->mode;
	}
	if (cfg->mode_override)
		verdict->mode = cfg->mode_override;
	fp_enforce_count(FP_ENFORCE_VIOLATIONS);
}

#endif /* FINGERPRINT_POLICY_H */
