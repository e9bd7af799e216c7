#!/usr/bin/env bash
# The DirectML backend's figures under Wine here (or any Windows build):
# D3D12 host-to-device and device-to-host GB/s at 64 MiB beside memcpy, and
# DirectML GEMM GFLOP/s at 1024^3 (float32, float16) beside the CPU backend's
# FMA figure, all measured in one process.
#
#   bash benchmarks/directml_report.sh [--samples N] [--warmup N] [--mib N] [--gemm N]
set -euo pipefail
cd "$(dirname "$0")/.."
build=build/mingw
source tools/directml-stack.sh
dml_stack_prepare build/directml-stack || { echo "$DML_STACK_REASON" >&2; exit 1; }
[[ $DML_STACK_OK == 1 ]] || { echo "cannot run: $DML_STACK_REASON" >&2; exit 1; }
cmake -S . -B "$build" -G Ninja -DCMAKE_TOOLCHAIN_FILE="$PWD/tools/mingw-w64-toolchain.cmake" \
  -DCMAKE_BUILD_TYPE=Release -DCMAKE_CXX_FLAGS_RELEASE="-O1 -DNDEBUG" -DEXOGPU_BUILD_BENCHMARKS=ON -DEXOGPU_BUILD_PYTHON=OFF \
  -DEXOGPU_WITH_VULKAN=OFF -DEXOGPU_METAL=OFF >/dev/null
cmake --build "$build" -j "$(nproc)" --target exogpu-directml-report >/dev/null
EXOGPU_DIRECTML_LIBRARY="Z:$(realpath "$DML_STACK_DIRECTML_DLL" | tr / '\\')"
export EXOGPU_DIRECTML_LIBRARY EXOGPU_BACKENDS=cpu MESA_SHADER_CACHE_DIR="$PWD/build/directml-stack/shader-cache"
xvfb-run -a wine "$build/benchmarks/native/exogpu-directml-report.exe" "$@" 2>&1 |
  grep -v -e '^X connection to' -e wine32 -e multiarch -e 'dpkg --add-architecture' -e 'apt-get update'
wineserver -k 2>/dev/null || true
