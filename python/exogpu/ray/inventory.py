"""Connect to a running Ray cluster and take the inventory of every alive node.

Each node's inventory runs as a task pinned to that node
(``NodeAffinitySchedulingStrategy(soft=False)``: there or nowhere): exogpu's
devices, and their measured profile (cached on the node, measured quickly when
none is fresh). The devices come back with ids qualified by the node's name,
so one cluster can hold ``cpu:0`` of every node.
"""

from __future__ import annotations

import socket
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from exogpu import InvalidArgument
from exogpu.cluster import ClusterDevice, pool_name
from exogpu.ray._api import pinned, require_ray
from exogpu.ray.errors import RayClusterError, RayTimeout, RayUnavailable


@dataclass(frozen=True)
class RayNode:
    """An alive node of the Ray cluster, and its name in exogpu's plans."""

    node_id: str
    ip: str
    hostname: str
    name: str
    resources: Mapping[str, float] = field(default_factory=dict)


@dataclass(frozen=True)
class NodeInventory:
    node: RayNode
    devices: tuple[ClusterDevice, ...]
    speed_source: str
    """"measured" (the node's profile) or "table" (measurement was not asked for)."""
    exogpu_version: str
    seconds: float
    memory_pools: Mapping[str, int] = field(default_factory=dict)
    """The node's shared memories ("<node>/host": its RAM) by name, in bytes."""


def connect(address: str = "auto", *, timeout: float = 10.0, **init_kwargs: Any) -> None:
    """Connect this process to the running cluster at `address` (``HOST:PORT``
    or ``auto``). Never starts a cluster: without one there it raises
    RayUnavailable. An explicit address is first checked with a TCP
    connection bounded by `timeout`, so a wrong address fails fast."""
    if not isinstance(address, str) or not address.strip():
        raise InvalidArgument("a Ray address is required: HOST:PORT of the head, or 'auto'")
    ray = require_ray()
    if ray.is_initialized():
        return
    address = address.strip()
    if address != "auto":
        _check_reachable(address, timeout)
    init_kwargs.setdefault("logging_level", "WARNING")
    init_kwargs.setdefault("log_to_driver", False)
    try:
        ray.init(address=address, **init_kwargs)
    except (ConnectionError, RuntimeError, ValueError) as exc:
        raise RayUnavailable(f"cannot connect to a Ray cluster at {address}: {exc}") from None


def _check_reachable(address: str, timeout: float) -> None:
    from exogpu.netprobe import parse_endpoint

    host, port = parse_endpoint(address.removeprefix("ray://"), 6379)
    try:
        with socket.create_connection((host, port), timeout=timeout):
            pass
    except OSError as exc:
        reason = exc.strerror or type(exc).__name__
        raise RayUnavailable(f"no Ray cluster answers at {host}:{port}: {reason}") from None


def node_names(nodes: Sequence[Mapping[str, Any]]) -> list[str]:
    """A readable, unique name per node: the host names when they differ,
    else the addresses when they differ (nodes sharing a host), else the
    host name with the start of the node id."""
    hosts = [str(n.get("NodeManagerHostname") or "") for n in nodes]
    ips = [str(n.get("NodeManagerAddress") or "") for n in nodes]
    if all(hosts) and len(set(hosts)) == len(hosts):
        return hosts
    if all(ips) and len(set(ips)) == len(ips):
        return ips
    return [f"{h or 'node'}-{str(n['NodeID'])[:8]}" for h, n in zip(hosts, nodes, strict=True)]


def alive_nodes() -> list[RayNode]:
    """The cluster's alive nodes, ordered by address then id."""
    ray = require_ray()
    raw = sorted(
        (n for n in ray.nodes() if n.get("Alive")),
        key=lambda n: (_ip_key(str(n.get("NodeManagerAddress", ""))), str(n["NodeID"])),
    )
    if not raw:
        raise RayClusterError("the Ray cluster has no alive node")
    return [
        RayNode(
            node_id=str(n["NodeID"]),
            ip=str(n.get("NodeManagerAddress", "")),
            hostname=str(n.get("NodeManagerHostname", "")),
            name=name,
            resources={str(k): float(v) for k, v in dict(n.get("Resources", {})).items()},
        )
        for n, name in zip(raw, node_names(raw), strict=True)
    ]


def _ip_key(ip: str) -> tuple[int, ...] | tuple[str]:
    parts = ip.split(".")
    if len(parts) == 4 and all(p.isdigit() for p in parts):
        return tuple(int(p) for p in parts)
    return (ip,)


