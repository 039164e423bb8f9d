#!/bin/sh
# Soak runs: each element's pipeline for SECONDS (default 3600), its process's memory, open file
# descriptors and threads sampled every 10 s into docs/soak/KIND.csv and plotted in docs/soak/KIND.png.
#   tools/soak.sh [SECONDS] [detect codec asr]     (all three by default, one after another;
#                                                   SOAK_PARALLEL=1 runs them side by side)
# Passes when, after the first minute, memory grew by at most 2 % and fds and threads did not grow.
set -eu
cd "$(dirname "$0")/.."
seconds=${1:-3600}
[ $# -gt 0 ] && shift
kinds=${*:-detect codec asr}
out=${SOAK_OUT:-docs/soak}
mkdir -p "$out"
[ -x build/tools/e2e-soak ] || ninja -C build
export GST_PLUGIN_PATH="$PWD/build/gst"
status=0
run() {
  build/tools/e2e-soak "$1" "$seconds" "$out/$1" > "$out/$1.log" 2>&1
}
if [ "${SOAK_PARALLEL:-0}" = 1 ]; then
  pids=""
  for k in $kinds; do run "$k" & pids="$pids $!"; done
  for p in $pids; do wait "$p" || status=1; done
else
  for k in $kinds; do run "$k" || status=1; done
fi
for k in $kinds; do tail -n 2 "$out/$k.log"; done
exit $status
