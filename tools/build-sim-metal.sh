#!/usr/bin/env bash
# Builds the simulated Metal (tests/cpp/sim_metal) as a plain shared library
# for Python to load, without the sanitizers of the C++ test build:
#   tools/build-sim-metal.sh OUT_DIR   ->  OUT_DIR/libsim_metal.so
# Needs clang, GNUstep-base, GCC's libobjc and libBlocksRuntime
# (Debian: clang libgnustep-base-dev libobjc-12-dev libblocksruntime-dev).
set -euo pipefail
cd "$(dirname "$0")/.."
out=${1:?usage: tools/build-sim-metal.sh OUT_DIR}
mkdir -p "$out"
gcc_dir=$(dirname "$(gcc -print-libgcc-file-name)")   # GCC's objc/objc.h and libobjc.so
"${OBJCXX:-clang++}" -x objective-c++ -std=c++20 -O2 -Wall -Wextra -fPIC -shared -pthread \
  -fobjc-runtime=gcc -fblocks -fconstant-string-class=NSConstantString \
  -DGNUSTEP -DGNUSTEP_BASE_LIBRARY=1 -DGNU_RUNTIME=1 \
  -isystem tests/cpp/sim_metal/gnustep -isystem "$gcc_dir/include" -isystem /usr/include/GNUstep \
  -Itests/cpp/sim_metal tests/cpp/sim_metal/sim_metal.mm -o "$out/libsim_metal.so" \
  -L"$gcc_dir" -lgnustep-base -lobjc -lBlocksRuntime
