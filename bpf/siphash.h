/* SPDX-License-Identifier: (GPL-2.0 OR Apache-2.0) */
/*
 * Keyed SipHash-2-4 with a 128-bit result: the allowlist key of a path, and of a path
 * with its content. Keyed with a random secret per enforcement, so a user who can name
 * files cannot make two paths collide; 128 bits, so accidents do not either. User space computes the same digest
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

/* SipHash state; the helpers below keep it in registers once inlined. */
struct fp_sip {
	__u64 v0, v1, v2, v3;
};

static __always_inline void fp_sip_init(struct fp_sip *s, const struct fp_config *cfg)
{
	__u64 k0 = cfg->hash_key[0], k1 = cfg->hash_key[1];

	s->v0 = k0 ^ 0x736f6d6570736575ULL;
	s->v1 = k1 ^ 0x646f72616e646f6dULL ^ 0xee;
	s->v2 = k0 ^ 0x6c7967656e657261ULL;
	s->v3 = k1 ^ 0x7465646279746573ULL;
}

/* Two compression rounds over one 8-byte word. */
static __always_inline void fp_sip_word(struct fp_sip *s, __u64 m)
{
	__u64 v0 = s->v0, v1 = s->v1, v2 = s->v2, v3 = s->v3 ^ m;

	FP_SIPROUND;
	FP_SIPROUND;
	s->v0 = v0 ^ m;
	s->v1 = v1;
	s->v2 = v2;
	s->v3 = v3;
}

/* The last word (length in the top byte, the tail below), then the 128-bit result. */
static __always_inline void fp_sip_finish(struct fp_sip *s, __u64 b, struct fp_digest *out)
{
	__u64 v0, v1, v2, v3;

	fp_sip_word(s, b);
	v0 = s->v0;
	v1 = s->v1;
	v2 = s->v2 ^ 0xee;
	v3 = s->v3;
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
}

/*
 * Digest of p->data[start, start + len). Reads whole 8-byte words (little endian) and
 * masks the last one, which relies on the FP_NAME_SLACK bytes after FP_PATH_MAX.
 */
__noinline int fp_digest_bytes(const struct fp_path *p, __u32 start, __u32 len,
			       const struct fp_config *cfg, struct fp_digest *out)
{
	struct fp_sip s;
	__u64 m, b;
	__u32 blocks, rest, i;

	if (!p || !cfg || !out || len >= FP_PATH_MAX)
		return 0;
	fp_sip_init(&s, cfg);
	blocks = len / 8;
	for (i = 0; i < FP_PATH_MAX / 8; i++) {
		if (i >= blocks)
			break;
		fp_sip_word(&s, *(__u64 *)&p->data[(start + i * 8) & (FP_PATH_MAX - 1)]);
	}
	b = (__u64)len << 56;
	rest = len & 7;
	if (rest) {
		m = *(__u64 *)&p->data[(start + blocks * 8) & (FP_PATH_MAX - 1)];
		b |= m & ((1ULL << (rest * 8)) - 1);
	}
	fp_sip_finish(&s, b, out);
	return 1;
}

/* Digest of a (path, content) pair: the bytes of `key`, a whole number of words. */
__noinline int fp_digest_content(const struct fp_content_key *key,
				 const struct fp_config *cfg, struct fp_digest *out)
{
	const __u64 *words = (const __u64 *)key;
	struct fp_sip s;
	__u32 i;

	if (!key || !cfg || !out)
		return 0;
	fp_sip_init(&s, cfg);
	for (i = 0; i < sizeof(*key) / 8; i++)
		fp_sip_word(&s, words[i]);
	fp_sip_finish(&s, (__u64)sizeof(*key) << 56, out);
	return 1;
}

#endif /* FINGERPRINT_SIPHASH_H */
