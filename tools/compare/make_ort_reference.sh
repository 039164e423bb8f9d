#!/bin/sh
# Makes tests/data/torch_detector_small.{onnx,in.f32,ort.f32}: a small torch-exported detector, a fixed
# input and ONNX Runtime 1.30's output on it, which test_graph compares nncore's against in CI (no npm
# there). Needs Debian's python3-torch and npm's onnxruntime-node (NODE_PATH).
#   NODE_PATH=/tmp/e2e-compare/node_modules tools/compare/make_ort_reference.sh
set -eu
cd "$(dirname "$0")/../.."
d=tests/data
/usr/bin/python3 tools/compare/export_torch_detector.py "$d/torch_detector_small.onnx" 96 4 >/dev/null 2>&1
/usr/bin/python3 -c "import numpy as np; np.random.default_rng(1).standard_normal((1, 3, 96, 96)).astype(np.float32).tofile('$d/torch_detector_small.in.f32')"
node tools/compare/ort_run.cjs "$d/torch_detector_small.onnx" "$d/torch_detector_small.in.f32" 1,3,96,96 "$d/torch_detector_small.ort.f32" 1 1