def _node_inventory(expected_node_id: str, measure: bool, quick: bool) -> dict[str, Any]:
    """Runs on the node: its devices and (when asked) measured speeds."""
    import ray

    import exogpu
    from exogpu import cluster as clusters

    start = time.monotonic()
    here = ray.get_runtime_context().get_node_id()
    # Ray leaves this function unannotated; name its type once here.
    node_ip: Callable[[], str] = ray.util.get_node_ip_address
    out: dict[str, Any] = {
        "node_id": here,
        "ip": node_ip(),
        "hostname": socket.gethostname(),
        "exogpu_version": exogpu.__version__,
    }
    if here != expected_node_id:
        out["error"] = f"the task meant for node {expected_node_id} ran on {here}"
        return out
    try:
        found = clusters.discover(node="here")
        source = "table"
        if measure:
            from exogpu import profile

            found = found.with_profile(profile.ensure_profile(quick=quick).measured())
            source = "measured"
    except (exogpu.Error, OSError, ValueError) as exc:
        out["error"] = f"{type(exc).__name__}: {exc}"
        return out
    out["devices"] = found.to_json()["devices"]
    out["memory_pools"] = dict(found.memory_pools)
    out["speed_source"] = source
    out["seconds"] = time.monotonic() - start
    return out


def inventory(
    nodes: Sequence[RayNode] | None = None,
    *,
    measure: bool = True,
    quick: bool = True,
    timeout: float = 180.0,
) -> list[NodeInventory]:
    """The devices of every node (all alive nodes by default), measured on
    each node at once. Raises RayTimeout naming the nodes that did not answer
    within `timeout` seconds, RayClusterError naming a node that failed."""
    ray = require_ray()
    nodes = list(alive_nodes() if nodes is None else nodes)
    task = ray.remote(num_cpus=0, max_retries=0)(_node_inventory)
    refs = [
        task.options(scheduling_strategy=pinned(n.node_id)).remote(n.node_id, measure, quick)
        for n in nodes
    ]
    _, pending = ray.wait(refs, num_returns=len(refs), timeout=timeout)
    if pending:
        late = [n.name for n, r in zip(nodes, refs, strict=True) if r in pending]
        for ref in pending:
            ray.cancel(ref, force=True)
        raise RayTimeout(
            f"inventory: node(s) {', '.join(late)} gave no answer within {timeout:g} s "
            "(is exogpu installed there, with a free worker?)"
        )
    out = []
    for node, ref in zip(nodes, refs, strict=True):
        try:
            raw = ray.get(ref, timeout=timeout)
        except Exception as exc:  # a RayTaskError wraps anything the node raised
            raise RayClusterError(
                f"inventory of node {node.name} ({node.ip}) failed: {exc}"
            ) from None
        if "error" in raw:
            raise RayClusterError(f"inventory of node {node.name} ({node.ip}): {raw['error']}")
        # The node named its pools "here/<pool>": they become "<node>/<pool>".
        def pool(local: Any, node: RayNode = node) -> str:
            return pool_name(node.name, str(local).split("/", 1)[-1])

        devices = tuple(
            ClusterDevice(
                id=f"{node.name}/{d['id']}",
                node=node.name,
                memory_bytes=int(d["memory_bytes"]),
                flops=float(d["flops"]),
                memory_bandwidth=float(d["memory_bandwidth"]),
                name=str(d.get("name", "")),
                free_memory_bytes=(
                    int(d["free_memory_bytes"]) if "free_memory_bytes" in d else None
                ),
                speed_source=str(d.get("speed_source", raw["speed_source"])),
                memory_pool=pool(d["memory_pool"]) if "memory_pool" in d else None,
                disk_read_bandwidth=(
                    float(d["disk_read_bandwidth"]) if "disk_read_bandwidth" in d else None
                ),
            )
            for d in raw["devices"]
        )
        out.append(
            NodeInventory(
                node=node,
                devices=devices,
                speed_source=str(raw["speed_source"]),
                exogpu_version=str(raw["exogpu_version"]),
                seconds=float(raw["seconds"]),
                memory_pools={
                    pool(k): int(v) for k, v in dict(raw.get("memory_pools", {})).items()
                },
            )
        )
    return out


def local_device_id(device_id: str) -> str:
    """The id a device has on its own node (the part after the node's name)."""
    return device_id.split("/", 1)[1] if "/" in device_id else device_id
