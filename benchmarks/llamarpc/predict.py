"""What exogpu predicts for the lab: the placement problem of a model shape on
the measured cluster, as llama.cpp's RPC engine runs it, and the time of one
token for any split, uncalibrated (the profiled device speeds) or calibrated
(exogpu.placement.calibrate: each device's speeds scaled to predict its own
whole-model run).
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import asdict
from typing import Any

from exogpu import models
from exogpu.placement import Placement, Problem, evaluate
from exogpu.placement.calibrate import calibrate
from exogpu.placement.engines import llama_cpp_rpc
from llamarpc.gguf_model import Shape
from llamarpc.lab import ServerSpec

HEADROOM = 0.1  # of each server's memory, for llama.cpp's compute buffers
# What each server reports as its free memory: ggml's CPU backend reports the
# host's physical memory whatever the limit, so llama.cpp's default split
# shares the model equally.
HOST_MEMORY = os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
_LAYER_KEYS = ("name", "weight_bytes", "kv_bytes_per_token", "flops_per_token",
               "activation_bytes", "read_bytes_per_token")


def device_id(spec: ServerSpec) -> str:
    return f"{spec.name}:cpu:0"


def base_problem(shape: Shape, cluster: Sequence[ServerSpec],
                 devices: Sequence[Mapping[str, float]],
                 links: Sequence[Mapping[str, float]]) -> Problem:
    """The model on the cluster, with the client as the endpoints (its
    measured link to each server), as llama.cpp's RPC engine runs it."""
    model = models.Model.from_config(shape.hf_config(), name=shape.name)
    layers = model.layers(dtype="q8_0", activation_dtype="f32")
    doc: dict[str, Any] = {
        "version": 2,
        "layers": [{k: v for k, v in asdict(x).items() if k in _LAYER_KEYS} for x in layers],
        "devices": [{"id": device_id(s), "node": s.name, "memory_bytes": s.memory_bytes,
                     "free_memory_bytes": HOST_MEMORY, "flops": d["flops"],
                     "memory_bandwidth": d["memory_bandwidth"]}
                    for s, d in zip(cluster, devices, strict=True)],
        "default_link": {"bandwidth": 1e9, "latency": 1e-3},  # no pair of servers uses it
        "endpoints": {"node": "client", "links": [
            {"device": device_id(s), "bandwidth": x["bandwidth"], "latency": x["latency"]}
            for s, x in zip(cluster, links, strict=True)]},
        "constraints": {"memory_headroom": HEADROOM},
    }
    return llama_cpp_rpc(Problem.from_json(doc))


def stages_of(cluster: Sequence[ServerSpec], units: Mapping[int, int],
              order: Sequence[int]) -> list[tuple[str, int, int]]:
    """(device, first layer, last layer) of every server that holds units."""
    out, first = [], 0
    for i in order:
        if units[i]:
            out.append((device_id(cluster[i]), first, first + units[i] - 1))
            first += units[i]
    return out


def predict(problem: Problem, stages: list[tuple[str, int, int]]) -> Placement:
    return evaluate(problem, stages, objective="latency")


def calibrated(problem: Problem, cluster: Sequence[ServerSpec],
               whole_model_ms: Mapping[int, float]) -> Problem:
    """Each server's speeds scaled to predict its own calibration run (the
    whole model on it, llama-bench through ggml-rpc-server) as measured."""
    return calibrate(problem, {device_id(cluster[i]): ms / 1e3
                               for i, ms in whole_model_ms.items()})


def most_units(problem: Problem, i: int, with_output: bool) -> int:
    """The most units device i holds within its memory: counted from the end
    of the model when it holds the output layer, else from the start."""
    n = len(problem.layers)
    usable = (1 - problem.memory_headroom) * problem.devices[i].memory_bytes
    total, k = 0, 0
    for layer in range(n - 1, -1, -1) if with_output else range(n):
        total += problem.resident_bytes(layer)
        if total > usable:
            break
        k += 1
    return k
