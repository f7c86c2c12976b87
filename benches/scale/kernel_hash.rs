//! Hashing the executable in the kernel at exec (issue #12), LSM only. `enforce` holds
//! a file version's first exec and hashes it in user space; the alternative is a
//! sleepable `lsm.s/bprm_check_security` program asking IMA for the digest
//! (`bpf_ima_file_hash`; `bpf/bench_ima_hash.bpf.c`, which only records). Measured for
//! the exec target and for copies of it padded to 1, 16 and 64 MiB (the kernel loads
//! the same segments; IMA hashes the whole file): the helper's own time, exec wall time
//! with the program attached and without (paired blocks in alternating order, so the
//! difference cancels drift), whether IMA's digest is the SHA-256 user space computes,
//! whether IMA had a cached measurement (`bpf_ima_inode_hash`), and user space's
//! hashing of the same file (`hash_version`) on the same machine. Where the kernel
//! refuses the program or IMA cannot hash, the result says so instead of failing.

use std::mem::MaybeUninit;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::time::Instant;

use anyhow::{anyhow, bail, Context, Result};
use fingerprint::content::{hash_version, FileVersion, Sha256};
use libbpf_rs::skel::{OpenSkel, SkelBuilder};
use libbpf_rs::{MapCore, MapFlags};
use serde_json::{json, Value};

use super::rounds::Summary;
use super::{run_target, BenchCgroup};

mod skel {
    include!(concat!(env!("OUT_DIR"), "/bench_ima_hash.skel.rs"));
}
use skel::{BenchImaHashSkel, BenchImaHashSkelBuilder};

/// `enum hash_algo` in the kernel (include/uapi/linux/hash_info.h).
const HASH_ALGO_SHA1: i64 = 2;
const HASH_ALGO_SHA256: i64 = 4;
const HASH_ALGO_SHA512: i64 = 6;
/// Sizes the exec target is padded to, besides itself.
const PADDED_MIB: [usize; 3] = [1, 16, 64];
/// Timed execs per block (a 64 MiB hash takes long under emulation).
const EXECS_PER_BLOCK: usize = 3;
/// User-space hashes of each file, of which the median counts.
const USER_HASHES: usize = 5;

/// What the program recorded for the last exec (`struct kh_result`).
struct Recorded {
    count: u64,
    file_hash_ns: u64,
    inode_hash_ns: u64,
    file_hash_ret: i64,
    inode_hash_ret: i64,
    digest: [u8; 64],
}

impl Recorded {
    fn read(skel: &BenchImaHashSkel) -> Result<Recorded> {
        let raw = skel
            .maps
            .kh_results
            .lookup(&0u32.to_ne_bytes(), MapFlags::ANY)
            .context("reading kh_results")?
            .ok_or_else(|| anyhow!("kh_results has no entry 0"))?;
        let word = |at: usize| -> [u8; 8] { raw[at..at + 8].try_into().expect("8 bytes") };
        Ok(Recorded {
            count: u64::from_ne_bytes(word(0)),
            file_hash_ns: u64::from_ne_bytes(word(8)),
            inode_hash_ns: u64::from_ne_bytes(word(16)),
            file_hash_ret: i64::from_ne_bytes(word(24)),
            inode_hash_ret: i64::from_ne_bytes(word(32)),
            digest: raw
                .get(40..104)
                .and_then(|d| d.try_into().ok())
                .ok_or_else(|| anyhow!("kh_results value is {} bytes, want 104", raw.len()))?,
        })
    }
}

/// A helper's return: IMA's algorithm by name, or the error.
fn returned(ret: i64) -> String {
    match ret {
        HASH_ALGO_SHA1 => "sha1".into(),
        HASH_ALGO_SHA256 => "sha256".into(),
        HASH_ALGO_SHA512 => "sha512".into(),
        r if r < 0 => std::io::Error::from_raw_os_error(-r as i32).to_string(),
        r => format!("hash_algo {r}"),
    }
}

