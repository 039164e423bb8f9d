#!/bin/sh
# Transfer learning from the shipped COCO NanoDet (imported, models/detect/import.sh) to the raccoon set:
# the head gets one class, started from COCO's "bear" row, and is trained (a) alone, with the backbone
# frozen, and (b) together with the whole network. Each run reports raccoon test mAP once, at the end;
# nothing is selected on the test split. Logs and loss curves go to docs/training/detect/.
#   models/detect/finetune_raccoon.sh [build-dir]
set -eu
cd "$(dirname "$0")/../.."
B=${1:-build}
E2E="$B/tools/e2e"
LOGS=docs/training/detect
mkdir -p "$LOGS"
"$E2E" train detect --dataset raccoon --init models/detect/nanodet-coco.safetensors --like bear --freeze backbone. \
  --batch 8 --steps 200 --lr 5e-4 --mosaic 0.3 --seed 1 --out models/detect/raccoon-nanodet-head.safetensors \
  --curve "$LOGS/raccoon-nanodet-head-loss.png" 2>&1 | tee "$LOGS/raccoon-nanodet-head.log"
"$E2E" train detect --dataset raccoon --init models/detect/nanodet-coco.safetensors --like bear \
  --batch 8 --steps 200 --lr 2e-4 --mosaic 0.3 --seed 1 --out models/detect/raccoon-nanodet.safetensors \
  --curve "$LOGS/raccoon-nanodet-loss.png" 2>&1 | tee "$LOGS/raccoon-nanodet.log"
