"""Prints the Vulkan backend's transfer figures: host-to-device, device-to-host
and device-to-device GB/s at 64 MiB as ratios to numpy.copyto of the same size
measured interleaved in the same run, and the time of a 4 KiB round trip
(host -> device -> host). Both transfer paths are reported: device memory
mapped into the host (direct copies, the default where memory is
host-visible) and staged through the ring of mapped buffers
(EXOGPU_VULKAN_HOST_MAPPED=0).

    python benchmarks/vulkan_report.py [--device vulkan:0] [--repeats 21]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
import exogpu
from benchmarks.ratio import median_seconds_pair

MiB = 1 << 20


def report(device_id: str, repeats: int, nbytes: int) -> None:
    dev = exogpu.device(device_id)
    host = np.random.default_rng(0).integers(0, 256, nbytes, dtype=np.uint8)
    out = np.empty(nbytes, np.uint8)
    a = dev.allocate(nbytes)
    b = dev.allocate(nbytes)
    a.copy_from(host)
    path = "mapped" if a.host_addressable else "staged"
    print(f"{dev.id} ({dev.info.name}), {path} device memory, {nbytes // MiB} MiB:")
    for name, op in (
        ("host-to-device", lambda: a.copy_from(host)),
        ("device-to-host", lambda: a.copy_to(out)),
        ("device-to-device", lambda: exogpu.copy(b, a)),
    ):
        t_ours, t_np = median_seconds_pair(op, lambda: np.copyto(out, host), repeats)
        print(
            f"  {name:17s} {nbytes / t_ours / 1e9:6.2f} GB/s   numpy.copyto "
            f"{nbytes / t_np / 1e9:6.2f} GB/s   ratio {t_np / t_ours:.2f}"
        )
    b.copy_to(out)
    assert np.array_equal(out, host), "device-to-device copy corrupted the data"

    small = np.arange(4096, dtype=np.uint8)
    back = np.empty_like(small)
    buf = dev.allocate(small.nbytes)
    samples = []
    for i in range(repeats * 20 + 50):
        t0 = time.perf_counter()
        buf.copy_from(small)
        buf.copy_to(back)
        if i >= 50:  # warm-up
            samples.append(time.perf_counter() - t0)
    assert np.array_equal(back, small)
    print(f"  4 KiB round trip  {statistics.median(samples) * 1e6:6.1f} us (median)")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--device", default="vulkan:0")
    parser.add_argument("--repeats", type=int, default=21)
    parser.add_argument("--mib", type=int, default=64)
    parser.add_argument("--one-path", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    report(args.device, args.repeats, args.mib * MiB)
    if args.one_path or os.environ.get("EXOGPU_VULKAN_HOST_MAPPED") == "0":
        return
    # The staged path needs a fresh process: the setting is read at discovery.
    env = dict(os.environ, EXOGPU_VULKAN_HOST_MAPPED="0")
    sys.stdout.flush()
    subprocess.run([sys.executable, *sys.argv, "--one-path"], env=env, check=True)


if __name__ == "__main__":
    main()
