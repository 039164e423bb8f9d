#!/bin/sh
# Self-training on the scene, as one gst-launch line: the shipped COCO NanoDet (the teacher) labels the
# people in a video; e2etrain trains the small in-repo person detector (the student) on them; the other
# branch runs the student (model-name=student: each validated version goes live there) and draws it.
# e2e-selftrain-demo does the same and also scores the student on the part of the video it never
# trains on; this line is the pipeline alone.
#   pipelines/selftrain.sh [INPUT] [OUTPUT.avi] [CHECKPOINT_DIR]
set -eu
cd "$(dirname "$0")/.."
IN=${1:-/usr/share/doc/opencv-doc/examples/data/vtest.avi}
OUT=${2:-student.avi}
CK=${3:-student-checkpoints}
export GST_PLUGIN_PATH="$PWD/build/gst${GST_PLUGIN_PATH:+:$GST_PLUGIN_PATH}"
exec gst-launch-1.0 -m filesrc location="$IN" ! decodebin ! videoconvert ! videoscale \
  ! video/x-raw,format=RGB,width=384,height=288 ! e2edetect object-class=person num-threads=1 ! tee name=t \
  t. ! queue max-size-buffers=2 leaky=downstream ! e2etrain model=models/detect/person.safetensors model-name=student \
    publish-every=25 batch-size=8 buffer-size=64 holdout=0.1 num-threads=1 checkpoint-dir="$CK" \
  t. ! queue max-size-buffers=4 ! e2edetect model=models/detect/person.safetensors model-name=student num-threads=1 \
    ! videoconvert ! e2eoverlay ! videoconvert ! avenc_mpeg4 bitrate=2000000 ! avimux ! filesink location="$OUT"
