#!/usr/bin/env bash
# The BPF LSM suite: boots each Debian kernel under qemu (the host refuses LSM
# programs) and runs, inside, the enforcement scenarios with the LSM (the #[ignore]d
# `enforce::lsm` tests, `containers::lsm` and `engines::lsm`: held first execs of
# simulated containers, `metrics::lsm`: the metrics of LSM denials, and
# `coalesce::lsm`: repeated violations counted in the kernel), learning at the LSM
# hook, and the decision tests. Then one more boot,
# with preempt=full, runs the two-tasks-on-one-CPU race (`preempt::`), which needs
# full preemption to happen at all.
# Usage: scripts/vmtest.sh [test filters...]; FP_VM_KERNELS="6.12 6.1" by default (empty: none);
# FP_VM_PREEMPT_KERNEL=6.12 by default (empty: no preempt=full boot).
set -euo pipefail
cd "$(dirname "$0")/.."

read -r -a kernels <<<"${FP_VM_KERNELS-6.12 6.1}"
filters=("$@")
((${#filters[@]})) || filters=(enforce::lsm:: boundaries::lsm:: containers::lsm:: engines::lsm:: metrics::lsm:: coalesce::lsm:: learn:: decision:: cli::)

cargo build --locked --quiet
test_bin=$(cargo test --locked --no-run 2>&1 |
  grep -o 'target/debug/deps/integration-[0-9a-f]*' | head -n1)
[[ -x $test_bin ]] || { echo "vmtest: integration test binary not found" >&2; exit 1; }

# The initramfs lives in guest RAM: ship the binaries without debug info. The
# fingerprint binary goes where the test binary expects it (its build path).
stage=$(mktemp -d)
trap 'rm -rf "$stage"' EXIT
objcopy --strip-debug "$test_bin" "$stage/integration"
objcopy --strip-debug target/debug/fingerprint "$stage/fingerprint"

status=0
# run_in_vm KERNEL [vm/run.sh options...] -- [test binary arguments...]
run_in_vm() {
  local kernel=$1 opts=()
  shift
  while [[ $1 != -- ]]; do opts+=("$1"); shift; done
  shift
  if ! vm/run.sh --kernel "$kernel" --mem 2048 --timeout 1200 "${opts[@]+"${opts[@]}"}" \
    --add "$stage/integration=/opt/fingerprint/integration" \
    --add "$stage/fingerprint=$PWD/target/debug/fingerprint" \
    --add /usr/bin/true --add /usr/bin/dash \
    --env CI=true --env RUST_BACKTRACE=1 \
    -- /opt/fingerprint/integration --include-ignored "$@"; then
    echo "== vmtest: FAILED on $kernel ${opts[*]}" >&2
    status=1
  fi
}

for kernel in "${kernels[@]+"${kernels[@]}"}"; do
  echo "== vmtest: Debian $kernel kernel, BPF LSM enabled"
  run_in_vm "$kernel" -- --test-threads=2 "${filters[@]}"
done

preempt_kernel=${FP_VM_PREEMPT_KERNEL-6.12}
if [[ -n $preempt_kernel ]]; then
  echo "== vmtest: Debian $preempt_kernel kernel, preempt=full, two tasks racing on one CPU"
  # One test at a time: each pins its two racing tasks to one CPU of its own choosing.
  # Kill mode is left out: tp_btf programs run inside a tracepoint, with preemption
  # disabled, so the race cannot happen there (the host runs it anyway).
  run_in_vm "$preempt_kernel" --append preempt=full --env FP_PREEMPT_MODEL=full \
    -- --test-threads=1 --nocapture preempt::lsm:: preempt::racing_execs_on_one_cpu_are_learned_apart
fi
exit "$status"
