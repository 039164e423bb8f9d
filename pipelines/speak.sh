#!/bin/sh
# Text to speech with e2etts.
#   pipelines/speak.sh "TEXT"           say it on the default audio output
#   pipelines/speak.sh "TEXT" OUT.wav   write it to a WAV file instead
#   pipelines/speak.sh --file TEXTFILE  read a UTF-8 text file aloud, sentence by sentence
# Each word posts an e2etts-word message with its timestamp (gst-launch-1.0 -m shows them).
set -eu
cd "$(dirname "$0")/.."
export GST_PLUGIN_PATH="$PWD/build/gst${GST_PLUGIN_PATH:+:$GST_PLUGIN_PATH}"
case "${1:?usage: $0 \"TEXT\" [OUT.wav] | --file TEXTFILE}" in
--file)
  exec gst-launch-1.0 filesrc location="${2:?usage: $0 --file TEXTFILE}" ! text/x-raw,format=utf8 ! e2etts \
    ! audioconvert ! audioresample ! autoaudiosink
  ;;
*)
  if [ -n "${2:-}" ]; then
    exec gst-launch-1.0 e2etts text="$1" ! audioconvert ! wavenc ! filesink location="$2"
  fi
  exec gst-launch-1.0 e2etts text="$1" ! audioconvert ! audioresample ! autoaudiosink
  ;;
esac
