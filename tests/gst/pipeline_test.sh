#!/bin/sh
# End-to-end gst-launch tests of e2edetect: JSON lines for every frame, valid
# JSON with the documented fields, and the shipped model on a real clip when
# opencv-doc's vtest.avi is installed (skipped with a message otherwise).
# Prints "N passed, M failed".
set -u
BUILD=${1:?build dir}
export GST_PLUGIN_PATH="$BUILD/gst"
TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT
pass=0; fail=0; skip=0
ok() { pass=$((pass + 1)); echo "ok   $1"; }
bad() { fail=$((fail + 1)); echo "FAIL $1"; }

check_jsonl() { # file expected-lines
  python3 - "$1" "$2" <<'PY'
import json, sys
lines = open(sys.argv[1]).read().splitlines()
assert len(lines) == int(sys.argv[2]), f"{len(lines)} lines, expected {sys.argv[2]}"
prev = -1
for l in lines:
    d = json.loads(l)
    for k in ("pts", "frame", "width", "height", "fresh", "objects"):
        assert k in d, f"missing {k}"
    assert d["frame"] == prev + 1
    prev = d["frame"]
    for o in d["objects"]:
        assert set(o) >= {"label", "class_id", "confidence", "x", "y", "w", "h"}
        assert 0 <= o["x"] and o["x"] + o["w"] <= d["width"] + 0.5 and 0 <= o["y"] and o["y"] + o["h"] <= d["height"] + 0.5
        assert 0 < o["confidence"] <= 1
PY
}

if gst-launch-1.0 -q videotestsrc num-buffers=30 pattern=ball ! video/x-raw,width=320,height=240 ! \
   e2edetect json-file="$TMP/a.jsonl" ! fakesink >"$TMP/log" 2>&1 && check_jsonl "$TMP/a.jsonl" 30; then
  ok "videotestsrc -> e2edetect writes 30 valid JSON lines"
else bad "videotestsrc -> e2edetect JSON lines"; cat "$TMP/log"; fi

if gst-launch-1.0 -q videotestsrc num-buffers=10 ! video/x-raw,format=I420,width=64,height=48 ! \
   e2edetect interval=4 ! e2eoverlay ! fakesink >"$TMP/log2" 2>&1; then
  bad "e2eoverlay must refuse I420 (caps)"
else
  ok "e2eoverlay refuses I420 with a negotiation error"
fi

if gst-launch-1.0 -q videotestsrc num-buffers=5 ! e2edetect model=/nonexistent.safetensors ! fakesink >"$TMP/log3" 2>&1; then
  bad "missing model must fail"
elif grep -q "Could not load detection model" "$TMP/log3"; then ok "missing model: clear error"
else bad "missing model message"; cat "$TMP/log3"; fi

CLIP=/usr/share/doc/opencv-doc/examples/data/vtest.avi
if [ -f "$CLIP" ] && gst-inspect-1.0 avidemux >/dev/null 2>&1; then
  # identity's eos-after lets 59 or 60 buffers through, depending on timing (seen under load): count the
  # frames e2edetect is handed with a second identity, and want one JSON line for each
  if gst-launch-1.0 -v filesrc location=$CLIP ! decodebin ! videoconvert ! video/x-raw,format=BGRx ! \
     identity eos-after=60 ! identity name=seen silent=false ! e2edetect json-file="$TMP/v.jsonl" ! e2eoverlay ! \
     fakesink >"$TMP/log4" 2>&1 && frames=$(grep -c 'seen: last-message = chain' "$TMP/log4") && \
     [ "$frames" -ge 59 ] && check_jsonl "$TMP/v.jsonl" "$frames" && python3 -c "
import json; n = sum(len(json.loads(l)['objects']) for l in open('$TMP/v.jsonl'))
assert n > 30, f'only {n} people found in the first 60 frames of vtest.avi'"; then
    ok "shipped person model on vtest.avi: a JSON line for each of $frames frames, people found"
  else bad "vtest.avi pipeline"; tail -5 "$TMP/log4"; fi
