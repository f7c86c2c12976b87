/* SPDX-License-Identifier: (GPL-2.0 OR Apache-2.0) */
/*
 * Layouts that cross between the BPF programs and Rust. Only what crosses lives here;
 * Rust reads these types from the skeleton's BTF, never from a hand-copied twin.
 */
#ifndef FINGERPRINT_H
#define FINGERPRINT_H

#include "vmlinux.h"

/* Longest path resolved (PATH_MAX). Longer paths are flagged FP_PATH_TRUNCATED. */
#define FP_PATH_MAX 4096
/* Longest single name (NAME_MAX + 1); scratch buffers leave this much slack past
 * FP_PATH_MAX so that masked offsets always stay inside them. */
#define FP_NAME_SLACK 256
/* Most directory levels walked per path; deeper paths are flagged FP_PATH_TRUNCATED. */
#define FP_MAX_DEPTH 160
/* Paths carried by one exec event (executable, parent, filename, cwd). */
#define FP_EVENT_PATHS 4

enum fp_path_flags {
	/* Not resolved completely: too long or too deep. Never silently cut. */
	FP_PATH_TRUNCATED = 1,
	/* The file was unlinked (or never linked: memfd) when it was executed. */
	FP_PATH_DELETED = 2,
	/* The file is not reachable from the process's root: a memfd, another mount
	 * namespace's file passed by fd, or a file outside a chroot. */
	FP_PATH_UNREACHABLE = 4,
	/* The path is empty because there was nothing to resolve (no parent mm). */
	FP_PATH_ABSENT = 8,
};

/* Which kernel hook produced an event. */
enum fp_hook {
	FP_HOOK_SCHED_PROCESS_EXEC = 1,
	FP_HOOK_BPRM_CHECK_SECURITY = 2,
	/* The cgroup move guard (LSM only): a cgroup file opened for writing, and a
	 * clone into another cgroup (CLONE_INTO_CGROUP). */
	FP_HOOK_FILE_OPEN = 3,
	FP_HOOK_TASK_ALLOC = 4,
	/* Not an exec: a process already running when learning started, reported by
	 * the task iterator (its exe, parent exe and cwd; no filename). */
	FP_HOOK_RUNNING = 5,
};

enum fp_event_flags {
	/* A binfmt handler replaced the interpreter name: `filename` is a script (or a
	 * binfmt_misc target) and `exe` is its interpreter. */
	FP_EVENT_INTERPRETED = 1,
};

/* Per-CPU counters, summed by user space. */
enum fp_counter {
	FP_COUNTER_EVENTS = 0,  /* exec events seen in a watched cgroup */
	FP_COUNTER_DROPPED = 1, /* events lost because the ring buffer was full */
	FP_COUNTER_MAX = 2,
};

/*
 * Which version of a file was executed, as the kernel saw it at the hook: enough for
 * user space to check that a file it opened later is that same version (device, inode,
 * change time, size), and, with the generation, the future key of a verdict cache per
 * file version. All zero when the hook had no file.
 */
struct fp_file_id {
	__u64 ino;
	__s64 size;
	__s64 ctime_sec;
	__u32 ctime_nsec;
	__u32 dev;        /* super_block s_dev, in the kernel's encoding (major << 20 | minor) */
	__u32 generation; /* i_generation: tells a reused inode number apart, where the fs sets it */
	__u32 pad;
};

/*
 * One exec. The four paths follow the header back to back, in this order, without
 * NUL terminators: exe (canonical path of the file executed at this hook), parent
 * (canonical path of the parent's executable), filename (the name the caller passed,
 * as typed) and cwd (canonical working directory; only for an interpreted file named
 * by a relative path, else empty).
 */
