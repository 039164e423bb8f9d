#!/bin/sh
# One entry point for a fresh Debian 12 machine:
#   tools/setup.sh demo   install what is needed, build, run the main demo (person detection
#                         on opencv-doc's vtest.avi: annotated video, JSON lines, summary)
#   tools/setup.sh test   install what is needed, build, run every test: plain, nncore again
#                         under ASan/UBSan, the element tests under valgrind
#   tools/setup.sh bench  the above plus PyTorch, then the side-by-side benchmarks
set -eu
cd "$(dirname "$0")/.."
what=${1:-demo}

SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"

PKGS="build-essential meson ninja-build pkg-config python3 libopenblas-dev libjson-glib-dev libglib2.0-dev
  libcairo2-dev libpango1.0-dev libjpeg-dev libavcodec-dev libavutil-dev libswscale-dev
  libgstreamer1.0-dev libgstreamer-plugins-base1.0-dev libprotobuf-c-dev protobuf-c-compiler libonnx-dev
  gstreamer1.0-tools gstreamer1.0-plugins-base gstreamer1.0-plugins-good gstreamer1.0-libav opencv-doc"
[ "$what" = test ] && PKGS="$PKGS valgrind libonnx-testdata"
[ "$what" = bench ] && PKGS="$PKGS python3-torch python3-numpy"
missing=""
for p in $PKGS; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing="$missing $p"
done
if [ -n "$missing" ]; then
  echo "== installing:$missing"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq $missing >/dev/null
fi

build() { # dir, meson options (applied to a build folder made earlier with other ones, too)...
  dir=$1; shift
  if [ -f "$dir/build.ninja" ]; then
    [ $# -eq 0 ] || meson configure "$dir" "$@" >/dev/null
  else
    meson setup "$dir" "$@" >/dev/null
  fi
  ninja -C "$dir"
}

case "$what" in
demo)
  build build
  GST_PLUGIN_PATH="$PWD/build/gst" ./build/pipelines/e2e-detect-demo
  ;;
test)
  build build -Dbench=false
  (cd build && meson test --print-errorlogs --num-processes 2 --suite nncore --suite gst) || true
  build build-asan -Db_sanitize=address,undefined -Dbuildtype=debugoptimized -Dbench=false
  (cd build-asan && UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1 meson test --print-errorlogs --num-processes 2 --suite nncore) || true
  build build-vg -Dnative=false -Dbuildtype=debugoptimized -Dbench=false -Dcuda=disabled
  (cd build-vg && meson test --print-errorlogs --suite valgrind) || true
  # one closing line over all runs; non-zero exit when anything failed
  exec python3 tools/test_summary.py build/meson-logs/testlog.json build-asan/meson-logs/testlog.json \
    build-vg/meson-logs/testlog.json
  ;;
bench)
  build build -Dbench=true
  bench/run.sh
  ;;
*)
  echo "usage: $0 demo|test|bench" >&2
  exit 2
  ;;
esac
