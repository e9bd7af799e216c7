"""Live device readings: temperature, power, energy, memory, clocks, load.

One reader per source, each honest about what it can see:

* NVIDIA GPUs through NVML (``libnvidia-ml.so.1``);
* AMD GPUs through rocm-smi (``librocm_smi64.so.1``) where it is installed
  and lists them; NVML and rocm-smi are opened at run time by the native core
  (``exogpu._core``), never linked;
* AMD GPUs rocm-smi does not report, and Intel GPUs, through the kernel's DRM
  and hwmon files (``/sys/class/drm/card*/device``), the files rocm-smi itself
  reads on Linux; a GPU rocm-smi reported is not read again here;
* the CPU through thermal zones (``/sys/class/thermal``) and RAPL energy
  counters (``/sys/class/powercap/intel-rapl:*``).

Every :class:`Reading` carries its unit and source. A figure the platform
cannot give is absent, never reported as zero. Power from energy counters
needs two samples, so a :class:`Monitor` keeps the previous ones; the first
call gives energy only.

The sysfs root is ``/sys`` unless ``EXOGPU_SYSFS_ROOT`` (or the ``sysfs_root``
argument) says otherwise, so tests can lay out a fake tree like the real one.
"""

from __future__ import annotations

import os
import re
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from exogpu import _core

__all__ = [
    "DeviceReadings",
    "Monitor",
    "NvmlReader",
    "Reading",
    "RocmSmiReader",
    "read_all",
]


@dataclass(frozen=True)
class Reading:
    """One measured figure: ``value`` in ``unit``, read from ``source``."""

    name: str  # "temperature", "power", "energy", "memory_used", "clock_sm", ...
    value: float
    unit: str  # "degC", "W", "J", "B", "MHz", "%", "lanes", "gen", "flags"
    source: str  # "nvml", "rocm_smi", "sysfs:hwmon", "sysfs:drm", "sysfs:thermal", "sysfs:rapl"
    sensor: str | None = None  # which sensor of several ("edge", "package-0", ...)
    detail: str | None = None  # a decoding of the value (throttle reasons by name)

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "name": self.name,
            "value": self.value,
            "unit": self.unit,
            "source": self.source,
        }
        if self.sensor is not None:
            out["sensor"] = self.sensor
        if self.detail is not None:
            out["detail"] = self.detail
        return out


@dataclass(frozen=True)
class DeviceReadings:
    """Everything read about one physical device at one moment."""

    key: str  # "pci:0000:65:00.0" for a GPU, "cpu" for the host
    vendor: str
    name: str
    readings: tuple[Reading, ...]
    pci_bus_id: str | None = None
    uuid: str | None = None
    device_id: str | None = None  # the exogpu id ("cuda:0") when one matches
    timestamp: float = field(default_factory=time.time)

    def get(self, name: str, sensor: str | None = None) -> Reading | None:
        """The first reading called ``name`` (of ``sensor`` when given), or None."""
        for reading in self.readings:
            if reading.name == name and (sensor is None or reading.sensor == sensor):
                return reading
        return None

    def all(self, name: str) -> list[Reading]:
        return [r for r in self.readings if r.name == name]

    def to_dict(self) -> dict[str, Any]:
        return {
            "key": self.key,
            "device_id": self.device_id,
            "vendor": self.vendor,
            "name": self.name,
            "pci_bus_id": self.pci_bus_id,
            "uuid": self.uuid,
            "timestamp": self.timestamp,
            "readings": [r.to_dict() for r in self.readings],
        }


def default_sysfs_root() -> Path:
    return Path(os.environ.get("EXOGPU_SYSFS_ROOT", "/sys"))


def _read_text(path: Path) -> str | None:
    try:
        return path.read_text().strip()
    except (OSError, UnicodeDecodeError):
        return None  # absent, or not readable by this user (RAPL needs root)


def _read_int(path: Path) -> int | None:
    text = _read_text(path)
    if text is None:
        return None
    try:
        return int(text, 0)
    except ValueError:
        return None


def _pci_slot(device_dir: Path) -> str | None:
    uevent = _read_text(device_dir / "uevent")
    if uevent:
        for line in uevent.splitlines():
            if line.startswith("PCI_SLOT_NAME="):
                return normalise_pci_bus_id(line.split("=", 1)[1])
    return None


