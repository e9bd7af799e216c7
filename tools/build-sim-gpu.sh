#!/usr/bin/env bash
# Builds the simulated GPU machine (tests/cpp/sim_gpu) as plain shared
# libraries for Python to load, without the sanitizers of the C++ test build:
#   tools/build-sim-gpu.sh OUT_DIR   ->  OUT_DIR/libsim_cuda.so, OUT_DIR/libsim_hip.so
set -euo pipefail
cd "$(dirname "$0")/.."
out=${1:?usage: tools/build-sim-gpu.sh OUT_DIR}
mkdir -p "$out"
pids=()
for api in cuda hip; do
  "${CXX:-g++}" -std=c++20 -O2 -Wall -Wextra -fPIC -shared -pthread -Icpp/src \
    tests/cpp/sim_gpu/sim_$api.cpp tests/cpp/sim_gpu/sim_gpu.cpp -o "$out/libsim_$api.so" &
  pids+=($!)
done
for pid in "${pids[@]}"; do wait "$pid"; done
