#!/bin/sh
# One entry point for a fresh Debian 12 machine:
#   tools/setup.sh demo   install what is needed, build, run the main demo
#   tools/setup.sh test   install what is needed, build, run every test (also under ASan/UBSan)
#   tools/setup.sh bench  the above plus PyTorch, then the side-by-side benchmarks
set -eu
cd "$(dirname "$0")/.."
what=${1:-demo}

SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"

PKGS="build-essential meson ninja-build pkg-config libopenblas-dev libjson-glib-dev libglib2.0-dev libcairo2-dev"
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

build() { # dir, extra meson options...
  dir=$1; shift
  [ -f "$dir/build.ninja" ] || meson setup "$dir" "$@" >/dev/null
  ninja -C "$dir"
}

case "$what" in
demo)
  build build
  ./build/tools/e2e demo
  ;;
test)
  build build -Dbench=false
  (cd build && meson test --print-errorlogs --num-processes 2) || true
  build build-asan -Db_sanitize=address,undefined -Dbuildtype=debugoptimized -Dbench=false
  (cd build-asan && UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1 meson test --print-errorlogs --num-processes 2 --suite nncore) || true
  # one closing line over both runs; non-zero exit when anything failed
  exec python3 tools/test_summary.py build/meson-logs/testlog.json build-asan/meson-logs/testlog.json
  ;;
bench)
  build build
  bench/run.sh
  ;;
*)
  echo "usage: $0 demo|test|bench" >&2
  exit 2
  ;;
esac
