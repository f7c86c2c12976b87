/* SPDX-License-Identifier: (GPL-2.0 OR Apache-2.0) */
/*
 * Scratch memory private to one run of a program: the path being resolved, the
 * matchers' state, the event being built. Too big for the 512-byte stack, so it lives
 * in a per-CPU map, and a per-CPU map alone is not private: BPF LSM programs run with
 * migration disabled but NOT preemption disabled, so under full (or RT) preemption a
 * task can be preempted in the middle of a run and another task on the same CPU can
 * run the same program over the same buffer (issue #11: a forbidden exec ran and
 * allowed ones were refused, each decided on the other task's path).
 *
 * So each CPU has FP_SCRATCH_SLOTS slots, and a run claims one with an atomic
 * compare-and-exchange of its first word (0: free, 1: held) and frees it when it is
 * done. Only tasks on the same CPU ever touch a CPU's slots (migration is disabled for
 * the whole run), and a run always ends (a BPF program cannot be stopped half way), so
 * a slot is held by exactly one run and always handed back. A run finds no free slot
 * only while FP_SCRATCH_SLOTS other tasks are preempted inside this object's programs
 * on its CPU; callers then fail closed. docs/architecture.md weighs the alternatives
 * (task-local storage, a generation check, ring buffer records).
 */
#ifndef FINGERPRINT_SCRATCH_H
#define FINGERPRINT_SCRATCH_H

#include "vmlinux.h"
#include <bpf/bpf_helpers.h>

#define FP_SCRATCH_SLOTS 4

/* A per-CPU map of scratch slots of `slot_type`, whose first member is `__u64 busy`. */
#define FP_SCRATCH_MAP(name, slot_type)                                                    \
	struct {                                                                           \
		__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);                                   \
		__uint(max_entries, FP_SCRATCH_SLOTS);                                     \
		__type(key, __u32);                                                        \
		__type(value, slot_type);                                                  \
	} name SEC(".maps")

/* Slot `index` of this CPU from `map`, if it was free; now held by this run. */
static __always_inline void *fp_scratch_try(void *map, __u32 index)
{
	__u64 *busy = bpf_map_lookup_elem(map, &index);

	if (busy && __sync_val_compare_and_swap(busy, 0, 1) == 0)
		return busy;
	return NULL;
}

_Static_assert(FP_SCRATCH_SLOTS == 4, "fp_scratch_claim tries each slot");

/* A free slot of this CPU from `map` (an FP_SCRATCH_MAP), now held by this run; NULL
 * if every slot is held. Written out, not as a loop: the 6.1 and 6.12 verifiers see
 * a loop index spilled for the lookup as unknown, and refuse an "infinite loop". */
static __always_inline void *fp_scratch_claim(void *map)
{
	void *slot = fp_scratch_try(map, 0);

	if (!slot)
		slot = fp_scratch_try(map, 1);
	if (!slot)
		slot = fp_scratch_try(map, 2);
	if (!slot)
		slot = fp_scratch_try(map, 3);
	return slot;
}

/* Hand a claimed slot back. The barrier keeps every access to the slot before it. */
static __always_inline void fp_scratch_release(void *slot)
{
	asm volatile("" ::: "memory");
	*(volatile __u64 *)slot = 0;
}

#endif /* FINGERPRINT_SCRATCH_H */
