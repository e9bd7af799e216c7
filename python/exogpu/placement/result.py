"""A placement as the contract's output (docs/placement.md)."""

from __future__ import annotations

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

    @property
    def layer_count(self) -> int:
        return self.last_layer - self.first_layer + 1


@dataclass(frozen=True)
class Hop:
    source: str
    target: str
    after_layer: int
    time: float


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
        """The contract's output dict, plus the extensions the contract allows:
        strategy, gap, max_memory_fraction, feasible (and infeasible_reason for
        a baseline that overflows a device) and moved_layers (when replanning)."""
        out: dict[str, Any] = {
            "objective": self.objective,
            "value": self.value,
            "stages": [
                {
                    "device": s.device,
                    "first_layer": s.first_layer,
                    "last_layer": s.last_layer,
                    "time": s.time,
                    "memory_bytes": s.memory_bytes,
                }
                for s in self.stages
            ],
            "hops": [
                {"from": h.source, "to": h.target, "after_layer": h.after_layer, "time": h.time}
                for h in self.hops
            ],
            "latency": self.latency,
            "bottleneck": self.bottleneck,
            "tokens_per_second": self.tokens_per_second,
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
    def from_json(cls, data: Mapping[str, Any]) -> Placement:
        """Reads back an output dict (e.g. a previous placement for replanning)."""
        try:
            stages = tuple(
                Stage(
                    device=str(s["device"]),
                    first_layer=int(s["first_layer"]),
                    last_layer=int(s["last_layer"]),
                    time=float(s.get("time", 0.0)),
                    memory_bytes=int(s.get("memory_bytes", 0)),
                )
                for s in data["stages"]
            )
            hops = tuple(
                Hop(str(h["from"]), str(h["to"]), int(h["after_layer"]), float(h["time"]))
                for h in data.get("hops", [])
            )
            tps = data.get("tokens_per_second")
            return cls(
                objective=str(data.get("objective", "throughput")),
                strategy=str(data.get("strategy", "optimal")),
                value=float(data.get("value", 0.0)),
                stages=stages,
                hops=hops,
                latency=float(data.get("latency", 0.0)),
                bottleneck=float(data.get("bottleneck", 0.0)),
                tokens_per_second=None if tps is None else float(tps),
                optimal=bool(data.get("optimal", False)),
                lower_bound=float(data.get("lower_bound", 0.0)),
                solve_seconds=float(data.get("solve_seconds", 0.0)),
                max_memory_fraction=float(data.get("max_memory_fraction", 0.0)),
                feasible=bool(data.get("feasible", True)),
                infeasible_reason=str(data.get("infeasible_reason", "")),
            )
        except (KeyError, TypeError, ValueError) as e:
            raise InvalidArgument(f"not a placement in the contract's output form: {e!r}") from None