else
  skip=$((skip + 1)); echo "skip vtest.avi clip test (install opencv-doc and gstreamer1.0-libav)"
fi
# e2ecodec: write a stream with the encoder, play it back through decodebin
# (type finder + parser + decoder); every frame must equal, byte for byte,
# what the e2ecodec bin (encoder and decoder in one pipeline) produces.
if gst-launch-1.0 -q videotestsrc num-buffers=12 pattern=smpte ! video/x-raw,format=I420,width=176,height=144,framerate=15/1 ! \
   e2ecodecenc quality=4 ! filesink location="$TMP/c.e2el" >"$TMP/log5" 2>&1 && \
   [ "$(gst-typefind-1.0 "$TMP/c.e2el" | sed 's/.* - //')" = "video/x-e2e-lic" ] && \
   gst-launch-1.0 -q filesrc location="$TMP/c.e2el" ! decodebin ! videoconvert ! video/x-raw,format=RGB ! \
     multifilesink location="$TMP/f%02d.rgb" >>"$TMP/log5" 2>&1 && \
   gst-launch-1.0 -q videotestsrc num-buffers=12 pattern=smpte ! video/x-raw,format=I420,width=176,height=144,framerate=15/1 ! \
     e2ecodec quality=4 ! videoconvert ! video/x-raw,format=RGB ! multifilesink location="$TMP/o%02d.rgb" >>"$TMP/log5" 2>&1 && \
   python3 - "$TMP" <<'PY'
import os, sys
d = sys.argv[1]
dec = sorted(f for f in os.listdir(d) if f.startswith("f") and f.endswith(".rgb"))
assert len(dec) == 12, f"{len(dec)} decoded frames, expected 12"
for f in dec:
    a = open(os.path.join(d, f), "rb").read(); b = open(os.path.join(d, "o" + f[1:]), "rb").read()
    assert len(a) == len(b) == 176 * 144 * 3, "frame size"
    assert a == b, f"{f}: file playback differs from the in-pipeline codec"
PY
then ok "e2ecodecenc ! filesink, then filesrc ! decodebin: 12 frames, identical to the e2ecodec bin's output"
else bad "e2ecodec file round trip through decodebin"; tail -5 "$TMP/log5"; fi

head -c 3000 "$TMP/c.e2el" > "$TMP/trunc.e2el" 2>/dev/null
if timeout 60 gst-launch-1.0 -q filesrc location="$TMP/trunc.e2el" ! decodebin ! fakesink >"$TMP/log6" 2>&1; [ $? -le 1 ]; then
  ok "truncated e2ecodec file: clean end or error, no crash or hang"
else bad "truncated e2ecodec file"; tail -5 "$TMP/log6"; fi

# e2easr with the shipped recogniser on real synthetic speech it never heard: three utterances by two
# held-out voices (flite rms, festival slt HTS) reading held-out sentences (tests/data/README.md)
SRC=$(cd "$(dirname "$0")/../.." && pwd)
if [ -f "$SRC/models/asr/e2easr.safetensors" ]; then
  if gst-launch-1.0 -q filesrc location="$SRC/tests/data/speech-heldout.flac" ! decodebin ! audioconvert ! \
     e2easr json-file="$TMP/asr.jsonl" ! fakesink >"$TMP/log7" 2>&1 && python3 - "$TMP/asr.jsonl" "$SRC" >"$TMP/asr.txt" 2>&1 <<'PY'
import json, sys
sys.path.insert(0, sys.argv[2] + "/tools/compare")
from asr_baseline import edits as ed
refs = ["set an alarm for ten twenty five in the morning", "it seeks to maintain the federal bench in full vigor",
        "the city justices had not fulfilled this obligation"]
