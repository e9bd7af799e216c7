"""A cluster for the placement search: devices, their speed, and the links.

Read from a JSON or TOML file (the contract's ``devices``, ``links``,
``default_link``, ``intra_node_link`` and ``memory_pools``), or discovered
here: memory from ``Device.memory_info()`` now, speed from the table of known
devices below (marked ``"speed_source": "table"``, or ``"estimate"`` for a
CPU) until the probe measures it; ``Cluster.with_profile()`` is where
measured figures go (the node's disk read bandwidth among them).

Devices whose memory is the host's (the CPU, integrated GPUs, a Mac's GPU, a
CPU Vulkan driver) share the node's host memory pool, ``"<node>/host"``, of
the host's physical memory, as the registry reports it: the placement counts
that RAM once.

A cluster file may also say how each node is reached, for the engines that
connect nodes (exogpu.placement.emit): ``"nodes": {"pc": {"address":
"192.168.1.10"}}`` (HOST or HOST:PORT); and the contract's ``endpoints``: the
host that gives every token's input and takes its output (llama.cpp's RPC
client) and its measured link to each device.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from exogpu import InvalidArgument
from exogpu.bounded_input import load_json, load_toml


@dataclass(frozen=True)
class ClusterDevice:
    id: str
    node: str
    memory_bytes: int
    flops: float
    memory_bandwidth: float
    name: str = ""
    free_memory_bytes: int | None = None
    speed_source: str = "given"  # "given", "table", "estimate" or "measured"
    memory_pool: str | None = None
    stage_overhead: float = 0.0
    disk_read_bandwidth: float | None = None


@dataclass(frozen=True)
class Cluster:
    devices: tuple[ClusterDevice, ...]
    default_link: dict[str, float]
    intra_node_link: dict[str, float] | None = None
    links: tuple[dict[str, Any], ...] = field(default_factory=tuple)
    memory_pools: dict[str, int] = field(default_factory=dict)
    # node -> "HOST" or "HOST:PORT"; not part of the placement contract
    addresses: dict[str, str] = field(default_factory=dict)
    # the contract's endpoints, as given (docs/placement.md)
    endpoints: dict[str, Any] | None = None

    @classmethod
    def from_file(cls, path: str | Path) -> Cluster:
        path = Path(path)
        try:
            raw = path.read_bytes()
        except OSError as e:
            raise InvalidArgument(f"cannot read cluster file {path}: {e.strerror}") from None
        what = f"cluster file {path}"
        if path.suffix.lower() == ".toml":
            data: Any = load_toml(raw, what=what, error=InvalidArgument)
        else:
            data = load_json(raw, what=what, error=InvalidArgument)
        return cls.from_json(data, where=str(path))

    @classmethod
    def from_json(cls, data: Any, where: str = "cluster") -> Cluster:
        if not isinstance(data, Mapping):
            raise InvalidArgument(f"{where} must be an object with devices and default_link")
        allowed = {
            "version",
            "devices",
            "links",
            "default_link",
            "intra_node_link",
            "memory_pools",
            "name",
            "description",
            "nodes",
            "endpoints",
        }
        unknown = sorted(str(k) for k in data if k not in allowed)
        if unknown:
            raise InvalidArgument(f"{where} has unknown field(s): {', '.join(unknown)}")
        # The contract's parser checks every field first and names the bad one.
        from exogpu.placement.problem import Problem

        contract = {k: v for k, v in data.items() if k not in ("name", "description", "nodes")}
        dummy = {"name": "probe", "weight_bytes": 0, "flops_per_token": 0.0}
        try:
            # A cluster file speaks the contract's newest version unless it says.
            Problem.from_json({"version": 2, "layers": [dummy], **contract})
        except InvalidArgument as e:
            raise InvalidArgument(f"{where}: {e}") from None
        devices = data["devices"]
        parsed = [
            ClusterDevice(
                id=str(d["id"]),
                node=str(d.get("node", d["id"])),
                memory_bytes=int(d["memory_bytes"]),
                flops=float(d["flops"]),
                memory_bandwidth=float(d["memory_bandwidth"]),
                name=str(d.get("name", "")),
                free_memory_bytes=(
                    int(d["free_memory_bytes"]) if "free_memory_bytes" in d else None
                ),
                speed_source=str(d.get("speed_source", "given")),
                memory_pool=str(d["memory_pool"]) if "memory_pool" in d else None,
                stage_overhead=float(d.get("stage_overhead", 0.0)),
                disk_read_bandwidth=(
                    float(d["disk_read_bandwidth"]) if "disk_read_bandwidth" in d else None
                ),
            )
            for d in devices
        ]
        links = data.get("links", [])
        cluster = cls(
            devices=tuple(parsed),
            default_link=dict(data["default_link"]),
            intra_node_link=dict(data["intra_node_link"]) if "intra_node_link" in data else None,
            links=tuple(dict(x) for x in links),
            memory_pools={str(k): int(v) for k, v in data.get("memory_pools", {}).items()},
            addresses=_node_addresses(data.get("nodes", {}), {d.node for d in parsed}, where),
            endpoints=dict(data["endpoints"]) if "endpoints" in data else None,
        )
        cluster.check()
        return cluster

    def check(self) -> None:
        """Validates through the placement contract's parser (field-named errors)."""
        from exogpu.placement.problem import Problem

        dummy = {"name": "probe", "weight_bytes": 0, "flops_per_token": 0.0}
        Problem.from_json({"version": 2, "layers": [dummy], **self.to_json()})

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "devices": [_device_json(d) for d in self.devices],
            "links": [dict(x) for x in self.links],
            "default_link": dict(self.default_link),
        }
        if self.intra_node_link is not None:
            out["intra_node_link"] = dict(self.intra_node_link)
        if self.memory_pools:
            out["memory_pools"] = dict(self.memory_pools)
        if self.endpoints is not None:
            out["endpoints"] = dict(self.endpoints)
        return out

    def with_profile(self, profile: Mapping[str, Any]) -> Cluster:
        """Replaces table figures with measured ones.

        `profile` maps device ids to measured figures, as the probe reports
        them: ``{"devices": {"cpu:0": {"flops": ..., "memory_bandwidth": ...,
        "disk_read_bandwidth": ...}}, "links": [{"a": ..., "b": ..., "bandwidth":
        ..., "latency": ...}]}``. Devices it names get ``speed_source
        "measured"`` (and their node's disk read bandwidth when measured);
        links it gives replace those of the same pair.
        """
        measured = profile.get("devices", {})
        if not isinstance(measured, Mapping):
            raise InvalidArgument("profile.devices must map device ids to figures")
        devices = []
        for d in self.devices:
            m = measured.get(d.id)
            if m is None:
                devices.append(d)
                continue
            disk = m.get("disk_read_bandwidth", d.disk_read_bandwidth)
            devices.append(
                replace(
                    d,
                    flops=float(m.get("flops", d.flops)),
                    memory_bandwidth=float(m.get("memory_bandwidth", d.memory_bandwidth)),
                    speed_source="measured",
                    disk_read_bandwidth=None if disk is None else float(disk),
                )
            )
        new_links = [dict(x) for x in profile.get("links", [])]
        pairs = {frozenset((x["a"], x["b"])) for x in new_links}
        kept = [x for x in self.links if frozenset((x["a"], x["b"])) not in pairs]
        cluster = replace(self, devices=tuple(devices), links=tuple(kept + new_links))
        cluster.check()
        return cluster


