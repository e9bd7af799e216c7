"""Measures the device profile (as `exogpu profile` writes it) and sets each
figure beside a reference measured in the same run:

- FLOP/s of the FMA kernel against numpy's float32 matrix product (BLAS,
  every core; 2 n^3 FLOPs), the best rate a library reaches on the host;
- memory bandwidth (2 x the device-to-device copy rate) and the h2d/d2h copy
  rates against numpy.copyto of the same number of bytes (bytes counted once,
  so the copy rate compares with copyto directly).

    python benchmarks/profile_report.py [--quick] [--out profile.json]

Prints the profile JSON (what `exogpu profile --json` prints) and a table.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from pathlib import Path

import numpy as np

from exogpu import profile


def numpy_copy_rate(nbytes: int, repeats: int = 7) -> float:
    src = np.full(nbytes, 1, dtype=np.uint8)
    dst = np.zeros(nbytes, dtype=np.uint8)
    np.copyto(dst, src)
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        np.copyto(dst, src)
        times.append(time.perf_counter() - t0)
    return nbytes / statistics.median(times)


def numpy_matmul_flops(n: int = 1024, repeats: int = 7) -> float:
    a = np.random.default_rng(0).random((n, n), dtype=np.float32)
    b = np.random.default_rng(1).random((n, n), dtype=np.float32)
    a @ b
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        a @ b
        times.append(time.perf_counter() - t0)
    return 2 * n**3 / statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--out", type=Path, help="also write the profile here")
    args = parser.parse_args()

    load_before = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    matmul_before = numpy_matmul_flops()
    result = profile.measure_profile(quick=args.quick)
    matmul = max(matmul_before, numpy_matmul_flops())
    if args.out is not None:
        profile.save_profile(result, args.out)
    print(json.dumps(result.to_dict(), indent=2))

    print()
    load_after = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(f"node {result.node}, {'quick' if result.quick else 'full'} profile, "
          f"{os.cpu_count()} CPUs, load average {load_before:.1f} -> {load_after:.1f}; "
          f"numpy float32 matmul 1024^3: {matmul / 1e9:.1f} GFLOP/s")
    print("| device | GFLOP/s | x numpy matmul | memory GB/s | d2d copy GB/s | x copyto "
          "| h2d GB/s | x copyto | d2h GB/s | x copyto |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for d in result.details:
        if "error" in d:
            print(f"| {d['id']} | error: {d['error']} |")
            continue
        copy_ref = numpy_copy_rate(d["d2d_bytes"])
        transfer_ref = numpy_copy_rate(d["transfer_bytes"])
        name = d["id"] + (f" (alias of {d['alias_of']})" if d["alias_of"] else "")
        print(
            f"| {name} | {d['flops'] / 1e9:.1f} | {d['flops'] / matmul:.2f} "
            f"| {d['memory_bandwidth'] / 1e9:.2f} | {d['d2d_bandwidth'] / 1e9:.2f} "
            f"| {d['d2d_bandwidth'] / copy_ref:.2f} "
            f"| {d['h2d_bandwidth'] / 1e9:.2f} | {d['h2d_bandwidth'] / transfer_ref:.2f} "
            f"| {d['d2h_bandwidth'] / 1e9:.2f} | {d['d2h_bandwidth'] / transfer_ref:.2f} |"
        )


if __name__ == "__main__":
    main()
