#!/usr/bin/env bash
# Run fuzz targets for a bounded time each and print a table of executions.
#
#   fuzz/run.sh SECONDS [TARGET...]     (no target: every target of `cargo fuzz list`)
#
# cargo-fuzz drives libFuzzer with AddressSanitizer and debug assertions (overflow checks).
# Its -Z flags need a nightly compiler; with only a stable toolchain, RUSTC_BOOTSTRAP=1 lets
# stable take them. Corpora grow in fuzz/corpus/<target>/ (ignored by git), seeded from
# fuzz/seeds/<target>/ and fuzz/regressions/<target>/. A crash is left in
# fuzz/artifacts/<target>/: minimise it (`cargo fuzz tmin`), fix the bug, and keep the input
# in fuzz/regressions/<target>/ (tests/robustness.rs replays it on every `cargo test`).
set -uo pipefail
cd "$(dirname "$0")"
seconds=${1:?usage: fuzz/run.sh SECONDS [TARGET...]}
shift
export RUSTC_BOOTSTRAP=1
targets=("$@")
if [ ${#targets[@]} -eq 0 ]; then
    mapfile -t targets < <(cargo fuzz list)
fi
cargo fuzz build --debug-assertions >build.log 2>&1 || {
    cat build.log >&2
    exit 1
}
mkdir -p logs
failed=()
printf '%-16s %12s %10s  %s\n' target executions exec/s result
for t in "${targets[@]}"; do
    mkdir -p "corpus/$t"
    dirs=("corpus/$t")
    for d in "seeds/$t" "regressions/$t"; do
        [ -d "$d" ] && dirs+=("$d")
    done
    opts=(-max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 -print_final_stats=1)
    [ -f "dict/$t.dict" ] && opts+=(-dict="dict/$t.dict")
    cargo fuzz run --debug-assertions "$t" "${dirs[@]}" -- "${opts[@]}" >"logs/$t.log" 2>&1
    rc=$?
    runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "logs/$t.log" | tail -1)
    rate=$(sed -n 's/^stat::average_exec_per_sec: *//p' "logs/$t.log" | tail -1)
    if [ $rc -eq 0 ]; then
        result=ok
    else
        result="FAILED (fuzz/logs/$t.log, fuzz/artifacts/$t/)"
        failed+=("$t")
    fi
    printf '%-16s %12s %10s  %s\n' "$t" "${runs:-?}" "${rate:-?}" "$result"
done
if [ ${#failed[@]} -gt 0 ]; then
    echo "fuzz: crashes in: ${failed[*]}" >&2
    exit 1
fi