got = [json.loads(l) for l in open(sys.argv[1])]
assert len(got) == 3, f"{len(got)} utterances, expected 3: {[g['text'] for g in got]}"
cer = sum(ed(r, g["text"]) for r, g in zip(refs, got)) / sum(len(r) for r in refs)
prev = -1
for g in got:
    assert g["start"] > prev and g["end"] > g["start"], "utterances in order"
    prev = g["end"]
    for w in g["words"]:
        assert g["start"] - 0.01 <= w["start"] < w["end"] <= g["end"] + 0.01 and 0 < w["confidence"] <= 1, w
print(f"CER {cer:.3f}: " + " | ".join(g["text"] for g in got))
assert cer < 0.35, f"CER {cer:.3f}"  # the shipped model: 0.24 (models/asr/README.md)
PY
  then ok "e2easr on held-out voices: three utterances, timed words, $(tail -1 "$TMP/asr.txt")"
  else bad "e2easr on held-out speech"; tail -5 "$TMP/log7" "$TMP/asr.txt"; fi
else
  skip=$((skip + 1)); echo "skip e2easr held-out speech (no shipped model yet)"
fi
# the shipped voice, heard by the shipped recogniser: three held-out sentences through e2etts ! e2easr
if [ -f "$SRC/models/tts/e2etts.safetensors" ] && [ -f "$SRC/models/asr/e2easr.safetensors" ]; then
  if gst-launch-1.0 -q e2etts text="The neglect of prison reform in those days was not to be visited upon the legislature. \
On 3/4/2018 the train left Denver at 11:25. It seeks to maintain the federal bench in full vigor." ! audioconvert ! \
     audioresample ! e2easr json-file="$TMP/rt.jsonl" ! fakesink >"$TMP/log10" 2>&1 &&
     python3 - "$TMP/rt.jsonl" "$SRC" >"$TMP/rt.txt" 2>&1 <<'PY'
import json, sys
sys.path.insert(0, sys.argv[2] + "/tools/compare")
from asr_baseline import edits as ed
ref = ("the neglect of prison reform in those days was not to be visited upon the legislature on march fourth twenty "
       "eighteen the train left denver at eleven twenty five it seeks to maintain the federal bench in full vigor")
got = " ".join(json.loads(l)["text"] for l in open(sys.argv[1]))
cer = ed(ref, got) / len(ref)
print(f"CER {cer:.3f}: {got}")
assert cer < 0.45, f"CER {cer:.3f}"  # the shipped pair: 0.28 (greedy); an untrained voice gives nearly 1
PY
  then ok "e2etts ! e2easr, shipped models, held-out sentences: $(tail -1 "$TMP/rt.txt")"
  else bad "e2etts ! e2easr round trip"; tail -5 "$TMP/log10" "$TMP/rt.txt"; fi
else
  skip=$((skip + 1)); echo "skip e2etts ! e2easr round trip (no shipped models)"
fi
if gst-launch-1.0 -q audiotestsrc num-buffers=50 wave=white-noise volume=0.001 ! audio/x-raw,rate=48000,channels=2 ! \
   e2easr model="$SRC/models/asr/e2easr.safetensors" ! fakesink >"$TMP/log8" 2>&1 || ! [ -f "$SRC/models/asr/e2easr.safetensors" ]; then
  ok "e2easr on faint noise at 48 kHz stereo: runs to EOS"
else bad "e2easr on noise"; tail -5 "$TMP/log8"; fi
if gst-launch-1.0 -q audiotestsrc num-buffers=5 ! e2easr model=/nonexistent-asr.safetensors ! fakesink >"$TMP/log9" 2>&1; then
  bad "missing speech model must fail"
elif grep -q "nonexistent-asr.safetensors" "$TMP/log9"; then ok "missing speech model: the error names the file"
else bad "missing speech model message"; cat "$TMP/log9"; fi

echo "$pass passed, $fail failed, $skip skipped"
[ "$fail" -eq 0 ]
