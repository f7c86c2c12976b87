#!/usr/bin/env bash
# Install the Debian packages fingerprint's build, tests, demo and VM suite need.
# Idempotent: only missing packages are installed. Needs root on Debian 12.
set -euo pipefail

packages=(
  clang llvm libelf-dev zlib1g-dev pkg-config make  # BPF objects and libbpf-sys
  bpftool                                           # regenerating bpf/vmlinux/<arch>/vmlinux.h, inspection
  qemu-system-x86 cpio busybox-static xz-utils      # the BPF LSM test VM (xz: its overlay module) and demo roots
  containerd runc                                   # real containers in the integration tests
  docker.io podman                                  # real Docker and Podman containers in the tests
  e2fsprogs mount                                   # a loop-mounted ext4 with whole-second times
)

missing=()
for pkg in "${packages[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$pkg")
  fi
done

if ((${#missing[@]})); then
  if [[ $(id -u) -ne 0 ]]; then
    echo "deps: missing packages: ${missing[*]}; run as root (sudo make deps)" >&2
    exit 1
  fi
  echo "deps: installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

if ! command -v cargo >/dev/null; then
  echo "deps: cargo is not installed; install a Rust toolchain (rustup) first" >&2
  exit 1
fi
