"""From a Ray cluster to a plan: survey (inventory + link matrix), a Cluster,
the placement solved on it, and per stage where it runs in Ray's terms.

Stage ``i`` of a plan is bundle ``i`` of its placement group: one bundle per
stage, held on the stage's node by a per-bundle label selector on Ray's
built-in ``ray.io/node-id`` label, with strategy PACK (several stages may share
a node). Ray leaves a bundle for a node that does not exist PENDING without an
error, so every wait here has a timeout and says which node was missing.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from exogpu.cluster import INTRA_NODE_LINK, Cluster
from exogpu.placement import Placement, Problem, solve
from exogpu.ray._api import ray_module, require_ray
from exogpu.ray.errors import RayClusterError, RayTimeout
from exogpu.ray.inventory import (
    NodeInventory,
    RayNode,
    alive_nodes,
    connect,
    inventory,
    local_device_id,
)
from exogpu.ray.links import MeasuredPair, link_matrix
from exogpu.topology import DEFAULT_LINK, Topology

NODE_ID_LABEL = "ray.io/node-id"
STRATEGY = "PACK"


@dataclass(frozen=True)
class RayCluster:
    """What a survey of the Ray cluster found."""

    nodes: tuple[RayNode, ...]
    inventories: tuple[NodeInventory, ...]
    topology: Topology
    pairs: tuple[MeasuredPair, ...]
    cluster: Cluster
    timings: dict[str, float] = field(default_factory=dict)
    """Wall seconds of "inventory" and "links"."""

    def node(self, name: str) -> RayNode:
        for n in self.nodes:
            if n.name == name:
                return n
        raise KeyError(f"no node named {name!r}")


def build_cluster(inventories: Sequence[NodeInventory], topology: Topology) -> Cluster:
    """The placement cluster: every node's devices, and between devices of two
    nodes the measured link of those nodes (unmeasured pairs fall back to the
    default link, devices of one node to the intra-node link)."""
    devices = tuple(d for inv in inventories for d in inv.devices)
    if not devices:
        raise RayClusterError("no node of the Ray cluster has a device exogpu can use")
    entries = [{"id": d.id, "node": d.node} for d in devices]
    pools = {name: size for inv in inventories for name, size in inv.memory_pools.items()}
    cluster = Cluster(
        devices=devices,
        default_link={"bandwidth": DEFAULT_LINK.bandwidth, "latency": DEFAULT_LINK.latency},
        intra_node_link=dict(INTRA_NODE_LINK),
        links=tuple(topology.links_section(entries)),
        memory_pools=pools,
    )
    cluster.check()
    return cluster


def survey(
    address: str | None = None,
    *,
    measure: bool = True,
    link_seconds: float = 1.0,
    link_streams: int = 1,
    rtt_seconds: float = 0.3,
    inventory_timeout: float = 180.0,
    links_timeout: float = 60.0,
) -> RayCluster:
    """Inventory of every alive node, then the link matrix. Connects to
    `address` first when given (else the process must be connected already)."""
    if address is not None:
        connect(address)
    nodes = alive_nodes()
    start = time.monotonic()
    inventories = inventory(nodes, measure=measure, timeout=inventory_timeout)
    took_inventory = time.monotonic() - start
    start = time.monotonic()
    topology, pairs = link_matrix(
        nodes,
        seconds=link_seconds,
        streams=link_streams,
        rtt_seconds=rtt_seconds,
        timeout=links_timeout,
    )
    took_links = time.monotonic() - start
    return RayCluster(
        nodes=tuple(nodes),
        inventories=tuple(inventories),
        topology=topology,
        pairs=tuple(pairs),
        cluster=build_cluster(inventories, topology),
        timings={"inventory": took_inventory, "links": took_links},
    )


@dataclass(frozen=True)
class StagePlan:
    """Where one stage runs: its node (id and address), its devices (ids on
    that node), its layers, and its bundle in the plan's placement group."""

    bundle_index: int
    device: str
    devices: tuple[str, ...]
    node: RayNode
    first_layer: int
    last_layer: int

    @property
    def node_id(self) -> str:
        return self.node.node_id

    @property
    def ip(self) -> str:
        return self.node.ip

    def label_selector(self) -> dict[str, str]:
        return {NODE_ID_LABEL: self.node.node_id}

    def default_bundle(self) -> dict[str, float]:
        """One CPU, and one GPU when the stage's device is one Ray counts."""
        bundle = {"CPU": 1.0}
        if self.devices[0].split(":")[0] in ("cuda", "hip") and self.node.resources.get("GPU"):
            bundle["GPU"] = 1.0
        return bundle

    def to_json(self) -> dict[str, Any]:
        return {
            "bundle_index": self.bundle_index,
            "device": self.device,
            "devices": list(self.devices),
            "node": self.node.name,
            "node_id": self.node.node_id,
            "ip": self.node.ip,
            "first_layer": self.first_layer,
            "last_layer": self.last_layer,
        }


BundleResources = Mapping[str, float] | Callable[[StagePlan], Mapping[str, float]] | None


@dataclass(frozen=True)
class RayPlan:
    placement: Placement
    stages: tuple[StagePlan, ...]
    solve_seconds: float

    def bundles(self, resources: BundleResources = None) -> list[dict[str, float]]:
        """One bundle per stage: `resources` (a mapping, or a function of the
        stage), else each stage's default bundle."""
        out = []
        for s in self.stages:
            if resources is None:
                out.append(s.default_bundle())
            elif callable(resources):
                out.append(dict(resources(s)))
            else:
                out.append(dict(resources))
        return out

    def label_selectors(self) -> list[dict[str, str]]:
        return [s.label_selector() for s in self.stages]

    def to_json(self, resources: BundleResources = None) -> dict[str, Any]:
        return {
            "stages": [s.to_json() for s in self.stages],
            "placement_group": {
                "strategy": STRATEGY,
                "bundles": self.bundles(resources),
                "bundle_label_selector": self.label_selectors(),
            },
            "placement": self.placement.to_json(),
        }


