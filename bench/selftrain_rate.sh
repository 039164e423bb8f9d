#!/bin/sh
# Does the stream keep its rate while e2etrain trains? vtest.avi through the teacher (the shipped COCO
# NanoDet, persons, one thread) into a tee: the student's e2edetect (one thread) on one branch, e2etrain
# (threads=1, leaky) on the other, or no e2etrain. Played at the video's own rate (sync=true): frames the
# student's sink rendered, and frames any element dropped for being late (each drop posts a QoS message).
# Then as fast as it goes (sync=false): frames per second with and without e2etrain.
#   bench/selftrain_rate.sh [BUILD_DIR] [VIDEO]
set -eu
cd "$(dirname "$0")/.."
build=${1:-build}
video=${2:-/usr/share/doc/opencv-doc/examples/data/vtest.avi}
export GST_PLUGIN_PATH="$PWD/$build/gst"
ck=$(mktemp -d)
trap 'rm -rf "$ck"' EXIT
run() { # $1: sync, $2: with e2etrain (1/0); prints rendered dropped seconds
  train=""
  if [ "$2" = 1 ]; then
    train="t. ! queue max-size-buffers=2 leaky=downstream ! e2etrain model=models/detect/person.safetensors \
      model-name=student publish-every=25 batch-size=8 buffer-size=64 holdout=0.1 num-threads=1 checkpoint-dir=$ck"
    rm -rf "$ck"/*
  fi
  t0=$(date +%s.%N)
  out=$(gst-launch-1.0 -m -v filesrc location="$video" ! decodebin ! videoconvert ! videoscale \
    ! video/x-raw,format=RGB,width=384,height=288 ! e2edetect object-class=person num-threads=1 ! tee name=t \
    $train t. ! queue max-size-buffers=4 ! e2edetect model=models/detect/person.safetensors model-name=student num-threads=1 \
    ! fakesink name=out silent=false sync="$1" 2>&1)
  t1=$(date +%s.%N)
  rendered=$(echo "$out" | grep -c 'out: last-message = chain')
  late=$(echo "$out" | grep -c 'GstMessageQOS' || true)
  secs=$(echo "$t1 - $t0" | bc -l)
  echo "rendered $rendered, dropped late $late, $(printf %.1f "$secs") s, $(echo "$rendered / $secs" | bc -l | cut -c1-5) fps"
}
echo "at the video's rate (sync=true), e2etrain training:    $(run true 1)"
echo "at the video's rate (sync=true), no e2etrain:          $(run true 0)"
echo "as fast as it goes (sync=false), e2etrain training:    $(run false 1)"
echo "as fast as it goes (sync=false), no e2etrain:          $(run false 0)"
