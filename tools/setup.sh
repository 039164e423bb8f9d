#!/bin/sh
# One entry point for a fresh Debian 12 machine:
#   tools/setup.sh demo   install what is needed, build, run the main demo (person detection
#                         on opencv-doc's vtest.avi: annotated video, JSON lines, summary)
#   tools/setup.sh test   install what is needed, build, run every test: plain, nncore again
#                         under ASan/UBSan (with e2etrain's element test), the other element tests
#                         under valgrind, the threaded ones under TSan, and a smoke run of every fuzzer
#   tools/setup.sh bench  the above plus PyTorch, then the side-by-side benchmarks
#   tools/setup.sh speech the speech recipe's voices and recogniser (espeak-ng, mbrola, flite, festival,
#                         pico, pocketsphinx; enables Debian's contrib and non-free for mbrola and pico)
set -eu
cd "$(dirname "$0")/.."
what=${1:-demo}

SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"

PKGS="build-essential meson ninja-build pkg-config python3 libopenblas-dev libjson-glib-dev libglib2.0-dev
  libcairo2-dev libpango1.0-dev libjpeg-dev libavcodec-dev libavutil-dev libswscale-dev
  libkissfft-dev libsndfile1-dev libsamplerate0-dev
  libgstreamer1.0-dev libgstreamer-plugins-base1.0-dev libprotobuf-c-dev protobuf-c-compiler libonnx-dev
  gstreamer1.0-tools gstreamer1.0-plugins-base gstreamer1.0-plugins-good gstreamer1.0-libav opencv-doc"
[ "$what" = test ] && PKGS="$PKGS valgrind libonnx-testdata clang libclang-rt-14-dev"
[ "$what" = bench ] && PKGS="$PKGS python3-torch python3-numpy"
if [ "$what" = speech ]; then
  # mbrola (contrib) and its voices and pico (non-free): the recipe's licences are in models/asr/README.md
  if ! grep -rqs "non-free" /etc/apt/sources.list /etc/apt/sources.list.d/; then
    printf 'Types: deb\nURIs: http://deb.debian.org/debian\nSuites: bookworm bookworm-updates\nComponents: contrib non-free\nSigned-By: /usr/share/keyrings/debian-archive-keyring.gpg\n' |
      $SUDO tee /etc/apt/sources.list.d/gst-e2e-speech.sources >/dev/null
  fi
  PKGS="$PKGS espeak-ng flite festival festvox-kallpc16k festvox-kdlpc16k festvox-don festvox-us-slt-hts
    libttspico-utils mbrola mbrola-us1 mbrola-us2 mbrola-us3 mbrola-en1 mbrola-af1 mbrola-nl2 mbrola-fr1 mbrola-fr4
    mbrola-de1 mbrola-de2 mbrola-de3 mbrola-de4 mbrola-de5 mbrola-de6 mbrola-gr2 mbrola-hu1 mbrola-pl1 mbrola-ro1
    mbrola-sw1 mbrola-sw2 pocketsphinx pocketsphinx-en-us pocketsphinx-testdata gstreamer1.0-pocketsphinx sox"
fi
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
  (cd build-asan && UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1 meson test --print-errorlogs --num-processes 2 --suite nncore \
    --suite gst-asan) || true
  build build-vg -Dnative=false -Dbuildtype=debugoptimized -Dbench=false -Dcuda=disabled
  (cd build-vg && meson test --print-errorlogs --suite valgrind) || true
  # the threads of nncore and the models under ThreadSanitizer (OpenBLAS's own threads are not instrumented)
  tsan="tests/test_scope tests/test_models tests/test_codec tests/test_codec_video"
  [ -f build-tsan/build.ninja ] || meson setup build-tsan -Db_sanitize=thread -Dbuildtype=debugoptimized -Dbench=false \
    -Dcuda=disabled -Dgst=disabled >/dev/null
  ninja -C build-tsan $tsan
  (cd build-tsan && OPENBLAS_NUM_THREADS=1 TSAN_OPTIONS=halt_on_error=1:exitcode=66 \
    meson test --no-rebuild --print-errorlogs --suite tsan) || true
  # a smoke run of every libFuzzer harness (15 s each; tests/fuzz/README.md for the long runs)
  [ -f build-fuzz/build.ninja ] || CC=clang meson setup build-fuzz -Dfuzz=true -Db_sanitize=address,undefined \
    -Db_lundef=false -Dbuildtype=debugoptimized -Dbench=false -Dcuda=disabled >/dev/null
  ninja -C build-fuzz $(cd build-fuzz && ninja -t targets all | sed -n 's|^\(tests/fuzz/fuzz-[a-z_]*\): .*|\1|p' |
    grep -v -e replay -e make-seeds) gst/libgste2e.so
  (cd build-fuzz && meson test --no-rebuild --print-errorlogs --num-processes 2 --suite fuzz) || true
  # one closing line over all runs; non-zero exit when anything failed
  exec python3 tools/test_summary.py build/meson-logs/testlog.json build-asan/meson-logs/testlog.json \
    build-vg/meson-logs/testlog.json build-tsan/meson-logs/testlog.json build-fuzz/meson-logs/testlog.json
  ;;
bench)
  build build -Dbench=true
  bench/run.sh
  ;;
speech)
  build build
  echo "speech packages installed; the recipe: models/asr/train.sh data, then models/asr/train.sh stage"
  ;;
*)
  echo "usage: $0 demo|test|bench|speech" >&2
  exit 2
  ;;
esac
