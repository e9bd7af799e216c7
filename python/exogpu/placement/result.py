"""A placement as the contract's output (docs/placement.md)."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from exogpu import InvalidArgument


@dataclass(frozen=True)
class Stage:
    device: str
    first_layer: int
    last_layer: int  # inclusive
    time: float
    memory_bytes: int
    offloaded_bytes: int = 0  # read from disk every decode step

    @property
    def layer_count(self) -> int:
        return self.last_layer - self.first_layer + 1


@dataclass(frozen=True)
class Hop:
    source: str
    target: str
    after_layer: int  # -1 for the entry hop
    time: float
    # "stage" between stages, "ring" back to the first, "entry" from the
    # endpoints to the first stage, "exit" from the last stage to them.
    kind: str = "stage"


HOP_KINDS = ("stage", "ring", "entry", "exit")


@dataclass(frozen=True)
class Placement:
    objective: str
    strategy: str
    value: float
    stages: tuple[Stage, ...]
    hops: tuple[Hop, ...]
    latency: float
    bottleneck: float
    tokens_per_second: float | None  # None when the bottleneck is zero
    optimal: bool
    lower_bound: float
    solve_seconds: float
    max_memory_fraction: float
    feasible: bool = True
    infeasible_reason: str = ""
    moved_layers: tuple[int, ...] | None = None
    # Version 2: what one chat gets (batch / latency: a token passes every
    # stage before the next can start) and what the whole pipeline gives
    # (batch / bottleneck) with one request in flight per stage.
    single_stream_tokens_per_second: float | None = None
    pipeline_tokens_per_second: float | None = None

    @property
    def requests_in_flight(self) -> int:
        """Requests the pipeline needs in flight for its aggregate rate."""
        return len(self.stages)

    @property
    def gap(self) -> float:
        """value / lower_bound - 1 (0 when proven optimal)."""
        if self.optimal or self.value == self.lower_bound:
            return 0.0
        if self.lower_bound <= 0:
            return float("inf")
        return self.value / self.lower_bound - 1.0

    def layer_devices(self) -> list[str]:
        """The device of every layer, in layer order."""
        out: list[str] = []
        for s in self.stages:
            out.extend([s.device] * s.layer_count)
        return out

    def to_json(self) -> dict[str, Any]:
        """The contract's output dict (version 2), plus the extensions it allows:
        strategy, gap, max_memory_fraction, feasible (and infeasible_reason for
        a baseline that overflows a device) and moved_layers (when replanning)."""
        out: dict[str, Any] = {
            "version": 2,
            "objective": self.objective,
            "value": self.value,
            "stages": [_stage_dict(s) for s in self.stages],
            "hops": [
                {
                    "from": h.source,
                    "to": h.target,
                    "after_layer": h.after_layer,
                    "time": h.time,
                    "kind": h.kind,
                }
                for h in self.hops
            ],
            "latency": self.latency,
            "bottleneck": self.bottleneck,
            "tokens_per_second": self.tokens_per_second,
            "single_stream_tokens_per_second": self.single_stream_tokens_per_second,
            "pipeline_tokens_per_second": self.pipeline_tokens_per_second,
            "requests_in_flight": self.requests_in_flight,
            "optimal": self.optimal,
            "lower_bound": self.lower_bound,
            "solve_seconds": self.solve_seconds,
            "strategy": self.strategy,
            "gap": None if self.gap == float("inf") else self.gap,
            "max_memory_fraction": self.max_memory_fraction,
            "feasible": self.feasible,
        }
        if not self.feasible:
            out["infeasible_reason"] = self.infeasible_reason
        if self.moved_layers is not None:
            out["moved_layers"] = list(self.moved_layers)
        return out

    @classmethod
    def from_json(cls, data: Any) -> Placement:
        """Reads back an output dict (e.g. a previous placement for replanning).

        Checked as strictly as a problem: every bad field is an
        InvalidArgument that names it (``previous.stages[1].last_layer``)."""
        top = _mapping(data, "previous")
        raw_stages = top.get("stages")
        if not isinstance(raw_stages, list) or not raw_stages:
            raise InvalidArgument("previous.stages must be a non-empty list")
        stages: list[Stage] = []
        for i, raw in enumerate(raw_stages):
            where = f"previous.stages[{i}]"
            m = _mapping(raw, where)
            device = m.get("device")
            if not isinstance(device, str) or not device:
                raise InvalidArgument(f"{where}.device must be a non-empty string")
            first = _index(m, "first_layer", where)
            last = _index(m, "last_layer", where)
            if last < first:
                raise InvalidArgument(f"{where}.last_layer is before first_layer")
            expected = stages[-1].last_layer + 1 if stages else 0
            if first != expected:
                raise InvalidArgument(
                    f"{where}.first_layer must be {expected}: stages are contiguous from layer 0"
                )
            stages.append(
                Stage(
                    device,
                    first,
                    last,
                    _real(m, "time", where),
                    _index(m, "memory_bytes", where, default=0),
                    _index(m, "offloaded_bytes", where, default=0),
                )
            )
        hops: list[Hop] = []
        raw_hops = top.get("hops", [])
        if not isinstance(raw_hops, list):
            raise InvalidArgument("previous.hops must be a list")
        for i, raw in enumerate(raw_hops):
            where = f"previous.hops[{i}]"
            m = _mapping(raw, where)
            ends = [m.get("from"), m.get("to")]
            if not all(isinstance(x, str) for x in ends):
                raise InvalidArgument(f"{where}.from and .to must be strings")
            kind = m.get("kind", "stage")
            if kind not in HOP_KINDS:
                raise InvalidArgument(f"{where}.kind must be one of {', '.join(HOP_KINDS)}")
            after = -1 if kind == "entry" and m.get("after_layer") == -1 else None
            hops.append(
                Hop(
                    str(ends[0]),
                    str(ends[1]),
                    _index(m, "after_layer", where) if after is None else after,
                    _real(m, "time", where),
                    kind,
                )
            )
        tps = top.get("tokens_per_second")

        def optional_rate(key: str) -> float | None:
            return None if top.get(key) is None else _real(top, key, "previous")

        return cls(
            objective=str(top.get("objective", "throughput")),
            strategy=str(top.get("strategy", "optimal")),
            value=_real(top, "value", "previous"),
            stages=tuple(stages),
            hops=tuple(hops),
            latency=_real(top, "latency", "previous"),
            bottleneck=_real(top, "bottleneck", "previous"),
            tokens_per_second=None if tps is None else _real(top, "tokens_per_second", "previous"),
            optimal=top.get("optimal", False) is True,
            lower_bound=_real(top, "lower_bound", "previous"),
            solve_seconds=_real(top, "solve_seconds", "previous"),
            max_memory_fraction=_real(top, "max_memory_fraction", "previous"),
            feasible=top.get("feasible", True) is not False,
            infeasible_reason=str(top.get("infeasible_reason", ""))[:1000],
            single_stream_tokens_per_second=optional_rate("single_stream_tokens_per_second"),
            pipeline_tokens_per_second=optional_rate("pipeline_tokens_per_second"),
        )


def _stage_dict(s: Stage) -> dict[str, Any]:
    out: dict[str, Any] = {
        "device": s.device,
        "first_layer": s.first_layer,
        "last_layer": s.last_layer,
        "time": s.time,
        "memory_bytes": s.memory_bytes,
    }
    if s.offloaded_bytes:
        out["offloaded_bytes"] = s.offloaded_bytes
    return out


# Layer indices and byte counts of a placement stay below the contract's 2**53.
_MAX_INDEX = 2**53


def _mapping(value: Any, where: str) -> Mapping[str, Any]:
    if not isinstance(value, Mapping):
        raise InvalidArgument(f"{where} must be an object, got {type(value).__name__}")
    return value


def _index(m: Mapping[str, Any], key: str, where: str, default: int | None = None) -> int:
    if key not in m and default is not None:
        return default
    v = m.get(key)
    if isinstance(v, bool) or not isinstance(v, int) or not 0 <= v < _MAX_INDEX:
        raise InvalidArgument(f"{where}.{key} must be a non-negative integer below 2**53")
    return v


def _real(m: Mapping[str, Any], key: str, where: str) -> float:
    v = m.get(key, 0.0)
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        raise InvalidArgument(f"{where}.{key} must be a number")
    try:
        x = float(v)
    except OverflowError:
        raise InvalidArgument(f"{where}.{key} is too large") from None
    if not math.isfinite(x):
        raise InvalidArgument(f"{where}.{key} must be finite")
    return x
