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
# Only boot/vmlinuz-* and boot/config-* are kept from the package: the cloud
# kernel has everything the harness needs built in, so no modules are kept.
# If apt knows no matching package (e.g. no network and no package lists), the
# newest already-cached kernel of the series is used, with a warning.
# Progress goes to stderr; stdout is only the path.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
cache=${FP_VM_CACHE:-$here/../.vm}

die() { echo "kernel.sh: $*" >&2; exit 1; }

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
  if [[ ${memo_stamp:-} == "${lists_stamp// /:}" && -f ${memo_path:-} ]]; then
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
  echo "$fallback"
  exit 0
fi

key="${best_pkg}_${best_ver//[:\/]/_}"
dest="$cache/kernels/$key"
if [[ -f $dest/vmlinuz ]]; then
  remember "$dest/vmlinuz"
  echo "$dest/vmlinuz"
  exit 0
fi

# Serialise concurrent downloads of the same cache.
exec 9>"$cache/kernels/.lock"
flock 9
if [[ -f $dest/vmlinuz ]]; then
  echo "$dest/vmlinuz"
  exit 0
fi

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
vmlinuz=$(find "$work/x/boot" -maxdepth 1 -name 'vmlinuz-*' | head -n1)
[[ -n $vmlinuz ]] || die "$best_pkg has no boot/vmlinuz-*"
mkdir "$work/out"
cp "$vmlinuz" "$work/out/vmlinuz"
config=$(find "$work/x/boot" -maxdepth 1 -name 'config-*' | head -n1)
[[ -z $config ]] || cp "$config" "$work/out/config"
printf '%s\n' "$best_ver" >"$work/out/version"
printf '%s\n' "$best_pkg" >"$work/out/package"
mv "$work/out" "$dest"
remember "$dest/vmlinuz"
echo "$dest/vmlinuz"
