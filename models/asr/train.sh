#!/bin/sh
# The speech recogniser's recipe (models/asr/README.md is its model card).
#
#   models/asr/train.sh data             synthesise the voices and extract feature shards
#   models/asr/train.sh stage [SECONDS]  one training stage (default 6600 s): resumes from the checkpoint with
#                                        its optimizer state, validates every 500 steps, writes the model;
#                                        TOTAL_STEPS=N sets the length of the learning-rate schedule (16000)
#   models/asr/train.sh ship             copies the trained model to models/asr/e2easr.safetensors
#
# Data and checkpoints live in $E2E_ASR_DATA (default ~/.cache/gst-e2e/asr), outside the repository; logs go
# to docs/training/asr/. Needs the speech packages: tools/setup.sh speech installs them.
set -eu
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
DATA=${E2E_ASR_DATA:-$HOME/.cache/gst-e2e/asr}
E2E=${E2E:-$ROOT/build/tools/e2e}
LOGS=$ROOT/docs/training/asr
what=${1:-stage}

features() { # list.tsv shard-prefix parts: the list cut into parts, one feature process per core
  list=$1 prefix=$2 parts=$3
  n=$(wc -l < "$list")
  per=$(( (n + parts - 1) / parts ))
  split -d -l "$per" "$list" "$DATA/.part-$(basename "$prefix")-"
  for p in "$DATA"/.part-"$(basename "$prefix")"-*; do
    "$E2E" asr features "$p" "$prefix-${p##*-}.safetensors" &
  done
  wait
  rm -f "$DATA"/.part-"$(basename "$prefix")"-*
}

case "$what" in
data)
  mkdir -p "$DATA"
  /usr/bin/python3 "$ROOT/models/asr/synth.py" "$DATA" --copies 2
  features "$DATA/train.tsv" "$DATA/train" 4
  for s in val_seen val_unseen fsdd_train fsdd_val fsdd_eval_speakers fsdd_eval_recordings; do
    "$E2E" asr features "$DATA/$s.tsv" "$DATA/$s.safetensors"
  done
  # the training voices' audio is in the shards now; validation audio stays for the element and pocketsphinx
  rm -rf "$DATA/wav/train"
  ;;
stage)
  seconds=${2:-6600}
  mkdir -p "$LOGS"
  n=$(ls "$LOGS"/stage-*.log 2>/dev/null | wc -l)
  log="$LOGS/stage-$((n + 1)).log"
  train=$(ls "$DATA"/train-*.safetensors | tr '\n' ',')
  # the real digits weigh as four copies: little data, but the only human voices
  fsdd="$DATA/fsdd_train.safetensors"
  # training wants OpenBLAS's AVX-512 kernels where the CPU has them (the machines preset AVX2 for benchmarks)
  env -u OPENBLAS_CORETYPE "$E2E" train asr --train "$train$fsdd,$fsdd,$fsdd,$fsdd" \
    --val "$DATA/val_unseen.safetensors,$DATA/val_seen.safetensors,$DATA/fsdd_val.safetensors" \
    --checkpoint "$DATA/checkpoint.safetensors" --out "$DATA/e2easr.safetensors" --log "$LOGS/log.jsonl" \
    --seconds "$seconds" --total-steps "${TOTAL_STEPS:-16000}" --lr 1.5e-3 --val-every 500 --val-max 900 2>&1 | tee "$log"
  ;;
ship)
  cp "$DATA/e2easr.safetensors" "$ROOT/models/asr/e2easr.safetensors"
  ;;
*)
  echo "usage: $0 data | stage [SECONDS] | ship" >&2
  exit 2
  ;;
esac
