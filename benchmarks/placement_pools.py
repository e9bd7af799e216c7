"""What exact shared memory pools cost the search (docs/placement.md).

    PYTHONPATH=python:benchmarks python benchmarks/placement_pools.py [--repeat N]

A Mac-like node (cpu:0 and metal:0 drawing from one 64 GiB RAM) alone and in
the home-mixed cluster (where the laptop's iGPU and CPU share its RAM too),
each solved with its pools and again with the pools dropped (every device
counted with its own memory, as before version 2). For each model and
objective: the median time of the whole Python call on an already built
problem, after a warm-up, for both; their ratio (pools / none); whether the
pools bind (a worse optimum), are slack, or make the problem infeasible (the
time is then that of the proof); and whether everything was proven optimal.
The pools' exactness is tested against the oracles
(tests/python/test_placement_v2_terms.py); this only measures time.
"""

from __future__ import annotations

import argparse
import copy
import json
import statistics
import time
from pathlib import Path
from typing import Any

from exogpu import models
from exogpu.cluster import Cluster
from exogpu.placement import PlacementInfeasible, Problem, solve

GIB = 2**30
HERE = Path(__file__).resolve().parent


def mac_node(node: str = "mac") -> tuple[list[dict[str, Any]], dict[str, int]]:
    """An M2 Max with 64 GiB: the GPU may use 48 GiB of the RAM both share."""
    pool = f"{node}/host"
    devices = [
        {"id": f"{node}:metal:0", "node": node, "memory_bytes": 48 * GIB, "flops": 13.6e12,
         "memory_bandwidth": 400e9, "memory_pool": pool},
        {"id": f"{node}:cpu:0", "node": node, "memory_bytes": 64 * GIB, "flops": 1.2e12,
         "memory_bandwidth": 200e9, "memory_pool": pool},
    ]  # fmt: skip
    return devices, {pool: 64 * GIB}


def clusters() -> dict[str, dict[str, Any]]:
    mac, mac_pools = mac_node()
    alone = {
        "devices": mac,
        "memory_pools": mac_pools,
        "default_link": {"bandwidth": 1.25e8, "latency": 5e-4},
        "intra_node_link": {"bandwidth": 1e11, "latency": 5e-6},
    }
    home = json.loads((HERE / "clusters" / "home-mixed.json").read_text())
    home.pop("description", None)
    devices = [d for d in home["devices"] if d["node"] != "mac"] + mac
    for d in devices:
        d.pop("name", None)
        d.pop("speed_source", None)
        if d["node"] == "laptop":
            d["memory_pool"] = "laptop/host"
    devices.append(
        {"id": "laptop:cpu:0", "node": "laptop", "memory_bytes": 32 * GIB, "flops": 0.4e12,
         "memory_bandwidth": 68e9, "memory_pool": "laptop/host"}
    )  # fmt: skip
    mixed = {**home, "devices": devices, "memory_pools": {**mac_pools, "laptop/host": 32 * GIB}}
    # Two Mac Studios (192 and 128 GiB, their GPUs allowed 75 %) and a 4090:
    # two pools of two members each.
    studios = json.loads((HERE / "clusters" / "mac-studios-4090.json").read_text())
    studios.pop("description", None)
    devices = []
    pools = {}
    for d in studios["devices"]:
        d = {k: v for k, v in d.items() if k not in ("name", "speed_source")}
        if ":metal:" in d["id"]:
            ram = d["memory_bytes"] * 4 // 3
            pool = f"{d['node']}/host"
            pools[pool] = ram
            d["memory_pool"] = pool
            cpu = {"id": f"{d['node']}:cpu:0", "node": d["node"], "memory_bytes": ram,
                   "flops": 2.0e12, "memory_bandwidth": 400e9, "memory_pool": pool}  # fmt: skip
            devices.append(cpu)
        devices.append(d)
    two = {**studios, "devices": devices, "memory_pools": pools}
    return {"mac": alone, "home-mixed+cpus": mixed, "studios+cpus": two}


def without_pools(cluster: dict[str, Any]) -> dict[str, Any]:
    out = copy.deepcopy(cluster)
    out.pop("memory_pools", None)
    for d in out["devices"]:
        d.pop("memory_pool", None)
    return out


def timed(problem: Problem, objective: str, repeat: int) -> tuple[float, Any]:
    """Median seconds of the whole call and the result (None: proven infeasible)."""
    times = []
    result = None
    for i in range(repeat + 1):  # the first is a warm-up
        started = time.perf_counter()
        try:
            result = solve(problem, objective, time_budget=10.0)
        except PlacementInfeasible:
            result = None
        if i:
            times.append(time.perf_counter() - started)
    return statistics.median(times), result


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeat", type=int, default=11, help="timed runs per case (median)")
    args = parser.parse_args()
    # (model, dtype, context tokens, batch): from one that fits the GPU alone
    # to ones that need the shared RAM, or more of it than there is.
    cases = [
        ("llama-3-8b", "bf16", 4096, 1),
        ("llama-3-70b", "int4", 4096, 1),
        ("mixtral-8x7b", "bf16", 4096, 1),
        ("mixtral-8x7b", "bf16", 32768, 4),
        ("llama-3-70b", "fp8", 32768, 4),
        ("llama-3-70b", "bf16", 4096, 1),
        ("qwen2.5-72b", "bf16", 32768, 8),
        ("llama-3.1-405b", "int4", 8192, 1),
        ("llama-3.1-405b", "fp8", 8192, 1),
    ]
    print(f"{'cluster':<16} {'model (context x batch)':<30} {'objective':<10} {'none ms':>9} "
          f"{'pools ms':>9} {'ratio':>6} {'pools':>10} {'proven':>6}")  # fmt: skip
    for name, cluster in clusters().items():
        for model_name, dtype, context, batch in cases:
            model = models.get(model_name)
            for objective in ("latency", "throughput", "memory"):
                row = []
                for c in (without_pools(cluster), cluster):
                    problem = Problem.from_model(
                        model, Cluster.from_json(c), batch=batch, context_tokens=context,
                        dtype=dtype, memory_headroom=0.1,
                    )  # fmt: skip
                    row.append(timed(problem, objective, args.repeat))
                label = f"{model_name} {dtype} ({context}x{batch})"
                (none_s, none_r), (pool_s, pool_r) = row
                if none_r is None:
                    effect, proven = "-", True
                elif pool_r is None:
                    effect, proven = "infeasible", none_r.optimal
                else:
                    binds = pool_r.value > none_r.value * (1 + 1e-12)
                    effect = "bind" if binds else "slack"
                    proven = none_r.optimal and pool_r.optimal
                print(f"{name:<16} {label:<30} {objective:<10} {none_s * 1e3:>9.3f} "
                      f"{pool_s * 1e3:>9.3f} {pool_s / none_s:>6.2f} {effect:>10} "
                      f"{proven!s:>6}", flush=True)  # fmt: skip


if __name__ == "__main__":
    main()
