//! Builds one libbpf-rs skeleton per `bpf/*.bpf.c` into OUT_DIR.

use std::env;
use std::path::PathBuf;

use libbpf_cargo::SkeletonBuilder;

/// Objects to build; each becomes `$OUT_DIR/<name>.skel.rs`.
const BPF_OBJECTS: &[&str] = &["learn", "enforce", "bench_per_policy"];
/// Headers every object may include: a change to any rebuilds them all.
const BPF_HEADERS: &[&str] = &[
    "fingerprint.h",
    "path.h",
    "exec_event.h",
    "siphash.h",
    "policy.h",
    "scratch.h",
    "vmlinux.h",
];

fn main() {
    let out_dir = PathBuf::from(env::var_os("OUT_DIR").expect("cargo sets OUT_DIR"));
    let bpf_dir = PathBuf::from("bpf");
    for header in BPF_HEADERS {
        println!("cargo:rerun-if-changed={}", bpf_dir.join(header).display());
    }
    for name in BPF_OBJECTS {
        let source = bpf_dir.join(format!("{name}.bpf.c"));
        println!("cargo:rerun-if-changed={}", source.display());
        SkeletonBuilder::new()
            .source(&source)
            .clang_args([
                "-I".as_ref(),
                bpf_dir.as_os_str(),
                "-D__TARGET_ARCH_x86".as_ref(),
                "-Wall".as_ref(),
                "-Werror".as_ref(),
            ])
            .build_and_generate(out_dir.join(format!("{name}.skel.rs")))
            .unwrap_or_else(|err| panic!("building BPF object {}: {err:#}", source.display()));
    }
}
