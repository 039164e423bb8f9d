#!/bin/bash
# Training recipe for the shipped e2ecodec model (models/codec/e2ecodec.safetensors).
#
# One variable-rate model serves all five quality levels (a level is drawn
# per training patch, its distortion weighted by that level's lambda). It is
# trained from scratch on BSDS500 train+test patches
# (../shared/data/codec/bsds500; Kodak is evaluation-only and never read
# here), then evaluated on Kodak against JPEG, which writes the RD plot.
#
#   models/codec/train.sh              # the shipped run: 75 minutes on 2 threads
#   SECONDS_BUDGET=120 models/codec/train.sh   # a quick try
#
# The learning-rate schedule follows wall-clock time when a budget is given
# (--max-seconds), so a faster machine simply sees more patches.
set -euo pipefail
cd "$(dirname "$0")/../.."
E2E=${E2E:-build/tools/e2e}
OUT=${OUT:-models/codec}
THREADS=${THREADS:-2}
SECONDS_BUDGET=${SECONDS_BUDGET:-4500}
export E2E_SHARED_DATA=${E2E_SHARED_DATA:-../shared/data}
mkdir -p "$OUT/logs"

"$E2E" train codec --steps 40000 --lr 1e-3 --batch 8 --patch 128 --threads "$THREADS" --seed 1 \
  --eval-every 1000 --val-images 8 --max-seconds "$SECONDS_BUDGET" \
  --out "$OUT/e2ecodec.safetensors" --curve "$OUT/logs/train-curve.png" | tee "$OUT/logs/train.log"

"$E2E" codec eval --model "$OUT/e2ecodec.safetensors" --threads "$THREADS" --plot "$OUT/logs/kodak-rd.png" \
  --csv "$OUT/logs/kodak.csv" | tee "$OUT/logs/kodak-eval.log"