struct fp_exec_event {
	__u64 cgroup_id;
	__u64 ktime_ns;
	__u32 pid;
	__u32 ppid;
	__u32 uid;
	__u16 hook;
	__u16 event_flags;
	__u16 len[FP_EVENT_PATHS];
	__u16 path_flags[FP_EVENT_PATHS];
	/* The file executed at this hook (the `exe` path). */
	struct fp_file_id exe_id;
	/* Enforcement only (zero when learning): the profile checked, what was done
	 * (enum fp_action) and why (enum fp_reason). */
	__u32 profile_id;
	__u16 action;
	__u16 reason;
};

enum fp_event_path {
	FP_EVENT_PATH_EXE = 0,
	FP_EVENT_PATH_PARENT = 1,
	FP_EVENT_PATH_FILENAME = 2,
	FP_EVENT_PATH_CWD = 3,
};

/* ---- Enforcement ---- */

/* Most patterns one profile may carry, and the longest pattern. */
#define FP_MAX_PATTERNS 16
#define FP_PATTERN_MAX 256

enum fp_mode {
	FP_MODE_AUDIT = 1,   /* report, allow */
	FP_MODE_ENFORCE = 2, /* report, deny (LSM) or kill (fallback) */
	FP_MODE_HOLD = 3,    /* unclassified cgroup: stop the task, user space decides */
};

enum fp_action {
	FP_ACTION_AUDITED = 1, /* reported and allowed */
	FP_ACTION_DENIED = 2,  /* exec refused with EPERM by the LSM hook */
	FP_ACTION_KILLED = 3,  /* new image killed with SIGKILL (fallback mechanism) */
	FP_ACTION_HELD = 4,    /* new image stopped (SIGSTOP) until user space decides */
};

enum fp_reason {
	FP_REASON_NOT_ALLOWED = 1,  /* the file is not in the workload's profile */
	FP_REASON_UNNAMEABLE = 2,   /* memfd, deleted, outside the root or truncated path */
	FP_REASON_NO_PROFILE = 3,   /* bound to FP_PROFILE_DENY_ALL, or to a profile not loaded */
	FP_REASON_UNCLASSIFIED = 4, /* a new container cgroup user space has not named yet */
	FP_REASON_CGROUP_MOVE = 5,  /* a task tried to leave its workload's cgroups */
	/* The path is allowed, pinned to content, and the file executed has other content
	 * (drift: an allowed name with another file behind it). */
	FP_REASON_CONTENT_MISMATCH = 6,
	/* The path is pinned to content and the kernel does not know this file version's
	 * digest: held for user space to hash (or, from user space, could not be hashed). */
	FP_REASON_CONTENT_UNKNOWN = 7,
};

/* Keyed SipHash-2-4-128 of a canonical path: the allowlist key. */
struct fp_digest {
	__u64 hi;
	__u64 lo;
};

/* The SHA-256 of a file's bytes. */
struct fp_sha256 {
	__u8 bytes[32];
};

/* What a profile's (path, content) pair is keyed by: the path's digest, then the
 * content's; its keyed SipHash is the pair's entry in the allowlist. */
struct fp_content_key {
	struct fp_digest path;
	struct fp_sha256 content;
};

/* Settings user space may change while enforcing (one array entry). */
struct fp_config {
	__u64 hash_key[2];     /* SipHash key: random per enforcement, never exported */
	__u32 mode_override;   /* 0: each profile's own mode, else enum fp_mode */
	/* 1: entries pinned to content are checked (a user-space enforcer hashes held
	 * execs); 0: they are checked by path only (detached: nobody would decide). */
	__u32 check_content;
	/* The enforcer's process (tgid): it alone, among tasks governed by a profile,
	 * may continue or trace a held task (bpf/enforce.bpf.c, "held tasks"). */
	__u32 enforcer_tgid;
	__u32 reserved;
};

/* The profile unprofiled cgroups are bound to under --default deny: allows nothing. */
#define FP_PROFILE_DENY_ALL 0xffffffff
/*
 * Late binding of containers. A container's cgroup is created by its runtime and can
 * be named only from user space (the runtime's metadata), so the kernel cannot bind
 * it inside mkdir. Instead, cgroups where containers start are bound to
 * FP_PROFILE_SCOPE: their own execs are left alone, and every cgroup created below
 * them is bound to FP_PROFILE_PENDING. An exec in a pending cgroup is held (the task
 * is stopped before its first instruction) until user space has named the cgroup,
 * bound it, and decided on that exec.
 */
