# xenguest in Rust. `make demo` and `make test` install what they need on Debian 12.
SHELL := /bin/bash
CARGO ?= cargo
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
# Build: libxen-dev + clang (bindings), OCaml + dune (the OCaml module);
# run/test: Debian's hvmloader and xenstored (xen-utils-4.17), an iPXE ROM (ipxe-qemu), grub's Xen
# images (grub-xen-bin) and xz to unpack a Debian kernel (test-diff).
APT_PACKAGES := libxen-dev clang libclang-dev pkg-config ocaml-nox ocaml-dune ocaml-findlib grub-xen-bin \
	libounit-ocaml-dev libalcotest-ocaml-dev xen-utils-4.17 xenstore-utils ipxe-qemu xz-utils
HVMLOADER := /usr/lib/xen-4.17/boot/hvmloader
XENGUEST := target/release/xenguest

.PHONY: all deps build demo test lint test-rust test-ocaml test-diff bench bench-ocaml clean

all: build

deps:
	@missing=$$(for p in $(APT_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || echo $$p; done); \
	if [ -n "$$missing" ]; then \
		echo "make deps: installing" $$missing; \
		$(SUDO) apt-get update -qq && \
		DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq --no-install-recommends $$missing >/dev/null; \
	fi
	@command -v $(CARGO) >/dev/null || { echo "make deps: cargo not found; install Rust (rustup) first" >&2; exit 1; }

build: deps
	$(CARGO) build --release --locked

# A 4 GiB HVM guest built with Debian's hvmloader on a simulated 2-node host.
demo: build
	@echo '$$ xenguest -mode hvm_build -domid 1 -image $(HVMLOADER) -mem_max_mib 4096 -mem_start_mib 4096 \'
	@echo '      -store_port 1 -console_port 2 -sim nodes=2,node_mib=8192 -controloutfd 1 -report demo-report.json -summary'
	@$(XENGUEST) -mode hvm_build -domid 1 -image $(HVMLOADER) -mem_max_mib 4096 -mem_start_mib 4096 \
		-store_port 1 -console_port 2 -sim nodes=2,node_mib=8192 -controloutfd 1 -report demo-report.json -summary
	@echo "(full JSON report in demo-report.json)"

lint: deps
	$(CARGO) fmt --check
	$(CARGO) clippy --locked --workspace --all-targets -- -D warnings

test-rust: deps
	$(CARGO) test --locked

# The OCaml module: native, bytecode (.bc with the cdylib) and byte_complete test runs.
test-ocaml: deps
	dune build --root . 2>&1
	dune test --root . --force -j1

# Our image parser against libxenguest's own (tests/libxenguest_diff.rs, ignored by a plain
# cargo test) on real images: Debian's hvmloader and xen-shim, grub's PV and PVH images, a Debian
# kernel (bzImage and vmlinux). scripts/diff-images.sh makes them in $(DIFF_IMAGES), outside the
# repository, downloading the kernel package once.
DIFF_IMAGES ?= /var/tmp/xenguest-images
test-diff: deps
	IMAGES=$(DIFF_IMAGES) scripts/diff-images.sh
	XENGUEST_IMAGES=$(DIFF_IMAGES) $(CARGO) test --locked --test libxenguest_diff -- --ignored --nocapture --test-threads=1

test: lint test-rust test-ocaml test-diff

# Benchmarks on the simulated host; regenerates the rust-bench section of BENCHMARKS.md.
# All of BENCHMARKS.md: the simulated-host tables (rust-bench), in-process vs fork/exec from
# OCaml (ocaml-bench), and real Xen under QEMU against `xl create -p` (real-xen, via make e2e).
bench: bench-sim bench-ocaml e2e

bench-sim: deps
	set -o pipefail; $(CARGO) bench --locked --bench builds 2>/dev/null | scripts/bench-section rust-bench
	set -o pipefail; $(CARGO) bench --locked --bench migration 2>/dev/null | scripts/bench-section sim-migration
	@echo "BENCHMARKS.md updated"

# The OCaml module's benchmark (ocaml/bench): the same HVM build in-process and by spawning the
# binary as xenopsd does; regenerates the ocaml-bench section of BENCHMARKS.md.
bench-ocaml: deps
	$(CARGO) build --release --locked
	dune build --root . ocaml/bench/bench.exe
	set -o pipefail; ./_build/default/ocaml/bench/bench.exe -xenguest $(XENGUEST) -image $(HVMLOADER) | scripts/bench-section ocaml-bench
	@echo "BENCHMARKS.md updated"

clean:
	$(CARGO) clean
	rm -f demo-report.json

# Fuzzing (docs/ROBUSTNESS.md): every cargo-fuzz target for FUZZ_SECONDS each, then a table of
# executions. Only the stable toolchain is needed (fuzz/run.sh sets RUSTC_BOOTSTRAP=1 for
# cargo fuzz's -Z flags). Crashes land in fuzz/artifacts/<target>/.
FUZZ_SECONDS ?= 60
FUZZ_CI_SECONDS ?= 5
.PHONY: fuzz fuzz-ci fuzz-deps
fuzz-deps: deps
	@command -v cargo-fuzz >/dev/null || $(CARGO) install cargo-fuzz --locked

fuzz: fuzz-deps
	fuzz/run.sh $(FUZZ_SECONDS)

fuzz-ci: fuzz-deps
	fuzz/run.sh $(FUZZ_CI_SECONDS)

# End to end on real Xen (docs in e2e/run.sh): Debian's Xen 4.17 booted under QEMU (TCG) with a
# dom0 that builds and boots HVM, PVH and PV guests with our xenguest and with the OCaml module,
# then times our builds against `xl create -p` and rewrites the real-xen section of BENCHMARKS.md.
# Downloads and images go to $(E2E_WORK), outside the repository. Exit 2 = QEMU cannot start here.
E2E_APT_PACKAGES := qemu-system-x86 cpio busybox-static seabios xz-utils gcc libc6-dev
E2E_WORK ?= /var/tmp/xenguest-e2e
.PHONY: e2e e2e-deps
e2e-deps: deps
	@missing=$$(for p in $(E2E_APT_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || echo $$p; done); \
	if [ -n "$$missing" ]; then \
		echo "make e2e-deps: installing" $$missing; \
		$(SUDO) apt-get update -qq && \
		DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq --no-install-recommends $$missing >/dev/null; \
	fi

e2e: e2e-deps
	WORK=$(E2E_WORK) CARGO=$(CARGO) e2e/run.sh
