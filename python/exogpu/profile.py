"""Device profiles: measured figures of each local device, cached on disk.

A profile holds, for each physical device of this node, the ``devices`` entry
of a placement problem (docs/placement.md)::

    {"id": "<device id>", "node": "<node>", "memory_bytes": ...,
     "flops": ..., "memory_bandwidth": ...}

The id is the local device id, as ``exogpu.cluster.discover()`` names it; a
cluster of several nodes qualifies it with the node when it merges profiles.
``Profile.measured()`` gives the figures in the form
``Cluster.with_profile()`` takes.

- ``memory_bytes``: the device's total memory (the placement's
  ``memory_headroom`` keeps a share of it free);
- ``flops``: the float32 FMA rate the compute probe measured;
- ``memory_bandwidth``: the rate a layer's weights stream through memory,
  2 x the device-to-device copy bandwidth with bytes counted once (the copy
  reads n bytes and writes n).

A device another backend also sees (a GPU through CUDA and Vulkan, the CPU
through lavapipe) appears once in ``devices``, under its preferred id; every
id, aliases included, is measured and kept under ``details``.

The profile is written to ``<cache dir>/profile.json`` with the time of the
measurement, the exogpu version, the runtime version of each backend and the
identity of each device. It is stale when any of those changed, or when it is
older than the maximum age asked for; ``load_profile`` returns None then.
The cache directory is ``$EXOGPU_CACHE_DIR``, else ``$XDG_CACHE_HOME/exogpu``,
else ``~/.cache/exogpu`` (``%LOCALAPPDATA%\\exogpu`` on Windows).
"""

from __future__ import annotations

import json
import math
import os
import socket
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import exogpu
from exogpu import probe

SCHEMA = 1
DEFAULT_MAX_AGE = 7 * 24 * 3600.0
"""Seconds a profile stays fresh when nothing else changed."""

PROFILE_FILE = "profile.json"


@dataclass(frozen=True)
class Environment:
    """What a profile's figures depend on besides the hardware's mood."""

    exogpu_version: str
    runtimes: dict[str, str]
    """Runtime version of each available backend."""
    identity: list[dict[str, Any]]
    """One entry per device id (aliases included): name, vendor, uuid, ..."""

    def to_dict(self) -> dict[str, Any]:
        return {
            "exogpu_version": self.exogpu_version,
            "runtimes": dict(self.runtimes),
            "identity": [dict(d) for d in self.identity],
        }


@dataclass(frozen=True)
class Profile:
    node: str
    measured_at: float
    """Unix time of the measurement."""
    quick: bool
    environment: Environment
    devices: list[dict[str, Any]]
    """Placement-problem device entries, one per physical device."""
    details: list[dict[str, Any]] = field(default_factory=list)
    """Every measured device id with the probes' figures."""

    def to_dict(self) -> dict[str, Any]:
        return {
            "schema": SCHEMA,
            "node": self.node,
            "measured_at": self.measured_at,
            "measured_at_iso": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(self.measured_at)),
            "quick": self.quick,
            **self.environment.to_dict(),
            "devices": [dict(d) for d in self.devices],
            "details": [dict(d) for d in self.details],
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Profile:
        """Reads a profile; raises ValueError naming the first field that is wrong."""
        if data.get("schema") != SCHEMA:
            raise ValueError(f"profile schema {data.get('schema')!r}, expected {SCHEMA}")
        for key, kind in (
            ("node", str),
            ("measured_at", (int, float)),
            ("quick", bool),
            ("exogpu_version", str),
            ("runtimes", dict),
            ("identity", list),
            ("devices", list),
            ("details", list),
        ):
            if not isinstance(data.get(key), kind):
                raise ValueError(f"profile field '{key}' is missing or of the wrong type")
        for entry in data["devices"]:
            _check_device_entry(entry)
        return cls(
            node=data["node"],
            measured_at=float(data["measured_at"]),
            quick=data["quick"],
            environment=Environment(
                exogpu_version=data["exogpu_version"],
                runtimes={str(k): str(v) for k, v in data["runtimes"].items()},
                identity=list(data["identity"]),
            ),
            devices=list(data["devices"]),
            details=list(data["details"]),
        )

    def measured(self) -> dict[str, Any]:
        """The figures by device id, as ``exogpu.cluster.Cluster.with_profile`` takes them."""
        return {
            "devices": {
                d["id"]: {
                    "flops": d["flops"],
                    "memory_bandwidth": d["memory_bandwidth"],
                    "memory_bytes": d["memory_bytes"],
                }
                for d in self.devices
            }
        }

    def stale_reason(
        self,
        max_age: float = DEFAULT_MAX_AGE,
        current: Environment | None = None,
        now: float | None = None,
    ) -> str | None:
        """Why this profile no longer describes this node, or None when it does."""
        now = time.time() if now is None else now
        age = now - self.measured_at
        if age > max_age:
            return f"measured {age:.0f} s ago, more than the maximum age of {max_age:.0f} s"
        if age < -60:
            return "measured in the future (the clock changed)"
        current = current_environment() if current is None else current
        mine = self.environment
        if mine.exogpu_version != current.exogpu_version:
            return f"measured with exogpu {mine.exogpu_version}, now {current.exogpu_version}"
        if mine.runtimes != current.runtimes:
            return f"backend runtimes changed: {mine.runtimes} -> {current.runtimes}"
        if mine.identity != current.identity:
            return "the devices changed"
        return None


