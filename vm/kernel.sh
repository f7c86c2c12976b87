#!/usr/bin/env bash
# vm/kernel.sh SERIES
#
# Prints the path of a cached vmlinuz of the newest Debian cloud kernel of the
# given series (6.12 or 6.1), downloading it first if it is not cached yet.
# Used by vm/run.sh to boot a kernel with a working BPF LSM under qemu.
#
#   6.12 -> linux-image-6.12.N+deb12-cloud-amd64-unsigned (bookworm backports/security)
#   6.1  -> linux-image-6.1.0-N-cloud-amd64-unsigned      (bookworm's own kernel)
#
# The newest package is chosen at run time by Debian version comparison
# (never a hard-coded version). Cache layout, keyed by package and version:
#   ${FP_VM_CACHE:-<repo>/.vm}/kernels/<package>_<version>/vmlinuz   (+ config)
#   .../modules/NAME.ko   the modules listed in $modules, decompressed
# The cloud kernel has everything the harness needs built in except the file
# systems in $modules (overlayfs: containers' root file system, and the identity
# tests mount one over an allowed directory); vm/run.sh loads them at boot.
# A cache entry from before a module was added to the list gets it on next use.
# If apt knows no matching package (e.g. no network and no package lists), the
# newest already-cached kernel of the series is used, with a warning.
# Progress goes to stderr; stdout is only the path.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
cache=${FP_VM_CACHE:-$here/../.vm}

die() { echo "kernel.sh: $*" >&2; exit 1; }

# Modules to keep, as paths under lib/modules/<version>/kernel/ without ".ko".
modules=(fs/overlayfs/overlay)

# complete DIR: DIR holds a vmlinuz and every module in $modules.
complete() {
  local m
  [[ -f $1/vmlinuz ]] || return 1
  for m in "${modules[@]}"; do
    [[ -f $1/modules/${m##*/}.ko ]] || return 1
  done
}

[[ $# -eq 1 ]] || die "usage: kernel.sh 6.12|6.1"
series=$1
case $series in
  6.12) pattern='^linux-image-6\.12\.[0-9]+\+deb12-cloud-amd64-unsigned$' ;;
  6.1)  pattern='^linux-image-6\.1\.0-[0-9]+-cloud-amd64-unsigned$' ;;
  *) die "unknown kernel series '$series' (want 6.12 or 6.1)" ;;
esac

mkdir -p "$cache/kernels"
cache=$(cd "$cache" && pwd)

# Shortcut: asking apt takes about a second, so remember the answer for as long
# as apt's package lists are unchanged (same names, sizes and times).
lists_stamp=$(stat -c '%n %s %Y' /var/lib/apt/lists/*Packages* 2>/dev/null | cksum | cut -d' ' -f1,2 || true)
memo=$cache/kernels/.resolved-$series
if [[ -n $lists_stamp && -f $memo ]]; then
  read -r memo_stamp memo_path <"$memo" || true
  if [[ ${memo_stamp:-} == "${lists_stamp// /:}" && -n ${memo_path:-} ]] &&
    complete "$(dirname "$memo_path")"; then
    echo "$memo_path"
    exit 0
  fi
fi
remember() {
  if [[ -n $lists_stamp ]]; then
    printf '%s %s\n' "${lists_stamp// /:}" "$1" >"$memo.$$"
    mv "$memo.$$" "$memo"
  fi
}

# "name version" lines of the matching packages (one apt-cache call: each
# call re-reads the package lists, which takes about a second here).
search() {
  apt-cache search --full --names-only "$pattern" 2>/dev/null |
    awk '/^Package: /{p=$2} /^Version: /{print p, $2}'
}

pairs=$(search)
if [[ -z $pairs && $(id -u) -eq 0 ]]; then
  echo "kernel.sh: no package matches $pattern; running apt-get update" >&2
  apt-get update -qq >&2 || true
  pairs=$(search)
fi

best_pkg='' best_ver=''
while read -r pkg ver; do
  [[ -n $pkg ]] || continue
  if [[ -z $best_ver ]] || dpkg --compare-versions "$ver" gt "$best_ver"; then
    best_pkg=$pkg best_ver=$ver
  fi
done <<<"$pairs"

if [[ -z $best_pkg ]]; then
  # Offline fallback: newest cached kernel of this series.
  fallback=''
  fallback_ver=''
  for d in "$cache"/kernels/*; do
    [[ -f $d/vmlinuz ]] || continue
    name=$(basename "$d")
    pkg=${name%%_*}
    [[ $pkg =~ $pattern ]] || continue
    ver=$(cat "$d/version" 2>/dev/null || echo "${name#*_}")
    if [[ -z $fallback_ver ]] || dpkg --compare-versions "$ver" gt "$fallback_ver"; then
      fallback=$d/vmlinuz fallback_ver=$ver
    fi
  done
  [[ -n $fallback ]] || die "no Debian package matches $pattern (apt-get update?) and nothing is cached in $cache/kernels"
  echo "kernel.sh: warning: apt knows no package matching $pattern; using cached $fallback" >&2
  complete "$(dirname "$fallback")" ||
    echo "kernel.sh: warning: $(dirname "$fallback") lacks modules (${modules[*]##*/}); the guest will have no overlayfs" >&2
  echo "$fallback"
  exit 0
fi

key="${best_pkg}_${best_ver//[:\/]/_}"
dest="$cache/kernels/$key"
if complete "$dest"; then
  remember "$dest/vmlinuz"
  echo "$dest/vmlinuz"
  exit 0
fi

# Serialise concurrent downloads of the same cache.
exec 9>"$cache/kernels/.lock"
flock 9
if complete "$dest"; then
  echo "$dest/vmlinuz"
  exit 0
fi

# keep_module TREE MODULE OUTDIR: the module from the unpacked package TREE,
# decompressed (Debian ships .ko on 6.1 and .ko.xz on 6.12) into OUTDIR/NAME.ko.
keep_module() {
  local src out=$3/${2##*/}.ko
  src=$(find "$1" -path "*/modules/*/kernel/$2.ko*" -type f | head -n1)
  [[ -n $src ]] || die "$best_pkg has no module $2.ko"
  case $src in
    *.ko) cp "$src" "$out" ;;
    *.ko.xz) command -v xz >/dev/null || die "$src needs xz (apt-get install xz-utils)"
      xz -dc "$src" >"$out" ;;
    *.ko.zst) command -v zstd >/dev/null || die "$src needs zstd (apt-get install zstd)"
      zstd -qdc "$src" >"$out" ;;
    *) die "$src: unknown module compression (want .ko, .ko.xz or .ko.zst)" ;;
  esac
}

