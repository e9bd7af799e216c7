"""An independent brute force of docs/placement.md: every ordered subset
of devices, every split, priced straight from the contract's formulas."""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Candidate:
    devices: tuple[str, ...]
    bounds: tuple[tuple[int, int], ...]  # (first, last inclusive) per stage
    stage_times: tuple[float, ...]
    hop_times: tuple[float, ...]  # ring hop last when there is one
    latency: float
    bottleneck: float
    memory_fraction: float
    feasible: bool


def link(problem: dict[str, Any], a: str, b: str) -> tuple[float, float]:
    for x in problem.get("links", []):
        if {x["a"], x["b"]} == {a, b}:
            return x["bandwidth"], x["latency"]
    node = {d["id"]: d.get("node", d["id"]) for d in problem["devices"]}
    chosen = problem["default_link"]
    if node[a] == node[b] and "intra_node_link" in problem:
        chosen = problem["intra_node_link"]
    return chosen["bandwidth"], chosen["latency"]


def price(problem: dict[str, Any], devices: tuple[str, ...], cuts: tuple[int, ...]) -> Candidate:
    workload = problem.get("workload", {})
    constraints = problem.get("constraints", {})
    batch = workload.get("batch", 1)
    context = workload.get("context_tokens", 0)
    headroom = constraints.get("memory_headroom", 0.0)
    layers = problem["layers"]
    by_id = {d["id"]: d for d in problem["devices"]}
    edges = (0, *cuts, len(layers))
    stage_times, hop_times, bounds = [], [], []
    feasible = True
    fraction = 0.0
    for s, dev_id in enumerate(devices):
        dev = by_id[dev_id]
        i, j = edges[s], edges[s + 1]
        time = 0.0
        mem = 0
        for layer in layers[i:j]:
            kv = batch * context * layer.get("kv_bytes_per_token", 0)
            m = layer["weight_bytes"] + kv  # resident
            # version 2: the step streams read_bytes_per_token of the weights
            read = layer.get("read_bytes_per_token", layer["weight_bytes"]) + kv
            time += max(
                batch * layer["flops_per_token"] / dev["flops"], read / dev["memory_bandwidth"]
            )
            mem += m
        feasible = feasible and mem <= (1 - headroom) * dev["memory_bytes"]
        fraction = max(fraction, mem / dev["memory_bytes"])
        stage_times.append(time)
        bounds.append((i, j - 1))
        if s + 1 < len(devices):
            bw, lat = link(problem, dev_id, devices[s + 1])
            hop_times.append(lat + batch * layers[j - 1].get("activation_bytes", 0) / bw)
    if constraints.get("ring", False) and len(devices) >= 2:
        hop_times.append(link(problem, devices[-1], devices[0])[1])
    latency = sum(stage_times) + sum(hop_times)
    return Candidate(
        devices,
        tuple(bounds),
        tuple(stage_times),
        tuple(hop_times),
        latency,
        max([*stage_times, *hop_times]),
        fraction,
        feasible,
    )


def all_placements(problem: dict[str, Any]) -> list[Candidate]:
    ids = [d["id"] for d in problem["devices"]]
    n_layers = len(problem["layers"])
    fixed = problem.get("constraints", {}).get("fixed_order", False)
    out = []
    for k in range(1, min(len(ids), n_layers) + 1):
        sequences = itertools.combinations(ids, k) if fixed else itertools.permutations(ids, k)
        for devices in sequences:
            for cuts in itertools.combinations(range(1, n_layers), k - 1):
                c = price(problem, devices, cuts)
                if c.feasible:
                    out.append(c)
    return out


def value(c: Candidate, objective: str) -> float:
    return {"latency": c.latency, "throughput": c.bottleneck, "memory": c.memory_fraction}[
        objective
    ]