def normalise_pci_bus_id(raw: str) -> str | None:
    """ "dddd:bb:dd.f" lower-case (as the exogpu core spells it) from NVML's
    8-digit domain or any other spelling; None when it does not parse."""
    match = re.fullmatch(
        r"([0-9a-fA-F]+):([0-9a-fA-F]{1,2}):([0-9a-fA-F]{1,2})\.([0-7])", raw.strip()
    )
    if match is None:
        return None
    domain, bus, device, function = (int(g, 16) for g in match.groups())
    if device > 0x1F:
        return None
    return f"{domain:04x}:{bus:02x}:{device:02x}.{function:x}"


class EnergyCounter:
    """Turns a wrapping cumulative energy counter into joules and watts.

    ``read`` gets the counter and its wrap-around range (None when it does not
    wrap); a wrap between samples is unfolded, so energy keeps growing.
    """

    def __init__(self) -> None:
        self._last: dict[str, tuple[int, float]] = {}
        self._total: dict[str, int] = {}

    def sample(
        self, key: str, raw: int, wrap_range: int | None, now: float
    ) -> tuple[int, float | None]:
        """Returns (accumulated raw units since first seen, mean power in raw units/s)."""
        last = self._last.get(key)
        self._last[key] = (raw, now)
        if last is None:
            self._total[key] = 0
            return 0, None
        prev, then = last
        delta = raw - prev
        if delta < 0:
            if wrap_range is None or wrap_range <= 0:
                # The counter was reset: start again from here.
                self._total[key] = 0
                return 0, None
            delta += wrap_range
        self._total[key] += delta
        elapsed = now - then
        return self._total[key], (delta / elapsed if elapsed > 0 else None)


# --------------------------------------------------------------------- sysfs


_VENDORS = {0x1002: "AMD", 0x8086: "Intel", 0x10DE: "NVIDIA"}


def _hwmon_readings(hwmon: Path, counters: EnergyCounter, key: str, now: float) -> list[Reading]:
    """The standard hwmon files (Documentation/hwmon/sysfs-interface.rst)."""
    out: list[Reading] = []
    src = "sysfs:hwmon"
    for temp in sorted(hwmon.glob("temp*_input")):
        index = temp.name[len("temp") : -len("_input")]
        value = _read_int(temp)
        if value is None:
            continue
        label = _read_text(hwmon / f"temp{index}_label") or f"temp{index}"
        out.append(Reading("temperature", value / 1000.0, "degC", src, label))
        crit = _read_int(hwmon / f"temp{index}_crit")
        if crit is not None and crit > 0:
            out.append(Reading("temperature_critical", crit / 1000.0, "degC", src, label))
    for name in ("power1_average", "power1_input"):
        microwatts = _read_int(hwmon / name)
        if microwatts is not None:
            out.append(Reading("power", microwatts / 1e6, "W", src, name.split("_")[1]))
            break
    cap = _read_int(hwmon / "power1_cap")
    if cap is not None and cap > 0:
        out.append(Reading("power_limit", cap / 1e6, "W", src))
    microjoules = _read_int(hwmon / "energy1_input")
    if microjoules is not None:
        out.append(Reading("energy", microjoules / 1e6, "J", src, "counter"))
        _, rate = counters.sample(f"{key}/energy1", microjoules, None, now)
        if rate is not None and not any(r.name == "power" for r in out):
            out.append(Reading("power", rate / 1e6, "W", src, "from energy1_input"))
    for freq in sorted(hwmon.glob("freq*_input")):
        index = freq.name[len("freq") : -len("_input")]
        hertz = _read_int(freq)
        if hertz is None:
            continue
        label = _read_text(hwmon / f"freq{index}_label") or f"freq{index}"
        name = {"sclk": "clock_graphics", "mclk": "clock_memory"}.get(label, "clock")
        out.append(Reading(name, hertz / 1e6, "MHz", src, label))
    fan = _read_int(hwmon / "fan1_input")
    if fan is not None:
        out.append(Reading("fan", float(fan), "RPM", src))
    return out


