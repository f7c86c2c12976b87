# fingerprint: `make demo` shows learn -> diff -> enforce on this host;
# `make test` runs every test (unit, integration on the real kernel, LSM in a VM).

CARGO ?= cargo
RELEASE_BIN := target/release/fingerprint

.PHONY: all deps build lint test unit-test demo bench-learn vmlinux clean

all: build

deps:
	@scripts/deps.sh

build: deps
	$(CARGO) build --release --locked

lint: deps
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --locked --all-targets -- -D warnings

# Everything, as CI runs it (as root; BPF tests fail rather than skip under CI=true).
test: deps lint
	$(CARGO) test --locked

demo: build
	@scripts/demo.sh $(RELEASE_BIN)

bench-learn: build
	$(CARGO) bench --locked --bench learn

# Regenerate bpf/vmlinux.h from the running kernel's BTF (x86_64). CO-RE relocates
# field offsets at load time, so one header serves every kernel from 5.15 on.
vmlinux: deps
	bpftool btf dump file /sys/kernel/btf/vmlinux format c > bpf/vmlinux.h

clean:
	$(CARGO) clean
