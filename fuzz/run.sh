#!/usr/bin/env bash
# Fuzz every target (or those named) for SECONDS each and print the totals:
#   fuzz/run.sh [SECONDS] [TARGET...]        targets: loader image options text-loader text-options
# Not part of the default test run. Each target runs under a 4 GiB address-space cap, so an input
# that makes the process allocate gigabytes fails the allocation and aborts it: the input being run
# (DIR/current-TARGET.bin) is saved under DIR/failures/ and the harness restarts with a new seed.
# Panics and hangs (over 10 s) are saved by the harness itself. DIR is $FUZZ_OUT or target/fuzz.
# Turn every saved failure into a regression test: copy it to tests/fixtures/fuzz/TARGET/.
set -u
cd "$(dirname "$0")/.."
seconds=${1:-300}
shift || true
targets=${*:-loader image options text-loader text-options}
out=${FUZZ_OUT:-target/fuzz}
mkdir -p "$out/failures"
cargo build --release --example fuzz || exit 1
bin=target/release/examples/fuzz
ulimit -v $((4 * 1024 * 1024))
for t in $targets; do
    end=$(($(date +%s) + seconds))
    seed=1
    while now=$(date +%s) && [ "$now" -lt "$end" ]; do
        "$bin" "$t" --seconds $((end - now)) --seed "$seed" --out "$out" 2>"$out/stderr-$t.log" >/dev/null
        rc=$?
        # 0: the time ran out; 3: a hang, saved by the harness; anything else: an abort or a crash.
        if [ "$rc" -ne 0 ] && [ "$rc" -ne 3 ]; then
            cp "$out/current-$t.bin" "$out/failures/$t-abort-$seed.bin"
            echo "$t: the process ended with status $rc: $(tail -n 1 "$out/stderr-$t.log")"
            echo "  input saved as $out/failures/$t-abort-$seed.bin"
        fi
        seed=$((seed + 1))
    done
done
"$bin" --summary "$out"
