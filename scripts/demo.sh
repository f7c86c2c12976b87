#!/usr/bin/env bash
# The demo: two small workloads in their own cgroups on this host, learned for a few
# seconds, exported as profiles, diffed, then enforced: an allowed exec runs, a new one
# is blocked and reported. Usage: scripts/demo.sh path/to/fingerprint
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
  [[ -n ${enforcer:-} ]] && kill -INT "$enforcer" 2>/dev/null
  wait 2>/dev/null || true
  # The loops' children (a sleep) outlive their shells: kill the whole subtree, wait
  # (bounded) until it is empty, then remove the cgroups, deepest first.
  [[ -e $demo_cg/cgroup.kill ]] && echo 1 >"$demo_cg/cgroup.kill" 2>/dev/null
  for _ in $(seq 50); do
    grep -qs "populated 0" "$demo_cg/cgroup.events" && break
    sleep 0.1
  done
  find "$demo_cg" -depth -type d -exec rmdir {} + 2>/dev/null || true
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

step "fingerprint export: one reviewable profile per workload (mode enforce for the demo)"
"$bin" export --db "$work/learn.db" --out "$work/profiles" --mode enforce
cat "$work/profiles/"*web.json

step "fingerprint diff --fail-on added: the CI gate passes (modes differ on purpose; nothing new)"
"$bin" diff "$work/profiles" "$work/learn.db" --fail-on added && echo "(exit status $?: no new executables)"

step "fingerprint enforce: one program for both workloads"
"$bin" enforce --profile "$work/profiles" --events "$work/violations.jsonl" \
  --db "$work/learn.db" 2>"$work/enforce.log" &
enforcer=$!
until grep -q "fingerprint: enforcing" "$work/enforce.log"; do
  kill -0 "$enforcer" 2>/dev/null || { cat "$work/enforce.log" >&2; exit 1; }
  sleep 0.2
done
cat "$work/enforce.log"
if grep -q "KILL MODE" "$work/enforce.log"; then
  printf '\n\033[1;33m>> This kernel refuses BPF LSM programs: the demo runs in KILL MODE.\n'
  printf '>> A blocked exec happens and the new program is killed before its first\n'
  printf '>> instruction. `make vmtest` shows the LSM denying execs in a real kernel.\033[0m\n'
fi

# run_in NAME CMD...: run a command inside workload NAME's cgroup.
run_in() {
  local cg=$demo_cg/$1
  shift
  sh -c 'echo $$ > "$1/cgroup.procs" && shift && exec "$@"' sh "$cg" "$@"
}

step "In the web workload: an exec it learned (date) runs"
run_in web /usr/bin/date && echo "(exit status $?)"

step "In the web workload: an exec it never ran (id) is blocked"
run_in web /usr/bin/id && echo "(exit status $?)" || echo "(blocked: exit status $?)"

step "A cgroup created now inside the web workload (web/late) stays in it, whatever its name: id is blocked there too"
mkdir "$demo_cg/web/late"
run_in web/late /usr/bin/id && echo "(exit status $?)" || echo "(blocked: exit status $?)"

step "A workload without a profile is left alone: in a new cgroup fingerprint-demo/other, id runs"
mkdir "$demo_cg/other"
run_in other /usr/bin/id && echo "(exit status $?)"

step "The violations, as reported (one JSON line per violation)"
sleep 0.3  # the web loop keeps running its allowed commands meanwhile
kill -INT "$enforcer"; wait "$enforcer" 2>/dev/null || true; enforcer=
cat "$work/violations.jsonl"
echo
echo "The web and batch loops ran their learned commands throughout: $(wc -l <"$work/violations.jsonl") violation(s) in all."
