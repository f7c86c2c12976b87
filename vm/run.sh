#!/usr/bin/env bash
# vm/run.sh - run one command as root inside a throw-away qemu VM that boots a
# Debian cloud kernel with a working BPF LSM (lsm=...,bpf), and hand back the
# command's stdout, stderr and exit status.
#
# usage: vm/run.sh [--kernel 6.12|6.1|PATH] [--timeout SECONDS] [--mem MB]
#                  [--add HOSTPATH[=GUESTPATH]]... [--env NAME=VALUE]...
#                  [--workdir GUESTDIR] [--append KERNELARGS] [--keep] [--verbose]
#                  -- COMMAND [ARGS...]
#
# The guest is an initramfs (cpio newc, gzip) holding busybox-static (as
# /bin/busybox plus applet symlinks), every --add file or directory, and the
# shared libraries (from ldd, plus the dynamic loader) of every ELF file added,
# and the kernel's modules/*.ko beside its vmlinuz (overlayfs, from vm/kernel.sh),
# which /init loads. /init makes / a bind mount over the initramfs root first, so
# the guest's root is a mount with a parent, as on a booted host (pivot_root works).
# qemu uses software emulation (TCG): KVM does not work on these machines.
#
# Output channels (so kernel console noise never mixes with the command's output):
#   ttyS0 -> console log (kernel + /init messages), kept in the temp dir
#   ttyS1 -> COMMAND's stdout  -> printed on run.sh's stdout
#   ttyS2 -> COMMAND's stderr  -> printed on run.sh's stderr
#   ttyS3 -> status lines from /init ("start UPTIME", "exit STATUS UPTIME")
# run.sh exits with COMMAND's exit status; 124 if --timeout expired (qemu is
# killed), 125 if the guest never reported a status (panic, bad /init, qemu
# error). Both failures print a message and the tail of the console log.
#
# Environment: FP_VM_CACHE (kernel cache dir, default <repo>/.vm),
# TMPDIR (where the per-run temp dir goes), FP_VM_QEMU_EXTRA (extra qemu
# options, split on blanks).
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
prog=run.sh

usage() { # usage [EXIT_STATUS]: 0 prints to stdout (--help), else to stderr
  local text
  text=$(sed -n '/^# usage:/,/^#  *-- COMMAND/p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//')
  if [[ ${1:-2} -eq 0 ]]; then echo "$text"; else echo "$text" >&2; fi
  exit "${1:-2}"
}
die() { echo "$prog: $*" >&2; exit 2; }

kernel=6.12
timeout_s=600
mem=1024
workdir=/
append_extra=''
keep=0
verbose=0
adds=()
envs=()