/// The measurement, or why the kernel cannot do it (`available: false`).
pub fn measure(cgroup: &BenchCgroup, target: &Path, dir: &Path, rounds: usize) -> Result<Value> {
    let mut storage = MaybeUninit::uninit();
    let mut open = BenchImaHashSkelBuilder::default()
        .open(&mut storage)
        .context("opening bench_ima_hash")?;
    open.maps
        .rodata_data
        .as_deref_mut()
        .ok_or_else(|| anyhow!("bench_ima_hash has no .rodata"))?
        .kh_cgroup = cgroup.id;
    let skel = match open.load() {
        Ok(skel) => skel,
        Err(err) => {
            return Ok(unavailable(format!(
                "loading lsm.s/bprm_check_security: {err}"
            )))
        }
    };
    match skel.progs.kh_bprm_check_security.attach() {
        Ok(link) => drop(link),
        Err(err) => {
            return Ok(unavailable(format!(
                "attaching lsm.s/bprm_check_security: {err}"
            )))
        }
    }

    let bytes = std::fs::read(target).context("reading the exec target")?;
    let mut files = vec![("exec target".to_owned(), bytes.clone())];
    for mib in PADDED_MIB {
        // Zeros hash as fast as anything else, and the kernel never loads them.
        let mut padded = bytes.clone();
        padded.resize(mib << 20, 0);
        files.push((format!("{mib} MiB"), padded));
    }
    let mut rows = Vec::new();
    for (label, content) in files {
        let path = dir.join(format!("kernel-hash-{}", content.len()));
        std::fs::write(&path, &content).with_context(|| format!("writing {}", path.display()))?;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755))?;
        let row = measure_file(&skel, cgroup, &path, &content, rounds)
            .with_context(|| format!("kernel hashing of the {label} file"))?;
        std::fs::remove_file(&path)?;
        eprintln!(
            "  kernel hash, {label}: {}",
            row["summary"].as_str().unwrap_or_default()
        );
        rows.push(json!({"file": label, "result": row}));
    }
    Ok(json!({
        "available": true,
        "rounds": rounds,
        "execs_per_block": EXECS_PER_BLOCK,
        "files": rows,
    }))
}

fn unavailable(reason: String) -> Value {
    eprintln!("  kernel hash: not measurable here: {reason}");
    json!({"available": false, "reason": reason})
}

