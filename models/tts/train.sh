#!/bin/sh
# The speech synthesiser's recipe (models/tts/README.md is its model card).
#
#   models/tts/train.sh data             the teacher voice (flite rms) reads the sentences; feature shards
#   models/tts/train.sh stage [SECONDS]  one training stage (default 6000 s): resumes from the checkpoint with
#                                        its optimizer state, validates every 250 steps, writes the model;
#                                        TOTAL_STEPS=N sets the length of the learning-rate schedule (60000);
#                                        INIT=MODEL, when there is no checkpoint, starts from that model's
#                                        weights with a new optimizer (e.g. the shipped models/tts/e2etts.safetensors);
#                                        POSTNET=N (and POSTNET_DIM, default 128) gives a new model, or an INIT
#                                        model without one, an N-layer postnet; a POSTNET_DIM wider than an INIT
#                                        model's N-layer postnet widens it
#   models/tts/train.sh contrast [X...]  the trained model reads 60 held-out sentences that no evaluation uses
#                                        (LJ 300-349 and generated 60-69 of val.tsv) at each contrast (default
#                                        1.0 1.15 1.3 1.45); pocketsphinx's WER for each: pick the lowest
#   models/tts/train.sh ship             CONTRAST=X (default 1): the trained model, speaking at that contrast,
#                                        to models/tts/e2etts.safetensors
#
# Data and checkpoints live in $E2E_TTS_DATA (default ~/.cache/gst-e2e/tts), outside the repository; logs go
# to docs/training/tts/. Needs flite (tools/setup.sh speech installs it).
set -eu
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
DATA=${E2E_TTS_DATA:-$HOME/.cache/gst-e2e/tts}
E2E=${E2E:-$ROOT/build/tools/e2e}
LOGS=$ROOT/docs/training/tts
what=${1:-stage}

case "$what" in
data)
  mkdir -p "$DATA"
  /usr/bin/python3 "$ROOT/models/tts/make_data.py" "$DATA" --e2e "$E2E"
  # the training list in two halves, one feature process per core
  half=$(( ($(wc -l < "$DATA/train.tsv") + 1) / 2 ))
  split -d -l "$half" "$DATA/train.tsv" "$DATA/.part-"
  for p in "$DATA"/.part-*; do "$E2E" tts features "$p" "$DATA/train-${p##*-}.safetensors" & done
  wait
  rm -f "$DATA"/.part-*
  "$E2E" tts features "$DATA/val.tsv" "$DATA/val.safetensors"
  ;;
stage)
  seconds=${2:-6000}
  mkdir -p "$LOGS"
  n=$(ls "$LOGS"/stage-*.log 2>/dev/null | wc -l)
  log="$LOGS/stage-$((n + 1)).log"
  train=$(ls "$DATA"/train-*.safetensors | tr '\n' ',')
  env -u OPENBLAS_CORETYPE "$E2E" train tts --train "$train" --val "$DATA/val.safetensors" \
    --checkpoint "$DATA/checkpoint.safetensors" --out "$DATA/e2etts.safetensors" --log "$LOGS/log.jsonl" \
    --seconds "$seconds" --total-steps "${TOTAL_STEPS:-60000}" ${INIT:+--init "$INIT"} \
    ${POSTNET:+--postnet "$POSTNET" --postnet-dim "${POSTNET_DIM:-128}"} 2>&1 | tee "$log"
  ;;
contrast)
  shift
  T="$DATA/contrast"
  mkdir -p "$T"
  { grep -v "	GEN-" "$DATA/val.tsv" | sed -n 301,350p; grep "	GEN-" "$DATA/val.tsv" | sed -n 61,70p; } > "$T/tune.tsv"
  for x in ${*:-1.0 1.15 1.3 1.45}; do
    "$E2E" eval tts --model "$DATA/e2etts.safetensors" --contrast "$x" --max 60 --out "$T/$x" "$T/tune.tsv" > "$T/$x.log"
    awk -F'\t' -v d="$T/$x" '{print d "/" $2 ".wav\tcontrast-'"$x"'\t" $3}' "$T/tune.tsv" > "$T/$x.tsv"
    echo "contrast $x: $(/usr/bin/python3 "$ROOT/tools/compare/asr_baseline.py" pocketsphinx "$T/$x.tsv" | tail -1)"
  done
  ;;
ship)
  "$E2E" tts set-contrast "$DATA/e2etts.safetensors" "${CONTRAST:-1}" -o "$ROOT/models/tts/e2etts.safetensors"
  ;;
*)
  echo "usage: $0 data | stage [SECONDS] | contrast [X...] | ship" >&2
  exit 2
  ;;
esac
