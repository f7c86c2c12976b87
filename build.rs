//! Builds one libbpf-rs skeleton per `bpf/*.bpf.c` into OUT_DIR, for the architecture
//! Cargo targets.

use std::env;
use std::path::{Path, PathBuf};

use libbpf_cargo::SkeletonBuilder;

/// Objects to build; each becomes `$OUT_DIR/<name>.skel.rs`.
const BPF_OBJECTS: &[&str] = &["learn", "enforce", "bench_per_policy", "bench_ima_hash"];
/// Headers every object may include: a change to any rebuilds them all.
const BPF_HEADERS: &[&str] = &[
    "fingerprint.h",
    "path.h",
    "exec_event.h",
    "file_identity.h",
    "siphash.h",
    "content.h",
    "policy.h",
    "scratch.h",
];
/// Cargo's name of each architecture (CARGO_CFG_TARGET_ARCH) and the kernel's, which
/// libbpf's headers expect as `__TARGET_ARCH_<name>`.
const KERNEL_ARCH: &[(&str, &str)] = &[
    ("x86_64", "x86"),
    ("aarch64", "arm64"),
    ("arm", "arm"),
    ("riscv64", "riscv"),
    ("powerpc64", "powerpc"),
    ("s390x", "s390"),
    ("loongarch64", "loongarch"),
    ("mips", "mips"),
    ("mips64", "mips"),
    ("sparc64", "sparc"),
];

fn main() {
    let out_dir = PathBuf::from(env::var_os("OUT_DIR").expect("cargo sets OUT_DIR"));
    let bpf_dir = PathBuf::from("bpf");
    let arch = env::var("CARGO_CFG_TARGET_ARCH").expect("cargo sets CARGO_CFG_TARGET_ARCH");
    let (kernel_arch, vmlinux_dir) = kernel_types(&bpf_dir, &arch);
    println!(
        "cargo:rerun-if-changed={}",
        vmlinux_dir.join("vmlinux.h").display()
    );
    for header in BPF_HEADERS {
        println!("cargo:rerun-if-changed={}", bpf_dir.join(header).display());
    }
    let target_define = format!("-D__TARGET_ARCH_{kernel_arch}");
    for name in BPF_OBJECTS {
        let source = bpf_dir.join(format!("{name}.bpf.c"));
        println!("cargo:rerun-if-changed={}", source.display());
        SkeletonBuilder::new()
            .source(&source)
            .clang_args([
                "-I".as_ref(),
                bpf_dir.as_os_str(),
                "-I".as_ref(),
                vmlinux_dir.as_os_str(),
                target_define.as_ref(),
                "-Wall".as_ref(),
                "-Werror".as_ref(),
            ])
            .build_and_generate(out_dir.join(format!("{name}.skel.rs")))
            .unwrap_or_else(|err| panic!("building BPF object {}: {err:#}", source.display()));
    }
}

/// The kernel's name for `arch` and the directory holding its `vmlinux.h` (kernel
/// types differ between architectures); a clear failure when either is missing.
fn kernel_types(bpf_dir: &Path, arch: &str) -> (&'static str, PathBuf) {
    let Some(&(_, kernel_arch)) = KERNEL_ARCH.iter().find(|(cargo, _)| *cargo == arch) else {
        let known: Vec<&str> = KERNEL_ARCH.iter().map(|(cargo, _)| *cargo).collect();
        panic!(
            "fingerprint's BPF programs cannot be built for target architecture {arch}: \
             libbpf's headers name no __TARGET_ARCH for it (known: {})",
            known.join(", ")
        );
    };
    let dir = bpf_dir.join("vmlinux").join(arch);
    if !dir.join("vmlinux.h").is_file() {
        panic!(
            "no kernel types for target architecture {arch}: {} is missing; generate it on \
             a machine of that architecture with `make vmlinux` (bpftool btf dump file \
             /sys/kernel/btf/vmlinux format c)",
            dir.join("vmlinux.h").display()
        );
    }
    (kernel_arch, dir)
}
