"""Thermal policy: which devices are hot or throttled, and how much to trust them.

A :class:`ThermalPolicy` watches :mod:`exogpu.monitoring` readings and keeps a
state per device with hysteresis, so a device hovering at a threshold does not
flap between states (and the placement does not reshuffle layers with it):

* ``hot``: entered when the temperature reaches ``hot_c`` (or, where the
  device reports the temperature at which it slows itself down, that minus
  ``slowdown_margin_c`` if lower); left only once it falls below the entry
  threshold minus ``hysteresis_c``.
* ``throttled``: entered as soon as the device says it is holding its clocks
  back for heat or power (NVML's throttle reasons), or it reaches its own
  slowdown temperature; left only after ``clear_samples`` readings in a row
  without that.

:meth:`ThermalPolicy.weight` turns the state into a factor the placement can
multiply a device's measured throughput by, and :meth:`ThermalPolicy.derate`
applies those factors to a placement problem's devices.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING

from exogpu.monitoring import NVML_THROTTLE_MASK, DeviceReadings

if TYPE_CHECKING:
    from exogpu.placement.problem import Problem

__all__ = ["DeviceThermal", "ThermalLimits", "ThermalPolicy", "ThermalState"]


class ThermalState(enum.Enum):
    NORMAL = "normal"
    HOT = "hot"
    THROTTLED = "throttled"


@dataclass(frozen=True)
class ThermalLimits:
    hot_c: float = 85.0
    hysteresis_c: float = 5.0
    slowdown_margin_c: float = 5.0
    clear_samples: int = 3
    hot_weight: float = 0.75
    throttled_weight: float = 0.4

    def __post_init__(self) -> None:
        if self.hysteresis_c < 0 or self.slowdown_margin_c < 0:
            raise ValueError("hysteresis_c and slowdown_margin_c must not be negative")
        if self.clear_samples < 1:
            raise ValueError("clear_samples must be at least 1")
        for name in ("hot_weight", "throttled_weight"):
            value = getattr(self, name)
            # Zero would give the placement a device with no throughput at all.
            if not 0.0 < value <= 1.0:
                raise ValueError(f"{name} must lie in (0, 1], got {value}")


@dataclass
class DeviceThermal:
    """What the policy believes about one device."""

    state: ThermalState = ThermalState.NORMAL
    temperature_c: float | None = None
    hot_threshold_c: float | None = None
    reasons: tuple[str, ...] = ()
    _clear_run: int = field(default=0, repr=False)
    _hot: bool = field(default=False, repr=False)
    _throttled: bool = field(default=False, repr=False)


def _temperature(readings: DeviceReadings) -> float | None:
    """The hottest temperature a device reports (junction beats edge)."""
    temps = [r.value for r in readings.readings if r.name == "temperature"]
    return max(temps) if temps else None


def _slowdown(readings: DeviceReadings) -> float | None:
    marks = [r.value for r in readings.readings if r.name == "temperature_slowdown"]
    return min(marks) if marks else None


def _throttling(readings: DeviceReadings) -> tuple[bool | None, tuple[str, ...]]:
    """(throttled?, reasons) from the device's own report; None when it has none."""
    reading = readings.get("throttle_reasons")
    if reading is None:
        return None, ()
    active = int(reading.value) & NVML_THROTTLE_MASK
    names = tuple(
        n for n in (reading.detail or "").split(",") if n and n not in ("none", "gpu_idle")
    )
    return active != 0, names if active else ()


class ThermalPolicy:
    def __init__(
        self,
        limits: ThermalLimits | None = None,
        per_device: Mapping[str, ThermalLimits] | None = None,
    ) -> None:
        self.limits = limits or ThermalLimits()
        self.per_device = dict(per_device or {})
        self._devices: dict[str, DeviceThermal] = {}

    def limits_for(self, key: str) -> ThermalLimits:
        return self.per_device.get(key, self.limits)

    def observe(
        self,
        key: str,
        temperature_c: float | None,
        throttled: bool | None = None,
        slowdown_c: float | None = None,
        reasons: tuple[str, ...] = (),
    ) -> DeviceThermal:
        """Feeds one sample of one device; an absent figure changes nothing it governs."""
        limits = self.limits_for(key)
        dev = self._devices.setdefault(key, DeviceThermal())
        enter = limits.hot_c
        if slowdown_c is not None:
            enter = min(enter, slowdown_c - limits.slowdown_margin_c)
        dev.hot_threshold_c = enter
        if temperature_c is not None:
            dev.temperature_c = temperature_c
            if dev._hot:
                dev._hot = temperature_c >= enter - limits.hysteresis_c
            else:
                dev._hot = temperature_c >= enter
        at_slowdown = (
            temperature_c is not None and slowdown_c is not None and temperature_c >= slowdown_c
        )
        if throttled is not None or at_slowdown:
            if throttled or at_slowdown:
                dev._throttled = True
                dev._clear_run = 0
                dev.reasons = reasons or (("temperature_at_slowdown",) if at_slowdown else ())
            elif dev._throttled:
                dev._clear_run += 1
                if dev._clear_run >= limits.clear_samples:
                    dev._throttled = False
                    dev._clear_run = 0
                    dev.reasons = ()
        if dev._throttled:
            dev.state = ThermalState.THROTTLED
        elif dev._hot:
            dev.state = ThermalState.HOT
        else:
            dev.state = ThermalState.NORMAL
        return dev

    def update(self, readings: Iterable[DeviceReadings]) -> dict[str, DeviceThermal]:
        """Feeds a sample of every device (as monitoring.read_all gives them)."""
        out = {}
        for device in readings:
            throttled, reasons = _throttling(device)
            key = device.device_id or device.key
            out[key] = self.observe(
                key, _temperature(device), throttled, _slowdown(device), reasons
            )
        return out

    def state(self, key: str) -> ThermalState:
        dev = self._devices.get(key)
        return dev.state if dev is not None else ThermalState.NORMAL

    def weight(self, key: str) -> float:
        """1.0 for a cool device, less for a hot or throttled one."""
        limits = self.limits_for(key)
        state = self.state(key)
        if state is ThermalState.THROTTLED:
            return limits.throttled_weight
        if state is ThermalState.HOT:
            return limits.hot_weight
        return 1.0

    def weights(self) -> dict[str, float]:
        return {key: self.weight(key) for key in self._devices}

    def derate(self, problem: Problem, node: str | None = None) -> Problem:
        """`problem` with the FLOP/s and memory bandwidth of every hot or
        throttled device multiplied by its weight; devices of other nodes
        (when `node` is given) and devices the policy has not seen keep theirs.

        The policy's keys are exogpu device ids where monitoring linked the
        readings to a device (``cuda:0``), so they match the problem's ids.
        """
        devices = []
        for device in problem.devices:
            weight = self.weight(device.id) if device.id in self._devices else 1.0
            if weight < 1.0 and (node is None or device.node == node):
                device = replace(
                    device,
                    flops=device.flops * weight,
                    memory_bandwidth=device.memory_bandwidth * weight,
                )
            devices.append(device)
        return replace(problem, devices=tuple(devices))
