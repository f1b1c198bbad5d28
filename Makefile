# xenguest in Rust. `make demo` and `make test` install what they need on Debian 12.
SHELL := /bin/bash
CARGO ?= cargo
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
# Build: libxen-dev + clang (bindings), OCaml + dune (the OCaml module);
# run/test: Debian's hvmloader and xenstored (xen-utils-4.17), an iPXE ROM (ipxe-qemu).
APT_PACKAGES := libxen-dev clang libclang-dev pkg-config ocaml-nox ocaml-dune ocaml-findlib \
	libounit-ocaml-dev libalcotest-ocaml-dev xen-utils-4.17 xenstore-utils ipxe-qemu
HVMLOADER := /usr/lib/xen-4.17/boot/hvmloader
XENGUEST := target/release/xenguest

.PHONY: all deps build demo test lint test-rust bench clean

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
	$(CARGO) clippy --locked --all-targets -- -D warnings -D clippy::undocumented_unsafe_blocks

test-rust: deps
	$(CARGO) test --locked

test: lint test-rust

# Benchmarks on the simulated host; regenerates the rust-bench section of BENCHMARKS.md.
bench: deps
	set -o pipefail; $(CARGO) bench --locked --bench builds 2>/dev/null | scripts/bench-section rust-bench
	@echo "BENCHMARKS.md updated"

clean:
	$(CARGO) clean
	rm -f demo-report.json
