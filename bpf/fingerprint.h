/* SPDX-License-Identifier: (GPL-2.0 OR Apache-2.0) */
/*
 * Layouts that cross between the BPF programs and Rust. Only what crosses lives here;
 * Rust reads these types from the skeleton's BTF, never from a hand-copied twin.
 */
#ifndef FINGERPRINT_H
#define FINGERPRINT_H

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
};

enum fp_event_path {
	FP_EVENT_PATH_EXE = 0,
	FP_EVENT_PATH_PARENT = 1,
	FP_EVENT_PATH_FILENAME = 2,
	FP_EVENT_PATH_CWD = 3,
};

#endif /* FINGERPRINT_H */
