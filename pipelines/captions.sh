#!/bin/sh
# Speech to text with e2easr: live captions over video, or the utterances of a file.
#   pipelines/captions.sh                  microphone (autoaudiosrc): captions over a test picture, in a window
#   pipelines/captions.sh FILE             any media file with sound: one line of text per utterance
#   pipelines/captions.sh --overlay VIDEO  a video with sound, captions drawn over it, in a window
# Each final result also goes to captions.jsonl (JSON=... to change): text, start/end, words with times.
set -eu
cd "$(dirname "$0")/.."
export GST_PLUGIN_PATH="$PWD/build/gst${GST_PLUGIN_PATH:+:$GST_PLUGIN_PATH}"
JSON=${JSON:-captions.jsonl}
# textoverlay shows each utterance's text from its start for its duration; wait-text=false keeps the picture
# moving while nobody speaks
OVERLAY="textoverlay name=ov wait-text=false valignment=bottom font-desc=\"Sans 20\""
case "${1:-}" in
"")
  eval exec gst-launch-1.0 autoaudiosrc ! queue ! e2easr json-file="$JSON" ! queue ! ov.text_sink \
    videotestsrc is-live=true pattern=ball ! video/x-raw,width=640,height=360 ! "$OVERLAY" ! videoconvert \
    ! autovideosink
  ;;
--overlay)
  eval exec gst-launch-1.0 filesrc location="\"${2:?usage: $0 --overlay VIDEO}\"" ! decodebin name=d \
    d. ! queue ! audioconvert ! e2easr json-file="$JSON" ! queue ! ov.text_sink \
    d. ! queue ! videoconvert ! "$OVERLAY" ! videoconvert ! autovideosink
  ;;
*)
  gst-launch-1.0 -q filesrc location="$1" ! decodebin ! audioconvert ! e2easr json-file="$JSON" ! fakesink
  # one utterance per line: start and end seconds, then the text
  sed -n 's/^{"start": \([0-9.]*\), "end": \([0-9.]*\), "text": "\([^"]*\)".*/\1-\2  \3/p' "$JSON"
  ;;
esac
