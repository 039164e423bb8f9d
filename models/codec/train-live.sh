#!/bin/bash
# Training recipe for the live-profile codec model (models/codec/e2ecodec-live.safetensors): the shipped
# model's architecture made narrow enough for 640x480 at 30 fps, encode and decode, on 2 cores.
#
#   models/codec/train-live.sh                  # one stage, about an hour on 2 threads, then the Kodak eval
#   SECONDS_BUDGET=60 models/codec/train-live.sh  # a quick try
#
# N 24 transforms and M 64 latents (the quality model: 64 and 192), per-level GDN scales, a mean head and
# no context model (its two passes cost more than they save at this width). Trained from random weights on
# BSDS500 train+test patches at the quality model's five lambdas, so that a level means about the same rate
# in both profiles; Kodak stays evaluation-only. Not distilled from the quality model (not tried yet): its
# reconstructions or latents as targets are the obvious next step if this one trains too slowly.
set -euo pipefail
cd "$(dirname "$0")/../.."
E2E=${E2E:-build/tools/e2e}
OUT=${OUT:-models/codec}
LOGS=${LOGS:-docs/training/codec}
THREADS=${THREADS:-2}
SECONDS_BUDGET=${SECONDS_BUDGET:-3300}
LAMBDAS=0.0015,0.0046,0.014,0.0427,0.18 # the quality model's levels
export E2E_SHARED_DATA=${E2E_SHARED_DATA:-../shared/data}
mkdir -p "$LOGS"

"$E2E" train codec --n 24 --m 64 --level-mod 1 --lambdas "$LAMBDAS" --steps 200000 --lr 1e-3 --batch 8 \
  --patch 128 --threads "$THREADS" --seed 101 --eval-every 2000 --val-images 8 --max-seconds "$SECONDS_BUDGET" \
  --out "$OUT/e2ecodec-live.safetensors" --curve "$LOGS/train-live-curve.png" | tee "$LOGS/train-live.log"

# Kodak, with the quality model's curve (its model card's figures) for the BD-rate between the profiles
"$E2E" codec eval --model "$OUT/e2ecodec-live.safetensors" --threads "$THREADS" --against models/codec/quality-kodak.json \
  --plot "$LOGS/kodak-rd-live.png" --csv "$LOGS/kodak-live.csv" | tee "$LOGS/kodak-eval-live.log"
