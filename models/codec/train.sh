#!/bin/bash
# Training recipe for the shipped e2ecodec models (models/codec/q1..q5.safetensors).
#
# Each quality level is its own model, trained from scratch on BSDS500
# train+test patches (../shared/data/codec/bsds500; Kodak is evaluation-only
# and never read here). The levels train in parallel, THREADS threads each.
# Stage 1 trains at a high learning rate, stage 2 continues from stage 1's
# weights at a lower one. Finally every model is evaluated on Kodak against
# JPEG (e2e codec eval), which writes the RD plot and the BD-rate.
#
#   models/codec/train.sh                 # all five levels, defaults below
#   QUALITIES="3" STEPS1=200 STEPS2=0 models/codec/train.sh   # a quick try
set -euo pipefail
cd "$(dirname "$0")/../.."
E2E=${E2E:-build/tools/e2e}
OUT=${OUT:-models/codec}
QUALITIES=${QUALITIES:-"1 2 3 4 5"}
STEPS1=${STEPS1:-4000}
STEPS2=${STEPS2:-4000}
LR1=${LR1:-1e-3}
LR2=${LR2:-2e-4}
THREADS=${THREADS:-2}
BATCH=${BATCH:-8}
PATCH=${PATCH:-128}
MAXSEC1=${MAXSEC1:-0}   # optional time budget per stage (seconds); 0 = by steps only
MAXSEC2=${MAXSEC2:-0}
export E2E_SHARED_DATA=${E2E_SHARED_DATA:-../shared/data}
mkdir -p "$OUT/logs"

stage() { # quality steps lr init-or-empty max-seconds
  local q=$1 steps=$2 lr=$3 init=$4 maxsec=$5 extra=()
  [ -n "$init" ] && extra=(--init "$init")
  [ "$maxsec" != 0 ] && extra+=(--max-seconds "$maxsec")
  "$E2E" train codec --quality "$q" --steps "$steps" --lr "$lr" --batch "$BATCH" --patch "$PATCH" \
    --threads "$THREADS" --seed "$q" --eval-every 500 --val-images 8 --out "$OUT/q$q.safetensors" \
    "${extra[@]}" >>"$OUT/logs/q$q.log" 2>&1
}

pids=()
for q in $QUALITIES; do
  (
    : >"$OUT/logs/q$q.log"
    stage "$q" "$STEPS1" "$LR1" "" "$MAXSEC1"
    if [ "$STEPS2" -gt 0 ]; then
      cp "$OUT/q$q.safetensors" "$OUT/logs/q$q-stage1.safetensors"
      stage "$q" "$STEPS2" "$LR2" "$OUT/logs/q$q-stage1.safetensors" "$MAXSEC2"
      rm -f "$OUT/logs/q$q-stage1.safetensors"
    fi
  ) &
  pids+=($!)
done
for p in "${pids[@]}"; do wait "$p"; done
tail -n 3 "$OUT"/logs/q*.log
