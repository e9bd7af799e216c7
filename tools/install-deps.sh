#!/usr/bin/env bash
# Installs what building and testing exogpu needs on a fresh Debian machine:
# compilers and test libraries, the real Vulkan (lavapipe) and HIP runtimes
# and rocm-smi library, the GNUstep toolchain the simulated Metal builds on,
# network tools for the probe tests, Wine and mingw-w64 for the DirectML
# backend's Windows build, and the Python build/test packages.
set -euo pipefail
SUDO=""
[[ $(id -u) -eq 0 ]] || SUDO="sudo"

APT_PACKAGES=(
  g++ git
  libgtest-dev libgmock-dev libbenchmark-dev
  libvulkan-dev mesa-vulkan-drivers glslc vulkan-validationlayers vulkan-tools
  libamdhip64-dev librocm-smi64-1
  clang libgnustep-base-dev libobjc-12-dev libblocksruntime-dev
  iperf3 iproute2 curl openssl
  # The DirectML backend's Windows build under Wine (tools/test-directml.sh).
  wine wine64 xvfb xauth unzip g++-mingw-w64-x86-64
)
$SUDO apt-get update -qq
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${APT_PACKAGES[@]}" >/dev/null

python3 -m pip install -q --upgrade pip
python3 -m pip install -q "scikit-build-core>=0.10" "nanobind>=2.4" cmake ninja build auditwheel asv
# The test extras (pytest, hypothesis, highspy, mypy, ruff, matplotlib) and the
# runtime dependencies, without building exogpu itself yet.
python3 - <<'PY' | xargs python3 -m pip install -q
import tomllib
project = tomllib.load(open("pyproject.toml", "rb"))["project"]
print(" ".join(f'"{d}"' for d in project["dependencies"] + project["optional-dependencies"]["test"]))
PY
# Ray for the Ray lab test (tests/python/test_ray_cluster.py); Python 3.11 wheel.
python3 -m pip install -q "ray==2.60.0"