def read_drm(
    root: Path, counters: EnergyCounter, now: float, skip: frozenset[str] = frozenset()
) -> list[DeviceReadings]:
    """AMD and Intel GPUs through their DRM device and hwmon files, except the
    ones whose PCI bus id is in ``skip`` (read through a vendor library)."""
    out: list[DeviceReadings] = []
    for card in sorted((root / "class" / "drm").glob("card*")):
        if not re.fullmatch(r"card\d+", card.name):
            continue  # connectors (card0-DP-1) and render nodes
        device = card / "device"
        vendor_id = _read_int(device / "vendor")
        if vendor_id is None or vendor_id == 0x10DE:
            continue  # NVIDIA's driver has no hwmon; NVML covers it
        vendor = _VENDORS.get(vendor_id, f"0x{vendor_id:04x}")
        pci = _pci_slot(device)
        if pci is not None and pci in skip:
            continue
        key = f"pci:{pci}" if pci else f"drm:{card.name}"
        readings: list[Reading] = []
        for hwmon in sorted((device / "hwmon").glob("hwmon*")):
            readings.extend(_hwmon_readings(hwmon, counters, key, now))
        busy = _read_int(device / "gpu_busy_percent")
        if busy is not None:
            readings.append(Reading("utilization", float(busy), "%", "sysfs:drm"))
        used = _read_int(device / "mem_info_vram_used")
        total = _read_int(device / "mem_info_vram_total")
        if used is not None:
            readings.append(Reading("memory_used", float(used), "B", "sysfs:drm"))
        if total is not None:
            readings.append(Reading("memory_total", float(total), "B", "sysfs:drm"))
        gt_freq = _read_int(card / "gt_cur_freq_mhz")  # i915
        if gt_freq is not None:
            readings.append(Reading("clock_graphics", float(gt_freq), "MHz", "sysfs:drm"))
        device_code = _read_int(device / "device")
        name = _read_text(device / "product_name") or (
            f"{vendor} GPU (device 0x{device_code:04x})"
            if device_code is not None
            else f"{vendor} GPU"
        )
        unique_id = _read_text(device / "unique_id")
        out.append(
            DeviceReadings(
                key=key,
                vendor=vendor,
                name=name,
                readings=tuple(readings),
                pci_bus_id=pci,
                uuid=unique_id,
                timestamp=now,
            )
        )
    return out


def read_cpu(root: Path, counters: EnergyCounter, now: float) -> list[DeviceReadings]:
    """Host CPU: thermal zones and RAPL energy (power from the second sample on)."""
    readings: list[Reading] = []
    for zone in sorted((root / "class" / "thermal").glob("thermal_zone*")):
        millidegrees = _read_int(zone / "temp")
        if millidegrees is None:
            continue
        kind = _read_text(zone / "type") or zone.name
        readings.append(
            Reading("temperature", millidegrees / 1000.0, "degC", "sysfs:thermal", kind)
        )
    for domain in sorted((root / "class" / "powercap").glob("intel-rapl:*")):
        if domain.name.count(":") != 1:
            continue  # subdomains (core, uncore, dram) are inside their package
        microjoules = _read_int(domain / "energy_uj")
        if microjoules is None:
            continue
        name = _read_text(domain / "name") or domain.name
        wrap = _read_int(domain / "max_energy_range_uj")
        total, rate = counters.sample(f"rapl/{domain.name}", microjoules, wrap, now)
        readings.append(
            Reading("energy", total / 1e6, "J", "sysfs:rapl", name, "since first sample")
        )
        if rate is not None:
            readings.append(Reading("power", rate / 1e6, "W", "sysfs:rapl", name))
    if not readings:
        return []
    return [
        DeviceReadings(
            key="cpu", vendor="", name="host CPU", readings=tuple(readings), timestamp=now
        )
    ]


# ---------------------------------------------------------- vendor libraries
#
# NVML and rocm-smi are read by the native core, which opens each library at
# run time and resolves its entry points from one symbol table: a missing or
# old library only makes a reader unavailable (with the reason) or a reading
# absent. The core already gives values in the units above.

# The nvmlClocksEventReasons bits that mean the GPU is held back by heat or
# power, not by choice: sw_power_cap, hw_slowdown, sw_thermal_slowdown,
# hw_thermal_slowdown, hw_power_brake_slowdown. The core decodes every bit
# by name into the reading's detail.
NVML_THROTTLE_MASK = 0x4 | 0x8 | 0x20 | 0x40 | 0x80


class _VendorReader:
    """A native reader of one vendor library, giving :class:`DeviceReadings`."""

    def __init__(self, native: _core.NvmlReader | _core.RocmSmiReader, key_prefix: str) -> None:
        self._native = native
        self._key_prefix = key_prefix
        self.available: bool = native.available
        self.reason: str = native.reason

    def read(self, now: float) -> list[DeviceReadings]:
        if not self.available:
            return []
        return [self._convert(device, now) for device in self._native.read()]

    def _convert(self, device: _core.VendorDeviceReadings, now: float) -> DeviceReadings:
        readings = tuple(
            Reading(r.name, r.value, r.unit, r.source, r.sensor, r.detail) for r in device.readings
        )
        pci = device.pci_bus_id
        return DeviceReadings(
            key=f"pci:{pci}" if pci else f"{self._key_prefix}:{device.index}",
            vendor=device.vendor,
            name=device.name,
            readings=readings,
            pci_bus_id=pci,
            uuid=device.uuid,
            timestamp=now,
        )


