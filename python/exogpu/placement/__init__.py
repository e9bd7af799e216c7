"""Layer placement: where each layer of a model should run.

The cost model, objectives and file formats are those of
docs/placement.md. The search itself is native (exogpu._core) and
releases the GIL while it runs.

    >>> from exogpu.placement import solve
    >>> placement = solve("problem.json", objective="throughput")
    >>> placement.to_json()["tokens_per_second"]
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from exogpu import InvalidArgument, _core
from exogpu.placement.problem import (
    DeviceSpec,
    EndpointLink,
    Endpoints,
    Layer,
    Link,
    LinkSpec,
    Problem,
)
from exogpu.placement.result import Hop, Placement, Stage

OBJECTIVES = ("throughput", "latency", "memory")
STRATEGIES = ("optimal", "exo-memory-weighted", "free-memory-proportional")
BASELINES = STRATEGIES[1:]

#: Raised when no placement fits; a subclass of exogpu.InvalidArgument whose
#: message says how many bytes the model needs and the devices hold.
PlacementInfeasible: type[Exception] = _core.PlacementInfeasible

ProblemLike = Problem | Mapping[str, Any] | str | Path
PreviousLike = Placement | Mapping[str, Any] | Sequence[str]


def as_problem(problem: ProblemLike) -> Problem:
    return problem if isinstance(problem, Problem) else Problem.from_json(problem)


def solve(
    problem: ProblemLike,
    objective: str = "throughput",
    time_budget: float = 1.0,
    strategy: str = "optimal",
    previous: PreviousLike | None = None,
    departed: Iterable[str] = (),
) -> Placement:
    """Places the layers of `problem` for `objective`.

    strategy "optimal" searches (proving optimality within `time_budget`
    seconds when it can; otherwise `optimal` is False and `lower_bound` bounds
    the value). The call returns within `time_budget` plus the slack of
    docs/placement.md ("Time budget"); Ctrl-C interrupts it
    (KeyboardInterrupt); the baselines split as exo and llama.cpp do and are priced
    with the same cost model (`feasible` False when they overflow a device).

    `previous` (a Placement, its to_json() dict, or the device id of every
    layer) makes the search prefer, among placements of optimal value, the one
    that moves the fewest layers; `moved_layers` lists those that move.
    A device that `previous` names and the problem does not is refused
    (InvalidArgument) unless it is listed in `departed`: the devices that
    left the cluster, whose layers all move.
    """
    p = as_problem(problem)
    if objective not in OBJECTIVES:
        raise InvalidArgument(
            f"objective must be one of {', '.join(OBJECTIVES)}, got {objective!r}"
        )
    if strategy not in STRATEGIES:
        raise InvalidArgument(f"strategy must be one of {', '.join(STRATEGIES)}, got {strategy!r}")
    if (
        isinstance(time_budget, bool)
        or not isinstance(time_budget, (int, float))
        or not math.isfinite(time_budget)
        or not time_budget > 0
    ):
        raise InvalidArgument(
            f"time_budget must be a positive, finite number of seconds, got {time_budget!r}"
        )
    previous_indices = _previous_indices(p, previous, departed) if previous is not None else []
    native = _core.placement_solve(
        p.to_native(), objective, strategy, float(time_budget), previous_indices
    )
    return _from_native(p, native, objective, strategy, previous is not None)


def evaluate(
    problem: ProblemLike, stages: Sequence[tuple[str, int, int]], objective: str = "throughput"
) -> Placement:
    """Prices the given stages (device id, first layer, last layer inclusive)."""
    p = as_problem(problem)
    if objective not in OBJECTIVES:
        raise InvalidArgument(
            f"objective must be one of {', '.join(OBJECTIVES)}, got {objective!r}"
        )
    specs = [[p.device_index(d), int(first), int(last)] for d, first, last in stages]
    native = _core.placement_evaluate(p.to_native(), objective, specs)
    return _from_native(p, native, objective, "given", False)


def _previous_indices(p: Problem, previous: PreviousLike, departed: Iterable[str]) -> list[int]:
    if isinstance(departed, str):
        raise InvalidArgument("departed must be a collection of device ids, not one string")
    gone = set(departed)
    if isinstance(previous, Mapping):
        previous = Placement.from_json(previous)
    if isinstance(previous, Placement):
        devices = previous.layer_devices()
    elif isinstance(previous, Sequence) and not isinstance(previous, str):
        devices = list(previous)
    else:
        raise InvalidArgument(
            "previous must be a Placement, its to_json() dict or one device id per layer"
        )
    if len(devices) != len(p.layers):
        raise InvalidArgument(
            f"previous placement covers {len(devices)} layers, the problem has {len(p.layers)}"
        )
    index = {d.id: i for i, d in enumerate(p.devices)}
    out = []
    for layer, device in enumerate(devices):
        if not isinstance(device, str):
            raise InvalidArgument(f"previous: layer {layer}'s device must be a string id")
        if device in index:
            out.append(index[device])
        elif device in gone:
            out.append(-1)  # the device left the cluster: all its layers move
        else:
            raise InvalidArgument(
                f"previous: layer {layer} is on unknown device {device[:64]!r}: it is not in "
                "the problem (name it in departed if it left the cluster)"
            )
    return out


def _from_native(p: Problem, r: Any, objective: str, strategy: str, replanned: bool) -> Placement:
    ids = [d.id for d in p.devices]
    endpoint = p.endpoints.node if p.endpoints is not None else "endpoints"

    def name(index: int) -> str:
        return endpoint if index < 0 else ids[index]

    bottleneck = float(r.bottleneck)
    latency = float(r.latency)
    return Placement(
        objective=objective,
        strategy=strategy,
        value=float(r.value),
        stages=tuple(
            Stage(
                ids[s.device],
                s.first_layer,
                s.last_layer,
                s.time,
                s.memory_bytes,
                s.offloaded_bytes,
            )
            for s in r.stages
        ),
        hops=tuple(
            Hop(name(h.source), name(h.target), h.after_layer, h.time, h.kind) for h in r.hops
        ),
        latency=latency,
        bottleneck=bottleneck,
        tokens_per_second=p.batch / bottleneck if bottleneck > 0 else None,
        single_stream_tokens_per_second=p.batch / latency if latency > 0 else None,
        pipeline_tokens_per_second=p.batch / bottleneck if bottleneck > 0 else None,
        optimal=bool(r.optimal),
        lower_bound=float(r.lower_bound),
        solve_seconds=float(r.solve_seconds),
        max_memory_fraction=float(r.max_memory_fraction),
        feasible=bool(r.feasible),
        infeasible_reason=str(r.infeasible_reason),
        moved_layers=tuple(r.moved_layers) if replanned else None,
    )


__all__ = [
    "BASELINES",
    "OBJECTIVES",
    "STRATEGIES",
    "DeviceSpec",
    "EndpointLink",
    "Endpoints",
    "Hop",
    "Layer",
    "Link",
    "LinkSpec",
    "Placement",
    "PlacementInfeasible",
    "Problem",
    "Stage",
    "evaluate",
    "solve",
]
