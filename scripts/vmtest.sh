#!/usr/bin/env bash
# The BPF LSM suite: boots each Debian kernel under qemu (the host refuses LSM
# programs) and runs, inside, the enforcement scenarios with the LSM (the #[ignore]d
# `enforce::lsm` tests, and `containers::lsm`: held first execs of simulated
# containers), learning at the LSM hook, and the decision tests.
# Usage: scripts/vmtest.sh [test filters...]; FP_VM_KERNELS="6.12 6.1" by default.
set -euo pipefail
cd "$(dirname "$0")/.."

read -r -a kernels <<<"${FP_VM_KERNELS:-6.12 6.1}"
filters=("$@")
((${#filters[@]})) || filters=(enforce::lsm:: boundaries::lsm:: containers::lsm:: learn:: decision:: cli::)

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
for kernel in "${kernels[@]}"; do
  echo "== vmtest: Debian $kernel kernel, BPF LSM enabled"
  if ! vm/run.sh --kernel "$kernel" --mem 2048 --timeout 1200 \
    --add "$stage/integration=/opt/fingerprint/integration" \
    --add "$stage/fingerprint=$PWD/target/debug/fingerprint" \
    --add /usr/bin/true --add /usr/bin/dash \
    --env CI=true --env RUST_BACKTRACE=1 \
    -- /opt/fingerprint/integration --include-ignored --test-threads=2 "${filters[@]}"; then
    echo "== vmtest: FAILED on $kernel" >&2
    status=1
  fi
done
exit "$status"
