#!/bin/sh
# Live captions: speech from the microphone (or a file) recognised by e2easr, shown by textoverlay over a
# video, and written as JSON lines with word times.
#   pipelines/captions.sh                 microphone (autoaudiosrc) over a test picture, in a window
#   pipelines/captions.sh FILE            a media file with sound (and video, if it has one) in a window
set -eu
cd "$(dirname "$0")/.."
export GST_PLUGIN_PATH="$PWD/build/gst${GST_PLUGIN_PATH:+:$GST_PLUGIN_PATH}"
JSON=${JSON:-captions.jsonl}
if [ $# -eq 0 ]; then
  # textoverlay shows each utterance's text from its start for its duration; wait-text=false keeps the
  # picture moving while nobody speaks
  exec gst-launch-1.0 autoaudiosrc ! queue ! e2easr json-file="$JSON" ! queue ! ov.text_sink \
    videotestsrc is-live=true pattern=ball ! video/x-raw,width=640,height=360 \
    ! textoverlay name=ov wait-text=false valignment=bottom font-desc="Sans 20" ! videoconvert ! autovideosink
fi
exec gst-launch-1.0 filesrc location="$1" ! decodebin name=d \
  d. ! queue ! audioconvert ! e2easr json-file="$JSON" ! queue ! ov.text_sink \
  d. ! queue ! videoconvert ! textoverlay name=ov wait-text=false valignment=bottom font-desc="Sans 20" \
  ! videoconvert ! autovideosink