class NvmlReader(_VendorReader):
    """NVIDIA GPUs through NVML. ``available`` and ``reason`` say if it runs here.

    ``library`` overrides ``EXOGPU_NVML_LIBRARY`` and ``libnvidia-ml.so.1``.
    """

    def __init__(self, library: str | None = None) -> None:
        super().__init__(_core.NvmlReader([library] if library else []), "nvml")


class RocmSmiReader(_VendorReader):
    """AMD GPUs through rocm-smi. ``available`` and ``reason`` say if it runs here.

    ``library`` overrides ``EXOGPU_ROCM_SMI_LIBRARY`` and ``librocm_smi64.so.1``
    (or ``librocm_smi64.so``).
    """

    def __init__(self, library: str | None = None) -> None:
        super().__init__(_core.RocmSmiReader([library] if library else []), "rocm_smi")


# ------------------------------------------------------------------- Monitor


def _exogpu_ids() -> tuple[dict[str, str], dict[str, str]]:
    """Preferred exogpu ids by PCI bus id and by UUID, for linking readings."""
    try:
        import exogpu

        devices = exogpu.devices()
    except Exception:  # the native core may be missing in a minimal install
        return {}, {}
    by_pci: dict[str, str] = {}
    by_uuid: dict[str, str] = {}
    for dev in devices:
        info = dev.info
        if info.pci_bus_id:
            by_pci[info.pci_bus_id] = info.id
        if info.uuid:
            by_uuid[info.uuid] = info.id
        if info.backend == "cpu":
            by_pci["cpu"] = info.id
    return by_pci, by_uuid


def _status(reader: _VendorReader | None) -> str:
    if reader is None:
        return "not selected"
    return "" if reader.available else reader.reason


class Monitor:
    """Reads every source; keeps energy samples so power can be derived.

    ``sources`` picks readers by name ("nvml", "rocm_smi", "drm", "cpu");
    ``clock`` is the monotonic clock used for rates (injectable for tests).
    An AMD GPU that rocm-smi reports is read through it and skipped by "drm".
    """

    def __init__(
        self,
        sysfs_root: Path | str | None = None,
        sources: Sequence[str] = ("nvml", "rocm_smi", "drm", "cpu"),
        clock: Callable[[], float] = time.monotonic,
        link_devices: bool = True,
    ) -> None:
        self.root = Path(sysfs_root) if sysfs_root is not None else default_sysfs_root()
        self.sources = tuple(sources)
        self._clock = clock
        self._counters = EnergyCounter()
        self._nvml = NvmlReader() if "nvml" in self.sources else None
        self._rocm_smi = RocmSmiReader() if "rocm_smi" in self.sources else None
        self._ids = _exogpu_ids() if link_devices else ({}, {})

    @property
    def nvml_status(self) -> str:
        """Empty when NVML runs here, else why it does not."""
        return _status(self._nvml)

    @property
    def rocm_smi_status(self) -> str:
        """Empty when rocm-smi runs here and lists a device, else why it does not."""
        return _status(self._rocm_smi)

    def read(self) -> list[DeviceReadings]:
        now = self._clock()
        found: list[DeviceReadings] = []
        if self._nvml is not None:
            found.extend(self._nvml.read(now))
        if self._rocm_smi is not None:
            found.extend(self._rocm_smi.read(now))
        if "drm" in self.sources:
            # A GPU a vendor library reported is one device, listed once.
            seen = frozenset(d.pci_bus_id for d in found if d.pci_bus_id is not None)
            found.extend(read_drm(self.root, self._counters, now, seen))
        if "cpu" in self.sources:
            found.extend(read_cpu(self.root, self._counters, now))
        return [self._link(d) for d in found]

    def _link(self, readings: DeviceReadings) -> DeviceReadings:
        by_pci, by_uuid = self._ids
        device_id = by_uuid.get(readings.uuid or "") or by_pci.get(
            readings.pci_bus_id or readings.key
        )
        if device_id is None:
            return readings
        return DeviceReadings(
            key=readings.key,
            vendor=readings.vendor,
            name=readings.name,
            readings=readings.readings,
            pci_bus_id=readings.pci_bus_id,
            uuid=readings.uuid,
            device_id=device_id,
            timestamp=readings.timestamp,
        )


_default: Monitor | None = None


def read_all(sysfs_root: Path | str | None = None) -> list[DeviceReadings]:
    """Readings of every device here. Power from energy counters appears from
    the second call on (a process-wide Monitor keeps the previous samples)."""
    global _default
    if sysfs_root is not None:
        return Monitor(sysfs_root).read()
    if _default is None:
        _default = Monitor()
    return _default.read()
