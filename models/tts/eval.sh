#!/bin/sh
# The synthesiser's held-out figures (docs/tts.md, the model card).
#   models/tts/eval.sh [MODEL]    (default: the shipped voice); needs the data of `models/tts/train.sh data`
#
# - robustness and speed: 200 held-out sentences through `e2e eval tts` (length guard, words whose letters
#   never held the attention, real-time factor, first audio of a 20-word sentence), and the words
#   pocketsphinx drops or doubles for our voice but not for the teacher on them, and those e2easr drops or
#   doubles too (tools/compare/tts_skips.py);
# - intelligibility: 100 of them (80 LJ Speech sentences and 20 generated ones with numbers, dates, times
#   and amounts), recognised by Debian's pocketsphinx (independent) and by our e2easr (bigram LM), spoken
#   by the teacher voice itself (flite rms, the ceiling), by our model, and by espeak-ng en-us.
set -eu
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
DATA=${E2E_TTS_DATA:-$HOME/.cache/gst-e2e/tts}
E2E=${E2E:-$ROOT/build/tools/e2e}
M=${1:-$ROOT/models/tts/e2etts.safetensors}
OUT=$DATA/eval
PS="/usr/bin/python3 $ROOT/tools/compare/asr_baseline.py"
mkdir -p "$OUT/espeak"
echo "== robustness and speed (200 held-out sentences)"
"$E2E" eval tts --model "$M" --max 200 --out "$OUT/e2etts" "$DATA/val.tsv"
head -200 "$DATA/val.tsv" | awk -F'\t' '{print $1 "\tteacher\t" $3}' > "$OUT/teacher200.tsv"
cp "$OUT/e2etts/e2etts.tsv" "$OUT/ours200.tsv"
$PS pocketsphinx "$OUT/teacher200.tsv" --json "$OUT/teacher200.json" | sed -n 1p
$PS pocketsphinx "$OUT/ours200.tsv" --json "$OUT/ours200.json" | sed -n 1p
for who in teacher200 ours200; do
  "$E2E" eval asr --lm "$ROOT/models/asr/lm.txt" --json "$OUT/$who-asr.json" "$OUT/$who.tsv" > /dev/null
done
/usr/bin/python3 "$ROOT/tools/compare/tts_skips.py" "$OUT/teacher200.json" "$OUT/ours200.json" \
  "$OUT/teacher200-asr.json" "$OUT/ours200-asr.json" | grep "sentences:"
# the 100 for intelligibility: the first 80 LJ sentences and the first 20 generated ones
{ grep -v "	GEN-" "$DATA/val.tsv" | head -80; grep "	GEN-" "$DATA/val.tsv" | head -20; } > "$OUT/val100.tsv"
"$E2E" eval tts --model "$M" --max 100 --out "$OUT/e2etts" "$OUT/val100.tsv" > /dev/null
awk -F'\t' '{print $1 "\tteacher\t" $3}' "$OUT/val100.tsv" > "$OUT/teacher.tsv"
awk -F'\t' -v d="$OUT/e2etts" '{print d "/" $2 ".wav\te2etts\t" $3}' "$OUT/val100.tsv" > "$OUT/ours.tsv"
: > "$OUT/espeak.tsv"
while IFS='	' read -r path id text; do
  espeak-ng -v en-us -w "$OUT/espeak/$id.wav" "$text"
  printf '%s\tespeak-ng\t%s\n' "$OUT/espeak/$id.wav" "$text" >> "$OUT/espeak.tsv"
done < "$OUT/val100.tsv"
for who in teacher ours espeak; do
  echo "== $who: pocketsphinx, then e2easr with its bigram LM"
  $PS pocketsphinx "$OUT/$who.tsv" | tail -1
  "$E2E" eval asr --lm "$ROOT/models/asr/lm.txt" "$OUT/$who.tsv" | grep WER
done
