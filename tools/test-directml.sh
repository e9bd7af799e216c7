#!/usr/bin/env bash
# The DirectML backend, run for real here: the C++ suites cross-compiled for
# Windows with mingw-w64 and run under Wine 8 (d3d12.dll is vkd3d on Vulkan)
# on Mesa 25's lavapipe, with Microsoft's DirectML.dll 1.12.1
# (tools/directml-stack.sh fetches those into build/directml-stack).
#
#   bash tools/test-directml.sh [BUILD_DIR]
#
# On the DirectML device (directml:0) and the CPU beside it: the whole
# conformance and probe suites, the registry and pool suites, and the
# DirectML suite (GEMM against a reference, loader and error paths); then
# the conformance and DirectML suites again with zero-copy buffers off, so
# that the staged path (DEFAULT heap, upload and readback rings) runs too.
# A machine without Wine or mingw-w64 skips, saying what is missing.
set -euo pipefail
cd "$(dirname "$0")/.."
build=${1:-build/mingw}
start=$SECONDS

# shellcheck source=tools/directml-stack.sh
source tools/directml-stack.sh
if ! dml_stack_prepare build/directml-stack; then
  echo "DirectML under Wine: cannot prepare the stack: $DML_STACK_REASON" >&2
  exit 1
fi
if [[ $DML_STACK_OK != 1 ]]; then
  echo "DirectML under Wine: SKIPPED: $DML_STACK_REASON"
  exit 0
fi
echo "-- stack ready ($((SECONDS - start)) s)"

cmake -S . -B "$build" -G Ninja -DCMAKE_TOOLCHAIN_FILE="$PWD/tools/mingw-w64-toolchain.cmake" \
  -DCMAKE_BUILD_TYPE=Release -DCMAKE_CXX_FLAGS_RELEASE="-O1 -DNDEBUG" \
  -DEXOGPU_WERROR=ON -DEXOGPU_BUILD_TESTS=ON \
  -DEXOGPU_BUILD_PYTHON=OFF -DEXOGPU_WITH_VULKAN=OFF -DEXOGPU_METAL=OFF \
  -DEXOGPU_GTEST_SOURCE_DIR=/usr/src/googletest >/dev/null
cmake --build "$build" -j "$(nproc)" --target exogpu_tests
echo "-- built ($((SECONDS - start)) s)"

winpath() { printf 'Z:%s' "$(realpath "$1" | tr / '\\')"; }
export EXOGPU_BACKENDS=cpu,directml
EXOGPU_DIRECTML_LIBRARY=$(winpath "$DML_STACK_DIRECTML_DLL")
export EXOGPU_DIRECTML_LIBRARY
# Compiled shaders (lavapipe's, of vkd3d's SPIR-V) are kept between runs.
export MESA_SHADER_CACHE_DIR="$PWD/build/directml-stack/shader-cache"

run() {
  # Wine needs an X server for its Vulkan surface; without one D3D12 reports
  # DXGI_ERROR_UNSUPPORTED. The tests run from their folder, where the stand-in
  # too-old DirectML.dll lies. Wine's notes about 32-bit support are dropped.
  local log rc=0
  log=$(mktemp)
  (cd "$build/tests/cpp" && xvfb-run -a wine exogpu_tests.exe "$@") >"$log" 2>&1 || rc=$?
  grep -v -e '^X connection to' -e 'wine32' -e 'multiarch' -e 'dpkg --add-architecture' \
    -e 'apt-get update' "$log" || true
  rm -f "$log"
  return "$rc"
}

run --gtest_brief=1
echo "-- zero-copy buffers off: DEFAULT heap, staging rings"
EXOGPU_DIRECTML_HOST_VISIBLE=0 run --gtest_brief=1 \
  --gtest_filter='EveryDevice/*directml*:Types/*:DirectmlGemm*:DirectmlDevice.*:DirectmlEvents.*'
wineserver -k 2>/dev/null || true
echo "-- DirectML under Wine: $((SECONDS - start)) s"
