#!/usr/bin/env bash
# Build the xenguest binary for test_faces (called from ocaml/test/dune in
# _build/default/ocaml/test), in the source tree's target/ as ocaml/build-stubs.sh does.
set -euo pipefail
root=${DUNE_SOURCEROOT:-$(cd ../../../.. && pwd)}
target=${CARGO_TARGET_DIR:-$root/target}
cargo build --quiet --release --locked --bin xenguest --manifest-path "$root/Cargo.toml"
cp -f "$target/release/xenguest" xenguest-binary
