"""Prints the CUDA backend's figures, each beside its reference from the same run.

* Host<->device copy rates at 256 MiB, page-locked (exogpu HostBuffer) and
  pageable (numpy), timed with device events on one stream after warm-up;
  median of samples, bytes counted once (nvbandwidth's method).
* Pooled allocate+free latency through Python: exogpu's pool vs CuPy's
  MemoryPool (skipped, and said so, when CuPy is not installed).

    python benchmarks/cuda_report.py [--device cuda:0] [--samples 20]
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable

import numpy as np

import exogpu

MiB = 1 << 20


def copy_rate_gbps(
    dev: exogpu.Device, host: np.ndarray, direction: str, warmup: int, samples: int
) -> float:
    """Median GB/s (1e9 bytes/s) of one copy of host.nbytes, timed with events."""
    buf = dev.allocate(host.nbytes)
    stream = dev.stream()
    rates = []
    for i in range(warmup + samples):
        start = stream.record()
        if direction == "h2d":
            buf.copy_from(host, stream=stream)
        else:
            buf.copy_to(host, stream=stream)
        end = stream.record()
        stream.synchronize()
        if i >= warmup:
            rates.append(host.nbytes / (start.elapsed_ms(end) / 1e3) / 1e9)
    buf.free()
    return statistics.median(rates)


def per_call_ns(fn: Callable[[], object], calls: int, repeats: int) -> float:
    """Median over `repeats` of the mean time per call of `calls` calls."""
    fn()  # warm the pool's size class
    samples = []
    for _ in range(repeats):
        t0 = time.perf_counter_ns()
        for _ in range(calls):
            fn()
        samples.append((time.perf_counter_ns() - t0) / calls)
    return statistics.median(samples)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--device", default="cuda:0")
    parser.add_argument("--samples", type=int, default=20)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--mib", type=int, default=256)
    args = parser.parse_args()
    dev = exogpu.device(args.device)
    n = args.mib * MiB
    print(f"device: {dev.id} {dev.info.name}")

    pinned_buffer = dev.allocate_host(n)
    pinned = pinned_buffer.view()
    pinned[:] = 1
    pageable = np.ones(n, np.uint8)
    print(
        f"copies of {args.mib} MiB, event-timed, median of {args.samples} "
        f"after {args.warmup} warm-up (HostBuffer page-locked: {pinned_buffer.page_locked}):"
    )
    for direction in ("h2d", "d2h"):
        locked = copy_rate_gbps(dev, pinned, direction, args.warmup, args.samples)
        paged = copy_rate_gbps(dev, pageable, direction, args.warmup, args.samples)
        print(
            f"  {direction}: page-locked {locked:6.2f} GB/s   pageable {paged:6.2f} GB/s   "
            f"ratio {locked / paged:5.2f}x"
        )

    calls, repeats = 2000, 15
    ours = per_call_ns(lambda: dev.allocate(MiB).free(), calls, repeats)
    print(f"pooled allocate+free of 1 MiB through Python (median of {repeats} x {calls} calls):")
    print(f"  exogpu pool      {ours:8.0f} ns")
    try:
        import cupy
    except ImportError:
        print("  cupy.MemoryPool  not measured: CuPy is not installed here")
        return
    with cupy.cuda.Device(dev.info.index):
        pool = cupy.cuda.MemoryPool()
        theirs = per_call_ns(lambda: pool.malloc(MiB), calls, repeats)  # freed on drop
    print(f"  cupy.MemoryPool  {theirs:8.0f} ns   exogpu/cupy {ours / theirs:5.2f}x")


if __name__ == "__main__":
    main()
