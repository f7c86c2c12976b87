#!/usr/bin/env bash
# `make bench-scale`: the scale benchmark (benches/scale.rs) on this host in kill mode
# (the host refuses BPF LSM programs), then in qemu with the BPF LSM (Debian cloud
# kernels), then docs/benchmarks.md ("## Scale" section) and docs/scale.png from both.
# Settings: FP_VM_KERNELS (default "6.12"), FP_SCALE_VM_EXECS (timed execs per block
# in the VM, default 30: TCG execs are ~10x slower), FP_SCALE_VM_ROUNDS (rounds over
# fingerprint's points in the VM, default 60), FP_SCALE_OUT (raw JSON results,
# default target/bench-scale), FP_SCALE_SKIP_HOST=1 / FP_SCALE_SKIP_VM=1 (reuse the
# JSON of an earlier run), and every FP_SCALE_* the benchmark itself reads.
set -euo pipefail
cd "$(dirname "$0")/.."

out=${FP_SCALE_OUT:-target/bench-scale}
read -r -a kernels <<<"${FP_VM_KERNELS:-6.12}"
mkdir -p "$out"

# The plot needs matplotlib; install it for this user if it is missing.
python3 -c 'import matplotlib' 2>/dev/null || python3 -m pip install --quiet matplotlib

cargo bench --locked --bench scale --no-run
bench_bin=$(cargo bench --locked --bench scale --no-run 2>&1 |
  grep -o 'target/release/deps/scale-[0-9a-f]*' | head -n1)
[[ -x $bench_bin ]] || { echo "bench-scale: benchmark binary not found" >&2; exit 1; }

if [[ ${FP_SCALE_SKIP_HOST:-0} != 1 ]]; then
  echo "== bench-scale: host, kill mode"
  FP_SCALE_MECHANISM=kill FP_SCALE_JSON="$out/host.json" "$bench_bin"
fi

if [[ ${FP_SCALE_SKIP_VM:-0} != 1 ]]; then
  # The initramfs lives in guest RAM: ship the benchmark without debug info, and a
  # prebuilt exec target (the guest has no compiler).
  stage=$(mktemp -d)
  trap 'rm -rf "$stage"' EXIT
  objcopy --strip-debug "$bench_bin" "$stage/scale"
  printf 'int main(void) { return 0; }\n' >"$stage/exec-target.c"
  cc -O2 -static -o "$stage/exec-target" "$stage/exec-target.c"
  for kernel in "${kernels[@]}"; do
    echo "== bench-scale: qemu, Debian $kernel kernel, BPF LSM"
    vm/run.sh --kernel "$kernel" --mem 2048 --timeout 2400 \
      --add "$stage/scale=/opt/fingerprint/scale" \
      --add "$stage/exec-target=/opt/fingerprint/exec-target" \
      --env FP_SCALE_MECHANISM=lsm \
      --env FP_SCALE_EXECS="${FP_SCALE_VM_EXECS:-30}" \
      --env FP_SCALE_ROUNDS="${FP_SCALE_VM_ROUNDS:-60}" \
      --env FP_SCALE_PP_ROUNDS="${FP_SCALE_PP_ROUNDS:-20}" \
      --env FP_SCALE_N="${FP_SCALE_N:-1,10,100,1000,10000}" \
      --env FP_SCALE_TARGET=/opt/fingerprint/exec-target \
      --env FP_SCALE_JSON=- \
      -- /opt/fingerprint/scale >"$out/vm-$kernel.json.tmp"
    mv "$out/vm-$kernel.json.tmp" "$out/vm-$kernel.json"
  done
fi

vm_results=()
for kernel in "${kernels[@]}"; do vm_results+=("$out/vm-$kernel.json"); done
python3 scripts/bench_scale_report.py --host "$out/host.json" \
  --vm "${vm_results[@]}" --markdown docs/benchmarks.md --png docs/scale.png
