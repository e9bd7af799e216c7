"""`exogpu profile`: measure each local device and cache the placement figures."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from rich.console import Console
from rich.table import Table

import exogpu
from exogpu import profile
from exogpu.cli.measurement_format import format_bytes, format_flops, format_rate


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "profile",
        help="measure this node's devices (FLOP/s, memory bandwidth) and cache the profile",
        description=(
            "Measures each local device (aliases included) and writes the `devices` "
            f"entries of a placement problem to the profile cache ({profile.cache_path()})."
        ),
    )
    parser.add_argument("--json", action="store_true", help="print the profile as JSON")
    parser.add_argument(
        "--quick", action="store_true", help="short measurements (a few seconds per device)"
    )
    parser.add_argument(
        "--cached", action="store_true",
        help="show the cached profile when still fresh instead of measuring again",
    )
    parser.add_argument(
        "--max-age", type=float, default=profile.DEFAULT_MAX_AGE, metavar="SECONDS",
        help="with --cached: the oldest profile still taken as fresh",
    )
    parser.set_defaults(func=run_profile)


def run_profile(args: argparse.Namespace) -> int:
    err = Console(stderr=True)
    result: profile.Profile | None = None
    if args.cached:
        result, reason = profile.profile_status(args.max_age)
        if result is None:
            err.print(f"measuring: {reason}")
    if result is None:
        try:
            with err.status("measuring") as status:
                result = profile.measure_profile(
                    quick=args.quick,
                    on_device=lambda device_id: status.update(f"measuring {device_id}"),
                )
        except exogpu.Error as e:
            err.print(f"[red]exogpu profile: {e}[/red]")
            return 2
        path = profile.save_profile(result)
        err.print(f"profile written to {path}")
    if args.json:
        json.dump(result.to_dict(), sys.stdout, indent=2)
        sys.stdout.write("\n")
    else:
        _print_table(Console(), result)
    return 0


def _print_table(console: Console, result: profile.Profile) -> None:
    table = Table(
        title=f"{result.node}: device profile ({'quick' if result.quick else 'full'}, "
        f"measured {result.to_dict()['measured_at_iso']})",
        caption="memory bandwidth = 2 x device-to-device copy rate (bytes counted once); "
        "rows marked * are aliases of the row above (the same silicon, not counted twice)",
    )
    for column in ("device", "name", "memory", "FLOP/s (fp32 FMA)", "memory bw", "h2d", "d2h"):
        table.add_column(column, justify="left" if column in ("device", "name") else "right")
    for d in result.details:
        flops = format_flops(d["flops"]) if d["fma_supported"] else "no kernel"
        table.add_row(
            d["id"] + (" *" if d["alias_of"] else ""),
            d["name"],
            format_bytes(d["memory_total"]),
            flops,
            format_rate(d["memory_bandwidth"]),
            format_rate(d["h2d_bandwidth"]),
            format_rate(d["d2h_bandwidth"]),
        )
    console.print(table)