def _check_device_entry(entry: Any) -> None:
    if not isinstance(entry, dict):
        raise ValueError("profile device entry is not an object")
    for key in ("id", "node"):
        if not isinstance(entry.get(key), str) or not entry[key]:
            raise ValueError(f"profile device field '{key}' is missing or empty")
    for key in ("memory_bytes", "flops", "memory_bandwidth"):
        value = entry.get(key)
        if (
            not isinstance(value, (int, float))
            or isinstance(value, bool)
            or not math.isfinite(value)
            or value <= 0
        ):
            raise ValueError(
                f"profile device {entry['id']}: '{key}' must be positive and finite, got {value!r}"
            )


def cache_dir() -> Path:
    """Where profiles live: $EXOGPU_CACHE_DIR, else the platform's user cache."""
    explicit = os.environ.get("EXOGPU_CACHE_DIR")
    if explicit:
        return Path(explicit)
    if sys.platform == "win32" and os.environ.get("LOCALAPPDATA"):
        return Path(os.environ["LOCALAPPDATA"]) / "exogpu"
    xdg = os.environ.get("XDG_CACHE_HOME")
    base = Path(xdg) if xdg else Path.home() / ".cache"
    return base / "exogpu"


def cache_path() -> Path:
    return cache_dir() / PROFILE_FILE


def node_name() -> str:
    return socket.gethostname() or "localhost"


def _identity(dev: Any) -> dict[str, Any]:
    info = dev.info
    return {
        "id": info.id,
        "name": info.name,
        "vendor": info.vendor,
        "uuid": info.uuid,
        "pci_bus_id": info.pci_bus_id,
        "memory_total": info.memory_total,
        "aliases": sorted(info.aliases),
    }


def _device_ids() -> list[str]:
    """Every device id: each physical device, then its aliases."""
    ids: list[str] = []
    for dev in exogpu.devices():
        for device_id in (dev.id, *dev.info.aliases):
            if device_id not in ids:
                ids.append(device_id)
    return ids


def current_environment() -> Environment:
    return Environment(
        exogpu_version=exogpu.__version__,
        runtimes={b.name: b.runtime_version for b in exogpu.backends() if b.available},
        identity=[_identity(exogpu.device(i)) for i in _device_ids()],
    )


@dataclass(frozen=True)
class _Settings:
    target_seconds: float
    samples: int
    bandwidth_bytes: int
    transfer_bytes: int


# Quick: about 1-2 s per device; full: about 5-10 s.
QUICK = _Settings(target_seconds=0.15, samples=3, bandwidth_bytes=64 << 20, transfer_bytes=16 << 20)
FULL = _Settings(target_seconds=0.5, samples=7, bandwidth_bytes=256 << 20, transfer_bytes=256 << 20)


