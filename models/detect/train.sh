#!/bin/sh
# Training recipe for the shipped detectors (CPU, 2 threads; about 1 h 40 min in all).
# Trains from scratch on ../shared/data: COCO128 train2017 (persons) and the
# raccoon train split; each run reports mAP on its held-out split (val2017,
# test) once, at the end, and nothing is selected on those splits.
#   models/detect/train.sh [build-dir]
set -eu
cd "$(dirname "$0")/../.."
B=${1:-build}
E2E="$B/tools/e2e"
LOGS=docs/training/detect
mkdir -p "$LOGS"
# person, stage 1: 3000 steps from random weights
"$E2E" train detect --dataset coco128 --class person --input 320 --width 16 --batch 16 --steps 3000 \
  --lr 2e-3 --mosaic 0.5 --seed 1 --out models/detect/person.safetensors --curve "$LOGS/person-loss.png" 2>&1 | tee "$LOGS/person-train.log"
# raccoon: 1500 steps from random weights
"$E2E" train detect --dataset raccoon --input 256 --width 16 --batch 16 --steps 1500 \
  --lr 2e-3 --mosaic 0.3 --seed 1 --out models/detect/raccoon.safetensors --curve "$LOGS/raccoon-loss.png" 2>&1 | tee "$LOGS/raccoon-train.log"
# person, stage 2: 3000 more steps from stage 1 (new warm-up and cosine cycle at half the peak rate)
"$E2E" train detect --dataset coco128 --class person --batch 16 --steps 3000 --lr 1e-3 --mosaic 0.5 --seed 2 \
  --init models/detect/person.safetensors --out models/detect/person.safetensors --curve "$LOGS/person-loss.png" \
  2>&1 | tee "$LOGS/person-train-stage2.log"
