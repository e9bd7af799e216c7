"""exogpu on a running Ray cluster: inventory, link probes and placement.

Install with ``pip install 'exogpu[ray]'``. Importing this package does not
import Ray; the functions do, and raise :class:`RayUnavailable` without it.

    >>> from exogpu import ray as xray                      # doctest: +SKIP
    >>> surveyed = xray.survey("10.0.0.1:6379")              # inventory + links
    >>> problem = Problem.from_model(model, surveyed.cluster)
    >>> rp = xray.plan(surveyed, problem)                    # node id, IP, bundle per stage
    >>> pg, actors = xray.start_stage_actors(rp, MyStage)    # one actor per stage

It connects to a cluster (``ray.init(address=...)``) and never starts one.
"""

from __future__ import annotations

from exogpu.ray.errors import RayClusterError, RayTimeout, RayUnavailable
from exogpu.ray.inventory import NodeInventory, RayNode, alive_nodes, connect, inventory
from exogpu.ray.links import MeasuredPair, link_matrix
from exogpu.ray.plan import (
    NODE_ID_LABEL,
    RayCluster,
    RayPlan,
    StagePlan,
    build_cluster,
    placement_group,
    plan,
    ray_plan,
    start_stage_actors,
    survey,
)
from exogpu.ray.tls import ray_tls_env

__all__ = [
    "NODE_ID_LABEL",
    "MeasuredPair",
    "NodeInventory",
    "RayCluster",
    "RayClusterError",
    "RayNode",
    "RayPlan",
    "RayTimeout",
    "RayUnavailable",
    "StagePlan",
    "alive_nodes",
    "build_cluster",
    "connect",
    "inventory",
    "link_matrix",
    "placement_group",
    "plan",
    "ray_plan",
    "ray_tls_env",
    "start_stage_actors",
    "survey",
]