def measure_device(device_id: str, quick: bool = False) -> dict[str, Any]:
    """The compute probe and host transfer rates of one device id."""
    settings = QUICK if quick else FULL
    dev = exogpu.device(device_id)
    start = time.monotonic()
    compute = probe.probe_compute(
        dev,
        target_seconds=settings.target_seconds,
        samples=settings.samples,
        bandwidth_bytes=settings.bandwidth_bytes,
    )
    # A small device gets a smaller transfer, never an out-of-memory error.
    transfer_bytes = min(settings.transfer_bytes, max(4096, dev.memory_info().free // 8))
    transfers = probe.probe_memory(
        dev,
        kinds=["h2d_pinned", "d2h_pinned"],
        sizes=[transfer_bytes],
        samples=settings.samples,
        latency=False,
        allocation=False,
    )
    memory = dev.memory_info()
    rates = {c.kind: c.bandwidth for c in transfers.copies}
    return {
        "id": device_id,
        "name": dev.info.name,
        "backend": dev.info.backend,
        "emulated_on_host": dev.info.emulated_on_host,
        "memory_total": memory.total,
        "memory_free": memory.free,
        "memory_free_source": str(memory.source),
        "fma_supported": compute.fma_supported,
        "flops": compute.flops,
        "flops_timing": compute.timing,
        "memory_bandwidth": compute.memory_bandwidth,
        "memory_bandwidth_method": "2 x d2d copy bandwidth (bytes counted once)",
        "d2d_bandwidth": compute.copy_bandwidth,
        "d2d_bytes": compute.copy_bytes,
        "h2d_bandwidth": rates.get("h2d_pinned", 0.0),
        "d2h_bandwidth": rates.get("d2h_pinned", 0.0),
        "transfer_bytes": transfer_bytes,
        "bytes_counted": "once",
        "seconds": time.monotonic() - start,
    }


def _placement_entry(node: str, group: list[dict[str, Any]]) -> dict[str, Any] | None:
    """The placement entry of one physical device from the measurements of its ids.

    The preferred id speaks for the silicon unless it failed; its FLOP/s too,
    unless its backend has no FMA kernel, then the fastest id that has one.
    None when no id of the device could be measured.
    """
    measured = [d for d in group if "error" not in d]
    if not measured:
        return None
    primary = measured[0]
    flops = primary["flops"]
    if flops <= 0:
        flops = max(d["flops"] for d in measured)
    if flops <= 0:
        return None
    return {
        "id": group[0]["id"],
        "node": node,
        "memory_bytes": primary["memory_total"],
        "flops": flops,
        "memory_bandwidth": primary["memory_bandwidth"],
    }


def measure_profile(
    quick: bool = False,
    on_device: Callable[[str], None] | None = None,
) -> Profile:
    """Measures every local device (aliases too); `on_device(id)` before each one.

    A device id whose measurement fails keeps its error under `details`; a
    physical device none of whose ids could be measured (or that has no FMA
    kernel on any backend) is left out of `devices`.
    """
    node = node_name()
    environment = current_environment()
    measured_at = time.time()
    details: list[dict[str, Any]] = []
    entries: list[dict[str, Any]] = []
    for dev in exogpu.devices():
        group: list[dict[str, Any]] = []
        for device_id in (dev.id, *dev.info.aliases):
            if on_device is not None:
                on_device(device_id)
            try:
                measured = measure_device(device_id, quick=quick)
            except exogpu.Error as e:
                measured = {"id": device_id, "error": str(e)}
            measured["alias_of"] = None if device_id == dev.id else dev.id
            group.append(measured)
        details.extend(group)
        entry = _placement_entry(node, group)
        if entry is not None:
            _check_device_entry(entry)
            entries.append(entry)
    return Profile(
        node=node,
        measured_at=measured_at,
        quick=quick,
        environment=environment,
        devices=entries,
        details=details,
    )


def save_profile(profile: Profile, path: Path | None = None) -> Path:
    """Writes the profile atomically (a reader never sees half a file)."""
    path = cache_path() if path is None else path
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".profile-", suffix=".json", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            json.dump(profile.to_dict(), f, indent=2)
            f.write("\n")
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def read_profile(path: Path | None = None) -> Profile | None:
    """The profile on disk, fresh or not; None when there is none or it is unreadable."""
    path = cache_path() if path is None else path
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(data, dict):
        return None
    try:
        return Profile.from_dict(data)
    except ValueError:
        return None


def profile_status(
    max_age: float = DEFAULT_MAX_AGE, path: Path | None = None
) -> tuple[Profile | None, str | None]:
    """(profile, None) when a fresh one is cached, else (None, why not)."""
    path = cache_path() if path is None else path
    profile = read_profile(path)
    if profile is None:
        return None, f"no readable profile at {path}"
    reason = profile.stale_reason(max_age)
    if reason is not None:
        return None, reason
    return profile, None


def load_profile(max_age: float = DEFAULT_MAX_AGE, path: Path | None = None) -> Profile | None:
    """The cached profile if it still describes this node, else None."""
    return profile_status(max_age, path)[0]


def ensure_profile(
    max_age: float = DEFAULT_MAX_AGE, quick: bool = False, path: Path | None = None
) -> Profile:
    """The cached profile if fresh, else a new measurement (then cached)."""
    profile = load_profile(max_age, path)
    if profile is None:
        profile = measure_profile(quick=quick)
        save_profile(profile, path)
    return profile
