#!/bin/sh
# Runs the libFuzzer harnesses (tests/fuzz/README.md).
#   tests/fuzz/run.sh SECONDS [NAME...]    each harness for SECONDS (all of them by default)
# Needs a fuzz build:  CC=clang meson setup build-fuzz -Dfuzz=true -Db_sanitize=address,undefined \
#                        -Db_lundef=false -Dbuildtype=debugoptimized -Dbench=false -Dcuda=disabled
# Each harness grows its own corpus in $FUZZ_WORK/NAME (default build-fuzz/fuzz-work), starting from the
# seeds in tests/fuzz/corpus/NAME, so that later runs go on where earlier ones stopped; inputs that
# crash, leak, hang (over 1 s) or allocate too much land in $FUZZ_WORK/NAME-artifacts. One line per
# harness goes to stdout and to $FUZZ_WORK/runs.tsv: name, seconds, executions, edges covered, findings.
# Exit status 1 when any harness found something.
set -eu
cd "$(dirname "$0")/../.."
seconds=${1:?usage: tests/fuzz/run.sh SECONDS [NAME...]}
[ $# -gt 0 ] && shift
build=$(cd "${FUZZ_BUILD:-build-fuzz}" && pwd)
work=${FUZZ_WORK:-$build/fuzz-work}
names=${*:-safetensors checkpoint model codec_stream codec_parse labels onnx tfjs asr_text media}
export GST_PLUGIN_PATH="$build/gst" GST_REGISTRY="$build/gst/fuzz-registry.bin"
# GLib keeps type and quark tables for the life of the process: reachable, so not leaks, but LSan's
# per-input check cannot tell them from ones; tests/lsan.supp names them
export LSAN_OPTIONS="suppressions=$PWD/tests/lsan.supp:print_suppressions=0"
export ASAN_OPTIONS="detect_leaks=1:allocator_may_return_null=1" UBSAN_OPTIONS="halt_on_error=1:print_stacktrace=1"
mkdir -p "$work"
status=0 clean=0 found_in=0
for n in $names; do
  mkdir -p "$work/$n" "$work/$n-artifacts"
  dict=""
  case $n in labels|tfjs|safetensors|model|checkpoint) dict="-dict=tests/fuzz/json.dict" ;; esac
  max_len=65536
  case $n in
  model) max_len=1048576 ;;
  onnx|codec_stream|codec_parse|tfjs|safetensors|checkpoint) max_len=131072 ;;
  asr_text) max_len=8192 ;;
  esac
  log="$work/$n.log"
  t0=$(date +%s)
  "$build/tests/fuzz/fuzz-$n" "$work/$n" "tests/fuzz/corpus/$n" $dict -max_len=$max_len -timeout=1 \
    -rss_limit_mb=2048 -malloc_limit_mb=1024 -max_total_time="$seconds" -print_final_stats=1 \
    -artifact_prefix="$work/$n-artifacts/" > "$log" 2>&1 || true
  took=$(($(date +%s) - t0)) # less than asked for when it stopped at a finding
  execs=$(grep -o "stat::number_of_executed_units: [0-9]*" "$log" | tail -1 | grep -o "[0-9]*$" || echo 0)
  edges=$(grep -o "cov: [0-9]*" "$log" | tail -1 | grep -o "[0-9]*$" || echo 0)
  found=$(ls "$work/$n-artifacts" | wc -l)
  printf '%s\t%s\t%s\t%s\t%s\n' "$n" "$took" "${execs:-0}" "${edges:-0}" "$found" | tee -a "$work/runs.tsv"
  if [ "$found" -eq 0 ]; then clean=$((clean + 1)); else found_in=$((found_in + 1)) status=1; fi
done
# the test suite's closing line: harnesses clean, harnesses with findings
echo "$clean passed, $found_in failed"
exit $status
