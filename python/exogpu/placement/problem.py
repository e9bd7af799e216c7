"""The placement problem of docs/placement.md, parsed and validated.

Every check names the field it rejects (``devices[2].flops must be positive and
finite, got -1``) and raises :class:`exogpu.InvalidArgument`, a ``ValueError``.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from exogpu import InvalidArgument, _core
from exogpu.bounded_input import load_json, load_toml

if TYPE_CHECKING:
    from exogpu.cluster import Cluster
    from exogpu.models import Model

# Byte counts stay below 2**53 so that the native search compares them exactly.
MAX_BYTES = 2**53
# The contract's versions this parser reads; it writes the newest.
VERSIONS = (1, 2)
VERSION = 2
# What the native layer takes for "reads all its weights".
_READ_ALL_WEIGHTS = 2**64 - 1


@dataclass(frozen=True)
class Layer:
    name: str
    weight_bytes: int  # resident
    kv_bytes_per_token: int
    flops_per_token: float
    activation_bytes: int
    # Weight bytes streamed per decode step (version 2); None: weight_bytes.
    read_bytes_per_token: int | None = None

    @property
    def read_weight_bytes(self) -> int:
        return self.weight_bytes if self.read_bytes_per_token is None else self.read_bytes_per_token


@dataclass(frozen=True)
class DeviceSpec:
    id: str
    node: str
    memory_bytes: int
    flops: float
    memory_bandwidth: float
    # Only the free-memory-proportional baseline reads it (llama.cpp's rule);
    # when absent that baseline splits by memory_bytes.
    free_memory_bytes: int | None = None
    # Version 2: the physical memory this device shares with others (None:
    # its own), a fixed time every stage on it adds per decode step, and the
    # rate its node reads from disk (None: it cannot offload to disk).
    memory_pool: str | None = None
    stage_overhead: float = 0.0
    disk_read_bandwidth: float | None = None


@dataclass(frozen=True)
class Link:
    bandwidth: float
    latency: float


@dataclass(frozen=True)
class LinkSpec:
    a: str
    b: str
    bandwidth: float
    latency: float


@dataclass(frozen=True)
class EndpointLink:
    device: str
    bandwidth: float
    latency: float


@dataclass(frozen=True)
class Endpoints:
    """A host outside the placed stages that gives every token's input and
    takes its output (llama.cpp's RPC client keeps the embedding and receives
    the logits): the first stage pays an entry hop from it, the last an exit
    hop back to it."""

    node: str
    input_bytes: int = 0
    output_bytes: int = 0
    links: tuple[EndpointLink, ...] = ()


@dataclass(frozen=True)
class Problem:
    layers: tuple[Layer, ...]
    devices: tuple[DeviceSpec, ...]
    default_link: Link
    links: tuple[LinkSpec, ...] = ()
    intra_node_link: Link | None = None
    batch: int = 1
    context_tokens: int = 0
    memory_headroom: float = 0.0
    fixed_order: bool = False
    ring: bool = False
    # Version 2: pool capacities (bytes) by name; pools that devices name and
    # this leaves out have their largest member's memory_bytes.
    memory_pools: Mapping[str, int] = field(default_factory=dict, hash=False)
    endpoints: Endpoints | None = None
    allow_disk_offload: bool = False
    _pairs: dict[frozenset[str], Link] = field(default_factory=dict, compare=False, repr=False)

    def __post_init__(self) -> None:
        _check_problem(self)
        pairs = {frozenset((x.a, x.b)): Link(x.bandwidth, x.latency) for x in self.links}
        object.__setattr__(self, "_pairs", pairs)
        object.__setattr__(self, "memory_pools", dict(self.memory_pools))

    # -- links ---------------------------------------------------------------
    def link(self, a: str, b: str) -> Link:
        """The link between two distinct devices, resolved as the contract says."""
        found = self._pairs.get(frozenset((a, b)))
        if found is not None:
            return found
        node = {d.id: d.node for d in self.devices}
        if node[a] == node[b]:
            return self.intra_node_link or self.default_link
        return self.default_link

    def endpoint_link(self, device_id: str) -> Link:
        """The link between the endpoints and a device, resolved as the contract says."""
        if self.endpoints is None:
            raise InvalidArgument("the problem has no endpoints")
        for x in self.endpoints.links:
            if x.device == device_id:
                return Link(x.bandwidth, x.latency)
        node = {d.id: d.node for d in self.devices}[device_id]
        if node == self.endpoints.node:
            return self.intra_node_link or self.default_link
        return self.default_link

    def pool_capacities(self) -> dict[str, int]:
        """Every pool the devices name, with its capacity in bytes."""
        out: dict[str, int] = {}
        for d in self.devices:
            if d.memory_pool is not None:
                out[d.memory_pool] = max(out.get(d.memory_pool, 0), d.memory_bytes)
        for name in out:
            out[name] = self.memory_pools.get(name, out[name])
        return out

    def usable_bytes(self, total: int) -> int:
        """Whole bytes of `total` left after the headroom (docs/placement.md)."""
        return math.floor((1.0 - self.memory_headroom) * total)

    def device_index(self, device_id: str) -> int:
        for i, d in enumerate(self.devices):
            if d.id == device_id:
                return i
        raise InvalidArgument(f"unknown device id {device_id!r}")

    def read_bytes(self, layer: int) -> int:
        """Bytes layer `layer` reads per decode step: streamed weights + KV cache."""
        x = self.layers[layer]
        return x.read_weight_bytes + self.batch * self.context_tokens * x.kv_bytes_per_token

    def resident_bytes(self, layer: int) -> int:
        x = self.layers[layer]
        return x.weight_bytes + self.batch * self.context_tokens * x.kv_bytes_per_token

    def total_resident_bytes(self) -> int:
        return sum(self.resident_bytes(i) for i in range(len(self.layers)))

    # -- conversions ---------------------------------------------------------
    @classmethod
    def from_json(cls, source: Mapping[str, Any] | str | Path) -> Problem:
        """From the contract's input form: a dict, a JSON text, or a path to a file."""
        return _parse(_load(source))

    @classmethod
    def from_model(
        cls,
        model: Model,
        cluster: Cluster,
        batch: int = 1,
        context_tokens: int = 0,
        dtype: str = "bf16",
        memory_headroom: float = 0.0,
        fixed_order: bool = False,
        ring: bool = False,
        allow_disk_offload: bool = False,
        activation_dtype: str = "bf16",
    ) -> Problem:
        """The problem of placing `model` (exogpu.models) on `cluster` (exogpu.cluster),
        its stages handing on hidden states in `activation_dtype`."""
        return _parse(
            {
                "version": VERSION,
                "layers": [
                    _layer_dict(x)
                    for x in model.layers(
                        dtype=dtype,
                        context_tokens=context_tokens,
                        batch=batch,
                        activation_dtype=activation_dtype,
                    )
                ],
                **cluster.to_json(),
                "workload": {"batch": batch, "context_tokens": context_tokens},
                "constraints": {
                    "memory_headroom": memory_headroom,
                    "fixed_order": fixed_order,
                    "ring": ring,
                    "allow_disk_offload": allow_disk_offload,
                },
            }
        )

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "version": VERSION,
            "layers": [_layer_dict(x) for x in self.layers],
            "devices": [_device_dict(d) for d in self.devices],
            "links": [
                {"a": x.a, "b": x.b, "bandwidth": x.bandwidth, "latency": x.latency}
                for x in self.links
            ],
            "default_link": _link_dict(self.default_link),
            "workload": {"batch": self.batch, "context_tokens": self.context_tokens},
            "constraints": {
                "memory_headroom": self.memory_headroom,
                "fixed_order": self.fixed_order,
                "ring": self.ring,
            },
        }
        if self.intra_node_link is not None:
            out["intra_node_link"] = _link_dict(self.intra_node_link)
        if self.memory_pools:
            out["memory_pools"] = dict(self.memory_pools)
        if self.endpoints is not None:
            out["endpoints"] = _endpoints_dict(self.endpoints)
        if self.allow_disk_offload:
            out["constraints"]["allow_disk_offload"] = True
        return out

    def to_native(self) -> Any:
        """The `_core.PlacementProblem` the native search takes."""
        native = _core.PlacementProblem()
        capacities = self.pool_capacities()
        pool_index = {name: i for i, name in enumerate(capacities)}
        pools = []
        for name, capacity in capacities.items():
            pool = _core.PlacementMemoryPool()
            pool.name = name
            pool.capacity_bytes = capacity
            pools.append(pool)
        devices = []
        for d in self.devices:
            nd = _core.PlacementDevice()
            nd.id = d.id
            nd.node = d.node
            nd.memory_bytes = d.memory_bytes
            nd.free_memory_bytes = d.free_memory_bytes or 0
            nd.flops = d.flops
            nd.memory_bandwidth = d.memory_bandwidth
            nd.memory_pool = -1 if d.memory_pool is None else pool_index[d.memory_pool]
            nd.stage_overhead = d.stage_overhead
            nd.disk_read_bandwidth = d.disk_read_bandwidth or 0.0
            devices.append(nd)
        links = []
        for a in self.devices:
            for b in self.devices:
                nk = _core.PlacementLink()
                if a.id != b.id:
                    link = self.link(a.id, b.id)
                    nk.bandwidth = link.bandwidth
                    nk.latency = link.latency
                links.append(nk)
        native.set_layers(
            [x.name for x in self.layers],
            [x.weight_bytes for x in self.layers],
            [x.kv_bytes_per_token for x in self.layers],
            [x.flops_per_token for x in self.layers],
            [x.activation_bytes for x in self.layers],
            [
                _READ_ALL_WEIGHTS if x.read_bytes_per_token is None else x.read_bytes_per_token
                for x in self.layers
            ],
        )
        native.devices = devices
        native.links = links
        native.batch = self.batch
        native.context_tokens = self.context_tokens
        native.memory_headroom = self.memory_headroom
        native.fixed_order = self.fixed_order
        native.ring = self.ring
        native.memory_pools = pools
        native.allow_disk_offload = self.allow_disk_offload
        if self.endpoints is not None:
            ends = _core.PlacementEndpoints()
            ends.node = self.endpoints.node
            ends.input_bytes = self.endpoints.input_bytes
            ends.output_bytes = self.endpoints.output_bytes
            resolved = []
            for d in self.devices:
                link = self.endpoint_link(d.id)
                nk = _core.PlacementLink()
                nk.bandwidth = link.bandwidth
                nk.latency = link.latency
                resolved.append(nk)
            ends.links = resolved
            native.endpoints = [ends]
        return native


