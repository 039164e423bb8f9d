#!/bin/sh
# e2edetect's own frame rate with the default model: 768x576 BGRx frames (vtest.avi's size) from
# videotestsrc through e2edetect (letterbox by GstVideoConverter, the network, head decoding, NMS) into
# fakesink, without sync. Two runs of different length; the difference removes start-up (model load,
# warm-up), so the figure is frames per second in steady state.
#   bench/detect_element.sh [BUILD_DIR] [THREADS]
set -eu
cd "$(dirname "$0")/.."
build=${1:-build}
threads=${2:-2}
export GST_PLUGIN_PATH="$PWD/$build/gst"
run() {
  t0=$(date +%s.%N)
  gst-launch-1.0 -q videotestsrc num-buffers="$1" pattern=ball ! video/x-raw,width=768,height=576,format=BGRx,framerate=30/1 ! \
    e2edetect num-threads="$threads" ! fakesink sync=false
  t1=$(date +%s.%N)
  echo "$t1 - $t0" | bc -l
}
short=$(run 30)
long=$(run 330)
fps=$(echo "300 / ($long - $short)" | bc -l)
printf '{"case": "e2edetect_default_416", "threads": %s, "frames": 300, "seconds": %.3f, "fps": %.1f}\n' "$threads" \
  "$(echo "$long - $short" | bc -l)" "$fps"
