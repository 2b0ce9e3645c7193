#!/usr/bin/env bash
# Runs every fuzz target for SECONDS each on its seed corpus, one after another:
#   tests/fuzz/run.sh BUILD_DIR SECONDS [TARGET...]
# Used by `make fuzz` (DRD_FUZZ_SECONDS, default 600) and `make fuzz-short` (10).
# The growing corpus lives in BUILD_DIR/fuzz-corpus/<target> (the committed seeds in
# tests/fuzz/corpus/ are only read), crash inputs in BUILD_DIR/fuzz-artifacts/<target>/,
# full logs in BUILD_DIR/fuzz-logs/. Exits 1 if any target crashed, leaked, timed out or
# broke one of its FUZZ_CHECKs; the summary (executions, corpus size, coverage) goes to
# stdout and BUILD_DIR/fuzz-summary.txt.
set -uo pipefail
build=${1:?usage: run.sh BUILD_DIR SECONDS [TARGET...]}
seconds=${2:?usage: run.sh BUILD_DIR SECONDS [TARGET...]}
shift 2
here=$(cd "$(dirname "$0")" && pwd)
targets=("$@")
[ ${#targets[@]} -eq 0 ] && targets=(fuzz_config fuzz_rpc fuzz_wal fuzz_backup)

summary="$build/fuzz-summary.txt"
mkdir -p "$build/fuzz-logs"
printf '%-12s %8s %12s %10s %8s %6s  %s\n' target seconds executions exec/s corpus cov result | tee "$summary"
failed=0
for t in "${targets[@]}"; do
  bin="$build/bin/$t"
  if [ ! -x "$bin" ]; then echo "$t: $bin not built" | tee -a "$summary"; failed=1; continue; fi
  work="$build/fuzz-corpus/$t" art="$build/fuzz-artifacts/$t/" log="$build/fuzz-logs/$t.log"
  mkdir -p "$work" "$art"
  dict=()
  [ -f "$here/dict/$t.dict" ] && dict=(-dict="$here/dict/$t.dict")
  # -timeout: one input may take at most DRD_FUZZ_TIMEOUT s (default 25; a hang is a finding;
  # every input of the corpora runs in well under a second, but a fuzzer starved by other
  # work on the machine once stalled 6 s in ASan's allocator on an input that runs in 0.3 s,
  # so the bound leaves room for that); -rss_limit_mb: so is runaway memory. Leaks are reported by LeakSanitizer (on by default under libFuzzer).
  "$bin" "$work" "$here/corpus/$t" "${dict[@]}" -max_total_time="$seconds" -timeout="${DRD_FUZZ_TIMEOUT:-25}" \
    -rss_limit_mb=2048 -print_final_stats=1 -artifact_prefix="$art" >"$log" 2>&1
  rc=$?
  execs=$(grep -oP 'stat::number_of_executed_units:\s*\K[0-9]+' "$log" | tail -1)
  speed=$(grep -oP 'stat::average_exec_per_sec:\s*\K[0-9]+' "$log" | tail -1)
  cov=$(grep -oP '\bcov: \K[0-9]+' "$log" | tail -1)
  corpus=$(find "$work" -type f | wc -l)
  result=ok
  if [ $rc -ne 0 ]; then
    result="FAILED (exit $rc; see $log)"
    failed=1
  fi
  printf '%-12s %8s %12s %10s %8s %6s  %s\n' "$t" "$seconds" "${execs:-?}" "${speed:-?}" "$corpus" "${cov:-?}" "$result" | tee -a "$summary"
  if [ $rc -ne 0 ]; then
    grep -E 'ERROR|FUZZ_CHECK|SUMMARY|Test unit written|==[0-9]+==' "$log" | head -20
  fi
done
exit $failed
