#!/bin/sh
# The recogniser's held-out figures (docs/asr.md, the model card), each beside Debian's pocketsphinx where
# the issue asks for it. Eval sets are measured, never tuned on.
#   models/asr/eval.sh [MODEL]    (default: the shipped model); needs the data of `models/asr/train.sh data`
set -eu
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
DATA=${E2E_ASR_DATA:-$HOME/.cache/gst-e2e/asr}
E2E=${E2E:-$ROOT/build/tools/e2e}
M=${1:-$ROOT/models/asr/e2easr.safetensors}
LM=$ROOT/models/asr/lm.txt
PS="/usr/bin/python3 $ROOT/tools/compare/asr_baseline.py"
[ -f "$DATA/real.tsv" ] || $PS real "$DATA"
echo "== unseen synthetic voices, held-out sentences (greedy; bigram LM beam 16)"
"$E2E" eval asr --model "$M" "$DATA/val_unseen.tsv"
"$E2E" eval asr --model "$M" --lm "$LM" "$DATA/val_unseen.tsv"
echo "== FSDD real digits never trained on: unseen speakers (lucas, yweweler), unseen recordings (0-4)"
"$E2E" eval asr --model "$M" "$DATA/fsdd_eval_speakers.tsv" "$DATA/fsdd_eval_recordings.tsv"
"$E2E" eval asr --model "$M" --grammar digits "$DATA/fsdd_eval_speakers.tsv" "$DATA/fsdd_eval_recordings.tsv"
$PS pocketsphinx "$DATA/fsdd_eval_speakers.tsv" --digits
$PS pocketsphinx "$DATA/fsdd_eval_recordings.tsv" --digits
echo "== real read speech, eval-only (pocketsphinx-testdata)"
"$E2E" eval asr --model "$M" "$DATA/real.tsv"
"$E2E" eval asr --model "$M" --lm "$LM" "$DATA/real.tsv"
$PS pocketsphinx "$DATA/real.tsv"
