"""Memory and compute probes of one device, as typed results.

Conventions shared by every figure here:

- bytes are counted once: a copy of n bytes moved n bytes (both directions at
  once count n each way, 2n in all), whatever traffic it caused;
- times are in seconds, from device events where the backend's events carry
  timestamps and the host's monotonic clock otherwise (each result says which
  in ``timing``);
- each figure is the median of the timed samples that follow a warm-up, with
  the min and max kept beside it; bandwidths are bytes per second.

The probes run in native code with the GIL released; ``progress`` is called
with the GIL held only between two measurements.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from typing import Any

from exogpu import _core
from exogpu._core import Device

DeviceLike = Device | str
"""A device, or any of its ids (aliases included)."""

COPY_KINDS: tuple[str, ...] = tuple(_core.copy_kinds())
"""h2d/d2h from page-locked and pageable host memory, d2d, peer (to another
device) and bidirectional (h2d and d2h at once on two streams)."""

UNITS = {"bytes": "bytes", "seconds": "s", "bandwidth": "bytes/s", "flops": "FLOP/s"}


@dataclass(frozen=True)
class Progress:
    """Where a running memory probe is: `step` of `total` measurements done."""

    phase: str
    bytes: int
    step: int
    total: int


ProgressCallback = Callable[[Progress], None]


@dataclass(frozen=True)
class Stats:
    """Seconds over the timed samples."""

    median: float
    min: float
    max: float
    samples: int

    @classmethod
    def _from_native(cls, s: _core.SampleStats) -> Stats:
        return cls(median=s.median, min=s.min, max=s.max, samples=s.samples)


@dataclass(frozen=True)
class CopyResult:
    kind: str
    bytes: int
    """Size of one copy."""
    bytes_moved: int
    """Bytes counted for one copy (2 x bytes for bidirectional)."""
    repeats: int
    """Copies per timed sample (small copies are batched)."""
    seconds: Stats
    """Per copy."""
    bandwidth: float
    bandwidth_min: float
    bandwidth_max: float
    timing: str
    source: str
    destination: str

    @classmethod
    def _from_native(cls, c: _core.CopyMeasurement) -> CopyResult:
        return cls(
            kind=c.kind,
            bytes=c.bytes,
            bytes_moved=c.bytes_moved,
            repeats=c.repeats,
            seconds=Stats._from_native(c.seconds),
            bandwidth=c.bandwidth,
            bandwidth_min=c.bandwidth_min,
            bandwidth_max=c.bandwidth_max,
            timing=c.timing,
            source=c.source,
            destination=c.destination,
        )


@dataclass(frozen=True)
class LatencyResult:
    """Round trip of a small copy: write `bytes`, read them back, wait; through the
    synchronous copies (path "sync", as exogpu.write/read) or the stream ("stream")."""

    path: str
    bytes: int
    seconds: Stats


@dataclass(frozen=True)
class AllocationResult:
    """allocate + free of `bytes`, through the warm pool or straight from the device."""

    path: str
    bytes: int
    seconds: Stats


@dataclass(frozen=True)
class MemoryProbe:
    device: str
    bytes_counted: str
    max_bytes: int
    copies: tuple[CopyResult, ...]
    latency: tuple[LatencyResult, ...]
    allocation: tuple[AllocationResult, ...]

    def kinds(self) -> list[str]:
        """The copy kinds measured, in the order they were measured."""
        return list(dict.fromkeys(c.kind for c in self.copies))

    def of_kind(self, kind: str) -> list[CopyResult]:
        return [c for c in self.copies if c.kind == kind]

    def to_dict(self) -> dict[str, Any]:
        return {
            "device": self.device,
            "bytes_counted": self.bytes_counted,
            "units": UNITS,
            "max_bytes": self.max_bytes,
            "copies": [asdict(c) for c in self.copies],
            "latency": [asdict(x) for x in self.latency],
            "allocation": [asdict(x) for x in self.allocation],
        }


@dataclass(frozen=True)
class ComputeProbe:
    device: str
    fma_supported: bool
    """False when the backend has no FMA kernel; `flops` is 0 then."""
    flops: float
    flops_min: float
    flops_max: float
    flop_count: float
    iterations: int
    elements: int
    seconds: Stats
    timing: str
    memory_bandwidth: float
    """2 x copy_bandwidth: a device-to-device copy of n bytes reads n and writes n,
    so its memory traffic, the rate weights can be streamed at, is twice the
    bytes-counted-once copy rate."""
    copy_bandwidth: float
    copy_bytes: int
    copy_timing: str

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["units"] = UNITS
        data["memory_bandwidth_method"] = (
            "2 x device-to-device copy bandwidth (bytes counted once): read + write traffic"
        )
        return data


def _device(device: DeviceLike) -> Device:
    return _core.device(device) if isinstance(device, str) else device


def probe_memory(
    device: DeviceLike,
    *,
    kinds: Sequence[str] | None = None,
    sizes: Sequence[int] | None = None,
    min_bytes: int = 4096,
    max_bytes: int = 1 << 30,
    memory_fraction: float = 0.5,
    warmup: int = 1,
    samples: int = 5,
    bytes_per_sample: int = 32 << 20,
    max_repeats: int = 256,
    latency: bool = True,
    allocation: bool = True,
    peer: DeviceLike | None = None,
    progress: ProgressCallback | None = None,
) -> MemoryProbe:
    """Copy bandwidth of `device` (a Device or a device id) over a sweep of sizes.

    The sweep runs from `min_bytes` by factors of 4 up to `max_bytes`, bounded so
    that its buffers take at most `memory_fraction` of the free device and host
    memory; `sizes` replaces it. `peer` (another device) adds the "peer" kind.
    """

    def on_progress(phase: str, nbytes: int, step: int, total: int) -> None:
        if progress is not None:
            progress(Progress(phase, nbytes, step, total))

    native = _core.probe_memory(
        _device(device),
        kinds=list(kinds) if kinds is not None else None,
        sizes=list(sizes) if sizes is not None else None,
        min_bytes=min_bytes,
        max_bytes=max_bytes,
        memory_fraction=memory_fraction,
        warmup=warmup,
        samples=samples,
        bytes_per_sample=bytes_per_sample,
        max_repeats=max_repeats,
        latency=latency,
        allocation=allocation,
        peer=_device(peer) if peer is not None else None,
        progress=on_progress if progress is not None else None,
    )
    return MemoryProbe(
        device=native.device,
        bytes_counted=native.bytes_counted,
        max_bytes=native.max_bytes,
        copies=tuple(CopyResult._from_native(c) for c in native.copies),
        latency=tuple(
            LatencyResult(path=x.path, bytes=x.bytes, seconds=Stats._from_native(x.seconds))
            for x in native.latency
        ),
        allocation=tuple(
            AllocationResult(path=x.path, bytes=x.bytes, seconds=Stats._from_native(x.seconds))
            for x in native.allocation
        ),
    )


def probe_compute(
    device: DeviceLike,
    *,
    elements: int = 1 << 20,
    target_seconds: float = 0.25,
    warmup: int = 1,
    samples: int = 5,
    bandwidth_bytes: int = 256 << 20,
) -> ComputeProbe:
    """Sustained float32 FMA throughput and memory bandwidth of `device`."""
    r = _core.probe_compute(
        _device(device),
        elements=elements,
        target_seconds=target_seconds,
        warmup=warmup,
        samples=samples,
        bandwidth_bytes=bandwidth_bytes,
    )
    return ComputeProbe(
        device=r.device,
        fma_supported=r.fma_supported,
        flops=r.flops,
        flops_min=r.flops_min,
        flops_max=r.flops_max,
        flop_count=r.flop_count,
        iterations=r.iterations,
        elements=r.elements,
        seconds=Stats._from_native(r.seconds),
        timing=r.timing,
        memory_bandwidth=r.memory_bandwidth,
        copy_bandwidth=r.copy_bandwidth,
        copy_bytes=r.copy_bytes,
        copy_timing=r.copy_timing,
    )