# -- parsing ---------------------------------------------------------------------

_TOP_KEYS = {
    "version",
    "layers",
    "devices",
    "links",
    "default_link",
    "intra_node_link",
    "workload",
    "constraints",
}
_TOP_KEYS_V2 = _TOP_KEYS | {"memory_pools", "endpoints"}
_LAYER_KEYS = {"name", "weight_bytes", "kv_bytes_per_token", "flops_per_token", "activation_bytes"}
_LAYER_KEYS_V2 = _LAYER_KEYS | {"read_bytes_per_token"}
_DEVICE_KEYS = {
    "id",
    "node",
    "memory_bytes",
    "flops",
    "memory_bandwidth",
    "free_memory_bytes",
    # descriptive extras a cluster file may carry; the search ignores them
    "name",
    "speed_source",
    "memory_source",
}
_DEVICE_KEYS_V2 = _DEVICE_KEYS | {"memory_pool", "stage_overhead", "disk_read_bandwidth"}
_LINK_KEYS = {"a", "b", "bandwidth", "latency"}
_CONSTRAINT_KEYS = {"memory_headroom", "fixed_order", "ring"}
_CONSTRAINT_KEYS_V2 = _CONSTRAINT_KEYS | {"allow_disk_offload"}


def _load(source: Mapping[str, Any] | str | Path) -> Any:
    """A problem as data: a dict as is, else JSON text or a JSON / TOML file,
    through exogpu.bounded_input (size, depth and number bounds)."""
    if isinstance(source, Mapping):
        return source
    if not isinstance(source, (str, Path)):
        raise InvalidArgument(
            f"problem must be a Problem, a dict, JSON text or a path, got {type(source).__name__}"
        )
    if isinstance(source, Path) or (
        isinstance(source, str) and not source.lstrip().startswith("{")
    ):
        path = Path(source)
        try:
            raw = path.read_bytes()
        except OSError as e:
            raise InvalidArgument(f"cannot read problem file {path}: {e.strerror}") from None
        if path.suffix.lower() == ".toml":
            return load_toml(raw, what=f"problem file {path}", error=InvalidArgument)
        return load_json(raw, what=f"problem file {path}", error=InvalidArgument)
    return load_json(source, what="problem", error=InvalidArgument)


