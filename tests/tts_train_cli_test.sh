#!/bin/sh
# `e2e tts features` and `e2e train tts` end to end, in seconds, on a few generated tones standing in for
# speech: a tiny synthesiser trains, its stage resumes from the checkpoint where it stopped, and --init
# starts a new stage from a trained model's weights (not from random ones) and keeps counting its steps, and
# set-contrast writes the synthesis setting into a copy of a model.
# Prints "N passed, M failed".
set -u
BUILD=${1:?build dir}
E2E="$BUILD/tools/e2e"
TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT
pass=0; fail=0
ok() { pass=$((pass + 1)); echo "ok   $1"; }
bad() { fail=$((fail + 1)); echo "FAIL $1"; }

# six "utterances": gliding tones with a few harmonics, each with a line of text
python3 - "$TMP" <<'PY' || bad "make the sound files"
import math, struct, sys, wave
out = sys.argv[1]
texts = ["a cat", "the dog ran", "one two three", "hello there", "we sat", "it is red"]
with open(f"{out}/train.tsv", "w") as tr, open(f"{out}/val.tsv", "w") as va:
    for i, t in enumerate(texts):
        rate, n = 16000, 8000 + 1600 * i
        f0 = 120.0 + 20 * i
        samples = []
        for k in range(n):
            f = f0 * (1 + 0.3 * k / n)
            s = sum(math.sin(2 * math.pi * h * f * k / rate) / h for h in (1, 2, 3))
            samples.append(int(6000 * s * math.sin(math.pi * k / n)))
        path = f"{out}/u{i}.wav"
        with wave.open(path, "wb") as w:
            w.setnchannels(1), w.setsampwidth(2), w.setframerate(rate)
            w.writeframes(struct.pack(f"<{n}h", *samples))
        (va if i >= 4 else tr).write(f"{path}\tU{i}\t{t}\n")
PY

if "$E2E" tts features "$TMP/train.tsv" "$TMP/train.safetensors" >"$TMP/flog" 2>&1 &&
   "$E2E" tts features "$TMP/val.tsv" "$TMP/val.safetensors" >>"$TMP/flog" 2>&1 &&
   grep -q "4 utterances" "$TMP/flog"; then
  ok "features: four training and two validation utterances"
else bad "e2e tts features"; cat "$TMP/flog"; fi

TINY="--dim 32 --text-dim 32 --layers 2 --batch-frames 2000 --threads 1 --val-every 10 --lr 3e-3"
train() { # LOG ARGS...: one stage
  log=$1; shift
  "$E2E" train tts --train "$TMP/train.safetensors" --val "$TMP/val.safetensors" $TINY "$@" >"$log" 2>&1
}
val_mel() { sed -n 's/^validation .*: mel \([0-9.]*\) .*/\1/p' "$1" | tail -1; }

if train "$TMP/log1" --checkpoint "$TMP/ck" --out "$TMP/m1" --total-steps 20 &&
   grep -q "stage done: steps 0..20" "$TMP/log1" && [ -s "$TMP/ck" ] && [ -s "$TMP/m1" ]; then
  ok "a stage of 20 steps: checkpoint and model written"
else bad "first stage"; tail -5 "$TMP/log1"; fi

if train "$TMP/log2" --checkpoint "$TMP/ck" --out "$TMP/m1" --total-steps 30 &&
   grep -q "resuming TTS training at step 20" "$TMP/log2" && grep -q "stage done: steps 20..30" "$TMP/log2" &&
   "$E2E" info "$TMP/m1" 2>/dev/null | grep -q "^steps *30$"; then
  ok "the next stage resumes at step 20 and the model says 30 steps"
else bad "resumed stage"; tail -5 "$TMP/log2"; fi

