/* SPDX-License-Identifier: (GPL-2.0 OR Apache-2.0) */
/*
 * Keyed SipHash-2-4 with a 128-bit result: the allowlist key of a path. Keyed with a
 * random secret per enforcement, so a user who can name files cannot make two paths
 * collide; 128 bits, so accidents do not either. User space computes the same digest
 * (the `siphasher` crate); a BPF_PROG_TEST_RUN test checks the two agree.
 */
#ifndef FINGERPRINT_SIPHASH_H
#define FINGERPRINT_SIPHASH_H

#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include "fingerprint.h"
#include "path.h"

#define FP_ROTL(x, b) (__u64)(((x) << (b)) | ((x) >> (64 - (b))))
#define FP_SIPROUND                                                                        \
	do {                                                                               \
		v0 += v1; v1 = FP_ROTL(v1, 13); v1 ^= v0; v0 = FP_ROTL(v0, 32);            \
		v2 += v3; v3 = FP_ROTL(v3, 16); v3 ^= v2;                                  \
		v0 += v3; v3 = FP_ROTL(v3, 21); v3 ^= v0;                                  \
		v2 += v1; v1 = FP_ROTL(v1, 17); v1 ^= v2; v2 = FP_ROTL(v2, 32);            \
	} while (0)

/*
 * Digest of p->data[start, start + len). Reads whole 8-byte words (little endian) and
 * masks the last one, which relies on the FP_NAME_SLACK bytes after FP_PATH_MAX.
 */
__noinline int fp_digest_bytes(const struct fp_path *p, __u32 start, __u32 len,
			       const struct fp_config *cfg, struct fp_digest *out)
{
	__u64 v0, v1, v2, v3, k0, k1, m, b;
	__u32 blocks, rest, i;

	if (!p || !cfg || !out || len >= FP_PATH_MAX)
		return 0;
	k0 = cfg->hash_key[0];
	k1 = cfg->hash_key[1];
	v0 = k0 ^ 0x736f6d6570736575ULL;
	v1 = k1 ^ 0x646f72616e646f6dULL ^ 0xee;
	v2 = k0 ^ 0x6c7967656e657261ULL;
	v3 = k1 ^ 0x7465646279746573ULL;
	blocks = len / 8;
	for (i = 0; i < FP_PATH_MAX / 8; i++) {
		if (i >= blocks)
			break;
		m = *(__u64 *)&p->data[(start + i * 8) & (FP_PATH_MAX - 1)];
		v3 ^= m;
		FP_SIPROUND;
		FP_SIPROUND;
		v0 ^= m;
	}
	b = (__u64)len << 56;
	rest = len & 7;
	if (rest) {
		m = *(__u64 *)&p->data[(start + blocks * 8) & (FP_PATH_MAX - 1)];
		b |= m & ((1ULL << (rest * 8)) - 1);
	}
	v3 ^= b;
	FP_SIPROUND;
	FP_SIPROUND;
	v0 ^= b;
	v2 ^= 0xee;
	FP_SIPROUND;
	FP_SIPROUND;
	FP_SIPROUND;
	FP_SIPROUND;
	out->lo = v0 ^ v1 ^ v2 ^ v3;
	v1 ^= 0xdd;
	FP_SIPROUND;
	FP_SIPROUND;
	FP_SIPROUND;
	FP_SIPROUND;
	out->hi = v0 ^ v1 ^ v2 ^ v3;
	return 1;
}

#endif /* FINGERPRINT_SIPHASH_H */
