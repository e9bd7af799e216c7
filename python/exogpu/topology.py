"""Cluster topology: measured links between nodes, in the units of a
placement problem (bandwidth in bytes per second, latency in seconds).

Each node runs a probe server (``exogpu probe serve``). :func:`measure` runs
the network probe to every pair of nodes it can reach:

- pairs that include this machine (``local``) are measured from here,
  directly, one node after another;
- a pair of two other nodes ``(a, b)`` can only be measured *from a*: pass
  ``pair_measurer`` (called as ``pair_measurer(a, b)``, returning the
  :class:`~exogpu.netprobe.NetResult` of a probe run on ``a`` against ``b``)
  and those pairs are measured too. :func:`agent_pair_measurer` is one made
  of the node agents: ``b``'s agent starts a one-time probe server, ``a``'s
  agent runs the probe against it. Without a ``pair_measurer`` those pairs
  are listed in :attr:`Topology.unmeasured` and fall back to the default
  link, as the placement contract says.

A link's ``latency`` is half the median TCP round trip, its ``bandwidth`` the
TCP throughput over ``streams`` parallel streams divided by eight.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from exogpu import netprobe

if TYPE_CHECKING:
    from exogpu.agent.client import AgentClient


@dataclass(frozen=True)
class LinkSpec:
    """A link's figures: bytes per second and seconds."""

    bandwidth: float
    latency: float

    def transfer_time(self, nbytes: int) -> float:
        """Seconds to move ``nbytes`` across: latency + nbytes / bandwidth."""
        if nbytes < 0:
            raise ValueError(f"nbytes must be non-negative, got {nbytes}")
        return self.latency + nbytes / self.bandwidth


# The placement contract's example figures (docs/placement.md).
DEFAULT_LINK = LinkSpec(bandwidth=1.25e9, latency=5.0e-4)
INTRA_NODE_LINK = LinkSpec(bandwidth=2.5e10, latency=1.0e-5)


@dataclass(frozen=True)
class Node:
    """A node by name, with the address of its probe server."""

    name: str
    host: str
    port: int


@dataclass(frozen=True)
class Link:
    """A measured link between nodes ``a`` and ``b`` (symmetric)."""

    a: str
    b: str
    bandwidth: float
    latency: float
    result: netprobe.NetResult | None = field(default=None, compare=False, repr=False)

    @classmethod
    def from_result(cls, a: str, b: str, result: netprobe.NetResult) -> Link:
        bandwidth = result.bandwidth_bytes_per_second
        latency = result.one_way_latency_seconds
        if bandwidth is None or latency is None:
            raise ValueError(f"probe of {a} -> {b} measured no bandwidth or no round trip")
        return cls(a, b, bandwidth, latency, result)

    @property
    def spec(self) -> LinkSpec:
        return LinkSpec(self.bandwidth, self.latency)

    def transfer_time(self, nbytes: int) -> float:
        return self.spec.transfer_time(nbytes)

    def joins(self, x: str, y: str) -> bool:
        return {self.a, self.b} == {x, y}

    def to_dict(self) -> dict[str, Any]:
        return {"a": self.a, "b": self.b, "bandwidth": self.bandwidth, "latency": self.latency}


PairMeasurer = Callable[[Node, Node], netprobe.NetResult]


@dataclass(frozen=True)
class Topology:
    """Nodes, the links measured between them, and the pairs left out."""

    local: str
    nodes: tuple[str, ...]
    links: tuple[Link, ...]
    unmeasured: tuple[tuple[str, str], ...] = ()
    default_link: LinkSpec = DEFAULT_LINK
    intra_node_link: LinkSpec = INTRA_NODE_LINK

    def link(self, a: str, b: str) -> LinkSpec:
        """The link between nodes ``a`` and ``b`` by the contract's rule: the
        measured one; else ``intra_node_link`` for a node with itself; else
        ``default_link``."""
        for link in self.links:
            if link.joins(a, b):
                return link.spec
        return self.intra_node_link if a == b else self.default_link

    def bottleneck(self, nbytes: int | None = None) -> Link:
        """The slowest measured link: least bandwidth, or with ``nbytes`` the
        longest time to move that many bytes (latency counts then)."""
        if not self.links:
            raise ValueError("no measured links")
        if nbytes is None:
            return min(self.links, key=lambda link: (link.bandwidth, -link.latency))
        return max(self.links, key=lambda link: link.transfer_time(nbytes))

    def transfer_time(
        self, a: str, b: str, nbytes: int, devices: Mapping[str, str] | None = None
    ) -> float:
        """Seconds to move ``nbytes`` from ``a`` to ``b``: latency +
        nbytes / bandwidth of the link between them. ``a`` and ``b`` are
        node names, or device ids when ``devices`` maps device id -> node.
        A device to itself costs nothing."""
        if a == b:
            return 0.0
        if devices is not None:
            missing = [d for d in (a, b) if d not in devices]
            if missing:
                raise KeyError(f"device(s) not in the device map: {', '.join(missing)}")
            a, b = devices[a], devices[b]
        return self.link(a, b).transfer_time(nbytes)

    def links_section(
        self, devices: Sequence[Mapping[str, Any]] | None = None
    ) -> list[dict[str, Any]]:
        """The ``links`` of a placement problem. Without ``devices``, one
        entry per measured node pair. With the problem's ``devices`` (each
        with ``id`` and ``node``), one entry per pair of devices on two nodes
        joined by a measured link; pairs within a node and unmeasured pairs
        are left to ``intra_node_link`` and ``default_link``."""
        if devices is None:
            return [link.to_dict() for link in self.links]
        out = []
        for da, db in itertools.combinations(devices, 2):
            na, nb = str(da["node"]), str(db["node"])
            if na == nb:
                continue
            for link in self.links:
                if link.joins(na, nb):
                    out.append(
                        {
                            "a": da["id"],
                            "b": db["id"],
                            "bandwidth": link.bandwidth,
                            "latency": link.latency,
                        }
                    )
                    break
        return out

    def to_dict(self) -> dict[str, Any]:
        return {
            "local": self.local,
            "nodes": list(self.nodes),
            "links": self.links_section(),
            "unmeasured": [list(pair) for pair in self.unmeasured],
            "bottleneck": self.bottleneck().to_dict() if self.links else None,
            "default_link": vars(self.default_link).copy(),
            "intra_node_link": vars(self.intra_node_link).copy(),
        }


