#!/bin/sh
# Live object detection (the 80 COCO classes; add object-class=person to e2edetect for persons only)
# from a V4L2 camera, shown in a window.
#   pipelines/camera.sh [/dev/videoN]
set -eu
cd "$(dirname "$0")/.."
DEV=${1:-/dev/video0}
if [ ! -e "$DEV" ]; then
  echo "no camera at $DEV (plug one in, or pass its device, e.g. pipelines/camera.sh /dev/video2)" >&2
  exit 1
fi
export GST_PLUGIN_PATH="$PWD/build/gst${GST_PLUGIN_PATH:+:$GST_PLUGIN_PATH}"
# leaky queue + QoS: the detector skips inference on late frames instead of building latency
exec gst-launch-1.0 v4l2src device="$DEV" ! videoconvert ! video/x-raw,format=BGRx \
  ! queue max-size-buffers=2 leaky=downstream ! e2edetect ! e2eoverlay ! videoconvert ! autovideosink