def _object(value: Any, where: str, allowed: set[str]) -> Mapping[str, Any]:
    if not isinstance(value, Mapping):
        raise InvalidArgument(f"{where} must be an object, got {_show(value)}")
    unknown = sorted(str(k) for k in value if k not in allowed)
    if unknown:
        raise InvalidArgument(f"{where} has unknown field(s): {', '.join(unknown)}")
    return value


def _show(value: Any) -> str:
    text = (
        json.dumps(value)
        if isinstance(value, (int, float, str, bool, type(None)))
        else type(value).__name__
    )
    return text if len(text) <= 40 else text[:37] + "..."


def _number(
    m: Mapping[str, Any], key: str, where: str, *, positive: bool, default: Any = None
) -> float:
    if key not in m:
        if default is not None:
            return float(default)
        raise InvalidArgument(f"{where}.{key} is required")
    v = m[key]
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        raise InvalidArgument(f"{where}.{key} must be a number, got {_show(v)}")
    try:
        x = float(v)
    except OverflowError:
        raise InvalidArgument(f"{where}.{key} is too large for a float") from None
    if positive and not (math.isfinite(x) and x > 0):
        raise InvalidArgument(f"{where}.{key} must be positive and finite, got {_show(v)}")
    if not positive and not (math.isfinite(x) and x >= 0):
        raise InvalidArgument(f"{where}.{key} must be non-negative and finite, got {_show(v)}")
    return x


