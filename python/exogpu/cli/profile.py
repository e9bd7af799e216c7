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
from exogpu.cli.measurement_format import format_bytes


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
        "--cached",
        action="store_true",
        help="show the cached profile when still fresh instead of measuring again",
    )
    parser.add_argument(
        "--max-age",
        type=float,
        default=profile.DEFAULT_MAX_AGE,
        metavar="SECONDS",
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
        caption="GFLOP/s: float32 FMA kernel; memory: 2 x device-to-device copy rate; "
        "h2d/d2h: page-locked copies (bytes counted once). "
        "* an alias of the device above (the same silicon, counted once)",
    )
    table.add_column("device", no_wrap=True)
    table.add_column("name", overflow="fold", max_width=24)
    for column in ("memory", "GFLOP/s", "memory GB/s", "h2d GB/s", "d2h GB/s"):
        table.add_column(column, justify="right")
    for d in result.details:
        if "error" in d:
            table.add_row(d["id"] + (" *" if d["alias_of"] else ""), f"[red]{d['error']}[/red]")
            continue
        table.add_row(
            d["id"] + (" *" if d["alias_of"] else ""),
            d["name"],
            format_bytes(d["memory_total"]),
            f"{d['flops'] / 1e9:.1f}" if d["fma_supported"] else "no kernel",
            f"{d['memory_bandwidth'] / 1e9:.2f}",
            f"{d['h2d_bandwidth'] / 1e9:.2f}",
            f"{d['d2h_bandwidth'] / 1e9:.2f}",
        )
    console.print(table)
