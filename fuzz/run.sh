#!/usr/bin/env bash
# Runs every fuzz target that `cargo fuzz list` reports for SECONDS each (default 60) with the
# committed corpus and dictionary; new interesting inputs are added to fuzz/corpus/<target>/.
# Exits non-zero on the first finding (the reproducer is under fuzz/artifacts/<target>/).
# The stable toolchain runs cargo-fuzz with RUSTC_BOOTSTRAP=1. Needs: cargo install cargo-fuzz
set -uo pipefail
cd "$(dirname "$0")/.."
seconds=${1:-60}
export RUSTC_BOOTSTRAP=1
log=$(mktemp)
for target in $(cargo fuzz list); do
  echo "== $target ($seconds s)"
  cargo fuzz run "$target" "fuzz/corpus/$target" -- \
    -dict=fuzz/dictionary.txt -max_total_time="$seconds" -max_len=16384 -print_final_stats=1 >"$log" 2>&1
  status=$?
  grep -E "stat::number_of_executed_units|stat::average_exec_per_sec|stat::new_units_added" "$log" || true
  if [ "$status" -ne 0 ]; then
    tail -40 "$log"
    echo "FINDING in $target (exit $status)"
    exit 1
  fi
done
echo "fuzz: every target ran $seconds s without a finding"