# With a learning rate too small to move anything, one step from the trained model must validate as the
# trained model did; one step from a new model must not.
trained=$(val_mel "$TMP/log2")
if train "$TMP/log3" --checkpoint "$TMP/ck3" --out "$TMP/m3" --init "$TMP/m1" --total-steps 1 --lr 1e-12 &&
   grep -q "continuing the given model's TTS training at step 0" "$TMP/log3" &&
   [ -n "$trained" ] && [ "$(val_mel "$TMP/log3")" = "$trained" ] &&
   "$E2E" info "$TMP/m3" 2>/dev/null | grep -q "^steps *31$"; then
  ok "--init: starts from the trained weights (validation mel $trained both), the model says 31 steps"
else bad "--init"; echo "trained: $trained"; tail -5 "$TMP/log3"; fi

if train "$TMP/log4" --checkpoint "$TMP/ck4" --out "$TMP/m4" --total-steps 1 --lr 1e-12 --seed 7 &&
   [ -n "$(val_mel "$TMP/log4")" ] && [ "$(val_mel "$TMP/log4")" != "$trained" ]; then
  ok "without --init the same step validates differently ($(val_mel "$TMP/log4") vs $trained)"
else bad "a new model's control run"; tail -5 "$TMP/log4"; fi

# the stage after an --init stage resumes from its own checkpoint and still counts the init model's steps
if train "$TMP/log5" --checkpoint "$TMP/ck3" --out "$TMP/m3" --init "$TMP/m1" --total-steps 3 &&
   grep -q "resuming TTS training at step 1" "$TMP/log5" && "$E2E" info "$TMP/m3" 2>/dev/null | grep -q "^steps *33$"; then
  ok "after --init, the checkpoint wins and the count goes on (33 steps)"
else bad "resume after --init"; tail -5 "$TMP/log5"; fi

if ! "$E2E" train tts --train "$TMP/train.safetensors" --checkpoint "$TMP/ck6" --out "$TMP/m6" \
       --init "$TMP/val.safetensors" >"$TMP/log6" 2>&1 && grep -q "\-\-init: .*val.safetensors" "$TMP/log6"; then
  ok "--init with a file that is not a synthesiser is refused, naming it"
else bad "--init with a wrong file"; cat "$TMP/log6"; fi

# the recipe's last step: the contrast chosen after training goes into the file, the rest of it kept
if "$E2E" tts set-contrast "$TMP/m1" 1.2 -o "$TMP/m7" >"$TMP/log7" 2>&1 && "$E2E" info "$TMP/m7" >"$TMP/info7" 2>&1 &&
   grep -q "^contrast *1.2" "$TMP/info7" && grep -q "^steps *30$" "$TMP/info7" && grep -q "^validation" "$TMP/info7" &&
   ! "$E2E" tts set-contrast "$TMP/m1" 9 -o "$TMP/m8" >/dev/null 2>&1 && [ ! -e "$TMP/m8" ]; then
  ok "set-contrast writes 1.2 and keeps steps and validation; 9 is refused"
else bad "set-contrast"; cat "$TMP/log7" "$TMP/info7"; fi

# a stage from a model with a tuned contrast writes a model at 1: the contrast is tuned again afterwards
if train "$TMP/log9" --checkpoint "$TMP/ck9" --out "$TMP/m9" --init "$TMP/m7" --total-steps 1 &&
   "$E2E" info "$TMP/m9" 2>/dev/null | grep -q "^contrast *1$"; then
  ok "--init from a contrast-1.2 model trains a model at contrast 1"
else bad "contrast after --init"; tail -3 "$TMP/log9"; "$E2E" info "$TMP/m9" | grep contrast; fi

