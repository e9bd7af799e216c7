#!/usr/bin/env bash
# Developer build: the C++ library, tests and benchmarks in build/dev, with
# exogpu/_core copied next to the Python sources so PYTHONPATH=python works.
#   tools/dev-build.sh [extra cmake args]   then   PYTHONPATH=python pytest
set -euo pipefail
cd "$(dirname "$0")/.."
cmake -S . -B build/dev -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo \
  -DEXOGPU_BUILD_PYTHON=ON -DEXOGPU_BUILD_TESTS=ON -DEXOGPU_BUILD_BENCHMARKS=ON "$@"
cmake --build build/dev
