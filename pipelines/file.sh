#!/bin/sh
# Detect people in a video file, write an annotated copy and a JSON-lines file.
#   pipelines/file.sh INPUT [OUTPUT.avi] [DETECTIONS.jsonl]
set -eu
cd "$(dirname "$0")/.."
IN=${1:?usage: pipelines/file.sh INPUT [OUTPUT.avi] [DETECTIONS.jsonl]}
OUT=${2:-annotated.avi}
JSON=${3:-detections.jsonl}
export GST_PLUGIN_PATH="$PWD/build/gst${GST_PLUGIN_PATH:+:$GST_PLUGIN_PATH}"
exec gst-launch-1.0 filesrc location="$IN" ! decodebin ! videoconvert ! video/x-raw,format=BGRx \
  ! e2edetect json-file="$JSON" ! e2eoverlay ! videoconvert ! avenc_mpeg4 bitrate=3000000 ! avimux \
  ! filesink location="$OUT"