def _integer(
    m: Mapping[str, Any], key: str, where: str, *, minimum: int, default: int | None = None
) -> int:
    if key not in m:
        if default is not None:
            return default
        raise InvalidArgument(f"{where}.{key} is required")
    v = m[key]
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        raise InvalidArgument(f"{where}.{key} must be an integer, got {_show(v)}")
    if isinstance(v, float) and not (math.isfinite(v) and v.is_integer()):
        raise InvalidArgument(f"{where}.{key} must be an integer, got {_show(v)}")
    n = int(v)
    if n < minimum:
        word = "positive" if minimum == 1 else "non-negative"
        raise InvalidArgument(f"{where}.{key} must be {word}, got {_show(v)}")
    if n >= MAX_BYTES:
        raise InvalidArgument(f"{where}.{key} must be below 2**53, got {_show(v)}")
    return n


def _string(m: Mapping[str, Any], key: str, where: str, default: str | None = None) -> str:
    if key not in m:
        if default is not None:
            return default
        raise InvalidArgument(f"{where}.{key} is required")
    v = m[key]
    if not isinstance(v, str) or not v:
        raise InvalidArgument(f"{where}.{key} must be a non-empty string, got {_show(v)}")
    return v


def _bool(m: Mapping[str, Any], key: str, where: str) -> bool:
    v = m.get(key, False)
    if not isinstance(v, bool):
        raise InvalidArgument(f"{where}.{key} must be true or false, got {_show(v)}")
    return v


def _list(m: Mapping[str, Any], key: str, *, required: bool) -> Sequence[Any]:
    if key not in m:
        if required:
            raise InvalidArgument(f"{key} is required")
        return []
    v = m[key]
    if not isinstance(v, list):
        raise InvalidArgument(f"{key} must be a list, got {_show(v)}")
    return v


def _parse_link(value: Any, where: str) -> Link:
    m = _object(value, where, {"bandwidth", "latency"})
    return Link(
        _number(m, "bandwidth", where, positive=True), _number(m, "latency", where, positive=False)
    )


