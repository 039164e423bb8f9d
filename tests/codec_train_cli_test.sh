#!/bin/sh
# `e2e train codec` end to end, in seconds: a tiny level-modulated model trains on a few
# generated pictures (videotestsrc ! pngenc stands in for BSDS500), is saved with its recipe,
# curve and validation figures, then codes a picture whose decoding equals the encoder's
# reconstruction. Flags that would do nothing are refused. Prints "N passed, M failed".
set -u
BUILD=${1:?build dir}
E2E="$BUILD/tools/e2e"
# in the sanitizer build: fontconfig's process-long caches (the curve's text) are not our leaks
LSAN_OPTIONS="${LSAN_OPTIONS:+$LSAN_OPTIONS:}suppressions=$(cd "$(dirname "$0")" && pwd)/lsan.supp"
export LSAN_OPTIONS
TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT
pass=0; fail=0
ok() { pass=$((pass + 1)); echo "ok   $1"; }
bad() { fail=$((fail + 1)); echo "FAIL $1"; }

D="$TMP/data/codec/bsds500"
mkdir -p "$D/train" "$D/test" "$D/val"
i=0
for pattern in snow pinwheel spokes zone-plate gamut checkers-8 smpte ball; do
  i=$((i + 1))
  case $i in 1|2|3|4) dir=train ;; 5|6) dir=test ;; *) dir=val ;; esac
  gst-launch-1.0 -q videotestsrc pattern=$pattern num-buffers=1 ! video/x-raw,format=RGB,width=160,height=128 ! \
    videoconvert ! pngenc ! filesink location="$D/$dir/p$i.png" >/dev/null 2>&1 || { bad "make $pattern.png"; }
done

OUT="$TMP/tiny.safetensors"
if "$E2E" train codec --data-root "$TMP/data" --n 16 --m 24 --level-mod 1 --steps 100 --batch 2 --patch 64 \
     --threads 1 --eval-every 50 --val-images 2 --lr 3e-3 --out "$OUT" >"$TMP/log" 2>&1 &&
   [ -s "$OUT" ] && [ -s "$TMP/tiny-curve.png" ] && [ "$(grep -c 'BSDS500 val' "$TMP/log")" -ge 2 ]; then
  ok "100 steps: model, curve and two validations written"
else bad "training run"; tail -5 "$TMP/log"; fi

if "$E2E" info "$OUT" >"$TMP/info" 2>&1 && grep -q '"level_mod": true' "$TMP/info" &&
   grep -q 'recipe .*--level-mod 1' "$TMP/info" && grep -q 'g_s.igdn1.level_scale' "$TMP/info"; then
  ok "the file records its level modulation, recipe and level scales"
else bad "e2e info of the trained model"; cat "$TMP/info"; fi

if "$E2E" codec encode --model "$OUT" --quality 5 --recon "$TMP/rec.png" "$D/val/p8.png" "$TMP/p.e2el" >"$TMP/log2" 2>&1 &&
   "$E2E" codec decode --model "$OUT" "$TMP/p.e2el" "$TMP/dec.png" >>"$TMP/log2" 2>&1 && cmp -s "$TMP/rec.png" "$TMP/dec.png"; then
  ok "the trained model codes a picture; decoded == encoder's reconstruction"
else bad "code with the trained model"; tail -5 "$TMP/log2"; fi

# a context model added to the trained one and trained alone for a few steps
CTX="$TMP/ctx.safetensors"
if "$E2E" train codec --data-root "$TMP/data" --init "$OUT" --context 8 --train-only context. --steps 30 --batch 2 \
     --patch 64 --threads 1 --eval-every 30 --val-images 1 --lr 3e-3 --out "$CTX" >"$TMP/log4" 2>&1 &&
   "$E2E" info "$CTX" >"$TMP/info2" 2>&1 && grep -q '"context": 8' "$TMP/info2" && grep -q 'recipe .*--context 8' "$TMP/info2" &&
   "$E2E" codec encode --model "$CTX" --quality 3 --recon "$TMP/rec2.png" "$D/val/p8.png" "$TMP/p2.e2el" >"$TMP/log5" 2>&1 &&
   "$E2E" codec decode --model "$CTX" "$TMP/p2.e2el" "$TMP/dec2.png" >>"$TMP/log5" 2>&1 && cmp -s "$TMP/rec2.png" "$TMP/dec2.png"; then
  ok "--context 8 --train-only context.: trained, recorded, and its streams decode exactly"
else bad "context model training"; tail -5 "$TMP/log4" "$TMP/log5"; fi
# the anchors' context on top, trained alone with the second half's context (a list of prefixes)
ACTX="$TMP/actx.safetensors"
if "$E2E" train codec --data-root "$TMP/data" --init "$CTX" --anchor-context 8 --train-only anchor_context.,context. \
     --steps 30 --batch 2 --patch 64 --threads 1 --eval-every 30 --val-images 1 --lr 3e-3 --out "$ACTX" >"$TMP/log7" 2>&1 &&
   "$E2E" info "$ACTX" >"$TMP/info3" 2>&1 && grep -q '"anchor_context": 8' "$TMP/info3" &&
   grep -q 'recipe .*--anchor-context 8' "$TMP/info3" &&
   "$E2E" codec encode --model "$ACTX" --quality 2 --recon "$TMP/rec3.png" "$D/val/p8.png" "$TMP/p3.e2el" >"$TMP/log8" 2>&1 &&
   "$E2E" codec decode --model "$ACTX" "$TMP/p3.e2el" "$TMP/dec3.png" >>"$TMP/log8" 2>&1 && cmp -s "$TMP/rec3.png" "$TMP/dec3.png"; then
  ok "--anchor-context 8 --train-only anchor_context.,context.: trained, recorded, and its streams decode exactly"
else bad "anchors' context training"; tail -5 "$TMP/log7" "$TMP/log8"; fi
"$E2E" train codec --data-root "$TMP/data" --init "$OUT" --anchor-context 8 --steps 1 --out "$TMP/z.safetensors" >"$TMP/log9" 2>&1
if [ $? -ne 0 ] && grep -q "anchors' context needs" "$TMP/log9" && [ ! -e "$TMP/z.safetensors" ]; then
  ok "refused, with a reason: --anchor-context on a model without a context model"
else bad "--anchor-context without a context model must be refused"; cat "$TMP/log9"; fi
for only in nosuch. g_s.,nosuch.; do
  "$E2E" train codec --data-root "$TMP/data" --init "$OUT" --train-only "$only" --steps 1 --out "$TMP/y.safetensors" >"$TMP/log6" 2>&1
  if [ $? -eq 2 ] && grep -q "nosuch.: the model has no tensor" "$TMP/log6" && [ ! -e "$TMP/y.safetensors" ]; then
    ok "refused, with a reason: --train-only $only (a prefix that matches nothing)"
  else bad "--train-only $only must be refused"; cat "$TMP/log6"; fi
done

for flags in "--mean-head 1" "--widen-m 32" "--init $OUT --m 48"; do
  # shellcheck disable=SC2086
  "$E2E" train codec --data-root "$TMP/data" $flags --steps 1 --out "$TMP/x.safetensors" >"$TMP/log3" 2>&1
  if [ $? -eq 2 ] && grep -q "needs --init\|keeps its own" "$TMP/log3" && [ ! -e "$TMP/x.safetensors" ]; then
    ok "refused, with a reason: $flags"
  else bad "$flags must be refused"; cat "$TMP/log3"; fi
done

echo "$pass passed, $fail failed"
[ "$fail" -eq 0 ]
