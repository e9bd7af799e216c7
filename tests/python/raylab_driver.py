"""The Ray lab's driver: runs inside a lab namespace (see test_ray_cluster.py),
does the whole job through exogpu.ray, and prints one JSON line of what it saw.

usage: raylab_driver.py HEAD_ADDRESS SLOW_NODE_IP
"""

from __future__ import annotations

import json
import sys
import time
from dataclasses import replace
from typing import Any

import ray

from exogpu import ray as xray
from exogpu.cluster import Cluster
from exogpu.placement import Problem, evaluate


class StageActor:
    """What a stage would be: here it only says where it runs."""

    def __init__(self, stage: xray.StagePlan) -> None:
        self.stage = stage

    def where(self) -> dict[str, Any]:
        return {
            "bundle_index": self.stage.bundle_index,
            "node_id": ray.get_runtime_context().get_node_id(),
            "ip": ray.util.get_node_ip_address(),
        }


def activation_heavy_problem(cluster: Cluster) -> Problem:
    """Six layers that need at least two nodes' memory, with large activations:
    a hop costs little on a fast link and dominates on a slow one."""
    usable = 0.9 * min(d.memory_bytes for d in cluster.devices)
    weight = int(usable / 3.2)  # three layers fit on a node, four do not
    layers = [
        {"name": f"block{i}", "weight_bytes": weight, "flops_per_token": 0.0,
         "activation_bytes": 64 << 20}
        for i in range(6)
    ]
    return Problem.from_json(
        {"version": 2, "layers": layers, **cluster.to_json(),
         "constraints": {"memory_headroom": 0.1}}
    )


def main() -> None:
    address, slow_ip = sys.argv[1], sys.argv[2]
    out: dict[str, Any] = {}
    start = time.monotonic()
    xray.connect(address)
    out["connect_seconds"] = time.monotonic() - start
    surveyed = xray.survey(link_seconds=1.5, links_timeout=60.0)
    out["timings"] = dict(surveyed.timings)
    out["nodes"] = [{"name": n.name, "node_id": n.node_id, "ip": n.ip} for n in surveyed.nodes]
    out["inventory"] = [
        {"node_id": inv.node.node_id, "devices": [d.id for d in inv.devices],
         "speed_source": inv.speed_source, "seconds": inv.seconds}
        for inv in surveyed.inventories
    ]
    out["links"] = [
        {"a": link.a, "b": link.b, "bandwidth_bps": link.bandwidth * 8, "latency": link.latency}
        for link in surveyed.topology.links
    ]
    out["unmeasured"] = [list(p) for p in surveyed.topology.unmeasured]
    out["pair_seconds"] = [p.seconds for p in surveyed.pairs]

    slow = next(n for n in surveyed.nodes if n.ip == slow_ip)
    problem = activation_heavy_problem(surveyed.cluster)
    rp = xray.plan(surveyed, problem)
    out["solve_seconds"] = surveyed.timings["solve"]
    out["plan"] = rp.to_json()
    out["slow_node"] = slow.name

    # The best use of the slow node: two layers on each node, the slow one last
    # (one hop over its link), priced on the links as measured.
    dev = {d.node: d.id for d in surveyed.cluster.devices}
    others = [n.name for n in surveyed.nodes if n.name != slow.name]
    with_slow = evaluate(
        problem, [(dev[others[0]], 0, 1), (dev[others[1]], 2, 3), (dev[slow.name], 4, 5)]
    )
    out["with_slow_node"] = with_slow.to_json()

    pg, actors = xray.start_stage_actors(rp, StageActor, timeout=60.0)
    out["actors"] = ray.get([a.where.remote() for a in actors], timeout=30)
    for a in actors:
        ray.kill(a)
    ray.util.remove_placement_group(pg)

    # A bundle for a node that does not exist: Ray keeps it PENDING silently.
    ghost_node = replace(rp.stages[0].node, node_id="f" * 56, name="ghost")
    ghost = replace(rp, stages=(replace(rp.stages[0], node=ghost_node),))
    start = time.monotonic()
    try:
        xray.placement_group(ghost, timeout=3.0)
        out["ghost"] = {"error": None}
    except xray.RayTimeout as exc:
        out["ghost"] = {"error": str(exc), "type": type(exc).__name__,
                        "seconds": time.monotonic() - start}
    ray.shutdown()
    print(json.dumps(out))


if __name__ == "__main__":
    main()
