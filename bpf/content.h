/* SPDX-License-Identifier: (GPL-2.0 OR Apache-2.0) */
/*
 * Executable identity: what the kernel knows of a file version's content. A
 * non-sleepable exec hook cannot read a file, so user space hashes each version the
 * first time it is executed (the exec is held) and records the digest here, keyed by
 * the version (struct fp_file_id: device, inode, generation, change time, size): a
 * write, a truncation, a rename onto the name, another file mounted or chrooted over
 * it all give another key. The value is the digest, not a verdict, so one hash serves
 * every profile. docs/architecture.md, "Executable identity", says what this
 * guarantees and what it does not.
 */
#ifndef FINGERPRINT_CONTENT_H
#define FINGERPRINT_CONTENT_H

#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_core_read.h>
#include "fingerprint.h"
#include "file_identity.h"

/* Versions whose digest is known. LRU: memory is bounded whatever the number of
 * workloads, and an eviction only costs one more hash. Sized by user space. */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 16384);
	__type(key, struct fp_file_id);
	__type(value, struct fp_sha256);
} fp_versions SEC(".maps");

/* The digest of the version of `file` being executed, if known; `id` is scratch. */
static __always_inline struct fp_sha256 *fp_known_content(struct file *file,
							  struct fp_file_id *id)
{
	fp_read_file_id(id, file);
	if (!id->ino)
		return NULL;
	return bpf_map_lookup_elem(&fp_versions, id);
}

/* FMODE_WRITE (include/linux/fs.h): not in BTF, a #define. */
#define FP_FMODE_WRITE 0x2

/*
 * For an lsm/file_open program: forget the cached digest of a file opened for
 * writing, so that the key (whose change time has a coarse clock) is a fallback and
 * not the only guard against a write of the same size within one clock tick. The
 * writer's change comes after the open, so the version hashed next is the new one.
 * Called by the cgroup move guard's file_open program (enforce.bpf.c), with the LSM.
 */
static __always_inline void fp_forget_version_if_written(struct file *file)
{
	struct fp_file_id id;

	if (!(BPF_CORE_READ(file, f_mode) & FP_FMODE_WRITE))
		return;
	fp_read_file_id(&id, file);
	if (id.ino)
		bpf_map_delete_elem(&fp_versions, &id);
}

#endif /* FINGERPRINT_CONTENT_H */