while [[ $# -gt 0 ]]; do
  case $1 in
    --kernel) [[ $# -ge 2 ]] || usage; kernel=$2; shift 2 ;;
    --kernel=*) kernel=${1#*=}; shift ;;
    --timeout) [[ $# -ge 2 ]] || usage; timeout_s=$2; shift 2 ;;
    --timeout=*) timeout_s=${1#*=}; shift ;;
    --mem) [[ $# -ge 2 ]] || usage; mem=$2; shift 2 ;;
    --mem=*) mem=${1#*=}; shift ;;
    --add) [[ $# -ge 2 ]] || usage; adds+=("$2"); shift 2 ;;
    --add=*) adds+=("${1#*=}"); shift ;;
    --env) [[ $# -ge 2 ]] || usage; envs+=("$2"); shift 2 ;;
    --env=*) envs+=("${1#*=}"); shift ;;
    --workdir) [[ $# -ge 2 ]] || usage; workdir=$2; shift 2 ;;
    --workdir=*) workdir=${1#*=}; shift ;;
    --append) [[ $# -ge 2 ]] || usage; append_extra+=" $2"; shift 2 ;;
    --append=*) append_extra+=" ${1#*=}"; shift ;;
    --keep) keep=1; shift ;;
    --verbose|-v) verbose=1; shift ;;
    -h|--help) usage 0 ;;
    --) shift; break ;;
    *) echo "$prog: unexpected argument '$1' (the command goes after --)" >&2; usage ;;
  esac
done
[[ $# -gt 0 ]] || { echo "$prog: no COMMAND given" >&2; usage; }
[[ $timeout_s =~ ^[0-9]+$ && $timeout_s -gt 0 ]] || die "--timeout wants a positive number of seconds"
[[ $mem =~ ^[0-9]+$ && $mem -ge 128 ]] || die "--mem wants a number of MiB (>= 128)"
for e in "${envs[@]+"${envs[@]}"}"; do
  [[ $e =~ ^[A-Za-z_][A-Za-z0-9_]*= ]] || die "--env wants NAME=VALUE, got '$e'"
done

# ---------------------------------------------------------------- host tools
ensure_tools() {
  local need=()
  command -v qemu-system-x86_64 >/dev/null || need+=(qemu-system-x86)
  command -v cpio >/dev/null || need+=(cpio)
  command -v xz >/dev/null || need+=(xz-utils) # vm/kernel.sh: 6.12's modules are .ko.xz
  [[ $(dpkg-query -W -f='${Status}' busybox-static 2>/dev/null) == *' installed' ]] ||
    need+=(busybox-static)
  [[ ${#need[@]} -eq 0 ]] && return 0
  [[ $(id -u) -eq 0 ]] || die "missing packages (${need[*]}); install them as root: apt-get install -y ${need[*]}"
  echo "$prog: installing ${need[*]}" >&2
  export DEBIAN_FRONTEND=noninteractive
  if ! apt-get install -y -qq "${need[@]}" >&2; then
    apt-get update -qq >&2
    apt-get install -y -qq "${need[@]}" >&2
  fi
}
ensure_tools
busybox=/bin/busybox
[[ -x $busybox ]] || die "$busybox missing (package busybox-static)"

# ---------------------------------------------------------------- kernel
if [[ $kernel == */* ]]; then
  vmlinuz=$kernel
  [[ -f $vmlinuz ]] || die "no kernel image at $vmlinuz"
else
  vmlinuz=$("$here/kernel.sh" "$kernel") || die "could not get a $kernel kernel"
fi

# ---------------------------------------------------------------- temp dir
t_start=$(date +%s.%N)
tmp=$(mktemp -d "${TMPDIR:-/tmp}/fp-vm.XXXXXX")
qpid=''
tailpid=''
# shellcheck disable=SC2317 # called through the EXIT trap
cleanup() {
  [[ -z $qpid ]] || kill "$qpid" 2>/dev/null || true
  [[ -z $tailpid ]] || kill "$tailpid" 2>/dev/null || true
  if [[ $keep -eq 1 ]]; then
    echo "$prog: kept $tmp" >&2
  else
    rm -rf "$tmp"
  fi
}
trap cleanup EXIT
trap 'echo "$prog: interrupted" >&2; exit 130' INT TERM

root=$tmp/root
mkdir -p "$root"

# ---------------------------------------------------------------- initramfs
# Mirror the host's merged-/usr layout (/bin -> usr/bin, /lib -> usr/lib, ...)
# so that library paths printed by ldd and the loader path (/lib64/...) resolve
# the same way inside the guest.
for d in bin sbin lib lib32 lib64 libx32; do
  if [[ -L /$d ]]; then
    target=$(readlink "/$d")
    target=${target#/}
    mkdir -p "$root/$target"
    ln -s "$target" "$root/$d"
  fi
done
mkdir -p "$root"/{bin,sbin,usr/bin,usr/sbin,lib,dev,proc,sys,tmp,run,root,etc,mnt}
chmod 1777 "$root/tmp"

cp "$busybox" "$root/bin/busybox"
# One perl process instead of ~270 ln/mkdir forks (perl-base is Essential).
"$busybox" --list-full | perl -e '
  my $root = shift;
  while (my $a = <STDIN>) {
    chomp $a;
    next if $a eq "" || $a eq "bin/busybox" || -e "$root/$a" || -l "$root/$a";
    my $dir = "$root/$a"; $dir =~ s{/[^/]*$}{};
    my $p = ""; for my $c (split m{/}, $dir) { $p .= "$c/"; mkdir $p; }
    symlink("/bin/busybox", "$root/$a") or die "symlink $a: $!\n";
  }' "$root"

# Modules kept beside the kernel (vm/kernel.sh), for /init to insmod.
if [[ -d $(dirname "$vmlinuz")/modules ]]; then
  mkdir -p "$root/lib/modules"
  cp "$(dirname "$vmlinuz")"/modules/*.ko "$root/lib/modules/"
fi

printf 'root:x:0:0:root:/root:/bin/sh\n' >"$root/etc/passwd"
printf 'root:x:0:\n' >"$root/etc/group"
printf 'fp-vm\n' >"$root/etc/hostname"

# Reads NUL-separated paths; prints (NUL-separated) those that are x86-64 ELF
# executables or shared objects, the files ldd can tell about. Skips relocatable
# objects (.o, BPF objects) and other architectures. One process for all files.
host_elves() {
  perl -0 -ne '
    chomp; next unless -f $_ && open(my $fh, "<", $_);
    my $h = ""; read($fh, $h, 20); close $fh;
    next unless length($h) == 20 && substr($h, 0, 4) eq "\x7fELF";
    my ($type, $machine) = unpack("v v", substr($h, 16, 4));
    print "$_\0" if ($type == 2 || $type == 3) && $machine == 62;'
}

# Copy one host file to the same path in the guest (following symlinks).
copy_same_path() {
  local src=$1
  [[ -e $root$src ]] && return 0
  mkdir -p "$root$(dirname "$src")"
  cp -L --preserve=mode,timestamps "$src" "$root$src"
}

need_ldcache=0
add_libs_of() {
  local f=$1 line lib
  # ldd fails ("not a dynamic executable") for static binaries: nothing to add.
  while read -r line; do
    lib=''
    case $line in
      *'=> not found'*) echo "$prog: warning: $f needs ${line%% *}, which ldd cannot find" >&2 ;;
      *' => /'*) lib=${line#* => }; lib=${lib%% (*} ;;
      /*) lib=${line%% (*} ;;
    esac
    if [[ -n $lib && -e $lib ]]; then
      copy_same_path "$lib"
      need_ldcache=1
    fi
  done < <(ldd "$f" 2>/dev/null || true)
}

for spec in "${adds[@]+"${adds[@]}"}"; do
  host=${spec%%=*}
  if [[ $spec == *=* ]]; then guest=${spec#*=}; else guest=''; fi
  [[ -e $host ]] || die "--add: no such file or directory: $host"
  [[ $host == /* ]] || host=$(pwd)/$host
  [[ -n $guest ]] || guest=$host
  [[ $guest == /* ]] || die "--add: guest path must be absolute: $guest"
  guest=/${guest#/}
  guest=${guest%/}
  [[ -n $guest ]] || die "--add: cannot replace the guest's /"
  case $guest/ in
    /proc/*|/sys/*|/dev/*) die "--add: $guest would be hidden by the guest's /proc, /sys or /dev" ;;
  esac
  if [[ -d $host ]]; then
    mkdir -p "$root$guest"
    cp -a --remove-destination "$host/." "$root$guest/"
    while IFS= read -r -d '' f; do
      add_libs_of "$f"
    done < <(find "$host/" -type f -print0 | host_elves)
  else
    mkdir -p "$root$(dirname "$guest")"
    cp -L --preserve=mode,timestamps --remove-destination "$host" "$root$guest"
    while IFS= read -r -d '' f; do
      add_libs_of "$f"
    done < <(printf '%s\0' "$host" | host_elves)
  fi
done
# The loader cache helps with libraries outside the default directories.
if [[ $need_ldcache -eq 1 && -f /etc/ld.so.cache && ! -e $root/etc/ld.so.cache ]]; then
  cp /etc/ld.so.cache "$root/etc/ld.so.cache"
fi

# Single-quote a string for a POSIX shell.
shq() { printf "'%s'" "${1//\'/\'\\\'\'}"; }

{
  cat <<'EOF'
#!/bin/busybox sh
# Generated by vm/run.sh: set up the guest, run the command, report, power off.
bb=/bin/busybox
# The initramfs root (rootfs) is a mount with no parent, and pivot_root(2) refuses
# to move such a root (EINVAL), so a container-style pivot_root could not be tested.
# Do what switch_root does on a booted host, with a bind mount of the same files
# instead of a copy: stack it on /, chroot into it and run /init again there. The
# files and paths stay the same; the root is now a mount with a parent.
if [ "$1" != rooted ]; then
  $bb mount --bind / /mnt && cd /mnt && $bb mount --move . / && exec $bb chroot . /init rooted
  echo "init: cannot bind-mount / over the initramfs root" >&2
  $bb poweroff -f
fi
export PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
export HOME=/root TERM=dumb
m() { $bb mount "$@" || echo "init: mount $* failed" >&2; }
m -t proc proc /proc
m -t sysfs sysfs /sys
m -t devtmpfs devtmpfs /dev
$bb mkdir -p /dev/pts /dev/shm
m -t devpts devpts /dev/pts
m -t tmpfs -o mode=1777 tmpfs /dev/shm
# The root is already a writable tmpfs; mount /tmp and /run only when empty,
# so files added there with --add stay visible.
[ -n "$($bb ls -A /tmp)" ] || m -t tmpfs -o mode=1777 tmpfs /tmp
[ -n "$($bb ls -A /run)" ] || m -t tmpfs -o mode=755 tmpfs /run
m -t securityfs securityfs /sys/kernel/security
m -t bpf bpf /sys/fs/bpf
m -t cgroup2 cgroup2 /sys/fs/cgroup
[ -d /sys/kernel/debug ] && $bb mount -t debugfs debugfs /sys/kernel/debug 2>/dev/null
[ -d /sys/kernel/tracing ] && $bb mount -t tracefs tracefs /sys/kernel/tracing 2>/dev/null
[ -e /dev/fd ] || $bb ln -s /proc/self/fd /dev/fd
[ -e /dev/stdin ] || $bb ln -s /proc/self/fd/0 /dev/stdin
[ -e /dev/stdout ] || $bb ln -s /proc/self/fd/1 /dev/stdout
[ -e /dev/stderr ] || $bb ln -s /proc/self/fd/2 /dev/stderr
$bb hostname fp-vm
$bb ip link set lo up 2>/dev/null
# Raw mode: no "\n" -> "\r\n" translation; the settings outlive each open.
for p in 1 2 3; do $bb stty -F /dev/ttyS$p raw -echo 2>/dev/null || echo "init: no /dev/ttyS$p" >&2; done
# A module that does not load is reported on COMMAND's stderr, not only the console.
for ko in /lib/modules/*.ko; do
  [ -e "$ko" ] || continue
  $bb insmod "$ko" || echo "init: insmod $ko failed" >/dev/ttyS2
done
up() { read -r u _ </proc/uptime; echo "$u"; }
EOF
  for e in "${envs[@]+"${envs[@]}"}"; do
    printf 'export %s=%s\n' "${e%%=*}" "$(shq "${e#*=}")"
  done
  printf 'set --'
  for a in "$@"; do printf ' %s' "$(shq "$a")"; done
  printf '\n'
  printf 'cd %s || { echo "init: cannot cd to workdir" >&2; }\n' "$(shq "$workdir")"
  cat <<'EOF'
# Busybox sh (Debian's static build) prefers its own applets to files in PATH
# and runs many of them without any execve. Resolve a bare COMMAND through PATH
# first, so that COMMAND is always really exec'd from the file that PATH finds.
case $1 in
  */*) ;;
  *)
    ifs=$IFS; IFS=:
    for d in $PATH; do
      if [ -f "$d/$1" ] && [ -x "$d/$1" ]; then c=$d/$1; shift; set -- "$c" "$@"; break; fi
    done
    IFS=$ifs ;;
esac
echo "start $(up)" >/dev/ttyS3
# In a subshell, so that even "exit N" or "exec" as COMMAND leaves /init alive.
("$@") </dev/null >/dev/ttyS1 2>/dev/ttyS2
rc=$?
echo "exit $rc $(up)" >/dev/ttyS3
$bb sync
# Closing a serial tty waits until its output has been sent; the writes above
# each opened and closed their port, so everything is out by now.
$bb poweroff -f
EOF
} >"$root/init"
chmod 755 "$root/init"

(cd "$root" && find . -print0 | LC_ALL=C sort -z |
  cpio --null -o -H newc -R 0:0 --quiet | gzip -1 >"$tmp/initrd.gz")

# ---------------------------------------------------------------- boot
console=$tmp/console.log
: >"$console"
: >"$tmp/stdout"
: >"$tmp/stderr"
: >"$tmp/status"
# Drop terminal escapes (SeaBIOS sends "ESC c", a full terminal reset) and CRs.
strip_escapes() { sed -u -e 's/\x1b\[[0-9;?]*[A-Za-z]//g' -e 's/\x1b[c78]//g' -e 's/\r//g'; }
cmdline="console=ttyS0 quiet panic=-1 lsm=landlock,lockdown,yama,bpf$append_extra"

if [[ $verbose -eq 1 ]]; then
  # $! must be tail itself (not a pipeline's last part): killing it ends sed too.
  tail -n +1 -f "$console" > >(strip_escapes >&2) &
  tailpid=$!
fi

# Extra qemu options, split on blanks (for experiments, e.g. "-bios qboot.rom").
read -r -a qemu_extra <<<"${FP_VM_QEMU_EXTRA:-}"

t_boot=$(date +%s.%N)
timeout --kill-after=10 "$timeout_s" \
  qemu-system-x86_64 \
    -accel tcg -cpu max -m "$mem" -smp 2 \
    -nographic -no-reboot -nodefaults -monitor none \
    "${qemu_extra[@]+"${qemu_extra[@]}"}" \
    -kernel "$vmlinuz" -initrd "$tmp/initrd.gz" -append "$cmdline" \
    -serial "file:$console" \
    -serial "file:$tmp/stdout" \
    -serial "file:$tmp/stderr" \
    -serial "file:$tmp/status" \
    </dev/null >"$tmp/qemu.log" 2>&1 &
qpid=$!
qrc=0
wait "$qpid" || qrc=$?
qpid=''
t_end=$(date +%s.%N)
if [[ -n $tailpid ]]; then
  sleep 0.2
  kill "$tailpid" 2>/dev/null || true
  wait "$tailpid" 2>/dev/null || true
  tailpid=''
fi

cat "$tmp/stdout"
cat "$tmp/stderr" >&2

status_line=$(tr -d '\r' <"$tmp/status" | grep -E '^exit [0-9]+ ' | tail -n1 || true)
start_line=$(tr -d '\r' <"$tmp/status" | grep -E '^start ' | tail -n1 || true)

console_tail() {
  echo "---- last lines of the guest console ($console) ----" >&2
  strip_escapes <"$console" | tail -n 40 >&2
  if [[ -s $tmp/qemu.log ]]; then
    echo "---- qemu ----" >&2
    tail -n 20 "$tmp/qemu.log" >&2
  fi
  echo "----" >&2
}

if [[ $qrc -eq 124 || $qrc -eq 137 ]]; then
  echo "$prog: TIMEOUT: the VM did not finish within ${timeout_s}s (kernel ${kernel}); qemu was killed" >&2
  [[ -n $start_line ]] && echo "$prog: the command had started (guest uptime ${start_line#start }s)" >&2
  console_tail
  exit 124
fi
if [[ -z $status_line ]]; then
  echo "$prog: ERROR: the guest reported no exit status (qemu exit $qrc; kernel panic, /init failure or qemu error?)" >&2
  console_tail
  exit 125
fi

read -r _ rc up_end <<<"$status_line"
if [[ $verbose -eq 1 ]]; then
  up_start=${start_line#start }
  awk -v s="$t_start" -v b="$t_boot" -v e="$t_end" -v us="${up_start:-0}" -v ue="$up_end" \
    -v k="$kernel" -v p="$prog" 'BEGIN {
      printf "%s: kernel %s: initramfs %.1fs, guest boot to command %.1fs (kernel uptime), command %.1fs, qemu total %.1fs, overall %.1fs\n",
        p, k, b - s, us, ue - us, e - b, e - s > "/dev/stderr" }'
fi
exit "$rc"
