"""Placement problems the placement benchmarks share."""

from __future__ import annotations

import random
from pathlib import Path

from exogpu import cluster, models
from exogpu.placement import Problem

CLUSTERS = Path(__file__).resolve().parent / "clusters"
CLUSTER_NAMES = ("lab-3-nodes", "home-mixed", "two-servers", "mac-studios-4090", "hobbyist")

# (memory GiB, TFLOP/s, memory GB/s) of the device kinds in the scaling runs
KINDS = (
    (80, 989, 3350),
    (80, 312, 2039),
    (40, 312, 1555),
    (24, 165, 1008),
    (24, 71, 936),
    (192, 27.2, 800),
    (64, 10.4, 400),
    (32, 8.9, 90),
)


def llama70b_lab(context_tokens: int = 4096) -> Problem:
    """Llama 3 70B (bf16) on 8 heterogeneous devices over 3 nodes."""
    return Problem.from_model(
        models.get("llama-3-70b"),
        cluster.Cluster.from_file(CLUSTERS / "lab-3-nodes.json"),
        context_tokens=context_tokens,
        memory_headroom=0.1,
    )


def on_cluster(name: str, model: str, dtype: str, context_tokens: int = 4096) -> Problem:
    return Problem.from_model(
        models.get(model),
        cluster.Cluster.from_file(CLUSTERS / f"{name}.json"),
        dtype=dtype,
        context_tokens=context_tokens,
        memory_headroom=0.1,
    )


def synthetic(n_layers: int, n_devices: int, seed: int = 0) -> Problem:
    """n_layers Llama-70B-sized blocks (plus embed and head) on n_devices
    devices of mixed kinds spread over ceil(n_devices / 3) nodes."""
    rng = random.Random(seed)
    block = models.get("llama-3-70b").layers("bf16", context_tokens=4096)[1]
    layers = [
        {
            "name": f"block{i}",
            "weight_bytes": block.weight_bytes,
            "kv_bytes_per_token": block.kv_bytes_per_token,
            "flops_per_token": block.flops_per_token,
            "activation_bytes": block.activation_bytes,
        }
        for i in range(n_layers)
    ]
    need = n_layers * (block.weight_bytes + 4096 * block.kv_bytes_per_token)
    kinds = [KINDS[i % len(KINDS)] for i in range(n_devices)]
    total_kind_memory = sum(k[0] for k in kinds)
    devices = []
    for i, (mem, tflops, gbs) in enumerate(kinds):
        devices.append(
            {
                "id": f"dev{i}",
                "node": f"node{i // 3}",
                # memory in proportion to the kind's, the cluster holding twice the model
                "memory_bytes": int(2 * need * mem / total_kind_memory),
                "flops": tflops * 1e12 * rng.uniform(0.9, 1.1),
                "memory_bandwidth": gbs * 1e9 * rng.uniform(0.9, 1.1),
            }
        )
    return Problem.from_json(
        {
            "layers": layers,
            "devices": devices,
            "default_link": {"bandwidth": 1.25e9, "latency": 2e-4},
            "intra_node_link": {"bandwidth": 2.5e10, "latency": 1e-5},
            "workload": {"batch": 1, "context_tokens": 4096},
            "constraints": {"memory_headroom": 0.1},
        }
    )
