"""The link matrix of a Ray cluster, measured with exogpu's native network probe.

For each pair of nodes ``(a, b)`` a probe server runs in an actor pinned to
``b``, bound to ``b``'s address, with a fresh one-time token (the server is
closed as soon as the pair is measured, so the token dies with it); the client
runs as a task pinned to ``a``. Pairs are measured one at a time, so that no
two measurements share a path, and the whole matrix is bounded in time: a pair
that cannot finish within what is left is not started, and is listed in
``Topology.unmeasured`` (the plan then falls back to the default link).
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from exogpu import netprobe
from exogpu.ray._api import pinned, require_ray
from exogpu.ray.errors import RayClusterError
from exogpu.ray.inventory import RayNode, alive_nodes
from exogpu.topology import DEFAULT_LINK, INTRA_NODE_LINK, Link, Topology


class ProbeServerActor:
    """Runs on one node: one probe server at a time, each with a new token."""

    def __init__(self) -> None:
        self._server: netprobe.Server | None = None

    def start(self, max_test_seconds: float) -> tuple[str, int, str, str]:
        """(address, port, token, node id) of a new server on this node."""
        import ray

        self.stop()
        node_ip: Callable[[], str] = ray.util.get_node_ip_address  # unannotated in Ray
        ip = node_ip()
        self._server = netprobe.Server(
            bind=ip,
            port=0,
            token=netprobe.new_token(),
            max_sessions=1,
            max_connections=16,
            max_test_seconds=max_test_seconds,
        )
        node_id = ray.get_runtime_context().get_node_id()
        return ip, self._server.port, self._server.token, node_id

    def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            self._server = None


def _probe_client(
    host: str, port: int, token: str, seconds: float, streams: int, rtt_seconds: float
) -> dict[str, Any]:
    """Runs on the measuring node."""
    import ray

    result = netprobe.measure(
        host, port, token, seconds=seconds, streams=streams, udp_rate=0, rtt_seconds=rtt_seconds
    )
    return {"result": result.to_dict(), "node_id": ray.get_runtime_context().get_node_id()}


@dataclass(frozen=True)
class MeasuredPair:
    client: RayNode
    server: RayNode
    seconds: float
    """Wall time of this pair, server start to result."""


def link_matrix(
    nodes: Sequence[RayNode] | None = None,
    *,
    seconds: float = 1.0,
    streams: int = 1,
    rtt_seconds: float = 0.3,
    timeout: float = 60.0,
) -> tuple[Topology, list[MeasuredPair]]:
    """Measure every pair of `nodes` (all alive nodes by default), one pair at
    a time, within `timeout` seconds in all. Returns the topology (links in
    the units of a placement problem) and how long each pair took. Raises
    RayClusterError naming the pair when a probe fails."""
    ray = require_ray()
    nodes = list(alive_nodes() if nodes is None else nodes)
    if len({n.name for n in nodes}) != len(nodes):
        raise RayClusterError("node names must be unique")
    deadline = time.monotonic() + timeout
    # A pair's own bound: the probe's run time plus connecting and scheduling.
    per_pair = rtt_seconds + 2 * seconds + 15.0
    actor_class = ray.remote(num_cpus=0, max_restarts=0)(ProbeServerActor)
    client_task = ray.remote(num_cpus=0, max_retries=0)(_probe_client)
    pairs = list(itertools.combinations(nodes, 2))
    # One server actor per node that serves a pair, started at once, in parallel.
    servers = {b.node_id: actor_class.options(scheduling_strategy=pinned(b.node_id)).remote()
               for _, b in pairs}
    links: list[Link] = []
    measured: list[MeasuredPair] = []
    unmeasured: list[tuple[str, str]] = []
    try:
        for a, b in pairs:
            left = deadline - time.monotonic()
            if left <= 0:
                unmeasured.append((a.name, b.name))
                continue
            bound = min(left, per_pair)
            start = time.monotonic()
            actor = servers[b.node_id]
            try:
                host, port, token, server_node = ray.get(
                    actor.start.remote(seconds + rtt_seconds + 10.0), timeout=bound
                )
                if server_node != b.node_id:
                    raise RayClusterError(f"probe server for {b.name} ran on node {server_node}")
                ref = client_task.options(scheduling_strategy=pinned(a.node_id)).remote(
                    host, port, token, seconds, streams, rtt_seconds
                )
                try:
                    got = ray.get(ref, timeout=max(0.1, bound - (time.monotonic() - start)))
                except ray.exceptions.GetTimeoutError:
                    ray.cancel(ref, force=True)
                    raise
                finally:
                    ray.get(actor.stop.remote(), timeout=10.0)
            except ray.exceptions.GetTimeoutError:
                unmeasured.append((a.name, b.name))
                continue
            except RayClusterError:
                raise
            except Exception as exc:  # a RayTaskError wraps the probe's own error
                raise RayClusterError(f"probe {a.name} -> {b.name} failed: {exc}") from None
            if got["node_id"] != a.node_id:
                raise RayClusterError(f"probe client for {a.name} ran on node {got['node_id']}")
            result = netprobe.NetResult.from_dict(got["result"])
            links.append(Link.from_result(a.name, b.name, result))
            measured.append(MeasuredPair(a, b, time.monotonic() - start))
    finally:
        for actor in servers.values():
            ray.kill(actor)
    topology = Topology(
        local=nodes[0].name,
        nodes=tuple(n.name for n in nodes),
        links=tuple(links),
        unmeasured=tuple(unmeasured),
        default_link=DEFAULT_LINK,
        intra_node_link=INTRA_NODE_LINK,
    )
    return topology, measured
