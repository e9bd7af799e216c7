"""Prints the foundation's figures: pooled allocate+free vs numpy.empty, and
CPU host<->device copy rates vs numpy.copyto, measured side by side.

    python benchmarks/core_report.py [--device cpu:0] [--repeats 31]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
import exogpu
from benchmarks.ratio import median_seconds_pair

MiB = 1 << 20


def per_call_ns(fn: object, calls: int) -> float:
    t0 = time.perf_counter_ns()
    for _ in range(calls):
        fn()  # type: ignore[operator]
    return (time.perf_counter_ns() - t0) / calls


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--device", default="cpu:0")
    parser.add_argument("--repeats", type=int, default=31)
    args = parser.parse_args()
    dev = exogpu.device(args.device)

    # Allocation: many calls per sample so the clock's resolution does not matter.
    calls = 2000
    alloc = lambda: dev.allocate(MiB).free()  # noqa: E731
    empty = lambda: np.empty(MiB, np.uint8)  # noqa: E731
    ours, theirs = median_seconds_pair(
        lambda: per_call_ns(alloc, calls), lambda: per_call_ns(empty, calls), args.repeats
    )
    ours_ns = ours / calls * 1e9
    theirs_ns = theirs / calls * 1e9
    print(
        f"pooled allocate+free 1 MiB on {dev.id}: {ours_ns:.0f} ns; numpy.empty(1 MiB): "
        f"{theirs_ns:.0f} ns; ratio (numpy time / ours) {theirs_ns / ours_ns:.2f}"
    )

    for nbytes in (4 << 10, 64 * MiB):
        host = np.ones(nbytes, np.uint8)
        out = np.empty(nbytes, np.uint8)
        buf = dev.allocate(nbytes)
        buf.copy_from(host)
        for name, op in (
            ("host-to-device", lambda: buf.copy_from(host)),
            ("device-to-host", lambda: buf.copy_to(out)),
        ):
            t_ours, t_np = median_seconds_pair(op, lambda: np.copyto(out, host), args.repeats)
            print(
                f"{name} {nbytes // 1024} KiB on {dev.id}: {nbytes / t_ours / 1e9:.2f} GB/s, "
                f"numpy.copyto {nbytes / t_np / 1e9:.2f} GB/s, ratio {t_np / t_ours:.3f}"
            )


if __name__ == "__main__":
    main()