def _node_addresses(nodes: Any, known: set[str], where: str) -> dict[str, str]:
    """The file's ``nodes`` object as node -> address (checked in full where used)."""
    if not isinstance(nodes, Mapping):
        raise InvalidArgument(f"{where}: nodes must be an object of node names")
    out: dict[str, str] = {}
    for node, entry in nodes.items():
        at = f"{where}: nodes.{str(node)[:64]}"
        if node not in known:
            raise InvalidArgument(f"{at}: no device is on this node")
        if not isinstance(entry, Mapping) or set(entry) - {"address"}:
            raise InvalidArgument(f"{at} must be an object with an address")
        address = entry.get("address")
        if not isinstance(address, str) or not 0 < len(address) <= 300:
            raise InvalidArgument(f"{at}.address must be a HOST or HOST:PORT string")
        out[str(node)] = address
    return out


def _device_json(d: ClusterDevice) -> dict[str, Any]:
    out: dict[str, Any] = {
        "id": d.id,
        "node": d.node,
        "memory_bytes": d.memory_bytes,
        "flops": d.flops,
        "memory_bandwidth": d.memory_bandwidth,
        "speed_source": d.speed_source,
    }
    if d.name:
        out["name"] = d.name
    if d.free_memory_bytes is not None:
        out["free_memory_bytes"] = d.free_memory_bytes
    if d.memory_pool is not None:
        out["memory_pool"] = d.memory_pool
    if d.stage_overhead:
        out["stage_overhead"] = d.stage_overhead
    if d.disk_read_bandwidth is not None:
        out["disk_read_bandwidth"] = d.disk_read_bandwidth
    return out


