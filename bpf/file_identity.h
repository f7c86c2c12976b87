/* SPDX-License-Identifier: (GPL-2.0 OR Apache-2.0) */
/*
 * The identity of a file version (struct fp_file_id) read from its inode. The change
 * time moved twice in the kernel's struct inode (a timespec64 `i_ctime` before 6.6,
 * `__i_ctime` in 6.6 to 6.10, split `i_ctime_sec`/`i_ctime_nsec` since 6.11); CO-RE picks
 * the layout of the running kernel, so one object loads on all of them.
 */
#ifndef FINGERPRINT_FILE_IDENTITY_H
#define FINGERPRINT_FILE_IDENTITY_H

#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_core_read.h>
#include "fingerprint.h"

/* Since 6.13 the top bit of i_ctime_nsec marks "ctime was queried" (multigrain
 * timestamps); stat(2) masks it, and so must we to compare with it. */
#define FP_CTIME_NSEC_MASK 0x3fffffff

struct inode___ctime_timespec {
	struct timespec64 i_ctime;
} __attribute__((preserve_access_index));

struct inode___ctime_private {
	struct timespec64 __i_ctime;
} __attribute__((preserve_access_index));

static __always_inline void fp_read_file_id(struct fp_file_id *id, struct file *file)
{
	struct inode *inode = BPF_CORE_READ(file, f_inode);

	__builtin_memset(id, 0, sizeof(*id));
	if (!inode)
		return;
	id->ino = BPF_CORE_READ(inode, i_ino);
	id->size = BPF_CORE_READ(inode, i_size);
	id->dev = BPF_CORE_READ(inode, i_sb, s_dev);
	id->generation = BPF_CORE_READ(inode, i_generation);
	if (bpf_core_field_exists(inode->i_ctime_sec)) {
		id->ctime_sec = BPF_CORE_READ(inode, i_ctime_sec);
		id->ctime_nsec = BPF_CORE_READ(inode, i_ctime_nsec);
	} else if (bpf_core_field_exists(((struct inode___ctime_private *)inode)->__i_ctime)) {
		struct inode___ctime_private *old = (void *)inode;

		id->ctime_sec = BPF_CORE_READ(old, __i_ctime.tv_sec);
		id->ctime_nsec = BPF_CORE_READ(old, __i_ctime.tv_nsec);
	} else {
		struct inode___ctime_timespec *old = (void *)inode;

		id->ctime_sec = BPF_CORE_READ(old, i_ctime.tv_sec);
		id->ctime_nsec = BPF_CORE_READ(old, i_ctime.tv_nsec);
	}
	id->ctime_nsec &= FP_CTIME_NSEC_MASK;
}

#endif /* FINGERPRINT_FILE_IDENTITY_H */
