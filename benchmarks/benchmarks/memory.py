"""Pooled allocation and copy bandwidth, each beside its numpy reference.

`asv run --python=same` runs these against the installed exogpu. Compare
`PooledAllocate.time_exogpu` with `.time_numpy_empty`, and the copy rates
with `time_numpy_copyto` of the same size.
"""

from __future__ import annotations

import numpy as np

import exogpu

MiB = 1 << 20
SIZES = [4 << 10, 64 << 10, 1 * MiB, 16 * MiB, 64 * MiB, 256 * MiB]


class PooledAllocate:
    params = [[4 << 10, 1 * MiB, 64 * MiB]]
    param_names = ["nbytes"]

    def setup(self, nbytes: int) -> None:
        self.device = exogpu.device("cpu:0")
        self.device.allocate(nbytes).free()  # warm the pool's size class

    def time_exogpu(self, nbytes: int) -> None:
        self.device.allocate(nbytes).free()

    def time_numpy_empty(self, nbytes: int) -> None:
        np.empty(nbytes, np.uint8)


class CopyBandwidth:
    params = [SIZES]
    param_names = ["nbytes"]

    def setup(self, nbytes: int) -> None:
        self.device = exogpu.device("cpu:0")
        self.host = np.ones(nbytes, np.uint8)
        self.out = np.empty(nbytes, np.uint8)
        self.buf = self.device.allocate(nbytes)
        self.buf.copy_from(self.host)

    def time_host_to_device(self, nbytes: int) -> None:
        self.buf.copy_from(self.host)

    def time_device_to_host(self, nbytes: int) -> None:
        self.buf.copy_to(self.out)

    def time_numpy_copyto(self, nbytes: int) -> None:
        np.copyto(self.out, self.host)

    def track_h2d_ratio_to_numpy(self, nbytes: int) -> float:
        from benchmarks.ratio import median_ratio

        return median_ratio(
            lambda: self.buf.copy_from(self.host), lambda: np.copyto(self.out, self.host)
        )

    track_h2d_ratio_to_numpy.unit = "x numpy"  # type: ignore[attr-defined]
