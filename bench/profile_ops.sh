#!/bin/sh
# Where a bench case's time goes, per op: perf (Debian's linux-perf) samples with call graphs, summed
# under each op's entry point (inclusive), plus the thread pool's waiting. Prints a markdown table.
#   bench/profile_ops.sh [build-dir] CASE THREADS
# e.g. bench/profile_ops.sh build cnn_train_step 1. Shares are of all samples and inclusive (an op's
# gradient copies count in it and again in their own row). With several threads, the work a pool
# thread does for an op is not under that op's entry point (its stack starts in the pool), so per-op
# shares are exact at one thread only; at more, the pool's waiting row is the figure to read.
set -eu
B=${1:-build}; CASE=${2:-cnn_train_step}; T=${3:-1}
command -v perf >/dev/null || { echo "needs perf (apt install linux-perf)" >&2; exit 1; }
out=$(mktemp -d)
export OPENBLAS_NUM_THREADS=$T MALLOC_MMAP_THRESHOLD_=1073741824 MALLOC_TRIM_THRESHOLD_=1073741824
# warm-up (first touches of the arena) stays out of the samples: recording starts after 2.5 s
BENCH_MS=6000 perf record -q -D 2500 --call-graph dwarf,16384 -F 400 -o "$out/perf.data" \
  "$B/bench/bench_nncore" --threads "$T" --case "$CASE" > "$out/case.json" 2>/dev/null
perf report -i "$out/perf.data" --children --sort symbol --stdio 2>/dev/null | grep -E '^ +[0-9]' > "$out/children.txt"
perf report -i "$out/perf.data" --no-children --sort symbol --stdio -g none 2>/dev/null | grep -E '^ +[0-9]' > "$out/self.txt"
# an op's share: the largest inclusive share among its entry points (names differ between versions)
share() { for s in "$@"; do awk -v s="$s" '$NF != s && $(NF-2) == s {print $1+0}' "$out/children.txt"; done | sort -g | tail -1; }
selfshare() { awk -v s="$1" '$(NF-2) == s {print $1+0}' "$out/self.txt" | head -1; }
ms=$(sed 's/.*"ms": \([0-9.]*\).*/\1/' "$out/case.json")
echo "$CASE, $T thread(s): median $ms ms per step"
echo
echo "| op | share |"
echo "|---|---|"
row() { name=$1; shift; v=$(share "$@"); echo "| $name | ${v:-0}% |"; }
row "conv forward" nn_conv2d
row "conv data gradient" nn_conv_transpose_direct col2im_add
row "conv weight gradient" batch_weight_grad weight_grad
row "batch norm forward (with a fused ReLU)" nn_batch_norm nn_batch_norm_relu
row "batch norm backward" bn_bw
row "ReLU forward" nn_relu
row "ReLU backward" unary_bw
row "max pool forward" nn_max_pool2d
row "max pool backward" pool_bw
row "gradient copies (accumulate)" nn_accum_grad
row "optimizer step" nn_optim_step
w=$(selfshare worker); p=$(selfshare nn_parallel_for)
echo "| thread pool waiting (worker idle + caller waiting) | ${w:-0}% + ${p:-0}% |"
rm -rf "$out"
