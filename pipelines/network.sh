#!/bin/sh
# Detection on a network stream: RTSP (rtsp://...) or RTP/H.264 over UDP (udp://PORT).
#   pipelines/network.sh rtsp://camera.local/stream
#   pipelines/network.sh udp://5000        # e.g. fed by: gst-launch-1.0 videotestsrc ! x264enc tune=zerolatency ! rtph264pay ! udpsink host=127.0.0.1 port=5000
set -eu
cd "$(dirname "$0")/.."
URL=${1:?usage: pipelines/network.sh rtsp://HOST/PATH | udp://PORT}
export GST_PLUGIN_PATH="$PWD/build/gst${GST_PLUGIN_PATH:+:$GST_PLUGIN_PATH}"
case "$URL" in
rtsp://*) SRC="rtspsrc location=$URL latency=100 ! decodebin" ;;
udp://*)
  PORT=${URL#udp://}
  SRC="udpsrc port=$PORT caps=application/x-rtp,media=video,encoding-name=H264,payload=96 ! rtph264depay ! decodebin" ;;
*) echo "unsupported URL $URL (rtsp://... or udp://PORT)" >&2; exit 2 ;;
esac
# live source: a leaky queue and QoS keep latency bounded
exec gst-launch-1.0 $SRC ! videoconvert ! video/x-raw,format=BGRx ! queue max-size-buffers=2 leaky=downstream \
  ! e2edetect message=true ! e2eoverlay ! videoconvert ! autovideosink sync=false
