"""Device speeds calibrated by an engine's own run.

A profile measures a device's FLOP/s and copy bandwidth; an engine's kernels
reach a different share of them (llama.cpp's Q8_0 matrix-vector products on
one CPU core run several times slower than the core's copy bandwidth says).
One run of the engine per device, the whole model on it alone, fixes that:
:func:`calibrate` scales the device's ``flops`` and ``memory_bandwidth`` by
one factor, the one under which the problem prices that run as measured,
its hops and overheads included. Every split is then priced with the rate
the engine really reaches on each device.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import replace

from exogpu import InvalidArgument
from exogpu.placement import evaluate
from exogpu.placement.problem import Problem

# A speed so high that a stage's compute rounds to nothing beside its hops.
_UNBOUNDED = 1e300


def calibrate(problem: Problem, whole_model_seconds: Mapping[str, float]) -> Problem:
    """`problem` with the devices named in `whole_model_seconds` (device id ->
    measured seconds per token with every layer on that device alone) sped
    up or slowed down to match; the other devices as they were.

    Raises InvalidArgument for an unknown device, a time that is not
    positive and finite, or one shorter than the problem's hops and
    overheads for that device alone (nothing would be left for compute).
    """
    index = {d.id: i for i, d in enumerate(problem.devices)}
    devices = list(problem.devices)
    last = len(problem.layers) - 1
    for device, seconds in whole_model_seconds.items():
        if device not in index:
            raise InvalidArgument(f"calibrate: unknown device {device!r}")
        if isinstance(seconds, bool) or not isinstance(seconds, (int, float)) or not (
            math.isfinite(seconds) and seconds > 0
        ):
            raise InvalidArgument(
                f"calibrate: {device}: seconds must be positive and finite, got {seconds!r}"
            )
        i = index[device]
        alone = [(device, 0, last)]
        unbounded = list(problem.devices)
        unbounded[i] = replace(devices[i], flops=_UNBOUNDED, memory_bandwidth=_UNBOUNDED)
        fixed = evaluate(replace(problem, devices=tuple(unbounded)), alone, "latency").latency
        compute = evaluate(problem, alone, "latency").latency - fixed
        if seconds <= fixed:
            raise InvalidArgument(
                f"calibrate: {device}: {seconds:.6g} s measured, but its hops and overheads "
                f"alone take {fixed:.6g} s"
            )
        factor = compute / (seconds - fixed)
        devices[i] = replace(
            devices[i],
            flops=devices[i].flops * factor,
            memory_bandwidth=devices[i].memory_bandwidth * factor,
        )
    return replace(problem, devices=tuple(devices))


__all__ = ["calibrate"]