# -- known devices -----------------------------------------------------------------
# Dense bf16/fp16 tensor FLOP/s and memory bandwidth (bytes/s) from the vendors'
# data sheets; matched against the device name, first match wins.
KNOWN_DEVICES: tuple[tuple[str, float, float], ...] = (
    (r"H200", 989e12, 4.8e12),
    (r"H100.*PCIe", 756e12, 2.0e12),
    (r"H100", 989e12, 3.35e12),
    (r"A100.*80", 312e12, 2.039e12),
    (r"A100", 312e12, 1.555e12),
    (r"L40S", 362e12, 0.864e12),
    (r"RTX 4090", 165e12, 1.008e12),
    (r"RTX 4080", 97.5e12, 0.717e12),
    (r"RTX 3090", 71e12, 0.936e12),
    (r"RTX 3080", 59.5e12, 0.760e12),
    (r"M4 Max", 18.4e12, 0.546e12),
    (r"M3 Max", 16.4e12, 0.4e12),
    (r"M2 Ultra", 27.2e12, 0.8e12),
    (r"M2 Max", 13.6e12, 0.4e12),
    (r"M1 Ultra", 21.2e12, 0.8e12),
    (r"M1 Max", 10.4e12, 0.4e12),
    (r"M[1-4] Pro", 7.4e12, 0.2e12),
    (r"Apple M[1-4]", 3.6e12, 0.1e12),
    (r"Radeon 780M", 8.9e12, 0.09e12),
    (r"Iris Xe", 2.2e12, 0.068e12),
    (r"UHD Graphics", 0.8e12, 0.04e12),
)

# A CPU core with two 256-bit FMA units: 32 fp32 FLOP per cycle at ~2.5 GHz;
# a desktop's dual-channel memory, conservatively.
CPU_FLOPS_PER_CORE = 32 * 2.5e9
CPU_MEMORY_BANDWIDTH = 20e9


def speed_from_table(name: str, kind: str, cores: int | None = None) -> tuple[float, float, str]:
    """(flops, memory_bandwidth, source) for a device by its name."""
    for pattern, flops, bandwidth in KNOWN_DEVICES:
        if re.search(pattern, name, re.IGNORECASE):
            return flops, bandwidth, "table"
    if kind == "cpu":
        return (cores or os.cpu_count() or 1) * CPU_FLOPS_PER_CORE, CPU_MEMORY_BANDWIDTH, "estimate"
    # An unknown GPU: an entry-level integrated part, so a plan never counts on it.
    return 0.8e12, 0.04e12, "estimate"


# Links when nothing is measured: a 10 GbE network between nodes, and a
# PCIe 4.0 x16 path between devices of one node.
DEFAULT_LINK = {"bandwidth": 1.25e9, "latency": 2.0e-4}
INTRA_NODE_LINK = {"bandwidth": 2.5e10, "latency": 1.0e-5}


def discover(node: str | None = None) -> Cluster:
    """The devices found here, one per physical device."""
    import socket

    import exogpu

    host = node or socket.gethostname() or "local"
    devices = []
    pools: dict[str, int] = {}
    for dev in exogpu.devices():
        info = dev.info
        memory = dev.memory_info()
        kind = str(info.kind)
        flops, bandwidth, source = speed_from_table(info.name, kind)
        pool = None
        if info.memory_pool is not None and info.memory_pool_bytes > 0:
            pool = pool_name(host, info.memory_pool)
            pools[pool] = max(pools.get(pool, 0), int(info.memory_pool_bytes))
        devices.append(
            ClusterDevice(
                id=info.id,
                node=host,
                memory_bytes=int(memory.total),
                free_memory_bytes=int(memory.free),
                flops=flops,
                memory_bandwidth=bandwidth,
                name=info.name,
                speed_source=source,
                memory_pool=pool,
            )
        )
    if not devices:
        raise InvalidArgument("no devices found here; give a cluster file with --cluster")
    return Cluster(
        devices=tuple(devices),
        default_link=dict(DEFAULT_LINK),
        intra_node_link=dict(INTRA_NODE_LINK),
        memory_pools=pools,
    )


def pool_name(node: str, pool: str) -> str:
    """A node's memory pool in a cluster: "<node>/<pool>" (pools of two nodes
    are two memories)."""
    return f"{node}/{pool}"


__all__ = [
    "KNOWN_DEVICES",
    "Cluster",
    "ClusterDevice",
    "discover",
    "pool_name",
    "speed_from_table",
]
