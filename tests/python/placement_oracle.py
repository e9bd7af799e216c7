"""An independent brute force of docs/placement.md: every ordered subset
of devices, every split, priced straight from the contract's formulas
(version 2: shared memory pools, disk offload, stage overheads, endpoints)."""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Candidate:
    devices: tuple[str, ...]
    bounds: tuple[tuple[int, int], ...]  # (first, last inclusive) per stage
    stage_times: tuple[float, ...]
    # entry hop first and ring or exit hop last when there are
    hop_times: tuple[float, ...]
    latency: float
    bottleneck: float
    memory_fraction: float
    feasible: bool
    offloaded: tuple[int, ...] = ()  # bytes each stage reads from disk


def link(problem: dict[str, Any], a: str, b: str) -> tuple[float, float]:
    for x in problem.get("links", []):
        if {x["a"], x["b"]} == {a, b}:
            return x["bandwidth"], x["latency"]
    node = {d["id"]: d.get("node", d["id"]) for d in problem["devices"]}
    chosen = problem["default_link"]
    if node[a] == node[b] and "intra_node_link" in problem:
        chosen = problem["intra_node_link"]
    return chosen["bandwidth"], chosen["latency"]


def endpoint_link(problem: dict[str, Any], device: str) -> tuple[float, float]:
    """(bandwidth, latency) between the endpoints and a device."""
    ends = problem["endpoints"]
    for x in ends.get("links", []):
        if x["device"] == device:
            return x["bandwidth"], x["latency"]
    node = {d["id"]: d.get("node", d["id"]) for d in problem["devices"]}
    chosen = problem["default_link"]
    if node[device] == ends["node"] and "intra_node_link" in problem:
        chosen = problem["intra_node_link"]
    return chosen["bandwidth"], chosen["latency"]


def pool_capacity(problem: dict[str, Any], pool: str) -> int:
    listed = problem.get("memory_pools", {})
    if pool in listed:
        return int(listed[pool])
    return max(d["memory_bytes"] for d in problem["devices"] if d.get("memory_pool") == pool)


def price(problem: dict[str, Any], devices: tuple[str, ...], cuts: tuple[int, ...]) -> Candidate:
    workload = problem.get("workload", {})
    constraints = problem.get("constraints", {})
    batch = workload.get("batch", 1)
    context = workload.get("context_tokens", 0)
    headroom = constraints.get("memory_headroom", 0.0)
    offload = constraints.get("allow_disk_offload", False)
    layers = problem["layers"]
    by_id = {d["id"]: d for d in problem["devices"]}
    edges = (0, *cuts, len(layers))
    stage_times, hop_times, bounds, offloaded = [], [], [], []
    feasible = True
    fraction = 0.0
    pools: dict[str, int] = {}  # resident bytes held in each pool

    def usable(total: int) -> int:
        return math.floor((1 - headroom) * total)

    ends = problem.get("endpoints")
    if ends is not None:
        bw, lat = endpoint_link(problem, devices[0])
        hop_times.append(lat + batch * ends.get("input_bytes", 0) / bw)
    for s, dev_id in enumerate(devices):
        dev = by_id[dev_id]
        i, j = edges[s], edges[s + 1]
        time = 0.0
        mem = 0
        kv_total = 0
        for layer in layers[i:j]:
            kv = batch * context * layer.get("kv_bytes_per_token", 0)
            m = layer["weight_bytes"] + kv  # resident
            # version 2: the step streams read_bytes_per_token of the weights
            read = layer.get("read_bytes_per_token", layer["weight_bytes"]) + kv
            time += max(
                batch * layer["flops_per_token"] / dev["flops"], read / dev["memory_bandwidth"]
            )
            mem += m
            kv_total += kv
        time += dev.get("stage_overhead", 0.0)
        room = usable(dev["memory_bytes"])
        excess = 0
        if mem > room:
            if offload and "disk_read_bandwidth" in dev and kv_total <= room:
                excess = mem - room
                time += excess / dev["disk_read_bandwidth"]
            else:
                feasible = False
        if "memory_pool" in dev:
            pools[dev["memory_pool"]] = pools.get(dev["memory_pool"], 0) + mem - excess
        fraction = max(fraction, mem / dev["memory_bytes"])
        stage_times.append(time)
        offloaded.append(excess)
        bounds.append((i, j - 1))
        if s + 1 < len(devices):
            bw, lat = link(problem, dev_id, devices[s + 1])
            hop_times.append(lat + batch * layers[j - 1].get("activation_bytes", 0) / bw)
    for pool, held in pools.items():
        feasible = feasible and held <= usable(pool_capacity(problem, pool))
    if constraints.get("ring", False) and len(devices) >= 2:
        hop_times.append(link(problem, devices[-1], devices[0])[1])
    if ends is not None:
        bw, lat = endpoint_link(problem, devices[-1])
        hop_times.append(lat + batch * ends.get("output_bytes", 0) / bw)
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
        tuple(offloaded),
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