work=$(mktemp -d "$cache/kernels/.dl.XXXXXX")
trap 'rm -rf "$work"' EXIT
echo "kernel.sh: downloading $best_pkg $best_ver" >&2
# As root, apt would hand the download to user _apt, which cannot write here.
sandbox=()
[[ $(id -u) -ne 0 ]] || sandbox=(-o APT::Sandbox::User=root)
(cd "$work" && apt-get download -q "${sandbox[@]+"${sandbox[@]}"}" "$best_pkg=$best_ver" >&2)
deb=$(find "$work" -maxdepth 1 -name '*.deb' | head -n1)
[[ -n $deb ]] || die "apt-get download produced no .deb for $best_pkg"
mkdir "$work/x"
dpkg-deb -x "$deb" "$work/x"
mkdir -p "$work/out/modules"
for m in "${modules[@]}"; do
  keep_module "$work/x" "$m" "$work/out/modules"
done
if [[ -f $dest/vmlinuz ]]; then
  # Cached before a module was added to the list: add the modules in one rename,
  # so that a run using this kernel meanwhile never sees a missing vmlinuz.
  rm -rf "$dest/modules"
  mv "$work/out/modules" "$dest/modules"
else
  vmlinuz=$(find "$work/x/boot" -maxdepth 1 -name 'vmlinuz-*' | head -n1)
  [[ -n $vmlinuz ]] || die "$best_pkg has no boot/vmlinuz-*"
  cp "$vmlinuz" "$work/out/vmlinuz"
  config=$(find "$work/x/boot" -maxdepth 1 -name 'config-*' | head -n1)
  [[ -z $config ]] || cp "$config" "$work/out/config"
  printf '%s\n' "$best_ver" >"$work/out/version"
  printf '%s\n' "$best_pkg" >"$work/out/package"
  mv "$work/out" "$dest"
fi
remember "$dest/vmlinuz"
echo "$dest/vmlinuz"
