#!/bin/sh
# Side-by-side benchmark: nncore vs PyTorch (Debian python3-torch, CPU) on the
# same shapes, at 1 and 2 threads, under both OpenBLAS core-type settings.
# Thread counts are pinned for every pool involved (nncore's, OpenMP's and
# OpenBLAS's), otherwise PyTorch's OpenBLAS quietly uses every core.
#   bench/run.sh [build-dir]      (tools/setup.sh bench builds and calls this)
#   CASES="codec_encode_768x512 codec_decode_768x512" CORETYPES=Haswell bench/run.sh   # a subset
#   ROUNDS=5 ...                  more alternating rounds on a noisy machine (default 3)
set -eu
cd "$(dirname "$0")/.."
B=${1:-build}
[ -x "$B/bench/bench_nncore" ] || { echo "build first: tools/setup.sh bench" >&2; exit 1; }
/usr/bin/python3 -c "import torch" 2>/dev/null || { echo "needs python3-torch (tools/setup.sh bench installs it)" >&2; exit 1; }
mkdir -p bench/results
out=bench/results/latest.jsonl
: > "$out"
peak=$("$B/bench/bench_nncore" --peak)
echo "$peak" >> "$out"
for coretype in ${CORETYPES:-Haswell auto}; do
  for t in 1 2; do
    if [ "$coretype" = auto ]; then envset="env -u OPENBLAS_CORETYPE"; else envset="env OPENBLAS_CORETYPE=Haswell"; fi
    pin="OPENBLAS_NUM_THREADS=$t OMP_NUM_THREADS=$t MKL_NUM_THREADS=$t"
    # glibc hands large freed blocks back to the kernel, so PyTorch, which frees its activations after
    # every call, page-faults them back in on the next one (2-5x slower on this VM). Keep them mapped, for
    # both sides alike.
    pin="$pin MALLOC_MMAP_THRESHOLD_=1073741824 MALLOC_TRIM_THRESHOLD_=1073741824 MALLOC_TOP_PAD_=268435456"
    # rounds (three by default), alternating the two sides per case so that drift in machine
    # load hits both; the report keeps each side's best round
    for round in $(seq "${ROUNDS:-3}"); do
    for c in ${CASES:-sgemm_1024 conv3x3_64_fwd conv3x3_64_fwd_bwd cnn_train_step detect_train_step codec_train_step lstm_256_fwd_bwd lstm_512_b32_fwd_bwd gru_512_b32_fwd_bwd mha_256_fwd_bwd asr_train_step asr_recognize_6s tts_decoder_step detect_320_fwd codec_encode_768x512 codec_decode_768x512 codec_encode_1280x720 codec_decode_1280x720}; do
      $envset $pin "$B/bench/bench_nncore" --threads "$t" --case "$c" | sed "s/^{/{\"impl\": \"nncore\", \"coretype\": \"$coretype\", /" >> "$out"
      $envset $pin /usr/bin/python3 bench/bench_torch.py --threads "$t" --case "$c" | sed "s/^{/{\"impl\": \"torch\", \"coretype\": \"$coretype\", /" >> "$out"
    done
    done
  done
done
python3 bench/report.py "$out" | tee bench/results/latest.md