def _parse(data: Any) -> Problem:
    if not isinstance(data, Mapping):
        raise InvalidArgument(f"problem must be an object, got {_show(data)}")
    version = data.get("version", 1)
    if isinstance(version, bool) or version not in VERSIONS:
        raise InvalidArgument(
            f"version must be one of {', '.join(map(str, VERSIONS))}, got {_show(version)}"
        )
    v2 = version >= 2
    top = _object(data, "problem", _TOP_KEYS_V2 if v2 else _TOP_KEYS)
    layers = []
    for i, raw in enumerate(_list(top, "layers", required=True)):
        where = f"layers[{i}]"
        m = _object(raw, where, _LAYER_KEYS_V2 if version >= 2 else _LAYER_KEYS)
        layers.append(
            Layer(
                name=_string(m, "name", where, default=f"layer{i}"),
                weight_bytes=_integer(m, "weight_bytes", where, minimum=0),
                kv_bytes_per_token=_integer(m, "kv_bytes_per_token", where, minimum=0, default=0),
                flops_per_token=_number(m, "flops_per_token", where, positive=False),
                activation_bytes=_integer(m, "activation_bytes", where, minimum=0, default=0),
                read_bytes_per_token=(
                    _integer(m, "read_bytes_per_token", where, minimum=0)
                    if "read_bytes_per_token" in m
                    else None
                ),
            )
        )
    devices = []
    for i, raw in enumerate(_list(top, "devices", required=True)):
        where = f"devices[{i}]"
        m = _object(raw, where, _DEVICE_KEYS_V2 if v2 else _DEVICE_KEYS)
        device_id = _string(m, "id", where)
        free = (
            _integer(m, "free_memory_bytes", where, minimum=1) if "free_memory_bytes" in m else None
        )
        devices.append(
            DeviceSpec(
                id=device_id,
                node=_string(m, "node", where, default=device_id),
                memory_bytes=_integer(m, "memory_bytes", where, minimum=1),
                flops=_number(m, "flops", where, positive=True),
                memory_bandwidth=_number(m, "memory_bandwidth", where, positive=True),
                free_memory_bytes=free,
                memory_pool=_string(m, "memory_pool", where) if "memory_pool" in m else None,
                stage_overhead=_number(m, "stage_overhead", where, positive=False, default=0.0),
                disk_read_bandwidth=(
                    _number(m, "disk_read_bandwidth", where, positive=True)
                    if "disk_read_bandwidth" in m
                    else None
                ),
            )
        )
    links = []
    for i, raw in enumerate(_list(top, "links", required=False)):
        where = f"links[{i}]"
        m = _object(raw, where, _LINK_KEYS)
        links.append(
            LinkSpec(
                a=_string(m, "a", where),
                b=_string(m, "b", where),
                bandwidth=_number(m, "bandwidth", where, positive=True),
                latency=_number(m, "latency", where, positive=False),
            )
        )
    if "default_link" not in top:
        raise InvalidArgument("default_link is required")
    default_link = _parse_link(top["default_link"], "default_link")
    intra = (
        _parse_link(top["intra_node_link"], "intra_node_link") if "intra_node_link" in top else None
    )
    workload = _object(top.get("workload", {}), "workload", {"batch", "context_tokens"})
    constraints = _object(
        top.get("constraints", {}), "constraints", _CONSTRAINT_KEYS_V2 if v2 else _CONSTRAINT_KEYS
    )
    headroom = _number(constraints, "memory_headroom", "constraints", positive=False, default=0.0)
    if headroom >= 1.0:
        raise InvalidArgument(f"constraints.memory_headroom must be below 1, got {headroom!r}")
    return Problem(
        layers=tuple(layers),
        devices=tuple(devices),
        links=tuple(links),
        default_link=default_link,
        intra_node_link=intra,
        batch=_integer(workload, "batch", "workload", minimum=1, default=1),
        context_tokens=_integer(workload, "context_tokens", "workload", minimum=0, default=0),
        memory_headroom=headroom,
        fixed_order=_bool(constraints, "fixed_order", "constraints"),
        ring=_bool(constraints, "ring", "constraints"),
        memory_pools=_parse_pools(top.get("memory_pools", {})),
        endpoints=_parse_endpoints(top["endpoints"]) if "endpoints" in top else None,
        allow_disk_offload=_bool(constraints, "allow_disk_offload", "constraints"),
    )


