#!/usr/bin/env bash
# The whole test suite: C++ suites under AddressSanitizer and
# UndefinedBehaviorSanitizer, then the package built and installed as a user
# would get it, then pytest, ruff and mypy.
set -euo pipefail
cd "$(dirname "$0")/.."
jobs=$(nproc)

echo "== C++ suites (ASan + UBSan)"
cmake -S . -B build/sanitize -G Ninja -DCMAKE_BUILD_TYPE=Debug \
  -DEXOGPU_SANITIZE=ON -DEXOGPU_WERROR=ON -DEXOGPU_BUILD_TESTS=ON -DEXOGPU_BUILD_PYTHON=OFF >/dev/null
cmake --build build/sanitize -j "$jobs"
# Every Vulkan call runs under the Khronos validation layer; any message fails.
export EXOGPU_VULKAN_VALIDATION=1
export ASAN_OPTIONS="${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=1}"
export LSAN_OPTIONS="suppressions=$PWD/tests/cpp/lsan.supp:print_suppressions=0"
export UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1"
ctest --test-dir build/sanitize --output-on-failure -j "$jobs"

# The DirectML backend is Windows code: cross-compiled with mingw-w64 and run
# under Wine on lavapipe (skipped, saying why, where Wine is missing).
echo "== DirectML backend under Wine"
bash tools/test-directml.sh

# One wheel, checked, then installed: the package exactly as a user gets it.
echo "== Wheel (manylinux, no vendor libraries linked)"
bash tools/check-wheel.sh

echo "== Python package"
python3 -m pip install -q --force-reinstall --no-deps build/wheel-check/exogpu-*.whl

echo "== Lint and types"
python3 -m ruff check python tests benchmarks
python3 -m mypy -p exogpu

echo "== pytest"
python3 -m pytest tests/python -q

# The same suite with two simulated CUDA, two simulated HIP and two simulated
# Metal devices beside the real ones, so the Python layer meets GPUs here too
# (tests/cpp/sim_gpu, tests/cpp/sim_metal); modules that never touch a device
# (tests/python/conftest.py lists them) ran above and are left out. The package is reinstalled with
# the Metal backend for it (Linux wheels leave it out: it needs GNUstep).
echo "== pytest beside simulated CUDA, HIP and Metal devices"
bash tools/build-sim-gpu.sh build/sim-gpu
bash tools/build-sim-metal.sh build/sim-metal
python3 -m pip install -q --no-build-isolation -C cmake.define.EXOGPU_METAL=ON .
EXOGPU_CUDA_LIBRARY="$PWD/build/sim-gpu/libsim_cuda.so" \
EXOGPU_HIP_LIBRARY="$PWD/build/sim-gpu/libsim_hip.so" \
EXOGPU_METAL_LIBRARY="$PWD/build/sim-metal/libsim_metal.so" \
EXOGPU_TEST_DEVICES_ONLY=1 \
  python3 -m pytest tests/python -q