#define FP_PROFILE_PENDING 0xfffffffe
#define FP_PROFILE_SCOPE 0xfffffffd

/* A profile as enforced. Its region of the allowlist starts at allow_offset and holds
 * three sorted runs back to back: allow_count digests of path-only paths (any content),
 * pinned_count digests of paths pinned to content, and pair_count digests of the
 * allowed (path, content) pairs (struct fp_content_key). Its patterns are
 * fp_patterns[{id, pattern_base + i}] for i < pattern_count, so a reload writes a new
 * set beside the old one and switches with this one update. */
struct fp_profile {
	__u32 allow_offset;
	__u32 allow_count;
	__u32 pattern_base;
	__u32 pattern_count;
	__u32 mode;
	__u32 pinned_count;
	__u32 pair_count;
	__u32 flags; /* enum fp_profile_flags */
};

enum fp_profile_flags {
	/* The workload's tasks stay in cgroups bound to this profile: writing another
	 * cgroup's files (cgroup.procs, cgroup.threads: a move) and cloning into another
	 * cgroup are refused (`cgroup_moves: deny` in the profile). */
	FP_PROFILE_KEEP_CGROUP = 1,
};

struct fp_pattern_key {
	__u32 profile_id;
	__u32 index;
};

/* A glob over a canonical path: `*` matches any bytes within one component. */
struct fp_pattern {
	__u32 len;
	char bytes[FP_PATTERN_MAX];
};

/* How a new cgroup is bound to a profile when it is created. */
enum fp_rule_kind {
	FP_RULE_PATH = 1, /* the cgroup's full path under the v2 root */
	FP_RULE_LEAF = 2, /* the cgroup directory's own name (a systemd unit) */
};

struct fp_rule_key {
	__u32 kind;
	__u32 pad;
	struct fp_digest digest;
};

enum fp_enforce_counter {
	FP_ENFORCE_CHECKS = 0,     /* execs checked against a profile */
	FP_ENFORCE_VIOLATIONS = 1, /* of which not allowed */
	FP_ENFORCE_DROPPED = 2,    /* violation events lost: ring buffer full */
	FP_ENFORCE_BOUND = 3,      /* cgroups bound at creation by the kernel */
	FP_ENFORCE_HELD = 4,       /* execs held: cgroup not yet classified, or content unknown */
	FP_ENFORCE_MOVES = 5,      /* cgroup moves out of a workload refused or audited */
	FP_ENFORCE_FOLDED = 6,     /* violations folded into a repeat count, not sent */
	FP_ENFORCE_COUNTER_MAX = 7,
};

/*
 * Repeated violations are coalesced in the kernel (fp_folds in enforce.bpf.c): one
 * kind of violation is one cgroup running one version of one file, checked against
 * one profile, with one outcome. The first of a window is sent as an event; the
 * others only count, and user space takes the count (take_repeats).
 */
struct fp_fold_key {
	__u64 cgroup_id;
	struct fp_file_id exe_id;
	__u32 profile_id;
	__u16 action;
	__u16 reason;
};

struct fp_fold {
	__u64 window_start_ns; /* when the last event of this kind was sent; 0: none */
	__u64 pending;         /* violations folded since user space last took them */
};

/* take_repeats' argument: the kind of violation, and (out) the count taken. */
struct fp_take_args {
	struct fp_fold_key key;
	__u64 taken;
};

/* The verdict of the BPF LSM programs that ran before ours on the same hook, kept
 * as it was (an errno) so that observing or allowing never undoes their denial. */
#define FP_LSM_PREVIOUS(ret) ((ret) < 0 && (ret) >= -4095 ? (ret) : ((ret) ? -1 : 0))

#endif /* FINGERPRINT_H */