def agent_pair_measurer(
    agents: Mapping[str, AgentClient],
    probe_hosts: Mapping[str, str] | None = None,
    *,
    seconds: float = 2.0,
    streams: int = 4,
    rtt_seconds: float = 0.5,
) -> PairMeasurer:
    """A ``pair_measurer`` for :func:`measure` through the node agents.

    ``agents`` maps node name to a client of that node's agent. For a pair
    ``(a, b)``, ``b``'s agent starts a probe server with a one-time token
    (``compute.execute`` on ``b``) and ``a``'s agent measures against it
    (``compute.execute`` on ``a``). ``a`` connects to ``b``'s probe host:
    ``probe_hosts[b]`` when given, else the host of ``b``'s address. Raises
    ``KeyError`` for a node without an agent and
    :class:`~exogpu.agent.client.AgentError` when an agent refuses or the
    probe fails (status 502)."""
    hosts = dict(probe_hosts or {})

    def agent_of(node: Node) -> AgentClient:
        if node.name not in agents:
            raise KeyError(f"no agent client for node {node.name!r}")
        return agents[node.name]

    def measure_pair(a: Node, b: Node) -> netprobe.NetResult:
        source, server = agent_of(a), agent_of(b)
        started = server.start_network_probe()
        host = hosts.get(b.name, b.host)
        target = f"[{host}]:{started['port']}" if ":" in host else f"{host}:{started['port']}"
        return source.measure_network(
            target, started["token"], seconds=seconds, streams=streams, rtt_seconds=rtt_seconds
        )

    return measure_pair


def _nodes(nodes: Sequence[str] | Mapping[str, str]) -> list[Node]:
    items = nodes.items() if isinstance(nodes, Mapping) else [(n, n) for n in nodes]
    out = []
    for name, address in items:
        host, port = netprobe.parse_endpoint(address, netprobe.DEFAULT_PORT)
        out.append(Node(name, host, port))
    names = [n.name for n in out]
    if len(set(names)) != len(names):
        raise ValueError(f"node names must be unique: {names}")
    return out


def measure(
    nodes: Sequence[str] | Mapping[str, str],
    token: str | Mapping[str, str],
    *,
    seconds: float = 2.0,
    streams: int = 4,
    rtt_seconds: float = 0.5,
    local: str = "local",
    pair_measurer: PairMeasurer | None = None,
    default_link: LinkSpec = DEFAULT_LINK,
    intra_node_link: LinkSpec = INTRA_NODE_LINK,
) -> Topology:
    """Measure the links between this machine (node ``local``) and ``nodes``.

    ``nodes`` are ``"host:port"`` strings (each also its node name) or a
    mapping of node name to ``"host:port"``; ``token`` is one token for all or
    a mapping of node name to token. Only the pairs that include this machine
    are measured from here; the pairs between two remote nodes are measured
    by ``pair_measurer`` when given (the node agent's hook), else listed in
    ``Topology.unmeasured``. Tests run one at a time, so they never share the
    path. Raises :data:`exogpu.netprobe.ProbeError` when a node cannot be
    probed.
    """
    remote = _nodes(nodes)
    if local in {n.name for n in remote}:
        raise ValueError(f"the local node's name {local!r} is also a remote node's name")

    def token_for(node: Node) -> str:
        if isinstance(token, str):
            return token
        if node.name not in token:
            raise KeyError(f"no token for node {node.name!r}")
        return token[node.name]

    def probe(target: Node) -> netprobe.NetResult:
        return netprobe.measure(
            target.host,
            target.port,
            token_for(target),
            seconds=seconds,
            streams=streams,
            udp_rate=0,
            rtt_seconds=rtt_seconds,
        )

    links = [Link.from_result(local, n.name, probe(n)) for n in remote]
    unmeasured = []
    for a, b in itertools.combinations(remote, 2):
        if pair_measurer is None:
            unmeasured.append((a.name, b.name))
        else:
            links.append(Link.from_result(a.name, b.name, pair_measurer(a, b)))
    return Topology(
        local=local,
        nodes=(local, *(n.name for n in remote)),
        links=tuple(links),
        unmeasured=tuple(unmeasured),
        default_link=default_link,
        intra_node_link=intra_node_link,
    )
