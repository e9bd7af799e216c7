#!/usr/bin/env bash
# What only a machine with an NVIDIA GPU can check, in one run:
#   1. build; exogpu backends/devices as a user sees them
#   2. the C++ suites (conformance on cuda:0 among them) and pytest
#      (conformance, interop, vendor tests on every CUDA device)
#   3. CuPy interop (cupy.from_dlpack zero-copy) when CuPy is installed
#   4. compute-sanitizer --tool memcheck over the C++ suites on cuda:0
#   5. NVML readings (exogpu.monitoring) against nvidia-smi
#   6. the figures: benchmarks/cuda_report.py
# Exits non-zero on the first failed check; prints every figure it takes.
#   tools/gpu-check.sh [device]      (default cuda:0)
set -euo pipefail
cd "$(dirname "$0")/.."
device="${1:-cuda:0}"
export PYTHONPATH="$PWD/python"

echo "== GPU"
nvidia-smi --query-gpu=name,driver_version,pci.bus_id,uuid --format=csv,noheader

echo "== build"
tools/dev-build.sh >/dev/null
python3 -m exogpu backends
python3 -m exogpu devices
python3 - "$device" <<'PY'
import sys, exogpu
info = exogpu.device(sys.argv[1]).info
assert info.backend == "cuda", f"{sys.argv[1]} is not a CUDA device: {info}"
print("identity:", info.uuid, info.pci_bus_id, "aliases:", list(info.aliases))
PY

echo "== C++ suites (conformance on ${device} included)"
ctest --test-dir build/dev --output-on-failure
param="${device/:/_}"
build/dev/tests/cpp/exogpu_tests --gtest_filter="*${param}*" --gtest_brief=1

echo "== pytest (conformance, interop, CUDA vendor tests)"
python3 -m pytest -q tests/python -rs

echo "== CuPy interop"
if python3 -c "import cupy" 2>/dev/null; then
  python3 -m pytest -q tests/python/test_backends_vendor.py -k dlpack -rs
else
  echo "NOT CHECKED: CuPy is not installed here (pip install cupy-cuda12x, then rerun)"
fi

echo "== compute-sanitizer memcheck on ${device}"
if command -v compute-sanitizer >/dev/null; then
  compute-sanitizer --tool memcheck --error-exitcode 1 --leak-check full \
    build/dev/tests/cpp/exogpu_tests --gtest_filter="*${param}*" --gtest_brief=1
  compute-sanitizer --tool memcheck --error-exitcode 1 \
    build/dev/tests/cpp/exogpu_cuda_hip_tests --gtest_brief=1
else
  echo "NOT CHECKED: compute-sanitizer is not installed (it comes with the CUDA toolkit)"
  exit 1
fi

echo "== NVML vs nvidia-smi"
python3 - "$device" <<'PY'
import subprocess, sys
import exogpu
from exogpu.monitoring import Monitor, normalise_pci_bus_id

info = exogpu.device(sys.argv[1]).info
fields = "pci.bus_id,temperature.gpu,power.draw,memory.used,memory.total,clocks.sm"
smi = subprocess.run(
    ["nvidia-smi", f"--query-gpu={fields}", "--format=csv,noheader,nounits"],
    capture_output=True, text=True, check=True,
).stdout.strip().splitlines()
rows = {}
for line in smi:
    bus, *values = [v.strip() for v in line.split(",")]
    rows[normalise_pci_bus_id(bus)] = values
values = rows[info.pci_bus_id]
temp, power, used_mib, total_mib, sm = (float(v) for v in values)
(ours,) = [d for d in Monitor().read() if d.pci_bus_id == info.pci_bus_id]

def get(name):
    r = ours.get(name)
    assert r is not None, f"NVML gave no {name}"
    return r.value

checks = [
    ("temperature degC", get("temperature"), temp, 2.0),
    ("power W", get("power"), power, max(15.0, 0.1 * power)),
    ("memory used MiB", get("memory_used") / 2**20, used_mib, 64.0),
    ("memory total MiB", get("memory_total") / 2**20, total_mib, 1.0),
    ("SM clock MHz", get("clock_sm"), sm, max(50.0, 0.15 * sm)),
]
bad = 0
for name, mine, theirs, tolerance in checks:
    ok = abs(mine - theirs) <= tolerance
    bad += not ok
    print(f"  {name:18s} exogpu {mine:10.1f}  nvidia-smi {theirs:10.1f}  {'ok' if ok else 'MISMATCH'}")
sys.exit(1 if bad else 0)
PY

echo "== figures"
python3 benchmarks/cuda_report.py --device "$device"
echo "== all GPU checks passed"
