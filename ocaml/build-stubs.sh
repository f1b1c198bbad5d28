#!/usr/bin/env bash
# Build the Rust stubs for dune (called from ocaml/dune in _build/default/ocaml): the
# staticlib, the cdylib (for bytecode), and link_flags.sexp with the system libraries the
# staticlib needs (rustc's native-static-libs), which a staticlib cannot carry itself.
set -euo pipefail
root=${DUNE_SOURCEROOT:-$(cd ../../.. && pwd)}
target=${CARGO_TARGET_DIR:-$root/target}
flags_file=$target/release/xenguest-stubs-native-libs
# rustc prints the list only when it compiles the crate: without a saved list, force that.
[ -s "$flags_file" ] || cargo clean --quiet --release -p xenguest-ocaml --manifest-path "$root/Cargo.toml"
out=$(cargo rustc --release --locked -p xenguest-ocaml --lib --crate-type staticlib,cdylib \
  --manifest-path "$root/Cargo.toml" -- --print native-static-libs 2>&1) || { echo "$out" >&2; exit 1; }
libs=$(printf '%s\n' "$out" | sed -n 's/.*native-static-libs: //p' | tail -n 1)
[ -z "$libs" ] || printf '%s\n' "$libs" > "$flags_file"
printf '(%s)\n' "$(cat "$flags_file")" > link_flags.sexp
cp -f "$target/release/libxenguest_stubs.a" libxenguest_stubs.a
cp -f "$target/release/libxenguest_stubs.so" dllxenguest_stubs.so
