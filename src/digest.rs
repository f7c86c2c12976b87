//! The allowlist key of a path (and of a path with one content): keyed SipHash-2-4 with
//! a 128-bit result, the same function as `bpf/siphash.h` (a BPF test run checks they
//! agree). `siphasher` is the well-kept reference implementation; writing our own would
//! only add risk.

use siphasher::sip128::{Hasher128, SipHasher24};

use crate::bpf::abi::{fp_content_key, fp_digest, fp_sha256};
use crate::content::Sha256;
use std::hash::Hasher;

/// A secret SipHash key, random per enforcement.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DigestKey(pub [u64; 2]);

impl DigestKey {
    /// A fresh key from the kernel's random pool.
    pub fn random() -> std::io::Result<DigestKey> {
        let mut bytes = [0u8; 16];
        let mut filled = 0;
        while filled < bytes.len() {
            // SAFETY: the pointer and length describe the unfilled tail of `bytes`.
            let n = unsafe {
                libc::getrandom(bytes[filled..].as_mut_ptr().cast(), bytes.len() - filled, 0)
            };
            if n < 0 {
                let err = std::io::Error::last_os_error();
                if err.kind() != std::io::ErrorKind::Interrupted {
                    return Err(err);
                }
                continue;
            }
            filled += n as usize;
        }
        let (a, b) = bytes.split_at(8);
        Ok(DigestKey([
            u64::from_le_bytes(a.try_into().unwrap_or_default()),
            u64::from_le_bytes(b.try_into().unwrap_or_default()),
        ]))
    }
}

/// The digest of one path; ordered as the BPF binary search expects (hi, then lo).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Digest {
    pub hi: u64,
    pub lo: u64,
}

pub fn digest(key: &DigestKey, bytes: &[u8]) -> Digest {
    let mut hasher = SipHasher24::new_with_keys(key.0[0], key.0[1]);
    hasher.write(bytes);
    let hash = hasher.finish128();
    Digest {
        hi: hash.h2,
        lo: hash.h1,
    }
}

/// The allowlist key of a path pinned to one content: the digest of `struct
/// fp_content_key` (the path's digest, then the SHA-256), the bytes
/// `fp_digest_content` hashes in `bpf/siphash.h`.
pub fn content_digest(key: &DigestKey, path: Digest, content: &Sha256) -> Digest {
    let pair = fp_content_key {
        path: fp_digest {
            hi: path.hi,
            lo: path.lo,
        },
        content: fp_sha256 { bytes: content.0 },
    };
    // SAFETY: fp_content_key is Plain (integers and byte arrays, no padding).
    digest(key, unsafe { plain::as_bytes(&pair) })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The reference SipHash-2-4-128 vectors use key 00 01 .. 0f and input 00 01 ..
    /// of each length; these are the outputs for lengths 0 and 1 (little endian).
    #[test]
    fn matches_the_reference_vectors() {
        let key = DigestKey([0x0706050403020100, 0x0f0e0d0c0b0a0908]);
        let empty = digest(&key, &[]);
        assert_eq!(
            empty.lo.to_le_bytes(),
            [0xa3, 0x81, 0x7f, 0x04, 0xba, 0x25, 0xa8, 0xe6]
        );
        assert_eq!(
            empty.hi.to_le_bytes(),
            [0x6d, 0xf6, 0x72, 0x14, 0xc7, 0x55, 0x02, 0x93]
        );
        let one = digest(&key, &[0]);
        assert_eq!(
            one.lo.to_le_bytes(),
            [0xda, 0x87, 0xc1, 0xd8, 0x6b, 0x99, 0xaf, 0x44]
        );
        assert_eq!(
            one.hi.to_le_bytes(),
            [0x34, 0x76, 0x59, 0x11, 0x9b, 0x22, 0xfc, 0x45]
        );
    }

    #[test]
    fn different_keys_give_different_digests() {
        let a = digest(&DigestKey([1, 2]), b"/usr/bin/true");
        let b = digest(&DigestKey([1, 3]), b"/usr/bin/true");
        assert_ne!(a, b);
    }
}
