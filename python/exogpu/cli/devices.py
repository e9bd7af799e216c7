"""`exogpu backends` and `exogpu devices`."""

from __future__ import annotations

import argparse
import json
from typing import Any

from rich.console import Console
from rich.table import Table

import exogpu


def backends_json() -> list[dict[str, Any]]:
    return [b.to_dict() for b in exogpu.backends()]


def devices_json() -> list[dict[str, Any]]:
    rows = []
    for dev in exogpu.devices():
        info = dev.info
        memory = dev.memory_info()
        rows.append(
            {
                "id": info.id,
                "backend": info.backend,
                "name": info.name,
                "vendor": info.vendor,
                "kind": info.kind,
                "memory_total": info.memory_total,
                "memory_free": memory.free,
                "memory_source": memory.source,
                "uuid": info.uuid,
                "pci_bus_id": info.pci_bus_id,
                "luid": info.luid,
                "aliases": list(info.aliases),
            }
        )
    return rows


def _gib(n: int) -> str:
    return f"{n / 2**30:.1f} GiB"


def run_backends(args: argparse.Namespace) -> int:
    rows = backends_json()
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    table = Table(title="exogpu backends")
    for column in ("backend", "available", "devices", "runtime", "reason"):
        table.add_column(column)
    for row in rows:
        table.add_row(
            row["name"],
            "[green]yes[/]" if row["available"] else "[red]no[/]",
            str(row["device_count"]),
            row["runtime_version"],
            row["reason"],
        )
    Console().print(table)
    return 0


def run_devices(args: argparse.Namespace) -> int:
    rows = devices_json()
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    table = Table(title="exogpu devices")
    for column in ("id", "name", "kind", "memory total", "memory free", "aliases"):
        table.add_column(column)
    for row in rows:
        table.add_row(
            row["id"],
            f"{row['vendor']} {row['name']}",
            row["kind"],
            _gib(row["memory_total"]),
            f"{_gib(row['memory_free'])} ({row['memory_source']})",
            ", ".join(row["aliases"]),
        )
    Console().print(table)
    return 0


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = subparsers.add_parser("backends", help="list backends and why any is unavailable")
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(func=run_backends)
    p = subparsers.add_parser("devices", help="list the devices here")
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(func=run_devices)
