# fingerprint: `make demo` shows learn -> diff -> enforce on this host;
# `make test` runs every test (unit, integration on the real kernel, LSM in a VM).

CARGO ?= cargo
RELEASE_BIN := target/release/fingerprint

.PHONY: all deps build install install-files lint test host-test vmtest demo bench-learn bench-diff bench-scale fuzz vmlinux clean

all: build

deps:
	@scripts/deps.sh

build: deps
	$(CARGO) build --release --locked

# Install the binary, its shell completions and a man page per command under
# $(DESTDIR)$(PREFIX). `install-files` installs an already built $(BIN).
PREFIX ?= /usr/local
BIN ?= $(RELEASE_BIN)
install: build
	$(MAKE) install-files

install-files:
	install -D -m 0755 $(BIN) $(DESTDIR)$(PREFIX)/bin/fingerprint
	install -d $(DESTDIR)$(PREFIX)/share/bash-completion/completions \
		$(DESTDIR)$(PREFIX)/share/zsh/site-functions \
		$(DESTDIR)$(PREFIX)/share/fish/vendor_completions.d
	$(BIN) completions bash > $(DESTDIR)$(PREFIX)/share/bash-completion/completions/fingerprint
	$(BIN) completions zsh > $(DESTDIR)$(PREFIX)/share/zsh/site-functions/_fingerprint
	$(BIN) completions fish > $(DESTDIR)$(PREFIX)/share/fish/vendor_completions.d/fingerprint.fish
	$(BIN) manpages --out $(DESTDIR)$(PREFIX)/share/man/man1

lint: deps
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --locked --all-targets -- -D warnings
	scripts/check-bpf-headers.sh

# Everything, as CI runs it (as root; BPF tests fail rather than skip under CI=true):
# unit and integration tests on this kernel, then the BPF LSM suite in qemu.
test: deps lint host-test vmtest

host-test: deps
	$(CARGO) test --locked

# The BPF LSM suite inside qemu, on each Debian kernel (FP_VM_KERNELS="6.12 6.1").
vmtest: deps
	scripts/vmtest.sh

demo: build
	@scripts/demo.sh $(RELEASE_BIN)

bench-learn: build
	$(CARGO) bench --locked --bench learn

bench-diff: deps
	$(CARGO) bench --locked --bench diff

# Fuzz the profile parser for a bounded time (cargo-fuzz on stable, no sanitizer).
FUZZ_SECONDS ?= 60
fuzz: deps
	@command -v cargo-fuzz >/dev/null 2>&1 || $(CARGO) install cargo-fuzz --locked
	mkdir -p fuzz/corpus/profile_parser
	$(CARGO) fuzz run --fuzz-dir fuzz --sanitizer none profile_parser \
		fuzz/corpus/profile_parser tests/golden/export tests/golden/export-stats \
		-- -max_total_time=$(FUZZ_SECONDS) -dict=fuzz/profile.dict -max_len=8192

# Scale: fingerprint vs one-program-per-workload, N = 1..10,000 workloads, on this host
# (kill mode) and in qemu (BPF LSM); writes docs/benchmarks.md "## Scale" and docs/scale.png.
bench-scale: build
	@scripts/bench-scale.sh

# Regenerate bpf/vmlinux/<arch>/vmlinux.h from the running kernel's BTF (build.rs picks
# the one of the architecture Cargo targets). CO-RE relocates field offsets at load
# time, so one header per architecture serves every kernel from 5.15 on.
VMLINUX_ARCH ?= $(shell uname -m)
vmlinux: deps
	mkdir -p bpf/vmlinux/$(VMLINUX_ARCH)
	bpftool btf dump file /sys/kernel/btf/vmlinux format c > bpf/vmlinux/$(VMLINUX_ARCH)/vmlinux.h

clean:
	$(CARGO) clean
