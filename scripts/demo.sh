#!/usr/bin/env bash
# The demo: two small workloads in their own cgroups on this host, learned for a few
# seconds, then what was learned. Usage: scripts/demo.sh path/to/fingerprint
set -euo pipefail

bin=$(realpath "${1:-target/release/fingerprint}")
if [[ $(id -u) -ne 0 ]]; then
  echo "demo: run as root (sudo make demo): learning loads BPF programs" >&2
  exit 1
fi

work=$(realpath -m target/demo)
rm -rf "$work" && mkdir -p "$work"
cg_root=$(findmnt -n -t cgroup2 -o TARGET | head -n1)
[[ -n $cg_root ]] || { echo "demo: no cgroup v2 mount found" >&2; exit 1; }
demo_cg="$cg_root/fingerprint-demo"
pids=()

cleanup() {
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rmdir "$demo_cg"/* "$demo_cg" 2>/dev/null || true
}
trap cleanup EXIT

# start NAME SCRIPT: run SCRIPT with sh inside cgroup fingerprint-demo/NAME.
start() {
  mkdir -p "$demo_cg/$1"
  sh -c 'echo $$ > "$1/cgroup.procs" && exec sh -c "$2"' sh "$demo_cg/$1" "$2" &
  pids+=($!)
}

step() { printf '\n\033[1m== %s\033[0m\n' "$*"; }

step "Two workloads start in their own cgroups (fingerprint-demo/web, fingerprint-demo/batch)"
start web 'while :; do cat /etc/hostname >/dev/null; date >/dev/null; sleep 0.3; done'
start batch 'while :; do ls / >/dev/null; sort /etc/passwd >/dev/null; gzip -c /etc/passwd >/dev/null; sleep 0.5; done'

step "fingerprint learn (5 s, only the demo cgroups)"
"$bin" learn --db "$work/learn.db" --duration 5s --cgroup "$demo_cg"

step "fingerprint show: what each workload ran"
"$bin" show --db "$work/learn.db"
