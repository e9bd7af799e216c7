"""`exogpu monitor`: live temperature, power, memory, clocks and thermal state."""

from __future__ import annotations

import argparse
import json
import time
from typing import Any

from rich.console import Console
from rich.live import Live
from rich.table import Table

from exogpu.monitoring import DeviceReadings, Monitor, Reading
from exogpu.thermal import ThermalPolicy, ThermalState


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "monitor", help="live device readings (temperature, power, memory, clocks, thermal state)"
    )
    parser.add_argument(
        "--json", action="store_true", help="one JSON document per sample, one per line"
    )
    parser.add_argument(
        "--interval", type=float, default=1.0, metavar="S", help="seconds between samples"
    )
    parser.add_argument(
        "--count",
        type=int,
        default=None,
        metavar="N",
        help="samples to take (default: 1 with --json, else until ^C)",
    )
    parser.set_defaults(func=run)


def _fmt(reading: Reading | None, digits: int = 0) -> str:
    if reading is None:
        return "-"  # absent: the platform cannot tell
    return f"{reading.value:.{digits}f} {reading.unit}"


def _memory(device: DeviceReadings) -> str:
    used = device.get("memory_used")
    total = device.get("memory_total")
    if used is None:
        return "-"
    text = f"{used.value / 2**30:.1f}"
    return f"{text} / {total.value / 2**30:.1f} GiB" if total is not None else f"{text} GiB"


def _table(samples: list[DeviceReadings], policy: ThermalPolicy, status: str) -> Table:
    table = Table(title="exogpu monitor", caption=status or None)
    for column in (
        "device",
        "name",
        "temp",
        "power",
        "energy",
        "memory",
        "clock",
        "load",
        "state",
        "sources",
    ):
        table.add_column(column)
    colours = {
        ThermalState.NORMAL: "green",
        ThermalState.HOT: "yellow",
        ThermalState.THROTTLED: "red",
    }
    for device in samples:
        key = device.device_id or device.key
        temps = device.all("temperature")
        hottest = max(temps, key=lambda r: r.value) if temps else None
        clock = device.get("clock_sm") or device.get("clock_graphics")
        state = policy.state(key)
        sources = sorted({r.source for r in device.readings})
        table.add_row(
            key,
            device.name,
            _fmt(hottest)
            + (f" ({hottest.sensor})" if hottest is not None and hottest.sensor else ""),
            _fmt(device.get("power"), 1),
            _fmt(device.get("energy"), 1),
            _memory(device),
            _fmt(clock),
            _fmt(device.get("utilization")),
            f"[{colours[state]}]{state.value}[/]",
            ", ".join(sources),
        )
    return table


def _document(samples: list[DeviceReadings], policy: ThermalPolicy) -> dict[str, Any]:
    devices = []
    for device in samples:
        entry = device.to_dict()
        key = device.device_id or device.key
        entry["thermal_state"] = policy.state(key).value
        entry["thermal_weight"] = policy.weight(key)
        devices.append(entry)
    return {"time": time.time(), "devices": devices}


def _status(monitor: Monitor) -> str:
    """Why each vendor library is not read here, one line each; empty when all are."""
    lines = [
        f"{name}: {reason}"
        for name, reason in (("NVML", monitor.nvml_status), ("rocm-smi", monitor.rocm_smi_status))
        if reason
    ]
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    if args.interval <= 0:
        raise SystemExit("exogpu monitor: --interval must be positive")
    if args.count is not None and args.count < 1:
        raise SystemExit("exogpu monitor: --count must be at least 1")
    count = args.count if args.count is not None else (1 if args.json else None)
    monitor = Monitor()
    policy = ThermalPolicy()
    status = _status(monitor)

    def sample() -> list[DeviceReadings]:
        readings = monitor.read()
        policy.update(readings)
        return readings

    if args.json:
        for i in range(count or 1):
            if i:
                time.sleep(args.interval)
            print(json.dumps(_document(sample(), policy)), flush=True)
        return 0

    console = Console()
    taken = 0
    with Live(_table(sample(), policy, status), console=console, auto_refresh=False) as live:
        taken = 1
        while count is None or taken < count:
            time.sleep(args.interval)
            live.update(_table(sample(), policy, status), refresh=True)
            taken += 1
    return 0
