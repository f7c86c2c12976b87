// SPDX-License-Identifier: (GPL-2.0 OR Apache-2.0)
/*
 * Learning: one event per exec in a watched cgroup, sent through a ring buffer.
 * Two programs, of which user space loads exactly one: the LSM hook that enforcement
 * uses (observe only), where the kernel allows it, else sched_process_exec.
 * A third, the task iterator, reports the processes already running when learning
 * starts, with the same path routine, so what started before `learn` is learned too.
 */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>
#include <bpf/bpf_core_read.h>
#include "exec_event.h"
#include "scratch.h"

char LICENSE[] SEC("license") = "Dual BSD/GPL";

/* Deepest cgroup level whose ancestors are checked against the watch list. */
#define FP_MAX_CGROUP_LEVEL 32

/* User space polls the ring at least every 100 ms; waking it for every event costs
 * more than building the event. Wake it only when this much is waiting. */
#define FP_WAKEUP_BYTES (1024 * 1024)

/* Set before load: only cgroups in fp_watched_cgroups (and below) are learned. */
const volatile bool filter_cgroups = false;

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 64 * 1024 * 1024);
} fp_events SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 4096);
	__type(key, __u64);
	__type(value, __u8);
} fp_watched_cgroups SEC(".maps");

/* Cgroups already reported. The first exec in any other cgroup wakes user space at
 * once: it must name the cgroup (path, container metadata) before a short-lived
 * cgroup is removed. */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 16384);
	__type(key, __u64);
	__type(value, __u8);
} fp_seen_cgroups SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, FP_COUNTER_MAX);
	__type(key, __u32);
	__type(value, __u64);
} fp_counters SEC(".maps");

/* Memory private to one run (scratch.h): the path being resolved, the event. */
struct fp_learn_slot {
	__u64 busy;
	struct fp_path path;
	struct fp_event_buf event;
};

FP_SCRATCH_MAP(fp_learn_slots, struct fp_learn_slot);

/* Keep the shared types in BTF so the skeleton exposes them to Rust. */
struct fp_exec_event _fp_exec_event = {};
enum fp_path_flags _fp_path_flags = 0;
enum fp_hook _fp_hook = 0;
enum fp_event_flags _fp_event_flags = 0;
enum fp_event_path _fp_event_path = 0;
enum fp_counter _fp_counter = 0;

static __always_inline void fp_count(__u32 counter)
{
	__u64 *value = bpf_map_lookup_elem(&fp_counters, &counter);

	/* Atomic: a task preempted between a load and a store would lose a count. */
	if (value)
		__sync_fetch_and_add(value, 1);
}

static __always_inline bool fp_cgroup_watched(void)
{
	struct task_struct *task = (struct task_struct *)bpf_get_current_task();
	int level = BPF_CORE_READ(task, cgroups, dfl_cgrp, level);
	__u64 id;
	int i;

	if (!filter_cgroups)
		return true;
	for (i = 0; i <= FP_MAX_CGROUP_LEVEL; i++) {
		if (i > level)
			break;
		id = bpf_get_current_ancestor_cgroup_id(i);
		if (bpf_map_lookup_elem(&fp_watched_cgroups, &id))
			return true;
	}
	return false;
}

static __always_inline void fp_record_exec(struct linux_binprm *bprm, __u16 hook)
{
	__u64 cgroup = bpf_get_current_cgroup_id();
	struct fp_learn_slot *slot;
	__u32 size = 0;
	__u64 wakeup;
	__u8 seen = 1;

	if (!fp_cgroup_watched())
		return;
	fp_count(FP_COUNTER_EVENTS);
	slot = fp_scratch_claim(&fp_learn_slots);
	if (!slot) {
		fp_count(FP_COUNTER_DROPPED);
		return;
	}
	size = fp_build_exec_event(bprm, hook, &slot->event, &slot->path);
	wakeup = BPF_RB_NO_WAKEUP;
	if (bpf_ringbuf_query(&fp_events, BPF_RB_AVAIL_DATA) >= FP_WAKEUP_BYTES ||
	    !bpf_map_lookup_elem(&fp_seen_cgroups, &cgroup)) {
		wakeup = BPF_RB_FORCE_WAKEUP;
		bpf_map_update_elem(&fp_seen_cgroups, &cgroup, &seen, BPF_ANY);
	}
	if (size > sizeof(slot->event) ||
	    bpf_ringbuf_output(&fp_events, &slot->event, size, wakeup))
		fp_count(FP_COUNTER_DROPPED);
	fp_scratch_release(slot);
}

