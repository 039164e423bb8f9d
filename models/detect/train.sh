#!/bin/sh
# Training recipe for the shipped detectors (CPU, 2 threads; about an hour in all).
# Trains from scratch on ../shared/data: COCO128 train2017 (persons) and the
# raccoon train split; reports mAP on the held-out splits (val2017, test) once,
# at the end, without selecting anything on them.
#   models/detect/train.sh [build-dir]
set -eu
cd "$(dirname "$0")/../.."
B=${1:-build}
E2E="$B/tools/e2e"
"$E2E" train detect --dataset coco128 --class person --input 320 --width 16 --batch 16 --steps 3000 \
  --lr 2e-3 --mosaic 0.5 --seed 1 --out models/detect/person.safetensors 2>&1 | tee models/detect/person-train.log
"$E2E" train detect --dataset raccoon --input 256 --width 16 --batch 16 --steps 1500 \
  --lr 2e-3 --mosaic 0.3 --seed 1 --out models/detect/raccoon.safetensors 2>&1 | tee models/detect/raccoon-train.log