/// One exec to check what IMA returns; then, if it hashed, `rounds` pairs of blocks.
fn measure_file(
    skel: &BenchImaHashSkel,
    cgroup: &BenchCgroup,
    path: &Path,
    content: &[u8],
    rounds: usize,
) -> Result<Value> {
    let mib = content.len() as f64 / (1u64 << 20) as f64;
    let user_ns = user_space_hash_ns(path)?;
    let link = skel.progs.kh_bprm_check_security.attach()?;
    let checked = exec_block(skel, cgroup, path, 1, true)?.1.remove(0);
    drop(link);
    let matches = (checked.file_hash_ret == HASH_ALGO_SHA256)
        .then(|| checked.digest[..32] == Sha256::of(content).0);
    let mut row = json!({
        "bytes": content.len(),
        "file_hash": returned(checked.file_hash_ret),
        "file_hash_ret": checked.file_hash_ret,
        "inode_hash": returned(checked.inode_hash_ret),
        "inode_hash_ret": checked.inode_hash_ret,
        "inode_hash_ns": checked.inode_hash_ns,
        "digest_equals_sha256": matches,
        "user_space_hash_ns": user_ns,
        "user_space_ns_per_mib": user_ns / mib,
    });
    if checked.file_hash_ret < 0 {
        row["summary"] = json!(format!(
            "bpf_ima_file_hash returned {} ({}): nothing to time",
            checked.file_hash_ret,
            returned(checked.file_hash_ret)
        ));
        return Ok(row);
    }
    let (mut attached, mut detached, mut deltas, mut helper) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for round in 0..rounds {
        let mut pair = [0.0; 2];
        for attach in [round % 2 == 0, round % 2 != 0] {
            let link = attach
                .then(|| skel.progs.kh_bprm_check_security.attach())
                .transpose()
                .context("attaching lsm.s/bprm_check_security")?;
            let (walls, recorded) = exec_block(skel, cgroup, path, EXECS_PER_BLOCK, attach)?;
            drop(link);
            helper.extend(recorded.iter().map(|r| r.file_hash_ns as f64));
            pair[usize::from(attach)] = Summary::of(walls).median;
        }
        detached.push(pair[0]);
        attached.push(pair[1]);
        deltas.push(pair[1] - pair[0]);
    }
    let (helper, attached, detached, deltas) = (
        Summary::of(helper),
        Summary::of(attached),
        Summary::of(detached),
        Summary::of(deltas),
    );
    row["summary"] = json!(format!(
        "{:.1} MiB, {} (digest {}): helper {:.2} ms ({:.2} ms/MiB), exec {:.2} ms attached, \
         {:.2} ms without, difference {:.2} ms [{:.2}, {:.2}]; user space hashes it in \
         {:.2} ms ({:.2} ms/MiB); cached measurement: {}",
        mib,
        returned(checked.file_hash_ret),
        match matches {
            Some(true) => "= SHA-256",
            Some(false) => "!= SHA-256",
            None => "not SHA-256",
        },
        helper.median / 1e6,
        helper.median / 1e6 / mib,
        attached.median / 1e6,
        detached.median / 1e6,
        deltas.median / 1e6,
        deltas.ci_lo / 1e6,
        deltas.ci_hi / 1e6,
        user_ns / 1e6,
        user_ns / 1e6 / mib,
        returned(checked.inode_hash_ret),
    ));
    row["helper_ns"] = helper.to_json();
    row["helper_ns_per_mib"] = json!(helper.median / mib);
    row["exec_ns_attached"] = attached.to_json();
    row["exec_ns_detached"] = detached.to_json();
    row["difference_ns"] = deltas.to_json();
    Ok(row)
}

/// `count` execs of `path` from the measured cgroup, each timed fork to exit; and,
/// when the program is `attached`, what it recorded for each (it must see each once).
fn exec_block(
    skel: &BenchImaHashSkel,
    cgroup: &BenchCgroup,
    path: &Path,
    count: usize,
    attached: bool,
) -> Result<(Vec<f64>, Vec<Recorded>)> {
    let mut seen = Recorded::read(skel)?.count;
    let (mut walls, mut recorded) = (Vec::with_capacity(count), Vec::new());
    let _inside = cgroup.enter()?;
    for _ in 0..count {
        let started = Instant::now();
        run_target(path)?;
        walls.push(started.elapsed().as_nanos() as f64);
        if attached {
            let record = Recorded::read(skel)?;
            if record.count != seen + 1 {
                bail!(
                    "the program saw {} execs of {}, want 1: is the cgroup id right?",
                    record.count - seen,
                    path.display()
                );
            }
            seen = record.count;
            recorded.push(record);
        }
    }
    Ok((walls, recorded))
}

/// Median time user space takes to hash `path` as `enforce` does for a held exec.
fn user_space_hash_ns(path: &Path) -> Result<f64> {
    let version = FileVersion::of_metadata(&std::fs::metadata(path)?);
    let times = (0..USER_HASHES).map(|_| -> Result<f64> {
        let file = std::fs::File::open(path)?;
        let started = Instant::now();
        hash_version(file, &version).map_err(|e| anyhow!("hashing {}: {e:?}", path.display()))?;
        Ok(started.elapsed().as_nanos() as f64)
    });
    Ok(Summary::of(times.collect::<Result<Vec<_>>>()?).median)
}