SEC("tp_btf/sched_process_exec")
int BPF_PROG(handle_sched_process_exec, struct task_struct *p, pid_t old_pid,
	     struct linux_binprm *bprm)
{
	fp_record_exec(bprm, FP_HOOK_SCHED_PROCESS_EXEC);
	return 0;
}

SEC("lsm/bprm_check_security")
int BPF_PROG(handle_bprm_check_security, struct linux_binprm *bprm, int ret)
{
	fp_record_exec(bprm, FP_HOOK_BPRM_CHECK_SECURITY);
	return FP_LSM_PREVIOUS(ret); /* observe only */
}

/*
 * The event of a process already running: its executable (mm->exe_file), its
 * parent's, and its working directory, each resolved against its own root by the
 * same routine as an exec's. No filename: nothing was typed. User space reads the
 * script of an interpreter from the process's command line and places it with cwd.
 */
static __always_inline __u32 fp_build_running_event(struct task_struct *task,
						    struct file *exe,
						    struct fp_event_buf *ev,
						    struct fp_path *p)
{
	struct fs_struct *fs = BPF_CORE_READ(task, fs);
	struct file *parent_exe = BPF_CORE_READ(task, real_parent, mm, exe_file);
	__u64 root = (__u64)&fs->root;
	__u32 off = 0;

	ev->hdr.cgroup_id = BPF_CORE_READ(task, cgroups, dfl_cgrp, kn, id);
	ev->hdr.ktime_ns = bpf_ktime_get_ns();
	ev->hdr.pid = BPF_CORE_READ(task, tgid);
	ev->hdr.ppid = BPF_CORE_READ(task, real_parent, tgid);
	ev->hdr.uid = BPF_CORE_READ(task, cred, uid.val);
	ev->hdr.hook = FP_HOOK_RUNNING;
	ev->hdr.event_flags = 0;
	ev->hdr.profile_id = 0;
	ev->hdr.action = 0;
	ev->hdr.reason = 0;
	fp_read_file_id(&ev->hdr.exe_id, exe);
	off = fp_append_path(ev, off, FP_EVENT_PATH_EXE, p, (__u64)&exe->f_path, root);
	off = fp_append_path(ev, off, FP_EVENT_PATH_PARENT, p,
			     parent_exe ? (__u64)&parent_exe->f_path : 0, root);
	ev->hdr.len[FP_EVENT_PATH_FILENAME] = 0;
	ev->hdr.path_flags[FP_EVENT_PATH_FILENAME] = FP_PATH_ABSENT;
	off = fp_append_path(ev, off, FP_EVENT_PATH_CWD, p, (__u64)&fs->pwd, root);
	return sizeof(ev->hdr) + (off & FP_EVENT_OFFSET_MASK);
}

/* One record per process (thread-group leader with an executable: kernel threads
 * have none), written back to back into the iterator's output. Every process is
 * reported; user space keeps those in the learned cgroups. */
SEC("iter/task")
int snapshot_running_task(struct bpf_iter__task *ctx)
{
	struct task_struct *task = ctx->task;
	struct fp_learn_slot *slot;
	struct file *exe;
	__u32 size;

	if (!task || BPF_CORE_READ(task, pid) != BPF_CORE_READ(task, tgid))
		return 0;
	exe = BPF_CORE_READ(task, mm, exe_file);
	if (!exe)
		return 0;
	slot = fp_scratch_claim(&fp_learn_slots);
	if (!slot) {
		fp_count(FP_COUNTER_DROPPED);
		return 0;
	}
	size = fp_build_running_event(task, exe, &slot->event, &slot->path);
	/* A record that does not fit in what is left of the output buffer is not lost:
	 * the iterator shows this task again at the start of the next read. */
	if (size <= sizeof(slot->event))
		bpf_seq_write(ctx->meta->seq, &slot->event, size);
	else
		fp_count(FP_COUNTER_DROPPED);
	fp_scratch_release(slot);
	return 0;
}