# a postnet joins a trained model as no change (its validation after the postnet is the model's own), trains,
# and speaks through the streaming path; a postnet with other layers is refused
val_post() { sed -n 's/^validation .* post \([0-9.]*\) .*/\1/p' "$1" | tail -1; }
if train "$TMP/log10" --checkpoint "$TMP/ck10" --out "$TMP/m10" --init "$TMP/m1" --postnet 2 --postnet-dim 16 \
     --total-steps 1 --lr 1e-12 && [ "$(val_post "$TMP/log10")" = "$trained" ] &&
   "$E2E" info "$TMP/m10" 2>/dev/null | grep -q "^post.conv1.weight *f32 *\[80, 80\]"; then
  ok "--postnet 2 on a trained model: post.conv0/1 added, validation after it $trained as before"
else bad "--postnet with --init"; echo "trained: $trained"; tail -3 "$TMP/log10"; "$E2E" info "$TMP/m10" | grep post; fi
if train "$TMP/log11" --checkpoint "$TMP/ck10" --out "$TMP/m10" --init "$TMP/m1" --postnet 2 --postnet-dim 16 \
     --total-steps 15 && [ -n "$(val_post "$TMP/log11")" ] && [ "$(val_post "$TMP/log11")" != "$trained" ] &&
   "$E2E" tts --model "$TMP/m10" "we sat." -o "$TMP/post.wav" >"$TMP/log12" 2>&1 && [ -s "$TMP/post.wav" ]; then
  ok "the postnet trains (validation after it $(val_post "$TMP/log11")) and the voice speaks"
else bad "postnet training and speech"; tail -n 3 "$TMP/log11" "$TMP/log12"; fi
# widening a trained 3-layer postnet keeps what it computes (the voice's samples within rounding: leaving the
# new channels' outgoing weights random moves them by ~170); narrowing it is refused
maxdiff() { python3 - "$1" "$2" <<'PY'
import struct, sys, wave
def samples(p):
    with wave.open(p) as w:
        return struct.unpack("<%dh" % w.getnframes(), w.readframes(w.getnframes()))
a, b = samples(sys.argv[1]), samples(sys.argv[2])
print(max(abs(x - y) for x, y in zip(a, b)) if len(a) == len(b) and a else 99999)
PY
}
if train "$TMP/log14" --checkpoint "$TMP/ck14" --out "$TMP/m14" --init "$TMP/m1" --postnet 3 --postnet-dim 16 --lr 0.01 \
     --total-steps 15 &&
   train "$TMP/log15" --checkpoint "$TMP/ck15" --out "$TMP/m15" --init "$TMP/m14" --postnet 3 --postnet-dim 24 \
     --total-steps 1 --lr 1e-12 &&
   "$E2E" info "$TMP/m15" 2>/dev/null | grep -q "^post.conv1.weight *f32 *\[24, 120\]" &&
   "$E2E" tts --model "$TMP/m14" "it is red." -o "$TMP/w14.wav" >/dev/null 2>&1 &&
   "$E2E" tts --model "$TMP/m15" "it is red." -o "$TMP/w15.wav" >/dev/null 2>&1 &&
   d=$(maxdiff "$TMP/w14.wav" "$TMP/w15.wav") && [ "$d" -le 8 ] &&
   ! train "$TMP/log16" --checkpoint "$TMP/ck16" --out "$TMP/m16" --init "$TMP/m15" --postnet 3 --postnet-dim 16 &&
   grep -q "can only be widened" "$TMP/log16"; then
  ok "--postnet-dim 24 widens a trained 16-wide postnet (its voice moves by $d in 32767); 16 again is refused"
else bad "widening the postnet"; echo "sample difference: ${d:-}"; tail -n 3 "$TMP/log14" "$TMP/log15" "$TMP/log16"; fi
if ! train "$TMP/log13" --checkpoint "$TMP/ck13" --out "$TMP/m13" --init "$TMP/m10" --postnet 3 &&
   grep -q "already has a 2-layer postnet" "$TMP/log13"; then
  ok "--postnet 3 on a model with a 2-layer postnet is refused"
else bad "a second postnet"; tail -n 3 "$TMP/log13"; fi

echo "$pass passed, $fail failed"
[ "$fail" -eq 0 ]