def _parse_pools(value: Any) -> dict[str, int]:
    if not isinstance(value, Mapping):
        raise InvalidArgument(f"memory_pools must be an object of pool: bytes, got {_show(value)}")
    out = {}
    for name in value:
        if not isinstance(name, str) or not name:
            raise InvalidArgument(
                f"memory_pools: pool names must be non-empty strings, got {_show(name)}"
            )
        out[name] = _integer(value, name, "memory_pools", minimum=1)
    return out


def _parse_endpoints(value: Any) -> Endpoints:
    where = "endpoints"
    m = _object(value, where, {"node", "input_bytes", "output_bytes", "links"})
    links = []
    raw_links = m.get("links", [])
    if not isinstance(raw_links, list):
        raise InvalidArgument(f"endpoints.links must be a list, got {_show(raw_links)}")
    for i, raw in enumerate(raw_links):
        at = f"endpoints.links[{i}]"
        x = _object(raw, at, {"device", "bandwidth", "latency"})
        links.append(
            EndpointLink(
                device=_string(x, "device", at),
                bandwidth=_number(x, "bandwidth", at, positive=True),
                latency=_number(x, "latency", at, positive=False),
            )
        )
    return Endpoints(
        node=_string(m, "node", where),
        input_bytes=_integer(m, "input_bytes", where, minimum=0, default=0),
        output_bytes=_integer(m, "output_bytes", where, minimum=0, default=0),
        links=tuple(links),
    )


def _check_problem(p: Problem) -> None:
    """Checks that need the whole problem (also for a Problem built in code)."""
    if not p.layers:
        raise InvalidArgument("layers: at least one layer is required")
    if not p.devices:
        raise InvalidArgument("devices: at least one device is required")
    if len(p.devices) > 64:
        raise InvalidArgument(f"devices: at most 64 devices are supported, got {len(p.devices)}")
    seen: set[str] = set()
    for i, d in enumerate(p.devices):
        if d.id in seen:
            raise InvalidArgument(f"devices[{i}].id {d.id!r} is not unique")
        seen.add(d.id)
    pairs: set[frozenset[str]] = set()
    for i, x in enumerate(p.links):
        for key in ("a", "b"):
            if getattr(x, key) not in seen:
                raise InvalidArgument(f"links[{i}].{key} names unknown device {getattr(x, key)!r}")
        if x.a == x.b:
            raise InvalidArgument(f"links[{i}] links device {x.a!r} to itself")
        pair = frozenset((x.a, x.b))
        if pair in pairs:
            raise InvalidArgument(f"links[{i}] repeats the link between {x.a!r} and {x.b!r}")
        pairs.add(pair)
    _check_v2_terms(p, seen)
    tokens = p.batch * p.context_tokens
    total = 0
    for i, layer in enumerate(p.layers):
        total += layer.weight_bytes + tokens * layer.kv_bytes_per_token
        if layer.read_weight_bytes + tokens * layer.kv_bytes_per_token >= MAX_BYTES:
            raise InvalidArgument(
                f"layers[{i}]: read_bytes_per_token + batch * context_tokens * kv must be "
                "below 2**53"
            )
        if p.batch * layer.activation_bytes >= MAX_BYTES:
            raise InvalidArgument(f"layers[{i}]: batch * activation_bytes must be below 2**53")
    if total >= MAX_BYTES:
        raise InvalidArgument(
            f"the model's resident bytes (weights + batch * context_tokens * kv) must be below "
            f"2**53, got {total}"
        )


def _finite(x: Any, *, positive: bool) -> bool:
    if isinstance(x, bool) or not isinstance(x, (int, float)):
        return False
    return math.isfinite(x) and (x > 0 if positive else x >= 0)