def ray_plan(surveyed: RayCluster, placement: Placement) -> RayPlan:
    """The stages of `placement` (solved on ``surveyed.cluster``) in Ray's terms."""
    by_name = {n.name: n for n in surveyed.nodes}
    node_of = {d.id: d.node for d in surveyed.cluster.devices}
    stages = []
    for i, s in enumerate(placement.stages):
        if s.device not in node_of:
            raise RayClusterError(f"stage {i}: device {s.device} is not in the surveyed cluster")
        stages.append(
            StagePlan(
                bundle_index=i,
                device=s.device,
                devices=(local_device_id(s.device),),
                node=by_name[node_of[s.device]],
                first_layer=s.first_layer,
                last_layer=s.last_layer,
            )
        )
    return RayPlan(placement=placement, stages=tuple(stages), solve_seconds=placement.solve_seconds)


def plan(
    surveyed: RayCluster,
    problem: Problem,
    objective: str = "throughput",
    time_budget: float = 1.0,
) -> RayPlan:
    """Solve `problem` (built on ``surveyed.cluster``) and map its stages."""
    start = time.monotonic()
    placement = solve(problem, objective, time_budget)
    result = ray_plan(surveyed, placement)
    surveyed.timings["solve"] = time.monotonic() - start
    return result


def _missing_nodes_message(rp: RayPlan) -> str:
    alive = {n.node_id for n in alive_nodes()}
    missing = [s for s in rp.stages if s.node_id not in alive]
    if missing:
        listed = ", ".join(f"bundle {s.bundle_index} on node {s.node.name} ({s.node_id})"
                           for s in missing)
        return (f"{listed}: no such alive node; Ray keeps such a bundle PENDING "
                "without an error")
    return "every node is alive: a bundle's resources may exceed what its node has free"


def placement_group(
    rp: RayPlan,
    *,
    resources: BundleResources = None,
    timeout: float = 60.0,
    name: str = "",
    lifetime: str | None = None,
) -> Any:
    """Create the plan's placement group and wait (at most `timeout` seconds)
    until every bundle is on its node. Raises RayTimeout naming the bundles
    whose node is missing (the group is removed then), RayClusterError when
    Ray put a bundle elsewhere than the plan said."""
    groups = ray_module("ray.util.placement_group")
    pg = groups.placement_group(
        rp.bundles(resources),
        strategy=STRATEGY,
        name=name,
        lifetime=lifetime,
        bundle_label_selector=rp.label_selectors(),
    )
    if not pg.wait(timeout_seconds=timeout):
        state = groups.placement_group_table(pg).get("state", "unknown")
        message = _missing_nodes_message(rp)
        groups.remove_placement_group(pg)
        raise RayTimeout(
            f"placement group of {len(rp.stages)} stage(s) not ready within {timeout:g} s "
            f"(state {state}): {message}"
        )
    table = groups.placement_group_table(pg).get("bundles_to_node_id", {})
    wrong = [s for s in rp.stages if table.get(s.bundle_index) != s.node_id]
    if wrong:
        groups.remove_placement_group(pg)
        raise RayClusterError(
            "Ray placed bundle(s) "
            + ", ".join(f"{s.bundle_index} on {table.get(s.bundle_index)}" for s in wrong)
            + " instead of the planned nodes"
        )
    return pg


def start_stage_actors(
    rp: RayPlan,
    actor_class: Any,
    *args: Any,
    pg: Any = None,
    resources: BundleResources = None,
    timeout: float = 60.0,
    **kwargs: Any,
) -> tuple[Any, list[Any]]:
    """One actor per stage, in its bundle: ``actor_class(stage, *args,
    **kwargs)`` with the StagePlan first. `actor_class` is a plain class or a
    Ray actor class. Creates the placement group unless `pg` is given; waits
    at most `timeout` seconds for the group and the actors. Returns the group
    and the actor handles, in stage order."""
    ray = require_ray()
    strategies = ray_module("ray.util.scheduling_strategies")
    start = time.monotonic()
    if pg is None:
        pg = placement_group(rp, resources=resources, timeout=timeout)
    remote = actor_class if hasattr(actor_class, "options") else ray.remote(actor_class)
    bundles = rp.bundles(resources)
    actors = []
    for stage, bundle in zip(rp.stages, bundles, strict=True):
        extra = {k: v for k, v in bundle.items() if k not in ("CPU", "GPU")}
        actors.append(
            remote.options(
                scheduling_strategy=strategies.PlacementGroupSchedulingStrategy(
                    placement_group=pg, placement_group_bundle_index=stage.bundle_index
                ),
                num_cpus=bundle.get("CPU", 0.0),
                num_gpus=bundle.get("GPU", 0.0),
                resources=extra or None,
            ).remote(stage, *args, **kwargs)
        )
    left = max(0.1, timeout - (time.monotonic() - start))
    ready = [a.__ray_ready__.remote() for a in actors]
    done, pending = ray.wait(ready, num_returns=len(ready), timeout=left)
    if pending:
        late = [s.bundle_index for s, r in zip(rp.stages, ready, strict=True) if r in pending]
        for a in actors:
            ray.kill(a)
        raise RayTimeout(f"stage actor(s) of bundle(s) {late} not started within {timeout:g} s")
    try:
        ray.get(done, timeout=left)
    except Exception as exc:  # the constructor raised
        for a in actors:
            ray.kill(a)
        raise RayClusterError(f"a stage actor failed to start: {exc}") from None
    return pg, actors
