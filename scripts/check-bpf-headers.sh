#!/usr/bin/env bash
# Each header under bpf/ compiles on its own: it includes what it uses, so no .bpf.c
# depends on including headers in the right order. Needs a build first (libbpf's
# headers come from the libbpf-sys build in target/).
set -euo pipefail
cd "$(dirname "$0")/.."

libbpf=$(find target -path '*/build/libbpf-sys-*/out/include/bpf/bpf_helpers.h' -print -quit)
[[ -n $libbpf ]] || { echo "check-bpf-headers: no libbpf headers under target/: run cargo build first" >&2; exit 1; }
include=${libbpf%/bpf/bpf_helpers.h}
# vmlinux.h: bpf/ itself, or bpf/vmlinux/<arch>/ where kernel types are kept per
# architecture.
types=bpf
[[ -d bpf/vmlinux/$(uname -m) ]] && types=bpf/vmlinux/$(uname -m)

status=0
for header in bpf/*.h; do
  if ! printf '#include "%s"\n' "$(basename "$header")" |
    clang -target bpf -D__TARGET_ARCH_x86 -Wall -Werror -I bpf -I "$types" -I "$include" \
      -fsyntax-only -x c -; then
    echo "check-bpf-headers: $header does not compile on its own" >&2
    status=1
  fi
done
exit "$status"
