#!/usr/bin/env bash
# Runs every benchmark and prints one table. Usage: bench/run.sh [BUILD_DIR]
# Each bench_*.py prints rows "| name | value | target | verdict |".
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD=${1:-build}
export DRD_BIN="$PWD/$BUILD/bin"
echo "| benchmark | measured | target | verdict |"
echo "|---|---|---|---|"
for b in bench/bench_*.py; do
  python3 "$b" || echo "| $(basename "$b") | failed | | FAIL |"
done