def _check_v2_terms(p: Problem, ids: set[str]) -> None:
    """Pools, stage overheads, disk offload and endpoints (a Problem built in
    code gets the same field-named errors as a file)."""
    named: set[str] = set()
    for i, d in enumerate(p.devices):
        if d.memory_pool is not None:
            if not isinstance(d.memory_pool, str) or not d.memory_pool:
                raise InvalidArgument(f"devices[{i}].memory_pool must be a non-empty string")
            named.add(d.memory_pool)
        if not _finite(d.stage_overhead, positive=False):
            raise InvalidArgument(
                f"devices[{i}].stage_overhead must be non-negative and finite, "
                f"got {_show(d.stage_overhead)}"
            )
        if d.disk_read_bandwidth is not None and not _finite(d.disk_read_bandwidth, positive=True):
            raise InvalidArgument(
                f"devices[{i}].disk_read_bandwidth must be positive and finite, "
                f"got {_show(d.disk_read_bandwidth)}"
            )
    for name, capacity in p.memory_pools.items():
        if not isinstance(name, str) or not name:
            raise InvalidArgument("memory_pools: pool names must be non-empty strings")
        if (
            isinstance(capacity, bool)
            or not isinstance(capacity, int)
            or not 0 < capacity < MAX_BYTES
        ):
            raise InvalidArgument(
                f"memory_pools.{name} must be a positive integer below 2**53, got {_show(capacity)}"
            )
        if name not in named:
            raise InvalidArgument(f"memory_pools.{name} is named by no device's memory_pool")
    e = p.endpoints
    if e is None:
        return
    if p.ring:
        raise InvalidArgument("endpoints and constraints.ring cannot be used together")
    if not isinstance(e.node, str) or not e.node:
        raise InvalidArgument("endpoints.node must be a non-empty string")
    for key in ("input_bytes", "output_bytes"):
        n = getattr(e, key)
        if isinstance(n, bool) or not isinstance(n, int) or n < 0 or p.batch * n >= MAX_BYTES:
            raise InvalidArgument(
                f"endpoints.{key} must be a non-negative integer with batch * {key} below 2**53, "
                f"got {_show(n)}"
            )
    linked: set[str] = set()
    for i, x in enumerate(e.links):
        if x.device not in ids:
            raise InvalidArgument(f"endpoints.links[{i}].device names unknown device {x.device!r}")
        if x.device in linked:
            raise InvalidArgument(f"endpoints.links[{i}] repeats the link to {x.device!r}")
        linked.add(x.device)
        if not _finite(x.bandwidth, positive=True):
            raise InvalidArgument(f"endpoints.links[{i}].bandwidth must be positive and finite")
        if not _finite(x.latency, positive=False):
            raise InvalidArgument(f"endpoints.links[{i}].latency must be non-negative and finite")


def _layer_dict(x: Any) -> dict[str, Any]:
    out = {
        "name": x.name,
        "weight_bytes": x.weight_bytes,
        "kv_bytes_per_token": x.kv_bytes_per_token,
        "flops_per_token": x.flops_per_token,
        "activation_bytes": x.activation_bytes,
    }
    read = getattr(x, "read_bytes_per_token", None)
    if read is not None:
        out["read_bytes_per_token"] = read
    return out


def _device_dict(d: DeviceSpec) -> dict[str, Any]:
    out: dict[str, Any] = {
        "id": d.id,
        "node": d.node,
        "memory_bytes": d.memory_bytes,
        "flops": d.flops,
        "memory_bandwidth": d.memory_bandwidth,
    }
    if d.free_memory_bytes is not None:
        out["free_memory_bytes"] = d.free_memory_bytes
    if d.memory_pool is not None:
        out["memory_pool"] = d.memory_pool
    if d.stage_overhead:
        out["stage_overhead"] = d.stage_overhead
    if d.disk_read_bandwidth is not None:
        out["disk_read_bandwidth"] = d.disk_read_bandwidth
    return out


def _endpoints_dict(e: Endpoints) -> dict[str, Any]:
    return {
        "node": e.node,
        "input_bytes": e.input_bytes,
        "output_bytes": e.output_bytes,
        "links": [
            {"device": x.device, "bandwidth": x.bandwidth, "latency": x.latency} for x in e.links
        ],
    }


def _link_dict(x: Link) -> dict[str, Any]:
    return {"bandwidth": x.bandwidth, "latency": x.latency}
