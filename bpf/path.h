/* SPDX-License-Identifier: (GPL-2.0 OR Apache-2.0) */
/*
 * THE path routine: the canonical path of a file as the executing process sees it.
 * Every program that names an executable (learning at either hook, enforcement)
 * calls fp_resolve_path(), so learning and enforcing can never disagree about a path.
 *
 * It walks dentries and mounts from the file up to the process's root (fs->root), as
 * d_path() does, so a container sees /usr/bin/sleep rather than the overlay path on
 * the host, and a symlink or relative name typed by the caller does not matter: the
 * file itself is named. It is written out as a bounded loop in a global function so
 * the verifier checks it once, whatever calls it, on kernels from 5.15 on.
 */
#ifndef FINGERPRINT_PATH_H
#define FINGERPRINT_PATH_H

#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_core_read.h>
#include "fingerprint.h"

/*
 * A path built right to left: data[start, FP_PATH_MAX) holds it. The walk's state
 * lives here too, not in registers, so the verifier sees one small step function
 * instead of FP_MAX_DEPTH diverging iterations.
 */
struct fp_path {
	__u64 dentry;      /* struct dentry *: next name to prepend */
	__u64 vfsmnt;      /* struct vfsmount *: the mount `dentry` is in */
	__u64 root_dentry; /* the process's root */
	__u64 root_mnt;
	__u32 start;
	__u32 flags;
	char data[FP_PATH_MAX + FP_NAME_SLACK];
};

/* d_unlinked(): not the root of its tree and no longer hashed. */
static __always_inline int fp_dentry_unlinked(struct dentry *dentry)
{
	struct dentry *parent = BPF_CORE_READ(dentry, d_parent);
	void *pprev = BPF_CORE_READ(dentry, d_hash.pprev);

	return parent != dentry && !pprev;
}

/* Stop the walk with `flags` (TRUNCATED is cleared: the walk completed). */
static __always_inline int fp_path_done(struct fp_path *p, __u32 flags)
{
	p->flags = (p->flags & ~FP_PATH_TRUNCATED) | flags;
	return 1;
}

/*
 * One step up the tree: cross a mount, prepend one name, or finish. Returns 1 when
 * the walk is over. A global function, so the verifier checks it exactly once.
 */
__noinline int fp_path_step(struct fp_path *p)
{
	__u64 mnt_offset = bpf_core_field_offset(struct mount, mnt);
	struct dentry *dentry, *parent;
	struct vfsmount *vfsmnt;
	struct mount *mnt, *mnt_parent;
	struct qstr name;
	__u32 pos, len;

	if (!p)
		return 1;
	dentry = (struct dentry *)p->dentry;
	vfsmnt = (struct vfsmount *)p->vfsmnt;
	if (p->dentry == p->root_dentry && p->vfsmnt == p->root_mnt)
		return fp_path_done(p, 0);

	mnt = (struct mount *)((void *)vfsmnt - mnt_offset);
	if (dentry == BPF_CORE_READ(vfsmnt, mnt_root)) {
		mnt_parent = BPF_CORE_READ(mnt, mnt_parent);
		if (mnt_parent == mnt) /* top of a mount tree that does not hold our root */
			return fp_path_done(p, FP_PATH_UNREACHABLE);
		p->dentry = (__u64)BPF_CORE_READ(mnt, mnt_mountpoint);
		p->vfsmnt = (__u64)mnt_parent + mnt_offset;
		return 0;
	}

	parent = BPF_CORE_READ(dentry, d_parent);
	if (parent == dentry) /* root of a tree with no mount above it: detached */
		return fp_path_done(p, FP_PATH_UNREACHABLE);
	name = BPF_CORE_READ(dentry, d_name);
	len = name.len;
	pos = p->start;
	if (len >= FP_NAME_SLACK || len + 1 >= pos || pos > FP_PATH_MAX)
		return 1; /* stays FP_PATH_TRUNCATED: at most PATH_MAX - 1 bytes */
	pos -= len;
	if (bpf_probe_read_kernel(&p->data[pos & (FP_PATH_MAX - 1)], len & (FP_NAME_SLACK - 1),
				  name.name))
		return 1;
	pos -= 1;
	p->data[pos & (FP_PATH_MAX - 1)] = '/';
	p->start = pos;
	p->dentry = (__u64)parent;
	return 0;
}

/*
 * Resolve `file_path` (a struct path *) relative to `root` (a struct path *: the
 * process's fs->root) into `out`. Kernel pointers travel as integers because a
 * global function may not take them typed on older kernels. Returns the length.
 */
__noinline int fp_resolve_path(struct fp_path *out, __u64 file_path, __u64 root)
{
	struct path *fpath = (struct path *)file_path;
	struct path *rpath = (struct path *)root;
	int i;

	if (!out)
		return 0;
	out->start = FP_PATH_MAX;
	out->flags = FP_PATH_ABSENT;
	if (!fpath || !rpath)
		return 0;
	out->dentry = (__u64)BPF_CORE_READ(fpath, dentry);
	out->vfsmnt = (__u64)BPF_CORE_READ(fpath, mnt);
	out->root_dentry = (__u64)BPF_CORE_READ(rpath, dentry);
	out->root_mnt = (__u64)BPF_CORE_READ(rpath, mnt);
	if (!out->dentry || !out->vfsmnt)
		return 0;
	/* TRUNCATED until the walk reaches an end. */
	out->flags = FP_PATH_TRUNCATED;
	if (fp_dentry_unlinked((struct dentry *)out->dentry))
		out->flags |= FP_PATH_DELETED;

	for (i = 0; i < FP_MAX_DEPTH; i++) {
		if (fp_path_step(out))
			break;
	}
	if (out->start == FP_PATH_MAX && !(out->flags & FP_PATH_TRUNCATED)) {
		/* The root directory itself. */
		out->start = FP_PATH_MAX - 1;
		out->data[FP_PATH_MAX - 1] = '/';
	}
	if (out->start > FP_PATH_MAX)
		return 0;
	return FP_PATH_MAX - out->start;
}

#endif /* FINGERPRINT_PATH_H */
