/* SPDX-License-Identifier: (GPL-2.0 OR Apache-2.0) */
/*
 * Builds the exec event shared by every hook: one place decides what an exec looks
 * like, so an event from sched_process_exec and one from bprm_check_security differ
 * only in their `hook`. The caller hands in memory private to its run (scratch.h).
 */
#ifndef FINGERPRINT_EXEC_EVENT_H
#define FINGERPRINT_EXEC_EVENT_H

#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_core_read.h>
#include "fingerprint.h"
#include "path.h"
#include "file_identity.h"

/* Header plus room for every path; offsets are masked, hence one path of slack. */
struct fp_event_buf {
	struct fp_exec_event hdr;
	__u8 data[(FP_EVENT_PATHS + 1) * FP_PATH_MAX];
};

#define FP_EVENT_OFFSET_MASK (FP_EVENT_PATHS * FP_PATH_MAX - 1)

/* Resolve a path and append it to the event; returns the new end offset. */
static __always_inline __u32 fp_append_path(struct fp_event_buf *ev, __u32 off, int slot,
					    struct fp_path *p, __u64 file_path, __u64 root)
{
	__u32 len = fp_resolve_path(p, file_path, root);

	len &= FP_PATH_MAX - 1;
	bpf_probe_read_kernel(&ev->data[off & FP_EVENT_OFFSET_MASK], len,
			      &p->data[p->start & (FP_PATH_MAX - 1)]);
	ev->hdr.len[slot & (FP_EVENT_PATHS - 1)] = len;
	ev->hdr.path_flags[slot & (FP_EVENT_PATHS - 1)] = p->flags;
	return off + len;
}

/* The header fields every event has: who did it, where and when. */
static __always_inline void fp_start_event(struct fp_event_buf *ev, struct task_struct *task,
					   __u16 hook)
{
	ev->hdr.cgroup_id = bpf_get_current_cgroup_id();
	ev->hdr.ktime_ns = bpf_ktime_get_ns();
	ev->hdr.pid = bpf_get_current_pid_tgid() >> 32;
	ev->hdr.ppid = BPF_CORE_READ(task, real_parent, tgid);
	ev->hdr.uid = (__u32)bpf_get_current_uid_gid();
	ev->hdr.hook = hook;
	ev->hdr.event_flags = 0;
	ev->hdr.profile_id = 0;
	ev->hdr.action = 0;
	ev->hdr.reason = 0;
}

/*
 * Fill `ev` for the exec of `bprm` by the current task, resolving each path in `p`.
 * Returns the size of the event.
 */
static __always_inline __u32 fp_build_exec_event(struct linux_binprm *bprm, __u16 hook,
						  struct fp_event_buf *ev, struct fp_path *p)
{
	struct task_struct *task = (struct task_struct *)bpf_get_current_task();
	struct fs_struct *fs = BPF_CORE_READ(task, fs);
	struct file *exe = BPF_CORE_READ(bprm, file);
	struct file *parent_exe = BPF_CORE_READ(task, real_parent, mm, exe_file);
	const char *filename = BPF_CORE_READ(bprm, filename);
	__u64 root = (__u64)&fs->root;
	__u32 off = 0;
	long n;

	fp_start_event(ev, task, hook);
	if ((void *)BPF_CORE_READ(bprm, interp) != (void *)filename)
		ev->hdr.event_flags |= FP_EVENT_INTERPRETED;

	fp_read_file_id(&ev->hdr.exe_id, exe);
	off = fp_append_path(ev, off, FP_EVENT_PATH_EXE, p, (__u64)&exe->f_path, root);
	off = fp_append_path(ev, off, FP_EVENT_PATH_PARENT, p,
			     parent_exe ? (__u64)&parent_exe->f_path : 0, root);

	n = bpf_probe_read_kernel_str(&ev->data[off & FP_EVENT_OFFSET_MASK], FP_PATH_MAX,
				      filename);
	n = n > 0 ? n - 1 : 0; /* drop the NUL */
	ev->hdr.len[FP_EVENT_PATH_FILENAME] = n;
	ev->hdr.path_flags[FP_EVENT_PATH_FILENAME] = n >= FP_PATH_MAX - 1 ? FP_PATH_TRUNCATED : 0;
	off += n & (FP_PATH_MAX - 1);

	/* A script named relative to the cwd can only be placed with the cwd. */
	if ((ev->hdr.event_flags & FP_EVENT_INTERPRETED) && n > 0 &&
	    ev->data[(off - n) & FP_EVENT_OFFSET_MASK] != '/') {
		off = fp_append_path(ev, off, FP_EVENT_PATH_CWD, p, (__u64)&fs->pwd, root);
	} else {
		ev->hdr.len[FP_EVENT_PATH_CWD] = 0;
		ev->hdr.path_flags[FP_EVENT_PATH_CWD] = FP_PATH_ABSENT;
	}

	return sizeof(ev->hdr) + (off & FP_EVENT_OFFSET_MASK);
}

/*
 * Fill `ev` for something the current task did that is not an exec (a cgroup move):
 * `exe` is its own executable, `parent` its parent's, and `filename` the path of
 * `target` (the cgroup file it opened), if any. Returns the size of the event.
 */
static __always_inline __u32 fp_build_task_event(struct file *target, __u16 hook,
						  struct fp_event_buf *ev, struct fp_path *p)
{
	struct task_struct *task = (struct task_struct *)bpf_get_current_task();
	struct fs_struct *fs = BPF_CORE_READ(task, fs);
	struct file *exe = BPF_CORE_READ(task, mm, exe_file);
	struct file *parent_exe = BPF_CORE_READ(task, real_parent, mm, exe_file);
	__u64 root = (__u64)&fs->root;
	__u32 off = 0;

	fp_start_event(ev, task, hook);
	fp_read_file_id(&ev->hdr.exe_id, exe);
	off = fp_append_path(ev, off, FP_EVENT_PATH_EXE, p, exe ? (__u64)&exe->f_path : 0, root);
	off = fp_append_path(ev, off, FP_EVENT_PATH_PARENT, p,
			     parent_exe ? (__u64)&parent_exe->f_path : 0, root);
	off = fp_append_path(ev, off, FP_EVENT_PATH_FILENAME, p,
			     target ? (__u64)&target->f_path : 0, root);
	ev->hdr.len[FP_EVENT_PATH_CWD] = 0;
	ev->hdr.path_flags[FP_EVENT_PATH_CWD] = FP_PATH_ABSENT;
	return sizeof(ev->hdr) + (off & FP_EVENT_OFFSET_MASK);
}

#endif /* FINGERPRINT_EXEC_EVENT_H */
